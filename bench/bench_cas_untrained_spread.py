"""How far from 0 two untrained models score on the null-corrected CAS, pair to pair: the spread that one untrained
pair and its jackknife error over test pairs do not show (the demo scored one pair until session 19; it scores six
untrained controls since, and its alignment claims take their pairs' spread as a floor of error).

Run: `.venv/bin/python bench/bench_cas_untrained_spread.py DEMO_DIR [--untrained 8] [--out DIR]` (about two minutes
on 2 cores). Runs `slife cas` on the demo's trained CroCo checkpoints with `--untrained` untrained controls (seeds
SEED .. SEED+n-1, the demo's own first) on the demo's held-out pairs and k, into DIR (default
DEMO_DIR/eval/cas_untrained_spread; the demo's own eval/cas is left alone). Prints one markdown row per score (CAS
beyond position and saliency, CAS beyond position): the untrained pairs' mean ± std and range over the n(n-1)/2
pairs, their median jackknife error, the first untrained pair (the demo's one pair before session 19), and
life-vs-life with its distance from the untrained pairs' mean in their standard deviations.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slife.demo import finished_cas
from slife.errors import SlifeError
from slife.eval.cas import run as cas_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--untrained", type=int, default=8, help="untrained controls (>= 3; the demo uses 6 since session 19, 2 before)")
    ap.add_argument("--models", nargs=2, default=["life-kitchen", "life-office"], help="the two life models")
    ap.add_argument("--out", type=Path, default=None, help="where slife cas writes (default in the demo folder)")
    a = ap.parse_args()
    if a.untrained < 3:
        raise SystemExit("error: --untrained must be >= 3 for a spread over pairs")
    try:
        cas_cfg, models, _ = finished_cas(a.demo, untrained=a.untrained)
        unknown = [n for n in a.models if n not in models]
        if unknown:
            raise SlifeError(f"{a.demo}: no CroCo model {', '.join(unknown)} (it has {', '.join(models)})")
        path = cas_run(cas_cfg, [Path(m["checkpoint"]) for m in models.values()],
                       a.out or a.demo / "eval" / "cas_untrained_spread")
    except SlifeError as e:
        raise SystemExit(f"error: {e}") from None
    rep = json.loads(path.read_text())
    kinds = dict(zip(rep["names"], rep["kinds"]))
    life = {rep["names"][list(models).index(n)] for n in a.models}
    demo_uu = {f"untrained-s{sd}" for sd in cas_cfg.untrained_seeds[:2]}
    uu = [r for r in rep["pair_table"] if kinds[r["a"]] == kinds[r["b"]] == "untrained"]
    for key, what in (("cas_beyond_saliency", "beyond position and saliency"), ("cas_calibrated", "beyond position")):
        vals = [r[key] for r in uu]
        m, sd = statistics.mean(vals), statistics.stdev(vals)
        ses = statistics.median(r[f"{key}_se"] for r in uu)
        demo = next(r[key] for r in uu if {r["a"], r["b"]} == demo_uu)
        ll = next(r[key] for r in rep["pair_table"] if {r["a"], r["b"]} == life)
        print(f"| {a.demo.name} | {what} | {len(uu)} | {m:.3f} ± {sd:.3f} ({min(vals):.3f} .. {max(vals):.3f}) | "
              f"{ses:.3f} | {demo:.3f} | {ll:.3f} ({(ll - m) / sd:+.1f} sd) |")


if __name__ == "__main__":
    main()
