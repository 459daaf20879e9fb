"""Position embeddings for CroCo: 2D sin-cos tables (`cosine`) and 2D rotary embeddings (`RoPE100`).

Reads: a patch grid size (rows, cols) or integer patch positions (B, N, 2) as (row y, column x).
Returns: sin-cos tables (rows*cols, D) float32, rotated query/key tensors, resized tables, RoPE cos/sin
tables (`RoPE2D.tables`, or as complex numbers `RoPE2D.complex_table` for `train/fused_attention.py`).
Entry points: `sincos_2d(dim, grid)`, `RoPE2D(freq)`, `interpolate_pos_embed(table, old, new)`.
Leaves to `train/model.py` where the tables are added (encoder input, decoder input) and to
`train/blocks.py` where RoPE is applied (queries and keys of every attention).

Conventions (same maths as naver/croco, so checkpoints and outputs agree):
- sin-cos: the first half of the channels encode the column x, the second half the row y; each half is
  [sin(p * w_k) for k] + [cos(p * w_k) for k] with w_k = 10000 ** (-k / (D/4)), k < D/4.
- RoPE2D: each head's channels are split in halves, the first rotated by the row y, the second by the
  column x. Inside a half of size d, channel i < d/2 is paired with channel i + d/2 and the pair is
  rotated by the angle p * F0 / freq ** (2i / d).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim) table: dim/2 sines then dim/2 cosines."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    k = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)  # (dim/2,)
    omega = 1.0 / 10000.0**k  # (dim/2,)
    angles = np.outer(pos.reshape(-1).astype(np.float64), omega)  # (M, dim/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # (M, dim)


def sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """2D sin-cos table for a (rows, cols) patch grid, row-major: (rows*cols, dim) float32."""
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    rows, cols = int(grid[0]), int(grid[1])
    yy, xx = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
    emb = np.concatenate([_sincos_1d(dim // 2, xx), _sincos_1d(dim // 2, yy)], axis=1)  # (rows*cols, dim): x then y
    return torch.from_numpy(emb).float()


def interpolate_pos_embed(table: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (old_rows*old_cols, D) position table to (new_rows*new_cols, D).

    For learned tables; the sin-cos tables of CroCoNet are recomputed exactly instead
    (`CroCoNet.interpolate`)."""
    old_grid, new_grid = tuple(map(int, old_grid)), tuple(map(int, new_grid))
    if table.shape[0] != old_grid[0] * old_grid[1]:
        raise ValueError(f"table has {table.shape[0]} rows, grid {old_grid} needs {old_grid[0] * old_grid[1]}")
    if old_grid == new_grid:
        return table
    img = table.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2).float()  # (1, D, rows, cols)
    img = F.interpolate(img, size=new_grid, mode="bicubic", align_corners=False)  # (1, D, new_rows, new_cols)
    return img.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(table.dtype)  # (N', D)


