"""The demo's numbers across seeds: run `slife demo` for several seeds and print means, spreads and the claims.

Run: `.venv/bin/python bench/bench_demo_seeds.py --study default --seeds 0 1 2` (about 32 min a seed on 2 idle
cores: the 15-min budget for data and training, then about 17 min of evaluation; `--budget-minutes 60` about 65 min
a seed; other studies: their budget plus an evaluation that grows with their model count; `--budget-minutes`
overrides the study's budget). Outputs go to
bench/out/demo-{study}-b{budget}-seed{S}/ (a rerun resumes). Reads each run's summary.json and prints markdown:
1. every number of every encoder: per seed, mean and standard deviation over seeds;
2. the margins the claims rest on, per seed (the probe's with d / its standard error over the readouts, paired
   readout by readout, where the probe averaged several), with mean, std and whether mean > 2 x std (depth) or
   mean > std (alignment) as the issue states them, and where a run has them, each margin's paired error
   within the run (> 2 of them in every seed; for alignment, of the larger of that error and the untrained pairs'
   standard deviation where summary.json has it, as the demo's claim since session 19); every life model is
   compared in every seed;
3. the pairing ablation (full and ablation studies) as mean +- std per arm; per measure, the arms' order by
   mean against the paper's, and each step of the paper's order as a per-seed difference;
4. wall time per stage.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from slife.demo import ABLATION, STUDIES, DemoConfig, run
from slife.demo_report import untrained_top1
from slife.errors import SlifeError


def _ms(vals: list[float], nd: int = 3) -> tuple[str, float, float]:
    m = statistics.mean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{m:.{nd}f} ± {sd:.{nd}f}", m, sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="default")
    ap.add_argument("--budget-minutes", type=float, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--rewrite-report", action="store_true", help="write summary.json and report.md again with "
                    "this code (the report stage is dropped from stages.json; a run made with other evaluation settings, "
                    "such as before session 13's three readouts or session 18's masked read, also redoes its "
                    "evaluation, minutes per seed; `bench_masked_read.py` reads an older run masked without redoing "
                    "its probes; "
                    "one made before another change to the demo's plan, such as session 12's targets, stops with "
                    "an error)")
    a = ap.parse_args()
    runs, stage_s = [], []
    for s in a.seeds:
        cfg = DemoConfig(study=a.study, budget_minutes=a.budget_minutes, seed=s)
        out = a.out / f"demo-{a.study}-b{cfg.budget:g}-seed{s}"
        st = out / "stages.json"
        before = st.read_text() if st.exists() else None
        if a.rewrite_report and before is not None:
            d = json.loads(before)
            d["stages"].pop("report", None)
            st.write_text(json.dumps(d, indent=2))
        if a.rewrite_report or "report" not in (json.loads(st.read_text())["stages"] if st.exists() else {}):
            try:
                run(cfg, out)  # a finished run is only read: one made by older code may have another plan
            except SlifeError as e:  # e.g. trained with other settings: the folder is left as it was
                if before is not None:
                    st.write_text(before)
                raise SystemExit(f"error: {e}")
        runs.append(json.loads((out / "summary.json").read_text()))
        stage_s.append({k: v["seconds"] for k, v in json.loads((out / "stages.json").read_text())["stages"].items()})
    print_tables(runs, a.study)
    seeds = " | ".join(f"seed {r['seed']}" for r in runs)
    print(f"\n| stage | {seeds} | mean ± std |")
    print("|---|" + "---|" * (len(runs) + 1))
    for k in stage_s[0]:
        vals = [st[k] for st in stage_s]
        print(f"| seconds: {k} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {_ms(vals, 1)[0]} |")


def _untrained_top1_name(runs: list[dict]) -> str:
    n = {(untrained_top1(r)[1] or {}).get("n", 1) for r in runs}
    return "the untrained encoder" if n == {1} else f"the mean of {'/'.join(map(str, sorted(n)))} untrained CroCos"


def print_tables(runs: list[dict], study: str) -> None:
    """Tables 1-3 of the module docstring from the runs' summary.json contents (one per seed)."""
    seeds = " | ".join(f"seed {r['seed']}" for r in runs)
    budget = runs[0]["budget_minutes"]
    steps = [r["steps"] for r in runs]
    print(f"### study {study}, budget {budget:g} min, {min(steps)}-{max(steps)} steps per model "
          f"({', '.join(map(str, steps))})\n")
    print(f"| encoder | measure | {seeds} | mean ± std |")
    print("|---|---|" + "---|" * (len(runs) + 1))
    keys = ("probe_abs_rel_aligned", "probe_abs_rel", "top1_displaced", "top1_displaced_beyond_position", "match_aepe",
            "match_pck5")
    for name, e in runs[0]["encoders"].items():
        for k in keys:
            vals = [r["encoders"].get(name, {}).get(k) for r in runs]
            if any(v is None for v in vals):
                continue
            nd = 1 if k == "match_aepe" else 3
            print(f"| {name} | {k} | " + " | ".join(f"{v:.{nd}f}" for v in vals) + f" | {_ms(vals, nd)[0]} |")
    for key in ("chance_top1",):
        vals = [r[key] for r in runs]
        print(f"| (chance) | top-1 within one patch | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {_ms(vals)[0]} |")
    for k in ("probe_abs_rel_aligned", "probe_abs_rel"):
        vals = [(r.get("position_prior") or {}).get(k) for r in runs]
        if all(v is not None for v in vals):
            print(f"| position prior | {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {_ms(vals)[0]} |")
    for k in ("displaced", "displaced_told_which_moved"):  # not in summaries before session 11
        vals = [(r.get("top1_position_prior") or {}).get(k) for r in runs]
        if all(v is not None for v in vals):
            print(f"| top-1 position prior | {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {_ms(vals)[0]} |")
    for k in ("match_aepe", "match_pck5"):
        vals = [r["zero_flow"][k] for r in runs]
        print(f"| zero flow | {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {_ms(vals)[0]} |")
    for block in ("alignment_beyond_saliency", "alignment_beyond_shortcut", "alignment_beyond_shortcut_displaced",
                  "cas_paper"):
        for k in ("life_life", "life_control", "untrained_untrained", "life_same_position"):
            vals = [(r.get(block) or {}).get(k) for r in runs]
            if any(v is None for v in vals):
                continue
            print(f"| {block} | {k} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {_ms(vals)[0]} |")

    print("\n#### Margins the claims rest on\n")
    print(f"| margin | {seeds} | mean ± std | holds |")
    print("|---|" + "---|" * (len(runs) + 2))
    lives = [n for n, e in runs[0]["encoders"].items() if e["group"] == "life"]
    for n in lives:  # depth: untrained - life, positive in every seed and mean > 2 std
        d = [r["encoders"]["untrained"]["probe_abs_rel_aligned"] - r["encoders"][n]["probe_abs_rel_aligned"]
             for r in runs]
        txt, m, sd = _ms(d)
        se = [(r["encoders"][n].get("probe_abs_rel_aligned_vs_untrained") or {}).get("se") for r in runs]
        se = [math.nan if e is None else e for e in se]  # paired readout by readout; NaN: one readout (or a
        # summary from before session 14: `--rewrite-report` writes it again)
        cells = [f"{v:.3f}" + (f" ({v / e:.1f})" if e > 0 else "") for v, e in zip(d, se)]
        print(f"| probe: untrained - {n} (aligned AbsRel; d/paired se over readouts) | " + " | ".join(cells)
              + f" | {txt} | {'yes' if min(d) > 0 and m > 2 * sd else 'no'} |")
    if all((r.get("position_prior") or {}).get("probe_abs_rel_aligned") is not None for r in runs):
        for n in ["untrained"] + lives:  # no threshold: whether the tokens carry depth beyond the position prior
            d = [r["position_prior"]["probe_abs_rel_aligned"] - r["encoders"][n]["probe_abs_rel_aligned"] for r in runs]
            print(f"| probe: position prior - {n} (aligned AbsRel; > 0: beats the prior) | "
                  + " | ".join(f"{v:.3f}" for v in d) + f" | {_ms(d)[0]} | – |")
    untrained = [untrained_top1(r)[0] for r in runs]  # the report's claim compares with the same
    for n in lives:  # correspondence: top-1 displaced / chance >= 2 and above untrained in every seed
        q = [r["encoders"][n]["top1_displaced"] / r["chance_top1"] for r in runs]
        above = all(r["encoders"][n]["top1_displaced"] > u for r, u in zip(runs, untrained))
        print(f"| top-1 displaced / chance, {n} (and above {_untrained_top1_name(runs)}) | "
              + " | ".join(f"{v:.2f}" for v in q) + f" | {_ms(q, 2)[0]} | {'yes' if min(q) >= 2 and above else 'no'} |")
    print(f"| top-1 displaced, {_untrained_top1_name(runs)} / chance | "
          + " | ".join(f"{u / r['chance_top1']:.2f}" for r, u in zip(runs, untrained))
          + f" | {_ms([u / r['chance_top1'] for r, u in zip(runs, untrained)], 2)[0]} | – |")
    key = "top1_displaced_beyond_position_vs_untrained"
    for n in lives:  # the same beyond position: above the untrained encoder's by > 2 standard errors in every seed
        e = [r["encoders"][n].get(key) or {} for r in runs]  # the paired difference and its jackknife error
        if any(x.get("diff") is None or x.get("se") is None for x in e):
            continue
        d = [x["diff"] for x in e]
        z = [x["diff"] / x["se"] for x in e]
        txt, m, sd = _ms(d)
        print(f"| top-1 displaced beyond position: {n} - untrained (> 2 se in every seed; d/se) | "
              + " | ".join(f"{v:.3f} ({q:.1f})" for v, q in zip(d, z)) + f" | {txt} | "
              f"{'yes' if min(z) > 2 else 'no'} |")
    best = [min((r["encoders"][n] for n in lives), key=lambda e: e["match_aepe"]) for r in runs]
    ok = all(b["match_aepe"] < r["zero_flow"]["match_aepe"] and b["match_pck5"] > r["zero_flow"]["match_pck5"]
             for b, r in zip(best, runs))
    d = [r["zero_flow"]["match_aepe"] - b["match_aepe"] for b, r in zip(best, runs)]
    real = all(r.get("match_real_photographs", True) for r in runs)  # else synthetic warps: not the claim's data
    print(f"| {'graffiti' if real else 'synthetic warps (no graffiti in ../shared/data)'}: zero-flow AEPE - best "
          f"life AEPE (and PCK-5 above) | " + " | ".join(f"{v:.1f}" for v in d)
          + f" | {_ms(d, 1)[0]} | {('yes' if ok else 'no') if real else 'not measured'} |")
    # goal 3 on CAS beyond position and saliency since session 16 (bench/study.md); beyond position beside it
    for block, what in (("alignment_beyond_saliency", "beyond position and saliency"),
                        ("alignment_beyond_shortcut", "beyond position")):
        for other in ("untrained_untrained", "life_control"):
            if any((r.get(block) or {}).get(k) is None for r in runs for k in ("life_life", other)):
                continue  # one life, no controls (the ablation study), or a summary from before the score
            d = [r[block]["life_life"] - r[block][other] for r in runs]
            txt, m, sd = _ms(d)
            print(f"| {what}: life-life - {other} | " + " | ".join(f"{v:.3f}" for v in d)
                  + f" | {txt} | {'yes' if min(d) > 0 and m > sd else 'no'} |")
            e = [((r.get(f"{block}_se") or {}).get("life_life_minus") or {}).get(other) or {} for r in runs]
            if all(x.get("diff") is not None and x.get("se") for x in e):  # summaries since session 12 (se > 0)
                # the demo's per-seed claim: twice the larger of the paired error and the untrained pairs' spread
                # (summaries since session 19; before, the paired error alone)
                sds = [(r.get(f"{block}_se") or {}).get("untrained_pairs_sd") for r in runs]
                err = [max(x["se"], v or 0.0) for x, v in zip(e, sds)]
                z = [x["diff"] / v for x, v in zip(e, err)]
                what_err = ("max(paired se, untrained pairs' sd)" if all(v is not None for v in sds) else
                            "paired se" if all(v is None for v in sds) else
                            "max(paired se, untrained pairs' sd where summary.json has it)")
                print(f"| {what}: life-life - {other}, > 2 {what_err} in every seed (d ± that) | "
                      + " | ".join(f"{x['diff']:.3f} ± {v:.3f}" for x, v in zip(e, err))
                      + f" | {_ms([x['diff'] for x in e])[0]} | {'yes' if min(z) > 2 else 'no'} |")

    arms = [n for n, e in runs[0]["encoders"].items() if e["group"] == "ablation"]
    spec = STUDIES[study]
    if arms:
        first = lives[0]
        print("\n#### Pairing ablation (mean ± std over seeds)\n")
        cols = ["probe_abs_rel_aligned", "top1_displaced", "top1_displaced_beyond_position", "match_aepe", "match_pck5"]
        cols = [k for k in cols if all(r["encoders"][n].get(k) is not None for r in runs for n in [first] + arms)]
        print("| arm | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        rows = {}
        for n in [first] + arms:  # the first life's model: the arm of the lives' strategies (not one of the paper's)
            lbl = f"{first} (life: {spec.life_pairs})" if n == first else n.replace("ablation-", "")
            rows[lbl] = [_ms([r["encoders"][n][k] for r in runs], {"match_aepe": 1, "match_pck5": 4}.get(k, 3))
                         for k in cols]
            print(f"| {lbl} | " + " | ".join(c[0] for c in rows[lbl]) + " |")
        print(f"\nThe paper's order: {' > '.join(ABLATION)}. Each measure's order of the five arms by their means, "
              "and each step of the paper's order as the per-seed difference (better minus worse: > 0 where the "
              "paper's order holds), its mean ± std and how many seeds agree:\n")
        print("| measure | order by mean (best first) | same as the paper's | "
              + " | ".join(f"{x} > {y}" for x, y in zip(ABLATION, ABLATION[1:])) + " |")
        print("|---|---|---|" + "---|" * (len(ABLATION) - 1))
        for k, sign in (("probe_abs_rel_aligned", -1), ("top1_displaced", 1), ("top1_displaced_beyond_position", 1),
                        ("match_aepe", -1), ("match_pck5", 1)):
            # an arm is ablation-<arm>, or the first life's own model where the lives mine that arm's pairs
            per = {arm: [r["encoders"].get(f"ablation-{arm}", r["encoders"][first]
                                           if arm == spec.life_pairs else {}).get(k) for r in runs]
                   for arm in ABLATION}
            if any(x is None for v in per.values() for x in v):
                continue
            order = sorted(ABLATION, key=lambda arm: -sign * statistics.mean(per[arm]))
            steps = []
            for x, y in zip(ABLATION, ABLATION[1:]):
                d = [sign * (a - b) for a, b in zip(per[x], per[y])]
                nd = {"match_aepe": 1, "match_pck5": 4}.get(k, 3)
                steps.append(f"{_ms(d, nd)[0]} ({sum(v > 0 for v in d)}/{len(d)})")
            print(f"| {k} | {' > '.join(order)} | {'yes' if order == list(ABLATION) else 'no'} | "
                  + " | ".join(steps) + " |")


if __name__ == "__main__":
    main()
