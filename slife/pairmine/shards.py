"""Shard writer: mined pairs -> `pairs-%06d.tar` WebDataset shards, each followed by its `.stats.json`.

Reads the `FrameTable` (sampled life) and the `PairTable` (write order from `combine.py`). Frames are
decoded through `Life.iter_frames` in source order, each decoded once and JPEG-encoded once at
`short_side` (and its depth, if the life has depth, stored as a uint16 mm PNG at the same size),
whatever the number of pairs that use it; encoded bytes stay in a cache only while a pair still needs
them. A shard is written as soon as every frame of its pairs has been decoded (pairs are ordered by the
decode position of their later frame). Each tar is written under a temporary name with fixed mtimes
(identical bytes on every run), renamed when complete, then its `.stats.json` (which marks it complete).
Sample members follow DESIGN.md: `src.jpg`, `tgt.jpg`, `json`, optional `src.depth.png`/`tgt.depth.png`.
Tars are written with the standard library in webdataset's TarWriter layout (USTAR, members of a sample
contiguous and sorted, `<key>.<ext>` names): `import webdataset` pulls in torch (~10 s per process),
which the writer does not need; the tests read the shards back with `webdataset.WebDataset`.
Entry point: `write_shards(table, pairs, out_dir, shard_ids, ...)`. The manifest is `manifest.py`'s job.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from slife.pairmine.combine import PairTable
from slife.pairmine.ingest import FrameTable

log = logging.getLogger(__name__)


class TarShard:
    """Writes samples ({"__key__": str, ext: bytes}) as webdataset's TarWriter does, with fixed mtimes."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT)

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("_")):
            data = sample[ext]
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 0, 0o444, "bigdata", "bigdata"
            self.tar.addfile(ti, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


def shard_name(s: int) -> str:
    return f"pairs-{s:06d}.tar"


def stats_name(s: int) -> str:
    return f"pairs-{s:06d}.stats.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_complete(out_dir: Path, s: int) -> bool:
    """A shard is complete when its tar and its stats (written after the tar) both exist."""
    return (out_dir / stats_name(s)).exists() and (out_dir / shard_name(s)).exists()


def stored_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """(W, H) -> size with the short side at `short_side`, aspect kept."""
    s = short_side / min(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def encode_frame(rgb: np.ndarray, short_side: int, quality: int) -> tuple[bytes, tuple[int, int]]:
    """RGB uint8 (H, W, 3) -> JPEG bytes at the stored size, and that size (W, H)."""
    from PIL import Image

    im = Image.fromarray(rgb)
    size = stored_size(im.width, im.height, short_side)
    if size != im.size:
        im = im.resize(size, Image.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), size


def encode_depth(depth_m: np.ndarray, size: tuple[int, int]) -> bytes:
    """Depth in metres (H, W) float -> uint16 mm PNG bytes at `size` (W, H), nearest-neighbour resized."""
    from PIL import Image

    mm = np.clip(np.nan_to_num(depth_m) * 1000.0, 0, 65535).astype(np.uint16)  # (H, W)
    im = Image.fromarray(mm)
    if im.size != tuple(size):
        im = im.resize(tuple(size), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def camera_at(life, i: int, size: tuple[int, int]):
    """Frame i's camera rescaled to the stored size (W, H), or None."""
    cam = life.camera(i)
    if cam is None:
        return None
    sx, sy = size[0] / cam.width, size[1] / cam.height
    try:
        return cam.scaled(sx, sy)
    except ValueError:  # single-focal model, slightly anisotropic rounding: use the mean scale
        return cam.scaled((sx + sy) / 2)


def pair_json(table: FrameTable, pairs: PairTable, k: int, sizes: dict) -> dict:
    """The `json` member of pair k (DESIGN.md fields + K_b, cam_a, cam_b)."""
    life = table.life
    a, b = int(pairs.a[k]), int(pairs.b[k])

    def pose(i):
        if life.T_world_cam is None or not life.pose_valid[i]:
            return None
        return life.T_world_cam[i].tolist()

    def cam(i):
        c = camera_at(life, i, sizes[i]) if i in sizes else None
        return c

    ca, cb = cam(a), cam(b)
    J = float(pairs.jaccard[k])
    return {
        "life": life.name, "strategy": pairs.label(k),
        "video_a": life.source_name(a), "video_b": life.source_name(b),
        "frame_a": int(life.frame_index[a]), "frame_b": int(life.frame_index[b]),
        "t_a": float(life.t[a]), "t_b": float(life.t[b]),
        "jaccard": None if np.isnan(J) else J,
        "T_a": pose(a), "T_b": pose(b),
        "K": None if ca is None else ca.K.tolist(),
        "K_b": None if cb is None else cb.K.tolist(),
        "cam_a": None if ca is None else {"model": ca.model, "width": ca.width, "height": ca.height,
                                          "params": list(ca.params)},
        "cam_b": None if cb is None else {"model": cb.model, "width": cb.width, "height": cb.height,
                                          "params": list(cb.params)},
    }


def write_shards(table: FrameTable, pairs: PairTable, out_dir: Path, shard_ids: list[int], pairs_per_shard: int,
                 short_side: int = 256, quality: int = 90, progress: Callable[..., None] | None = None) -> dict:
    """Write the shards `shard_ids` (skipping complete ones); returns counts for this call."""
    out_dir = Path(out_dir)
    life = table.life
    todo = [s for s in sorted(shard_ids) if not shard_complete(out_dir, s)]
    counts = {"shards_written": 0, "shards_skipped": len(shard_ids) - len(todo), "frames_decoded": 0,
              "frames_corrupt": 0, "pairs_written": 0, "pairs_dropped_corrupt": 0}
    if not todo:
        return counts
    P = len(pairs)
    rows = np.concatenate([np.arange(s * pairs_per_shard, min(P, (s + 1) * pairs_per_shard)) for s in todo])
    ends = pairs.a[rows], pairs.b[rows]
    need = np.unique(np.concatenate(ends))
    uses = np.bincount(np.concatenate(ends), minlength=len(life))  # (N,) remaining uses per frame
    ready_rank = np.maximum(table.decode_rank[pairs.a], table.decode_rank[pairs.b])  # (P,)
    has_depth = life.depth_paths is not None
    cache: dict[int, tuple[bytes, bytes | None]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    pending = list(todo)

    def flush(upto_rank: float):
        while pending:
            s = pending[0]
            r0, r1 = s * pairs_per_shard, min(P, (s + 1) * pairs_per_shard)
            if ready_rank[r1 - 1] > upto_rank:
                return
            pending.pop(0)
            _write_one(s, r0, r1)

    def _write_one(s: int, r0: int, r1: int):
        tmp = out_dir / f".{shard_name(s)}.tmp{os.getpid()}"
        n_ok = n_bad = 0
        missing: set[int] = set()
        per_strategy: dict[str, int] = {}
        with open(tmp, "wb") as f:
            tw = TarShard(f)
            for k in range(r0, r1):
                a, b = int(pairs.a[k]), int(pairs.b[k])
                if a in cache and b in cache:
                    js = pair_json(table, pairs, k, sizes)
                    sample = {"__key__": f"{life.name}_{k:09d}", "src.jpg": cache[a][0], "tgt.jpg": cache[b][0],
                              "json": json.dumps(js).encode()}
                    if has_depth and cache[a][1] is not None and cache[b][1] is not None:
                        sample["src.depth.png"] = cache[a][1]
                        sample["tgt.depth.png"] = cache[b][1]
                    tw.write(sample)
                    n_ok += 1
                    per_strategy[js["strategy"]] = per_strategy.get(js["strategy"], 0) + 1
                else:
                    n_bad += 1
                    missing.update(i for i in (a, b) if i not in sizes)
                for i in (a, b):
                    uses[i] -= 1
                    if uses[i] <= 0:
                        cache.pop(i, None)
            tw.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_dir / shard_name(s))
        stats = {"shard": shard_name(s), "samples": n_ok, "pairs": [int(r0), int(r1)], "pairs_dropped_corrupt": n_bad,
                 "strategies": per_strategy, "frames_missing": sorted(missing), "bytes": (out_dir / shard_name(s)).stat().st_size,
                 "sha256": sha256_file(out_dir / shard_name(s))}
        atomic_write_bytes(out_dir / stats_name(s), json.dumps(stats, indent=1).encode())
        counts["shards_written"] += 1
        counts["pairs_written"] += n_ok
        counts["pairs_dropped_corrupt"] += n_bad
        if progress:
            progress(r1 - r0)

    seen = 0
    for i, rgb in life.iter_frames(need):
        try:
            jpg, size = encode_frame(rgb, short_side, quality)
        except (OSError, ValueError):
            continue
        dep = None
        if has_depth:
            try:
                d = life.read_depth(i)
                dep = None if d is None else encode_depth(d, size)
            except (OSError, ValueError):
                dep = None
        cache[i] = (jpg, dep)
        sizes[i] = size
        seen += 1
        flush(table.decode_rank[i])
    flush(np.inf)
    counts["frames_decoded"] = seen
    counts["frames_corrupt"] = int(len(need) - seen)
    return counts
