"""Benchmark: synthetic life rendering speed at 256x256 (frames/s), split into ray cast, shading, encoding.

Run: .venv/bin/python bench/bench_synth.py [--frames 60] [--scenes kitchen,office]
Renders a head-worn walk per scene with and without baked shadows/occlusion, timing each stage (wall and
CPU time) on the same poses, and prints a markdown table (goal: >= 20 frames/s for render + encode).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from slife.synth import SynthConfig, _write_png16
from slife.synth.encode import VideoWriter
from slife.synth.render import Renderer, depth_to_png_mm
from slife.synth.scenes import build_scene
from slife.synth.trajectory import life_trajectory


def bench(scene_name: str, frames: int, shadows: bool, size: int = 256) -> dict:
    cfg = SynthConfig(scene=scene_name, width=size, height=size, fps=10.0, shadows=shadows)
    t0 = time.perf_counter()
    scene = build_scene(scene_name, 0, cfg.texture_size)
    build = time.perf_counter() - t0
    _, T, _ = life_trajectory(scene, 1, frames / cfg.fps, cfg.fps, np.random.default_rng(0))
    t0 = time.perf_counter()
    r = Renderer(scene, cfg.camera(), shadows=shadows)  # bakes the lighting
    build += time.perf_counter() - t0
    wall = np.zeros(4)  # cast, shade, encode, depth PNG (seconds, summed)
    cpu = np.zeros(4)
    with tempfile.TemporaryDirectory() as d:
        with VideoWriter(Path(d) / "v.mp4", size, size, cfg.fps) as vw:
            for k in range(len(T)):
                marks = [(time.perf_counter(), time.process_time())]
                hits = r.cast(T[k])
                marks.append((time.perf_counter(), time.process_time()))
                rgb = r.shade(hits)
                marks.append((time.perf_counter(), time.process_time()))
                vw.write(rgb, k)
                marks.append((time.perf_counter(), time.process_time()))
                _write_png16(Path(d) / f"{k:06d}.png", depth_to_png_mm(hits["depth"]))
                marks.append((time.perf_counter(), time.process_time()))
                m = np.array(marks)
                wall += np.diff(m[:, 0])
                cpu += np.diff(m[:, 1])
    n = len(T)
    ms_w, ms_c = 1e3 * wall / n, 1e3 * cpu / n
    return {"scene": scene_name, "shadows": shadows, "tris": scene.info["triangles"], "build_s": build,
            "fps": 1e3 / ms_w[:3].sum(), "fps_cpu": 1e3 / ms_c[:3].sum(), "fps_png": 1e3 / ms_w.sum(),
            "wall": ms_w, "cpu": ms_c}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per measurement")
    ap.add_argument("--scenes", default="kitchen,office", help="comma-separated scene names")
    args = ap.parse_args()
    rows = [bench(s, args.frames, sh) for s in args.scenes.split(",") for sh in (False, True)]
    print(f"256x256, {args.frames} frames per row, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(other jobs share them: wall-clock is the honest figure for this run, CPU time what an idle machine "
          "would roughly need). Stage columns: wall ms / CPU ms per frame; CPU counts every thread.\n")
    print("| scene | shadows+AO | triangles | scene build s | frames/s wall | frames/s by CPU time | ray cast ms "
          "| shading ms | encoding ms | + depth PNG ms | frames/s wall with depth PNGs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = " | ".join(f"{w:.1f} / {c:.1f}" for w, c in zip(r["wall"], r["cpu"]))
        print(f"| {r['scene']} | {'yes' if r['shadows'] else 'no'} | {r['tris']} | {r['build_s']:.2f} | "
              f"{r['fps']:.1f} | {r['fps_cpu']:.1f} | {st} | {r['fps_png']:.1f} |")
    print("\n| `slife.synth.run` end to end (incl. scene build, depth PNGs) | frames/s wall | frames/s by CPU time |")
    print("|---|---|---|")
    for s in args.scenes.split(","):
        w, c = bench_run(s, args.frames)
        print(f"| {s}, {args.frames} frames | {w:.1f} | {c:.1f} |")


def bench_run(scene_name: str, frames: int, size: int = 256) -> tuple[float, float]:
    """`slife.synth.run` end to end (scene build and bake, poses, video + depth PNGs on the writer thread, no points)."""
    from slife.synth import run

    cfg = SynthConfig(scene=scene_name, width=size, height=size, fps=10.0, days=1, duration=frames / 10.0, points=0)
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        run(cfg, Path(d) / "life")
        return frames / (time.perf_counter() - t0), frames / (time.process_time() - c0)


if __name__ == "__main__":
    main()
