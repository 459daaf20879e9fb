"""The mining run: output-folder checks, ingest, strategies, combine, pair table, shards, manifest, preview.

Reads a life path (or an in-memory `Life`) and a `MineConfig`; writes into the output folder `mine.json`
(the run's identity, checked on every re-run), `pairs.jsonl` + `pairs.txt` (the pair table, before any
pixel is decoded), the shards of this node, `manifest.json` (when every shard is complete) and
`preview.png`. Entry point: `mine(cfg, life_path, out_dir, ...)`, called by `slife.pairmine.run`.
Each step is its module's job: `ingest`, `visibility`, the strategies, `combine`, `shards`, `manifest`,
`preview`.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing as mp
import shutil
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
from slife.pairmine.manifest import summarize, write_manifest
from slife.pairmine.shards import atomic_write_bytes, write_shards
from slife.pairmine.visibility import compute_visibility, jaccard_exact

log = logging.getLogger(__name__)

OUR_FILES = ("pairs-*.tar", "pairs-*.stats.json", ".pairs-*", ".*.tmp*", "manifest.json", "mine.json",
             "pairs.jsonl", "pairs.txt", "preview.png")


def slife_version() -> str:
    try:
        from importlib.metadata import version

        return version("slife")
    except Exception:  # noqa: BLE001 - not installed: still mine
        return "unknown"


def check_out_dir(out_dir: Path, identity: dict, overwrite: bool) -> None:
    """Refuse a non-empty folder made by other settings unless `overwrite` (then remove our files only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mine_json = out_dir / "mine.json"
    entries = [p for p in out_dir.iterdir() if not p.name.startswith(".")]  # ignore other nodes' temp files
    if entries and not overwrite:
        if not mine_json.exists():
            raise SlifeError(f"{out_dir}: folder is not empty and was not made by `slife mine-pairs`; "
                             "choose another --out or pass --overwrite")
        old = json.loads(mine_json.read_text())
        if old != identity:
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            diff += sorted(k for k in set(old.get("config", {})) | set(identity["config"])
                           if old.get("config", {}).get(k) != identity["config"].get(k))
            raise SlifeError(f"{out_dir}: holds pairs mined with other settings ({', '.join(diff)} differ); "
                             "pass --overwrite to replace them or choose another --out")
    if overwrite:
        for pat in OUR_FILES:
            for p in out_dir.glob(pat):
                p.unlink() if p.is_file() else shutil.rmtree(p)
    if not mine_json.exists() or overwrite:
        atomic_write_bytes(mine_json, json.dumps(identity, indent=1).encode())


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
    lines, txt = [], []
    for k in range(len(pairs)):
        a, b = int(pairs.a[k]), int(pairs.b[k])
        J = float(pairs.jaccard[k])
        lines.append(json.dumps({
            "pair": k, "strategy": labels[k], "a": a, "b": b, "name_a": name(a), "name_b": name(b),
            "video_a": life.source_name(a), "video_b": life.source_name(b),
            "frame_a": int(life.frame_index[a]), "frame_b": int(life.frame_index[b]),
            "t_a": float(life.t[a]), "t_b": float(life.t[b]), "jaccard": None if np.isnan(J) else J}))
        txt.append(f"{name(a)} {name(b)}")
    atomic_write_bytes(out_dir / "pairs.txt", ("\n".join(txt) + ("\n" if txt else "")).encode())
    path = out_dir / "pairs.jsonl"
    atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return path


_JOB: dict = {}


def _write_group(shard_ids: list[int]) -> dict:
    j = _JOB
    return write_shards(j["table"], j["pairs"], j["out_dir"], shard_ids, j["pps"], j["short_side"], j["quality"])


def write_all(table: FrameTable, pairs: PairTable, out_dir: Path, shard_ids: list[int], cfg: MineConfig,
              progress: Callable[..., None] | None = None) -> dict:
    """Write `shard_ids` with `cfg.workers` processes (contiguous groups, each decoding its own frames)."""
    if cfg.workers <= 1 or len(shard_ids) <= 1:
        return write_shards(table, pairs, out_dir, shard_ids, cfg.pairs_per_shard, cfg.short_side,
                            cfg.jpeg_quality, progress)
    _JOB.update(table=table, pairs=pairs, out_dir=out_dir, pps=cfg.pairs_per_shard, short_side=cfg.short_side,
                quality=cfg.jpeg_quality)
    groups = [[int(x) for x in g] for g in np.array_split(np.array(shard_ids), min(cfg.workers * 2, len(shard_ids))) if len(g)]
    total: dict = {}
    ctx = mp.get_context("fork")
    with ctx.Pool(cfg.workers) as pool:
        for g, c in zip(groups, pool.imap(_write_group, groups)):
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
            if progress:
                P = len(pairs)
                progress(sum(min(P, (s + 1) * cfg.pairs_per_shard) - s * cfg.pairs_per_shard for s in g))
    _JOB.clear()
    return total


def mine(cfg: MineConfig, life_path: Path | Life, out_dir: Path, merge: bool = False, command: str = "",
         progress: Callable[..., None] | None = None) -> Path:
    """See `slife.pairmine.run`."""
    out_dir = Path(out_dir)
    src = str(life_path.root) if isinstance(life_path, Life) else str(Path(life_path).resolve())
    identity = {"life": src, "config": cfg.identity()}
    check_out_dir(out_dir, identity, cfg.overwrite)
    table = ingest(life_path, cfg.fps)
    pairs, vis_counts, warnings, _ = find_all(table, cfg)
    write_pair_table(out_dir, table, pairs)
    summary = summarize(table, pairs)
    summary["visibility"] = vis_counts
    P = len(pairs)
    n_shards = 0 if cfg.pairs_only else -(-P // cfg.pairs_per_shard)
    life = table.life
    base = {
        "slife_version": slife_version(),
        "command": command or " ".join(sys.argv),
        "life": {"path": src, "name": life.name, "format": life.format, "frames": table.frames_total,
                 "sampled_frames": len(life), "reader_counts": dict(life.counts)},
        "config": {**asdict(cfg), "strategies": list(cfg.strategies)},
        "pairs_only": cfg.pairs_only,
        "warnings": warnings + list(life.warnings),
        "summary": summary,
    }
    if cfg.pairs_only:
        return write_manifest(out_dir, 0, base)
    mine_ids = [int(s) for s in np.array_split(np.arange(n_shards), cfg.num_nodes)[cfg.node_rank]] \
        if n_shards else []
    if not merge:
        counts = write_all(table, pairs, out_dir, mine_ids, cfg, progress)
        log.info("node %d/%d: %s", cfg.node_rank, cfg.num_nodes, counts)
    from slife.pairmine.shards import shard_complete

    if cfg.num_nodes > 1 and not merge and not all(shard_complete(out_dir, s) for s in range(n_shards)):
        log.info("node %d done; other nodes' shards are not all complete: run --merge when they are", cfg.node_rank)
        return out_dir / "manifest.json"
    path = write_manifest(out_dir, n_shards, base)
    if cfg.preview > 0 and P:
        from slife.pairmine.preview import contact_sheet

        contact_sheet(out_dir, cfg.preview, seed=cfg.seed)
    return path
