"""Per-model cross-attention maps and their top-k source patches: what CAS, accuracy and flow are computed from.

Reads a model through `model.cross_attention_logits(img_tgt, img_src) -> list[(B, heads, N_tgt, N_src)]`
(one tensor per decoder block, pre-softmax q.k logits, nothing masked, or read masked: `masked_logits`; images
(B, 3, S, S) ImageNet-normalised).
Returns `AttentionSummary`: for every pair the top-k source patches of every target patch, per decoder
block and for the average over blocks (index -1), plus the block-averaged map itself when asked (for flow).
For encoders without a decoder (the ViTs of the dinov2 and egomotion objectives), `feature_logits` gives maps
of the same form from the encoder's own patch tokens: cosine similarity of each target token to each source
token, times FEATURE_LOGIT_SCALE (one "block", one "head"), i.e. feature nearest-neighbour matching.
`masked_logits` reads the same cross-attention with the target masked as in training (each target patch's
logits averaged over the `masked_reads` in which it is hidden). `correspondence_maps(model, method, masked)`
picks one (`method` attention, features, or auto: attention where the model has a decoder; `masked`: attention
read masked).
Entry points: `head_average`, `topk_sets`, `overlap`, `same_position_topk`, `summarize_model`, `feature_logits`,
`masked_logits`, `correspondence_maps`.
The scores built from these sets live in `cas.py`; flow from the maps in `correspondence.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class AttentionSummary:
    """The top-k source patches of one predictor on a fixed list of pairs."""

    name: str  # label in tables and figures
    kind: str  # "model", "same-position" or "untrained"
    topk: torch.Tensor  # (P, L + 1, N_tgt, k) int64 source indices; [:, :L] per block, [:, -1] block average; -1 = dropped
    grid: tuple[int, int]  # (h, w) patch grid of both views
    maps: torch.Tensor | None = None  # (P, N_tgt, N_src) float32 block-averaged map (kept only when asked)

    @property
    def num_blocks(self) -> int:
        return self.topk.shape[1] - 1

    @property
    def k(self) -> int:
        return self.topk.shape[-1]

    def top1(self, block: int = -1) -> torch.Tensor:
        """(P, N_tgt) index of the best source patch (block -1: average over blocks)."""
        return self.topk[:, block, :, 0]


def head_average(logits: Sequence[torch.Tensor], softmax: bool = False) -> torch.Tensor:
    """Per-block maps averaged over heads: list of (B, H, N_t, N_s) -> (B, L, N_t, N_s) float32.

    `softmax=True` averages the post-softmax attention (over source patches) instead of the logits.
    The order of heads does not matter (a mean), so a model with permuted heads gives the same maps.
    """
    out = []
    for x in logits:
        x = x.float()
        if softmax:
            x = x.softmax(dim=-1)
        out.append(x.mean(dim=1))  # (B, N_t, N_s)
    return torch.stack(out, dim=1)  # (B, L, N_t, N_s)


def topk_sets(A: torch.Tensor, k: int, reciprocal: bool = False) -> torch.Tensor:
    """Top-k source patches per target patch: A (..., N_t, N_s) -> (..., N_t, k) int64, best first.

    `reciprocal=True` keeps a source patch s for target t only if t is also among the k targets that
    attend most to s (a mutual-kNN filter on the same map); dropped entries are -1 and never match.
    """
    k = min(k, A.shape[-1])
    idx = A.topk(k, dim=-1).indices  # (..., N_t, k)
    if reciprocal:
        kc = min(k, A.shape[-2])
        col = A.topk(kc, dim=-2).indices  # (..., kc, N_s): best targets of each source patch
        mutual = torch.zeros(A.shape, dtype=torch.bool)
        mutual.scatter_(-2, col, True)  # (..., N_t, N_s): t is in s's top targets
        keep = mutual.gather(-1, idx)  # (..., N_t, k)
        idx = torch.where(keep, idx, torch.full_like(idx, -1))
    return idx


def membership(a: torch.Tensor, n_src: int) -> torch.Tensor:
    """(..., N_t, k) index sets -> (..., N_t, N_src) uint8 table, 1 where the source patch is in the set (-1 ignored)."""
    member = torch.zeros(a.shape[:-1] + (n_src,), dtype=torch.uint8)  # (..., N_t, N_src)
    return member.scatter_add_(-1, a.clamp_min(0), (a >= 0).to(torch.uint8))


def overlap_with(member: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|A n b| / k per target patch, A given as a `membership` table and b as (..., N_t, k) indices -> (..., N_t)."""
    hit = member.gather(-1, b.clamp_min(0)).bool() & (b >= 0)  # (..., N_t, k)
    return hit.sum(-1).float() / b.shape[-1]


def overlap(a: torch.Tensor, b: torch.Tensor, n_src: int | None = None) -> torch.Tensor:
    """|a n b| / k per target patch: two (..., N_t, k) index sets -> (..., N_t) float32 (entries -1 never match).

    Marks a's members in a (..., N_t, N_src) table, then looks b's entries up in it: O(N_t (k + N_src)),
    not O(N_t k^2). Top-k rows hold distinct indices, so nothing is counted twice."""
    if b.shape[-1] != a.shape[-1]:
        raise ValueError(f"top-k sizes differ: {a.shape[-1]} vs {b.shape[-1]}")
    if a.numel() == 0:
        return torch.zeros(a.shape[:-1])
    if n_src is None:
        n_src = int(max(a.max(), b.max())) + 1
    return overlap_with(membership(a, n_src), b)


