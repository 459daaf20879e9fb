"""Visibility: which 3D items (points or voxels) each posed frame sees, as a sparse frame x item matrix.

Reads a sampled `Life`: `T_world_cam` (camera-to-world, OpenCV axes, metres), its `Camera`s (any model:
projection goes through `Camera.project`, so fisheye works), and one geometry source, first found of:
1. `tracks` (COLMAP: the point ids each image observed) -> items are point ids, used as given;
2. `points` (world cloud, M x 3) -> voxelised at `voxel` metres (items = occupied voxels, at their
   centroid), projected into each posed frame: in front, inside the image, within `max_depth` metres of
   the camera, and not hidden behind a nearer item in a coarse z-buffer (`zbuffer_cells` across the width);
3. `depth_paths` (per-frame depth maps, pinhole) -> pixels back-projected to the world and voxelised.
Returns `Visibility` with a CSR matrix `V` (N frames x M items, int32 ones, sorted indices); frames with
no pose, no camera or no geometry have empty rows and are counted. Entry point: `compute_visibility`;
`points_visibility_from_rows` puts the same matrix together from rows kept elsewhere (a shard set's
per-generation cache, `generations.grown_visibility`), since a frame's row from points depends only on its
pose, its camera and the voxelised cloud.
Pairing on these sets (Jaccard, candidate search) is left to `spatial.py`.

Scale: items are bucketed in a hash grid of `max_depth`/4-sized cells; each frame only projects the items
of the cells near its camera and inside its widened view cone, in chunks of frames, all in numpy (no per-point Python loop).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from slife.lives.life import Life

log = logging.getLogger(__name__)


@dataclass
class Visibility:
    """Per-frame visible item sets."""

    V: sp.csr_matrix  # (N frames, M items) int32 ones, sorted indices
    method: str  # "tracks" | "points" | "depth" | "none"
    counts: dict = field(default_factory=dict)  # frames_without_pose, frames_without_camera, frames_empty

    def row(self, i: int) -> np.ndarray:
        """Sorted item ids seen by frame i."""
        return self.V.indices[self.V.indptr[i]:self.V.indptr[i + 1]]

    @property
    def sizes(self) -> np.ndarray:
        """(N,) number of items each frame sees."""
        return np.diff(self.V.indptr)


def _csr(rows: np.ndarray, cols: np.ndarray, n: int, m: int) -> sp.csr_matrix:
    """(rows, cols) pairs -> deduplicated CSR of ones with sorted indices."""
    key = sorted_unique(rows.astype(np.int64) * max(m, 1) + cols.astype(np.int64))
    r, c = key // max(m, 1), key % max(m, 1)
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(r, minlength=n))
    V = sp.csr_matrix((np.ones(len(c), np.int32), c.astype(np.int32), indptr), shape=(n, m))
    V.has_sorted_indices = True
    return V


def thread_map(fn, items, threads: int) -> list:
    """list(map(fn, items)), on a pool of `threads` threads when more than one (numpy and scipy release the
    GIL in their heavy array operations, so array work overlaps)."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(fn, items))


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for large int64 arrays by sort + compare (numpy's hash-based unique is slow on these keys)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def voxelize(points: np.ndarray, voxel: float) -> np.ndarray:
    """World points (M, 3) -> centroids (K, 3) of the occupied `voxel`-metre cells (voxel 0: unchanged)."""
    P = np.asarray(points, dtype=np.float64)
    if voxel <= 0 or len(P) == 0:
        return P
    ijk = np.floor(P / voxel).astype(np.int64)
    _, inv, cnt = np.unique(ijk, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    cent = np.zeros((len(cnt), 3))
    for d in range(3):
        cent[:, d] = np.bincount(inv, weights=P[:, d], minlength=len(cnt)) / cnt
    return cent


def _cell_keys(ijk: np.ndarray) -> np.ndarray:
    """Integer cell coordinates (..., 3) -> one int64 key each (21 bits per axis, offset to be positive)."""
    o = ijk.astype(np.int64) + (1 << 20)
    return (o[..., 0] << 42) | (o[..., 1] << 21) | o[..., 2]


def _expand_ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenate arange(s, s + l) for each (s, l), vectorised."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts, lens) + (np.arange(total) - offs)


def _half_fov(cam) -> float:
    """Largest angle from the optical axis to an image corner (pinhole), or pi (distorted models: no culling)."""
    if not cam.is_pinhole:
        return np.pi
    fx, fy, cx, cy = cam.focal_center
    dx = max(cx, cam.width - cx) / fx
    dy = max(cy, cam.height - cy) / fy
    return float(np.arctan(np.hypot(dx, dy)))


def _pose_counts(life: Life) -> tuple[dict, np.ndarray]:
    """({"frames_without_pose", "frames_without_camera"}, (N,) bool the frames that can see points: posed, with
    a camera)."""
    n = len(life)
    valid = np.zeros(n, bool) if life.pose_valid is None else life.pose_valid.copy()
    cam_id = np.full(n, -1, np.int32) if life.camera_id is None else life.camera_id
    no_cam = valid & (cam_id < 0)
    counts = {"frames_without_pose": int((~valid).sum()), "frames_without_camera": int(no_cam.sum())}
    return counts, valid & ~no_cam


def visible_from_points(life: Life, items: np.ndarray, max_depth: float, zbuffer_cells: int,
                        progress: Callable[..., None] | None = None, chunk_rows: int = 2_000_000,
                        threads: int = 1):
    """Project item centres (M, 3) into every posed frame -> CSR (N, M) of visible items.

    Returns (V, counts). Occlusion: an item is hidden when its depth exceeds the nearest depth in its
    z-buffer cell by more than max(0.1 m, 10%).
    """
    n, m = len(life), len(items)
    counts, valid = _pose_counts(life)
    cam_id = np.full(n, -1, np.int32) if life.camera_id is None else life.camera_id
    if m == 0 or not valid.any():
        return _csr(np.zeros(0, np.int64), np.zeros(0, np.int64), n, m), counts
    # hash grid of cells of side max_depth / 4: a frame's visible items lie in the 9^3 cells around it;
    # cells behind the camera or outside its (widened) view cone are culled before any item is touched
    cell = float(max_depth) / 4.0
    ikey = _cell_keys(np.floor(items / cell))
    order = np.argsort(ikey, kind="stable")
    ikey_sorted = ikey[order]
    ukeys, ustart, ucount = np.unique(ikey_sorted, return_index=True, return_counts=True)
    r = np.arange(-4, 5)
    offsets = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)  # (729, 3)
    frames = np.flatnonzero(valid)
    C = life.T_world_cam[:, :3, 3]  # (N, 3) camera centres
    R = life.T_world_cam[:, :3, :3]  # (N, 3, 3) camera-to-world rotations
    half_fov = np.array([_half_fov(c) for c in life.cameras] + [np.pi])[cam_id]  # (N,) radians
    cell_r = cell * np.sqrt(3) / 2  # radius of a cell's bounding sphere
    # per frame, the occupied cells it may see, as flat lists (hf: frame position in `frames`, cell start and
    # count in the sorted items), built in chunks of frames so memory stays O(frames x cells seen)
    hf_l, hs_l, hc_l = [], [], []
    for c0 in range(0, len(frames), 4096):
        fr = frames[c0:c0 + 4096]
        base = np.floor(C[fr] / cell)  # (f, 3)
        ccell = (base[:, None, :] + offsets[None] + 0.5) * cell - C[fr][:, None, :]  # (f, 729, 3) centre offsets
        cdist = np.linalg.norm(ccell, axis=2)  # (f, 729)
        fwd = R[fr][:, :, 2]  # (f, 3) optical axis in world
        cosang = np.einsum("fkd,fd->fk", ccell, fwd) / np.maximum(cdist, 1e-9)
        ang = np.arccos(np.clip(cosang, -1, 1))
        widen = np.arcsin(np.clip(cell_r / np.maximum(cdist, 1e-9), 0, 1))
        near = (cdist <= max_depth + cell_r) & ((ang <= half_fov[fr][:, None] + widen) | (cdist <= cell_r))
        fkeys = _cell_keys(base[:, None, :] + offsets[None])  # (f, 729)
        pos = np.clip(np.searchsorted(ukeys, fkeys), 0, len(ukeys) - 1)
        hit = (ukeys[pos] == fkeys) & near
        fi, ki = np.nonzero(hit)
        hf_l.append((fi + c0).astype(np.int32))
        hs_l.append(ustart[pos[fi, ki]].astype(np.int64))
        hc_l.append(ucount[pos[fi, ki]].astype(np.int32))
    hf, hstart, hcount = np.concatenate(hf_l), np.concatenate(hs_l), np.concatenate(hc_l)
    del hf_l, hs_l, hc_l
    per_frame = np.bincount(hf, weights=hcount, minlength=len(frames)).astype(np.int64)  # (F,) candidates
    origin = items.mean(0) if len(items) else np.zeros(3)  # float32 maths relative to the cloud's centre
    items32 = (items - origin).astype(np.float32)
    C32 = (C - origin).astype(np.float32)
    R32 = R.astype(np.float32)
    bounds = []  # chunks of frames with about chunk_rows candidate rows each
    i0 = 0
    while i0 < len(frames):
        cum = np.cumsum(per_frame[i0:])
        i1 = i0 + max(1, int(np.searchsorted(cum, chunk_rows, side="right")))
        bounds.append((i0, i1))
        i0 = i1

    def chunk(b):
        i0, i1 = b
        fr = frames[i0:i1]
        j0, j1 = np.searchsorted(hf, [i0, i1])
        starts, lens = hstart[j0:j1], hcount[j0:j1].astype(np.int64)
        rows_local = np.repeat(hf[j0:j1] - i0, lens)
        cand = order[_expand_ranges(starts, lens)]  # (rows,) item ids
        f = fr[rows_local]
        d = items32[cand] - C32[f]  # (rows, 3) float32 world offset from camera
        dist2 = np.einsum("ij,ij->i", d, d)
        keep = dist2 <= max_depth * max_depth
        d, f, cand, rows_local = d[keep], f[keep], cand[keep], rows_local[keep]
        Xc = np.einsum("nji,nj->ni", R32[f], d)  # (rows, 3) camera frame: R^T d
        front = Xc[:, 2] > 1e-6
        f, cand, Xc = f[front], cand[front], Xc[front]
        vis = np.zeros(len(f), bool)
        uv_all = np.zeros((len(f), 2))
        cams = np.unique(cam_id[f])
        for c in cams:
            sel = slice(None) if len(cams) == 1 else cam_id[f] == c
            cam = life.cameras[int(c)]
            uv, inf = cam.project(Xc[sel])
            vis[sel] = inf & cam.inside(uv)
            uv_all[sel] = uv
        f, cand, z, uv_all = f[vis], cand[vis], Xc[vis, 2], uv_all[vis]
        if zbuffer_cells > 0 and len(f):
            W = np.array([life.cameras[int(c)].width for c in range(len(life.cameras))], np.float64)[cam_id[f]]
            cs = W / zbuffer_cells  # cell side in pixels
            cu = np.floor(uv_all[:, 0] / cs).astype(np.int64)
            cv = np.floor(uv_all[:, 1] / cs).astype(np.int64)
            zkey = (f.astype(np.int64) * 4096 + cv) * 4096 + cu
            zq = np.clip(z / max_depth * 65535, 0, 65535).astype(np.int64)  # quantised depth, 16 bits
            o = np.argsort((zkey << 16) | zq)  # by z-buffer cell, then depth
            zk = zkey[o]
            first = np.r_[True, zk[1:] != zk[:-1]]
            grp = np.cumsum(first) - 1
            zmin = z[o][first][grp]
            ok = np.empty(len(z), bool)
            ok[o] = z[o] <= zmin + np.maximum(0.1, 0.1 * zmin)
            f, cand = f[ok], cand[ok]
        # sort by (frame, item) inside the chunk; frames of different chunks do not overlap
        o = np.argsort((f.astype(np.int64) - fr[0]) * max(m, 1) + cand, kind="stable")
        if progress:
            progress(len(fr))
        return f[o].astype(np.int32), cand[o].astype(np.int32)

    res = thread_map(chunk, bounds, threads)
    rows = np.concatenate([r[0] for r in res])
    cols = np.concatenate([r[1] for r in res])
    del res
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=n))
    del rows
    V = sp.csr_matrix((np.ones(len(cols), np.int32), cols, indptr), shape=(n, m))
    V.has_sorted_indices = True
    return V, counts


