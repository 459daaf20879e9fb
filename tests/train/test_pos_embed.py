"""Tests for slife/train/pos_embed.py: sin-cos tables, 2D RoPE, table interpolation."""

import math

import torch

from slife.train.pos_embed import RoPE2D, interpolate_pos_embed, sincos_2d


def test_sincos_values():
    table = sincos_2d(8, (2, 3))  # (6, 8): [x sin(w0), x sin(w1), x cos.., y sin.., y cos..], w = 1, 1/100
    assert table.shape == (6, 8) and table.dtype == torch.float32
    y, x = 1, 2
    expected = [math.sin(x), math.sin(x / 100), math.cos(x), math.cos(x / 100),
                math.sin(y), math.sin(y / 100), math.cos(y), math.cos(y / 100)]
    assert torch.allclose(table[y * 3 + x], torch.tensor(expected), atol=1e-6)
    assert torch.equal(table[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def test_rope_explicit_rotation():
    rope = RoPE2D(freq=100.0)
    tok = torch.arange(1.0, 9.0).view(1, 1, 1, 8)  # (B, H, N, Dh=8): y-half 1..4, x-half 5..8
    pos = torch.tensor([[[2, 3]]])  # y=2, x=3
    out = rope(tok, pos)[0, 0, 0]
    # in a half of size 4: pairs (0, 2) and (1, 3), angles p * 100 ** (-0/4) = p and p * 100 ** (-2/4) = p / 10
    def rot(v, p):
        a0, a1 = p, p / 10
        return [v[0] * math.cos(a0) - v[2] * math.sin(a0), v[1] * math.cos(a1) - v[3] * math.sin(a1),
                v[2] * math.cos(a0) + v[0] * math.sin(a0), v[3] * math.cos(a1) + v[1] * math.sin(a1)]
    expected = rot([1, 2, 3, 4], 2) + rot([5, 6, 7, 8], 3)
    assert torch.allclose(out, torch.tensor(expected), atol=1e-5)


def test_rope_relative_and_norm_preserving():
    torch.manual_seed(0)
    rope = RoPE2D(100.0)
    q, k = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5, 16)  # (B, H, N, Dh)
    pos = torch.randint(0, 6, (2, 5, 2))
    shift = torch.tensor([4, 7])
    dots = rope(q, pos) @ rope(k, pos).transpose(-1, -2)
    dots_shifted = rope(q, pos + shift) @ rope(k, pos + shift).transpose(-1, -2)
    assert torch.allclose(dots, dots_shifted, atol=1e-4)  # depends only on relative positions
    assert torch.allclose(rope(q, pos).norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    both = rope(torch.stack((q, k)), pos)  # leading dimension broadcasts
    assert torch.allclose(both[1], rope(k, pos), atol=1e-6)


def test_interpolate_pos_embed():
    table = sincos_2d(16, (4, 4))
    assert interpolate_pos_embed(table, (4, 4), (4, 4)) is table
    const = torch.ones(16, 5)
    out = interpolate_pos_embed(const, (4, 4), (6, 3))
    assert out.shape == (18, 5) and torch.allclose(out, torch.ones(18, 5), atol=1e-5)


def test_rope_gradient():
    rope = RoPE2D(100.0)
    tok = torch.randn(2, 1, 2, 3, 8, dtype=torch.float64, requires_grad=True)  # (2, B, H, N, Dh)
    pos = torch.randint(0, 5, (1, 3, 2))
    c, s = rope.cos_sin(pos, 8, torch.float64)
    assert torch.autograd.gradcheck(lambda t: RoPE2D.rotate(t, c, s), (tok,))
    bf = rope(tok.detach().bfloat16(), pos)
    assert bf.dtype == torch.bfloat16 and torch.allclose(bf.double(), rope(tok.detach(), pos), atol=0.1)
