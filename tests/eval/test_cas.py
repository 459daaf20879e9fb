import math
from pathlib import Path

import numpy as np
import pytest
import torch

from slife.errors import SlifeError
from slife.eval.attention import (correspondence_maps, head_average, masked_logits, masked_reads, overlap,
                                  same_position_summary, same_position_topk, summarize_maps, summarize_model, topk_sets)
from slife.eval.cas import (CasConfig, accuracy, accuracy_beyond_position, beyond_saliency_jackknife, beyond_saliency_score,
                            calibrated_jackknife, calibrated_score, cas_report, cluster_order, jackknife_replicates, jackknife_se, linear_cka, mutual_knn, pair_score,
                            position_prior_accuracy, replicate_se, score_matrix)
from slife.eval.groundtruth import displaced_mask, within_one

from .synthetic import GRID, SHIFTS, AttentionStandIn, identity_model, pairs, true_idx, truth_model

N = GRID[0] * GRID[1]


def _summ(model, k, name="m"):
    return summarize_model(name, model, pairs(), k, GRID, batch_size=2)


def test_same_position_topk_is_the_grid_neighbourhood():
    t = same_position_topk(GRID, 9)
    centre = 3 * 8 + 3
    assert t[centre, 0] == centre
    assert sorted(t[centre, :5].tolist()) == sorted([centre, centre - 1, centre + 1, centre - 8, centre + 8])
    assert sorted(t[centre].tolist()) == sorted(r * 8 + c for r in (2, 3, 4) for c in (2, 3, 4))
    assert sorted(same_position_topk(GRID, 4)[0].tolist()) == [0, 1, 8, 9]  # corner: its 2x2 block


def test_same_position_predictor_scores_its_analytic_value():
    ti = true_idx()
    known = [(8 - abs(dx)) * (8 - abs(dy)) for dx, dy in SHIFTS]  # 64, 56, 48, 40, 49
    assert (ti >= 0).sum() == sum(known) == 257
    disp = displaced_mask(ti, GRID)
    assert disp.sum() == 48 + 40  # shifts (2,0) and (0,-3) are displaced everywhere, the others nowhere
    sp = same_position_summary(GRID, 1, len(SHIFTS))
    assert accuracy(sp, ti) == pytest.approx(169 / 257, abs=1e-12)
    assert accuracy(sp, ti, mask=disp) == 0.0
    gt = _summ(truth_model(), 1, "truth")
    # k = 1: the two agree exactly where the shift is zero
    assert pair_score(sp.topk[:, -1], gt.topk[:, -1], ti >= 0) == pytest.approx(64 / 257, abs=1e-12)
    rep = cas_report([gt, sp], ti)
    assert rep["chance"] == 1 / 64
    assert rep["ground_truth"]["displaced_share"] == pytest.approx(88 / 257)
    assert rep["ground_truth"]["accuracy"]["same-position"]["all"] == pytest.approx(169 / 257)


def test_identity_attention_is_the_same_position_predictor():
    ti = true_idx()
    for k in (1, 5, 10):
        ident = _summ(identity_model(), k, "identity")
        sp = same_position_summary(GRID, k, len(SHIFTS))
        assert pair_score(ident.topk[:, -1], sp.topk[:, -1]) == 1.0
        rep = cas_report([ident, sp], ti)
        assert rep["matrix"][0][1] == 1.0
        assert rep["controls"]["same_position"]["identity"]["avg"] == 1.0
        assert rep["controls"]["same_position"]["identity"]["per_block"] == [1.0, 1.0]
        assert rep["ground_truth"]["accuracy"]["identity"]["displaced"] == 0.0
        assert rep["ground_truth"]["accuracy"]["identity"]["all"] == pytest.approx(169 / 257)


