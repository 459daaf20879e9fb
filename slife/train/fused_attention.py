"""Attention with RoPE as one autograd node, for training on CPU.

Reads: the output of an attention layer's input projections viewed as heads: self-attention
qkv (B, N, 3, H, Dh); cross-attention q (B, Nq, H, Dh) and kv (B, Nk, 2, H, Dh). With RoPE, the q and k
features of each head come in `interleave` order (the projection's weight rows permuted, see
`interleaved_rows`), and the rotation is a complex product with the (B, N, Dh/2) table of
`RoPE2D.complex_table`. Returns: softmax(q k^T * scale) v with the heads merged back, (B, Nq, H*Dh), ready
for the output projection. Entry points: `self_attention`, `cross_attention`, `use_fused`, `interleave`.

Why: on CPU a training step of a small model spends more time around its attention than in it. The
eager path (projection -> permute -> RoPE -> slices for packed images -> SDPA -> cat) makes autograd save
and rebuild every intermediate: the slices' backward fills a zero tensor the size of qkv and copies into
it, RoPE's backward writes a copy that the permute's backward copies again, and the CPU flash kernel
recomputes the scores in its backward. Here the forward saves the softmax probabilities (B*H, Nq, Nk) and
the rotated q, k and v; the backward is four batched matrix products, one softmax backward and the inverse
rotation, written straight into the gradient of the projection output (no zero fill, no extra add).

RoPE pairs feature j of a head with feature j + Dh/4 (per axis), so rotating in that order takes four
element-wise passes over 8-16-float runs. Attention scores only need q.k, which any permutation of the
features applied to both q and k keeps: with the projection rows reordered so that each pair is adjacent,
the rotation is one complex multiplication, done while the heads are transposed (5-10x faster than the
copy and rotation it replaces). v keeps its order, so the output is unchanged.
Same maths as `blocks.attend` with `RoPE2D` (tests compare outputs and gradients). The probabilities cost
B*H*Nq*Nk floats of saved memory per layer, as the math path of SDPA does; `use_fused` keeps the flash
kernel for GPUs, low precision, inference and torch.compile.
"""

from __future__ import annotations

import torch


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def use_fused(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True where this module is the faster path for a layer with input x and projection `weight`: CPU,
    float32/64 without autocast, autograd recording (training), eager mode."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad) and not _autocast_on()
            and not torch.compiler.is_compiling())


_ROWS: dict = {}


