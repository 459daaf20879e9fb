"""Correspondence Alignment Score (CAS) between models, with its controls; also mutual-kNN and linear CKA.

Reads N checkpoints (DESIGN.md "Checkpoints") and a folder of test pair shards (through
`slife.train.stream.eval_pairs`: no augmentation, both views at the model's size). Each model's decoder
cross-attention (target attends to source; nothing masked, or with `masked` the target masked as in training:
`attention.masked_logits`) is computed ONCE: logits (or, with `softmax`, attention) averaged over heads, then
per decoder block and averaged over blocks; top-k source patches per target patch. CAS(i, j) = mean over
pairs and target patches of |topk_i n topk_j| / k.
Beside it, CAS beyond position (`calibrated_score`): the same top-k overlap, chance-corrected against a
pair-permutation null (each model's sets compared with the other model's sets at the same target patch on
the OTHER test pairs): (observed - null) / (1 - null). Restricting to displaced patches does not remove the
"attend to the same grid position" shortcut (two models can agree on the same wrong patch); this does, by
construction: any predictor whose top-k sets do not depend on the images (the same-position predictor, any
fixed positional prior) has null = observed and scores exactly 0 against every model, and two models score
above 0 only where they agree on content-dependent patches. (The same idea as calibrating mutual-kNN
alignment against a permutation null, as the 2026 "Aristotelian view" of the Platonic Representation
Hypothesis does.) Each entry (a, b) is (observed - null) / (1 - null) of a's and b's sets: 1 means the two
agree on every target patch AND their sets vary from pair to pair (a model against itself: the diagonal
is 1 for every model and untrained control); 0 means no more agreement than across unrelated pairs, which
is what the same-position predictor gets against everything, itself included (its diagonal entry is 0:
identical sets, but nothing beyond position); below 0, less. The null is conservative when test pairs
resemble each other. Each row of `pair_table` carries its delete-one-pair jackknife standard error
(`cas_calibrated_se`, `cas_calibrated_displaced_se`) and the replicates it comes from (`calibrated_jackknife`:
`cas_calibrated_jackknife`, `cas_calibrated_displaced_jackknife`, entry i with test pair i left out): a group
mean's or a difference's error is computed from them, as the demo does. They cover the choice of test pairs,
not of training runs.
CAS beyond position and saliency (`beyond_saliency_score`, goal 3's measure since session 16): the permutation
null removes what does not depend on the images, but not what depends on the source image alone. Two models that
favour the same source patches of a pair for every target patch (shared saliency: where to look in this image)
score above 0 on CAS beyond position, two that favour opposite ones below 0, whatever each target patch attends to.
So each model's set is also compared with the other's for the OTHER target patches of the same pair (a null that
keeps the pair's saliency) and for the other target patches of the other pairs; the score is the pair-by-target-
patch interaction of the overlap, (O - E_pair - E_patch + E_both) / (1 - E_pair - E_patch + E_both). Over all
target patches it is exactly 0 for sets that ignore the images (the same-position predictor) and for sets that
depend on the pair but not on the target patch (saliency), and 1 for identical sets that depend on both: what is
left is agreement on which source patch goes with which target patch. It has no displaced-patch variant: its
counting argument needs every pair at every target patch. `beyond_saliency` in cas.json (matrix, per block,
untrained level, mean model vs model), `cas_beyond_saliency[_se|_jackknife]` in `pair_table`,
`cas_beyond_saliency.csv` and `.png`.
It is written to `cas.json` ("calibrated": block average, per block, untrained level
(as for every metric: the mean over pairs of untrained controls of one architecture), mean model vs model overall and per block), `cas_calibrated.csv` (+ `cas_calibrated_displaced.csv`) and
`cas_calibrated.png`.
Each null-corrected score also gives `untrained_pairs` (how many pairs of untrained controls have a finite score)
and `untrained_vs_untrained_sd`, the standard deviation of their scores: how far two models that share no training
land from each other, which the jackknife over test pairs does not see (`slife demo` scores six untrained controls
and its alignment claims take that spread as the least error of a difference; bench/study.md, session 19).
Controls reported beside every score (DESIGN.md "Measured on this kind of machine"): chance k / N_src,
a same-position predictor (top-k = same grid position and nearest neighbours), untrained seeded models
(two by default) of each architecture among the checkpoints (`untrained-s<seed>` for CroCo,
`untrained-vit-s<seed>` for a ViT; none only with a warning), per-decoder-block scores, and where pairs carry ground truth (poses + depth + K)
every score restricted to displaced patches (true match > 1 patch from the same position) with their share,
plus each model's top-1 correspondence accuracy (within one patch of the truth), overall and displaced, with
controls of its own: the position prior (`position_prior_accuracy`: for each target patch, the pick most often
right on the other pairs; it ignores the images), the same prior told which patches moved (what detecting
motion without matching reaches: several times chance on displaced patches) and top-1 beyond position
(`accuracy_beyond_position`: the same permutation null as CAS beyond position, against the predictor's own
picks on the other pairs; exactly 0 for any fixed pick that ignores the images), with its delete-one-pair
jackknife standard error (`jackknife_se`) and, for each model, its paired difference from every untrained
control with that difference's error.
Writes `cas.json`, `cas.csv` (the matrix) and `cas.png` (heatmap, hierarchical-clustering order, controls
marked), for CAS beyond position `cas_calibrated.csv` and `cas_calibrated.png`, and for CAS beyond position and
saliency `cas_beyond_saliency.csv` and `cas_beyond_saliency.png`, into out_dir. Entry point:
`run(cfg, checkpoints, out_dir) -> Path` (the JSON).
`metric="mknn"|"cka"` compares mean-pooled encoder features of the same images instead; those work for the
encoder of every objective, CAS only for CroCo checkpoints (a one-line error otherwise). The images are the
DISTINCT views of the pairs (`distinct_views`: mined pairs reuse frames, and a frame counted twice is its own
nearest neighbour in every model, which inflates mknn and CKA alike), identified by the pair json's life,
video and frame (`frame_a` = source, `frame_b` = target; the sample key and view where those are absent);
chance is k / (n - 1) over the n distinct images, and `num_views` / `num_images` report both counts.
The top-k sets come from `attention.py`, ground truth from `groundtruth.py`, figures from `plots.py`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from slife.errors import SlifeError
from slife.eval.attention import (AttentionSummary, membership, overlap, overlap_with, same_position_summary,
                                  summarize_model)
from slife.eval.groundtruth import displaced_mask, ground_truth_table, within_one
from slife.io import atomic_write_text

log = logging.getLogger(__name__)

METRICS = ("cas", "mknn", "cka")


@dataclass(frozen=True)
class CasConfig:
    pairs: Path | None = None  # folder of test pair shards (pairs-*.tar); required
    k: int = 10  # top-k source patches per target patch (mutual-kNN convention); for mknn: neighbours per image
    num_pairs: int = 100  # test pairs used, spread evenly over the set (all when it has fewer)
    metric: str = "cas"  # cas (attention top-k), mknn (mutual kNN of mean-pooled features) or cka (linear CKA)
    softmax: bool = False  # average post-softmax attention instead of logits (recorded in the output)
    reciprocal: bool = False  # keep a source patch only if the target is also among its top-k targets
    masked: bool = False  # read the cross-attention with the target masked as in training (`attention.masked_logits`;
    # with softmax, the softmax of the reads' mean logits)
    untrained_seeds: tuple[int, ...] = (0, 1)  # seeds of the untrained controls, per architecture among the checkpoints
    batch_size: int = 16  # pairs per forward pass

    def __post_init__(self):
        if self.k < 1:
            raise SlifeError(f"--k must be >= 1, got {self.k}")
        if self.num_pairs < 1:
            raise SlifeError(f"--num-pairs must be >= 1, got {self.num_pairs}")
        if self.metric not in METRICS:
            raise SlifeError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.batch_size < 1:
            raise SlifeError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.masked and self.metric != "cas":
            raise SlifeError(f"--masked reads the decoder's attention, which --metric {self.metric} does not use")
        object.__setattr__(self, "untrained_seeds", tuple(int(s) for s in self.untrained_seeds))


# ---------------------------------------------------------------------------------------------------------------
# scores on top-k sets (pure functions)

def _block(s: AttentionSummary, b: int) -> torch.Tensor | None:
    """(P, N, k) top-k sets of block b (-1 = block average); a same-position predictor is the same for all."""
    if b == -1 or s.kind == "same-position":
        return s.topk[:, -1]
    if b >= s.num_blocks:
        return None
    return s.topk[:, b]


def pair_score(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray | None = None, n_src: int | None = None) -> float:
    """Mean |a n b| / k over pairs and target patches; a, b (P, N, k); `mask` (P, N) bool restricts it (NaN if empty)."""
    ov = overlap(a, b, n_src).double()  # (P, N)
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        return float(ov[m].mean()) if m.any() else math.nan
    return float(ov.mean()) if ov.numel() else math.nan


def score_matrix(summaries: Sequence[AttentionSummary], block: int = -1, mask: np.ndarray | None = None) -> np.ndarray:
    """(M, M) CAS between every two predictors at `block` (-1: average over blocks); NaN where a block is missing."""
    m = len(summaries)
    out = np.full((m, m), np.nan)
    sets = [_block(s, block) for s in summaries]
    sets = [None if t is None else t.contiguous() for t in sets]
    n_src = summaries[0].grid[0] * summaries[0].grid[1] if summaries else None
    sel = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
    for i in range(m):
        if sets[i] is None:
            continue
        member = membership(sets[i], n_src)  # (P, N, N_src) once per row
        for j in range(i, m):
            if sets[j] is None:
                continue
            ov = overlap_with(member, sets[j]).double()  # (P, N)
            if sel is not None:
                v = float(ov[sel].mean()) if sel.any() else math.nan
            else:
                v = float(ov.mean()) if ov.numel() else math.nan
            out[i, j] = out[j, i] = v
    return out


def calibrated_score(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray | None = None,
                     n_src: int | None = None) -> float:
    """CAS beyond position: chance-corrected agreement of two top-k sets against a pair-permutation null.

    a, b (P, N, k) top-k source patches of two predictors on the same P pairs. Observed o: the mean of
    |a[p,n] n b[p,n]| / k over the (p, n) in `mask` (P, N) (all when None). Null e: the same overlap with the
    OTHER predictor's sets on the other pairs at the same target patch, a[p,n] against b[q,n] for every q != p
    with (q, n) in the mask, and b[p,n] against a[q,n], averaged over both directions. Score (o - e) / (1 - e):
    1 for identical sets that vary between pairs, 0 when the two agree no more than their sets do across
    unrelated pairs.
    A predictor whose sets do not depend on the images (the same-position predictor, any fixed positional
    prior) has b[q,n] = b[p,n] for every q, so e = o and it scores exactly 0 against anything, by
    construction; so does the positional part of a model's attention. 0 where o equals e, also when e = 1:
    so a predictor against ITSELF scores 1 when its sets vary between pairs (o = 1 > e) and 0 when they do not
    (o = e = 1: the same-position predictor's diagonal entry). NaN when no target patch is in the mask on two
    or more pairs."""
    if n_src is None:
        n_src = int(max(a.max(), b.max())) + 1
    P, N, k = a.shape
    m = torch.ones(P, N, dtype=torch.bool) if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
    m_n = m.sum(0)  # (N,) pairs in the mask at each target patch
    use = m & (m_n >= 2)[None, :]  # (P, N) patches that have a null
    if not use.any():
        return math.nan
    mem_a, mem_b = membership(a, n_src), membership(b, n_src)  # (P, N, N_src)
    both = overlap_with(mem_a, b) * k  # (P, N) |a n b| counts

    def null(sets, member_other):
        counts = (member_other.to(torch.int64) * use[..., None]).sum(0)  # (N, N_src) over pairs in the mask
        idx = sets.clamp_min(0)  # (P, N, k)
        hits = counts[torch.arange(N)[None, :, None], idx] * (sets >= 0)  # (P, N, k)
        others = (m_n - 1).clamp_min(1)[None, :].double()  # (1, N)
        return (hits.sum(-1).double() - both.double()) / (others * k)  # (P, N) mean overlap with other pairs' sets

    o = float((both.double() / k)[use].mean())
    e = float(((null(a, mem_b) + null(b, mem_a)) / 2)[use].mean())
    if abs(o - e) < 1e-12 or 1.0 - e < 1e-12:
        return 0.0
    return (o - e) / (1.0 - e)


def calibrated_jackknife(a: torch.Tensor, b: torch.Tensor, mask: np.ndarray | None = None,
                         n_src: int | None = None) -> np.ndarray | None:
    """The delete-one-pair replicates of `calibrated_score(a, b, mask)` (a, b (P, N, k)): `jackknife_replicates`;
    `replicate_se` of them is the score's standard error."""
    m = None if mask is None else np.asarray(mask, dtype=bool)
    return jackknife_replicates(lambda k: calibrated_score(a[torch.as_tensor(k)], b[torch.as_tensor(k)],
                                                           None if m is None else m[k], n_src), a.shape[0])


def beyond_saliency_score(a: torch.Tensor, b: torch.Tensor, n_src: int | None = None) -> float:
    """CAS beyond position and saliency: the pair-by-target-patch interaction of two top-k sets' overlap.

    a, b (P, N, k) top-k source patches of two predictors on the same P pairs, over all N target patches (entries
    of -1, dropped by `--reciprocal`, count as no member). Four mean overlaps |x n y| / k of a's sets with b's:
    O the same pair and target patch; E_pair the same target patch on the other pairs (`calibrated_score`'s
    null); E_patch the other target patches of the same pair; E_both the other target patches of the other pairs.
    Each runs over ordered pairs of (pair, target patch), so the score is symmetric in a and b as it stands.
    Score (O - E_pair - E_patch + E_both) / (1 - E_pair - E_patch + E_both).
    By construction (the counting argument needs every pair at every target patch, hence no mask):
    - sets that ignore the images (the same-position predictor, any fixed prior) give O = E_pair and
      E_patch = E_both: exactly 0 against anything;
    - sets that depend on the pair but not on the target patch (saliency: where to look in this source image,
      whatever the target patch) give O = E_patch and E_pair = E_both: 0 against anything as well.
      `calibrated_score` does not remove these: two models with the same (opposite) saliency score above (below)
      0 there;
    - identical full sets (no -1) score 1 (O = 1) where they vary with both the pair and the target patch; where
      nothing is left once both are removed they score 0, as the same-position predictor does against itself.
    The denominator is (1 - O) + the numerator: it reaches 0 only where the interaction is at least 1 - O below 0
    (k = 1 opposite checkerboards on two pairs and two target patches); such a score is NaN rather than a number
    below -1. NaN too with fewer than two pairs or target patches."""
    if a.shape != b.shape:
        raise ValueError(f"top-k sets of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    P, N, k = a.shape
    if P < 2 or N < 2:
        return math.nan
    if n_src is None:
        n_src = int(max(a.max(), b.max())) + 1
    mem = membership(b, n_src).to(torch.int64)  # (P, N, S): b's members
    idx, valid = a.clamp_min(0), a >= 0

    def hits(table: torch.Tensor) -> float:  # a's members found in a (P|1, N|1, S) table of b's member counts
        return float((table.expand(P, N, n_src).gather(-1, idx) * valid).sum())

    own, same_patch, same_pair = hits(mem), hits(mem.sum(0, keepdim=True)), hits(mem.sum(1, keepdim=True))
    every = hits(mem.sum((0, 1), keepdim=True))
    n = P * N * k
    o, e_pair = own / n, (same_patch - own) / (n * (P - 1))
    e_patch = (same_pair - own) / (n * (N - 1))
    e_both = (every - same_patch - same_pair + own) / (n * (P - 1) * (N - 1))
    num, den = o - e_pair - e_patch + e_both, 1.0 - e_pair - e_patch + e_both
    if abs(num) < 1e-12:
        return 0.0
    return num / den if den > 1e-12 else math.nan


def beyond_saliency_jackknife(a: torch.Tensor, b: torch.Tensor, n_src: int | None = None) -> np.ndarray | None:
    """The delete-one-pair replicates of `beyond_saliency_score(a, b)` (`jackknife_replicates`)."""
    return jackknife_replicates(lambda k: beyond_saliency_score(a[torch.as_tensor(k)], b[torch.as_tensor(k)],
                                                                n_src), a.shape[0])


def _pair_matrix(summaries: Sequence[AttentionSummary], block: int, score: Callable) -> np.ndarray:
    """(M, M) `score(sets_i, sets_j, n_src)` between every two predictors at `block`; NaN where a block is missing."""
    m = len(summaries)
    out = np.full((m, m), np.nan)
    sets = [_block(s, block) for s in summaries]
    n_src = summaries[0].grid[0] * summaries[0].grid[1] if summaries else None
    for i in range(m):
        for j in range(i, m):
            if sets[i] is not None and sets[j] is not None:
                out[i, j] = out[j, i] = score(sets[i], sets[j], n_src)
    return out


def calibrated_matrix(summaries: Sequence[AttentionSummary], block: int = -1,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """(M, M) `calibrated_score` between every two predictors at `block` (-1: block average); NaN where missing."""
    return _pair_matrix(summaries, block, lambda a, b, n: calibrated_score(a, b, mask, n))


def beyond_saliency_matrix(summaries: Sequence[AttentionSummary], block: int = -1) -> np.ndarray:
    """(M, M) `beyond_saliency_score` between every two predictors at `block` (-1: block average)."""
    return _pair_matrix(summaries, block, beyond_saliency_score)


def accuracy(s: AttentionSummary, true_idx: np.ndarray, block: int = -1, mask: np.ndarray | None = None) -> float:
    """Share of target patches (with known truth, and in `mask`) whose top-1 source patch is within one patch of it."""
    t = _block(s, block)
    if t is None:
        return math.nan
    true_idx = np.asarray(true_idx)
    ok = true_idx >= 0
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    if not ok.any():
        return math.nan
    hit = within_one(t[..., 0].numpy(), true_idx, s.grid)
    return float(hit[ok].mean())


def accuracy_chance(true_idx: np.ndarray, grid: tuple[int, int]) -> float:
    """Chance that a uniformly random top-1 lands within one patch of the truth: the mean over target patches
    with known truth (true_idx (P, N), -1 unknown) of the truth's 3x3 neighbourhood size / N (NaN if none)."""
    h, w = grid
    n = h * w
    true_idx = np.asarray(true_idx)
    known = true_idx >= 0
    nb_size = np.array([(min(r + 1, h - 1) - max(r - 1, 0) + 1) * (min(c + 1, w - 1) - max(c - 1, 0) + 1)
                        for r in range(h) for c in range(w)])  # (N,)
    tgt_nb = np.where(known, nb_size[np.clip(true_idx, 0, n - 1)], 0)
    return float(tgt_nb[known].mean() / n) if known.any() else math.nan


def _near_counts(idx: np.ndarray, use: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, N_src): for each target patch n and source patch c, how many pairs p with use[p, n] have idx[p, n]
    within one patch (Chebyshev) of c. idx, use (P, N); idx < 0 counts nowhere."""
    h, w = grid
    P, N = idx.shape
    counts = np.zeros((N, h + 2, w + 2), np.int64)  # padded by one on every side
    ok = use & (idx >= 0)
    n_of = np.broadcast_to(np.arange(N), (P, N))[ok]
    r, c = np.divmod(idx[ok], w)
    np.add.at(counts, (n_of, r + 1, c + 1), 1)
    near = sum(counts[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for dr in (-1, 0, 1) for dc in (-1, 0, 1))
    return near.reshape(N, h * w)


def _scored(true_idx: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(P, N) patches scored: a known truth, in `mask`, and scored on two or more pairs (so that other pairs
    exist to compare with)."""
    t = np.asarray(true_idx)
    use = (t >= 0) if mask is None else (t >= 0) & np.asarray(mask, dtype=bool)
    return use & (use.sum(0) >= 2)[None, :]


def accuracy_beyond_position(top1: np.ndarray, true_idx: np.ndarray, grid: tuple[int, int],
                             mask: np.ndarray | None = None) -> float:
    """Top-1 accuracy beyond position: `accuracy` chance-corrected against the predictor's own answers on other
    pairs, as `calibrated_score` corrects CAS.

    top1 (P, N) source patch each target patch picks (-1: none), true_idx (P, N) its true match (-1 unknown),
    both on the same P pairs; `mask` (P, N) restricts the scored patches (displaced ones, say); only patches
    scored on two or more pairs count. Observed o: the share of scored (p, n) whose pick is within one patch of
    the truth. Null e: for each scored (p, n), the share of the other pairs q scored at the same n whose pick
    top1[q, n] lies within one patch of p's truth: how often the predictor's answer for that image position is
    right when the images are not p's. Score (o - e) / (1 - e): 1 = the true match on every pair, 0 = no better
    than its own answers for other images, below 0 = worse.
    A fixed pick that ignores the images (the same-position predictor, a fixed shift) has top1[q, n] = top1[p, n],
    so e = o and it scores exactly 0, however high its accuracy (a random pick that ignores the images scores 0
    in expectation). On displaced patches (the mask) the null is the model's own picks for the other pairs' moved
    patches, so a model that only tells whether a patch moved, and then picks the usual shift for its position,
    also scores about 0 there: where displaced matches lie mostly a few patches sideways, as on the demo's
    held-out pairs, a fixed shift of two or three patches is right for many of them (`position_prior_accuracy`
    told which patches moved). On all patches that model scores above 0. NaN when no patch is scored on two or
    more pairs, or when e = 1 (every answer would count as right on other images too, so nothing can be told
    beyond position)."""
    pred, t = np.asarray(top1), np.asarray(true_idx)
    use = _scored(t, mask)
    if not use.any():
        return math.nan
    m_n = use.sum(0)  # (N,)
    hit = within_one(pred, t, grid)  # (P, N)
    near = _near_counts(pred, use, grid)  # (N, N_src): picks of the scored pairs near each source patch
    n_of = np.broadcast_to(np.arange(t.shape[1]), t.shape)
    others = (near[n_of[use], t[use]] - hit[use]) / (m_n[n_of[use]] - 1)  # the other pairs' picks near p's truth
    o, e = float(hit[use].mean()), float(others.mean())
    if 1.0 - e < 1e-12:
        return math.nan
    return 0.0 if abs(o - e) < 1e-12 else (o - e) / (1.0 - e)


def jackknife_replicates(score: Callable[[np.ndarray], float], num_pairs: int) -> np.ndarray | None:
    """The delete-one-pair replicates of `score(kept)`, kept = the indices of the pairs used: (num_pairs,), entry
    i with pair i left out. Resampling with replacement would put a pair's copy into its own null; leaving one
    out does not. None with fewer than three pairs. The replicates of a mean of scores on the same pairs are the
    mean of their replicates, so a group mean's or a difference's error comes from stored replicates alone."""
    if num_pairs < 3:
        return None
    idx = np.arange(num_pairs)
    return np.array([score(np.delete(idx, i)) for i in range(num_pairs)], np.float64)


def replicate_se(vals) -> float:
    """The jackknife standard error from delete-one replicates; NaN when there are fewer than three or one is
    NaN (None: JSON's NaN)."""
    if vals is None:
        return math.nan
    vals = np.asarray([math.nan if v is None else v for v in vals], np.float64)
    n = len(vals)
    if n < 3 or not np.isfinite(vals).all():
        return math.nan
    return float(np.sqrt((n - 1) / n * ((vals - vals.mean()) ** 2).sum()))


def jackknife_se(score: Callable[[np.ndarray], float], num_pairs: int) -> float:
    """Delete-one-pair jackknife standard error of `score(kept)` (`jackknife_replicates`, `replicate_se`). NaN
    with fewer than three pairs or when a leave-one-out score is NaN."""
    return replicate_se(jackknife_replicates(score, num_pairs))


def beyond_position_fields(top1: np.ndarray, true_idx: np.ndarray, grid: tuple[int, int], displaced: np.ndarray,
                           controls: dict | None = None) -> dict:
    """The top-1 beyond position fields of one predictor, as `slife cas` and `slife top1` write them:
    beyond_position[_se] over all patches and beyond_position_displaced[_se] over `displaced` (scores and their
    `jackknife_se`), and with `controls` {name: top1 (P, N)} beyond_position_displaced_minus {name: {"diff",
    "se"}}: the difference from each control, its error left out of the same pair (paired: both scores share the
    test pairs)."""
    top1, true_idx, displaced = np.asarray(top1), np.asarray(true_idx), np.asarray(displaced, dtype=bool)
    P = len(true_idx)

    def score(pick, mask, k=None):
        if k is None:
            return accuracy_beyond_position(pick, true_idx, grid, mask)
        return accuracy_beyond_position(pick[k], true_idx[k], grid, None if mask is None else mask[k])

    out = {}
    for key, mask in (("beyond_position", None), ("beyond_position_displaced", displaced)):
        out[key] = score(top1, mask)
        out[f"{key}_se"] = jackknife_se(lambda k: score(top1, mask, k), P)
    if controls:
        out["beyond_position_displaced_minus"] = {
            name: {"diff": out["beyond_position_displaced"] - score(np.asarray(other), displaced),
                   "se": jackknife_se(lambda k: score(top1, displaced, k) - score(np.asarray(other), displaced, k), P)}
            for name, other in controls.items()}
    return out


def position_prior_fields(true_idx: np.ndarray, grid: tuple[int, int], displaced: np.ndarray) -> dict:
    """{"all", "displaced", "displaced_told_which_moved"}: `position_prior_accuracy` over all patches, over the
    displaced ones, and over them when fitted on the other pairs' displaced truths only (told which moved)."""
    return {"all": position_prior_accuracy(true_idx, grid),
            "displaced": position_prior_accuracy(true_idx, grid, displaced),
            "displaced_told_which_moved": position_prior_accuracy(true_idx, grid, displaced, displaced)}


def position_prior_accuracy(true_idx: np.ndarray, grid: tuple[int, int], mask: np.ndarray | None = None,
                            fit_mask: np.ndarray | None = None) -> float:
    """Top-1 accuracy of a position prior learnt from the other pairs: for each pair p and target patch n scored
    (known truth, in `mask`), the pick is the source patch within one patch of the most truths at n among the
    OTHER pairs' patches in `fit_mask` (default: every known truth; ties: the lowest index), scored against p's
    truth. Leave one pair out, so the prior never sees the pair it is tested on; patches with no other pair to
    learn from are not scored. It ignores the images: with the default fit, what a predictor that knows only
    where the patch lies reaches on new pairs, the control for a raw accuracy. With `fit_mask` = `mask` (the
    displaced patches, say) it is also told which patches moved, which takes the images: what detecting motion,
    without matching anything, reaches with the typical shift at each position. NaN if nothing is scored."""
    t = np.asarray(true_idx)
    known = t >= 0
    fit = known if fit_mask is None else known & np.asarray(fit_mask, dtype=bool)
    score = known if mask is None else known & np.asarray(mask, dtype=bool)
    near = _near_counts(t, fit, grid)  # (N, N_src) the fit truths near each source patch
    ps, ns = np.nonzero(score & ((fit.sum(0) - fit) >= 1))  # scored, with another pair to learn from
    if not len(ps):
        return math.nan
    h, w = grid
    own = within_one(np.broadcast_to(np.arange(h * w), (len(ps), h * w)), t[ps, ns][:, None], grid) \
        & fit[ps, ns][:, None]  # (S, N_src) p's own truth, where it was part of the fit
    pick = (near[ns] - own).argmax(axis=1)  # (S,) the best source patch on the other pairs
    return float(within_one(pick, t[ps, ns], grid).mean())


def cluster_order(sim: np.ndarray) -> list[int]:
    """Leaf order of average-linkage hierarchical clustering on distance 1 - similarity (identity for < 3)."""
    n = len(sim)
    if n < 3:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - np.nan_to_num((sim + sim.T) / 2, nan=0.0)
    np.fill_diagonal(d, 0.0)
    d = np.clip(d, 0.0, None)
    return [int(i) for i in leaves_list(linkage(squareform(d, checks=False), method="average"))]


def _untrained_pairs(names: Sequence[str], kinds: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs of untrained controls of the same architecture (their labels differ only in the seed:
    `models.untrained_label`); two architectures' controls are not a pair of untrained models of one kind."""
    from slife.eval.models import untrained_architecture

    un = [i for i, kd in enumerate(kinds) if kd == "untrained"]
    arch = {i: untrained_architecture(names[i]) for i in un}
    return [(a, b) for ai, a in enumerate(un) for b in un[ai + 1:] if arch[a] == arch[b]]


def _mean_over(mat: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    vals = np.array([mat[a, b] for a, b in pairs], np.float64)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan


def nan_to_none(x):
    """NaN and inf -> None through dicts, lists and arrays (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.ndarray):
        return [nan_to_none(v) for v in x.tolist()]
    if isinstance(x, list):
        return [nan_to_none(v) for v in x]
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    return x


def _rounded(vals: np.ndarray | None, digits: int = 6) -> list | None:
    """Replicates as a JSON list, rounded (they are written for every pair of models)."""
    return None if vals is None else [round(float(v), digits) if math.isfinite(v) else math.nan for v in vals]


def _group_levels(score: dict, uu: list, models: list[int], max_blocks: int) -> None:
    """Adds to a null-corrected score's {"matrix", "per_block"} its untrained-vs-untrained level, the number of
    untrained pairs with a finite score and, from two of them, the standard deviation of those scores (how far two
    models that share no training land from each other, which a jackknife over test pairs does not see; NaN with
    one), and its mean over pairs of models, overall and per block."""
    if uu:
        score["untrained_vs_untrained"] = _mean_over(score["matrix"], uu)
        vals = np.array([score["matrix"][a, b] for a, b in uu], np.float64)
        vals = vals[np.isfinite(vals)]
        score["untrained_pairs"] = len(vals)
        score["untrained_vs_untrained_sd"] = float(np.std(vals, ddof=1)) if len(vals) >= 2 else math.nan
        score["untrained_vs_untrained_per_block"] = [_mean_over(score["per_block"][str(b)], uu)
                                                     for b in range(max_blocks)]
    if len(models) >= 2:
        pairs_ab = [(a, c) for ai, a in enumerate(models) for c in models[ai + 1:]]
        score["model_vs_model_mean"] = float(np.nanmean([score["matrix"][a, c] for a, c in pairs_ab]))
        score["model_vs_model_mean_per_block"] = [
            float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            for v in ([score["per_block"][str(b)][a, c] for a, c in pairs_ab] for b in range(max_blocks))]


def cas_report(summaries: Sequence[AttentionSummary], true_idx: np.ndarray | None = None) -> dict:
    """Every score and control on top-k sets: matrix (block average), per-block matrices, vs same-position,
    untrained level, chance; with `true_idx` (P, N) (-1 unknown) also displaced-patch scores and accuracy."""
    names = [s.name for s in summaries]
    kinds = [s.kind for s in summaries]
    grid = summaries[0].grid
    n = grid[0] * grid[1]
    k = summaries[0].k
    for s in summaries:
        if s.grid != grid or s.k != k or s.topk.shape[0] != summaries[0].topk.shape[0]:
            raise SlifeError(f"{s.name}: patch grid {s.grid} / k {s.k} / pairs differ from {names[0]} {grid}")
    max_blocks = max((s.num_blocks for s in summaries if s.kind != "same-position"), default=0)
    mat = score_matrix(summaries)
    per_block = {str(b): score_matrix(summaries, b) for b in range(max_blocks)}
    rep: dict = {
        "names": names, "kinds": kinds, "grid": list(grid), "num_patches": n, "k": k,
        "num_pairs": int(summaries[0].topk.shape[0]), "chance": k / n,
        "matrix": mat, "per_block": per_block,
    }
    order_models = [i for i, kd in enumerate(kinds) if kd == "model"]
    sub = mat[np.ix_(order_models, order_models)] if order_models else np.zeros((0, 0))
    rep["order"] = [names[order_models[i]] for i in cluster_order(sub)] + [nm for nm, kd in zip(names, kinds)
                                                                          if kd != "model"]
    sp = [i for i, kd in enumerate(kinds) if kd == "same-position"]
    controls: dict = {"chance": k / n}
    if sp:
        j = sp[0]
        controls["same_position"] = {
            names[i]: {"avg": mat[i, j], "per_block": [per_block[str(b)][i, j] for b in range(summaries[i].num_blocks)]}
            for i in range(len(names)) if i != j
        }
    uu = _untrained_pairs(names, kinds)
    if uu:
        controls["untrained_vs_untrained"] = _mean_over(mat, uu)
        controls["untrained_vs_untrained_per_block"] = [_mean_over(per_block[str(b)], uu) for b in range(max_blocks)]
    models = [i for i, kd in enumerate(kinds) if kd == "model"]
    if len(models) >= 2:
        off = [mat[a, b] for ai, a in enumerate(models) for b in models[ai + 1:]]
        controls["model_vs_model_mean"] = float(np.nanmean(off))
        controls["model_vs_model_mean_per_block"] = [
            float(np.nanmean([per_block[str(b)][a, c] for ai, a in enumerate(models) for c in models[ai + 1:]]))
            if np.isfinite([per_block[str(b)][a, c] for ai, a in enumerate(models) for c in models[ai + 1:]]).any()
            else math.nan for b in range(max_blocks)]
    rep["controls"] = controls
    # CAS beyond position (calibrated_score): 0 for any predictor that ignores the images, by construction;
    # CAS beyond position and saliency (beyond_saliency_score): also 0 for sets that ignore the target patch
    for key, matrix, diagonal in (
            ("calibrated", calibrated_matrix, "1 for every model and untrained control (its sets vary between pairs); "
             "0 for the same-position predictor (identical sets on every pair: nothing beyond position)"),
            ("beyond_saliency", beyond_saliency_matrix, "1 for every model and untrained control whose sets vary "
             "with the pair and the target patch; 0 for the same-position predictor")):
        lev = {"matrix": matrix(summaries), "per_block": {str(b): matrix(summaries, b) for b in range(max_blocks)}}
        _group_levels(lev, uu, models, max_blocks)
        lev["diagonal"] = diagonal
        rep[key] = lev
    if true_idx is not None:
        true_idx = np.asarray(true_idx)
        known = true_idx >= 0
        disp = displaced_mask(true_idx, grid)  # (P, N)
        gt: dict = {
            "pairs_with_truth": int(known.any(axis=1).sum()),
            "patches_with_truth": int(known.sum()),
            "displaced_patches": int(disp.sum()),
            "displaced_share": float(disp.sum() / known.sum()) if known.any() else math.nan,
            "matrix_displaced": score_matrix(summaries, -1, disp),
            "calibrated_displaced": calibrated_matrix(summaries, -1, disp),
            "per_block_displaced": {str(b): score_matrix(summaries, b, disp) for b in range(max_blocks)},
            "accuracy": {},
        }
        untrained = {s.name: s.top1().numpy() for s in summaries if s.kind == "untrained"}
        for s in summaries:
            nb = s.num_blocks if s.kind != "same-position" else 0
            ctl = {n: t for n, t in untrained.items() if n != s.name} if s.kind == "model" else None
            gt["accuracy"][s.name] = {
                "all": accuracy(s, true_idx), "displaced": accuracy(s, true_idx, mask=disp),
                "per_block_all": [accuracy(s, true_idx, b) for b in range(nb)],
                "per_block_displaced": [accuracy(s, true_idx, b, disp) for b in range(nb)],
                **beyond_position_fields(s.top1().numpy(), true_idx, grid, disp, ctl),
            }
        gt["accuracy_chance"] = accuracy_chance(true_idx, grid)
        gt["position_prior"] = position_prior_fields(true_idx, grid, disp)
        rep["ground_truth"] = gt
    # one row per pair of models (and of untrained controls): the issue-7 table
    rows = []
    scored = [i for i, kd in enumerate(kinds) if kd in ("model", "untrained")]
    for ai, a in enumerate(scored):
        for b in scored[ai + 1:]:
            row = {"a": names[a], "b": names[b], "cas": mat[a, b],
                   "a_vs_same_position": mat[a, sp[0]] if sp else math.nan,
                   "b_vs_same_position": mat[b, sp[0]] if sp else math.nan}
            row["cas_calibrated"] = rep["calibrated"]["matrix"][a, b]
            sa, sb = _block(summaries[a], -1), _block(summaries[b], -1)
            loo = calibrated_jackknife(sa, sb, None, n)
            row["cas_calibrated_se"] = replicate_se(loo)
            row["cas_calibrated_jackknife"] = _rounded(loo)
            row["cas_beyond_saliency"] = rep["beyond_saliency"]["matrix"][a, b]
            loo = beyond_saliency_jackknife(sa, sb, n)
            row["cas_beyond_saliency_se"] = replicate_se(loo)
            row["cas_beyond_saliency_jackknife"] = _rounded(loo)
            if true_idx is not None:
                row["cas_displaced"] = rep["ground_truth"]["matrix_displaced"][a, b]
                row["cas_calibrated_displaced"] = rep["ground_truth"]["calibrated_displaced"][a, b]
                loo = calibrated_jackknife(sa, sb, disp, n)
                row["cas_calibrated_displaced_se"] = replicate_se(loo)
                row["cas_calibrated_displaced_jackknife"] = _rounded(loo)
            rows.append(row)
    rep["pair_table"] = rows
    return nan_to_none(rep)


# ---------------------------------------------------------------------------------------------------------------
# image-level comparisons on mean-pooled encoder features

def mutual_knn(fa: np.ndarray, fb: np.ndarray, k: int) -> float:
    """Mutual-kNN alignment (Platonic Representation Hypothesis): mean over images of |kNN_a n kNN_b| / k,
    neighbours by cosine similarity among the other images; fa (n, Da), fb (n, Db)."""
    n = len(fa)
    if n < 2:
        return math.nan
    k = min(k, n - 1)

    def knn(f):
        f = torch.as_tensor(f, dtype=torch.float64)
        f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        sim = f @ f.T  # (n, n)
        sim.fill_diagonal_(-math.inf)
        return sim.topk(k, dim=1).indices  # (n, k)

    return float(overlap(knn(fa), knn(fb)).mean())


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of two feature sets (n, Dx), (n, Dy): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    num = np.linalg.norm(Y.T @ X) ** 2
    den = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(num / den) if den > 0 else math.nan


def pooled_features(model, images: torch.Tensor, batch_size: int = 32,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, D) mean-pooled final encoder tokens of images (n, 3, S, S)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            out.append(model.encode_image(x).float().mean(dim=1).numpy())  # (B, D)
            if progress:
                progress(len(x))
    return np.concatenate(out)


def view_identity(pair: dict, view: str) -> tuple:
    """The frame a pair's view shows: (life, video, frame) from the pair json (source = `*_a`, target = `*_b`),
    or (sample key, view) when the json does not name the frame."""
    meta = pair.get("json") if isinstance(pair.get("json"), dict) else {}
    ab = "a" if view == "src" else "b"
    frame = meta.get(f"frame_{ab}")
    if frame is None:
        return ("key", str(pair.get("key")), view)
    return ("frame", str(meta.get("life")), str(meta.get(f"video_{ab}")), int(frame))


def distinct_views(pairs: Sequence[dict]) -> tuple[torch.Tensor, int]:
    """(images (n, 3, S, S) of the distinct frames among every pair's target and source, first seen first,
    number of views looked at (2 P))."""
    seen, imgs = set(), []
    for view in ("tgt", "src"):
        for p in pairs:
            ident = view_identity(p, view)
            if ident not in seen:
                seen.add(ident)
                imgs.append(p[view])
    return torch.stack(imgs).float(), 2 * len(pairs)


def feature_report(names: list[str], kinds: list[str], feats: list[np.ndarray], metric: str, k: int) -> dict:
    """(M, M) mknn or CKA matrix with the untrained control level and chance (mknn: k / (n - 1))."""
    m = len(names)
    mat = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(i, m):
            v = mutual_knn(feats[i], feats[j], k) if metric == "mknn" else linear_cka(feats[i], feats[j])
            mat[i, j] = mat[j, i] = v
    n = len(feats[0])
    models = [i for i, kd in enumerate(kinds) if kd == "model"]
    uu = _untrained_pairs(names, kinds)
    sub = mat[np.ix_(models, models)]
    controls: dict = {"chance": (min(k, n - 1) / (n - 1)) if metric == "mknn" and n > 1 else None}
    if uu:
        controls["untrained_vs_untrained"] = _mean_over(mat, uu)
    return nan_to_none({
        "names": names, "kinds": kinds, "num_images": n, "k": k if metric == "mknn" else None,
        "chance": controls["chance"], "matrix": mat, "controls": controls,
        "order": [names[models[i]] for i in cluster_order(sub)] + [nm for nm, kd in zip(names, kinds) if kd != "model"],
    })


# ---------------------------------------------------------------------------------------------------------------
# entry point

def write_matrix_csv(path: Path, names: list[str], mat) -> None:
    """The matrix as CSV (header row and first column are the names), atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([""] + names)
    for nm, row in zip(names, mat):
        w.writerow([nm] + ["" if v is None else f"{v:.6f}" for v in row])
    atomic_write_text(path, buf.getvalue())


def spread_indices(total: int, n: int) -> list[int]:
    """`n` indices spread evenly over range(total) (all of them when n >= total): round(i (total - 1) / (n - 1)),
    first and last included, so a sample of a held-out life covers it from start to end, deterministically."""
    if n >= total:
        return list(range(total))
    if n == 1:
        return [(total - 1) // 2]
    return sorted({int(round(i * (total - 1) / (n - 1))) for i in range(n)})


def load_test_pairs(shards: Path, img_size: int, num_pairs: int) -> list[dict]:
    """`num_pairs` pairs of a test shard folder at the model's size (`stream.eval_pairs`), spread evenly over the
    whole set in write order (`spread_indices`: a held-out life from its start to its end, not its first
    minutes); all of them when the set has no more. One-line SlifeError for a missing folder, a folder without
    shards or no readable pair."""
    from slife.pairmine.shardset import SHARD_GLOB
    from slife.train.stream import eval_pairs, resolve_shards

    shards = Path(shards)  # a folder, a .tar, or a spec with ',' / braces (resolved by the stream reader)
    if shards.is_dir() and not any(shards.glob(SHARD_GLOB)):
        raise SlifeError(f"{shards}: no {SHARD_GLOB} shards (expected a folder written by `slife mine-pairs`)")
    if not shards.exists() and not any(ch in str(shards) for ch in ",{"):
        raise SlifeError(f"{shards}: no such pair shard folder")
    sset = resolve_shards(str(shards))
    keep = None
    if sset.total > num_pairs:
        keep = spread_indices(sset.total, num_pairs)
        log.info("%s: %d of %d pairs, spread evenly over the set (every %.1f-th)", shards, len(keep), sset.total,
                 sset.total / len(keep))
    pairs = eval_pairs(sset, img_size, num_pairs, keep)
    if not pairs:
        raise SlifeError(f"{shards}: no test pairs could be read")
    return pairs


def run(cfg: CasConfig, checkpoints: Sequence[Path], out_dir: Path,
        progress: Callable[..., None] | None = None) -> Path:
    """Compare the checkpoints on the test pairs of `cfg.pairs`; write cas.json/.csv/.png; return the JSON path."""
    from slife.eval.models import architectures, image_grid, load_models, model_spec_of, untrained_models
    from slife.eval.plots import plot_cas

    if cfg.pairs is None:
        raise SlifeError("cas: no test pair folder given (--pairs)")
    if not checkpoints:
        raise SlifeError("cas: give at least one checkpoint")
    loaded = load_models(checkpoints, attention=cfg.metric == "cas")  # mknn/cka: any encoder
    spec0 = model_spec_of(loaded[0][2])
    kw0 = spec0.kwargs
    size, patch, side = image_grid(kw0)
    for (name, _, ck), path in zip(loaded, checkpoints):
        s2, p2, g2 = image_grid(model_spec_of(ck).kwargs)
        if (s2, g2) != (size, side):
            raise SlifeError(f"{path}: image size {s2} / grid {g2}x{g2} differs from the first checkpoint's "
                             f"{size} / {side}x{side}; CAS compares models on the same patch grid")
    grid = (side, side)
    if cfg.metric == "cas" and cfg.k >= side * side:  # every patch would be a neighbour: all scores 1
        raise SlifeError(f"--k {cfg.k} must be below the {side * side} patches per image of these models")
    pairs = load_test_pairs(cfg.pairs, size, cfg.num_pairs)
    if cfg.metric != "cas":
        imgs, n_views = distinct_views(pairs)  # (n, 3, S, S): each frame once
        if len(imgs) < n_views:
            log.info("%s: %d distinct images among the %d views of %d pairs (frames reused by several pairs are "
                     "compared once)", cfg.pairs, len(imgs), n_views, len(pairs))
        if len(imgs) < 3:
            raise SlifeError(f"{cfg.pairs}: {len(imgs)} distinct images in {len(pairs)} pairs; --metric {cfg.metric} "
                             "needs at least 3")
        if cfg.metric == "mknn" and cfg.k >= len(imgs) - 1:
            raise SlifeError(f"--k {cfg.k} must be below the {len(imgs) - 1} other images of the {len(imgs)} "
                             f"distinct images in {len(pairs)} test pairs for --metric mknn")
    specs = architectures([ck for _, _, ck in loaded])
    entries = [(n, m, "model", str(p)) for (n, m, _), p in zip(loaded, checkpoints)]
    entries += [(n, m, "untrained", None) for n, _, m in untrained_models(specs, cfg.untrained_seeds)]
    if not cfg.untrained_seeds:
        log.warning("cas: no untrained control (--untrained-seeds is empty): nothing shows how much %s untrained "
                    "models of these architectures reach, so the scores have no floor to stand on", cfg.metric)
    total = len(entries) * (len(pairs) if cfg.metric == "cas" else len(imgs))
    if progress:
        progress(0, total=total)
    import time

    timing = {}
    if cfg.metric == "cas":
        summaries = []
        for name, model, kind, path in entries:
            t0 = time.perf_counter()
            try:
                summaries.append(summarize_model(name, model, pairs, cfg.k, grid, kind=kind, softmax=cfg.softmax,
                                                 reciprocal=cfg.reciprocal, batch_size=cfg.batch_size,
                                                 progress=progress, masked=cfg.masked))
            except ValueError as e:  # e.g. a mask ratio that the masked read cannot use
                raise SlifeError(f"{path or name}: {e}") from None
            timing[name] = len(pairs) / max(time.perf_counter() - t0, 1e-9)
        summaries.append(same_position_summary(grid, cfg.k, len(pairs), 1))
        rep = cas_report(summaries, ground_truth_table(pairs, grid, patch))
    else:
        feats = []
        for name, model, kind, _ in entries:
            t0 = time.perf_counter()
            feats.append(pooled_features(model, imgs, cfg.batch_size, progress))
            timing[name] = len(imgs) / max(time.perf_counter() - t0, 1e-9)
        rep = feature_report([e[0] for e in entries], [e[2] for e in entries], feats, cfg.metric, cfg.k)
        rep.update({"num_pairs": len(pairs), "num_views": n_views,
                    "images": "distinct frames of the pairs' views (life, video, frame), each once"})
    rep.update({
        "metric": cfg.metric, "softmax": cfg.softmax, "reciprocal": cfg.reciprocal, "masked": cfg.masked,
        "checkpoints": {e[0]: e[3] for e in entries if e[3]}, "pairs": str(cfg.pairs), "img_size": size,
        "patch_size": patch, "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "throughput_per_s": timing, "untrained_architecture": {"kind": spec0.kind, **kw0},
        "untrained_architectures": [{"kind": x.kind, **x.kwargs} for x in specs],
        "untrained_seeds": list(cfg.untrained_seeds),
    })
    stem = cfg.metric
    out_dir = Path(out_dir)  # made only now: a run that fails on its inputs leaves no empty folder
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    atomic_write_text(path, json.dumps(rep, indent=2))
    write_matrix_csv(out_dir / f"{stem}.csv", rep["names"], rep["matrix"])
    if rep.get("ground_truth"):
        write_matrix_csv(out_dir / f"{stem}_displaced.csv", rep["names"], rep["ground_truth"]["matrix_displaced"])
    plot_cas(rep, out_dir / f"{stem}.png")
    if rep.get("ground_truth") and "calibrated" in rep:
        write_matrix_csv(out_dir / f"{stem}_calibrated_displaced.csv", rep["names"],
                         rep["ground_truth"]["calibrated_displaced"])
    for key, metric in (("calibrated", "cas_calibrated"), ("beyond_saliency", "cas_beyond_saliency")):
        lev = rep.get(key)
        if lev:  # CAS beyond position, and beyond position and saliency: a CSV and a heatmap each
            write_matrix_csv(out_dir / f"{stem}_{key}.csv", rep["names"], lev["matrix"])
            plot_cas({"names": rep["names"], "kinds": rep["kinds"], "order": rep["order"], "matrix": lev["matrix"],
                      "metric": metric, "k": rep.get("k"), "softmax": rep.get("softmax"), "masked": rep.get("masked"),
                      "controls": {"untrained_vs_untrained": lev.get("untrained_vs_untrained")}},
                     out_dir / f"{stem}_{key}.png")
    log.info("wrote %s", path)
    return path
