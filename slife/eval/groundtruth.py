"""True patch correspondences of a view pair, from poses + depth (+K) or from a homography, and the displaced mask.

Reads pair metadata as `slife.train.stream.eval_pairs` gives it: "K_src", "K_tgt" (3x3 at the S x S crop),
"tgt_depth" / "src_depth" (S x S float32 metres, 0 = invalid), json "T_a" (src) and "T_b" (tgt)
camera-to-world 4x4 (OpenCV axes, metres); or a 3x3 homography. Pixel convention: centre of pixel (0, 0)
is (0.5, 0.5) (slife/COLMAP). Returns, for each target patch (row-major), the source patch that holds its
true match (-1 where unknown: no depth, out of view, behind the camera, occluded), and the *displaced*
mask: true match more than one patch (Chebyshev, on the grid) away from the same grid position.
Entry points: `matches_from_depth`, `matches_from_homography`, `pair_ground_truth`, `ground_truth_table`,
`displaced_mask`, `within_one`. Projection maths is `slife.lives.geometry`; scores are in `cas.py` and `correspondence.py`.
"""

from __future__ import annotations

import warnings

import numpy as np

from slife.lives.geometry import Camera, project_points


def patch_centres(grid: tuple[int, int], patch: int) -> np.ndarray:
    """(h*w, 2) float64 pixel (x, y) of each patch centre, row-major."""
    h, w = grid
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([(c.ravel() + 0.5) * patch, (r.ravel() + 0.5) * patch], axis=1).astype(np.float64)


def patch_index(uv: np.ndarray, grid: tuple[int, int], patch: int) -> np.ndarray:
    """Pixels (N, 2) (x, y) -> (N,) int64 row-major patch index, -1 outside the h x w grid (or non-finite)."""
    h, w = grid
    uv = np.asarray(uv, dtype=np.float64)
    ok = np.isfinite(uv).all(axis=1)
    u = np.where(ok, uv[:, 0], -1.0)
    v = np.where(ok, uv[:, 1], -1.0)
    c = np.floor(u / patch).astype(np.int64)
    r = np.floor(v / patch).astype(np.int64)
    inside = ok & (c >= 0) & (c < w) & (r >= 0) & (r < h)
    return np.where(inside, r * w + c, -1)


