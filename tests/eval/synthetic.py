"""A synthetic pair set with known patch correspondences (integer patch shifts) and attention stand-ins."""

from __future__ import annotations

import numpy as np
import torch

from slife.eval.attention import grid_positions
from slife.eval.groundtruth import matches_from_homography

GRID = (8, 8)
PATCH = 8
SHIFTS = [(0, 0), (1, 0), (2, 0), (0, -3), (1, 1)]  # (dx, dy) in patches, target -> source


def shift_h(dx: int, dy: int) -> np.ndarray:
    """Model-frame homography of a shift by (dx, dy) patches."""
    return np.array([[1, 0, dx * PATCH], [0, 1, dy * PATCH], [0, 0, 1.0]])


def pairs() -> list[dict]:
    """Eval-pair dicts; the pair index is written into the first pixel of "tgt" so stand-ins can find it."""
    out = []
    for i, (dx, dy) in enumerate(SHIFTS):
        tgt = torch.zeros(3, GRID[0] * PATCH, GRID[1] * PATCH)
        tgt[0, 0, 0] = i
        out.append({"tgt": tgt, "src": torch.zeros_like(tgt), "H": shift_h(dx, dy), "json": {}})
    return out


def true_idx() -> np.ndarray:
    return np.stack([matches_from_homography(shift_h(*s), GRID, PATCH) for s in SHIFTS])  # (P, N)


def map_towards(target: np.ndarray) -> torch.Tensor:
    """(N, N) logits peaked at source patch target[t] for each target t (Gaussian-like on the grid, ties by index);
    rows with target -1 peak at the same position."""
    pos = grid_positions(GRID)  # (N, 2)
    n = len(pos)
    tgt = np.where(target >= 0, target, np.arange(n))
    d2 = ((pos[tgt][:, None, :] - pos[None, :, :]) ** 2).sum(-1)  # (N, N)
    return torch.from_numpy(-(d2 + 1e-3 * np.arange(n)[None, :] / n)).float()


class AttentionStandIn:
    """Stands in for a CroCoNet: returns given per-pair maps for every block and head."""

    def __init__(self, maps: list[torch.Tensor], blocks: int = 2, heads: int = 2):
        self.maps, self.blocks, self.heads = maps, blocks, heads

    def eval(self):
        return self

    def cross_attention_logits(self, tgt, src):
        idx = tgt[:, 0, 0, 0].long().tolist()
        a = torch.stack([self.maps[i] for i in idx])  # (B, N, N)
        return [a[:, None].expand(-1, self.heads, -1, -1).clone() for _ in range(self.blocks)]


def identity_model() -> AttentionStandIn:
    n = GRID[0] * GRID[1]
    m = map_towards(np.arange(n))
    return AttentionStandIn([m] * len(SHIFTS))


def truth_model() -> AttentionStandIn:
    return AttentionStandIn([map_towards(t) for t in true_idx()])
