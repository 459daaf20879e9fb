"""`slife sfm` at scale: time per stage, peak memory, registration, ATE and revisits linked, by frames and mapper.

For each size N (frames at 2 fps) a synthetic life is rendered once into bench/out/ (`slife synth`, small
images so that rendering is cheap; N / 2 seconds split over D days that start at the same entrance, so every
later day revisits the first day's places; textures of `--texture-size` texels with tiles `--texture-scale`
times their usual size, so that a tile does not repeat within a room and match itself). Then, for each mapper, `slife sfm` runs in a child process
(`nice` is inherited; its peak RSS comes from `os.wait4`), and from its sfm.json and the model:

- per stage: wall and CPU seconds (CPU: every thread of the process), and the load average at the end of
  each stage's chunks, since wall time on a shared machine is inflated;
- registered: share of the frames with a pose in the merged model;
- ATE: RMS (and median) distance of camera centres after the least-squares similarity alignment to the
  life's own poses, in metres and as a share of the trajectory's extent (RMS distance from its mean);
- revisits: the spatial pairs *across days* that the miner finds from the life's own poses and points
  (`--per-frame 0`: every pair with J in [0.15, 0.75]), and the share of them it also finds from the SfM
  model alone (its poses and tracks), the share whose two frames share at least one SfM point (linked at
  all), and the share of the SfM model's cross-day pairs whose frames truly overlap (ground-truth J >= 0.05).
  The control is the same run with loop closure off (`--loop-candidates 0`).

    nice -n 10 .venv/bin/python bench/bench_sfm.py --frames 300 1000 3000 --mappers incremental
    nice -n 10 .venv/bin/python bench/bench_sfm.py --frames 120 --mappers incremental global hierarchical
    nice -n 10 .venv/bin/python bench/bench_sfm.py --frames 120 --mappers incremental --no-loop   # the control
    nice -n 10 .venv/bin/python bench/bench_sfm.py --clips                                        # real videos

Runs resume: a finished `slife sfm` output folder is reused (delete bench/out/sfm-* to measure again). Each
result is appended as one JSON line to bench/out/bench_sfm.jsonl and printed as a markdown row; the tables are
in bench/lives.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CLIPS = ROOT / "../shared/data/videos"


def life_for(frames: int, scene: str, width: int, height: int, seed: int, texture_size: int,
             texture_scale: float) -> Path:
    from slife.synth import SynthConfig, run

    days = max(2, min(8, round(frames / 400)))
    cfg = SynthConfig(kind="life", scene=scene, duration=frames / 2.0, fps=2.0, width=width, height=height,
                      days=days, texture_size=texture_size, texture_scale=texture_scale, points=100_000, depth=False,
                      crf=18, seed=seed)
    return run(cfg, OUT / f"sfm-life-{scene}-{frames}-{width}x{height}-t{texture_size}x{texture_scale:g}-s{seed}")


def watch(proc: subprocess.Popen) -> tuple[float, float]:
    """Wait for `proc` -> (its own peak RSS in GiB, CPU seconds). The peak is the largest VmHWM read from /proc
    every 0.2 s: `ru_maxrss` from wait4 would also count this (large) parent's memory image, which the child
    carries from fork to exec."""
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        peak = max(peak, int(ln.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return peak / 2 ** 20, usage.ru_utime + usage.ru_stime


def run_sfm(life: Path, out: Path, args: list[str]) -> dict:
    """`slife sfm` in a child process -> {wall_s, peak_rss_gib, cpu_s, returncode, stderr tail}."""
    import tempfile

    cmd = [sys.executable, "-m", "slife", "sfm", str(life), "--out", str(out), *args]
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak, cpu = watch(proc)
        err.seek(0)
        tail = err.read()[-2000:]
    return {"wall_s": time.perf_counter() - t, "peak_rss_gib": peak,
            "cpu_s": cpu - before.ru_utime - before.ru_stime, "returncode": proc.returncode, "stderr": tail}


def cross_day_pairs(life: Path, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Spatial pairs (t_a, t_b) across days, all in [0.15, 0.75], mined from `life` (pairs only)."""
    from slife import pairmine as pm

    cfg = pm.MineConfig(strategies=("spatial",), fps=0, pairs_only=True, per_frame=0, workers=2, overwrite=True)
    pm.run(cfg, life, tmp)
    rows = [json.loads(ln) for ln in open(tmp / "pairs.jsonl")]
    ta = np.array([r["t_a"] for r in rows])
    tb = np.array([r["t_b"] for r in rows])
    keep = (ta // 86400) != (tb // 86400)
    lo, hi = np.minimum(ta[keep], tb[keep]), np.maximum(ta[keep], tb[keep])
    return lo, hi


def revisits(life: Path, sfm_out: Path) -> dict:
    """The cross-day spatial pair figures of the module docstring."""
    import logging

    from slife.lives import read_life
    from slife.pairmine.visibility import compute_visibility, jaccard_exact

    logging.getLogger("slife").setLevel(logging.ERROR)
    key = lambda a, b: set(zip(np.round(a, 3), np.round(b, 3)))  # noqa: E731
    ga, gb = cross_day_pairs(life, sfm_out / "gt-pairs")
    sa, sb = cross_day_pairs(sfm_out, sfm_out / "sfm-pairs")
    gt_set, sfm_set = key(ga, gb), key(sa, sb)
    # linked: both frames share at least one SfM point (whatever their Jaccard)
    rec = read_life(sfm_out)
    idx = {round(float(t), 3): i for i, t in enumerate(rec.t)}
    has = [(idx.get(a), idx.get(b)) for a, b in gt_set]
    has = [(i, j) for i, j in has if i is not None and j is not None]
    linked = 0
    for i, j in has:
        if rec.pose_valid[i] and rec.pose_valid[j]:
            linked += bool(np.intersect1d(rec.frame_tracks(i), rec.frame_tracks(j)).size)
    # precision: SfM cross-day pairs whose frames overlap in the ground truth
    gt = read_life(life)
    gidx = {round(float(t), 3): i for i, t in enumerate(gt.t)}
    a = np.array([gidx[round(x, 3)] for x in sa], np.int64)
    b = np.array([gidx[round(x, 3)] for x in sb], np.int64)
    true = float(np.mean(jaccard_exact(compute_visibility(gt, voxel=0.2), a, b) >= 0.05)) if len(a) else None
    return {"gt_cross_day_pairs": len(gt_set), "sfm_cross_day_pairs": len(sfm_set),
            "recovered": len(gt_set & sfm_set) / max(len(gt_set), 1), "linked": linked / max(len(gt_set), 1),
            "sfm_pairs_true": true}


def sfm_args(a, mapper: str, width: int, loop: bool) -> list[str]:
    args = ["--mapper", mapper, "--max-side", str(width), "--threads", "2", "--chunk", str(a.chunk),
            "--chunk-overlap", str(a.chunk_overlap), "--max-features", str(a.max_features), "--overlap", str(a.overlap)]
    return args + ([] if loop else ["--loop-candidates", "0"])


def row(r: dict) -> str:
    st = r.get("stages") or {}
    cell = lambda k: f"{st[k]['wall_s']:.0f} / {st[k]['cpu_s']:.0f}" if k in st else "-"  # noqa: E731
    g = r.get("ground_truth") or {}
    v = r.get("revisits") or {}
    f = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
    return (f"| {r['name']} | {r['frames']} | {r['mapper']}{'' if r['loop'] else ' (no loop)'} | "
            + " | ".join(cell(k) for k in ("frames", "features", "words", "matching", "mapping", "merge"))
            + f" | {r['wall_s']:.0f} / {r['cpu_s']:.0f} | {r['load']:.1f} | {r['peak_rss_gib']:.2f} | "
            f"{100 * r['registered_share']:.1f}% | {f(g.get('ate_rmse'), 3)} / {f(g.get('ate_median'), 3)} "
            f"({f(100 * g['ate_rel'] if g.get('ate_rel') is not None else None, 1)}%) | "
            f"{v.get('gt_cross_day_pairs', '-')} | {f(v.get('recovered'))} | {f(v.get('linked'))} | "
            f"{f(v.get('sfm_pairs_true'))} |")


HEADER = ("| life | frames | mapper | frames | features | words | matching | mapping | merge | total wall / CPU s | "
          "load | peak GiB | registered | ATE RMS / median m (% of extent) | GT cross-day pairs | recovered | "
          "linked | SfM pairs true |\n|" + "---|" * 19)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="*", default=[300, 1000])
    p.add_argument("--mappers", nargs="*", default=["incremental", "global", "hierarchical"])
    p.add_argument("--scene", default="apartment")
    p.add_argument("--size", default="320x240", help="synthetic frames WxH (also --max-side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--texture-size", type=int, default=1024, help="synthetic texture texels per tile side")
    p.add_argument("--texture-scale", type=float, default=5.0, help="synthetic texture tiles span this many times "
                   "their usual size (at 1 a tile repeats across a room, the repeats match each other and SfM folds "
                   "the rooms: bench/lives.md)")
    p.add_argument("--chunk", type=int, default=400)
    p.add_argument("--chunk-overlap", type=int, default=40)
    p.add_argument("--max-features", type=int, default=2048)
    p.add_argument("--overlap", type=int, default=10)
    p.add_argument("--no-loop", action="store_true", help="the control: loop closure off")
    p.add_argument("--clips", action="store_true", help="the real clips in ../shared/data/videos instead")
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    W, H = (int(x) for x in a.size.split("x"))
    print(HEADER, flush=True)
    jobs = []
    if a.clips:
        for clip in ("pillow", "backpack"):
            src = CLIPS / f"{clip}.mp4"
            if not src.is_file():
                print(f"(skipped {clip}: {src} absent)")
                continue
            d = OUT / f"sfm-clip-{clip}"
            d.mkdir(exist_ok=True)
            if not (d / src.name).exists():
                (d / src.name).symlink_to(src.resolve())
            for m in a.mappers:
                jobs.append((clip, d, m, ["--fps", "0", "--mapper", m, "--max-side", "480", "--threads", "2"], True))
    else:
        for n in a.frames:
            life = life_for(n, a.scene, W, H, a.seed, a.texture_size, a.texture_scale)
            for m in a.mappers:
                jobs.append((f"{a.scene} {n}", life, m, sfm_args(a, m, W, not a.no_loop), not a.no_loop))
    for name, life, mapper, args, loop in jobs:
        tag = f"{name.replace(' ', '-')}-{mapper}{'' if loop else '-noloop'}"
        if not a.clips:
            tag += f"-t{a.texture_size}x{a.texture_scale:g}"
        out = OUT / f"sfm-{tag}"
        r = run_sfm(life, out, args)
        if r["returncode"] != 0:
            print(f"| {name} | {mapper} | failed: {r['stderr'].strip().splitlines()[-1:]} |", flush=True)
            continue
        info = json.loads((out / "sfm.json").read_text())
        res = {"name": name, "mapper": mapper, "loop": loop, "frames": info["frames"], "stages": info["stages"],
               "registered_share": info["registered"] / info["frames"], "ground_truth": info.get("ground_truth"),
               "load": os.getloadavg()[0], **{k: r[k] for k in ("wall_s", "cpu_s", "peak_rss_gib")},
               "models": info["models"], "models_merged": info["models_merged"], "pairs": info["pairs"]}
        if not a.clips:
            res["revisits"] = revisits(life, out)
        with open(OUT / "bench_sfm.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
        print(row(res), flush=True)


if __name__ == "__main__":
    main()
