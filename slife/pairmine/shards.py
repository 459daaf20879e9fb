"""Shard writer: mined pairs -> `pairs-%06d.tar` WebDataset shards, each followed by its `.stats.json`.

Reads the `FrameTable` (sampled life) and the `PairTable` (write order from `combine.py`). Every frame
is decoded once and JPEG-encoded once at `short_side` (and its depth, if the life has depth, stored as
a uint16 mm PNG at the same size), whatever the number of pairs that use it. Two ways to get there:

- streaming (one process, `write_shards`): frames are decoded through `Life.iter_frames` in source
  order; encoded bytes stay in a cache only while a pair still needs them, and a shard is written as
  soon as every frame of its pairs has been decoded (pairs are ordered by the decode position of their
  later frame).
- spooled (several processes, driven by `pipeline.write_all`): phase 1, `spool_part` decodes and
  encodes a contiguous stretch (in decode order) of the needed frames and appends the bytes to a spool
  part file (`<out>/.frames[-node<r>]/part-%05d.bin`, written under a temporary name and renamed when
  complete) followed by its index `part-%05d.json` (life index -> offset, length, depth offset, length,
  stored (W, H); plus the ids that failed to decode), whose presence marks the part complete; an
  interrupted run reuses the complete parts (`Spool`). Phase 2 writes shards from the spool
  (`Spool.read`, `os.pread`). The pipeline removes the spool folder when its shards are all complete.

Both ways write a shard with the same function, `write_shard`: the tar under a temporary name with
fixed mtimes (identical bytes on every run and either way), renamed when complete, then its
`.stats.json` (which marks it complete; its "run" field, a digest of the run's identity, lets a shard
left by other settings be told from a finished one). The file names, the stats record, the sample's
members and json and the tar layout (webdataset's TarWriter layout, written with the standard library:
`import webdataset` pulls in torch, ~10 s per process, which the writer does not need; the tests read the
shards back with `webdataset.WebDataset`) belong to the format's owner, `shardset.py`.
Entry points: `write_shards(table, pairs, out_dir, shard_ids, ...)` (streaming), `spool_part` +
`Spool` + `write_shard` (spooled). Process pools, output-folder policy and the manifest's summary are left
to `pipeline.py` and `manifest.py`.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import ChainMap
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from slife.io import atomic_file, atomic_write_json
from slife.pairmine.combine import PairTable
from slife.pairmine.ingest import FrameTable
from slife.pairmine.shardset import (TarShard, frame_losses, pair_meta, sample_key, sample_members, shard_complete,
                                     shard_name, shard_stats, write_stats)

log = logging.getLogger(__name__)


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

    mm = np.rint(np.clip(np.nan_to_num(depth_m) * 1000.0, 0, 65535)).astype(np.uint16)  # (H, W), rounded to the mm
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
    """The `json` member of pair k (`shardset.pair_meta`: DESIGN.md fields + K_b, cam_a, cam_b)."""
    life = table.life
    a, b = int(pairs.a[k]), int(pairs.b[k])

    def pose(i):
        if life.T_world_cam is None or not life.pose_valid[i]:
            return None
        return life.T_world_cam[i].tolist()

    def cam(i):
        return camera_at(life, i, sizes[i]) if i in sizes else None

    J = float(pairs.jaccard[k])
    return pair_meta(life.name, pairs.label(k), life.source_name(a), life.source_name(b), life.frame_index[a],
                     life.frame_index[b], life.t[a], life.t[b], None if np.isnan(J) else J, pose(a), pose(b),
                     cam(a), cam(b))


def encode_one(life, i: int, rgb: np.ndarray, short_side: int, quality: int):
    """Frame i's decoded RGB (H, W, 3) -> (JPEG bytes, depth PNG bytes or None, stored size (W, H)).

    None when the pixels cannot be encoded (the frame then counts as corrupt); a depth map that cannot
    be read only drops the depth members.
    """
    try:
        jpg, size = encode_frame(rgb, short_side, quality)
    except (OSError, ValueError):
        return None
    return jpg, depth_png(life, i, size), size


def depth_png(life, i: int, size: tuple[int, int]) -> bytes | None:
    """Frame i's depth map as the stored uint16 mm PNG at `size`, or None (no depth; an unreadable map warns)."""
    if life.depth_paths is None:
        return None
    try:
        d = life.read_depth(i)  # (H, W) metres or None
        return None if d is None else encode_depth(d, size)
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable depth map (%s); its pairs are written without depth", life.depth_paths[i], e)
        return None