def test_truth_attention_is_accurate_on_displaced_patches():
    ti = true_idx()
    gt = _summ(truth_model(), 10, "truth")
    sp = same_position_summary(GRID, 10, len(SHIFTS))
    rep = cas_report([gt, sp], ti)
    acc = rep["ground_truth"]["accuracy"]["truth"]
    assert acc["displaced"] == 1.0 and acc["all"] == 1.0
    assert acc["per_block_displaced"] == [1.0, 1.0]
    # on displaced patches the truth and the shortcut share little at k = 10 and nothing at k = 1
    assert rep["ground_truth"]["matrix_displaced"][0][0] == 1.0
    assert rep["ground_truth"]["matrix_displaced"][0][1] < 0.5
    rep1 = cas_report([_summ(truth_model(), 1, "truth"), same_position_summary(GRID, 1, len(SHIFTS))], ti)
    assert rep1["ground_truth"]["matrix_displaced"][0][1] == 0.0


def test_cas_self_symmetric_and_head_permutation():
    g = torch.Generator().manual_seed(0)
    logits_a = [torch.randn(3, 4, N, N, generator=g) for _ in range(2)]
    logits_b = [torch.randn(3, 4, N, N, generator=g) for _ in range(2)]
    perm = [x[:, [2, 0, 3, 1]] for x in logits_a]
    sa = summarize_maps("a", "model", head_average(logits_a), GRID, 10)
    sb = summarize_maps("b", "model", head_average(logits_b), GRID, 10)
    sp_ = summarize_maps("perm", "model", head_average(perm), GRID, 10)
    m = score_matrix([sa, sb, sp_])
    assert m[0, 0] == 1.0 and m[0, 2] == 1.0
    assert np.allclose(m, m.T)
    assert abs(m[0, 1] - 10 / N) < 0.05  # independent random maps score near chance k/N
    mb = score_matrix([sa, sb], block=1)
    assert mb[0, 0] == 1.0


def test_topk_and_overlap_by_hand():
    A = torch.tensor([[[5.0, 4, 0, 0], [0, 1, 9, 8]]])  # (1, 2, 4)
    t = topk_sets(A, 2)
    assert t.tolist() == [[[0, 1], [2, 3]]]
    b = torch.tensor([[[1, 3], [2, 0]]])
    assert overlap(t, b).tolist() == [[0.5, 0.5]]
    # reciprocal: a source patch is kept only if the target is among its own top-2 targets
    A2 = torch.tensor([[[5.0, 4, 0, 0], [0, 1, 9, 8], [6, 6, 1, 0], [9, 9, 0, 0]]])  # (1, 4, 4)
    r = topk_sets(A2, 2, reciprocal=True)
    assert r[0, 0].tolist() == [-1, -1]  # sources 0 and 1 prefer targets 3 and 2
    assert r[0, 1].tolist() == [2, 3]
    assert overlap(r, r).tolist() == [[0.0, 1.0, 1.0, 1.0]]


def test_mknn_and_cka():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8))
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert mutual_knn(X, X @ Q * 3.0, 5) == 1.0  # rotation and scale keep cosine neighbours
    assert linear_cka(X, X @ Q * 3.0) == pytest.approx(1.0)
    assert linear_cka(X, rng.normal(size=(40, 8))) < 0.5
    assert mutual_knn(X, rng.normal(size=(40, 8)), 5) < 0.4


def test_cluster_order_groups_blocks():
    s = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .8], [.1, .1, .8, 1.0]])
    p = np.array([0, 2, 1, 3])
    order = cluster_order(s[np.ix_(p, p)])
    groups = [set(p[order[:2]].tolist()), set(p[order[2:]].tolist())]
    assert {0, 1} in groups and {2, 3} in groups
    assert math.isnan(pair_score(torch.zeros(1, 2, 1, dtype=torch.long), torch.zeros(1, 2, 1, dtype=torch.long),
                                 np.zeros((1, 2), bool)))


