"""How far from 0 two untrained models score on the null-corrected CAS, pair to pair: the spread that the demo's
one untrained pair and its jackknife error over test pairs do not show.

Run: `.venv/bin/python bench/bench_cas_untrained_spread.py DEMO_DIR [--untrained 8] [--out DIR]` (about two minutes
on 2 cores). Runs `slife cas` on the demo's trained CroCo checkpoints with `--untrained` untrained controls (seeds
SEED .. SEED+n-1, the demo's own two first) on the demo's held-out pairs and k, into DIR (default
DEMO_DIR/eval/cas_untrained_spread; the demo's own eval/cas is left alone). Prints one markdown row per score (CAS
beyond position and saliency, CAS beyond position): the untrained pairs' mean ± std and range over the n(n-1)/2
pairs, their median jackknife error, the demo's untrained pair, and life-vs-life with its distance from the
untrained pairs' mean in their standard deviations. A measurement beside the demo's claim, not a change to it: the
claim's control is still the demo's untrained pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slife.demo import DemoConfig, objective_of
from slife.eval.cas import CasConfig, run as cas_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--untrained", type=int, default=8, help="untrained controls (>= 3; the demo uses 2)")
    ap.add_argument("--models", nargs=2, default=["life-kitchen", "life-office"], help="the two life models")
    ap.add_argument("--out", type=Path, default=None, help="where slife cas writes (default in the demo folder)")
    a = ap.parse_args()
    if a.untrained < 3:
        raise SystemExit("error: --untrained must be >= 3 for a spread over pairs")
    st = json.loads((a.demo / "stages.json").read_text())
    cfg = DemoConfig(**{k: v for k, v in st["identity"]["config"].items() if k in DemoConfig.__dataclass_fields__})
    models = {n: m for n, m in st["stages"]["train"]["result"]["models"].items() if objective_of(n) == "croco"}
    out = a.out or a.demo / "eval" / "cas_untrained_spread"
    cas_cfg = CasConfig(pairs=Path(st["stages"]["mine"]["result"]["heldout"]["path"]),
                        num_pairs=st["identity"]["plan"]["cas_pairs"], k=10 if not cfg.smoke else 3,
                        untrained_seeds=tuple(range(cfg.seed, cfg.seed + a.untrained)))
    rep = json.loads(cas_run(cas_cfg, [Path(m["checkpoint"]) for m in models.values()], out).read_text())
    kinds = dict(zip(rep["names"], rep["kinds"]))
    life = {rep["names"][list(models).index(n)] for n in a.models}
    demo_uu = {f"untrained-s{cfg.seed}", f"untrained-s{cfg.seed + 1}"}
    for key, what in (("cas_beyond_saliency", "beyond position and saliency"), ("cas_calibrated", "beyond position")):
        uu = [r for r in rep["pair_table"] if kinds[r["a"]] == kinds[r["b"]] == "untrained"]
        vals = [r[key] for r in uu]
        m, sd = statistics.mean(vals), statistics.stdev(vals)
        ses = statistics.median(r[f"{key}_se"] for r in uu)
        demo = next(r[key] for r in uu if {r["a"], r["b"]} == demo_uu)
        ll = next(r[key] for r in rep["pair_table"] if {r["a"], r["b"]} == life)
        print(f"| {a.demo.name} | {what} | {len(uu)} | {m:.3f} ± {sd:.3f} ({min(vals):.3f} .. {max(vals):.3f}) | "
              f"{ses:.3f} | {demo:.3f} | {ll:.3f} ({(ll - m) / sd:+.1f} sd) |")


if __name__ == "__main__":
    main()
