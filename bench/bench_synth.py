"""Benchmark: synthetic life rendering speed at 256x256 (frames/s), split into ray cast, shading, encoding.

Run: .venv/bin/python bench/bench_synth.py [--frames 60] [--scenes kitchen,office]
Renders a head-worn walk per scene with and without shadows, timing each stage on the same poses, and
prints a markdown table (goal: >= 20 frames/s end to end, without the depth PNGs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from slife.synth import SynthConfig
from slife.synth.encode import VideoWriter
from slife.synth.render import Renderer
from slife.synth.scenes import build_scene
from slife.synth.trajectory import life_trajectory


def bench(scene_name: str, frames: int, shadows: bool, size: int = 256) -> dict:
    cfg = SynthConfig(scene=scene_name, width=size, height=size, fps=10.0, shadows=shadows)
    t0 = time.perf_counter()
    scene = build_scene(scene_name, 0, cfg.texture_size)
    build = time.perf_counter() - t0
    _, T, _ = life_trajectory(scene, 1, frames / cfg.fps, cfg.fps, np.random.default_rng(0))
    r = Renderer(scene, cfg.camera(), shadows=shadows)
    with tempfile.TemporaryDirectory() as d:
        with VideoWriter(Path(d) / "v.mp4", size, size, cfg.fps) as vw:
            t0 = time.perf_counter()
            for k in range(len(T)):
                rgb, _ = r.render(T[k])
                vw.write(rgb, k)
        total = time.perf_counter() - t0
    n = len(T)
    return {"scene": scene_name, "shadows": shadows, "tris": scene.info["triangles"], "build_s": build,
            "fps": n / total, "cast_ms": 1e3 * r.timing["cast"] / n, "shade_ms": 1e3 * r.timing["shade"] / n,
            "encode_ms": 1e3 * vw.seconds / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per measurement")
    ap.add_argument("--scenes", default="kitchen,office", help="comma-separated scene names")
    args = ap.parse_args()
    rows = [bench(s, args.frames, sh) for s in args.scenes.split(",") for sh in (False, True)]
    print("| scene | shadows | triangles | scene build s | frames/s | ray cast ms | shading ms | encoding ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {'yes' if r['shadows'] else 'no'} | {r['tris']} | {r['build_s']:.2f} | "
              f"{r['fps']:.1f} | {r['cast_ms']:.1f} | {r['shade_ms']:.1f} | {r['encode_ms']:.1f} |")


if __name__ == "__main__":
    main()
