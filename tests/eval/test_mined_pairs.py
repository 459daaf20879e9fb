"""Ground truth from real mined shards (a synthetic life through `slife.pairmine`): the metadata path of `slife cas`."""

import numpy as np
import pytest

from slife.eval.attention import same_position_summary
from slife.eval.cas import accuracy
from slife.eval.groundtruth import displaced_mask, pair_ground_truth


@pytest.fixture(scope="module")
def mined(tiny_life, tmp_path_factory):
    from slife.pairmine import MineConfig, run

    out = tmp_path_factory.mktemp("shards") / "kitchen"
    run(MineConfig(strategies=("spatial", "augmented"), fps=0, short_side=48, j_min=0.05, j_max=0.9,
                   augmented_per_frame=0.1, max_pairs=40, seed=0), tiny_life, out)
    return out


def test_truth_from_mined_metadata_is_photometrically_right(mined):
    from slife.train.augment import denormalize
    from slife.train.stream import eval_pairs

    S, p = 48, 8
    grid = (S // p, S // p)
    pairs = eval_pairs(str(mined), S, 40)
    truths = [pair_ground_truth(x, grid, p) for x in pairs]
    assert all(t is not None for t in truths), "every mined pair of a posed life with depth carries ground truth"
    ti = np.stack(truths)  # (P, N)
    known = ti >= 0
    assert known.mean() > 0.3
    aug = np.array(["augmented" in x["json"]["strategy"] and x["json"]["frame_a"] == x["json"]["frame_b"]
                    for x in pairs])
    if aug.any():  # a frame with itself: the truth is the same position wherever it is known
        same = np.broadcast_to(np.arange(grid[0] * grid[1]), ti.shape)
        assert (ti[aug][known[aug]] == same[aug][known[aug]]).all()
    # photometric check on patches whose match moved (>= 1 patch; this tiny life's pairs rarely move more):
    # the source patch at the true match looks more like the target patch than the one at the same position
    n = grid[0] * grid[1]
    r, c = np.divmod(np.where(known, ti, 0), grid[1])
    r0, c0 = np.divmod(np.arange(n), grid[1])
    moved = known & (np.maximum(abs(r - r0), abs(c - c0)) >= 1)
    assert moved.sum() > 100
    disp = displaced_mask(ti, grid)
    err_true, err_same = [], []
    for x, t, d in zip(pairs, ti, moved):
        tgt = denormalize(x["tgt"][None])[0]  # (3, S, S)
        src = denormalize(x["src"][None])[0]
        pt = tgt.unfold(1, p, p).unfold(2, p, p).mean((-1, -2)).reshape(3, -1)  # (3, N) patch mean colours
        ps = src.unfold(1, p, p).unfold(2, p, p).mean((-1, -2)).reshape(3, -1)
        for i in np.flatnonzero(d):
            err_true.append(float((pt[:, i] - ps[:, t[i]]).abs().mean()))
            err_same.append(float((pt[:, i] - ps[:, i]).abs().mean()))
    assert np.median(err_true) < 0.7 * np.median(err_same)
    sp = same_position_summary(grid, 1, len(pairs))
    if disp.any():
        assert accuracy(sp, ti, mask=disp) == 0.0
    assert 0 < accuracy(sp, ti) < 1