class StoredFrames:
    """Frames of a set's earlier generations that their tars already hold, taken from there instead of decoding
    the videos again: the set's settings and these recordings are unchanged (mine.json, fingerprints), so the
    bytes are the ones this run would encode. `loc`: life index -> (tar, JPEG offset, JPEG length, depth
    offset, depth length; depth length 0: not in the tar, made from the life's depth map if it has one).
    `frames` and `sizes` are read-only maps like the writer's own (index -> (JPEG, depth PNG or None); index
    -> stored (W, H)); bytes are read on demand, so memory stays that of the shard being written."""

    def __init__(self, life, loc: dict[int, tuple[str, int, int, int, int]]):
        self.life, self.loc = life, self._holding(loc)
        if len(self.loc) < len(loc):  # an index that reads well but points elsewhere (edited, or a tar replaced)
            log.info("%d of %d stored frames are not where the frame-location index says (no JPEG or PNG there); "
                     "they are decoded again", len(loc) - len(self.loc), len(loc))
        self._sizes: dict[int, tuple[int, int]] = {}
        self.frames = _StoredView(self, "frames")
        self.sizes = _StoredView(self, "sizes")

    @staticmethod
    def _holding(loc: dict) -> dict:
        """The entries of `loc` whose byte ranges hold a whole JPEG (start and end markers) and, if given, a PNG's
        signature; each tar opened once."""
        by_tar: dict[str, list[int]] = {}
        for i, v in loc.items():
            by_tar.setdefault(v[0], []).append(i)
        out = {}
        for tar, ids in by_tar.items():
            try:
                with open(tar, "rb") as f:
                    def at(off: int, n: int) -> bytes:
                        f.seek(off)
                        return f.read(n)

                    for i in ids:
                        _, off, n, doff, dn = loc[i]
                        if (n > 4 and at(off, 2) == b"\xff\xd8" and at(off + n - 2, 2) == b"\xff\xd9"
                                and (not dn or at(doff, 8) == b"\x89PNG\r\n\x1a\n")):
                            out[i] = loc[i]
            except OSError:
                continue
        return {i: v for i, v in loc.items() if i in out}  # in the given order

    def _read(self, path: str, off: int, n: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def size(self, i: int) -> tuple[int, int]:
        if i not in self._sizes:
            from PIL import Image

            tar, off, n = self.loc[i][:3]
            self._sizes[i] = Image.open(io.BytesIO(self._read(tar, off, n))).size
        return self._sizes[i]

    def frame(self, i: int) -> tuple[bytes, bytes | None]:
        tar, off, n, doff, dn = self.loc[i]
        jpg = self._read(tar, off, n)
        dep = self._read(tar, doff, dn) if dn else depth_png(self.life, i, self.size(i))
        return jpg, dep


class _StoredView(Mapping):
    def __init__(self, store: StoredFrames, what: str):
        self.store, self.what = store, what

    def __contains__(self, i) -> bool:
        return int(i) in self.store.loc

    def __getitem__(self, i):
        if i not in self:
            raise KeyError(i)
        return self.store.frame(int(i)) if self.what == "frames" else self.store.size(int(i))

    def __iter__(self):
        return iter(self.store.loc)

    def __len__(self) -> int:
        return len(self.store.loc)


def write_shard(table: FrameTable, pairs: PairTable, out_dir: Path, s: int, pairs_per_shard: int,
                frames: Mapping[int, tuple[bytes, bytes | None]], sizes: Mapping[int, tuple[int, int]],
                run: str = "", release: Callable[[int], None] | None = None) -> dict:
    """Write shard s (tar, then its stats) from encoded frames; returns its stats.

    `frames`: life index -> (JPEG, depth PNG or None) for at least every decodable frame of the shard's
    pairs; `sizes`: life index -> stored (W, H) of every frame that decoded (a pair with a frame missing
    from `frames` is dropped and counted); `release(i)` is called once per pair end after the pair is
    written (the streaming writer frees its cache there); `run` is recorded in the stats.
    """
    out_dir = Path(out_dir)
    life = table.life
    has_depth = life.depth_paths is not None
    r0, r1 = pairs.shard_rows(s, pairs_per_shard)
    n_ok = n_bad = n_nodepth = 0
    missing: set[int] = set()
    per_strategy: dict[str, int] = {}
    tar = out_dir / shard_name(s)
    with atomic_file(tar) as tmp, open(tmp, "wb") as f:
        tw = TarShard(f)
        for k in range(r0, r1):
            a, b = int(pairs.a[k]), int(pairs.b[k])
            if a in frames and b in frames:
                js = pair_json(table, pairs, k, sizes)
                fa, fb = frames[a], frames[b]
                tw.write(sample_members(sample_key(life.name, pairs.first_pair + k), fa[0], fb[0], js, fa[1], fb[1]))
                if has_depth and (fa[1] is None or fb[1] is None):  # a depth map missing or unreadable
                    n_nodepth += 1
                n_ok += 1
                per_strategy[js["strategy"]] = per_strategy.get(js["strategy"], 0) + 1
            else:
                n_bad += 1
                missing.update(i for i in (a, b) if i not in sizes)
            if release is not None:
                release(a)
                release(b)
        tw.close()
    stats = shard_stats(s, tar, n_ok, (pairs.first_pair + r0, pairs.first_pair + r1), n_bad, n_nodepth, per_strategy,
                        missing, run)
    write_stats(out_dir, s, stats)
    return stats


def new_counts(shards_skipped: int = 0) -> dict:
    """The counts a writer call returns (summed over processes by the pipeline)."""
    return {"shards_written": 0, "shards_skipped": shards_skipped, "frames_decoded": 0, "frames_missing": 0,
            "frames_corrupt": 0,
            "pairs_written": 0, "pairs_dropped_corrupt": 0}


def failed_counts(table: FrameTable, asked, decoded) -> dict:
    """{"frames_missing", "frames_corrupt"}: the frames `asked` that are not among those `decoded`, split into
    image file not there vs pixels that do not decode (as the manifest splits them)."""
    failed = sorted(set(int(i) for i in asked) - set(int(i) for i in decoded))
    losses = frame_losses(failed, table, {})
    return {"frames_missing": losses["frames_missing"], "frames_corrupt": losses["frames_corrupt"]}


def add_shard_counts(counts: dict, stats: dict) -> None:
    counts["shards_written"] += 1
    counts["pairs_written"] += stats["samples"]
    counts["pairs_dropped_corrupt"] += stats["pairs_dropped_corrupt"]


def todo_rows(shard_ids: list[int], pairs_per_shard: int, pairs: PairTable) -> np.ndarray:
    """(R,) int64 pair-table rows of the shards `shard_ids`."""
    if not shard_ids:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(*pairs.shard_rows(s, pairs_per_shard)) for s in shard_ids]).astype(np.int64)


