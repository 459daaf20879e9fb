"""The mining run: output-folder checks, ingest, strategies, combine, pair table, shards, manifest, preview.

Reads a life path (or an in-memory `Life`) and a `MineConfig`; writes into the output folder `mine.json`
(the run's identity, checked on every re-run), `pairs.jsonl` + `pairs.txt` (the pair table, before any
pixel is decoded), the shards of this node, `manifest.json` (when every shard is complete) and
`preview.png`. Entry point: `mine(cfg, life_path, out_dir, ...)`, called by `slife.pairmine.run`.

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
Each step is its module's job: `ingest`, `visibility`, the strategies, `combine`, `shards`, `manifest`,
`preview`.
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
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from slife.errors import SlifeError
from slife.lives.life import Life
from slife.pairmine import STRATEGIES, MineConfig
from slife.pairmine.combine import PairTable, combine
from slife.pairmine.ingest import FrameTable, ingest
from slife.io import atomic_write_json
from slife.pairmine import shards as sh
from slife.pairmine import shardset as ss
from slife.pairmine.manifest import summarize
from slife.pairmine.shards import write_shards
from slife.pairmine.shardset import shard_complete, shard_name, stats_name
from slife.pairmine.visibility import compute_visibility, jaccard_exact

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
        raise SlifeError(f"{out_dir}: holds pairs mined with other settings ({', '.join(diff)} differ); "
                         "pass --overwrite to replace them or choose another --out")


def settings_diff(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names that differ between two identities {"life": ..., "config": {...}, ...}: top-level keys, then
    the config fields, leaving out `ignore`d config fields. [] when they agree."""
    old_c, new_c = old.get("config") or {}, new.get("config") or {}
    top = sorted(k for k in set(old) | set(new) if k != "config" and old.get(k) != new.get(k))
    fields = sorted(k for k in set(old_c) | set(new_c) if k not in ignore and old_c.get(k) != new_c.get(k))
    return top + fields


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


def find_all(table: FrameTable, cfg: MineConfig, progress: Callable[..., None] | None = None):
    """Run every asked strategy -> (PairTable, visibility counts, warnings)."""
    life = table.life
    found: dict = {}
    warnings: list[str] = []
    vis = None
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
    if "spatial" in strategies:
        vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells, threads=cfg.workers)
        vis_counts = {"method": vis.method, "items": int(vis.V.shape[1]), **vis.counts,
                      "mean_items_per_frame": float(vis.sizes.mean()) if len(life) else 0.0}
    for s in strategies:
        rng = np.random.default_rng([cfg.seed, list(STRATEGIES).index(s)])  # independent of the other strategies
        mod = importlib.import_module(STRATEGIES[s])
        if hasattr(mod, "find_pair_arrays"):
            found[s] = mod.find_pair_arrays(life, cfg, rng, vis)
        else:  # a plug-in with only the generator interface
            ps = list(mod.find_pairs(life, cfg, rng))
            found[s] = (np.array([p.a for p in ps], np.int64), np.array([p.b for p in ps], np.int64),
                        np.array([np.nan if p.jaccard is None else p.jaccard for p in ps]))
        log.info("%s: %d pairs", s, len(found[s][0]))
    pairs = combine(found, cfg.strategies, table.decode_rank, np.random.default_rng([cfg.seed, 1000]),
                    cfg.max_pairs, dict(cfg.ratios))
    if vis is not None:  # Jaccard for every pair whose two frames have visibility
        pv = life.pose_valid if life.pose_valid is not None else np.ones(len(life), bool)
        need = np.isnan(pairs.jaccard) & pv[pairs.a] & pv[pairs.b] & (pairs.a != pairs.b)
        if need.any():
            pairs.jaccard[need] = jaccard_exact(vis, pairs.a[need], pairs.b[need])
    return pairs, vis_counts, warnings, vis


