"""The demo's numbers across seeds: run `slife demo` for several seeds and print mean and spread.

Run: `.venv/bin/python bench/bench_demo_seeds.py --budget-minutes 15 --seeds 0 1 2` (about 12 min a seed on
2 idle cores; a smaller budget shrinks the lives and training). Outputs go to bench/out/demo-seed{S}/ (a rerun
resumes). Prints one markdown table: each report number's mean and standard deviation over the seeds, and
the wall time per stage.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slife.demo import DemoConfig, run
from slife.demo_report import _cas_groups


def numbers(out: Path) -> dict:
    """The report's headline numbers of one demo run."""
    st = json.loads((out / "stages.json").read_text())["stages"]
    ev = st["eval"]["result"]
    cas = json.loads(Path(ev["cas"]).read_text())
    g = _cas_groups(cas)
    row = {f"CAS {k.replace('_', ' ')}": v for k, v in g.items() if k != "chance"}
    acc = cas.get("ground_truth", {}).get("accuracy", {})
    lives = [n for n in acc if n.startswith("life-")]
    if lives:
        row["top-1 accuracy, displaced, life models"] = statistics.mean(acc[n]["displaced"] for n in lives)
    for name, p in ev["probe"].items():
        row[f"probe AbsRel {name}"] = json.loads(Path(p).read_text())["metrics"]["abs_rel"]
    match = json.loads(Path(ev["match"]).read_text())
    aepe = [r["overall"]["model"]["aepe"] for r in match["models"].values()]
    row["match AEPE, mean over models"] = statistics.mean(aepe)
    row["match AEPE, zero flow"] = next(iter(match["models"].values()))["overall"]["identity"]["aepe"]
    for k, v in st.items():
        row[f"seconds: {k}"] = v["seconds"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget-minutes", type=float, default=15.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    a = ap.parse_args()
    rows = []
    for s in a.seeds:
        out = a.out / f"demo-b{a.budget_minutes:g}-seed{s}"
        run(DemoConfig(budget_minutes=a.budget_minutes, seed=s), out)
        rows.append(numbers(out))
    keys = [k for k in rows[0] if all(k in r and r[k] is not None for r in rows)]
    print(f"| number (budget {a.budget_minutes:g} min) | " + " | ".join(f"seed {s}" for s in a.seeds)
          + " | mean | std |")
    print("|---|" + "---|" * (len(a.seeds) + 2))
    for k in keys:
        vals = [float(r[k]) for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        nd = 1 if k.startswith(("seconds", "match")) else 3
        print(f"| {k} | " + " | ".join(f"{v:.{nd}f}" for v in vals) + f" | {statistics.mean(vals):.{nd}f} | {sd:.{nd}f} |")


if __name__ == "__main__":
    main()
