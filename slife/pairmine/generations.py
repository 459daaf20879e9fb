"""Shard-set generations: what is new in a grown life, and where a new generation's pairs and tars go.

A life grows by recordings (a new video, a new image sequence, a new day of a synthetic life). A shard
set remembers, per generation, the recordings it was mined from and a fingerprint of each (sampled frames'
times, frame numbers, poses and cameras; the size and modification time of the recording's files and depth
maps), so that a re-run of `slife mine-pairs` on the same `--out` can tell:
- an unchanged recording (mined by an earlier generation: its pairs stay in that generation's tars);
- an added recording (its frames are "new": the next generation mines the pairs that involve them);
- a changed or removed recording (refused: its old pairs no longer describe the life; `--overwrite` mines
  the whole life again as generation 0).
Generation g's pairs get the pair indices (sample keys) after those of generations < g and its tars the
shard numbers after theirs, so the old tars are never touched. A set written before generations existed
(its manifest lists the life's sources but no generations) is adopted as generation 0 when mining it again
gives the run digest its stats carry (`adopt_legacy`), else refused with a one-line message.

An old frame that a new pair uses is taken, already encoded, from the earlier generation's tar that holds
it (`scan_old_pairs` + `stored_locations`: found through pairs.jsonl and the tar's headers), so an append
decodes the new recordings and only the old frames no earlier pair used, not the old videos up to them.

Reads the sampled life (`FrameTable`), the set's manifest, pairs.jsonl, tar headers and visibility cache;
returns plain data (and a `Visibility`); writes the visibility cache.
The visible items of each generation's frames are kept in the set (`save_visibility`, file format in
`shardset.py`), so that an append projects only the new frames (`grown_visibility`: the same matrix as a
projection of the whole grown life; a later generation's spatial pairs are then each new frame's best
partners, counted exactly from the new frames' items, `spatial.new_frame_pairs`).

Entry points: `recordings(table)`, `generations_of(manifest)`, `check_unchanged`, `new_frames`, `restrict`,
`geometry_digest`, `scan_old_pairs`, `stored_locations`, `grown_visibility`, `save_visibility`.
Mining the pairs (`pipeline.find_all` with a new-frame mask), writing the tars (`shards.py`) and the
manifest format (`shardset.py`) are left to their modules.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from slife.errors import SlifeError
from slife.pairmine.ingest import FrameTable, decode_order

log = logging.getLogger(__name__)


def _source_files(src) -> list:
    files = getattr(src, "files", None)
    return list(files) if files is not None else [getattr(src, "path", None)]


def _stat(h, f) -> None:
    try:
        st = os.stat(f)
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    except (OSError, TypeError):
        h.update(f"{f}:?;".encode())


def recordings(table: FrameTable) -> list[dict]:
    """The life's recordings (one per frame source; frames without one form the recording "") in source order:
    [{"name", "path", "frames" (sampled), "fingerprint"}]. The fingerprint is a digest of the recording's
    sampled frames (times, frame numbers, poses, cameras), its depth maps' and its files' sizes and
    modification times: it changes when anything the recording's pairs were made from changes."""
    life = table.life
    out = []
    order = np.argsort(life.source, kind="stable")  # rows grouped by source, in life order within each
    keys = sorted(set(np.unique(life.source).tolist()) | set(range(len(life.sources))))
    bounds = np.searchsorted(life.source[order], keys + [max(keys, default=0) + 1])
    for j, s in enumerate(keys):
        rows = order[bounds[j]:bounds[j + 1]]
        src = life.sources[s] if 0 <= s < len(life.sources) else None
        h = hashlib.sha256()
        for arr in (life.t[rows], life.frame_index[rows],
                    life.T_world_cam[rows] if life.T_world_cam is not None else np.zeros(0)):
            h.update(np.ascontiguousarray(arr).tobytes())
        if life.camera_id is not None:
            for cid in np.unique(life.camera_id[rows]).tolist():
                cam = life.cameras[cid] if cid >= 0 else None
                h.update(repr(None if cam is None else (cam.model, cam.width, cam.height, tuple(cam.params))).encode())
            h.update(np.ascontiguousarray(life.camera_id[rows]).tobytes())
        if life.depth_paths is not None:
            for i in rows:
                _stat(h, life.depth_paths[i])
        for f in (_source_files(src) if src is not None else []):
            _stat(h, f)
        out.append({"name": src.name if src is not None else "", "path": str(getattr(src, "path", "") or ""),
                    "frames": int(len(rows)), "fingerprint": h.hexdigest()[:16]})
    return out


