"""Appending a day to a shard set vs mining the whole grown life again, for lives of growing length.

For each life length D (days): a synthetic life of D days (`slife synth`, one recording a day: a 1-day life
grown with `append_days`, so every length shares its first days), mined into a set (generation 0); then the
life grows by one day and, side by side on the same machine, (a) `slife mine-pairs` on the same --out appends
generation 1 (only the pairs that involve the new day's frames) and (b) the same command into a new folder
mines the whole D+1-day life. Both write real shards (video decoding, JPEG encoding, tars, stats, manifest);
one worker. Goal (issue 17): the append costs in proportion to the new day, not to the life.
Inside (a), the time spent reading the life (ingest: every video probed), fingerprinting its recordings,
finding pairs (visibility: the old frames' rows read from the set's per-generation cache and only the new
day's frames projected; spatial: the new frames' exact overlaps with every frame, `spatial.new_frame_pairs`;
temporal, random and augmented over the grown life, kept where a new frame is involved), and writing the tars
is given apart. Also timed apart: the append's visibility (cache + new frames: `generations.grown_visibility`,
outside "find pairs"; the whole life's is inside it), the spatial strategy's own CPU time inside "find pairs"
(`spatial.find_pair_arrays`), the append's lookup of the old frames it takes from the old tars (`old_frames` +
`stored_locations`: the earlier generations' frame-location indexes, `locations-%04d.npz`; before those
indexes, the earlier pairs.jsonl and the old tars' headers were read), and the writing of the new
generation's index (`save_locations`: its new tars' headers, inside the total but outside "write"). Reading
the life (ingest: every video probed) and fingerprinting its recordings are given apart: an append must do
both over the whole life to tell an unchanged recording from a changed one.

    .venv/bin/python bench/bench_mine_append.py --days 10 20 30

Prints a markdown table (wall and CPU seconds); results go into bench/pairmine.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


class Timer:
    """Wall and CPU time spent in wrapped functions, by name."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def wrap(self, module, name: str, label: str):
        real = getattr(module, name)

        def timed(*a, **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return real(*a, **k)
            finally:
                self.wall[label] = self.wall.get(label, 0.0) + time.perf_counter() - w
                self.cpu[label] = self.cpu.get(label, 0.0) + time.process_time() - c

        setattr(module, name, timed)

    def reset(self):
        self.wall, self.cpu = {}, {}


def timed_run(cfg, life, out):
    from slife import pairmine as pm

    w, c = time.perf_counter(), time.process_time()
    man = pm.run(cfg, life, out)
    return time.perf_counter() - w, time.process_time() - c, man


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, nargs="+", default=[30], help="life lengths before the appended day")
    p.add_argument("--day-seconds", type=float, default=20.0, help="seconds of video a day")
    p.add_argument("--render-fps", type=float, default=5.0)
    p.add_argument("--fps", type=float, default=2.0, help="mine-pairs --fps")
    p.add_argument("--size", type=int, nargs=2, default=[128, 96], help="rendered frame width height (the "
                   "stored short side is the height)")
    p.add_argument("--keep", type=Path, default=None, help="work here and keep the folders (default: a temp dir)")
    a = p.parse_args()
    import json

    from slife import pairmine as pm
    from slife.pairmine import generations, pipeline
    from slife.synth import SynthConfig, append_days, run

    tmp = a.keep or Path(tempfile.mkdtemp(prefix="bench_append_"))
    tmp.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    timer.wrap(pipeline, "ingest", "ingest")
    timer.wrap(generations, "recordings", "fingerprints")
    timer.wrap(pipeline, "find_all", "find pairs")
    timer.wrap(pipeline, "write_all", "write")
    from slife.pairmine import spatial

    timer.wrap(spatial, "find_pair_arrays", "spatial")
    timer.wrap(generations, "grown_visibility", "visibility")  # an append's (in the whole life: inside find pairs)
    timer.wrap(generations, "old_frames", "old")  # an append's lookup of the old frames in the location indexes
    timer.wrap(generations, "stored_locations", "old")
    timer.wrap(generations, "save_locations", "index")  # the new generation's location index
    cfg = pm.MineConfig(strategies=("spatial", "temporal", "random", "augmented"), fps=a.fps, short_side=a.size[1],
                        pairs_per_shard=500)
    rows = []
    try:
        grow = tmp / "grow"
        t0 = time.perf_counter()
        if not (grow / "life.json").exists():
            run(SynthConfig(kind="life", scene="apartment", duration=a.day_seconds, fps=a.render_fps, width=a.size[0],
                            height=a.size[1], days=1, texture_size=128, points=50_000, seed=0), grow)
        have = 1 + json.loads((grow / "life.json").read_text()).get("appended_days", 0)
        for D in sorted(a.days):
            if D < have and not (tmp / f"life{D}").exists():
                raise SystemExit(f"{grow} already holds {have} days, more than {D}: use another --keep folder")
            if D > have:
                append_days(grow, D - have)
                have = D
            life = tmp / f"life{D}"
            if not life.exists():
                shutil.copytree(grow, life)  # copy2 keeps mtimes: the copy's recordings stay unchanged
            print(f"# {D} days ready ({time.perf_counter() - t0:.0f} s)", flush=True)
            for d in (tmp / f"set{D}", tmp / f"whole{D}"):
                shutil.rmtree(d, ignore_errors=True)
            g0_wall, g0_cpu, _ = timed_run(cfg, life, tmp / f"set{D}")
            append_days(life, 1)
            timer.reset()
            ap_wall, ap_cpu, man = timed_run(cfg, life, tmp / f"set{D}")
            parts = {k: (timer.wall[k], timer.cpu[k]) for k in timer.wall}
            timer.reset()
            wh_wall, wh_cpu, whole = timed_run(cfg, life, tmp / f"whole{D}")
            wparts = {k: (timer.wall[k], timer.cpu[k]) for k in timer.wall}
            g1 = json.loads(man.read_text())["generations"][1]
            wm = json.loads(whole.read_text())
            rows.append((D, wm["summary"]["frames_sampled"], g1["summary"]["frames_new"], g1["pairs"], wm["samples"],
                         g0_wall, ap_wall, ap_cpu, wh_wall, wh_cpu, parts, wparts))
            print(f"# {D}: append {ap_wall:.1f} s ({ap_cpu:.1f} CPU), whole {wh_wall:.1f} s ({wh_cpu:.1f} CPU)",
                  flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n| days before | sampled frames after | new frames | pairs appended / whole life | "
          "append wall s (CPU s) | whole life wall s (CPU s) | append / whole, wall (CPU) | "
          "append CPU s: read life / fingerprints / visibility / find pairs (spatial) / old frames' locations / "
          "write / index | whole life CPU s: same |")
    print("|---|---|---|---|---|---|---|---|---|")
    for D, n, new, pa, pw, _, aw, ac, ww, wc, parts, wparts in rows:
        def split(p):
            c = {k: v[1] for k, v in p.items()}
            return (f"{c.get('ingest', 0):.2f} / {c.get('fingerprints', 0):.3f} / {c.get('visibility', 0):.2f} / "
                    f"{c.get('find pairs', 0):.2f} ({c.get('spatial', 0):.3f}) / {c.get('old', 0):.3f} / "
                    f"{c.get('write', 0):.2f} / {c.get('index', 0):.3f}")
        print(f"| {D} | {n} | {new} | {pa} / {pw} ({pa / pw:.3f}) | {aw:.1f} ({ac:.1f}) | {ww:.1f} ({wc:.1f}) | "
              f"{aw / ww:.3f} ({ac / wc:.3f}) | {split(parts)} | {split(wparts)} |")


if __name__ == "__main__":
    main()
