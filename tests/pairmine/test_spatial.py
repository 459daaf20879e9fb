"""Spatial strategy: recall against brute force, exact Jaccard, per-frame cap, real data (COLMAP tracks, Aria)."""

import json
from pathlib import Path

import numpy as np
import pytest

from slife.pairmine import MineConfig, run
from slife.pairmine.procedural import make_life
from slife.pairmine.spatial import brute_force_pairs, find_pair_arrays, find_pairs
from slife.pairmine.visibility import compute_visibility, jaccard_exact

DATA = Path(__file__).resolve().parents[2] / "../shared/data"


@pytest.fixture(scope="module")
def big():
    life = make_life(1000, rooms=(3, 3), videos=3, seed=1, density=20)
    vis = compute_visibility(life, max_depth=10, voxel=0.5, zbuffer_cells=32)
    return life, vis


def _recount(vis, a, b):
    A, B = set(vis.row(a).tolist()), set(vis.row(b).tolist())
    return len(A & B) / len(A | B)


def test_recall_vs_brute_force(big):
    life, vis = big
    cfg = MineConfig(per_frame=0, lsh_window=0, voxel=0.5)
    a, b, J = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
    ref = {tuple(p) for p in brute_force_pairs(vis, cfg.j_min, cfg.j_max).tolist()}
    got = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    assert len(ref) > 5000
    assert len(got & ref) / len(ref) >= 0.99
    assert got <= ref  # nothing outside the J range
    # stored Jaccard equals an exact recount from the visibility sets
    idx = np.random.default_rng(1).choice(len(a), 300, replace=False)
    for k in idx:
        assert J[k] == pytest.approx(_recount(vis, a[k], b[k]), abs=1e-12)
        assert cfg.j_min <= J[k] <= cfg.j_max


def test_windowed_buckets_keep_most_pairs(big):
    life, vis = big
    cfg = MineConfig(per_frame=0, voxel=0.5)  # default lsh_window: bounded work per bucket
    a, b, _ = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
    ref = {tuple(p) for p in brute_force_pairs(vis, cfg.j_min, cfg.j_max).tolist()}
    got = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    assert len(got & ref) / len(ref) >= 0.9


def test_per_frame_keeps_the_best_partners(big):
    life, vis = big
    cfg = MineConfig(per_frame=3, voxel=0.5)
    a, b, J = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
    assert np.bincount(a, minlength=len(life)).max() <= 3
    assert len(a) >= 0.9 * 3 * len(life)
    # each frame's partners are among its best in range: compare with brute force for a few frames
    V = vis.V.astype(np.float32)
    s = vis.sizes
    got_sum = best_sum = 0.0
    for f in np.flatnonzero(np.bincount(a, minlength=len(life)) == 3)[:50]:
        inter = np.asarray((V[f] @ V.T).todense()).ravel()
        Jf = inter / (s[f] + s - inter)
        Jf[f] = -1
        Jf[(Jf < cfg.j_min) | (Jf > cfg.j_max)] = -1
        best_sum += np.sort(Jf)[-3:].sum()
        got_sum += J[a == f].sum()
    assert got_sum >= 0.97 * best_sum  # approximate top-3 (MinHash ranking), close to the exact one



@pytest.mark.parametrize("per_frame", [0, 3])
def test_a_later_generation_gives_each_new_frame_its_best_partners(big, per_frame):
    """A later generation (the third recording new): exactly the brute-force pairs with a new frame, each new
    frame keeping its per_frame highest-Jaccard partners (ties: lower index) as the source view, old frames no
    slots of their own; the Jaccards are jaccard_exact's; the new day's frames pair with the earlier days'."""
    life, vis = big
    new = life.source == 2
    cfg = MineConfig(per_frame=per_frame, voxel=0.5)
    a, b, J = find_pair_arrays(life, cfg, np.random.default_rng(0), vis, new=new)
    assert len(a) and new[a].all() and (a != b).all()
    assert np.array_equal(J, jaccard_exact(vis, a, b)) and ((J >= cfg.j_min) & (J <= cfg.j_max)).all()
    assert (life.source[b] != 2).sum() > 100  # the new day revisits the earlier days' rooms
    ref = brute_force_pairs(vis, cfg.j_min, cfg.j_max)
    ref = ref[new[ref[:, 0]] | new[ref[:, 1]]]  # (R, 2) a < b, in range, one side new
    if per_frame == 0:  # every such pair, once
        assert len(a) == len(ref) and set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist())) == \
            set(map(tuple, ref.tolist()))
        return
    src, dst = np.r_[ref[:, 0], ref[:, 1]], np.r_[ref[:, 1], ref[:, 0]]
    src, dst = src[new[src]], dst[new[src]]  # (new frame, partner)
    Jr = jaccard_exact(vis, src, dst)
    want = set()
    for f in np.unique(src).tolist():
        m = np.flatnonzero(src == f)
        want |= {(f, int(x)) for x in dst[m[np.lexsort((dst[m], -Jr[m]))[:per_frame]]]}
    assert len(a) == len(want) and set(zip(a.tolist(), b.tolist())) == want
    n = len(life)  # every new frame with a partner in range gets min(per_frame, available)
    assert np.array_equal(np.bincount(a, minlength=n), np.minimum(per_frame, np.bincount(src, minlength=n)))


