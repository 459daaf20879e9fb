"""Shard writing speed: pairs written per second, side by side with only decoding + JPEG-encoding the frames.

The baseline is the least work any writer must do: decode every frame the pairs use once, resize it to the
stored short side and JPEG-encode it. The writer does that plus tar members, JSON, sha256 and stats files.
Goal: the writer reaches >= 0.8 of the baseline's speed (ratio of times). Procedural posed life with
textured PNG frames (640 x 480), temporal + spatial + augmented pairs.

    .venv/bin/python bench/bench_mine_write.py --frames 300

Prints a markdown table; results go into bench/pairmine.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def textured_frames(image_dir: Path, frames: int, videos: int, size=(640, 480), seed=0) -> None:
    """Pre-write textured PNGs where make_life expects its frames (day{v}/{k:06d}.png)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    W, H = size
    per = np.diff(np.linspace(0, frames, videos + 1).astype(int))
    base = rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8)
    for v, m in enumerate(per):
        d = image_dir / f"day{v}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(m):
            img = np.asarray(Image.fromarray(np.roll(base, k + 7 * v, axis=1)).resize((W, H), Image.BICUBIC))
            noise = rng.integers(0, 24, (H, W, 3), dtype=np.uint8)
            Image.fromarray(img // 2 + noise).save(d / f"{k:06d}.png")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="also time the writer with this many workers (1: skip)")
    a = p.parse_args()
    from slife import pairmine as pm
    from slife.pairmine.procedural import make_life
    from slife.pairmine.shards import encode_frame

    tmp = Path(tempfile.mkdtemp(prefix="bench_write_"))
    try:
        textured_frames(tmp / "img", a.frames, 3)
        life = make_life(a.frames, rooms=(3, 3), videos=3, seed=0, image_dir=tmp / "img", image_size=(640, 480))
        cfg = pm.MineConfig(strategies=("spatial", "temporal", "augmented"), fps=0, short_side=a.short_side,
                            pairs_per_shard=500, voxel=0.3)
        # pairs only first (mining time is not writing time)
        t, c = time.perf_counter(), time.process_time()
        pm.run(pm.MineConfig(**{**cfg.__dict__, "pairs_only": True}), life, tmp / "pairs")
        t_mine, c_mine = time.perf_counter() - t, time.process_time() - c
        rows = [json.loads(x) for x in (tmp / "pairs" / "pairs.jsonl").read_text().splitlines()]
        used = sorted({r["a"] for r in rows} | {r["b"] for r in rows})
        # baseline: decode + resize + JPEG-encode each used frame once
        t, c = time.perf_counter(), time.process_time()
        nbytes = 0
        for i, rgb in life.iter_frames(used):
            nbytes += len(encode_frame(rgb, a.short_side, 90)[0])
        t_base, c_base = time.perf_counter() - t, time.process_time() - c
        # the writer (includes mining again: subtract the pairs-only time measured above)
        t, c = time.perf_counter(), time.process_time()
        man = json.loads(pm.run(cfg, life, tmp / "shards").read_text())
        t_write = time.perf_counter() - t - t_mine
        c_write = time.process_time() - c - c_mine
        n = man["samples"]
        if a.workers > 1:
            t = time.perf_counter()
            man2 = json.loads(pm.run(pm.MineConfig(**{**cfg.__dict__, "workers": a.workers}), life,
                                     tmp / f"shards_w{a.workers}").read_text())
            t_w = time.perf_counter() - t - t_mine
            same = [x["sha256"] for x in man2["shards"]] == [x["sha256"] for x in man["shards"]]
        print(f"procedural life, {a.frames} frames of 640x480 PNG, stored short side {a.short_side}\n")
        print("| pairs | unique frames | encode-only wall s (CPU s) | writer wall s (CPU s) | pairs/s written (CPU) | "
              "writer / encode-only speed, wall (CPU) |")
        print("|---|---|---|---|---|---|")
        print(f"| {n} | {len(used)} | {t_base:.2f} ({c_base:.2f}) | {t_write:.2f} ({c_write:.2f}) | "
              f"{n / c_write:.0f} | {t_base / t_write:.2f} ({c_base / c_write:.2f}) |")
        if a.workers > 1:
            print(f"\n--workers {a.workers}: writer {t_w:.2f} s wall (1 worker: {t_write:.2f} s; "
                  f"{t_write / t_w:.2f}x), tars byte-identical to 1 worker: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