def _permute_cross_heads(model, perm):
    """A copy of a CroCoNet whose decoder cross-attention heads are reordered (same function)."""
    import copy

    m = copy.deepcopy(model)
    for blk in m.dec_blocks:
        ca = blk.cross_attn
        H = ca.num_heads
        C = ca.projq.weight.shape[0]
        idx = torch.arange(C).view(H, C // H)[perm].reshape(-1)
        with torch.no_grad():
            for lin in (ca.projq, ca.projk, ca.projv):
                lin.weight.copy_(lin.weight[idx])
                if lin.bias is not None:
                    lin.bias.copy_(lin.bias[idx])
            ca.proj.weight.copy_(ca.proj.weight[:, idx])
    return m


def test_real_models_self_permuted_heads_and_untrained_near_chance():
    from .models import tiny_model

    a, b = tiny_model(0), tiny_model(1)
    p = _permute_cross_heads(a, [1, 0])
    g = torch.Generator().manual_seed(0)
    prs = [{"tgt": torch.randn(3, 32, 32, generator=g), "src": torch.randn(3, 32, 32, generator=g)} for _ in range(8)]
    grid = (4, 4)
    sa, sb, sp_ = (summarize_model(n, m, prs, 4, grid) for n, m in (("a", a), ("b", b), ("p", p)))
    la = a.cross_attention_logits(prs[0]["tgt"][None], prs[0]["src"][None])[0]
    lp = p.cross_attention_logits(prs[0]["tgt"][None], prs[0]["src"][None])[0]
    assert torch.allclose(la[:, [1, 0]], lp, atol=1e-5)  # heads really were swapped
    m = score_matrix([sa, sb, sp_])
    assert m[0, 2] == 1.0 and m[0, 0] == 1.0
    assert abs(m[0, 1] - 4 / 16) < 0.15  # two untrained models: near chance k/N


def test_masked_reads_cover_every_patch_and_masked_logits_average_them(monkeypatch):
    m = masked_reads(64, 7)  # the tiny preset: 57 of 64 patches masked
    assert m.shape == (10, 64) and ((~m).sum(1) == 7).all() and torch.equal(m, masked_reads(64, 7))
    assert set(m.sum(0).tolist()) == {8, 9} and ((~m).sum(0) >= 1).all()  # 6 patches visible twice (the wrap)
    assert ((~masked_reads(16, 2)).sum(0) == 1).all()  # 8 reads of 2: each patch visible exactly once
    with pytest.raises(ValueError):
        masked_reads(16, 16)
    with pytest.raises(ValueError, match="more than half"):  # two reads, and the wrap shows a patch in both
        masked_reads(64, 38)
    from .models import tiny_model

    model = tiny_model(0)  # 32 px, 4x4 patches, mask ratio 0.9: 2 visible, 8 reads
    g = torch.Generator().manual_seed(0)
    tgt, src = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    reads = masked_reads(16, 2)
    got = masked_logits(model, tgt, src)
    for blk in range(2):  # each target patch: the mean over the reads that hide it, read by read
        per_read = torch.stack([model.cross_attention_logits(tgt, src, r.expand(2, 16))[blk] for r in reads])
        want = torch.stack([per_read[reads[:, n], :, :, n].mean(0) for n in range(16)], dim=2)  # (B, H, N_t, N_s)
        assert torch.allclose(got[blk], want, atol=1e-5)
    assert not torch.allclose(got[0], model.cross_attention_logits(tgt, src)[0], atol=1e-3)  # not the unmasked read
    one_read = sum(lg.numel() for lg in model.cross_attention_logits(tgt, src))
    monkeypatch.setattr("slife.eval.attention.MASKED_FLOATS", 3 * one_read)  # 3 reads per pass: the same sums
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(masked_logits(model, tgt, src), got))
    prs = [{"tgt": tgt[i], "src": src[i]} for i in range(2)]
    s = summarize_model("m", model, prs, 3, (4, 4), masked=True)
    assert torch.equal(s.topk, summarize_maps("m", "model", head_average(got), (4, 4), 3).topk)
    with pytest.raises(ValueError, match="mask ratio 0.4"):  # 10 of 16 patches visible: some never masked
        correspondence_maps(tiny_model(0, mask_ratio=0.4), "auto", masked=True)
    with pytest.raises(SlifeError, match="--metric mknn does not use"):
        CasConfig(pairs=Path("x"), metric="mknn", masked=True)


