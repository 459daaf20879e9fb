"""The demo's attention claims with the decoder read as it is trained, for `slife demo` folders made before the demo
read it so (session 18): each folder's attention stage again, the target masked, beside the target complete.

Run: `.venv/bin/python bench/bench_masked_read.py DEMO_DIR [DEMO_DIR ...]` (about two minutes a folder on 2 cores).
For a folder that read the attention complete (`attention_masked` false in its stages.json plan), it runs the demo's
own attention jobs (`demo._attention_jobs`) with the plan's `attention_masked` true, on the same checkpoints,
held-out pairs, k and untrained controls, into DEMO_DIR/masked-read/eval, and writes DEMO_DIR/masked-read/summary.json
as today's demo would (its `other_read` the target complete; the probe's numbers are the folder's own, not
recomputed); a rerun reuses that stage. A folder that already read it masked is only read. Then prints
`bench_demo_seeds.py`'s tables twice, the folders taken as the seeds of one study: the claims read masked, then
complete.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from bench_demo_seeds import print_tables

from slife.demo import _EVAL_SETTINGS, _attention_jobs, _plan, _side_by_side, finished_stages, same_plan, with_grown
from slife.demo_report import read_other_way, summarize
from slife.errors import SlifeError
from slife.io import atomic_write_json


def masked_summary(demo: Path) -> dict:
    """The folder's summary.json with the attention read masked (and complete in `other_read`)."""
    cfg, stored, res = finished_stages(demo, ("synth", "mine", "train", "eval", "report"))
    lives, shards, runs, ev = (res[k] for k in ("synth", "mine", "train", "eval"))
    growing = res.get("grow")
    if stored["attention_masked"]:
        return json.loads((demo / "summary.json").read_text())
    runs, shards = with_grown(runs, shards, growing)
    # the evaluation settings the folder was scored with (k, untrained controls), today's plan for the rest
    # (a setting older than the folder is absent there: `same_plan` names it)
    plan = replace(_plan(cfg), **{k: tuple(stored[k]) if isinstance(stored[k], list) else stored[k]
                                  for k in _EVAL_SETTINGS if k in stored})
    same_plan(demo, stored, plan)
    plan = replace(plan, attention_masked=True)
    out = demo / "masked-read"
    done = out / "attention.json"
    res = json.loads(done.read_text()) if done.exists() else {}
    if not {"cas", "cas_other_read", "match", "match_other_read"} <= set(res):  # none yet, or an older script's
        jobs = _attention_jobs(cfg, plan, out, lives, shards, runs)
        res = {k: str(r) for k, (r, _) in _side_by_side(jobs, 1, lambda *_, **__: None).items()}
        atomic_write_json(done, res, indent=2)
    summary = summarize(cfg, plan, runs, {**ev, **res}, growing)
    atomic_write_json(out / "summary.json", summary, indent=2)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demos", type=Path, nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(1)  # as `demo._do_eval`'s jobs
    try:
        runs = [masked_summary(d) for d in a.demos]
    except SlifeError as e:
        raise SystemExit(f"error: {e}") from None
    print("\n## the decoder's attention read with the target masked (the claims' reading since session 18)\n")
    print_tables(runs, runs[0]["study"])
    print("\n## read with the target complete (DESIGN.md's CAS; the demo's reading before session 18)\n")
    print_tables([read_other_way(r) for r in runs], runs[0]["study"])


if __name__ == "__main__":
    main()