def apply_homography(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (N, 2) -> H-mapped points (N, 2); points mapped to infinity become NaN."""
    xy = np.asarray(xy, dtype=np.float64)
    p = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.asarray(H, dtype=np.float64).T  # (N, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p[:, :2] / p[:, 2:3]
    out[~np.isfinite(out).all(axis=1) | (np.abs(p[:, 2]) < 1e-12)] = np.nan
    return out


def homography_to_model_frame(H: np.ndarray, size_tgt: tuple[int, int], size_src: tuple[int, int],
                              model_size: tuple[int, int], opencv_pixels: bool = True) -> np.ndarray:
    """A full-resolution homography tgt -> src as the homography between the two views resized to the model.

    `size_*` and `model_size` are (W, H). With `opencv_pixels` (HPatches, Oxford), H maps coordinates whose
    pixel centres are integers; slife's centres are at +0.5, so the half-pixel shift is applied both sides.
    """
    Wt, Ht = size_tgt
    Ws, Hs = size_src
    Wm, Hm = model_size
    sh = 0.5 if opencv_pixels else 0.0
    to_full_t = np.array([[Wt / Wm, 0, -sh], [0, Ht / Hm, -sh], [0, 0, 1.0]])  # model slife -> full-res H convention
    to_model_s = np.array([[Wm / Ws, 0, sh * Wm / Ws], [0, Hm / Hs, sh * Hm / Hs], [0, 0, 1.0]])  # inverse for src
    return to_model_s @ np.asarray(H, dtype=np.float64) @ to_full_t


def matches_from_homography(H_model: np.ndarray, grid: tuple[int, int], patch: int) -> np.ndarray:
    """(N,) int64 source patch of each target patch centre under a model-frame homography, -1 outside."""
    return patch_index(apply_homography(H_model, patch_centres(grid, patch)), grid, patch)


def _patch_depth(depth: np.ndarray, grid: tuple[int, int], patch: int, min_valid: float = 0.5) -> np.ndarray:
    """Median valid depth of each patch (N,), 0 where fewer than `min_valid` of its pixels are valid."""
    h, w = grid
    d = np.asarray(depth, dtype=np.float64)[: h * patch, : w * patch]
    blocks = d.reshape(h, patch, w, patch).transpose(0, 2, 1, 3).reshape(h * w, patch * patch)  # (N, p*p)
    valid = (blocks > 0) & np.isfinite(blocks)
    with warnings.catch_warnings():  # all-invalid patches give NaN (then 0 below)
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(valid, blocks, np.nan), axis=1) if valid.any() else np.zeros(h * w)
    ok = valid.mean(axis=1) >= min_valid
    return np.where(ok & np.isfinite(med), med, 0.0)


def matches_from_depth(depth_tgt: np.ndarray, K_tgt: np.ndarray, K_src: np.ndarray, T_world_tgt: np.ndarray,
                       T_world_src: np.ndarray, grid: tuple[int, int], patch: int,
                       depth_src: np.ndarray | None = None, occlusion_tol: float = 0.1) -> np.ndarray:
    """(N,) int64 source patch of each target patch centre: back-project with the patch's median depth,
    move to the source camera, project; -1 where depth is missing, the point is behind or outside the
    source view, or (with `depth_src`) hidden behind a surface more than `occlusion_tol` (relative) nearer."""
    h, w = grid
    S = (w * patch, h * patch)
    uv_t = patch_centres(grid, patch)  # (N, 2)
    d = _patch_depth(depth_tgt, grid, patch)  # (N,)
    has = d > 0
    cam_t = Camera.from_K(K_tgt, *S)
    cam_s = Camera.from_K(K_src, *S)
    X_t = cam_t.unproject_pinhole(uv_t, np.where(has, d, 1.0))  # (N, 3) target camera frame
    X_w = X_t @ np.asarray(T_world_tgt)[:3, :3].T + np.asarray(T_world_tgt)[:3, 3]  # (N, 3) world
    uv_s, z_s, vis = project_points(np.asarray(T_world_src, dtype=np.float64), cam_s, X_w)
    idx = patch_index(uv_s, grid, patch)
    ok = has & vis & (idx >= 0)
    if depth_src is not None:
        ds = np.asarray(depth_src, dtype=np.float64)
        px = np.clip(np.floor(uv_s[:, 0]).astype(np.int64), 0, ds.shape[1] - 1)
        py = np.clip(np.floor(uv_s[:, 1]).astype(np.int64), 0, ds.shape[0] - 1)
        dsrc = ds[py, px]
        occluded = (dsrc > 0) & (z_s > dsrc * (1 + occlusion_tol))
        ok &= ~occluded
    return np.where(ok, idx, -1)


def pair_ground_truth(pair: dict, grid: tuple[int, int], patch: int) -> np.ndarray | None:
    """(N,) true source patch per target patch for an eval pair dict, or None if it carries no ground truth.

    Uses a "H" entry (3x3 model-frame homography tgt -> src) if present, else poses + depth + K.
    """
    if pair.get("H") is not None:
        return matches_from_homography(pair["H"], grid, patch)
    meta = pair.get("json") or {}
    T_src, T_tgt = meta.get("T_a"), meta.get("T_b")
    K_src, K_tgt = pair.get("K_src"), pair.get("K_tgt")
    depth = pair.get("tgt_depth")
    if T_src is None or T_tgt is None or K_src is None or K_tgt is None or depth is None:
        return None
    T_src, T_tgt = np.asarray(T_src, dtype=np.float64), np.asarray(T_tgt, dtype=np.float64)
    if not (np.isfinite(T_src).all() and np.isfinite(T_tgt).all()):
        return None
    dsrc = pair.get("src_depth")
    return matches_from_depth(np.asarray(depth), np.asarray(K_tgt), np.asarray(K_src), T_tgt, T_src, grid, patch,
                              None if dsrc is None else np.asarray(dsrc))


def ground_truth_table(pairs: list[dict], grid: tuple[int, int], patch: int) -> np.ndarray | None:
    """(P, N) int64 true source patch of every target patch of every pair (`pair_ground_truth`; -1 unknown, a
    whole row for a pair without ground truth), or None when no pair carries any."""
    truths = [pair_ground_truth(p, grid, patch) for p in pairs]
    if all(t is None for t in truths):
        return None
    n = grid[0] * grid[1]
    return np.stack([t if t is not None else np.full(n, -1, dtype=np.int64) for t in truths])  # (P, N)


def _rc(idx: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    return idx // w, idx % w


def displaced_mask(true_idx: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(..., N) bool: the true match (valid, >= 0) is more than one patch (Chebyshev) from the same grid position."""
    true_idx = np.asarray(true_idx)
    n = grid[0] * grid[1]
    same = np.broadcast_to(np.arange(n), true_idx.shape)
    rt, ct = _rc(true_idx, grid[1])
    rs, cs = _rc(same, grid[1])
    return (true_idx >= 0) & (np.maximum(np.abs(rt - rs), np.abs(ct - cs)) > 1)


def within_one(pred_idx: np.ndarray, true_idx: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(..., N) bool: predicted source patch within one patch (Chebyshev) of the true one (False where unknown)."""
    pred_idx, true_idx = np.asarray(pred_idx), np.asarray(true_idx)
    rp, cp = _rc(pred_idx, grid[1])
    rt, ct = _rc(true_idx, grid[1])
    return (true_idx >= 0) & (pred_idx >= 0) & (np.maximum(np.abs(rp - rt), np.abs(cp - ct)) <= 1)