def test_softmax_and_reciprocal_options_on_the_identity_map():
    ident_sm = summarize_model("id", identity_model(), pairs(), 5, GRID, softmax=True)
    sp = same_position_summary(GRID, 5, len(SHIFTS))
    assert pair_score(ident_sm.topk[:, -1], sp.topk[:, -1]) == 1.0  # softmax is monotonic per row
    rec = summarize_model("id", identity_model(), pairs(), 5, GRID, reciprocal=True)
    kept = (rec.topk[:, -1] >= 0).float().mean().item()
    assert 0.5 < kept <= 1.0  # the same-position neighbourhood is mostly mutual
    assert (rec.topk[:, -1, :, 0] == torch.arange(N)).all()  # the same position itself always is


def test_untrained_controls_are_not_a_training_runs_initial_weights():
    from slife.eval.models import untrained_models
    from slife.train.checkpoint import ModelSpec
    from slife.train.model import CROCO_PRESETS, CroCoNet

    kw = CROCO_PRESETS["tiny"]
    (_, _, control), = untrained_models([ModelSpec("croco", kw)], [0])
    torch.manual_seed(0)  # what `slife train --seed 0` does before building its model
    start = CroCoNet(**kw)
    w = "enc_blocks.0.attn.qkv.weight"
    assert not torch.equal(control.state_dict()[w], start.state_dict()[w])
    (_, _, again), = untrained_models([ModelSpec("croco", kw)], [0])
    assert torch.equal(control.state_dict()[w], again.state_dict()[w])  # still seeded: the same control each time


def test_cas_beyond_position_removes_the_shortcut_by_construction():
    """The same-position predictor scores exactly 0 against any model; an identity-attention model scores 0
    against it; two models attending to the true match score 1 on displaced patches."""
    ti = true_idx()
    disp = displaced_mask(ti, GRID)
    rng = np.random.default_rng(0)
    noisy = AttentionStandIn([torch.from_numpy(rng.normal(size=(N, N))).float() for _ in SHIFTS])
    for k in (1, 5, 10):
        truth, ident = _summ(truth_model(), k, "truth"), _summ(identity_model(), k, "identity")
        rand = _summ(noisy, k, "random")
        sp = same_position_summary(GRID, k, len(SHIFTS))
        for other in (truth, ident, rand, sp):
            assert calibrated_score(sp.topk[:, -1], other.topk[:, -1]) == 0.0
            assert calibrated_score(other.topk[:, -1], sp.topk[:, -1], disp) == 0.0
        assert calibrated_score(ident.topk[:, -1], sp.topk[:, -1]) == 0.0
        assert calibrated_score(truth.topk[:, -1], _summ(truth_model(), k, "truth2").topk[:, -1], disp) == 1.0
        # the plain CAS on displaced patches keeps the shortcut: identity agrees with same-position completely
        assert pair_score(ident.topk[:, -1], sp.topk[:, -1], disp) == 1.0
        rep = cas_report([truth, ident, sp], ti)
        assert rep["calibrated"]["matrix"][1][2] == 0.0 and rep["ground_truth"]["calibrated_displaced"][0][2] == 0.0
        assert rep["pair_table"][0]["cas_calibrated"] == calibrated_score(truth.topk[:, -1], ident.topk[:, -1])
        # its jackknife error: 0 for a predictor that ignores the images (0 on every leave-one-out set)
        loo = calibrated_jackknife(truth.topk[:, -1], ident.topk[:, -1], None, N)
        assert rep["pair_table"][0]["cas_calibrated_se"] == replicate_se(loo)
        assert rep["pair_table"][0]["cas_calibrated_jackknife"] == pytest.approx(loo.tolist(), abs=1e-6)
        assert replicate_se(calibrated_jackknife(sp.topk[:, -1], rand.topk[:, -1], None, N)) == 0.0