def interleaved_rows(num_heads: int, head_dim: int, groups: int = 1, rotated: int = 1) -> torch.Tensor:
    """Order of the rows of a projection to `groups` stacked parts of C = num_heads*head_dim features (q|k|v:
    3) that puts each RoPE pair of the first `rotated` parts side by side: per head and axis, features
    (a_0, b_0, a_1, b_1, ...) instead of (a_0, a_1, ..., b_0, b_1, ...). -> (groups*C,) long."""
    n = head_dim // 4
    j = torch.arange(n)
    pairs = torch.stack([j, j + n], dim=1).flatten()  # (Dh/2,) a_0, b_0, a_1, b_1, ...
    head = torch.cat([pairs, head_dim // 2 + pairs])  # (Dh,) both axes
    C = num_heads * head_dim
    part = (torch.arange(num_heads)[:, None] * head_dim + head).flatten()  # (C,)
    return torch.cat([g * C + (part if g < rotated else torch.arange(C)) for g in range(groups)])


class _Rows(torch.autograd.Function):
    """t[rows] whose backward gathers with the inverse permutation (autograd's indexing backward would
    scatter into a zero-filled tensor: two more passes over a weight, 2-3% of a base step)."""

    @staticmethod
    def forward(ctx, t, rows, inverse):
        ctx.save_for_backward(inverse)
        return t.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def interleave(t: torch.Tensor, num_heads: int, head_dim: int, groups: int = 1, rotated: int = 1) -> torch.Tensor:
    """A projection's weight (groups*C, C_in) or bias (groups*C,) with its rows in `interleaved_rows` order."""
    key = (num_heads, head_dim, groups, rotated, str(t.device))
    if key not in _ROWS:
        rows = interleaved_rows(num_heads, head_dim, groups, rotated)
        _ROWS[key] = rows.to(t.device), torch.argsort(rows).to(t.device)
    return _Rows.apply(t, *_ROWS[key])


def _cview(t: torch.Tensor) -> torch.Tensor:
    """(..., Dh) float -> (..., Dh/2) complex view of adjacent pairs."""
    return torch.view_as_complex(t.unflatten(-1, (-1, 2)))


def _heads(t: torch.Tensor, rot) -> torch.Tensor:
    """(B, N, G, H, Dh) strided view -> (G, B, H, N, Dh) contiguous, rotated by the complex table rot
    (B, N, Dh/2) (pairs adjacent) if given."""
    B, N, G, H, Dh = t.shape
    out = t.new_empty(G, B, H, N, Dh)
    if rot is None:
        out.copy_(t.permute(2, 0, 3, 1, 4))
    else:
        torch.mul(_cview(t), rot[:, :, None, None], out=_cview(out).permute(1, 3, 0, 2, 4))
    return out


def _unheads(dst: torch.Tensor, g: torch.Tensor, rot_conj) -> None:
    """Write (B, H, n, Dh) g into the (B, n, H, Dh) view dst, rotated back by rot_conj (B, n, Dh/2) if given."""
    if rot_conj is None:
        dst.copy_(g.transpose(1, 2))
    else:
        torch.mul(_cview(g).transpose(1, 2), rot_conj[:, :, None], out=_cview(dst))


def _forward(q, k, v, scale: float, segs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """q (B, H, Nq, Dh), k, v (B, H, Nk, Dh) contiguous; segs: [((q0, q1), (k0, k1))] token ranges that attend
    to each other -> out (B, Nq, H, Dh), softmax probabilities per segment [(B*H, nq, nk)]."""
    B, H, Nq, Dh = q.shape
    out = q.new_empty(B, Nq, H, Dh)
    probs = []
    for (q0, q1), (k0, k1) in segs:
        qs = q[:, :, q0:q1].reshape(B * H, q1 - q0, Dh)  # views: slices of contiguous (B, H, N, Dh) merge B, H
        ks = k[:, :, k0:k1].reshape(B * H, k1 - k0, Dh)
        vs = v[:, :, k0:k1].reshape(B * H, k1 - k0, Dh)
        scores = torch.baddbmm(qs.new_empty(()).expand(B * H, q1 - q0, k1 - k0), qs, ks.mT, beta=0.0, alpha=scale)
        p = torch.softmax(scores, dim=-1)  # (B*H, nq, nk)
        o = torch.bmm(p, vs)  # (B*H, nq, Dh)
        out[:, q0:q1].copy_(o.view(B, H, q1 - q0, Dh).transpose(1, 2))
        probs.append(p)
    return out, probs


def _backward(dout, q, k, v, probs, scale: float, segs, rq, rk, dq_out, dk_out, dv_out) -> None:
    """Gradients of `_forward` written into dq_out (B, Nq, H, Dh), dk_out, dv_out (B, Nk, H, Dh) (strided
    views of the projection gradient); q and k gradients rotated back with the conjugate tables rq, rk."""
    B, H, Nq, Dh = q.shape
    do = dout.view(B, Nq, H, Dh).transpose(1, 2).contiguous()  # (B, H, Nq, Dh)
    for ((q0, q1), (k0, k1)), p in zip(segs, probs):
        nq, nk = q1 - q0, k1 - k0
        dos = do[:, :, q0:q1].reshape(B * H, nq, Dh)
        qs = q[:, :, q0:q1].reshape(B * H, nq, Dh)
        ks = k[:, :, k0:k1].reshape(B * H, nk, Dh)
        vs = v[:, :, k0:k1].reshape(B * H, nk, Dh)
        dp = torch.bmm(dos, vs.mT)  # (B*H, nq, nk)
        dv = torch.bmm(p.mT, dos)  # (B*H, nk, Dh)
        ds = torch._softmax_backward_data(dp, p, -1, p.dtype)  # (B*H, nq, nk)
        dq = torch.baddbmm(ds.new_empty(()).expand(B * H, nq, Dh), ds, ks, beta=0.0, alpha=scale)
        dk = torch.baddbmm(ds.new_empty(()).expand(B * H, nk, Dh), ds.mT, qs, beta=0.0, alpha=scale)
        _unheads(dq_out[:, q0:q1], dq.view(B, H, nq, Dh), None if rq is None else rq[:, q0:q1])
        _unheads(dk_out[:, k0:k1], dk.view(B, H, nk, Dh), None if rk is None else rk[:, k0:k1])
        _unheads(dv_out[:, k0:k1], dv.view(B, H, nk, Dh), None)


class _SelfAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, rot, scale, split):
        B, N, _, H, Dh = qkv.shape
        q, k = _heads(qkv[:, :, :2], rot).unbind(0)  # (B, H, N, Dh) each
        v = _heads(qkv[:, :, 2:], None)[0]
        segs = [((0, N), (0, N))] if split is None else [((0, split), (0, split)), ((split, N), (split, N))]
        out, probs = _forward(q, k, v, scale, segs)
        ctx.save_for_backward(q, k, v, rot, *probs)
        ctx.scale, ctx.segs = scale, segs
        return out.view(B, N, H * Dh)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, rot, *probs = ctx.saved_tensors
        B, H, N, Dh = q.shape
        dqkv = q.new_empty(B, N, 3, H, Dh)  # every element is written below
        rc = None if rot is None else rot.conj().resolve_conj()  # (B, N, Dh/2): angle -theta
        _backward(dout, q, k, v, probs, ctx.scale, ctx.segs, rc, rc, dqkv[:, :, 0], dqkv[:, :, 1], dqkv[:, :, 2])
        return dqkv, None, None, None


class _CrossAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, kv, rq, rk, scale):
        B, Nq, H, Dh = q.shape
        qh = _heads(q[:, :, None], rq)[0]  # (B, H, Nq, Dh)
        kh = _heads(kv[:, :, :1], rk)[0]  # (B, H, Nk, Dh)
        vh = _heads(kv[:, :, 1:], None)[0]
        segs = [((0, Nq), (0, kv.shape[1]))]
        out, probs = _forward(qh, kh, vh, scale, segs)
        ctx.save_for_backward(qh, kh, vh, rq, rk, *probs)
        ctx.scale, ctx.segs = scale, segs
        return out.view(B, Nq, H * Dh)

    @staticmethod
    def backward(ctx, dout):
        qh, kh, vh, rq, rk, *probs = ctx.saved_tensors
        B, H, Nq, Dh = qh.shape
        dq = qh.new_empty(B, Nq, H, Dh)
        dkv = kh.new_empty(B, kh.shape[2], 2, H, Dh)
        rqc, rkc = (None, None) if rq is None else (rq.conj().resolve_conj(), rk.conj().resolve_conj())
        _backward(dout, qh, kh, vh, probs, ctx.scale, ctx.segs, rqc, rkc, dq, dkv[:, :, 0], dkv[:, :, 1])
        return dq, dkv, None, None, None


def self_attention(qkv: torch.Tensor, rot, scale: float, split: int | None = None) -> torch.Tensor:
    """qkv (B, N, 3, H, Dh) (q and k rows in `interleaved_rows` order when rot is given), rot = RoPE table
    (B, N, Dh/2) complex or None -> (B, N, H*Dh). With `split`, tokens [:split] and [split:] attend only
    within their own set."""
    return _SelfAttention.apply(qkv, rot, scale, split)


def cross_attention(q: torch.Tensor, kv: torch.Tensor, rq, rk, scale: float) -> torch.Tensor:
    """q (B, Nq, H, Dh), kv (B, Nk, 2, H, Dh) (q and k rows interleaved when rotated), RoPE tables of the
    query and key positions (B, N., Dh/2) complex or None -> (B, Nq, H*Dh)."""
    return _CrossAttention.apply(q, kv, rq, rk, scale)
