"""Attention with RoPE as one autograd node, for training on CPU.

Reads: the output of an attention layer's input projections viewed as heads: self-attention
qkv (B, N, 3, H, Dh); cross-attention q (B, Nq, H, Dh) and kv (B, Nk, 2, H, Dh); RoPE cos/sin tables
(B, 1, N, 2, Dh/4) from `RoPE2D.tables` (or None for no rotation).
Returns: softmax(q k^T * scale) v with the heads merged back, (B, Nq, H*Dh), ready for the output projection.
Entry points: `self_attention`, `cross_attention`, `use_fused`.

Why: on CPU a training step of a small model spends more time around its attention than in it. The
eager path (projection -> permute -> RoPE -> slices for packed images -> SDPA -> cat) makes autograd save
and rebuild every intermediate: the slices' backward fills a zero tensor the size of qkv and copies into
it, RoPE's backward writes a copy that the permute's backward copies again, and the CPU flash kernel
recomputes the scores in its backward. Here the forward saves the softmax probabilities (B*H, Nq, Nk) and
the rotated q, k and v; the backward is four batched matrix products, one softmax backward and the inverse
rotation, written straight into the gradient of the projection output (no zero fill, no extra add).
Same maths as `blocks.attend` with `RoPE2D` (tests compare outputs and gradients).
The probabilities cost B*H*Nq*Nk floats per layer of saved memory, as the math path of SDPA does;
`use_fused` keeps the flash kernel for GPUs, low precision, inference and torch.compile.
"""

from __future__ import annotations

import torch

from slife.train.pos_embed import rotate_into


def use_fused(t: torch.Tensor) -> bool:
    """True where this module is the faster training path: CPU, float32/64, autograd on, eager mode."""
    return (t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and t.requires_grad
            and torch.is_grad_enabled() and not torch.compiler.is_compiling())


def _heads(t: torch.Tensor, c, s) -> torch.Tensor:
    """(B, N, H, Dh) strided view -> (B, H, N, Dh) contiguous, rotated by RoPE (c, s) if given."""
    t = t.transpose(1, 2).contiguous()  # (B, H, N, Dh)
    if c is None:
        return t
    return rotate_into(torch.empty_like(t), t, c, s)


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


def _backward(dout, q, k, v, probs, scale: float, segs, cq, sq, ck, sk, dq_out, dk_out, dv_out) -> None:
    """Gradients of `_forward` written into dq_out (B, Nq, H, Dh), dk_out, dv_out (B, Nk, H, Dh) (strided
    views of the projection gradient); q and k gradients rotated back by RoPE (angle -theta)."""
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
        dq, dk, dv = (t.view(B, H, -1, Dh) for t in (dq, dk, dv))  # (B, H, n, Dh)
        if cq is not None:
            dq = rotate_into(torch.empty_like(dq), dq, cq[:, :, q0:q1], -sq[:, :, q0:q1])
            dk = rotate_into(torch.empty_like(dk), dk, ck[:, :, k0:k1], -sk[:, :, k0:k1])
        dq_out[:, q0:q1].copy_(dq.transpose(1, 2))
        dk_out[:, k0:k1].copy_(dk.transpose(1, 2))
        dv_out[:, k0:k1].copy_(dv.transpose(1, 2))


class _SelfAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, c, s, scale, split):
        B, N, _, H, Dh = qkv.shape
        q, k = _heads(qkv[:, :, 0], c, s), _heads(qkv[:, :, 1], c, s)  # (B, H, N, Dh) each
        v = _heads(qkv[:, :, 2], None, None)
        segs = [((0, N), (0, N))] if split is None else [((0, split), (0, split)), ((split, N), (split, N))]
        out, probs = _forward(q, k, v, scale, segs)
        ctx.save_for_backward(q, k, v, c, s, *probs)
        ctx.scale, ctx.segs = scale, segs
        return out.view(B, N, H * Dh)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, c, s, *probs = ctx.saved_tensors
        B, H, N, Dh = q.shape
        dqkv = q.new_empty(B, N, 3, H, Dh)  # every element is written below
        _backward(dout, q, k, v, probs, ctx.scale, ctx.segs, c, s, c, s, dqkv[:, :, 0], dqkv[:, :, 1], dqkv[:, :, 2])
        return dqkv, None, None, None, None


class _CrossAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, kv, cq, sq, ck, sk, scale):
        B, Nq, H, Dh = q.shape
        qh = _heads(q, cq, sq)  # (B, H, Nq, Dh)
        kh, vh = _heads(kv[:, :, 0], ck, sk), _heads(kv[:, :, 1], None, None)  # (B, H, Nk, Dh) each
        segs = [((0, Nq), (0, kv.shape[1]))]
        out, probs = _forward(qh, kh, vh, scale, segs)
        ctx.save_for_backward(qh, kh, vh, cq, sq, ck, sk, *probs)
        ctx.scale, ctx.segs = scale, segs
        return out.view(B, Nq, H * Dh)

    @staticmethod
    def backward(ctx, dout):
        qh, kh, vh, cq, sq, ck, sk, *probs = ctx.saved_tensors
        B, H, Nq, Dh = qh.shape
        dq = qh.new_empty(B, Nq, H, Dh)
        dkv = kh.new_empty(B, kh.shape[2], 2, H, Dh)
        _backward(dout, qh, kh, vh, probs, ctx.scale, ctx.segs, cq, sq, ck, sk, dq, dkv[:, :, 0], dkv[:, :, 1])
        return dq, dkv, None, None, None, None, None


def self_attention(qkv: torch.Tensor, cs, scale: float, split: int | None = None) -> torch.Tensor:
    """qkv (B, N, 3, H, Dh), cs = RoPE (cos, sin) (B, 1, N, 2, Dh/4) or None -> (B, N, H*Dh). With `split`,
    tokens [:split] and [split:] attend only within their own set."""
    c, s = cs if cs is not None else (None, None)
    return _SelfAttention.apply(qkv, c, s, scale, split)


def cross_attention(q: torch.Tensor, kv: torch.Tensor, csq, csk, scale: float) -> torch.Tensor:
    """q (B, Nq, H, Dh), kv (B, Nk, 2, H, Dh), RoPE tables of the query and key positions or None ->
    (B, Nq, H*Dh)."""
    cq, sq = csq if csq is not None else (None, None)
    ck, sk = csk if csk is not None else (None, None)
    return _CrossAttention.apply(q, kv, cq, sq, ck, sk, scale)