def write_shards(table: FrameTable, pairs: PairTable, out_dir: Path, shard_ids: list[int], pairs_per_shard: int,
                 short_side: int = 256, quality: int = 90, progress: Callable[..., None] | None = None,
                 run: str | None = None, stored: StoredFrames | None = None) -> dict:
    """Streaming writer: write the shards `shard_ids` (skipping complete ones) in one process; returns counts.
    Frames in `stored` (an earlier generation's tars) are taken from there, not decoded."""
    out_dir = Path(out_dir)
    life = table.life
    todo = [s for s in sorted(shard_ids) if not shard_complete(out_dir, s, run)]
    counts = new_counts(len(shard_ids) - len(todo))
    if not todo:
        return counts
    rows = todo_rows(todo, pairs_per_shard, pairs)
    ends = pairs.a[rows], pairs.b[rows]
    need = np.unique(np.concatenate(ends))
    rank = table.decode_rank.copy()  # (N,) when a frame is ready: its decode position, or at once if stored
    if stored is not None:
        held = np.fromiter(stored.loc, np.int64, len(stored.loc))
        need = need[~np.isin(need, held)]
        rank[held] = -1
    uses = np.bincount(np.concatenate(ends), minlength=len(life))  # (N,) remaining uses per frame
    ready_rank = np.maximum(rank[pairs.a], rank[pairs.b])  # (P,)
    cache: dict[int, tuple[bytes, bytes | None]] = {}
    sizes: dict[int, tuple[int, int]] = {}
    frames, known = (cache, sizes) if stored is None else (ChainMap(cache, stored.frames), ChainMap(sizes, stored.sizes))
    pending = list(todo)

    def release(i: int):
        uses[i] -= 1
        if uses[i] <= 0:
            cache.pop(i, None)

    def flush(upto_rank: float):
        while pending:
            s = pending[0]
            r0, r1 = pairs.shard_rows(s, pairs_per_shard)
            if ready_rank[r0:r1].max() > upto_rank:
                return
            pending.pop(0)
            add_shard_counts(counts, write_shard(table, pairs, out_dir, s, pairs_per_shard, frames, known,
                                                 run or "", release))
            if progress:
                progress(r1 - r0)

    seen = []
    for i, rgb in life.iter_frames(need):
        enc = encode_one(life, i, rgb, short_side, quality)
        if enc is None:
            continue
        cache[i] = enc[:2]
        sizes[i] = enc[2]
        seen.append(i)
        flush(table.decode_rank[i])
    flush(np.inf)
    counts["frames_decoded"] = len(seen)
    counts.update(failed_counts(table, need, seen))
    return counts


