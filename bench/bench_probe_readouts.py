"""How much of a depth-probe score is the readout's own seed: the probe of a finished `slife demo` folder's
encoders, each fit with several readout seeds on the same frozen tokens.

Run: `.venv/bin/python bench/bench_probe_readouts.py DEMO_DIR [--readouts 5] [--models life-office ...]
[--checkpoint NAME=PATH ...] [--untrained-seeds S ...] [--layer B ...] [--lr LR ...] [--oracle] --out OUT` (about 45 s per readout per encoder on one core; two encoders side by
side). Each encoder (the demo's trained models, its untrained control `untrained-s{seed}`, and any extra
checkpoint given, and the untrained encoders of other seeds asked for: how much the negative control itself
moves with its initialisation) is probed as the demo probes it (`slife probe life --readouts N`, the demo's epochs and batch)
with seeds SEED..SEED+N-1 (`--layer`: the encoder blocks read, as `slife probe --layer`; default the last;
`--lr`: the readout's learning rate, several chosen per encoder on a held-out training place as `slife probe --lr`;
`--oracle`: the depth oracle probed with the untrained encoder, the positive control);
prints each readout's aligned AbsRel, their mean, standard deviation and range, and the untrained CroCo's margin
over each model with its standard error paired readout by readout (the default, full and ablation studies train
CroCo only), as markdown. Outputs: OUT/NAME/probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from slife.demo import DemoConfig, _plan, _probe_one, _side_by_side, _untrained_specs, untrained_name
from slife.eval.depth_probe import ProbeConfig, readout_margin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--readouts", type=int, default=5, help="readouts per encoder (at least 2)")
    ap.add_argument("--models", nargs="*", default=None, help="the demo's models to probe (default: all)")
    ap.add_argument("--checkpoint", nargs="*", default=[], help="NAME=PATH: another checkpoint to probe beside")
    ap.add_argument("--untrained-seeds", type=int, nargs="*", default=[],
                    help="also probe untrained encoders of these seeds (`untrained_models`, as the demo's own)")
    ap.add_argument("--layer", type=int, nargs="+", default=[-1], help="encoder blocks read (default: the last)")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3],
                    help="readout learning rate(s); several: each encoder chooses on a held-out training place")
    ap.add_argument("--oracle", action="store_true", help="also probe the depth oracle (with the untrained encoder)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.readouts < 2:
        ap.error("--readouts must be at least 2: the point is their spread")
    st = json.loads((a.demo / "stages.json").read_text())
    c = st["identity"]["config"]
    cfg = DemoConfig(study=c["study"], budget_minutes=c["budget_minutes"], seed=c["seed"])
    plan = _plan(cfg)
    models = ((st["stages"].get("train") or {}).get("result") or {}).get("models", {})  # none yet while it trains
    pcfg = ProbeConfig(dataset="life", data_root=Path(st["stages"]["synth"]["result"]["probe"]),
                       epochs=plan.probe_epochs, frame_step=1, batch_size=32, seed=cfg.seed, readouts=a.readouts,
                       layers=tuple(a.layer), lr=tuple(a.lr))
    un, spec = untrained_name(cfg), next(iter(_untrained_specs(cfg).values()))
    jobs = [(un, _probe_one, (replace(pcfg, control_oracle=a.oracle), None, str(a.out / un), cfg.seed, spec))]
    jobs += [(n, _probe_one, (pcfg, m["checkpoint"], str(a.out / n))) for n, m in models.items()
             if a.models is None or n in a.models]
    jobs += [(n, _probe_one, (pcfg, p, str(a.out / n))) for n, p in (x.split("=", 1) for x in a.checkpoint)]
    jobs += [(untrained_name(DemoConfig(seed=s)), _probe_one, (pcfg, None, str(a.out / f"untrained-s{s}"), s, spec))
             for s in sorted(set(a.untrained_seeds) - {cfg.seed})]
    names = [n for n, *_ in jobs]
    if len(set(names)) < len(names):
        ap.error(f"two encoders of one name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    done = _side_by_side(jobs, 2, lambda *_, **__: None)
    res = {n: json.loads(Path(r).read_text()) for n, (r, _) in done.items()}
    print(f"### {a.demo.name}: aligned AbsRel of {a.readouts} readouts "
          f"(seeds {cfg.seed}-{cfg.seed + a.readouts - 1}), encoder blocks {res[un]['layer']}\n")
    print("| encoder | lr | " + " | ".join(f"readout {k}" for k in range(a.readouts)) + " | mean | sd | range | "
          "untrained - this ± paired se |")
    print("|---|---|" + "---|" * (a.readouts + 4))
    rows = dict(res)
    if a.oracle:
        rows["depth oracle (control)"] = res[un]["control_oracle"]
    for n, r in rows.items():
        v = [x["metrics_aligned"]["abs_rel"] for x in r["readouts"]]
        d = readout_margin(res[un], r)  # readout k: the same seed for both
        print(f"| {n} | {r['lr']:g} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {statistics.mean(v):.3f} | "
              f"{statistics.stdev(v):.3f} | {max(v) - min(v):.3f} | {d['diff']:+.3f} ± {d['se']:.3f} |")
    if len(a.lr) > 1:
        print(f"\nValidation aligned AbsRel per rate ({res[un]['lr_choice']['validation']}):\n")
        print("| encoder | " + " | ".join(f"{x:g}" for x in a.lr) + " | chosen |")
        print("|---|" + "---|" * (len(a.lr) + 1))
        for n, r in rows.items():
            sc = r["lr_choice"]["scores"]
            print(f"| {n} | " + " | ".join(f"{sc[str(float(x))]:.3f}" for x in a.lr) + f" | {r['lr']:g} |")


if __name__ == "__main__":
    main()
