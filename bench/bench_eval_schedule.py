"""The demo's evaluation stage under two schedules, side by side on one finished `slife demo` folder's models.

Run: `.venv/bin/python bench/bench_eval_schedule.py DEMO_DIR --out OUT [--repeats 1] [--side-by-side 2]` (the
default study's models: 17 and 20 min for the two schedules on 2 idle cores, bench/eval.md). The schedules, each
run `--repeats` times, alternating:
- `one pool` (the demo since session 21, `demo._do_eval`): the depth probes (`demo._probe_jobs`) and then CAS
  and correspondence (`demo._attention_jobs`) in one pool, `--side-by-side` jobs at a time, so the attention jobs
  fill the cores the last probes leave free;
- `probes, then attention` (the demo before): the probes in that pool, then the attention jobs one after another
  in this process on one thread (the demo ran CAS complete before CAS at half training, and loaded the models once
  for both correspondence reads, where these jobs load them for each: about a second).
Both write into OUT/<schedule>-<repeat>/eval as the demo writes DEMO_DIR/eval. Prints, as markdown, each run's wall
seconds, the sum of its jobs' seconds and the core-seconds left idle (side-by-side x wall minus that sum), each
job's seconds, the ratio of the schedules' mean walls, and whether both wrote the same numbers (every number in
each job's json but its timings): the schedule must change when the work is done, not what it computes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from slife.demo import _attention_jobs, _plan, _probe_jobs, _side_by_side, finished_stages, same_plan, with_grown
from slife.errors import SlifeError

TIMINGS = {"seconds", "pairs_per_s", "throughput_per_s"}  # keys whose values are clocks, not results


def numbers(x, path: str = "") -> dict:
    """Every number in a json tree but its timings: {path: value}."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() if key not in TIMINGS for k, v in numbers(val, f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in numbers(val, f"{path}[{i}]").items()}
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return {path: float(x)}
    return {}


def results(done: dict) -> dict:
    """job name -> the numbers of the json it wrote (a probe's probe.json, CAS's cas.json, ...)."""
    return {name: numbers(json.loads(Path(res).read_text())) for name, (res, _) in done.items()}


def run_schedule(schedule: str, jobs: tuple, parallel: int) -> tuple[float, dict]:
    """One evaluation under `schedule`: (wall seconds, job name -> (result, seconds))."""
    probes, attention = jobs
    quiet = lambda *_, **__: None  # noqa: E731
    t0 = time.perf_counter()
    if schedule == "one pool":
        done = _side_by_side(probes + attention, parallel, quiet)
    else:
        done = _side_by_side(probes, parallel, quiet)
        done.update(_side_by_side(attention, 1, quiet))
    return time.perf_counter() - t0, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path, help="a `slife demo` folder whose training has finished")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each schedule, alternating (default 1)")
    ap.add_argument("--side-by-side", type=int, default=2, help="jobs at once, as `slife demo --side-by-side`")
    a = ap.parse_args()
    if a.repeats < 1 or a.side_by_side < 1:
        ap.error("--repeats and --side-by-side must be at least 1")
    try:
        cfg, stored, res = finished_stages(a.demo, ("synth", "mine", "train"))
        plan = _plan(cfg)
        same_plan(a.demo, stored, plan)
        runs, shards = with_grown(res["train"], res["mine"], res.get("grow"))
        lives = res["synth"]
    except SlifeError as e:
        raise SystemExit(f"error: {e}") from None
    torch.set_num_threads(1)  # as `demo._do_eval`: `probes, then attention` runs its attention jobs here
    schedules = ("one pool", "probes, then attention")
    rows, walls, outputs, seconds = [], {s: [] for s in schedules}, {}, {}
    for r in range(a.repeats):
        for schedule in schedules if r % 2 == 0 else schedules[::-1]:
            out = a.out / f"{schedule.replace(', ', '-').replace(' ', '-')}-{r}"
            probes, _, _ = _probe_jobs(cfg, plan, out, lives, runs)
            jobs = (probes, _attention_jobs(cfg, plan, out, lives, shards, runs))
            wall, done = run_schedule(schedule, jobs, a.side_by_side)
            work = sum(s for _, s in done.values())
            longest = max(done, key=lambda n: done[n][1])
            rows.append(f"| {schedule} | {r} | {wall:.0f} | {work:.0f} | {a.side_by_side * wall - work:.0f} | "
                        f"{longest} ({done[longest][1]:.0f} s) |")
            walls[schedule].append(wall)
            outputs[(schedule, r)] = results(done)
            seconds[(schedule, r)] = {name: sec for name, (_, sec) in done.items()}
            print(f"{schedule}, run {r}: {wall:.0f} s", flush=True)
    print(f"\n{a.demo}: {len(probes)} depth probes and {len(jobs[1])} attention jobs "
          f"({', '.join(n for n, _, _ in jobs[1])}), {a.side_by_side} side by side\n")
    print("| schedule | run | wall s | jobs' s | idle core-s | longest job |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| job | " + " | ".join(f"{s}, run {r} (s)" for s, r in outputs) + " |\n|---|"
          + "---|" * len(outputs))
    for name, _, _ in probes + jobs[1]:
        print(f"| {name} | " + " | ".join(f"{seconds[key][name]:.0f}" for key in outputs) + " |")
    one, before = (statistics.mean(walls[s]) for s in schedules)
    print(f"\none pool / probes, then attention, mean wall: {one / before:.3f} ({before - one:.0f} s saved)")
    first = outputs[(schedules[0], 0)]
    worst = 0.0
    for key, other in outputs.items():
        for job, nums in other.items():
            if set(nums) != set(first[job]):
                raise SystemExit(f"error: {job} of {key} wrote other fields than {schedules[0]}'s")
            for k, v in nums.items():
                w = first[job][k]
                if math.isnan(v) != math.isnan(w):
                    raise SystemExit(f"error: {job} {k} of {key} is {v}, {schedules[0]}'s {w}")
                worst = max(worst, 0.0 if math.isnan(v) else abs(v - w))
    print(f"largest difference between the runs' numbers (timings aside): {worst:.3g}")


if __name__ == "__main__":
    try:
        main()
    except SlifeError as e:  # a job's one-line error (a model that will not load, a missing pair folder)
        raise SystemExit(f"error: {e}") from None