def spool_name(num_nodes: int, node_rank: int) -> str:
    """The spool folder's name inside the output folder: one per node, so nodes never share one."""
    return ".frames" if num_nodes <= 1 else f".frames-node{node_rank}"


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def spool_part(table: FrameTable, ids: np.ndarray, spool_dir: Path, part: int, short_side: int, quality: int,
               run: str) -> dict:
    """Decode frames `ids` (life indices, decode order) once, encode them and write spool part `part`.

    Bytes go to `part-%05d.bin` (temporary name, renamed when complete), then the index
    `part-%05d.json` {"run", "asked": ids, "frames": {id: [off, len, depth_off, depth_len, W, H]}}
    (depth_len 0: no depth); frames that fail to decode or encode are in "asked" but not in "frames".
    Returns {"frames_decoded", "frames_missing", "frames_corrupt"}.
    """
    life = table.life
    spool_dir = Path(spool_dir)
    name = part_name(part)
    entries: dict[str, list[int]] = {}
    off = 0
    with atomic_file(spool_dir / f"{name}.bin") as tmp, open(tmp, "wb") as f:
        for i, rgb in life.iter_frames(ids):
            enc = encode_one(life, i, rgb, short_side, quality)
            if enc is None:
                continue
            jpg, dep, (w, h) = enc
            f.write(jpg)
            e = [off, len(jpg), 0, 0, int(w), int(h)]
            off += len(jpg)
            if dep is not None:
                f.write(dep)
                e[2], e[3] = off, len(dep)
                off += len(dep)
            entries[str(int(i))] = e
    index = {"run": run, "asked": [int(i) for i in ids], "frames": entries}
    atomic_write_json(spool_dir / f"{name}.json", index, indent=None)
    return {"frames_decoded": len(entries), **failed_counts(table, ids, map(int, entries))}


class StoredSizes(Mapping):
    """Read-only map life index -> stored (W, H) over an array (N, 2) int64, -1 where the frame is absent."""

    def __init__(self, wh: np.ndarray):
        self.wh = wh  # (N, 2) int64

    def __contains__(self, i) -> bool:
        return 0 <= int(i) < len(self.wh) and self.wh[int(i), 0] >= 0

    def __getitem__(self, i) -> tuple[int, int]:
        if i not in self:
            raise KeyError(i)
        return int(self.wh[int(i), 0]), int(self.wh[int(i), 1])

    def __iter__(self):
        return iter(int(i) for i in np.flatnonzero(self.wh[:, 0] >= 0))

    def __len__(self) -> int:
        return int((self.wh[:, 0] >= 0).sum())


