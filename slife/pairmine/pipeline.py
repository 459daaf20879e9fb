"""The mining run: output-folder checks, ingest, strategies, combine, pair table, shards, manifest, preview.

Reads a life path (or an in-memory `Life`) and a `MineConfig`; writes into the output folder `mine.json`
(the run's identity, checked on every re-run), `pairs.jsonl` + `pairs.txt` (the pair table, before any
pixel is decoded), the shards of this node, `manifest.json` (when every shard is complete) and
`preview.png`. Entry point: `mine(cfg, life_path, out_dir, ...)`, called by `slife.pairmine.run`.
With `strict`, a life whose reader lost pixels (`lives.life.LOSS_COUNTS`) is refused before mining, and
pairs lost in the writer stop the run before the manifest (`shardset.write_manifest`; in an append, the
new generation's losses).

Writing (`write_all`): one worker streams (`shards.write_shards`); `--workers N` runs two phases of
N processes: phase 1 splits the frames the unfinished shards need, in decode order, into contiguous
parts and spools each part once (`shards.spool_part`: every frame decoded and encoded once, whatever
the shards that use it); phase 2 writes the shards from the spool (`shards.write_shard`, the same
bytes as the streaming writer). The spool (`.frames`, or `.frames-node<r>` with several nodes) survives
an interrupted run, so a re-run decodes only the parts not yet complete; it is removed once this node's
shards are complete (one node: once the manifest is written).

Output-folder policy (`check_out_dir`, `clear_node_files`): a folder made by other settings is refused
unless --overwrite. With one node --overwrite removes our files; with several, each node removes only
its own shards and spool, rank 0 also the set-wide files (manifest, preview, shards beyond the new
count), so no node deletes another's fresh shards; every stats file carries the run digest, so a shard
left by other settings never counts as complete.

Generations (`generations.py` says what is new): a re-run on a set whose manifest lists generations (or a
set made before them, adopted as generation 0 by `_adopt_legacy`) refuses a changed or removed recording
unless --overwrite, writes again any missing or damaged tar of an old generation (`_repair`: its pairs mined
again from the recordings it had, the same bytes, or a refusal; a later generation mined before today's
spatial rule, `spatial.SPATIAL_RULE`, is refused in one line naming --overwrite), and with nothing new
returns at once, writing nothing. Otherwise it plans generation g (`_plan`: `find_all` over the grown life,
every pair with a new frame: spatial pairs are each new frame's best `per_frame` partners among all frames,
counted exactly from the new frames' visible items, old frames getting no new slots of their own
(`spatial.new_frame_pairs`: the cost follows the new frames and the places they revisit, not the life); the
other strategies run over the life and keep the pairs that involve a new frame; quotas per generation, pair
indices and shard numbers after the old ones, a run digest of its own; the old frames' visibility comes from
the set's per-generation cache, `visibility-%04d.npz`, so only the new frames are projected,
`gen.grown_visibility`; a missing, damaged or stale cache file means the whole grown life's visibility is
computed again, the same matrix, and the file written again), appends its rows to the pair table, writes its
tars like any run (resumable: a kill then a re-run writes the same bytes; the old frames its pairs use are
copied from the old tars, found through the earlier generations' frame-location indexes, `gen.old_frames`),
indexes where its tars hold each frame (`gen.save_locations`, `locations-%04d.npz`, written by the process
that writes the manifest, and again by `_repair` for a tar it writes again) and adds its record, with its
spatial rule, to the manifest last. A --pairs-only set has generations too (no shards: each appends its rows
to the pair table, the earlier rows unchanged).
Each step is its module's job: `ingest`, `visibility`, the strategies, `combine`, `generations`, `shards`,
`shardset` (the format), `manifest` (its summary), `preview`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
from collections import ChainMap
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from slife.errors import SlifeError
from slife.lives.life import LOSS_COUNTS, Life
from slife.pairmine import STRATEGIES, MineConfig
from slife.pairmine.combine import PairTable, combine
from slife.pairmine.ingest import FrameTable, ingest
from slife.io import atomic_write_json
from slife.pairmine import generations as gen
from slife.pairmine import shards as sh
from slife.pairmine import shardset as ss
from slife.pairmine.manifest import merge_summaries, spatial_coverage, summarize
from slife.pairmine.shards import write_shards
from slife.pairmine.shardset import shard_complete, shard_name, stats_name
from slife.pairmine.spatial import SPATIAL_RULE
from slife.pairmine.visibility import Visibility, compute_visibility, jaccard_exact

log = logging.getLogger(__name__)

PART_FRAMES = 1024  # spool: at most this many frames per part (resume granularity and progress steps)
SPOOL_SHARE = 0.8  # two-phase writer: share of the progress (in pairs) given to phase 1 (decode + encode)


def slife_version() -> str:
    try:
        from importlib.metadata import version

        return version("slife")
    except Exception:  # noqa: BLE001 - not installed: still mine
        return "unknown"


def run_digest(identity: dict) -> str:
    """A short digest of the run's identity (life + settings): stored in stats files and spool indexes."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def content_digest(table: FrameTable, pairs: PairTable) -> str:
    """A digest of what the shards hold beyond the settings: the pairs, the frames' times and poses, and the
    size and modification time of every video or image file. A life re-rendered or re-exported at the same
    path changes it, so that its old shards are written again instead of being kept."""
    life = table.life
    h = hashlib.sha256()
    for arr in (pairs.a, pairs.b, life.t, life.frame_index, life.source,
                life.T_world_cam if life.T_world_cam is not None else np.zeros(0)):
        h.update(np.ascontiguousarray(arr).tobytes())
    for src in life.sources:
        files = getattr(src, "files", None) or [getattr(src, "path", None)]
        for f in files:
            try:
                st = os.stat(f)
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
            except (OSError, TypeError):
                h.update(f"{f}:?;".encode())
    return h.hexdigest()[:16]


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def check_out_dir(out_dir: Path, identity: dict, overwrite: bool) -> None:
    """Refuse, before any work, a non-empty folder made by other settings unless `overwrite`. Writes nothing:
    a run that fails on its input leaves no folder behind to block the corrected run (`prepare_out_dir`
    writes once the pairs are found). A folder holding only mine.json (left by an older run that found
    nothing) counts as empty."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SlifeError(f"{out_dir}: is a file, not a folder; choose another --out")
    if not out_dir.exists() or overwrite:
        return
    mine_json = out_dir / ss.MINE_JSON
    entries = [p for p in out_dir.iterdir() if not p.name.startswith(".")]  # ignore other nodes' temp files
    if not entries or entries == [mine_json]:
        return
    if not mine_json.exists():
        raise SlifeError(f"{out_dir}: folder is not empty and was not made by `slife mine-pairs`; "
                         "choose another --out or pass --overwrite")
    try:
        old = json.loads(mine_json.read_text())
    except (OSError, ValueError) as e:
        raise SlifeError(f"{mine_json}: unreadable ({e}); pass --overwrite to mine this folder again") from None
    diff = settings_diff(old, identity)
    if diff:
        moved = "; a life moved or copied elsewhere counts as another life" if "life" in diff else ""
        raise SlifeError(f"{out_dir}: holds pairs mined with other settings ({describe_diff(old, identity, diff)}"
                         f"{moved}); pass --overwrite to mine again into it, or choose another --out")


def settings_diff(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names that differ between two identities {"life": ..., "config": {...}, ...}: top-level keys, then
    the config fields, leaving out `ignore`d config fields. [] when they agree."""
    old_c, new_c = old.get("config") or {}, new.get("config") or {}
    top = sorted(k for k in set(old) | set(new) if k != "config" and old.get(k) != new.get(k))
    fields = sorted(k for k in set(old_c) | set(new_c) if k not in ignore and old_c.get(k) != new_c.get(k))
    return top + fields