def write_pair_table(out_dir: Path, table: FrameTable, pairs: PairTable) -> Path:
    """pairs.jsonl (one pair per line, in write order) and hloc-style pairs.txt ("name_a name_b")."""
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
            "pair": k, "strategy": labels[k], "a": a, "b": b, "name_a": name(a), "name_b": name(b),
            "video_a": life.source_name(a), "video_b": life.source_name(b),
            "frame_a": int(life.frame_index[a]), "frame_b": int(life.frame_index[b]),
            "t_a": float(life.t[a]), "t_b": float(life.t[b]), "jaccard": None if np.isnan(J) else J})
        ends.append((name(a), name(b)))
    return ss.write_pair_table(out_dir, rows, ends)


_JOB: dict = {}  # what forked writer processes need (set before each pool is made)


def _spool_one(task: tuple[int, np.ndarray]) -> tuple[int, dict]:
    part, ids = task
    j = _JOB
    return len(ids), sh.spool_part(j["table"], ids, j["spool_dir"], part, j["short_side"], j["quality"], j["run"])


def _write_from_spool(s: int) -> tuple[int, dict]:
    j = _JOB
    pairs, pps = j["pairs"], j["pps"]
    r0, r1 = sh.pair_rows(s, pps, len(pairs))
    spool = j["spool"]
    frames = spool.read(np.concatenate([pairs.a[r0:r1], pairs.b[r0:r1]]))
    return r1 - r0, sh.write_shard(j["table"], pairs, j["out_dir"], s, pps, frames, spool.sizes, j["run"])


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
              spool_dir: Path | None = None) -> dict:
    """Write `shard_ids` (skipping complete ones); returns summed counts.

    One worker: the streaming writer. Several: phase 1 spools the needed frames (each decoded and encoded
    once, in contiguous decode-order parts, parts already in `spool_dir` reused), phase 2 writes the
    shards from the spool; both with `cfg.workers` forked processes. One worker resuming a spool left by an
    interrupted run of several also takes the two phases, so spooled frames are not decoded again.
    `progress(n)` counts pairs (phase 1 advances the first SPOOL_SHARE of them as frames are spooled,
    phase 2 the rest as shards are written).
    """
    out_dir = Path(out_dir)
    for s in shard_ids:  # temporaries of an interrupted writer: its unfinished tars are rewritten below
        for t in out_dir.glob(f".{shard_name(s)}.tmp*"):
            t.unlink(missing_ok=True)
    spool_dir = Path(spool_dir or out_dir / sh.spool_name(cfg.num_nodes, cfg.node_rank))
    if cfg.workers <= 1 and not any(spool_dir.glob("part-*.json")):
        return write_shards(table, pairs, out_dir, shard_ids, cfg.pairs_per_shard, cfg.short_side,
                            cfg.jpeg_quality, progress, run=run)
    # several workers, or one resuming a run of several that left spooled frames: reuse them (two phases)
    todo = [s for s in sorted(shard_ids) if not shard_complete(out_dir, s, run)]
    counts = sh.new_counts(len(shard_ids) - len(todo))
    if not todo:
        return counts
    spool_dir.mkdir(parents=True, exist_ok=True)
    rows = sh.todo_rows(todo, cfg.pairs_per_shard, len(pairs))
    need = np.unique(np.concatenate([pairs.a[rows], pairs.b[rows]]))  # (F,) life indices
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
                    counts["frames_corrupt"] += c["frames_corrupt"]
                    step(n)
            spool = sh.Spool(spool_dir, run or "")
            lost = np.setdiff1d(need, spool.asked)
            if len(lost):  # a part vanished under us (another process cleaning the folder?)
                raise SlifeError(f"{spool_dir}: {len(lost)} frames missing from the spool after spooling "
                                 f"(first: life frame {int(lost[0])}); run again")
        _JOB.clear()
        _JOB.update(table=table, pairs=pairs, out_dir=out_dir, pps=cfg.pairs_per_shard, spool=spool, run=run or "")
        step = _Scaled(progress, len(rows) - P1, len(rows))
        with ctx.Pool(min(cfg.workers, len(todo)), initializer=_ignore_sigint) as pool:
            for n, st in pool.imap_unordered(_write_from_spool, todo):
                sh.add_shard_counts(counts, st)
                step(n)
    finally:
        _JOB.clear()
        spool.close()
    return counts