def geometry_digest(life) -> str:
    """A digest of the life's world points and tracks (what spatial pairs are measured with)."""
    h = hashlib.sha256()
    for arr in (life.points, *(life.tracks or ())):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def generations_of(manifest: dict | None) -> list[dict]:
    """The generations a set's manifest lists ([] without a manifest; legacy sets are `adopt_legacy`'s job)."""
    return list((manifest or {}).get("generations") or [])


def check_unchanged(out_dir: Path, generations: list[dict], current: list[dict]) -> None:
    """SlifeError, naming the first one, when a recording of an earlier generation is missing from the life or
    has another fingerprint now (its old pairs no longer describe it)."""
    now = {r["name"]: r for r in current}
    for g in generations:
        for r in g["recordings"]:
            name = r["name"] or "(frames without a recording)"
            if r["name"] not in now:
                raise SlifeError(f"{out_dir}: recording {name!r} of generation {g['generation']} is no longer in the "
                                 "life; pass --overwrite to mine the life as it is now again, or choose another --out")
            if now[r["name"]]["fingerprint"] != r["fingerprint"]:
                what = (f"{r['frames']} -> {now[r['name']]['frames']} sampled frames"
                        if now[r["name"]]["frames"] != r["frames"] else "its frames, poses or files changed")
                raise SlifeError(f"{out_dir}: recording {name!r} changed since generation {g['generation']} was mined "
                                 f"({what}); only added recordings are appended: pass --overwrite to mine the whole "
                                 "life again, or choose another --out")


def new_frames(table: FrameTable, names) -> np.ndarray:
    """(N,) bool: the frames of the recordings `names`."""
    life = table.life
    keep = [s for s, src in enumerate(life.sources) if src.name in set(names)]
    mask = np.isin(life.source, keep)
    if "" in set(names):
        mask |= life.source < 0
    return mask


def restrict(table: FrameTable, names) -> FrameTable:
    """The life as it was when it held only the recordings `names`: their frames, their sources (in the life's
    order, renumbered), geometry shared. The same table when `names` are all of them."""
    life = table.life
    names = set(names)
    keep = [s for s, src in enumerate(life.sources) if src.name in names]
    if len(keep) == len(life.sources) and ("" in names or not (life.source < 0).any()):
        return table
    ids = np.flatnonzero(new_frames(table, names))
    sub = life.select(ids)
    renumber = np.full(len(life.sources) + 1, -1, np.int32)
    renumber[keep] = np.arange(len(keep), dtype=np.int32)
    sub = replace(sub, sources=[life.sources[s] for s in keep],
                  source=np.where(sub.source >= 0, renumber[sub.source], -1).astype(np.int32))
    return FrameTable(sub, decode_order(sub), int(len(sub)))


