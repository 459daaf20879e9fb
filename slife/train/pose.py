"""Relative camera motion of a pair: labels from the shards' poses, a head that predicts it, its losses.

Reads: pair metadata (DESIGN.md "Pair shards": `T_a`, `T_b` camera-to-world 4x4, OpenCV axes; the source view
is a, the target b) and encoder tokens of both views with their patch positions.
- `pair_motion(metas)`: the motion of camera b in camera a's frame, T_ab = inv(T_a) T_b: rotation R_ab (3, 3)
  and unit translation direction t_ab / |t_ab|, with masks: a pair counts for rotation when both poses are
  valid (`lives.geometry.pose_problem`) and it is not an `augmented` pair (one frame under 2D transforms: no
  camera motion to learn), and for translation when it also moved (|t_ab| > 1e-6 m). The crops of the two
  views do not change R_ab or the direction (they shift the principal point, which the head must see past).
- `PoseHead`: the tokens of both views (any number each: CroCo's encoder sees only the target's visible
  patches) are projected to `dim`, given a 2D sin-cos position of their patch and a learned view embedding,
  mixed by `depth` transformer blocks across both views, mean-pooled and mapped to 9 numbers: a 6D rotation
  (Zhou et al. 2019: two columns, Gram-Schmidt) and a translation direction. Its output starts at the
  identity rotation and forward motion (+z).
- `pose_losses`: chordal rotation loss ||R - R_true||_F^2 (= 8 sin^2(angle/2)) and 1 - cos of the
  translation directions, each averaged over the pairs that count (0 with the graph kept if none do), and the
  mean angular errors in degrees for the logs.
Entry points: `pair_motion`, `PoseHead`, `rotation_6d`, `pose_losses`, `rotation_angle_deg`. The objectives
that use them are `objectives/egomotion.py` and `objectives/croco_egomotion.py`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from slife.lives.geometry import invert_pose, pose_problem
from slife.train.blocks import Block, init_linears_and_norms
from slife.train.pos_embed import sincos_2d

MIN_MOTION = 1e-6  # metres: below this a pair's translation direction is undefined


def pair_motion(metas: list[dict]) -> dict[str, torch.Tensor]:
    """Pair jsons -> {"R": (B, 3, 3) float32, "t": (B, 3) unit direction, "valid_R": (B,) bool, "valid_t": (B,)}."""
    from slife.pairmine.shardset import is_augmented

    B = len(metas)
    R, t = np.tile(np.eye(3), (B, 1, 1)), np.zeros((B, 3))
    vr, vt = np.zeros(B, bool), np.zeros(B, bool)
    for i, m in enumerate(metas):
        Ta, Tb = (m or {}).get("T_a"), (m or {}).get("T_b")
        if Ta is None or Tb is None or is_augmented(m):
            continue
        try:
            Ta, Tb = np.asarray(Ta, np.float64).reshape(4, 4), np.asarray(Tb, np.float64).reshape(4, 4)
        except ValueError:
            continue
        if pose_problem(Ta) or pose_problem(Tb):
            continue
        Tab = invert_pose(Ta) @ Tb  # camera b -> camera a
        R[i], vr[i] = Tab[:3, :3], True
        n = np.linalg.norm(Tab[:3, 3])
        if n > MIN_MOTION:
            t[i], vt[i] = Tab[:3, 3] / n, True
    return {"R": torch.from_numpy(R).float(), "t": torch.from_numpy(t).float(), "valid_R": torch.from_numpy(vr),
            "valid_t": torch.from_numpy(vt)}


def rotation_6d(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> rotation matrices (..., 3, 3): Gram-Schmidt of the two 3-vectors, third column their cross product."""
    a, b = x[..., :3], x[..., 3:]
    c1 = F.normalize(a, dim=-1)
    c2 = F.normalize(b - (c1 * b).sum(-1, keepdim=True) * c1, dim=-1)
    return torch.stack([c1, c2, torch.cross(c1, c2, dim=-1)], dim=-1)  # columns