def _brute_beyond_saliency(a: torch.Tensor, b: torch.Tensor) -> float:
    """beyond_saliency_score by its definition, one comparison at a time."""
    P, N_t, k = a.shape

    def ov(x, y):
        return len(set(x.tolist()) & set(y.tolist())) / k

    def mean_null(same_pair: bool, same_patch: bool) -> float:
        vals = [(ov(a[p, n], b[q, m]) + ov(b[p, n], a[q, m])) / 2
                for p in range(P) for n in range(N_t) for q in range(P) for m in range(N_t)
                if (q == p) == same_pair and (m == n) == same_patch]
        return float(np.mean(vals))

    o, e_pair, e_patch, e_both = (mean_null(True, True), mean_null(False, True), mean_null(True, False),
                                  mean_null(False, False))
    return (o - e_pair - e_patch + e_both) / (1 - e_pair - e_patch + e_both)


def test_cas_beyond_saliency_by_brute_force_and_by_construction():
    """The score is its definition; it is exactly 0 for sets that ignore the images (the same-position predictor)
    and for sets that ignore the target patch (saliency), where CAS beyond position is not; identical sets and two
    models that attend to the true match score 1."""
    g = torch.Generator().manual_seed(0)
    P, N_t, S, k = 5, 6, 9, 3

    def sets(p, n):
        return torch.stack([torch.stack([torch.randperm(S, generator=g)[:k] for _ in range(n)]) for _ in range(p)])

    a, b = sets(P, N_t), sets(P, N_t)
    assert beyond_saliency_score(a, b, S) == pytest.approx(_brute_beyond_saliency(a, b), abs=1e-12)
    assert beyond_saliency_score(a, b, S) == pytest.approx(beyond_saliency_score(b, a, S), abs=1e-12)
    assert beyond_saliency_score(a, a, S) == 1.0
    fixed = sets(1, N_t).expand(P, N_t, k)  # ignores the images
    looks_a, looks_b = sets(P, 1).expand(P, N_t, k), sets(P, 1).expand(P, N_t, k)  # ignore the target patch
    for x in (a, b, fixed, looks_a):
        assert beyond_saliency_score(fixed, x, S) == 0.0 and beyond_saliency_score(x, fixed, S) == 0.0
    assert beyond_saliency_score(looks_a, looks_b, S) == 0.0 and beyond_saliency_score(looks_a, looks_a, S) == 0.0
    assert beyond_saliency_score(looks_a, a, S) == 0.0 and beyond_saliency_score(b, looks_b, S) == 0.0
    # k=1 opposite checkerboards on 2 pairs x 2 target patches: the denominator is negative, the score NaN
    board = torch.tensor([[[0], [1]], [[1], [0]]])
    assert math.isnan(beyond_saliency_score(board, 1 - board, 2))
    with pytest.raises(ValueError, match="different shapes"):
        beyond_saliency_score(a, a[:, :, :2], S)
    # CAS beyond position counts shared (or opposite) saliency as agreement (or disagreement)
    assert calibrated_score(looks_a, looks_a, None, S) == 1.0 and calibrated_score(looks_a, looks_b, None, S) != 0.0
    # on the synthetic pairs: the truth against itself 1, the identity map against same-position 0
    ti = true_idx()
    for k in (1, 5):
        truth, ident = _summ(truth_model(), k, "truth"), _summ(identity_model(), k, "identity")
        sp = same_position_summary(GRID, k, len(SHIFTS))
        t = truth.topk[:, -1]
        assert beyond_saliency_score(t, _summ(truth_model(), k, "truth2").topk[:, -1], N) == 1.0
        assert beyond_saliency_score(ident.topk[:, -1], sp.topk[:, -1], N) == 0.0
        rep = cas_report([truth, ident, sp], ti)
        sal = rep["beyond_saliency"]
        assert sal["matrix"][1][2] == 0.0 and sal["matrix"][0][2] == 0.0 and sal["matrix"][0][0] == 1.0
        row = rep["pair_table"][0]
        assert row["cas_beyond_saliency"] == pytest.approx(beyond_saliency_score(t, ident.topk[:, -1], N))
        loo = beyond_saliency_jackknife(t, ident.topk[:, -1], N)
        assert row["cas_beyond_saliency_se"] == pytest.approx(replicate_se(loo))
        assert row["cas_beyond_saliency_jackknife"] == pytest.approx(loo.tolist(), abs=1e-6)
        assert replicate_se(beyond_saliency_jackknife(sp.topk[:, -1], t, N)) == 0.0