def scan_old_pairs(out_dir: Path, table: FrameTable, first_pair: int, failed: set | frozenset = frozenset()) \
        -> tuple[np.ndarray, dict[int, tuple[int, str]], np.ndarray]:
    """What the earlier generations' pairs (the first `first_pair` rows of pairs.jsonl) hold, in the life's
    indices (found by recording name and frame number): (N,) bool the frames they use, for each such frame
    one (pair index, view "src" | "tgt") where it is stored, and (N,) bool the frames in a spatial pair. Pairs
    with a frame in `failed` ((recording, frame number) that did not decode: the pair is not in the tars) are
    left out."""
    import json

    from slife.pairmine.shardset import PAIRS_JSONL

    life = table.life
    index = {(life.source_name(i), int(life.frame_index[i])): i for i in range(len(life))}
    used = np.zeros(len(life), bool)
    spatial = np.zeros(len(life), bool)
    where: dict[int, tuple[int, str]] = {}
    try:
        with open(Path(out_dir) / PAIRS_JSONL) as f:
            for k, line in enumerate(f):
                if k >= first_pair:
                    break
                r = json.loads(line)
                if failed and ((r["video_a"], r["frame_a"]) in failed or (r["video_b"], r["frame_b"]) in failed):
                    continue
                is_spatial = "spatial" in str(r.get("strategy") or "").split("+")
                for view, v, fr in (("src", r["video_a"], r["frame_a"]), ("tgt", r["video_b"], r["frame_b"])):
                    i = index.get((v, fr))
                    if i is not None and is_spatial:
                        spatial[i] = True
                    if i is not None and not used[i]:
                        used[i] = True
                        where[i] = (int(r["pair"]), view)
    except (OSError, ValueError, KeyError) as e:
        log.warning("%s: cannot read the earlier generations' pairs (%s): their frames are decoded again, and "
                    "the set's spatial coverage counts only the new pairs", Path(out_dir) / PAIRS_JSONL, e)
    return used, where, spatial


def stored_locations(out_dir: Path, generations: list[dict], pairs_per_shard: int, where: dict[int, tuple[int, str]],
                     need) -> dict[int, tuple[str, int, int, int, int]]:
    """For the frames `need` (life indices) that an earlier generation's tar holds (`where`, from
    `scan_old_pairs`): life index -> (tar path, JPEG offset, length, depth PNG offset, length or 0), read from
    the tars' headers (`shardset.tar_members`). Frames not found (a pair dropped as corrupt, a damaged tar)
    are left out: the writer decodes them."""
    from slife.pairmine import shardset as ss

    man = {"config": {"pairs_per_shard": pairs_per_shard}, "generations": generations}
    by_tar: dict[int, list[int]] = {}
    for i in need:
        if int(i) in where:
            by_tar.setdefault(ss.shard_of_pair(man, where[int(i)][0]), []).append(int(i))
    out = {}
    for s, ids in sorted(by_tar.items()):
        tar = Path(out_dir) / ss.shard_name(s)
        try:  # by pair index: the key's life name is the one the life had then
            members = {(name.split(".", 1)[0].rsplit("_", 1)[-1], name.split(".", 1)[-1]): v
                       for name, v in ss.tar_members(tar).items()}
        except OSError:
            continue
        for i in ids:
            pair, view = where[i]
            key = f"{pair:09d}"
            jpg, dep = members.get((key, f"{view}.jpg")), members.get((key, f"{view}.depth.png"))
            if jpg is not None:
                out[i] = (str(tar), jpg[0], jpg[1], *(dep if dep is not None else (0, 0)))
    return out


def _visibility_key(life, cfg) -> dict:
    """What cached "points" rows are valid for: the settings that make them and the cloud they are ids of."""
    return {"method": "points", "max_depth": float(cfg.max_depth), "voxel": float(cfg.voxel),
            "zbuffer_cells": int(cfg.zbuffer_cells), "geometry": geometry_digest(life), "format": 1}


def _recording_rows(life) -> dict[str, np.ndarray]:
    """Recording name -> its frames' life indices, in life order (frames without a recording under "")."""
    order = np.argsort(life.source, kind="stable")
    src = life.source[order]
    out = {}
    for s in np.unique(src).tolist():
        rows = order[np.searchsorted(src, s):np.searchsorted(src, s, side="right")]
        out[life.sources[s].name if 0 <= s < len(life.sources) else ""] = rows
    return out


