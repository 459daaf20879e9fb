"""Benchmark the training objectives side by side: step time per pair (tiny and ViT-B) and data-wait share.

1. Step time per pair, per objective (croco, croco+egomotion, dinov2, egomotion) and preset (tiny; base =
   ViT-B/16 at 224 px): one process, one torch thread, every objective built from its preset recipe and fed one
   real batch that its own augmentation made from the bench shards (the stream's crops: DINOv2's multi-crop, the
   pair crops of the others). Steps alternate between the objectives (A B C D A B C D ...) and are timed in
   process CPU time (forward, backward, optimiser step, after-step hook: DINOv2's EMA teacher), so that a shared
   machine's load and speed swings hit every objective alike; the median per objective is printed, as ms per pair
   and as a ratio to croco at the same preset.
   A pair is what the stream yields: CroCo and egomotion encode its two views; DINOv2 makes 2 global + 6 local
   crops of each of the two views (2 frames), runs the student on all of them and the teacher on the globals.
2. Data-wait share: a short real run (`slife.train.run`, one loader worker, --precision auto) per objective at
   tiny (and at `--wait-presets`), the share of step time spent in `next(loader)`, from metrics.csv after the
   first window. Goal: < 5% for each objective. Wall-clock: on a loaded machine both sides slow down.
Shards: textured 341x256 JPEG pairs with camera poses (`bench_loader.write_bench_shards(poses=True)`).

    .venv/bin/python bench/bench_objectives.py                      # ~5 min on 2 idle cores
    .venv/bin/python bench/bench_objectives.py --presets tiny --rounds 10
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_loader import write_bench_shards

OBJECTIVES = ("croco", "croco+egomotion", "dinov2", "egomotion")


def one_batch(obj, cfg, shards, batch: int) -> dict:
    """The objective's views of one real batch made by its own augmentation from `shards`."""
    from slife.train.stream import PairStream, resolve_shards

    s = resolve_shards(str(shards))
    stream = PairStream(s, obj.augment(cfg), batch, steps_per_epoch=max(1, s.total // batch), shuffle_buffer=32)
    return obj.views(next(stream.batches()), torch.device("cpu"))


def step_times(preset: str, shards: Path, batch: int, rounds: int) -> dict[str, float]:
    """Median CPU seconds of one optimisation step per objective, the objectives alternating step by step."""
    from slife.train import preset_config
    from slife.train.objectives import objective_class
    from slife.train.optim import make_optimizer

    setup = {}
    for name in OBJECTIVES:
        cfg = dataclasses.replace(preset_config(name, preset), batch_size=batch, steps=1000)
        torch.manual_seed(0)
        obj = objective_class(name).build(cfg)
        opt = make_optimizer(obj, 1e-4, cfg.weight_decay, betas=obj.betas)
        setup[name] = (obj, opt, one_batch(obj, cfg, shards, batch))
    times = {name: [] for name in OBJECTIVES}
    for r in range(rounds + 1):  # round 0 warms up
        for name, (obj, opt, views) in setup.items():
            torch.manual_seed(r)
            t = time.process_time()
            loss, _ = obj(views, r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            obj.after_step(r)
            if r:
                times[name].append(time.process_time() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def wait_share(objective: str, preset: str, shards: Path, steps: int, batch: int, threads: int) -> tuple[float, float]:
    """(data-wait share, pairs/s) of a short real run, after its first metrics window."""
    from slife.train import preset_config, run
    from slife.train.metrics import read_metrics

    log_every = max(1, steps // 5)
    cfg = dataclasses.replace(preset_config(objective, preset), steps=steps, batch_size=batch, threads=threads,
                              num_workers=1, log_every=log_every, save_every=10**6, preview_every=0, warmup_steps=1,
                              resume="never", samples_per_epoch=10 * batch)
    with tempfile.TemporaryDirectory() as out:
        run(cfg, str(shards), out)
        rows = read_metrics(Path(out) / "metrics.csv")[1:]
    return float(np.mean([r["data_wait_share"] for r in rows])), float(np.mean([r["pairs_per_s"] for r in rows]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "base"], help="presets whose step time is measured")
    ap.add_argument("--tiny-batch", type=int, default=32, help="pairs per step at tiny")
    ap.add_argument("--big-batch", type=int, default=2, help="pairs per step at the other presets")
    ap.add_argument("--rounds", type=int, default=5, help="timed steps per objective at tiny (after a warm-up)")
    ap.add_argument("--big-rounds", type=int, default=2, help="timed steps per objective at the other presets")
    ap.add_argument("--wait-presets", nargs="*", default=["tiny"], help="presets of the data-wait runs")
    ap.add_argument("--wait-steps", type=int, default=25, help="steps of a data-wait run at tiny (3 elsewhere)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the data-wait runs")
    ap.add_argument("--pairs", type=int, default=256, help="pairs in the benchmark shards")
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        shards = write_bench_shards(Path(tmp) / "shards", a.pairs, poses=True)
        torch.set_num_threads(1)
        print("| objective | preset | batch (pairs) | CPU ms per pair (1 thread) | vs croco |")
        print("|---|---|---:|---:|---:|", flush=True)
        for preset in a.presets:
            tiny = preset == "tiny"
            batch = a.tiny_batch if tiny else a.big_batch
            t = step_times(preset, shards, batch, a.rounds if tiny else a.big_rounds)
            for name in OBJECTIVES:
                print(f"| {name} | {preset} | {batch} | {1000 * t[name] / batch:.1f} | {t[name] / t['croco']:.2f} |",
                      flush=True)
        print(f"\n| objective | preset | run: steps x pairs, {a.threads} threads, 1 loader worker | pairs/s (wall) | "
              "data-wait share |")
        print("|---|---|---|---:|---:|", flush=True)
        for preset in a.wait_presets:
            tiny = preset == "tiny"
            steps, batch = (a.wait_steps, a.tiny_batch) if tiny else (3, a.big_batch)
            for name in OBJECTIVES:
                share, rate = wait_share(name, preset, shards, steps, batch, a.threads)
                print(f"| {name} | {preset} | {steps} x {batch} | {rate:.1f} | {share:.1%} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
