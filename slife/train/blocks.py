"""Transformer pieces of CroCo: Mlp, Attention, CrossAttention, Block, DecoderBlock, PatchEmbed, patchify.

Reads: token tensors (B, N, C) with integer patch positions (B, N, 2) as (row y, column x).
Returns: token tensors of the same shape; `CrossAttention`/`DecoderBlock` optionally also return the
cross-attention logits q.k * scale per head (B, heads, N_query, N_key), before the softmax.
Entry points: the modules below, built by `train/model.py` (and `train/vit.py`, the heads), and
`init_linears_and_norms`. Parameter names and shapes are those of
naver/croco `models/blocks.py` (so its checkpoints load). Attention runs through
`torch.nn.functional.scaled_dot_product_attention` (`attend` picks its fastest backend; the logits option
computes softmax(q k^T * scale) v explicitly); position maths lives in `train/pos_embed.py`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from slife.train import fused_attention

try:  # torch >= 2.2
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover - older torch: plain formula below
    sdpa_kernel = None


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, H, Nq, Dh), (B, H, Nk, Dh) -> (B, H, Nq, Dh), the fastest way here.

    On CPU in bf16/fp16 the fused flash kernel of scaled_dot_product_attention is 3-4x slower than its
    math path (bench/model.md), so low precision on CPU takes the math path; everything else the fused one."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        if sdpa_kernel is None:
            return ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1) @ v
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def to_pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
                 act_layer=nn.GELU, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features or in_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features or in_features, out_features or in_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and optional 2D RoPE on q and k."""

    def __init__(self, dim: int, rope=None, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, xpos: torch.Tensor, split: int | None = None) -> torch.Tensor:
        """x (B, N, C), positions (B, N, 2) -> (B, N, C). With `split`, tokens [:split] and [split:] are two
        separate sets (two images packed into one pass): each attends only within its own set."""
        B, N, C = x.shape
        H, Dh = self.num_heads, C // self.num_heads
        if fused_attention.use_fused(x, self.qkv.weight):  # CPU training: RoPE + attention as one autograd node
            w, b, rot = self.qkv.weight, self.qkv.bias, None
            if self.rope is not None:  # q, k rows reordered so that RoPE is a complex product (see fused_attention)
                w, b = (None if t is None else fused_attention.interleave(t, H, Dh, groups=3, rotated=2) for t in (w, b))
                rot = self.rope.complex_table(xpos, Dh, x.dtype)
            qkv = F.linear(x, w, b).view(B, N, 3, H, Dh)  # (B, N, 3, H, Dh)
            return self.proj(fused_attention.self_attention(qkv, rot, self.scale, split))
        qkv = self.qkv(x).view(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)  # (3, B, H, N, Dh)
        if self.rope is not None:  # q and k rotated in one call: (2, B, H, N, Dh)
            q, k = self.rope(qkv[:2], xpos).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)  # (B, H, N, Dh) each
        if split is None:
            x = attend(q, k, v, self.scale)  # (B, H, N, Dh)
        else:
            x = torch.cat([attend(q[:, :, :split], k[:, :, :split], v[:, :, :split], self.scale),
                           attend(q[:, :, split:], k[:, :, split:], v[:, :, split:], self.scale)], dim=2)  # (B, H, N, Dh)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head attention of queries on keys/values of another token set (separate q, k, v projections)."""

    def __init__(self, dim: int, rope=None, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)  # (..., N, C) -> (..., H, N, Dh)

    def forward(self, query, key, value, qpos, kpos, return_logits: bool = False):
        """query (B, Nq, C), key/value (B, Nk, C) -> (B, Nq, C) [, logits (B, H, Nq, Nk)]."""
        B, Nq, C = query.shape
        H, Dh = self.num_heads, C // self.num_heads
        if key is value and not return_logits and fused_attention.use_fused(query, self.projq.weight):
            # CPU training: one autograd node; k and v in one matmul; q, k rows interleaved for RoPE
            wq, bq, wk, bk, rq, rk = self.projq.weight, self.projq.bias, self.projk.weight, self.projk.bias, None, None
            if self.rope is not None:
                wq, bq, wk, bk = (None if t is None else fused_attention.interleave(t, H, Dh) for t in (wq, bq, wk, bk))
                rq, rk = self.rope.complex_table(qpos, Dh, query.dtype), self.rope.complex_table(kpos, Dh, key.dtype)
            w = torch.cat((wk, self.projv.weight))  # (2C, C)
            b = None if bk is None else torch.cat((bk, self.projv.bias))  # (2C,)
            q = F.linear(query, wq, bq).view(B, Nq, H, Dh)  # (B, Nq, H, Dh)
            kv = F.linear(key, w, b).view(B, -1, 2, H, Dh)  # (B, Nk, 2, H, Dh)
            return self.proj(fused_attention.cross_attention(q, kv, rq, rk, self.scale))
        q = self._heads(self.projq(query))  # (B, H, Nq, Dh)
        if key is value:  # the decoder's case: one matmul for k and v
            w = torch.cat((self.projk.weight, self.projv.weight))  # (2C, C)
            b = None if self.projk.bias is None else torch.cat((self.projk.bias, self.projv.bias))  # (2C,)
            kv = F.linear(key, w, b).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)  # (2, B, H, Nk, Dh)
            k, v = kv.unbind(0)  # (B, H, Nk, Dh) each
        else:
            k, v = self._heads(self.projk(key)), self._heads(self.projv(value))  # (B, H, Nk, Dh) each
        if self.rope is not None:
            q, k = self.rope(q, qpos), self.rope(k, kpos)
        if return_logits:
            logits = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, Nq, Nk), pre-softmax
            x = logits.softmax(dim=-1) @ v  # (B, H, Nq, Dh)
        else:
            x = attend(q, k, v, self.scale)  # (B, H, Nq, Dh)
        x = self.proj(x.transpose(1, 2).reshape(B, Nq, C))  # (B, Nq, C)
        return (x, logits) if return_logits else x