def visible_from_depth(life: Life, voxel: float, max_depth: float, samples: int = 4096,
                       progress: Callable[..., None] | None = None):
    """Back-project each posed frame's depth map (pinhole) and voxelise -> CSR (N, K voxels)."""
    n = len(life)
    counts = {"frames_without_pose": 0, "frames_without_camera": 0, "frames_without_depth": 0}
    voxel = voxel if voxel > 0 else 0.05
    rows, keys = [], []
    for i in range(n):
        if life.pose_valid is None or not life.pose_valid[i]:
            counts["frames_without_pose"] += 1
            continue
        cam = life.camera(i)
        if cam is None or not cam.is_pinhole:
            counts["frames_without_camera"] += 1
            continue
        try:
            d = life.read_depth(i)
        except (OSError, ValueError):
            d = None
        if d is None:
            counts["frames_without_depth"] += 1
            continue
        H, W = d.shape
        step = max(1, int(np.sqrt(H * W / samples)))
        vv, uu = np.mgrid[step // 2:H:step, step // 2:W:step]  # (h, w) pixel grid
        z = d[vv, uu].reshape(-1)
        ok = (z > 0) & (z <= max_depth)
        sx, sy = cam.width / W, cam.height / H  # depth map may be stored at another size
        uv = np.stack([(uu.reshape(-1)[ok] + 0.5) * sx, (vv.reshape(-1)[ok] + 0.5) * sy], 1)
        Xc = cam.unproject_pinhole(uv, z[ok])
        Xw = Xc @ life.T_world_cam[i, :3, :3].T + life.T_world_cam[i, :3, 3]
        k = np.unique(_cell_keys(np.floor(Xw / voxel)))
        rows.append(np.full(len(k), i, np.int64))
        keys.append(k)
        if progress:
            progress(1)
    if not keys:
        return _csr(np.zeros(0, np.int64), np.zeros(0, np.int64), n, 0), counts
    allk = np.concatenate(keys)
    uk, inv = np.unique(allk, return_inverse=True)
    return _csr(np.concatenate(rows), inv.reshape(-1), n, len(uk)), counts


def method_of(life: Life) -> str:
    """The geometry `compute_visibility` uses for `life`: "tracks" | "points" | "depth" | "none"."""
    if life.tracks is not None:
        return "tracks"
    if life.points is not None and len(life.points) and life.T_world_cam is not None:
        return "points"
    if life.depth_paths is not None and life.T_world_cam is not None:
        return "depth"
    return "none"


def _finish(life: Life, V: sp.csr_matrix, method: str, counts: dict) -> Visibility:
    valid = np.zeros(len(life), bool) if life.pose_valid is None else life.pose_valid
    sizes = np.diff(V.indptr)
    counts["frames_empty"] = int(((sizes == 0) & valid).sum())
    log.info("visibility by %s: %d frames, %d items, %.0f items/frame", method, len(life), V.shape[1],
             float(sizes[valid].mean()) if valid.any() else 0.0)
    return Visibility(V, method, counts)


def points_visibility_from_rows(life: Life, items: int, frames: list[np.ndarray], rows: list[tuple]) -> Visibility:
    """The "points" `Visibility` of `life` put together from rows computed elsewhere (a shard set's cache and a
    `compute_visibility` of some of its frames): `frames[k]` (F_k,) life indices whose rows are the CSR
    `rows[k]` = (indptr (F_k + 1,), indices) of item ids < `items`; every frame given once. The same matrix and
    counts as `compute_visibility(life)` when the rows are its rows (a row depends only on its frame's pose and
    camera and on the voxelised cloud)."""
    n = len(life)
    row_of = np.concatenate([np.repeat(np.asarray(f, np.int64), np.diff(r[0])) for f, r in zip(frames, rows)]
                            or [np.zeros(0, np.int64)])
    cols = np.concatenate([np.asarray(r[1], np.int32) for r in rows] or [np.zeros(0, np.int32)])
    order = np.argsort(row_of, kind="stable")  # by frame; each row's items stay sorted
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(np.bincount(row_of, minlength=n))
    V = sp.csr_matrix((np.ones(len(cols), np.int32), cols[order], indptr), shape=(n, items))
    V.has_sorted_indices = True
    counts, _ = _pose_counts(life)
    counts["items"] = int(items)
    return _finish(life, V, "points", counts)


def compute_visibility(life: Life, max_depth: float = 10.0, voxel: float = 0.1, zbuffer_cells: int = 32,
                       progress: Callable[..., None] | None = None, threads: int = 1) -> Visibility:
    """Visible item sets of every frame of `life` from the best geometry it has (see module docstring)."""
    n = len(life)
    valid = np.zeros(n, bool) if life.pose_valid is None else life.pose_valid
    method = method_of(life)
    if method == "tracks":
        indptr, indices = life.tracks
        rows = np.repeat(np.arange(n), np.diff(indptr))
        m = int(indices.max()) + 1 if len(indices) else 0
        m = max(m, 0 if life.points is None else len(life.points))
        keep = valid[rows] if len(rows) else np.zeros(0, bool)  # tracks of unposed frames are not used
        V = _csr(rows[keep], indices[keep], n, m)
        counts = {"frames_without_pose": int((~valid).sum())}
    elif method == "points":
        items = voxelize(life.points, voxel)
        V, counts = visible_from_points(life, items, max_depth, zbuffer_cells, progress, threads=threads)
        counts["items"] = int(len(items))
    elif method == "depth":
        V, counts = visible_from_depth(life, voxel, max_depth, progress=progress)
    else:
        V = _csr(np.zeros(0, np.int64), np.zeros(0, np.int64), n, 0)
        counts = {"frames_without_pose": int((~valid).sum())}
    return _finish(life, V, method, counts)


def intersection_counts(V: sp.csr_matrix, a: np.ndarray, b: np.ndarray, rows_per_chunk: int = 2048,
                        pairs_per_chunk: int = 500_000) -> np.ndarray:
    """|A n B| for frame pairs (a[k], b[k]) -> (P,) int64, exactly.

    Pairs are grouped by `a` in chunks; per chunk the cheaper of two exact methods runs: a sparse product
    V[Q] @ V[B].T of the chunk's frames Q and partners B (cost sum over items of count_Q x count_B; wins
    when frames have many candidates) or a row-wise product V[a] .* V[b] (cost sum of |A| + |B|).
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    out = np.zeros(len(a), np.int64)
    if len(a) == 0:
        return out
    order = np.argsort(a, kind="stable")
    sa = a[order]
    sizes = np.diff(V.indptr)
    m = V.shape[1]
    s0 = 0
    while s0 < len(sa):
        # grow the chunk to rows_per_chunk distinct a's or pairs_per_chunk pairs
        s1 = min(len(sa), s0 + pairs_per_chunk)
        ua_end = np.searchsorted(sa, sa[s0] + rows_per_chunk, side="left") if s1 > s0 else s0
        s1 = max(s0 + 1, min(s1, ua_end))
        idx = order[s0:s1]
        ca, cb = a[idx], b[idx]
        Q, qi = np.unique(ca, return_inverse=True)
        B, bi = np.unique(cb, return_inverse=True)
        VQ, VB = V[Q], V[B]
        cost_prod = float(np.dot(np.bincount(VQ.indices, minlength=m).astype(np.float64),
                                 np.bincount(VB.indices, minlength=m).astype(np.float64)))
        cost_rows = float(sizes[ca].sum() + sizes[cb].sum()) * 4.0  # row gathers are ~4x dearer per element
        if cost_prod < cost_rows:
            P = (VQ @ VB.T).tocsr()  # (|Q|, |B|) intersection counts
            out[idx] = np.asarray(P[qi.reshape(-1), bi.reshape(-1)]).reshape(-1)
        else:
            out[idx] = np.asarray(V[ca].multiply(V[cb]).sum(axis=1)).reshape(-1)
        s0 = s1
    return out


def jaccard_exact(vis: Visibility, a: np.ndarray, b: np.ndarray, threads: int = 1) -> np.ndarray:
    """Exact Jaccard |A n B| / |A u B| of frame pairs (a[k], b[k]) -> (P,) float64 (0 when both empty).

    With `threads` > 1 the pairs are split into ranges of `a` counted on a thread pool (scipy's sparse
    kernels release the GIL); the counts are exact either way.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if threads > 1 and len(a) > 100_000:
        order = np.argsort(a)
        parts = np.array_split(order, 4 * threads)
        inter = np.zeros(len(a), np.float64)
        for idx, cnt in zip(parts, thread_map(lambda i: intersection_counts(vis.V, a[i], b[i]), parts, threads)):
            inter[idx] = cnt
    else:
        inter = intersection_counts(vis.V, a, b).astype(np.float64)
    union = vis.sizes[a] + vis.sizes[b] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
