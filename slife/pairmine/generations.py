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
it, so an append decodes the new recordings and only the old frames no earlier pair used, not the old videos
up to them. Where each frame lies is kept per generation: when a generation's tars are complete, the process
that writes the manifest (one node, the last node to finish, or --merge; `_repair` after writing an old tar
again) reads those new tars' headers once and writes its frame-location index (`save_locations`, file
`locations-%04d.npz`, format in `shardset.py`): for each frame its tars hold, by recording name and frame
number (an identity that stays valid as the life grows, unlike the life index), the tar, the JPEG's and the
depth PNG's byte ranges, and whether it is in a spatial pair. An append reads the earlier generations'
indexes (`old_frames`: numpy lookups over the frames they hold, no JSON and no tar headers) and takes the
byte ranges of the old frames it needs (`stored_locations`). A missing, damaged or stale index (made for
another pair or shard range or run digest of its generation) is rebuilt from that generation's rows of
pairs.jsonl and its tars' headers, logged at info: slower, the same bytes.

Reads the sampled life (`FrameTable`), the set's manifest, pairs.jsonl (a rebuild only), tar headers and the
visibility and location indexes; returns plain data (and a `Visibility`); writes the visibility and location
indexes.
The visible items of each generation's frames are kept in the set (`save_visibility`, file format in
`shardset.py`), so that an append projects only the new frames (`grown_visibility`: the same matrix as a
projection of the whole grown life; a later generation's spatial pairs are then each new frame's best
partners, counted exactly from the new frames' items, `spatial.new_frame_pairs`).

Entry points: `recordings(table)`, `generations_of(manifest)`, `check_unchanged`, `new_frames`, `restrict`,
`geometry_digest`, `pair_ends`, `save_locations`, `old_frames`, `stored_locations`, `grown_visibility`,
`save_visibility`.
Mining the pairs (`pipeline.find_all` with a new-frame mask), writing the tars (`shards.py`) and the
manifest format (`shardset.py`) are left to their modules.
"""

from __future__ import annotations

import hashlib
import json
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


def pair_ends(table: FrameTable, pairs) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """A generation's pairs (`PairTable` over `table`'s life) by stable frame identity: (recording names, (P, 2)
    int32 index into them of each pair's (src, tgt) recording, (P, 2) int64 their frame numbers, (P,) bool
    spatial). A recording's name and frame number stay valid as the life grows (life indices do not)."""
    life = table.life
    names = [src.name for src in life.sources] + [""]
    src = np.stack([life.source[pairs.a], life.source[pairs.b]], 1)  # (P, 2)
    rec = np.where((src >= 0) & (src < len(life.sources)), src, len(names) - 1).astype(np.int32)  # else ""
    frame = np.stack([life.frame_index[pairs.a], life.frame_index[pairs.b]], 1).astype(np.int64)
    k = list(pairs.strategies).index("spatial") if "spatial" in pairs.strategies else None
    spatial = ((pairs.mask >> k) & 1).astype(bool) if k is not None else np.zeros(len(pairs), bool)
    return names, rec, frame, spatial