def grown_visibility(out_dir: Path, generations: list[dict], table: FrameTable, new: np.ndarray, cfg):
    """The visibility of the grown life `table` (an append: `new` marks the added recordings' frames) from the
    earlier generations' cached rows (`visibility-%04d.npz`, `shardset.read_visibility`) and a projection of
    the new frames only -> (Visibility or None, the generations whose cache is missing, damaged or stale).

    The same matrix and counts as `compute_visibility` over the whole grown life (a frame's row from points
    depends only on its pose and camera, which its recording's fingerprint covers, and on the voxelised
    cloud, which the cache's geometry digest covers). None (logged: the miner then computes the whole
    life's visibility, the same result, slower) when the life's visibility is not by points (tracks: cheap
    to build again; depth maps: item ids not stable across lives) or a cache file is not usable."""
    from slife.pairmine import shardset as ss
    from slife.pairmine.visibility import compute_visibility, method_of, points_visibility_from_rows

    life = table.life
    if method_of(life) != "points":
        return None, []
    key = _visibility_key(life, cfg)
    by_rec = _recording_rows(life)
    frames, rows, bad, why = [], [], [], []
    for g in generations:
        k = int(g["generation"])
        meta, indptr, indices, err = ss.read_visibility(out_dir, k)
        recs = [[r["name"], r["fingerprint"], int(r["frames"])] for r in g["recordings"]]
        if meta is not None:
            if {x: meta.get(x) for x in key} != key or meta.get("recordings") != recs:
                err = f"{ss.visibility_name(k)} was made for other settings, geometry or recordings"
            elif sum(n for _, _, n in recs) != len(indptr) - 1 or any(len(by_rec.get(r, ())) != n for r, _, n in recs):
                err = f"{ss.visibility_name(k)} does not match the frames of generation {k}"
            elif len(indices) and int(indices.max()) >= int(meta.get("items", 0)):
                err = f"{ss.visibility_name(k)} names items beyond its cloud"
        if err:
            bad.append(k)
            why.append(err)
            continue
        frames.append(np.concatenate([by_rec.get(r, np.zeros(0, np.int64)) for r, _, _ in recs]))
        rows.append((indptr, indices))
        items = int(meta["items"])
    if bad:
        log.info("%s: %s: the visibility of the whole grown life is computed again (the same pairs, slower)",
                 out_dir, "; ".join(why[:3]))
        return None, bad
    ids = np.flatnonzero(new)
    vis_new = compute_visibility(life.select(ids), cfg.max_depth, cfg.voxel, cfg.zbuffer_cells,
                                 threads=max(1, int(cfg.workers)))
    if generations and vis_new.V.shape[1] != items:
        log.info("%s: the cached visibility has %d items, the cloud now %d: the visibility of the whole grown "
                 "life is computed again", out_dir, items, vis_new.V.shape[1])
        return None, [int(g["generation"]) for g in generations]
    frames.append(ids)
    rows.append((vis_new.V.indptr, vis_new.V.indices))
    vis = points_visibility_from_rows(life, vis_new.V.shape[1], frames, rows)
    log.info("%s: visibility of %d new frames projected, %d old frames' taken from the cache", out_dir, len(ids),
             len(life) - len(ids))
    return vis, []


def save_visibility(out_dir: Path, number: int, recordings: list[dict], table: FrameTable, vis, cfg) -> None:
    """Write generation `number`'s cache (`shardset.write_visibility`): the rows of `vis` (the visibility of
    `table`'s life, by points) for the frames of `recordings` (that generation's, with their fingerprints),
    in their order. Nothing for other visibility methods."""
    from slife.pairmine import shardset as ss

    life = table.life
    if vis is None or vis.method != "points":
        return
    by_rec = _recording_rows(life)
    ids = np.concatenate([by_rec.get(r["name"], np.zeros(0, np.int64)) for r in recordings]
                         or [np.zeros(0, np.int64)]).astype(np.int64)
    V = vis.V[ids]
    meta = {**_visibility_key(life, cfg), "items": int(vis.V.shape[1]), "generation": int(number),
            "recordings": [[r["name"], r["fingerprint"], int(r["frames"])] for r in recordings]}
    ss.write_visibility(out_dir, number, meta, V.indptr, V.indices)


__all__ = ["check_unchanged", "generations_of", "geometry_digest", "new_frames", "recordings", "restrict",
           "scan_old_pairs", "stored_locations", "grown_visibility", "save_visibility"]