class Block(nn.Module):
    """Pre-norm transformer encoder block: x + attn(norm1 x), then x + mlp(norm2 x)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 act_layer=nn.GELU, norm_layer=nn.LayerNorm, rope=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer)

    def forward(self, x: torch.Tensor, xpos: torch.Tensor, split: int | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), xpos, split)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention on x, cross-attention of x on the memory y (normed by norm_y), MLP; returns (x, y)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 act_layer=nn.GELU, norm_layer=nn.LayerNorm, norm_mem: bool = True, rope=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.cross_attn = CrossAttention(dim, rope=rope, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer)
        self.norm_y = norm_layer(dim) if norm_mem else nn.Identity()

    def forward(self, x, y, xpos, ypos, return_logits: bool = False):
        """x (B, Nx, C), y (B, Ny, C) -> (x, y) or (x, y, logits (B, H, Nx, Ny)) with return_logits."""
        x = x + self.attn(self.norm1(x), xpos)
        y_ = self.norm_y(y)  # (B, Ny, C)
        ca = self.cross_attn(self.norm2(x), y_, y_, xpos, ypos, return_logits=return_logits)
        x = x + (ca[0] if return_logits else ca)
        x = x + self.mlp(self.norm3(x))
        return (x, y, ca[1]) if return_logits else (x, y)


class PatchEmbed(nn.Module):
    """Image (B, 3, H, W) -> patch tokens (B, N, D) and positions (B, N, 2) long (row y, column x), row-major.

    Any H, W divisible by the patch size is accepted (`img_size` is the training size)."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.img_size = to_pair(img_size)
        self.patch_size = to_pair(patch_size)
        if self.img_size[0] % self.patch_size[0] or self.img_size[1] % self.patch_size[1]:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self._pos: dict = {}  # (rows, cols, device) -> (1, N, 2) long

    def grid(self, H: int, W: int) -> tuple[int, int]:
        p = self.patch_size
        if H % p[0] or W % p[1]:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p[0]}x{p[1]}")
        return H // p[0], W // p[1]

    def positions(self, rows: int, cols: int, device) -> torch.Tensor:
        key = (rows, cols, str(device))
        if key not in self._pos:
            yy, xx = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
            self._pos[key] = torch.stack((yy, xx), dim=-1).view(1, rows * cols, 2)  # (1, N, 2) (y, x)
        return self._pos[key]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, H, W = x.shape
        rows, cols = self.grid(H, W)
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        return x, self.positions(rows, cols, x.device).expand(B, -1, -1)  # (B, N, D), (B, N, 2)

    def init_weights(self) -> None:
        w = self.proj.weight.data  # (D, 3, p, p): xavier as for a linear layer on the flattened patch
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))


def init_linears_and_norms(module: nn.Module, init_weight=nn.init.xavier_uniform_) -> None:
    """MAE/timm-style init of every Linear in `module` (weight by `init_weight`, zero bias) and every LayerNorm
    (unit weight, zero bias)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            init_weight(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches row-major, pixels ordered (row, column, channel)."""
    B, C, H, W = imgs.shape
    p = patch_size
    x = imgs.reshape(B, C, H // p, p, W // p, p)  # (B, C, h, p, w, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)  # (B, N, p*p*C)


def unpatchify(x: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """(B, N, p*p*C) -> (B, C, rows*p, cols*p); inverse of `patchify`."""
    B = x.shape[0]
    p, (h, w) = patch_size, grid
    x = x.reshape(B, h, w, p, p, channels)  # (B, h, w, p, p, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, channels, h * p, w * p)  # (B, C, H, W)