def _ends_of_rows(rows: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """`pair_ends` from pairs.jsonl rows (a generation's, in pair order)."""
    ids: dict[str, int] = {}
    rec = np.array([[ids.setdefault(r["video_a"], len(ids)), ids.setdefault(r["video_b"], len(ids))] for r in rows],
                   np.int32).reshape(-1, 2)
    frame = np.array([[r["frame_a"], r["frame_b"]] for r in rows], np.int64).reshape(-1, 2)
    spatial = np.array(["spatial" in str(r.get("strategy") or "").split("+") for r in rows], bool)
    return list(ids), rec, frame, spatial


def save_locations(out_dir: Path, record: dict, ends) -> dict:
    """Write the frame-location index of generation `record` (`shardset.write_locations`) and return its arrays:
    for every frame its tars hold, the first view in pair order (src before tgt) that holds it, found by reading
    the headers of that generation's tars once (`shardset.stored_views`); `ends` (`pair_ends`) name each pair's
    frames. A frame in a pair the writer dropped (a frame that did not decode) is not in the tars and not
    listed. A --pairs-only generation (no tars) lists every frame its pairs use, with shard -1."""
    from slife.pairmine import shardset as ss

    names, rec, frame, spatial = ends
    P, first = int(record["pairs"]), int(record["first_pair"])
    shards = list(range(int(record["first_shard"]), int(record["first_shard"]) + int(record["shards"])))
    if shards:
        parts, sizes = [], []
        for s in shards:
            tar = Path(out_dir) / ss.shard_name(s)
            v = ss.stored_views(tar)  # (V, 6) pair, view, JPEG off, len, depth off, len
            v = v[(v[:, 0] >= first) & (v[:, 0] < first + P)]
            parts.append(np.concatenate([v, np.full((len(v), 1), s, np.int64)], 1))
            sizes.append(tar.stat().st_size)
        rows = np.concatenate(parts) if parts else np.zeros((0, 7), np.int64)  # (V, 7) ..., shard
    else:
        k = np.repeat(np.arange(P, dtype=np.int64) + first, 2)
        rows = np.zeros((2 * P, 7), np.int64)
        rows[:, 0], rows[:, 1], rows[:, 6] = k, np.tile([0, 1], P), -1
        sizes = []
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # pair order, src before tgt
    k, v = rows[:, 0] - first, rows[:, 1]
    key = rec[k, v].astype(np.int64) << 40 | frame[k, v]  # (V,) one per (recording, frame number)
    _, firsts, inverse = np.unique(key, return_index=True, return_inverse=True)
    sp = np.zeros(len(firsts), bool)
    sp[inverse[spatial[k]]] = True
    held = rec[k, v][firsts]  # (F,) into names; the file names only the recordings it holds, sorted
    used = sorted(set(held.tolist()), key=lambda r: names[r])
    renumber = np.zeros(len(names), np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    meta = {"format": 1, "names": [names[r] for r in used], "bytes": sizes,
            **{x: record[x] for x in ("generation", "first_pair", "pairs", "first_shard", "shards", "run")}}
    out = {"recording": renumber[held], "frame": frame[k, v][firsts], "shard": rows[firsts, 6].astype(np.int32),
           "loc": rows[firsts, 2:6], "spatial": sp}
    ss.write_locations(out_dir, int(record["generation"]), meta, **out)
    return {"meta": meta, **out}


class OldFrames:
    """What the earlier generations' tars hold, in the grown life's indices (from their frame-location indexes):
    `used` (N,) bool the frames their pairs use, `spatial` (N,) bool those in a spatial pair, `loc` (N, 5) int64
    (shard, JPEG offset, length, depth PNG offset, length; shard -1: in no tar) of the earliest generation's
    first pair that holds each frame, `sizes` shard -> the tar's size when indexed."""

    def __init__(self, life):
        n = len(life)
        self.used = np.zeros(n, bool)
        self.spatial = np.zeros(n, bool)
        self.loc = np.full((n, 5), -1, np.int64)
        self.sizes: dict[int, int] = {}
        self._sid = {src.name: s for s, src in enumerate(life.sources)}
        src = np.where((life.source >= 0) & (life.source < len(life.sources)), life.source, -1).astype(np.int64)
        live = (src + 1) << 40 | life.frame_index.astype(np.int64)  # (N,) frame keys (no recording: "")
        self._order = np.argsort(live, kind="stable")  # sorted once for every generation's lookups
        self._sorted = live[self._order]

    def add(self, index: dict) -> None:
        """Put one generation's index (earliest first: a frame keeps the first location found) in."""
        meta = index["meta"]
        first = int(meta["first_shard"])
        self.sizes.update({first + j: int(b) for j, b in enumerate(meta.get("bytes") or [])})
        if not len(self._sorted) or not len(index["frame"]):
            return
        # each named recording's source in the grown life (-1: no recording, -2: not in the life)
        rec_sid = np.array([self._sid.get(x, -1 if x == "" else -2) for x in meta["names"]], np.int64)
        s = rec_sid[index["recording"]]  # (F,) the index's rows' sources in the grown life
        key = (s + 1) << 40 | index["frame"]
        pos = np.minimum(np.searchsorted(self._sorted, key), len(self._sorted) - 1)
        ok = (s >= -1) & (self._sorted[pos] == key)
        i = self._order[pos[ok]]
        self.used[i] = True
        self.spatial[i[index["spatial"][ok]]] = True
        fresh = (self.loc[i, 0] < 0) & (index["shard"][ok] >= 0)
        self.loc[i[fresh], 0] = index["shard"][ok][fresh]
        self.loc[i[fresh], 1:] = index["loc"][ok][fresh]


def _index_fits(meta: dict, record: dict) -> bool:
    return meta.get("format") == 1 and all(meta.get(x) == record[x] for x in
                                           ("generation", "first_pair", "pairs", "first_shard", "shards", "run")) \
        and len(meta.get("bytes") or []) == int(record["shards"])


def old_frames(out_dir: Path, generations: list[dict], table: FrameTable) -> OldFrames:
    """The frames the earlier `generations` stored, from their frame-location indexes (`locations-%04d.npz`,
    `shardset.read_locations`): the cost follows the frames they hold, not their pairs or tar headers. A
    generation whose index is missing, damaged or made for another generation record (its pair or shard range
    or run digest differ) is read the slow way, logged at info: its rows of pairs.jsonl and its tars' headers,
    and its index written again (`save_locations`), so that the next append is fast."""
    from slife.pairmine import shardset as ss

    out = OldFrames(table.life)
    indexes: dict[int, dict] = {}
    bad, why = [], []
    for g in generations:
        k = int(g["generation"])
        meta, arrays, err = ss.read_locations(out_dir, k)
        if meta is not None and not _index_fits(meta, g):
            err = f"{ss.locations_name(k)} was made for another generation {k} (pairs, shards or run differ)"
        if err:
            bad.append(g)
            why.append(err)
        else:
            indexes[k] = {"meta": meta, **arrays}
    if bad:
        log.info("%s: %s: the earlier pairs (pairs.jsonl) and the headers of %d generation(s)' tars are read "
                 "instead, and their frame-location index written again", out_dir, "; ".join(why[:3]), len(bad))
        rows: dict[int, list[dict]] = {int(g["generation"]): [] for g in bad}
        ranges = [(int(g["first_pair"]), int(g["first_pair"]) + int(g["pairs"]), int(g["generation"])) for g in bad]
        end = max(b for _, b, _ in ranges)
        try:
            with open(Path(out_dir) / ss.PAIRS_JSONL) as f:
                for n, line in enumerate(f):
                    if n >= end:
                        break
                    for a, b, k in ranges:
                        if a <= n < b:
                            rows[k].append(json.loads(line))
        except (OSError, ValueError) as e:
            log.warning("%s: cannot read the earlier generations' pairs (%s): their frames are decoded again, and "
                        "the set's counts cover only the new pairs", Path(out_dir) / ss.PAIRS_JSONL, e)
            rows = {}
        for g in bad:
            r = rows.get(int(g["generation"]), [])
            if len(r) != int(g["pairs"]):
                continue  # pairs.jsonl short or unreadable: nothing to index this generation by
            try:
                indexes[int(g["generation"])] = save_locations(out_dir, g, _ends_of_rows(r))
            except (OSError, KeyError, TypeError, ValueError) as e:  # a tar, or a pairs.jsonl row of the wrong shape
                log.warning("%s: cannot index generation %s's tars (%s): its frames are decoded again", out_dir,
                            g["generation"], e)
    for k in sorted(indexes):
        out.add(indexes[k])
    return out


def stored_locations(out_dir: Path, old: OldFrames, need) -> dict[int, tuple[str, int, int, int, int]]:
    """For the frames `need` (life indices) that an earlier generation's tar holds (`old`, from `old_frames`):
    life index -> (tar path, JPEG offset, length, depth PNG offset, length or 0). A tar whose size is not the
    one it had when indexed is left out (logged; its frames are decoded): the writer decodes frames not found."""
    from slife.pairmine import shardset as ss

    need = np.asarray(need, np.int64)
    need = need[old.loc[need, 0] >= 0]
    out, size_ok = {}, {}
    for i in need.tolist():
        s = int(old.loc[i, 0])
        if s not in size_ok:
            tar = Path(out_dir) / ss.shard_name(s)
            try:
                size_ok[s] = (str(tar), tar.stat().st_size == old.sizes.get(s))
            except OSError:
                size_ok[s] = (str(tar), False)
            if not size_ok[s][1]:
                log.info("%s: not the size its frame-location index recorded: its frames are decoded again", tar)
        if size_ok[s][1]:
            out[i] = (size_ok[s][0], *(int(x) for x in old.loc[i, 1:]))
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
           "pair_ends", "save_locations", "OldFrames", "old_frames", "stored_locations", "grown_visibility",
           "save_visibility"]