class Spool:
    """The complete parts of a spool folder: which frames are encoded where, and reading them back.

    Opening it tidies the folder: temporary files of killed writers, part files without an index and
    parts of another run (other settings) are removed. Read-only afterwards; safe to use in forked
    processes (files are opened per process and read with `os.pread`). The index is kept in arrays
    (a 270k-frame life: ~15 MB), shared copy-on-write with forked writers.
    """

    def __init__(self, spool_dir: Path, run: str):
        self.dir = Path(spool_dir)
        self.last_part = -1  # highest complete part number
        self._files: dict[int, int] = {}
        self._pid = os.getpid()
        asked: list[np.ndarray] = []
        rows: list[np.ndarray] = []  # (n, 8) id, part, off, len, depth off, depth len, W, H
        if self.dir.exists():
            for p in self.dir.glob(".part-*"):  # temporaries of a killed writer
                p.unlink(missing_ok=True)
            indexed = set()
            for p in sorted(self.dir.glob("part-*.json")):
                part = int(p.stem.split("-")[1])
                try:
                    ix = json.loads(p.read_text())
                except (OSError, ValueError):
                    ix = None
                bin_path = self.dir / f"{part_name(part)}.bin"
                if ix is None or ix.get("run") != run or not bin_path.exists():
                    p.unlink(missing_ok=True)
                    bin_path.unlink(missing_ok=True)
                    continue
                indexed.add(part)
                self.last_part = max(self.last_part, part)
                asked.append(np.asarray(ix["asked"], np.int64))
                if ix["frames"]:
                    r = np.array([[int(i), part, *e] for i, e in ix["frames"].items()], np.int64)  # (n, 8)
                    rows.append(r)
            for p in self.dir.glob("part-*.bin"):  # renamed, but killed before its index was written
                if int(p.stem.split("-")[1]) not in indexed:
                    p.unlink(missing_ok=True)
        self.asked = np.unique(np.concatenate(asked)) if asked else np.zeros(0, np.int64)  # (A,) ids tried
        r = np.concatenate(rows) if rows else np.zeros((0, 8), np.int64)
        n = int(r[:, 0].max()) + 1 if len(r) else 0
        self.loc = np.full((n, 5), -1, np.int64)  # (N, 5) part, off, len, depth off, depth len; part -1: absent
        self.loc[r[:, 0]] = r[:, 1:6]
        wh = np.full((n, 2), -1, np.int64)  # (N, 2) stored (W, H)
        wh[r[:, 0]] = r[:, 6:8]
        self.sizes = StoredSizes(wh)

    def _fd(self, part: int) -> int:
        if self._pid != os.getpid():  # forked: descriptors are per process
            self._files, self._pid = {}, os.getpid()
        if part not in self._files:
            self._files[part] = os.open(self.dir / f"{part_name(part)}.bin", os.O_RDONLY)
        return self._files[part]

    def read(self, ids) -> dict[int, tuple[bytes, bytes | None]]:
        """Encoded bytes of the spooled frames among `ids`: id -> (JPEG, depth PNG or None)."""
        ids = np.unique(np.asarray(ids, np.int64))
        ids = ids[(ids >= 0) & (ids < len(self.loc))]
        ids = ids[self.loc[ids, 0] >= 0]
        ids = ids[np.lexsort((self.loc[ids, 1], self.loc[ids, 0]))]  # file order: by part, then offset
        out = {}
        for i in ids:
            part, off, n, doff, dn = (int(x) for x in self.loc[i])
            fd = self._fd(part)
            out[int(i)] = (os.pread(fd, n, off), os.pread(fd, dn, doff) if dn else None)
        return out

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._files.values():
                os.close(fd)
        self._files = {}