def _rotate(tokens: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(..., Dh) tokens, (B, 1, N, 2, Dh/4) cos/sin -> rotated tokens, written into one new tensor."""
    t = tokens.unflatten(-1, (2, 2, -1))  # (..., B, H, N, 2 axes, 2 halves, Dh/4)
    out = torch.empty_like(t)  # (..., B, H, N, 2, 2, Dh/4)
    a, b = t[..., 0, :], t[..., 1, :]  # (..., B, H, N, 2, Dh/4) each
    oa, ob = out[..., 0, :], out[..., 1, :]
    torch.mul(a, c, out=oa)
    oa.addcmul_(b, s, value=-1.0)  # a cos - b sin
    torch.mul(b, c, out=ob)
    ob.addcmul_(a, s)  # b cos + a sin
    return out.flatten(-3)  # (..., B, H, N, Dh)


def _rotate_functional(tokens: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """`_rotate` without out= writes, for torch.compile (which fuses it and derives the backward itself)."""
    t = tokens.unflatten(-1, (2, 2, -1))  # (..., B, H, N, 2 axes, 2 halves, Dh/4)
    a, b = t[..., 0, :], t[..., 1, :]  # (..., B, H, N, 2, Dh/4) each
    return torch.stack([a * c - b * s, b * c + a * s], dim=-2).flatten(-3)  # (..., B, H, N, Dh)


class _Rotate(torch.autograd.Function):
    """RoPE as one autograd node: the backward is the inverse rotation (angle -theta) of the gradient."""

    @staticmethod
    def forward(ctx, tokens, c, s):
        ctx.save_for_backward(c, s)
        # q and k are strided views of a fused projection: rotating them in place costs 2-3x a contiguous copy
        # followed by the rotation (the element-wise loops over Dh/4-long chunks then read memory in order)
        return _rotate(tokens.contiguous(), c, s)

    @staticmethod
    def backward(ctx, grad):
        c, s = ctx.saved_tensors
        return _rotate(grad.contiguous(), c, -s), None, None


class RoPE2D(torch.nn.Module):
    """2D rotary position embedding; no parameters, so it adds no state_dict keys.

    forward(tokens (..., B, H, N, Dh), positions (B, N, 2) integer (y, x)) -> same shape as tokens.
    Leading dimensions before B broadcast, so stacked queries and keys are rotated in one call.
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.base = float(freq)
        self.F0 = float(F0)
        self._tables: dict = {}  # (half_dim, device) -> inverse frequencies (half_dim/2,) float32
        self._recent: list = []  # up to 6 (positions, key, (cos, sin) or complex table) of the latest calls

    def _inv_freq(self, half_dim: int, device) -> torch.Tensor:
        key = (half_dim, str(device))
        if key not in self._tables:
            self._tables[key] = self.F0 / (self.base ** (torch.arange(0, half_dim, 2, device=device).float() / half_dim))
        return self._tables[key]  # (Dh/4,) float32

    def cos_sin(self, positions: torch.Tensor, head_dim: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 2) positions -> cos, sin of shape (B, 1, N, 2, Dh/4) in `dtype`, ready for `rotate`.

        The angles are position x frequency in float32, as a table of them would hold, computed for the
        positions at hand: no look at their values (no device sync; static shapes under torch.compile)."""
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
        angles = positions.float()[..., None] * self._inv_freq(head_dim // 2, positions.device)  # (B, N, 2, Dh/4)
        c = angles.cos().to(dtype).unsqueeze(1)  # (B, 1, N, 2, Dh/4): [..., 0, :] row y, [..., 1, :] column x
        s = angles.sin().to(dtype).unsqueeze(1)  # (B, 1, N, 2, Dh/4)
        return c, s

    @staticmethod
    def rotate(tokens: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Rotate (..., B, H, N, Dh) tokens with the (B, 1, N, 2, Dh/4) tables of `cos_sin`."""
        return _Rotate.apply(tokens, c, s)

    def tables(self, positions: torch.Tensor, head_dim: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """`cos_sin`, looked up once per positions tensor: every block of a forward pass sees the same few."""
        return self._cached(positions, (head_dim, dtype), lambda: self.cos_sin(positions, head_dim, dtype))

    def complex_table(self, positions: torch.Tensor, head_dim: int, dtype) -> torch.Tensor:
        """(B, N, 2) positions -> cos + i sin (B, N, Dh/2) complex, ordered (axis, frequency): the rotation of
        features stored as adjacent (a, b) pairs (`fused_attention.interleaved_rows`). Cached as `tables`."""
        def make():
            c, s = self.tables(positions, head_dim, dtype)  # (B, 1, N, 2, Dh/4) each
            return torch.complex(c, s).squeeze(1).flatten(-2)  # (B, N, Dh/2)
        return self._cached(positions, (head_dim, dtype, "complex"), make)

    def _cached(self, positions, key, make):
        for pos, k, value in self._recent:
            if pos is positions and k == key:
                return value
        value = make()
        self._recent = [(positions, key, value)] + self._recent[:5]
        return value

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # the compiler removes repeated look-ups and fuses the rotation itself
            return _rotate_functional(tokens, *self.cos_sin(positions, tokens.shape[-1], tokens.dtype))
        return self.rotate(tokens, *self.tables(positions, tokens.shape[-1], tokens.dtype))

    def extra_repr(self) -> str:
        return f"freq={self.base:g}, F0={self.F0:g}"