def rotation_angle_deg(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotations (..., 3, 3) in degrees (...)."""
    cos = ((Ra.transpose(-1, -2) @ Rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


class PoseHead(nn.Module):
    """Relative motion from the tokens of two views (see the module docstring)."""

    def __init__(self, in_dim: int, dim: int = 128, depth: int = 2, num_heads: int = 4):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.dim = dim
        self.proj = nn.Linear(in_dim, dim)
        self.view_embed = nn.Parameter(torch.zeros(2, dim))  # (2, dim): source, target
        self.blocks = nn.ModuleList([Block(dim, num_heads, 4.0, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(dim)
        self.out = nn.Linear(dim, 9)  # 6D rotation, translation direction
        init_linears_and_norms(self, partial(nn.init.trunc_normal_, std=0.02))
        nn.init.trunc_normal_(self.view_embed, std=0.02)
        self.register_buffer("prior", torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1]), persistent=False)  # I, +z
        self._tables: dict = {}

    def _pos(self, pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch positions (B, n, 2) (row, col) -> sin-cos embeddings (B, n, dim)."""
        key = (tuple(grid), str(pos.device))
        if key not in self._tables:
            self._tables[key] = sincos_2d(self.dim, grid).to(pos.device)  # (rows*cols, dim)
        return self._tables[key][pos[..., 0] * grid[1] + pos[..., 1]]

    def forward(self, tok_a: torch.Tensor, pos_a: torch.Tensor, tok_b: torch.Tensor, pos_b: torch.Tensor,
                grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """tok_a (B, na, D) source tokens, tok_b (B, nb, D) target tokens, positions (B, n, 2) on `grid` ->
        (R (B, 3, 3) the target camera's rotation in the source camera's frame, t (B, 3) unit direction)."""
        xa = self.proj(tok_a) + self._pos(pos_a, grid).to(tok_a.dtype) + self.view_embed[0]  # (B, na, dim)
        xb = self.proj(tok_b) + self._pos(pos_b, grid).to(tok_b.dtype) + self.view_embed[1]  # (B, nb, dim)
        x = torch.cat([xa, xb], dim=1)  # (B, na + nb, dim)
        pos = torch.cat([pos_a, pos_b], dim=1)  # unused by the blocks (no RoPE)
        for blk in self.blocks:
            x = blk(x, pos)
        y = self.out(self.norm(x).mean(dim=1)).float() + self.prior  # (B, 9)
        return rotation_6d(y[:, :6]), F.normalize(y[:, 6:], dim=-1)


def pose_losses(R: torch.Tensor, t: torch.Tensor, motion: dict) -> dict[str, torch.Tensor]:
    """Predictions (B, 3, 3), (B, 3) against `pair_motion` labels -> {"rotation", "translation": losses,
    "rot_err_deg", "trans_err_deg": mean angular errors over the pairs that count (nan if none), "posed": share
    of the batch's pairs that count for rotation}."""
    vr, vt = motion["valid_R"], motion["valid_t"]
    chordal = (R - motion["R"]).pow(2).sum(dim=(-1, -2))  # (B,)
    cos = (t * motion["t"]).sum(-1)  # (B,)
    zero = (R.sum() + t.sum()) * 0.0  # keeps every head parameter in the graph (DDP) when no pair counts
    rot = chordal[vr].mean() if vr.any() else zero
    trans = (1 - cos[vt]).mean() if vt.any() else zero
    with torch.no_grad():
        rerr = rotation_angle_deg(R[vr], motion["R"][vr]).mean() if vr.any() else torch.tensor(float("nan"))
        terr = torch.rad2deg(torch.arccos(cos[vt].clamp(-1, 1))).mean() if vt.any() else torch.tensor(float("nan"))
    return {"rotation": rot, "translation": trans, "rot_err_deg": rerr, "trans_err_deg": terr,
            "posed": vr.float().mean()}