def test_top1_beyond_position_is_0_for_any_positional_predictor_and_1_for_the_truth():
    """A fixed shift is far above chance on displaced patches, yet scores exactly 0 beyond position; so does the
    same-position predictor; the true match scores 1."""
    ti = true_idx()
    disp = displaced_mask(ti, GRID)
    h, w = GRID
    rows, cols = np.divmod(np.arange(N), w)
    shift = np.broadcast_to(rows * w + np.clip(cols + 2, 0, w - 1), ti.shape).copy()  # 2 patches right
    assert within_one(shift, ti, GRID)[disp].mean() > 0.5  # several times chance, knowing nothing of the images
    for mask in (None, disp):
        assert accuracy_beyond_position(shift, ti, GRID, mask) == 0.0
        assert accuracy_beyond_position(np.broadcast_to(np.arange(N), ti.shape), ti, GRID, mask) == 0.0
        assert accuracy_beyond_position(np.where(ti >= 0, ti, 0), ti, GRID, mask) == 1.0
    rep = cas_report([_summ(truth_model(), 1, "truth"), same_position_summary(GRID, 1, len(SHIFTS))], ti)
    gt = rep["ground_truth"]
    assert gt["accuracy"]["truth"]["beyond_position_displaced"] == 1.0
    assert gt["accuracy"]["same-position"]["beyond_position_displaced"] == 0.0
    assert gt["accuracy"]["same-position"]["beyond_position_se"] == 0.0  # 0 on every leave-one-out set
    assert gt["position_prior"]["displaced"] == position_prior_accuracy(ti, GRID, disp)


def _brute_beyond(pick, t, grid, mask):
    use = (t >= 0) & mask
    use &= (use.sum(0) >= 2)[None]
    hit = within_one(pick, t, grid)
    null = [np.mean([within_one(pick[q, n], t[p, n], grid) for q in range(len(t)) if q != p and use[q, n]])
            for p, n in zip(*np.nonzero(use))]
    o, e = hit[use].mean(), np.mean(null)
    return math.nan if e == 1 else (o - e) / (1 - e)


def _brute_prior(t, grid, mask, fit_mask=None):
    fit = (t >= 0) & (True if fit_mask is None else fit_mask)
    n_src = grid[0] * grid[1]
    hits = []
    for p, n in zip(*np.nonzero((t >= 0) & mask)):
        others = [q for q in range(len(t)) if q != p and fit[q, n]]
        if not others:
            continue
        counts = [sum(within_one(c, t[q, n], grid) for q in others) for c in range(n_src)]
        hits.append(within_one(int(np.argmax(counts)), t[p, n], grid))
    return float(np.mean(hits))