def grid_positions(grid: tuple[int, int]) -> np.ndarray:
    """(h*w, 2) float64 (row, col) of each patch, row-major (patch index = row * w + col)."""
    h, w = grid
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([r.ravel(), c.ravel()], axis=1).astype(np.float64)


def same_position_topk(grid: tuple[int, int], k: int) -> torch.Tensor:
    """The same-position predictor: for each target patch, the source patch at the same grid position and
    then its nearest neighbours (Euclidean on the grid; ties by patch index) -> (N, k) int64."""
    pos = grid_positions(grid)  # (N, 2)
    n = len(pos)
    k = min(k, n)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)  # (N, N)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d2), axis=1)  # by d2, then index
    return torch.from_numpy(order[:, :k].astype(np.int64))  # (N, k)


def same_position_summary(grid: tuple[int, int], k: int, num_pairs: int, num_blocks: int = 1) -> AttentionSummary:
    """The same-position predictor as an AttentionSummary (identical for every pair and block)."""
    t = same_position_topk(grid, k)  # (N, k)
    topk = t.expand(num_pairs, num_blocks + 1, *t.shape).clone()  # (P, L + 1, N, k)
    return AttentionSummary("same-position", "same-position", topk, tuple(grid))


def summarize_maps(name: str, kind: str, maps: torch.Tensor, grid: tuple[int, int], k: int,
                   reciprocal: bool = False, keep_maps: bool = False) -> AttentionSummary:
    """Top-k sets from per-block maps (P, L, N_t, N_s) already averaged over heads."""
    avg = maps.mean(dim=1)  # (P, N_t, N_s)
    full = torch.cat([maps, avg.unsqueeze(1)], dim=1)  # (P, L + 1, N_t, N_s)
    topk = topk_sets(full, k, reciprocal)
    return AttentionSummary(name, kind, topk, tuple(grid), avg.clone() if keep_maps else None)


FEATURE_LOGIT_SCALE = 20.0  # cosine similarities are scaled by this: a soft-argmax at T = 1 is a softmax at 0.05


def feature_logits(model, img_tgt: torch.Tensor, img_src: torch.Tensor) -> list[torch.Tensor]:
    """Feature-matching maps in the form of `cross_attention_logits`: [(B, 1, N_tgt, N_src)], the cosine
    similarity of the final encoder patch tokens (`encode_image`) of target and source, x FEATURE_LOGIT_SCALE."""
    ft = torch.nn.functional.normalize(model.encode_image(img_tgt).float(), dim=-1)  # (B, N_tgt, D)
    fs = torch.nn.functional.normalize(model.encode_image(img_src).float(), dim=-1)  # (B, N_src, D)
    return [(ft @ fs.transpose(1, 2) * FEATURE_LOGIT_SCALE)[:, None]]  # [(B, 1, N_tgt, N_src)]


MASKED_READS_SEED = 0  # the fixed permutation behind `masked_reads`: every model is read through the same masks
MASKED_FLOATS = 2 ** 26  # logits per decoder pass of the masked read (256 MB in float32): bounds its memory


