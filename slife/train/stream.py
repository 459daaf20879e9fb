"""Stream pair shards into training batches: a chain of small generators over WebDataset tars.

Reads: shard sets (DESIGN.md "Pair shards"; the format, which tars a folder lists and the sample schema are
`slife.pairmine.shardset`'s): a folder with `manifest.json` and `pairs-%06d.tar` (+ `.stats.json`); the spec
may be one folder, several comma-separated, a brace pattern (`shards/life{1..3}`) or single .tar files.
Samples hold `src.jpg`, `tgt.jpg`, `json` (and optional `src.depth.png`, `tgt.depth.png`, uint16 mm).
Returns: batches {"src","tgt": uint8 (B,3,S,S) crops, "src_color","tgt_color": (B,4) jitter parameters
(`augment.to_model_input` applies them and normalises on the device), "keys", "meta" (each pair's json),
"step", "worker", "bad"}; with another augmentation (the objective's, e.g. `multicrop.MultiCrop`) the crop
entries are what its `finish` returns.

The stream is a pure function of (seed, rank, worker, step): shards are split by node then by worker
(when there are enough of them), resampled with replacement (weighted by sample count) for a fixed
number of steps per epoch, so every rank and worker yields the same number of batches; shuffling and
augmentation draw from generators seeded from (seed, rank, worker, epoch|step). A resumed stream
skips, without decoding, the samples of the current epoch that were already consumed, so it yields
exactly the batches an uninterrupted run would. Every batch carries its worker's position `pos`
(epoch, samples taken from the epoch's shuffled stream so far, bad-sample counts); given the positions of
the last batches trained on (`positions`, from the checkpoint), a resumed worker skips exactly that many
samples, so the batches stay the same even when JPEGs failed to decode earlier in the epoch (without
positions it skips batches x batch size, exact only when nothing failed). A continued segment of a run (a set that
has grown, `segments.py`) gives the stream its `origin` (the global step that is the stream's step 0), its
`segment` (a key of all its generators, so it draws afresh) and per-tar `weights` (new pairs drawn more often;
each weight class is split over ranks and workers on its own, so every worker draws new and old pairs).
Bad data goes through a `handler`: truncated tars
and incomplete shards (`shardset.incomplete_shard`: no stats) are found up front and skipped (warned and counted);
broken samples are skipped and counted.
Entry points: `resolve_shards`, `PairStream`, `make_loader`, `eval_pairs`.
Augmentation is `augment.py`'s job; steps, devices and checkpoints are `loop.py`'s.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator

import numpy as np
import torch.utils.data
from PIL import Image

from slife.errors import SlifeError
from slife.pairmine.shardset import (MANIFEST, REQUIRED, ListedShard, incomplete_shard, is_augmented, manifest_shards,
                                     view_K, warn_incomplete)
from slife.train.augment import normalize, resize_short_side
from slife.train.tario import tar_samples

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# shard lists


@dataclass
class ShardSet:
    """The tars a training run reads, with their sample counts, and the ones skipped (and why)."""

    spec: str  # what the user gave (for messages and the checkpoint)
    paths: list[str] = field(default_factory=list)  # readable, non-empty tars
    counts: list[int] = field(default_factory=list)  # samples per tar (same order)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason (truncated, missing ...)
    empty: int = 0  # tars with no samples
    sha256: list = field(default_factory=list)  # each tar's sha256 from its manifest, or None (same order)
    generation: list = field(default_factory=list)  # each tar's generation from its manifest, or None

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    def tars(self) -> list[dict]:
        """Each tar's identity, in order: {"tar": "FOLDER/NAME" (its folder's name and its own, so a set moved
        elsewhere keeps it), "samples", "bytes", "sha256" (the manifest's, or None), "generation" (or None)}."""
        out = []
        for k, p in enumerate(self.paths):
            path = Path(p)
            out.append({"tar": f"{path.parent.name}/{path.name}", "samples": self.counts[k],
                        "bytes": path.stat().st_size,
                        "sha256": self.sha256[k] if k < len(self.sha256) else None,
                        "generation": self.generation[k] if k < len(self.generation) else None})
        return out

    def summary(self) -> dict:
        return {"spec": self.spec, "shards": len(self.paths), "pairs": self.total, "empty_shards": self.empty,
                "skipped_shards": len(self.skipped), "skipped": dict(self.skipped)}


def split_spec(spec: str) -> list[str]:
    """Split a comma-separated spec at top-level commas (commas inside `{a,b}` belong to the pattern)."""
    parts, depth, cur = [], 0, ""
    for ch in spec:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand_spec(spec: str | os.PathLike | Iterable) -> list[Path]:
    """Shard spec -> paths (folders or tars): comma lists and brace patterns expanded, order kept."""
    import braceexpand

    items = [str(s) for s in spec] if isinstance(spec, (list, tuple)) else split_spec(str(spec))
    return [Path(p) for item in items for p in braceexpand.braceexpand(item)]


def tar_problem(path: Path) -> str | None:
    """Why a tar cannot be read in full (missing, truncated ...), or None; looks at size and tail only."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if size == 0:
        return "empty file"
    if size % 512:
        return f"truncated ({size} bytes is not a whole number of 512-byte tar blocks)"
    with open(path, "rb") as f:
        f.seek(max(0, size - 1024))
        if f.read(1024).strip(b"\0"):
            return "truncated (no end-of-archive blocks)"
    return None


def count_samples(path: Path) -> int:
    """Samples (distinct keys) in a tar, from its headers only."""
    keys = set()
    with tarfile.open(path) as tf:
        for m in tf:
            if m.isfile():
                base = os.path.basename(m.name)
                keys.add(os.path.join(os.path.dirname(m.name), base.split(".", 1)[0]))
    return len(keys)


def resolve_shards(spec) -> ShardSet:
    """Shard spec -> ShardSet of readable, non-empty tars. SlifeError when nothing is left to train on."""
    s = ShardSet(spec=spec if isinstance(spec, str) else ",".join(map(str, spec)))
    listed: list[ListedShard] = []
    for p in expand_spec(spec):
        if p.is_dir() or (p.name == MANIFEST and p.is_file()):  # a shard folder, or its manifest.json
            listed += manifest_shards(p if p.is_dir() else p.parent)
        elif p.suffix == ".tar" and p.exists():
            listed.append(ListedShard(p, None, None))
        else:
            raise SlifeError(f"{p}: {'not a' if p.exists() else 'no such'} shard folder, {MANIFEST} or .tar file "
                             "(a shard folder is what `slife mine-pairs` writes)")
    if not listed:
        raise SlifeError(f"{s.spec}: no shards listed")
    times = Counter(e.path.resolve() for e in listed)
    repeated = {p: k for p, k in times.items() if k > 1}
    if repeated:  # kept (as in webdataset, a repeated shard weighs more), but said
        first, k = next(iter(repeated.items()))
        log.warning("%s: %d shard(s) listed more than once (e.g. %s, %d times): their pairs are drawn that many "
                    "times as often", s.spec, len(repeated), first, k)
    incomplete = []  # shards without their stats (DESIGN.md: not finished): skipped, said in one line
    for path, n, size, digest, gen in listed:
        why = incomplete_shard(path)
        if why is not None:
            incomplete.append(path.name)
            s.skipped[str(path)] = why
            continue
        why = tar_problem(path)
        if why is None and size is not None and path.stat().st_size != size:
            why = f"truncated or changed ({path.stat().st_size} bytes, the manifest says {size})"
        if why is None and n is None:
            try:
                n = count_samples(path)
            except (tarfile.TarError, OSError) as e:
                why = f"unreadable tar ({e})"
        if why is not None:
            log.warning("%s: skipped: %s", path, why)
            s.skipped[str(path)] = why
        elif n == 0:
            s.empty += 1
        else:
            s.paths.append(str(path))
            s.counts.append(int(n))
            s.sha256.append(digest)
            s.generation.append(gen)
    warn_incomplete(s.spec, incomplete, len(listed))
    if not s.paths:
        why = "; ".join(f"{Path(k).name}: {v}" for k, v in list(s.skipped.items())[:3])
        raise SlifeError(f"{s.spec}: no pairs to train on ({len(listed)} shards listed, {s.empty} empty, "
                         f"{len(s.skipped) - len(incomplete)} unreadable"
                         f"{f', {len(incomplete)} incomplete' if incomplete else ''}{': ' + why if why else ''})")
    return s


def check_image_size(shards: ShardSet, min_short: int) -> None:
    """Raise SlifeError if the first pair's views are smaller than `min_short` (the crop size)."""
    for sample in islice(tar_samples([{"url": shards.paths[0]}], handler=CountingHandler()), 8):
        try:
            pair = decode_pair(sample)
        except ValueError:
            continue
        for v in ("src", "tgt"):
            w, h = pair[v].size
            if min(w, h) < min_short:
                raise SlifeError(f"{shards.paths[0]}: {sample['__key__']} {v}.jpg is {w}x{h}, smaller than the "
                                 f"{min_short} px training crop (lower --img-size or mine with a larger --short-side)")
        return


# ----------------------------------------------------------------------------------------------------
# failure policy


class CountingHandler:
    """webdataset `handler=`: count (by kind) and warn about bad samples, then continue."""

    def __init__(self, max_warnings: int = 5):
        self.counts: Counter = Counter()
        self.max_warnings = max_warnings

    def __call__(self, exn: Exception) -> bool:
        kind = "bad_tar" if isinstance(exn, (tarfile.TarError, EOFError)) or "tar" in type(exn).__name__.lower() \
            else "bad_sample"
        self.counts[kind] += 1
        if sum(self.counts.values()) <= self.max_warnings:
            log.warning("skipped (%s): %s", kind, exn)
        return True


# ----------------------------------------------------------------------------------------------------
# generator stages (each: iterator in, iterator out)


def split_by_node(items: list, rank: int, world: int) -> list:
    """This rank's share of `items` (every world-th); all of them if there are fewer than ranks."""
    return items[rank::world] if len(items) >= world else items


def split_by_worker(items: list, worker: int, num_workers: int) -> list:
    """This loader worker's share of `items`; all of them if there are fewer than workers."""
    return items[worker::num_workers] if len(items) >= num_workers else items


def resampled(urls: list[str], weights: list[int], rng: np.random.Generator) -> Iterator[dict]:
    """Endless shard choices with replacement, proportional to `weights` (sample counts, x a segment's weights)."""
    p = np.asarray(weights, dtype=np.float64)
    p /= p.sum()
    while True:
        yield {"url": urls[int(rng.choice(len(urls), p=p))]}


def well_formed(samples: Iterable[dict], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """Drop samples missing a member or with unreadable json (through `handler`)."""
    for s in samples:
        missing = [m for m in REQUIRED if m not in s]
        try:
            if missing:
                raise ValueError(f"{s.get('__url__')}: {s.get('__key__')}: missing {', '.join(missing)}")
            s["json"] = json.loads(s["json"])
        except ValueError as e:
            if handler(e):
                continue
            raise
        yield s


def shuffle(samples: Iterable, bufsize: int, rng: np.random.Generator) -> Iterator:
    """Buffered shuffle: keep `bufsize` items, yield a random one as each new one arrives."""
    if bufsize <= 1:
        yield from samples
        return
    buf, draws = [], []
    for s in samples:
        if len(buf) < bufsize:
            buf.append(s)
            continue
        if not draws:
            draws = rng.random(1024).tolist()[::-1]  # drawn in blocks: one `integers` call per item costs ~4 us
        k = int(draws.pop() * bufsize)
        buf[k], s = s, buf[k]
        yield s
    order = rng.permutation(len(buf))
    for k in order:
        yield buf[k]


def decode_view(data: bytes, draft_short: int | None = None) -> Image.Image:
    """JPEG bytes -> decoded PIL RGB image (any error from PIL propagates).

    With `draft_short`, JPEGs are decoded at a reduced DCT scale whose short side is still >= it.
    """
    im = Image.open(io.BytesIO(data))
    if draft_short is not None and min(im.size) >= 2 * draft_short:  # a smaller DCT scale is possible
        w, h = im.size
        s = draft_short / min(w, h)
        im.draft("RGB", (max(1, int(np.ceil(w * s))), max(1, int(np.ceil(h * s)))))
    if im.mode == "RGB":
        im.load()  # decode in place (convert would copy the whole image once more)
        return im
    return im.convert("RGB")


def sample_view(sample: dict, view: str, draft_short: int | None = None) -> Image.Image:
    """View "src" or "tgt" of a raw sample, decoded (`decode_view`); ValueError naming the tar, key and view."""
    try:
        return decode_view(sample[f"{view}.jpg"], draft_short)
    except Exception as e:  # PIL raises many types for broken bytes
        raise ValueError(f"{sample.get('__url__')}: {sample['__key__']}: {view}.jpg: {e}") from None


def decode_pair(sample: dict, draft_short: int | None = None) -> dict:
    """Raw sample -> {"key","src","tgt": PIL RGB (decoded),"json", depth bytes or None}; ValueError if bad."""
    out = {"key": sample["__key__"], "json": sample["json"]}
    for v in ("src", "tgt"):
        out[v] = sample_view(sample, v, draft_short)
        out[f"{v}_depth"] = sample.get(f"{v}.depth.png")
    return out


def decoded(samples: Iterable[dict], handler: Callable[[Exception], bool], draft_short: int | None) -> Iterator[dict]:
    """Map `decode_pair` over samples; failures go through `handler`."""
    for s in samples:
        try:
            yield decode_pair(s, draft_short)
        except ValueError as e:
            if handler(e):
                continue
            raise


def step_rng(*key: int) -> np.random.Generator:
    """A generator seeded from a tuple of non-negative ints, e.g. (seed, rank, worker, step)."""
    return np.random.default_rng([int(k) for k in key])


# ----------------------------------------------------------------------------------------------------
# the stream


def worker_steps(first: int, steps_per_epoch: int, worker: int, num_workers: int):
    """Global batch indices this worker yields from `first` on, grouped by epoch:
    [(epoch, already consumed in the epoch by this worker, [its steps in the epoch >= first])...]."""
    epoch = first // steps_per_epoch
    while True:
        lo, hi = epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch
        mine = range(lo + (worker - lo) % num_workers, hi, num_workers)  # b in [lo,hi) with b % W == worker
        done = sum(1 for b in mine if b < first) if first > lo else 0
        yield epoch, done, [b for b in mine if b >= first]
        epoch += 1


class PairStream(torch.utils.data.IterableDataset):
    """Infinite batches for one rank; in a DataLoader, worker w makes the steps b with b % W == w.

    `augment` makes the crops: `augment.PairAugment` (a pair's two views) or any object with the same
    `short`, `new_batch(B, rng)`, `fill_view(arrays, i, view, image, augmented)` and `finish(arrays, n)`
    (e.g. `multicrop.MultiCrop`, several crops of each view)."""

    def __init__(self, shards: ShardSet, augment, batch_size: int, steps_per_epoch: int,
                 seed: int = 0, rank: int = 0, world: int = 1, start_step: int = 0, shuffle_buffer: int = 256,
                 positions: dict | None = None, origin: int = 0, segment: int = 0,
                 weights: list[float] | None = None):
        self.shards, self.augment, self.batch_size = shards, augment, batch_size
        self.steps_per_epoch, self.seed, self.rank, self.world = steps_per_epoch, seed, rank, world
        self.start_step, self.shuffle_buffer = start_step, shuffle_buffer  # start_step: global, >= origin
        # worker -> {"epoch", "taken", "bad"}: where each worker's last trained batch left its stream
        self.positions = {int(k): v for k, v in (positions or {}).items()}
        self.origin = origin  # the global step that is this stream's step 0 (its segment's first step)
        self.segment = segment  # the run's segment (> 0: a continued one, with generators of its own)
        self.weights = weights  # per tar: how many times as often each of its pairs is drawn (None: 1 for all)

    def rng(self, worker: int, *key: int) -> np.random.Generator:
        """The generator of one draw of this (rank, worker): seeded from (seed, rank, worker, *key), and the
        segment when it is a continued one (segment 0 draws what a run made before segments did)."""
        return step_rng(self.seed, self.rank, worker, *key, *([self.segment] if self.segment else []))

    def epoch_samples(self, epoch: int, worker: int, num_workers: int, handler, needed: int) -> Iterator[dict]:
        """This (rank, worker)'s shuffled, well-formed raw samples of `epoch`: `needed` of them plus as many again
        (and a batch) for samples that fail to decode later: an epoch where more than half fail stops with an
        error rather than looping forever on bad data."""
        weights = self.weights or [1.0] * len(self.shards.paths)
        tars = list(zip(self.shards.paths, self.shards.counts, weights))
        mine = []
        for w in sorted(set(weights)):  # each weight class is split on its own, so every worker draws from each
            part = [t for t in tars if t[2] == w]
            mine += split_by_worker(split_by_node(part, self.rank, self.world), worker, num_workers)
        urls, draw = [u for u, _, _ in mine], [n * w for _, n, w in mine]
        src = resampled(urls, draw, self.rng(worker, epoch, 1))
        samples = islice(well_formed(tar_samples(src, handler), handler), 2 * needed + self.batch_size)
        return shuffle(samples, min(self.shuffle_buffer, needed), self.rng(worker, epoch, 2))

    def batches(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict]:
        """This worker's batches: the stream's steps `worker, worker+W, ...` (global step = origin + step) from
        `start_step` on."""
        handler = CountingHandler()
        # each view is cropped as soon as it is decoded, so a frame or two are alive at a time (one Pillow
        # memory block each); let Pillow keep freed blocks for the next frames instead of returning them
        # to the OS and faulting fresh pages in for every JPEG (its default keeps none)
        Image.core.set_blocks_max(max(Image.core.get_blocks_max(), 16))
        pos = self.positions.get(worker)
        if pos:
            handler.counts.update(pos.get("bad") or {})
        B = self.batch_size
        for epoch, done, steps in worker_steps(self.start_step - self.origin, self.steps_per_epoch, worker,
                                               num_workers):
            if not steps:
                continue
            needed = (done + len(steps)) * B  # this worker's samples in the whole epoch
            skip = done * B
            if done and pos and int(pos.get("epoch", -1)) == epoch:
                skip = int(pos["taken"])  # what it really took, failed decodes included
            taken = [skip]

            def counted(it):
                for x in it:
                    taken[0] += 1
                    yield x

            raw = counted(islice(self.epoch_samples(epoch, worker, num_workers, handler, needed), skip, None))
            for step in steps:
                rng = self.rng(worker, step, 3)
                arrays, keys, metas = self.augment.new_batch(B, rng), [], []
                for sample in raw:
                    if self.fill(arrays, len(keys), sample, handler):
                        keys.append(sample["__key__"])
                        metas.append(sample["json"])
                        if len(keys) == B:
                            break
                if not keys:
                    raise SlifeError(f"{self.shards.spec}: no decodable pairs left in epoch {epoch} of worker "
                                     f"{worker} (skipped: {dict(handler.counts)})")
                batch = self.augment.finish(arrays, len(keys))
                batch.update(keys=keys, meta=metas, step=self.origin + step, worker=worker, bad=dict(handler.counts),
                             pos={"epoch": epoch, "taken": taken[0], "bad": dict(handler.counts)})
                yield batch

    def fill(self, arrays: dict, i: int, sample: dict, handler) -> bool:
        """Decode and crop the pair `sample` into slot i of a batch, each view as soon as it is decoded (its
        pixels still in cache); False (through `handler`) if a view does not decode."""
        aug = is_augmented(sample["json"])
        for v, name in enumerate(("src", "tgt")):
            try:
                im = sample_view(sample, name, self.augment.short)
            except ValueError as e:
                if handler(e):
                    return False
                raise
            self.augment.fill_view(arrays, i, v, im, aug)
        return True

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.batches(0, 1)
        # the loader asks workers round-robin from id 0: id 0 must own `start_step`, so ids are rotated
        return self.batches((info.id + self.start_step - self.origin) % info.num_workers, info.num_workers)


def make_loader(stream: PairStream, num_workers: int):
    """A DataLoader over the stream (batches made in the workers, yielded in step order)."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers,
                                       prefetch_factor=4 if num_workers else None,
                                       persistent_workers=False, in_order=True)


# ----------------------------------------------------------------------------------------------------
# deterministic evaluation pairs


def _crop_K(K, w: int, h: int, rw: int, rh: int, x0: int, y0: int):
    """K (3x3 at w x h) -> K at the (rw x rh) resize cropped at (x0, y0); pixel centres at +0.5 (COLMAP)."""
    if K is None:
        return None
    K = np.array(K, dtype=np.float64).reshape(3, 3)
    sx, sy = rw / w, rh / h
    K2 = np.diag([sx, sy, 1.0]) @ K
    K2[0, 2] -= x0
    K2[1, 2] -= y0
    return K2


def _center_crop_view(img: Image.Image, depth: bytes | None, S: int):
    """Resize short side to S, centre crop S x S -> (tensor (3,S,S) in [0,1], depth (S,S) metres | None,
    (rw, rh, x0, y0))."""
    w, h = img.size
    r = resize_short_side(img, S)
    rw, rh = r.size
    x0, y0 = (rw - S) // 2, (rh - S) // 2
    arr = np.asarray(r.crop((x0, y0, x0 + S, y0 + S)))  # (S,S,3) uint8
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)  # (3,S,S)
    d = None
    if depth is not None:
        dm = Image.open(io.BytesIO(depth))
        dm = dm.resize((rw, rh), Image.NEAREST) if dm.size != (rw, rh) else dm
        d = np.asarray(dm.crop((x0, y0, x0 + S, y0 + S)), dtype=np.float32) / 1000.0  # (S,S) metres, 0 invalid
    return t, d, (w, h, rw, rh, x0, y0)


def eval_pairs(shards, img_size: int, num_pairs: int, keep: Collection[int] | None = None) -> list[dict]:
    """The first `num_pairs` pairs of the shard set (of those whose index in write order is in `keep`, when
    given), in order, deterministically resized and centre-cropped.

    Each: {"src","tgt": float32 (3,S,S) ImageNet-normalised, "json", "K_src","K_tgt": 3x3 at the crop or
    None, "src_depth","tgt_depth": (S,S) float32 metres (0 = invalid) or None, "key"}.
    """
    s = shards if isinstance(shards, ShardSet) else resolve_shards(shards)
    handler = CountingHandler()
    out = []
    raw = tar_samples(({"url": u} for u in s.paths), handler)
    if keep is not None:
        keep = set(keep)
        raw = (p for i, p in enumerate(raw) if i in keep)
    for p in decoded(well_formed(raw, handler), handler, draft_short=None):
        item = {"key": p["key"], "json": p["json"]}
        for v in ("src", "tgt"):
            t, d, (w, h, rw, rh, x0, y0) = _center_crop_view(p[v], p[f"{v}_depth"], img_size)
            item[v] = normalize(t[None])[0]
            item[f"{v}_depth"] = d
            item[f"K_{v}"] = _crop_K(view_K(p["json"], v), w, h, rw, rh, x0, y0)
        out.append(item)
        if len(out) >= num_pairs:
            break
    if handler.counts:
        log.warning("eval_pairs: skipped %s", dict(handler.counts))
    return out