def test_top1_beyond_position_and_position_prior_by_brute_force_on_a_non_square_grid():
    """Random picks (some -1) and truths (some unknown) on a 3 x 5 grid, against loops written out by hand; the
    position prior is learnt from the other pairs only (all their known truths, or those in a mask: told which
    patches moved), so on truths without positional structure it stays near chance (a prior fitted on the pairs
    it is scored on would not); a null of 1 gives NaN."""
    rng = np.random.default_rng(1)
    grid = (3, 5)
    n = 15
    for trial in range(5):
        t = rng.integers(-1, n, size=(12, n))
        pick = rng.integers(-1, n, size=(12, n))
        mask = rng.random((12, n)) < 0.7
        assert accuracy_beyond_position(pick, t, grid, mask) == pytest.approx(_brute_beyond(pick, t, grid, mask))
        assert position_prior_accuracy(t, grid, mask) == pytest.approx(_brute_prior(t, grid, mask))
        assert position_prior_accuracy(t, grid, mask, mask) == pytest.approx(_brute_prior(t, grid, mask, mask))
    t = rng.integers(0, 64, size=(200, 64))  # no positional structure at all, 8 x 8
    assert position_prior_accuracy(t, (8, 8)) < 0.2  # chance is about 0.14
    # every pair's truth at a patch within one patch of the others': any pick right elsewhere too -> NaN
    t = np.array([[0, 5], [1, 6], [0, 5]])
    assert math.isnan(accuracy_beyond_position(t, t, (2, 4)))
    # only one pair scored at each patch: nothing to compare with
    assert math.isnan(accuracy_beyond_position(t[:1], t[:1], (2, 4)))
    assert math.isnan(position_prior_accuracy(t[:1], (2, 4)))


def test_jackknife_se_of_a_mean_is_its_standard_error():
    x = np.random.default_rng(0).normal(size=30)
    assert jackknife_se(lambda k: float(x[k].mean()), 30) == pytest.approx(x.std(ddof=1) / np.sqrt(30))
    assert math.isnan(jackknife_se(lambda k: 0.0, 2))
    assert jackknife_replicates(lambda k: 0.0, 2) is None and math.isnan(replicate_se(None))
    assert math.isnan(replicate_se([0.1, None, 0.2]))  # a leave-one-out score missing (NaN in JSON)


def test_replicates_of_a_group_mean_and_of_a_difference_give_their_errors():
    """The demo computes a group mean's and a paired difference's errors from each pair of models' stored
    replicates: the same as the jackknife of the mean or difference computed directly."""
    rng = np.random.default_rng(1)
    a, b, c = (torch.from_numpy(rng.integers(0, 8, size=(12, 8, 2))) for _ in range(3))
    reps = {x: calibrated_jackknife(*s, None, 8) for x, s in {"ab": (a, b), "ac": (a, c), "bc": (b, c)}.items()}

    def cs(x, y, k):
        return calibrated_score(x[torch.as_tensor(k)], y[torch.as_tensor(k)], None, 8)

    mean = jackknife_se(lambda k: (cs(a, b, k) + cs(a, c, k)) / 2, 12)
    assert replicate_se((reps["ab"] + reps["ac"]) / 2) == pytest.approx(mean, rel=1e-12)
    diff = jackknife_se(lambda k: cs(a, b, k) - cs(b, c, k), 12)
    assert replicate_se(reps["ab"] - reps["bc"]) == pytest.approx(diff, rel=1e-12) and diff > 0


def test_num_pairs_are_spread_over_the_whole_set(tmp_path):
    """--num-pairs N takes N pairs evenly spaced over the set in write order (first and last included), not the
    first N: a held-out life is sampled from its start to its end."""
    from slife.eval.cas import load_test_pairs, spread_indices

    from .shards import write_pair_shards

    assert spread_indices(10, 4) == [0, 3, 6, 9] and spread_indices(3, 5) == [0, 1, 2] and spread_indices(7, 1) == [3]
    assert spread_indices(101, 5) == [0, 25, 50, 75, 100]
    shards = write_pair_shards(tmp_path / "s", num_pairs=7, size=32)
    got = load_test_pairs(shards, 32, 3)
    assert [p["key"] for p in got] == ["plane_000000000", "plane_000000003", "plane_000000006"]
    assert [p["json"]["frame_a"] for p in got] == [0, 3, 6] and got[0]["tgt"].shape == (3, 32, 32)
    assert got[1]["tgt_depth"] is not None and got[1]["K_src"] is not None  # every member of the sample came along
    assert len(load_test_pairs(shards, 32, 50)) == 7
