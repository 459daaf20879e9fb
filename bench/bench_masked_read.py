"""The demo's attention claims with the decoder read as it is trained: finished `slife demo` folders scored again with
the target view masked (`slife cas --masked`), beside their own scores with nothing masked.

Run: `.venv/bin/python bench/bench_masked_read.py DEMO_DIR [DEMO_DIR ...]` (a few minutes a folder on 2 cores).
For each folder it runs the demo's own attention stage (`demo._eval_attention`: CAS at the end and at half of
training, top-1 from CAS's ground truth, zero-shot correspondence on graffiti) on the same checkpoints, held-out
pairs, k and untrained controls, with the plan's `attention_masked` set the other way from the folder's, into
DEMO_DIR/masked-read/eval (DEMO_DIR/complete-read for a folder that read masked), and writes
summary.json there (the probe's numbers are the folder's own, not recomputed). A rerun reuses what it wrote.
Then prints `bench_demo_seeds.py`'s tables for both readings, the folders taken as the seeds of one study.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

from bench_demo_seeds import print_tables

from slife.demo import _PLAN_BEFORE, DemoConfig, _eval_attention, _no_task, _plan
from slife.demo_report import summarize
from slife.errors import SlifeError
from slife.io import atomic_write_json


def rescored(demo: Path) -> tuple[dict, dict]:
    """(the folder's summary.json, the summary with the other reading), running the other reading if needed."""
    path = demo / "stages.json"
    try:
        st = json.loads(path.read_text())
        ident, stages = st["identity"], st["stages"]
        cfg = DemoConfig(**{k: v for k, v in ident["config"].items() if k in DemoConfig.__dataclass_fields__})
        lives, shards, runs, ev = (stages[k]["result"] for k in ("synth", "mine", "train", "eval"))
        own = json.loads((demo / "summary.json").read_text())
    except FileNotFoundError as e:
        raise SlifeError(f"{e.filename}: not found (not a finished `slife demo` folder)") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SlifeError(f"{path}: not a finished demo's stages.json: {e!r}") from None
    masked = ident["plan"].get("attention_masked", _PLAN_BEFORE["attention_masked"])
    plan = replace(_plan(cfg), attention_masked=masked)
    stored = {**_PLAN_BEFORE, **ident["plan"]}
    now = json.loads(json.dumps(asdict(plan)))
    changed = sorted(k for k in now if now[k] != stored.get(k))
    if changed:
        raise SlifeError(f"{path}: made with another plan ({', '.join(changed)}); score it with the code that made it")
    other = replace(plan, attention_masked=not masked)
    out = demo / ("complete-read" if masked else "masked-read")
    done = out / "attention.json"
    if done.exists():
        res = json.loads(done.read_text())
    else:
        res = _eval_attention(cfg, other, out, lives, shards, runs, _no_task)
        atomic_write_json(done, res, indent=2)
    summary = summarize(cfg, other, runs, {**ev, **res})
    atomic_write_json(out / "summary.json", summary, indent=2)
    return own, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demos", type=Path, nargs="+")
    a = ap.parse_args()
    try:
        both = [rescored(d) for d in a.demos]
    except SlifeError as e:
        raise SystemExit(f"error: {e}") from None
    study = both[0][0]["study"]
    for i in range(2):
        print(f"\n## attention read: {both[0][i].get('attention_read', 'complete')}\n")
        print_tables([b[i] for b in both], study)


if __name__ == "__main__":
    main()
