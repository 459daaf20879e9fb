"""Benchmark the training input pipeline and the tiny model's step rate; prints markdown tables.

1. Loader vs bare JPEG decoding, per worker (one process): pairs/s of `stream.PairStream` (tar reading,
   decode, two independent crops + colour jitter draw, batching) against PIL decoding alone of JPEG bytes
   of the same shards held in memory. Goal: ratio >= 0.8. The two alternate batch by batch (32 pairs each)
   and are timed in process CPU time, because this VM's speed swings by +-30% over seconds: alternating
   whole runs (as this bench did before) gave ratios from 0.67 to 0.88 for the same code.
2. Share of step time spent waiting for data in a short `tiny` run (`slife.train.run`, metrics.csv).
   Goal: < 5%.
3. Tiny-preset training pairs/s, bf16 vs fp32 autocast, same batch (DESIGN.md: ~127 pairs/s in bf16 at
   batch 32 on 2 threads).

Shards are written to a temporary folder: procedural textures with noise stored as 341x256 JPEGs
(the default stored short side, 256 px), like `slife mine-pairs` output; one more set stored at 427x320
shows the cost when the stored short side is not the one training resizes to (Pillow resamples each
crop: ~1.5 ms per 224 px view on this CPU, about as much as decoding the frame).

    .venv/bin/python bench/bench_loader.py            # ~1-2 minutes on 2 idle cores
    .venv/bin/python bench/bench_loader.py --pairs 128 --steps 40 --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_bench_shards(folder: Path, pairs: int, w: int = 341, h: int = 256, per_shard: int = 32,
                       tar_format: str = "ustar", poses: bool = False) -> Path:
    """Shards of textured JPEG pairs; `tar_format` ustar (what `slife mine-pairs` writes) or pax
    (`webdataset.TarWriter`, Python's default tar format: one extra header per member); with `poses`, each
    pair's json has the camera poses of its two windows (a camera 1 m from the texture plane, focal w px)."""
    import webdataset as wds

    from slife.pairmine.shards import TarShard

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h + 32, 0:w + 32] / 64.0
    entries = []
    for s in range((pairs + per_shard - 1) // per_shard):
        name = f"pairs-{s:06d}.tar"
        n = min(per_shard, pairs - s * per_shard)
        with (wds.TarWriter(str(folder / name)) if tar_format == "pax" else _Ustar(folder / name, TarShard)) as tw:
            for i in range(n):
                img = np.zeros((h + 32, w + 32, 3))
                for _ in range(6):
                    f, ph, col = rng.uniform(0.5, 4, 2), rng.uniform(0, 6.3), rng.uniform(-1, 1, 3)
                    img += np.sin(f[0] * xx + f[1] * yy + ph)[..., None] * col
                img = (img - img.min()) / (np.ptp(img) + 1e-9) * 200 + rng.normal(0, 12, img.shape)
                img = np.clip(img, 0, 255).astype(np.uint8)
                views, views_xy = [], ((0, 0), tuple(rng.integers(0, 32, 2)))
                for dx, dy in views_xy:
                    b = io.BytesIO()
                    Image.fromarray(img[dy:dy + h, dx:dx + w]).save(b, format="JPEG", quality=90)
                    views.append(b.getvalue())
                meta = {"life": "bench", "strategy": "temporal", "K": None}
                if poses:
                    (dx, dy) = (float(v) for v in views_xy[1])
                    meta["T_a"] = np.eye(4).tolist()
                    meta["T_b"] = [[1, 0, 0, dx / w], [0, 1, 0, dy / w], [0, 0, 1, 0], [0, 0, 0, 1]]
                tw.write({"__key__": f"bench_{s * per_shard + i:09d}", "src.jpg": views[0], "tgt.jpg": views[1],
                          "json": json.dumps(meta).encode()})
        entries.append({"name": name, "samples": n})
    (folder / "manifest.json").write_text(json.dumps({"shards": entries}))
    return folder


class _Ustar:
    """slife's shard tar writer as a context manager with webdataset's `write`."""

    def __init__(self, path: Path, cls):
        self.f = open(path, "wb")
        self.tw = cls(self.f)

    def __enter__(self):
        return self.tw

    def __exit__(self, *exc):
        self.tw.close()
        self.f.close()


def jpeg_bytes(folder: Path) -> list[tuple[bytes, bytes]]:
    from slife.train.stream import CountingHandler, resolve_shards
    from slife.train.tario import tar_samples

    s = resolve_shards(str(folder))
    return [(x["src.jpg"], x["tgt.jpg"]) for x in tar_samples(({"url": u} for u in s.paths), CountingHandler())]


def bare_decode_time(pairs: list[tuple[bytes, bytes]]) -> float:
    """CPU seconds to decode both JPEGs of each pair with PIL (bytes in memory, decode only)."""
    t = time.process_time()
    for a, b in pairs:
        Image.open(io.BytesIO(a)).load()  # decode only (RGB JPEGs decode to RGB)
        Image.open(io.BytesIO(b)).load()
    return time.process_time() - t


def loader_vs_bare(folder: Path, pairs: list[tuple[bytes, bytes]], img_size: int, batch: int, n_batches: int):
    """Side by side, batch by batch: CPU time of one `PairStream` batch, then of bare decoding of `batch` pairs
    (the next ones of `pairs`, in turn), so that the machine's speed swings hit both alike.
    -> (loader pairs/s, bare pairs/s, per-block ratios (blocks of 5 batches), `to_model_input` pairs/s)."""
    from slife.train.augment import PairAugment, to_model_input
    from slife.train.stream import PairStream, resolve_shards

    s = resolve_shards(str(folder))
    stream = PairStream(s, PairAugment(img_size), batch, steps_per_epoch=max(1, s.total // batch),
                        shuffle_buffer=64)
    it = stream.batches()
    b = next(it)  # warm-up
    t_loader, t_bare, k = [], [], 0
    for _ in range(n_batches):
        t = time.process_time()
        next(it)
        t_loader.append(time.process_time() - t)
        t_bare.append(bare_decode_time(pairs[k:k + batch]))
        k = (k + batch) % max(1, len(pairs) - batch)
    tl, tb = np.array(t_loader), np.array(t_bare)
    blocks = [tb[i:i + 5].sum() / tl[i:i + 5].sum() for i in range(0, len(tl) - 4, 5)]
    t = time.perf_counter()
    for _ in range(n_batches):
        to_model_input(b["src"], b["src_color"])
        to_model_input(b["tgt"], b["tgt_color"])
    j = n_batches * batch / (time.perf_counter() - t)
    return n_batches * batch / tl.sum(), n_batches * batch / tb.sum(), blocks, j


def step_rate(precision: str, batch: int, steps: int) -> float:
    from slife.train.loss import MaskedMSE
    from slife.train.model import CROCO_PRESETS, CroCoNet
    from slife.train.optim import make_optimizer

    torch.manual_seed(0)
    kw = CROCO_PRESETS["tiny"]
    model, crit = CroCoNet(**kw), MaskedMSE()
    opt = make_optimizer(model, 1e-3)
    S = kw["img_size"]
    x, y = torch.randn(batch, 3, S, S), torch.randn(batch, 3, S, S)
    dtype = torch.bfloat16 if precision == "bf16" else None
    for i in range(steps + 3):
        if i == 3:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            out, mask, target = model(x, y)
            loss = crit(out.float(), mask, target.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t)


def wait_share(folder: Path, steps: int, threads: int, workers: int) -> tuple[float, float]:
    from slife.train import TRAIN_PRESETS, run
    from slife.train.metrics import read_metrics

    import dataclasses

    with tempfile.TemporaryDirectory() as out:
        cfg = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=steps, threads=threads, num_workers=workers,
                                  log_every=5, save_every=10**6, preview_every=0, resume="never")
        run(cfg, str(folder), out)
        rows = read_metrics(Path(out) / "metrics.csv")[1:]  # the first window includes start-up
    return (float(np.mean([r["data_wait_share"] for r in rows])), float(np.mean([r["pairs_per_s"] for r in rows])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=640, help="pairs in the benchmark shards (an epoch = pairs / 32 batches)")
    ap.add_argument("--batches", type=int, default=40,
                    help="loader batches of 32 timed per configuration, each followed by bare decoding of 32 pairs")
    ap.add_argument("--steps", type=int, default=30, help="training steps per timed run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the model")
    ap.add_argument("--workers", type=int, default=1, help="loader workers in the tiny run")
    ap.add_argument("--loader-only", action="store_true", help="only the loader vs bare decoding table")
    a = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bench_shards(Path(tmp) / "shards", a.pairs)
        pax = write_bench_shards(Path(tmp) / "shards_pax", a.pairs, tar_format="pax")
        pairs = jpeg_bytes(folder)
        torch.set_num_threads(1)  # a loader worker is single-threaded
        print("| loader, 1 process (= 1 worker), 341x256 JPEG pairs, CPU time | loader pairs/s | bare decode "
              "pairs/s | loader / bare | spread over blocks of 5 batches |")
        print("|---|---:|---:|---:|---|")
        big = write_bench_shards(Path(tmp) / "shards_320", a.pairs // 2, w=427, h=320)
        runs = {"224": (folder, 224, pairs), "224 (PAX tars)": (pax, 224, pairs), "64": (folder, 64, pairs),
                "224 from 427x320 frames (resampled, not only cropped)": (big, 224, jpeg_bytes(big))}
        jit = {}
        for k, (f, S, p) in runs.items():
            lr, br, blocks, jit[k] = loader_vs_bare(f, p, S, 32, a.batches)
            print(f"| PairStream at {k}: tar + decode + 2 independent crops + jitter draw + batch | {lr:.0f} | "
                  f"{br:.0f} | **{lr / br:.2f}** | {min(blocks):.2f}-{max(blocks):.2f} |", flush=True)
        bare = float(np.median([len(pairs) / bare_decode_time(pairs) for _ in range(3)]))
        if a.loader_only:
            return
        print("\n| training process, 1 CPU thread | pairs/s | vs bare decode |\n|---|---:|---:|")
        for S in ("224", "64"):
            print(f"| `to_model_input` at {S}: jitter + normalise | {jit[S]:.0f} | {jit[S] / bare:.1f} |")
        torch.set_num_threads(a.threads)
        print()
        fp32 = step_rate("fp32", 32, a.steps)
        bf16 = step_rate("bf16", 32, a.steps)
        print(f"| tiny model step, batch 32, {a.threads} thread(s), synthetic tensors | pairs/s | vs fp32 |")
        print("|---|---:|---:|")
        print(f"| fp32 | {fp32:.0f} | 1.00 |")
        print(f"| bf16 autocast | {bf16:.0f} | {bf16 / fp32:.2f} |", flush=True)
        print()
        share, run_rate = wait_share(folder, a.steps, a.threads, a.workers)
        print(f"| tiny run (slife.train.run), batch 32, {a.threads} thread(s), {a.workers} loader worker(s), "
              "--precision auto (fp32 on a CPU without native bf16) | value |")
        print("|---|---:|")
        print(f"| data-wait share of step time | {share:.1%} |")
        print(f"| pairs/s (whole loop) | {run_rate:.0f} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