def masked_reads(num_patches: int, num_visible: int) -> torch.Tensor:
    """The target masks of the masked reading: (R, N) bool, True = masked, R = ceil(N / num_visible).

    A fixed random permutation of the N patches is cut into consecutive runs of `num_visible` (wrapping round
    at the end), one run visible per read: every patch is visible in one read (two for the few that the wrap
    repeats) and masked in all the others, and the same masks serve every pair and every model. ValueError where
    some patch would be masked in no read (more than half the patches visible)."""
    if not 0 < num_visible < num_patches:
        raise ValueError(f"a masked read needs 0 < visible patches < {num_patches}, got {num_visible}")
    perm = torch.randperm(num_patches, generator=torch.Generator().manual_seed(MASKED_READS_SEED))
    reads = -(-num_patches // num_visible)
    vis = perm[(torch.arange(reads)[:, None] * num_visible + torch.arange(num_visible)) % num_patches]  # (R, n_vis)
    mask = torch.ones(reads, num_patches, dtype=torch.bool)
    mask[torch.arange(reads)[:, None], vis] = False
    if not bool(mask.any(0).all()):
        raise ValueError(f"a masked read needs every patch masked in some read: {num_visible} of {num_patches} "
                         "patches visible is more than half")
    return mask


def _model_reads(model, H: int, W: int) -> torch.Tensor:
    """`masked_reads` at the model's own mask ratio on an H x W image: (R, N); ValueError naming the ratio."""
    h, w = model.patch_embed.grid(H, W)
    n = h * w
    try:
        return masked_reads(n, n - model.mask_generator.num_masked(n))
    except ValueError as e:
        raise ValueError(f"mask ratio {model.mask_generator.mask_ratio:g}: {e}") from None


def masked_logits(model, img_tgt: torch.Tensor, img_src: torch.Tensor) -> list[torch.Tensor]:
    """The decoder's cross-attention read as in training: [(B, H, N_tgt, N_src)] per block.

    CroCo's loss is taken only on masked target patches, whose queries start from the mask token and learn where
    their content lies in the source from the few visible patches; a target patch that the encoder sees is never
    trained to find its match. So the target is read through the `masked_reads` of the model's own mask ratio,
    and each target patch's logits are the mean over the reads in which it is masked (a softmax over them, as
    `head_average(softmax=True)` takes, is then of those mean logits). The first read goes through the decoder
    alone; the others together, as many per pass as keep the pass's logits under MASKED_FLOATS, the source
    encoded once per pass."""
    B, _, H, W = img_tgt.shape
    reads = _model_reads(model, H, W)  # (R, N)
    w = reads.to(torch.float32)  # (R, N) 1 where masked
    w = (w / w.sum(0, keepdim=True)).to(img_tgt.device)  # each target patch's reads weigh 1 in all
    out, r0, per = None, 0, 1
    while r0 < len(reads):
        rr, wr = reads[r0:r0 + per], w[r0:r0 + per]  # (r, N) each
        mask = rr.repeat_interleave(B, dim=0).to(img_tgt.device)  # (r*B, N): read i of pair b at row i*B + b
        logits = model.cross_attention_logits(img_tgt, img_src, mask)  # the source encoded once for the r reads
        part = [(lg.float().unflatten(0, (len(rr), B)) * wr[:, None, None, :, None]).sum(0)
                for lg in logits]  # (B, H, N_t, N_s) per block
        out = part if out is None else [a + b for a, b in zip(out, part)]
        if r0 == 0:  # reads whose logits fit the budget, from the first one's size
            per = max(1, MASKED_FLOATS // sum(lg.numel() for lg in logits))
        r0 += len(rr)
    return out


METHODS = ("auto", "attention", "features")  # where correspondence maps come from (`correspondence_maps`)


def correspondence_maps(model, method: str = "auto", masked: bool = False) -> tuple[str, Callable]:
    """(method used, fn(img_tgt, img_src) -> [(B, H, N_tgt, N_src)] per block): the decoder's cross-attention
    logits ("attention"; CroCo models only) or `feature_logits` ("features"); "auto" takes attention where the
    model has it. With `masked`, attention is read with the target masked as in training (`masked_logits`; the
    method used is then "masked attention"); features are read as they are. ValueError for an unknown method or
    attention on a model without a decoder."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    has = hasattr(model, "cross_attention_logits")
    if method == "attention" and not has:
        raise ValueError(f"a {type(model).__name__} has no decoder cross-attention; use method features")
    if method == "attention" or (method == "auto" and has):
        if masked:
            S = model.patch_embed.img_size
            _model_reads(model, S[0], S[1])  # a mask ratio that leaves some patch never masked: ValueError now
            return "masked attention", lambda t, s: masked_logits(model, t, s)
        return "attention", model.cross_attention_logits
    return "features", lambda t, s: feature_logits(model, t, s)


def summarize_model(name: str, model, pairs: Sequence[dict], k: int, grid: tuple[int, int], *, kind: str = "model",
                    softmax: bool = False, reciprocal: bool = False, keep_maps: bool = False, batch_size: int = 16,
                    progress: Callable[[int], None] | None = None, method: str = "attention",
                    masked: bool = False) -> AttentionSummary:
    """Run a model once over `pairs` (dicts with "tgt", "src" (3, S, S) tensors) -> its AttentionSummary.

    The maps are the decoder's cross-attention, or with `method` features the encoder's feature similarity
    (`correspondence_maps`; `masked`: attention read with the target masked as in training). Only the top-k sets
    (and, with `keep_maps`, the block-averaged map) are kept, so memory stays O(pairs x patches x k) whatever the
    number of blocks.
    """
    if hasattr(model, "eval"):
        model.eval()
    maps_of = correspondence_maps(model, method, masked)[1]
    tops, avgs = [], []
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            tgt = torch.stack([p["tgt"] for p in chunk]).float()  # (B, 3, S, S)
            src = torch.stack([p["src"] for p in chunk]).float()  # (B, 3, S, S)
            logits = maps_of(tgt, src)
            maps = head_average(logits, softmax)  # (B, L, N_t, N_s)
            n = grid[0] * grid[1]
            if maps.shape[-2] != n or maps.shape[-1] != n:
                raise ValueError(f"{name}: attention maps of {tuple(maps.shape[-2:])} patches, expected {n} ({grid})")
            s = summarize_maps(name, kind, maps, grid, k, reciprocal, keep_maps)
            tops.append(s.topk)
            if keep_maps:
                avgs.append(s.maps)
            if progress:
                progress(len(chunk))
    topk = torch.cat(tops) if tops else torch.zeros(0, 1, grid[0] * grid[1], k, dtype=torch.int64)
    return AttentionSummary(name, kind, topk, tuple(grid), torch.cat(avgs) if keep_maps and avgs else None)