def test_dense_room_every_frame_gets_per_frame_partners_in_range():
    """One room walked for 3000 frames: every frame has hundreds of partners in [j_min, j_max] and ~15
    near-duplicates above j_max. Each frame still gets min(per_frame, available) partners in range (checked
    against an exact all-pairs count), and near the best ones: the slots are not spent on near-duplicates."""
    life = make_life(3000, rooms=(1, 1), videos=1, seed=0, density=10)
    cfg = MineConfig(voxel=0.3)  # default per_frame 5, J in [0.15, 0.75]
    vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells)
    V = vis.V.astype(np.float32)
    inter = (V @ V.T).toarray()  # (N, N) exact intersections
    s = vis.sizes.astype(np.float64)
    J = inter / np.maximum(s[:, None] + s[None, :] - inter, 1)
    np.fill_diagonal(J, 0)
    avail = ((J >= cfg.j_min) & (J <= cfg.j_max)).sum(1)  # (N,) partners in range per frame
    assert (J > cfg.j_max).sum(1).mean() > 2 * cfg.per_frame  # the dense case: more near-duplicates than slots
    has = avail > 0
    assert has.all()
    a, b, Jp = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
    assert ((Jp >= cfg.j_min) & (Jp <= cfg.j_max)).all()
    partners = np.zeros(len(life), np.int64)
    for x, y in set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist())):
        partners[x] += 1
        partners[y] += 1
    assert (partners[has] >= np.minimum(cfg.per_frame, avail[has])).mean() >= 0.99
    best = -np.sort(-np.where((J >= cfg.j_min) & (J <= cfg.j_max), J, 0), axis=1)[:, :cfg.per_frame].sum(1)
    got = np.bincount(a, weights=Jp, minlength=len(life))
    assert got.sum() >= 0.9 * best.sum()  # Jaccard summed over each frame's partners, against its exact best


def test_generator_interface(proc_life):
    pairs = list(find_pairs(proc_life, MineConfig(voxel=0.3), np.random.default_rng(0)))
    assert pairs and all(p.strategy == "spatial" and 0.15 <= p.jaccard <= 0.75 for p in pairs)


def test_no_poses_is_a_clear_error(proc_life):
    from dataclasses import replace

    from slife.errors import SlifeError

    life = replace(proc_life, T_world_cam=None, pose_valid=None)
    with pytest.raises(SlifeError, match="slife sfm"):
        list(find_pairs(life, MineConfig(), np.random.default_rng(0)))


@pytest.mark.skipif(not (DATA / "tum_fr2_desk").exists(), reason="shared/data/tum_fr2_desk not present")
def test_real_tum_colmap_tracks(tmp_path):
    from slife.lives import read_life

    model = DATA / "tum_fr2_desk" / "colmap_sparse_derived"
    cfg = MineConfig(strategies=("spatial",), fps=0, per_frame=0, short_side=64, pairs_per_shard=50)
    man = json.loads(run(cfg, model, tmp_path).read_text())
    s = man["summary"]
    assert s["visibility"]["method"] == "tracks"
    assert s["pairs"] >= 50 and man["samples"] == s["pairs"]
    life = read_life(model)
    vis = compute_visibility(life)
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["jaccard"] == pytest.approx(_recount(vis, r["a"], r["b"]), abs=1e-12)
    assert (tmp_path / "pairs-000000.tar").exists()


@pytest.mark.skipif(not (DATA / "aria_mps_walk").exists(), reason="shared/data/aria_mps_walk not present")
def test_real_aria_points_fisheye_pairs_only(tmp_path):
    cfg = MineConfig(strategies=("spatial", "temporal"), fps=2, pairs_only=True)
    man = json.loads(run(cfg, DATA / "aria_mps_walk", tmp_path).read_text())
    s = man["summary"]
    assert s["visibility"]["method"] == "points"
    assert s["found_by_strategy"]["spatial"] >= 20
    assert man["shards"] == [] and not list(tmp_path.glob("*.tar"))
    txt = (tmp_path / "pairs.txt").read_text().splitlines()
    assert len(txt) == s["pairs"] and all(len(line.split()) == 2 for line in txt)


def test_threads_do_not_change_the_pairs(big):
    life, vis = big
    runs = [find_pair_arrays(life, MineConfig(per_frame=3, voxel=0.5, workers=w), np.random.default_rng(4), vis)
            for w in (1, 2, 3)]
    for a, b, J in runs[1:]:
        assert np.array_equal(a, runs[0][0]) and np.array_equal(b, runs[0][1]) and np.array_equal(J, runs[0][2])


@pytest.mark.parametrize("k", [8, 13, 64])
def test_equal_bytes_counts_matching_low_bytes(k):
    from slife.pairmine.spatial import equal_bytes, low_bytes

    rng = np.random.default_rng(k)
    sig = rng.integers(0, 2**32, (50, k), dtype=np.uint64).astype(np.uint32)
    sig[1, : k // 2] = sig[0, : k // 2]  # half equal
    sig[2] = sig[0] + np.uint32(256)  # differ, but equal low bytes
    a, b = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    a[:2], b[:2] = 0, (1, 2)
    want = ((sig[a] & 0xFF) == (sig[b] & 0xFF)).sum(1)
    got = equal_bytes(low_bytes(sig), a, b, k)
    assert np.array_equal(got, want) and got[0] >= k // 2 and got[1] == k