def mine(cfg: MineConfig, life_path: Path | Life, out_dir: Path, merge: bool = False, command: str = "",
         progress: Callable[..., None] | None = None) -> Path:
    """See `slife.pairmine.run`."""
    out_dir = Path(out_dir)
    src = str(life_path.root) if isinstance(life_path, Life) else str(Path(life_path).resolve())
    identity = {"life": src, "config": cfg.identity()}
    check_out_dir(out_dir, identity, cfg.overwrite)
    table = ingest(life_path, cfg.fps, cfg.reader, cfg.reader_options)
    if not cfg.pairs_only and not table.life.has_pixels:
        raise SlifeError(f"{table.life.root}: has poses but no video or images to put into shards; "
                         "pass --pairs-only to write pairs.jsonl and pairs.txt only")
    pairs, vis_counts, warnings, _ = find_all(table, cfg)
    if not len(pairs):
        found = ", ".join(f"{s} {n}" for s, n in pairs.counts["found"].items())
        raise SlifeError(f"{table.life.root}: no pairs found with these settings ({found} over "
                         f"{len(table.life)} sampled frames); loosen them (e.g. --fps, the gap or Jaccard range)")
    prepare_out_dir(out_dir, identity, cfg.overwrite, cfg.num_nodes, cfg.node_rank)
    write_pair_table(out_dir, table, pairs)
    summary = summarize(table, pairs)
    summary["visibility"] = vis_counts
    P = len(pairs)
    n_shards = 0 if cfg.pairs_only else -(-P // cfg.pairs_per_shard)
    mine_ids = [int(s) for s in np.array_split(np.arange(n_shards), cfg.num_nodes)[cfg.node_rank]] \
        if n_shards else []
    if cfg.overwrite and cfg.num_nodes > 1 and not merge:
        clear_node_files(out_dir, mine_ids, n_shards, cfg.num_nodes, cfg.node_rank)
    life = table.life
    base = {
        "slife_version": slife_version(),
        "command": command or " ".join(sys.argv),
        "life": {"path": src, "name": life.name, "format": life.format, "frames": table.frames_total,
                 "sampled_frames": len(life), "reader_counts": dict(life.counts),
                 "sources": [{"name": x.name, "path": str(getattr(x, "path", ""))} for x in life.sources]},
        "config": {**asdict(cfg), "strategies": list(cfg.strategies)},
        "pairs_only": cfg.pairs_only,
        "warnings": warnings + list(life.warnings),
        "summary": summary,
    }
    if cfg.pairs_only:
        return ss.write_manifest(out_dir, 0, base)
    run = run_digest({**identity, "content": content_digest(table, pairs)})  # in every shard's stats
    spool_dir = out_dir / sh.spool_name(cfg.num_nodes, cfg.node_rank)
    if not merge:
        counts = write_all(table, pairs, out_dir, mine_ids, cfg, progress, run=run, spool_dir=spool_dir)
        log.info("node %d/%d: %s", cfg.node_rank, cfg.num_nodes, counts)
        if cfg.num_nodes > 1 and all(shard_complete(out_dir, s, run) for s in mine_ids):
            _remove(spool_dir)  # this node's shards are done
    complete = [shard_complete(out_dir, s, run) for s in range(n_shards)]
    if cfg.num_nodes > 1 and not merge and not all(complete):
        log.info("node %d done; other nodes' shards are not all complete: run --merge when they are", cfg.node_rank)
        return out_dir / ss.MANIFEST
    stale = [s for s in range(n_shards) if not complete[s] and (out_dir / stats_name(s)).exists()]
    if stale:
        raise SlifeError(f"{out_dir}: {len(stale)} of {n_shards} shards are incomplete or were written with other settings "
                         f"(first: {shard_name(stale[0])}); run their nodes again, then --merge")
    path = ss.write_manifest(out_dir, n_shards, base)
    if cfg.num_nodes <= 1:
        _remove(spool_dir)
    if cfg.preview > 0 and P:
        from slife.pairmine.preview import contact_sheet

        contact_sheet(out_dir, cfg.preview, seed=cfg.seed)
    return path
