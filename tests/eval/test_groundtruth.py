import numpy as np

from slife.eval.groundtruth import (apply_homography, displaced_mask, homography_to_model_frame, matches_from_depth,
                                    matches_from_homography, pair_ground_truth, patch_index, within_one)
from slife.lives.geometry import make_pose

GRID, PATCH, S = (8, 8), 8, 64
K = np.array([[64.0, 0, 32], [0, 64.0, 32], [0, 0, 1]])


def _plane_pair(tx: float, depth: float = 2.0):
    T_tgt = np.eye(4)
    T_src = make_pose(np.eye(3), [tx, 0, 0])  # source camera moved right by tx metres
    d = np.full((S, S), depth, np.float32)
    return T_tgt, T_src, d


def test_fronto_parallel_plane_shifts_by_f_tx_over_d():
    T_tgt, T_src, d = _plane_pair(0.5)  # shift -f tx / d = -16 px = -2 patches
    idx = matches_from_depth(d, K, K, T_tgt, T_src, GRID, PATCH)
    r, c = np.divmod(np.arange(64), 8)
    expect = np.where(c >= 2, r * 8 + c - 2, -1)
    assert (idx == expect).all()
    assert displaced_mask(idx, GRID).sum() == 48  # every known patch moved by 2
    # missing depth -> unknown; a nearer surface in the source view -> occluded
    d2 = d.copy()
    d2[:8, :8] = 0
    assert matches_from_depth(d2, K, K, T_tgt, T_src, GRID, PATCH)[0] == -1
    occl = np.full((S, S), 2.0, np.float32)
    occl[:, :16] = 1.0  # a wall at 1 m covering the left two source columns
    idx_o = matches_from_depth(d, K, K, T_tgt, T_src, GRID, PATCH, depth_src=occl)
    assert (idx_o[(c == 2) | (c == 3)] == -1).all() and (idx_o[c == 4] == r[c == 4] * 8 + 2).all()
    pair = {"json": {"T_a": T_src.tolist(), "T_b": T_tgt.tolist()}, "K_src": K, "K_tgt": K, "tgt_depth": d}
    assert (pair_ground_truth(pair, GRID, PATCH) == expect).all()
    assert pair_ground_truth({"json": {"T_a": None}}, GRID, PATCH) is None


def test_small_motion_is_not_displaced():
    T_tgt, T_src, d = _plane_pair(0.125)  # -4 px: half a patch
    idx = matches_from_depth(d, K, K, T_tgt, T_src, GRID, PATCH)
    assert displaced_mask(idx, GRID).sum() == 0
    same = np.arange(64)
    assert within_one(same, idx, GRID)[idx >= 0].all()


def test_homography_model_frame_round_trip():
    H = np.array([[1.1, 0.05, 12.0], [-0.02, 0.95, 7.0], [1e-4, 2e-5, 1.0]])
    size_t, size_s = (320, 240), (300, 260)
    Hm = homography_to_model_frame(H, size_t, size_s, (S, S))
    p_model = np.array([[10.0, 20.0], [50.5, 3.25]])
    # model -> full-res (slife) -> OpenCV -> H -> slife -> model
    full = p_model * np.array(size_t) / S - 0.5
    q = (apply_homography(H, full) + 0.5) * S / np.array(size_s)
    assert np.allclose(apply_homography(Hm, p_model), q)
    ident = homography_to_model_frame(np.eye(3), (100, 100), (100, 100), (S, S))
    assert np.allclose(ident, np.eye(3))
    assert (matches_from_homography(np.eye(3), GRID, PATCH) == np.arange(64)).all()
    assert patch_index(np.array([[-0.1, 3.0], [63.9, 63.9], [np.nan, 1]]), GRID, PATCH).tolist() == [-1, 63, -1]