def describe_diff(old: dict, new: dict, names: list[str]) -> str:
    """'voxel differs: 0.1 -> 0.2' or '2 settings differ: life /a -> /b, voxel 0.1 -> 0.2': the `settings_diff`
    names with their old and new values (top-level keys or config fields)."""
    old_c, new_c = old.get("config") or {}, new.get("config") or {}

    def value(d: dict, c: dict, k: str):
        return d.get(k) if k in d and k != "config" else c.get(k)

    change = {k: f"{value(old, old_c, k)} -> {value(new, new_c, k)}" for k in names}
    if len(names) == 1:
        return f"{names[0]} differs: {change[names[0]]}"
    return f"{len(names)} settings differ: " + ", ".join(f"{k} {v}" for k, v in change.items())


def prepare_out_dir(out_dir: Path, identity: dict, overwrite: bool, num_nodes: int = 1, node_rank: int = 0) -> None:
    """Create the folder and write mine.json (atomically), once `check_out_dir` passed and pairs were found.

    With `overwrite`, one node removes all our files here; with several nodes only rank 0 removes the
    set-wide files (manifest, preview) here, and each node its own shards later (`clear_node_files`, once
    the shard count is known), so that no node deletes shards another has just written. Every node
    writes the same mine.json.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    mine_json = out_dir / ss.MINE_JSON
    if overwrite:
        pats = ss.OUR_FILES if num_nodes <= 1 else ss.SET_FILES if node_rank == 0 else ()
        for pat in pats:
            for p in out_dir.glob(pat):
                _remove(p)
    try:
        same = json.loads(mine_json.read_text()) == identity
    except (OSError, ValueError):
        same = False
    if not same:
        atomic_write_json(mine_json, identity, indent=1)


_NODE_SPOOL = re.compile(r"^\.frames-node(\d+)$")


def clear_node_files(out_dir: Path, shard_ids: list[int], n_shards: int, num_nodes: int, node_rank: int) -> None:
    """--overwrite with several nodes: remove this node's shards (tars, stats, temporaries) and its spool;
    rank 0 also removes shards numbered beyond the new shard count and spools of ranks that no longer exist.
    The pair table is not removed: every node replaces it atomically with the same content."""
    mine = set(shard_ids)
    spools = {sh.spool_name(num_nodes, node_rank)}
    if node_rank == 0:
        spools.add(".frames")
    for p in out_dir.iterdir():
        m, ms = ss.SHARD_FILE.match(p.name), _NODE_SPOOL.match(p.name)
        if m and (int(m.group(1)) in mine or (node_rank == 0 and int(m.group(1)) >= n_shards)):
            _remove(p)
        elif p.name in spools or (ms and node_rank == 0 and int(ms.group(1)) >= num_nodes):
            _remove(p)


def find_all(table: FrameTable, cfg: MineConfig, new: np.ndarray | None = None, generation: int = 0,
             vis: Visibility | None = None):
    """Run every asked strategy -> (PairTable, visibility counts, warnings, visibility).

    For generation g > 0 of a shard set, `new` (N,) bool marks the frames of the recordings it adds. Spatial
    pairs follow the later-generation rule (`spatial.new_frame_pairs`, its module docstring section 6): every
    (new frame, other frame of the grown life) pair counted exactly, those with J in [j_min, j_max] kept, each
    NEW frame keeping its `per_frame` highest-J partners as the source view (0: all in range); old frames get
    no slots of their own, so the search costs in proportion to the new frames and the places they revisit,
    not to the life. The other strategies run over the whole life (seeded with g too; vectorised, cheap) and
    keep the pairs that involve a new frame (temporal: within the new recordings; random: drawn by or landing
    on a new frame; augmented: the new frames'), and the quotas (`max_pairs`, `ratios`) cut those.
    Generation 0 (`new` None) mines the whole life (spatial: MinHash/LSH, steps 1-5). `vis`: the life's
    visibility when the caller has it (an append: `generations.grown_visibility`, the old frames' rows from
    the set's cache), else computed here."""
    life = table.life

    def rng(k: int) -> np.random.Generator:  # (seed, k) in generation 0, as before generations existed
        return np.random.default_rng([cfg.seed, k, generation] if generation else [cfg.seed, k])

    found: dict = {}
    warnings: list[str] = []
    vis_counts: dict = {}
    strategies = list(cfg.strategies)
    if "spatial" in strategies and not (life.has_poses or life.tracks is not None):
        msg = (f"{life.root}: this life has no camera poses, so spatial pairs cannot be mined; "
               "run `slife sfm` on it first")
        if len(strategies) == 1:
            raise SlifeError(msg + " (or choose temporal/random/augmented)")
        log.warning("%s; mining %s only", msg, "+".join(s for s in strategies if s != "spatial"))
        warnings.append(msg)
        strategies.remove("spatial")
    if "spatial" not in strategies:
        vis = None
    elif vis is None:
        vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells, threads=cfg.workers)
    if vis is not None:
        vis_counts = {"method": vis.method, "items": int(vis.V.shape[1]), **vis.counts,
                      "mean_items_per_frame": float(vis.sizes.mean()) if len(life) else 0.0}
    for s in strategies:
        r = rng(list(STRATEGIES).index(s))  # independent of the other strategies
        mod = importlib.import_module(STRATEGIES[s])
        if s == "spatial" and new is not None:  # a later generation's rule: its new frames' partners only
            found[s] = mod.find_pair_arrays(life, cfg, r, vis, new=new)
        elif hasattr(mod, "find_pair_arrays"):
            found[s] = mod.find_pair_arrays(life, cfg, r, vis)
        else:  # a plug-in with only the generator interface
            ps = list(mod.find_pairs(life, cfg, r))
            found[s] = (np.array([p.a for p in ps], np.int64), np.array([p.b for p in ps], np.int64),
                        np.array([np.nan if p.jaccard is None else p.jaccard for p in ps]))
        if new is not None:
            a, b, J = found[s]
            keep = new[a] | new[b]
            found[s] = (a[keep], b[keep], J[keep])
        log.info("%s: %d pairs found (before duplicates, a pair found from both its frames among them, are merged)",
                 s, len(found[s][0]))
    pairs = combine(found, cfg.strategies, table.decode_rank, rng(1000), cfg.max_pairs, dict(cfg.ratios))
    per = {s: int(((pairs.mask >> k) & 1).sum()) for k, s in enumerate(pairs.strategies)}
    log.info("%d pairs after merging duplicates%s (%s)", len(pairs), " and quotas" if cfg.max_pairs else "",
             ", ".join(f"{s}: {n}" for s, n in per.items() if s in found))
    if vis is not None:  # Jaccard for every pair whose two frames have visibility
        pv = life.pose_valid if life.pose_valid is not None else np.ones(len(life), bool)
        need = np.isnan(pairs.jaccard) & pv[pairs.a] & pv[pairs.b] & (pairs.a != pairs.b)
        if need.any():
            pairs.jaccard[need] = jaccard_exact(vis, pairs.a[need], pairs.b[need])
    return pairs, vis_counts, warnings, vis


def write_pair_table(out_dir: Path, table: FrameTable, pairs: PairTable) -> Path:
    """pairs.jsonl (one pair per line, in write order) and hloc-style pairs.txt ("name_a name_b"), after the
    lines of the earlier generations' pairs (`pairs.first_pair` of them). `a`/`b` are sampled-life indices of
    the life the pair's generation was mined from; names, videos and frame numbers stay valid as it grows."""
    life = table.life
    names = {}

    def name(i):
        if i not in names:
            names[i] = table.frame_name(i)
        return names[i]

    labels = pairs.labels()
    rows, ends = [], []
    for k in range(len(pairs)):
        a, b = int(pairs.a[k]), int(pairs.b[k])
        J = float(pairs.jaccard[k])
        rows.append({
            "pair": pairs.first_pair + k, "strategy": labels[k], "a": a, "b": b, "name_a": name(a), "name_b": name(b),
            "video_a": life.source_name(a), "video_b": life.source_name(b),
            "frame_a": int(life.frame_index[a]), "frame_b": int(life.frame_index[b]),
            "t_a": float(life.t[a]), "t_b": float(life.t[b]), "jaccard": None if np.isnan(J) else J})
        ends.append((name(a), name(b)))
    return ss.write_pair_table(out_dir, rows, ends, keep=pairs.first_pair)


_JOB: dict = {}  # what forked writer processes need (set before each pool is made)


def _spool_one(task: tuple[int, np.ndarray]) -> tuple[int, dict]:
    part, ids = task
    j = _JOB
    return len(ids), sh.spool_part(j["table"], ids, j["spool_dir"], part, j["short_side"], j["quality"], j["run"])


def _write_from_spool(s: int) -> tuple[int, dict]:
    j = _JOB
    pairs, pps = j["pairs"], j["pps"]
    r0, r1 = pairs.shard_rows(s, pps)
    spool, stored = j["spool"], j["stored"]
    frames, sizes = spool.read(np.concatenate([pairs.a[r0:r1], pairs.b[r0:r1]])), spool.sizes
    if stored is not None:
        frames, sizes = ChainMap(frames, stored.frames), ChainMap(sizes, stored.sizes)
    return r1 - r0, sh.write_shard(j["table"], pairs, j["out_dir"], s, pps, frames, sizes, j["run"])


class _Scaled:
    """Advances `progress` by `total` units over `steps` steps (cumulative rounding: sums exactly)."""

    def __init__(self, progress, total: int, steps: int):
        self.progress, self.total, self.steps, self.done, self.sent = progress, total, max(steps, 1), 0, 0

    def __call__(self, n: int) -> None:
        self.done += n
        due = int(round(self.total * min(self.done, self.steps) / self.steps))
        if self.progress and due > self.sent:
            self.progress(due - self.sent)
        self.sent = max(self.sent, due)


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops the pool (no traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_all(table: FrameTable, pairs: PairTable, out_dir: Path, shard_ids: list[int], cfg: MineConfig,
              progress: Callable[..., None] | None = None, run: str | None = None,
              spool_dir: Path | None = None, stored: sh.StoredFrames | None = None) -> dict:
    """Write `shard_ids` (skipping complete ones); returns summed counts.

    One worker: the streaming writer. Several: phase 1 spools the needed frames (each decoded and encoded
    once, in contiguous decode-order parts, parts already in `spool_dir` reused), phase 2 writes the
    shards from the spool; both with `cfg.workers` forked processes. One worker resuming a spool left by an
    interrupted run of several also takes the two phases, so spooled frames are not decoded again.
    `progress(n)` counts pairs (phase 1 advances the first SPOOL_SHARE of them as frames are spooled,
    phase 2 the rest as shards are written). Frames in `stored` (earlier generations' tars) are read from
    there instead of being decoded.
    """
    out_dir = Path(out_dir)
    for s in shard_ids:  # temporaries of an interrupted writer: its unfinished tars are rewritten below
        for t in out_dir.glob(f".{shard_name(s)}.tmp*"):
            t.unlink(missing_ok=True)
    spool_dir = Path(spool_dir or out_dir / sh.spool_name(cfg.num_nodes, cfg.node_rank))
    if cfg.workers <= 1 and not any(spool_dir.glob("part-*.json")):
        return write_shards(table, pairs, out_dir, shard_ids, cfg.pairs_per_shard, cfg.short_side,
                            cfg.jpeg_quality, progress, run=run, stored=stored)
    # several workers, or one resuming a run of several that left spooled frames: reuse them (two phases)
    todo = [s for s in sorted(shard_ids) if not shard_complete(out_dir, s, run)]
    counts = sh.new_counts(len(shard_ids) - len(todo))
    if not todo:
        return counts
    spool_dir.mkdir(parents=True, exist_ok=True)
    rows = sh.todo_rows(todo, cfg.pairs_per_shard, pairs)
    need = np.unique(np.concatenate([pairs.a[rows], pairs.b[rows]]))  # (F,) life indices
    if stored is not None:
        need = need[~np.isin(need, np.fromiter(stored.loc, np.int64, len(stored.loc)))]
    spool = sh.Spool(spool_dir, run or "")
    left = need[~np.isin(need, spool.asked)]  # (L,) frames no complete part holds
    left = left[np.argsort(table.decode_rank[left], kind="stable")]  # decode order: contiguous video stretches
    P1 = int(round(len(rows) * SPOOL_SHARE)) if len(left) else 0
    ctx = mp.get_context("fork")
    try:
        if len(left):
            n_parts = min(len(left), max(2 * cfg.workers, -(-len(left) // PART_FRAMES)))
            tasks = [(spool.last_part + 1 + k, ids) for k, ids in enumerate(np.array_split(left, n_parts))]
            log.info("spooling %d frames (%d already spooled) in %d parts", len(left), len(need) - len(left), n_parts)
            _JOB.update(table=table, spool_dir=spool_dir, short_side=cfg.short_side, quality=cfg.jpeg_quality,
                        run=run or "")
            step = _Scaled(progress, P1, len(left))
            with ctx.Pool(min(cfg.workers, n_parts), initializer=_ignore_sigint) as pool:
                for n, c in pool.imap_unordered(_spool_one, tasks):
                    counts["frames_decoded"] += c["frames_decoded"]
                    counts["frames_missing"] += c["frames_missing"]
                    counts["frames_corrupt"] += c["frames_corrupt"]
                    step(n)
            spool = sh.Spool(spool_dir, run or "")
            lost = np.setdiff1d(need, spool.asked)
            if len(lost):  # a part vanished under us (another process cleaning the folder?)
                raise SlifeError(f"{spool_dir}: {len(lost)} frames missing from the spool after spooling "
                                 f"(first: life frame {int(lost[0])}); run again")
        _JOB.clear()
        _JOB.update(table=table, pairs=pairs, out_dir=out_dir, pps=cfg.pairs_per_shard, spool=spool, run=run or "",
                    stored=stored)
        step = _Scaled(progress, len(rows) - P1, len(rows))
        with ctx.Pool(min(cfg.workers, len(todo)), initializer=_ignore_sigint) as pool:
            for n, st in pool.imap_unordered(_write_from_spool, todo):
                sh.add_shard_counts(counts, st)
                step(n)
    finally:
        _JOB.clear()
        spool.close()
    return counts


@dataclass
class _Plan:
    """One generation's pairs as the miner plans them, before anything is written."""

    number: int  # the generation
    table: FrameTable  # the life as the generation sees it (all of it, but for an old generation mined again)
    pairs: PairTable  # its pairs, with the set's pair and shard numbers (first_pair, first_shard)
    run: str  # the digest every one of its shards' stats carries
    added: list[str]  # the recordings it adds
    vis_counts: dict
    warnings: list[str]
    vis: Visibility | None = None  # the life's visibility (spatial only), for the set's cache
    uncached: tuple[int, ...] = ()  # earlier generations whose visibility cache was missing, damaged or stale


def _plan(cfg: MineConfig, identity: dict, table: FrameTable, number: int, old: set[str], added: list[str] | None,
          first_pair: int, first_shard: int, out_dir: Path | None = None, before: list[dict] = ()) -> _Plan:
    """Mine generation `number` of the life restricted to the recordings `old` + `added`, those of `added` being
    new (`added` None: the whole life; generation 0 is mined as before generations existed). With `out_dir` and
    the generations `before` it, the old frames' visibility comes from their cache (`gen.grown_visibility`)."""
    sub = table if added is None else gen.restrict(table, old | set(added))
    new = gen.new_frames(sub, added) if number else None
    vis, uncached = None, []
    if number and out_dir is not None and "spatial" in cfg.strategies and (sub.life.has_poses
                                                                            or sub.life.tracks is not None):
        vis, uncached = gen.grown_visibility(out_dir, list(before), sub, new, cfg)
    pairs, vis_counts, warnings, vis = find_all(sub, cfg, new=new, generation=number, vis=vis)
    pairs.first_pair, pairs.first_shard = first_pair, first_shard
    run = ""
    if not cfg.pairs_only:  # the content digest stats every file: only when shards are written
        content = content_digest(sub, pairs)
        key = {**identity, "content": content} if not number else \
            {**identity, "generation": number, "first_pair": first_pair, "first_shard": first_shard, "content": content}
        run = run_digest(key)
    return _Plan(number, sub, pairs, run, list(added or []), vis_counts, warnings, vis, tuple(uncached))


def _adopt_legacy(cfg: MineConfig, identity: dict, table: FrameTable, out_dir: Path, man: dict) -> dict:
    """A set made before generations existed, as generation 0, when mining its recordings again gives the run
    digest its stats carry; else SlifeError saying how to proceed."""
    if man.get("pairs_only"):
        raise SlifeError(f"{out_dir}: a pairs-only set made by slife {man.get('slife_version', '?')} before pairs-only "
                         "sets had generations, so new pairs cannot be appended to it; pass --overwrite to mine the "
                         "life again as generation 0, or choose another --out")
    names = [x.get("name", "") for x in (man.get("life") or {}).get("sources") or []]
    n = len(man.get("shards") or [])
    runs = {(ss.read_stats(out_dir, k) or {}).get("run") for k in range(n)}
    current = {r["name"]: r for r in gen.recordings(table)}
    why = ("its manifest does not list the life's recordings" if not names else
           "its shards are not all finished" if not n or None in runs or len(runs) != 1 else
           "recordings it was mined from are no longer in the life" if not set(names) <= set(current) else None)
    plan = None
    if why is None:
        plan = _plan(cfg, identity, table, 0, set(), names, 0, 0)
        if plan.run not in runs:
            why = "its recordings (or the life's geometry) changed since"
    if why is not None:
        raise SlifeError(f"{out_dir}: made by slife {man.get('slife_version', '?')} before shard sets had generations, "
                         f"and {why}; pass --overwrite to mine the life again as generation 0, or choose another --out")
    log.info("%s: a set made before generations, adopted as generation 0 (%d recordings, %d pairs)", out_dir,
             len(names), len(plan.pairs))
    return ss.generation_record(0, [current[x] for x in names], 0, len(plan.pairs), 0, n, plan.run,
                                man.get("command", ""), man.get("summary", {}), gen.geometry_digest(plan.table.life))


def _repair(cfg: MineConfig, identity: dict, table: FrameTable, out_dir: Path, gens: list[dict], k: int,
            progress) -> None:
    """Write again the shards of old generation k that are missing or damaged (same bytes: its pairs are mined
    again from the recordings it had); SlifeError when that is no longer possible (the life changed, or a later
    generation with spatial pairs was mined under an earlier rule: no `spatial_rule` in its record)."""
    g = gens[k]
    ids = list(range(g["first_shard"], g["first_shard"] + g["shards"]))
    bad = [s for s in ids if not shard_complete(out_dir, s, g["run"])]
    if not bad:
        return
    if k and "spatial" in cfg.strategies and g.get("spatial_rule") != SPATIAL_RULE:
        raise SlifeError(f"{out_dir}: {shard_name(bad[0])} of generation {k} is missing or damaged ({len(bad)} "
                         f"shard(s)) and generation {k} was mined by an older slife whose spatial pairs for a later "
                         "generation were chosen by another rule, so it cannot be written again as it was; pass "
                         "--overwrite to mine the whole life again")
    old = {r["name"] for h in gens[:k] for r in h["recordings"]}
    plan = _plan(cfg, identity, table, k, old, [r["name"] for r in g["recordings"]], g["first_pair"], g["first_shard"],
                 out_dir, gens[:k])
    if plan.run != g["run"]:
        raise SlifeError(f"{out_dir}: {shard_name(bad[0])} of generation {k} is missing or damaged ({len(bad)} "
                         f"shard(s)) and generation {k} can no longer be mined as it was (the life's geometry or files "
                         "changed); pass --overwrite to mine the whole life again")
    log.warning("%s: %d shard(s) of generation %d missing or damaged (first: %s): written again", out_dir, len(bad), k,
                shard_name(bad[0]))
    spool_dir = out_dir / sh.spool_name(cfg.num_nodes, cfg.node_rank)
    (out_dir / ss.locations_name(k)).unlink(missing_ok=True)  # its frame locations: made again from the new tars
    write_all(plan.table, plan.pairs, out_dir, bad, cfg, progress, run=plan.run, spool_dir=spool_dir)
    _remove(spool_dir)
    if all(shard_complete(out_dir, s, g["run"]) for s in ids):
        gen.save_locations(out_dir, g, gen.pair_ends(plan.table, plan.pairs))


def _old_generations(cfg: MineConfig, identity: dict, table: FrameTable, out_dir: Path) -> list[dict]:
    """The generations the set at `out_dir` holds ([] for a new set, or a first run not finished)."""
    if cfg.overwrite:
        return []
    try:
        man = ss.read_manifest(out_dir)
    except SlifeError as e:
        raise SlifeError(f"{e}; pass --overwrite to mine this folder again") from None
    if man is None:
        return []
    if "generations" not in man:
        return [_adopt_legacy(cfg, identity, table, out_dir, man)]
    return gen.generations_of(man)


def mine(cfg: MineConfig, life_path: Path | Life, out_dir: Path, merge: bool = False, command: str = "",
         progress: Callable[..., None] | None = None) -> Path:
    """See `slife.pairmine.run`."""
    out_dir = Path(out_dir)
    src = str(life_path.root) if isinstance(life_path, Life) else str(Path(life_path).resolve())
    identity = {"life": src, "config": cfg.identity()}
    check_out_dir(out_dir, identity, cfg.overwrite)
    table = ingest(life_path, cfg.fps, cfg.reader, cfg.reader_options)
    lost = {k: table.life.counts[k] for k in LOSS_COUNTS if table.life.counts.get(k)}
    if cfg.strict and lost:
        raise SlifeError(f"{table.life.root}: --strict: the life is incomplete ("
                         + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in lost.items())
                         + f"); `slife inspect {table.life.root}` names them")
    if not cfg.pairs_only and not table.life.has_pixels:
        raise SlifeError(f"{table.life.root}: has poses but no video or images to put into shards; "
                         "pass --pairs-only to write pairs.jsonl and pairs.txt only")
    command = command or " ".join(sys.argv)
    current = gen.recordings(table)
    gens = _old_generations(cfg, identity, table, out_dir)
    gen.check_unchanged(out_dir, gens, current)
    if not merge and cfg.node_rank == 0:
        for k in range(len(gens)):
            _repair(cfg, identity, table, out_dir, gens, k, progress)
    known = {r["name"] for g in gens for r in g["recordings"]}
    added = [r["name"] for r in current if r["name"] not in known]
    if gens and not added:
        log.info("%s: nothing new in %s since generation %d (%d recordings): nothing written", out_dir,
                 table.life.root, len(gens) - 1, len(known))
        return out_dir / ss.MANIFEST
    number = len(gens)
    first_pair = int(sum(g["pairs"] for g in gens))
    first_shard = int(sum(g["shards"] for g in gens))
    if number:
        log.info("%s: generation %d: %d new recording(s) (%s)", out_dir, number, len(added), ", ".join(added[:5]))
    plan = _plan(cfg, identity, table, number, known, added if number else None, first_pair, first_shard, out_dir, gens)
    pairs = plan.pairs
    if not len(pairs):
        found = ", ".join(f"{s} {n}" for s, n in pairs.counts["found"].items())
        what = f"{len(table.life)} sampled frames" if not number else \
            f"{int(gen.new_frames(table, added).sum())} new sampled frames"
        raise SlifeError(f"{table.life.root}: no pairs found with these settings ({found} over {what}); "
                         "loosen them (e.g. --fps, the gap or Jaccard range)")
    prepare_out_dir(out_dir, identity, cfg.overwrite, cfg.num_nodes, cfg.node_rank)
    if plan.vis is not None and cfg.node_rank == 0 and not merge:  # the visibility cache: this generation's
        # frames, and those of earlier generations whose cache was not usable (a set made before it existed)
        for k in plan.uncached:
            gen.save_visibility(out_dir, k, gens[k]["recordings"], plan.table, plan.vis, cfg)
        gen.save_visibility(out_dir, number, [r for r in current if r["name"] in set(added)] if number else current,
                            plan.table, plan.vis, cfg)
    new = gen.new_frames(table, added) if number else None
    old = gen.old_frames(out_dir, gens, table) if number else None  # what the earlier generations' tars hold
    write_pair_table(out_dir, table, pairs)
    summary = summarize(table, pairs, new=new)
    summary["visibility"] = plan.vis_counts
    if number:
        summary["frames_new"] = int(new.sum())
    P = len(pairs)
    ids = [] if cfg.pairs_only else pairs.shard_ids(cfg.pairs_per_shard)
    n_shards = first_shard + len(ids)  # in the whole set
    mine_ids = [int(s) for s in np.array_split(np.asarray(ids, np.int64), cfg.num_nodes)[cfg.node_rank]] \
        if ids else []
    if cfg.overwrite and cfg.num_nodes > 1 and not merge:
        clear_node_files(out_dir, mine_ids, n_shards, cfg.num_nodes, cfg.node_rank)
    elif number and not merge and cfg.node_rank == 0:
        _remove_beyond(out_dir, n_shards)  # shards of an interrupted append that planned more of them
    life = table.life
    base = {
        "slife_version": slife_version(),
        "command": command,
        "life": {"path": src, "name": life.name, "format": life.format, "frames": table.frames_total,
                 "sampled_frames": len(life), "reader_counts": dict(life.counts),
                 "sources": [{"name": x.name, "path": str(getattr(x, "path", ""))} for x in life.sources]},
        "config": {**asdict(cfg), "strategies": list(cfg.strategies)},
        "pairs_only": cfg.pairs_only,
        "warnings": plan.warnings + list(life.warnings),
        "summary": summary,
    }
    run = plan.run  # in every shard's stats ("" with --pairs-only: no shards)
    spool_dir = out_dir / sh.spool_name(cfg.num_nodes, cfg.node_rank)
    if not merge and not cfg.pairs_only:
        stored = None
        if number:  # old frames the new pairs use: from the old tars, already encoded
            old_used = np.unique(np.concatenate([pairs.a, pairs.b]))
            old_used = old_used[~new[old_used]]
            loc = gen.stored_locations(out_dir, old, old_used)
            stored = sh.StoredFrames(life, loc) if loc else None
            log.info("%s: %d of the %d old frames the new pairs use are taken from the old tars", out_dir, len(loc),
                     len(old_used))
        counts = write_all(table, pairs, out_dir, mine_ids, cfg, progress, run=run, spool_dir=spool_dir,
                           stored=stored)
        log.info("node %d/%d: %s", cfg.node_rank, cfg.num_nodes, counts)
        if cfg.num_nodes > 1 and all(shard_complete(out_dir, s, run) for s in mine_ids):
            _remove(spool_dir)  # this node's shards are done
    complete = [shard_complete(out_dir, s, run) for s in ids]
    if cfg.num_nodes > 1 and not merge and not all(complete):
        log.info("node %d done; other nodes' shards are not all complete: run --merge when they are", cfg.node_rank)
        return out_dir / ss.MANIFEST
    stale = [s for s, ok in zip(ids, complete) if not ok and (out_dir / stats_name(s)).exists()]
    if stale:
        raise SlifeError(f"{out_dir}: {len(stale)} of {len(ids)} shards are incomplete or were written with other settings "
                         f"(first: {shard_name(stale[0])}); run their nodes again, then --merge")
    geometry = gen.geometry_digest(life)
    if gens and gens[-1].get("geometry") not in (None, geometry):
        log.warning("%s: the life's points or tracks changed since generation %d: its pairs keep the Jaccard measured "
                    "then; the new pairs are measured on the geometry of now", out_dir, number - 1)
    failed = _failed_frames(out_dir, ids)
    written = ~(np.isin(pairs.a, failed) | np.isin(pairs.b, failed)) if len(failed) else None
    if written is not None:  # frames used and spatial coverage as the tars hold them, not as planned
        summary.update({k: v for k, v in summarize(table, pairs, new=new, written=written).items()
                        if k in ("frames_used", "spatial_coverage")})
    new_recordings = [r for r in current if r["name"] in set(added)]
    record = ss.generation_record(number, new_recordings, first_pair, P, first_shard, len(ids), run, command, summary,
                                  geometry, added=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  spatial_rule=SPATIAL_RULE if number else None)
    if all(complete):  # before the manifest, so that a finished set has it (else write_manifest says what is missing)
        gen.save_locations(out_dir, record, gen.pair_ends(table, pairs))
    gens = gens + [record]
    base["generations"] = gens
    base["summary"] = merge_summaries([g["summary"] for g in gens])
    if old is not None:  # distinct frames over all generations (merge_summaries can only add them up)
        used_before, spatial_before = old.used.copy(), old.spatial
        w = slice(None) if written is None else written
        used_before[pairs.a[w]] = used_before[pairs.b[w]] = True
        base["summary"]["frames_used"] = int(used_before.sum())
        if "spatial_coverage" in summary:  # over the grown life, with the earlier generations' spatial pairs
            pv = life.pose_valid if life.pose_valid is not None else np.zeros(len(life), bool)
            base["summary"]["spatial_coverage"] = spatial_coverage(pairs, pv, before=spatial_before, written=written)
    path = ss.write_manifest(out_dir, n_shards, base, table=table, strict=cfg.strict)
    if cfg.num_nodes <= 1:
        _remove(spool_dir)
    if cfg.preview > 0 and P and not cfg.pairs_only:
        from slife.pairmine.preview import contact_sheet

        contact_sheet(out_dir, cfg.preview, seed=cfg.seed)
    return path


def _failed_frames(out_dir: Path, shard_ids: list[int]) -> np.ndarray:
    """The sampled-life indices of the frames that did not decode in the shards `shard_ids` (their stats'
    `frames_missing`), sorted."""
    failed: set[int] = set()
    for s in shard_ids:
        failed.update((ss.read_stats(out_dir, s) or {}).get("frames_missing", []))
    return np.array(sorted(failed), np.int64)


def _remove_beyond(out_dir: Path, n_shards: int) -> None:
    """Remove shard files (tars, stats, temporaries) numbered n_shards or more."""
    for p in out_dir.iterdir():
        m = ss.SHARD_FILE.match(p.name)
        if m and int(m.group(1)) >= n_shards:
            _remove(p)
