"""The demo's report: report.md with its tables, plots and a plain reading next to the paper's claims.

Reads the outputs the demo's stages wrote (manifest.json of each shard set, metrics.csv and previews
of each run, cas.json / probe.json / match.json of the evaluations) and `stages.json` (wall times).
Writes `report.md`, `probe_by_strategy.png` and `alignment_vs_training.png` beside it. Entry point:
`write_report(...) -> Path`. Numbers are computed by the stages; this module only reads and words them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from slife.io import atomic_file, atomic_write_text


def _f(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def _last_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    return rows[-1] if rows else {}


def _rel(path: Path | str, root: Path) -> str:
    return os.path.relpath(Path(path), root)


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _mean_offdiag(mat: np.ndarray, idx: list[int], jdx: list[int] | None = None) -> float:
    vals = []
    for a in idx:
        for b in (jdx if jdx is not None else idx):
            if a != b and (jdx is not None or a < b):
                v = mat[a, b]
                if v is not None and np.isfinite(v):
                    vals.append(v)
    return float(np.mean(vals)) if vals else math.nan


def _cas_groups(rep: dict) -> dict:
    names, kinds = rep["names"], rep["kinds"]
    mat = np.array([[np.nan if v is None else v for v in row] for row in rep["matrix"]], dtype=float)
    disp = rep.get("ground_truth", {}).get("matrix_displaced") if rep.get("ground_truth") else None
    dmat = None if disp is None else np.array([[np.nan if v is None else v for v in r] for r in disp], dtype=float)
    lives = [i for i, n in enumerate(names) if n.startswith("life-") and kinds[i] == "model"]
    ctrls = [i for i, n in enumerate(names) if n.startswith("control-") and kinds[i] == "model"]
    untr = [i for i, k in enumerate(kinds) if k == "untrained"]
    sp = [i for i, k in enumerate(kinds) if k == "same-position"]
    g = {
        "life_life": _mean_offdiag(mat, lives),
        "life_control": _mean_offdiag(mat, lives, ctrls),
        "untrained": _mean_offdiag(mat, untr),
        "life_same_position": _mean_offdiag(mat, lives, sp),
        "chance": rep.get("chance"),
    }
    if dmat is not None:
        g["life_life_displaced"] = _mean_offdiag(dmat, lives)
        g["life_control_displaced"] = _mean_offdiag(dmat, lives, ctrls)
        g["untrained_displaced"] = _mean_offdiag(dmat, untr)
        g["life_same_position_displaced"] = _mean_offdiag(dmat, lives, sp)
    return g


def _save(fig, path: Path) -> None:
    """Write a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_file(path, keep_suffix=True, durable=False) as tmp:  # matplotlib picks the format by suffix
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _plot_probe(probe: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(probe)
    vals = [probe[n]["metrics"].get("abs_rel") or math.nan for n in names]
    d1 = [probe[n]["metrics"].get("delta1") or math.nan for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = ["#dd8452" if n.startswith("ablation") else ("#55a868" if n.startswith("life") else
              ("#c44e52" if n.startswith("control") else "#8172b2")) for n in names]
    for ax, v, title in ((axes[0], vals, "AbsRel (lower is better)"), (axes[1], d1, "delta1 (higher is better)")):
        ax.bar(range(len(names)), v, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
    fig.suptitle("Depth probe on a held-out scene, by training set (orange: pairing ablation arms)")
    _save(fig, path)


def _plot_alignment(full: dict, half: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("life_life", "life vs life"), ("life_control", "life vs control"), ("untrained", "untrained pair"),
            ("life_same_position", "life vs same-position")]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(keys))
    if half:
        ax.bar(x - 0.2, [half.get(k) or 0 for k, _ in keys], 0.4, label="half training")
    ax.bar(x + (0.2 if half else 0), [full.get(k) or 0 for k, _ in keys], 0.4, label="end of training")
    if full.get("chance"):
        ax.axhline(full["chance"], color="k", ls="--", lw=1, label="chance k/N")
    ax.set_xticks(x)
    ax.set_xticklabels([lbl for _, lbl in keys])
    ax.set_ylabel("CAS (all patches)")
    ax.legend(fontsize=8)
    ax.set_title("Alignment between models, with its controls")
    _save(fig, path)


def write_report(cfg, plan, out: Path, stage_times: dict, lives: dict, shards: dict, runs: dict,
                 evals: dict) -> Path:
    out = Path(out)
    L: list[str] = []
    L.append("# slife demo: the single-life study in miniature\n")
    L.append(f"Budget {cfg.budget_minutes:g} min on this machine (seed {cfg.seed}). Each model is a `tiny` CroCo "
             f"(64 px images, 8 px patches) trained from random init for {runs['steps']} steps of "
             f"{plan.batch_size} pairs on one life's pairs only. Re-run `slife demo --out {out}` to resume.\n")
    L.append("## Wall time per stage\n")
    L.append(_table(["stage", "seconds"], [[k, _f(v.get("seconds"), 1)] for k, v in stage_times.items()]))
    L.append("")

    # ------------------------------------------------------------------ lives and pairs
    L.append("## Lives and mined pairs\n")
    rows = []
    for name, s in shards.items():
        per = s.get("per_strategy", {})
        rows.append([name, s.get("life", ""), s.get("strategy", ""), str(s.get("pairs", "")),
                     ", ".join(f"{k}: {v}" for k, v in per.items())])
    L.append(_table(["shard set", "life", "strategies", "pairs", "found by"], rows))
    L.append("\nThe ablation arms all come from the first life and are capped at the same pair count "
             f"({plan.max_pairs}); an arm that finds fewer pairs than the cap trains on what it found (see 'pairs').\n")
    prev = [n for n in shards if (Path(shards[n]["path"]) / "preview.png").exists()]
    for n in prev[:2]:
        L.append(f"![mined pairs of {n}]({_rel(Path(shards[n]['path']) / 'preview.png', out)})")
    L.append("")

    # ------------------------------------------------------------------ training
    L.append("## Training\n")
    rows = []
    for name, m in runs["models"].items():
        last = _last_metrics(Path(m["checkpoint"]).parent)
        rows.append([name, m["shards"], last.get("step", ""), _f(float(last["loss"])) if last.get("loss") else "–",
                     _f(float(last["pairs_per_s"]), 1) if last.get("pairs_per_s") else "–", _f(m.get("seconds"), 1)])
    L.append(_table(["model", "trained on", "steps", "final loss", "pairs/s", "seconds"], rows))
    first = next(iter(runs["models"].values()))
    pv = sorted((Path(first["checkpoint"]).parent / "previews").glob("*.png"))
    if pv:
        L.append(f"\nReconstruction preview (source | masked target | prediction | target):\n\n![preview]({_rel(pv[-1], out)})\n")

    # ------------------------------------------------------------------ CAS
    cas = json.loads(Path(evals["cas"]).read_text())
    half = json.loads(Path(evals["cas_half"]).read_text()) if evals.get("cas_half") else None
    g, gh = _cas_groups(cas), (_cas_groups(half) if half else None)
    L.append("## Correspondence Alignment Score (held-out life)\n")
    L.append(f"{cas['num_pairs']} test pairs mined (spatial+temporal) from a life no model saw; k = {cas['k']}, "
             f"{cas['num_patches']} patches, chance k/N = {_f(cas['chance'])}.\n")
    L.append(f"![CAS heatmap]({_rel(Path(evals['cas']).with_suffix('.png'), out)})\n")
    names = cas["names"]
    rows = [[n] + [_f(v, 2) for v in row] for n, row in zip(names, cas["matrix"])]
    L.append(_table(["CAS"] + names, rows))
    L.append("")
    keys = [("life_life", "between life models"), ("life_control", "life models vs control models"),
            ("untrained", "two untrained models"), ("life_same_position", "life models vs same-position predictor"),
            ("chance", "chance k/N")]
    rows = []
    for k, lbl in keys:
        rows.append([lbl, _f(g.get(k)), _f(g.get(k + "_displaced")) if k != "chance" else "–",
                     _f(gh.get(k)) if gh else "–"])
    L.append(_table(["mean CAS", "all patches", "displaced patches only", "at half training"], rows))
    gt = cas.get("ground_truth")
    if gt:
        L.append(f"\nDisplaced patches (true match more than one patch from the same grid position): "
                 f"{_f(gt.get('displaced_share'))} of {gt.get('patches_with_truth')} patches with ground truth.\n")
        rows = [[n, _f(a.get("all")), _f(a.get("displaced"))] for n, a in gt["accuracy"].items()]
        L.append(_table(["top-1 correspondence accuracy", "all", "displaced"], rows))
        L.append(f"\n(chance of landing within one patch: {_f(gt.get('accuracy_chance'))})\n")
    _plot_alignment(g, gh, out / "alignment_vs_training.png")
    L.append("![alignment](alignment_vs_training.png)\n")

    # ------------------------------------------------------------------ probe
    probe = {n: json.loads(Path(p).read_text()) for n, p in evals["probe"].items()}
    L.append("## Depth probe (frozen encoder, held-out scene)\n")
    rows = []
    for n, r in probe.items():
        m = r["metrics"]
        rows.append([n, _f(m.get("abs_rel")), _f(m.get("delta1")), _f(m.get("rmse")),
                     _f((r.get("metrics_aligned") or {}).get("abs_rel"))])
    base = next(iter(probe.values()))["baseline_mean_depth"]
    rows.append(["(predict the mean depth)", _f(base.get("abs_rel")), _f(base.get("delta1")), _f(base.get("rmse")), "–"])
    L.append(_table(["encoder", "AbsRel", "delta1", "RMSE (m)", "AbsRel aligned"], rows))
    _plot_probe(probe, out / "probe_by_strategy.png")
    L.append("\n![probe](probe_by_strategy.png)\n")
    ex = Path(evals["probe"][next(iter(runs["models"]))]).parent / "probe_examples.png"
    if ex.exists():
        L.append(f"![probe examples]({_rel(ex, out)})\n")

    # ------------------------------------------------------------------ match
    match = json.loads(Path(evals["match"]).read_text())
    L.append(f"## Zero-shot correspondence ({match['data_root']})\n")
    rows = []
    ident = None
    for n, r in match["models"].items():
        o = r["overall"]
        ident = o["identity"]
        rows.append([n, _f(o["model"]["aepe"], 1), _f(o["model"]["pck1"]), _f(o["model"]["pck3"]),
                     _f(o["model"]["pck5"]), _f(o["model_displaced"]["aepe"], 1)])
    if ident:
        rows.append(["identity (zero flow)", _f(ident["aepe"], 1), _f(ident["pck1"]), _f(ident["pck3"]),
                     _f(ident["pck5"]), "–"])
    L.append(_table(["model", "AEPE px", "PCK-1", "PCK-3", "PCK-5", "AEPE displaced"], rows))
    L.append("")

    # ------------------------------------------------------------------ reading
    L.append("## Reading, next to the paper's claims\n")
    L.extend(_reading(g, gh, probe, match))
    path = out / "report.md"
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


def _cmp(a, b) -> str:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "cannot be compared (missing numbers)"
    return "above" if a > b else "not above"


def _reading(g: dict, gh: dict | None, probe: dict, match: dict) -> list[str]:
    out = []
    ll, lc, un, sp = g.get("life_life"), g.get("life_control"), g.get("untrained"), g.get("life_same_position")
    out.append(f"- **Alignment between lives.** The paper finds that models trained on different lives align "
               f"(high CAS). Here life models agree with each other at {_f(ll)}, {_cmp(ll, un)} two untrained "
               f"models ({_f(un)}). But each life model also agrees with the fixed same-position predictor at "
               f"{_f(sp)}: where that is as high as the life-life score, the agreement is the positional shortcut, "
               f"not learned correspondence.")
    if g.get("life_life_displaced") is not None:
        out.append(f"  On displaced patches only (true match moved by more than a patch), life-life CAS is "
                   f"{_f(g.get('life_life_displaced'))} vs {_f(g.get('untrained_displaced'))} for untrained models: "
                   f"this is the number that speaks to alignment beyond the shortcut.")
    out.append(f"- **Controls.** The paper's non-life controls (static camera, screen recording) align less. Here "
               f"life-vs-control CAS is {_f(lc)} against life-vs-life {_f(ll)} ({_cmp(ll, lc)}).")
    if gh:
        out.append(f"- **Alignment rising with training.** Life-life CAS went from {_f(gh.get('life_life'))} at half "
                   f"training to {_f(ll)} at the end ({'rising' if (ll or 0) > (gh.get('life_life') or 0) else 'not rising'}).")
    first = _first_life(probe)
    arms = {(f"spatial+temporal ({n})" if n == first else n.replace("ablation-", "")): r["metrics"].get("abs_rel")
            for n, r in probe.items() if n.startswith("ablation") or n == first}
    order = sorted((v, n) for n, v in arms.items() if v is not None)
    untrained = (probe.get("untrained") or {}).get("metrics", {}).get("abs_rel")
    trained = [r["metrics"].get("abs_rel") for n, r in probe.items() if n != "untrained"]
    trained = [v for v in trained if v is not None]
    if untrained is not None and trained:
        better = sum(v < untrained for v in trained)
        out.append(f"- **Depth probe vs an untrained encoder.** {better} of {len(trained)} trained encoders probe "
                   f"better than the untrained one (AbsRel {_f(untrained)}; best trained {_f(min(trained))}). "
                   "Where the untrained encoder wins, this budget has not yet taught the encoder depth beyond what "
                   "random features and the readout give.")
    if order:
        out.append("- **Pairing ablation.** The paper reports pairs from the life's geometry (spatial, temporal) "
                   "beating random and augmented pairs. Depth-probe AbsRel here, best first: "
                   + ", ".join(f"{n} {_f(v)}" for v, n in order) + ". With minutes of CPU training per arm the "
                   "gaps are small next to seed noise (bench/README.md gives the spread over three seeds).")
    ident = None
    for r in match["models"].values():
        ident = r["overall"]["identity"]["aepe"]
        break
    best = min((r["overall"]["model"]["aepe"] for r in match["models"].values() if r["overall"]["model"]["aepe"] is not None),
               default=None)
    out.append(f"- **Correspondence.** Best zero-shot AEPE {_f(best, 1)} px against {_f(ident, 1)} px for zero flow.")
    out.append("- **What this budget cannot show.** DESIGN.md measured that tiny CroCos trained for minutes reach "
               "CAS ~0.6 mostly through the same-position shortcut, and that alignment beyond it did not appear "
               "within 15 minutes. Read the displaced-patch columns, not the headline CAS.")
    return out


def _first_life(probe: dict) -> str | None:
    return next((n for n in probe if n.startswith("life-")), None)
