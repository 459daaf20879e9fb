"""Tests for slife/train/fused_attention.py: the CPU training path gives the SDPA path's outputs and gradients."""

import pytest
import torch

from slife.train import fused_attention
from slife.train.blocks import Attention, CrossAttention
from slife.train.model import CroCoNet
from slife.train.pos_embed import RoPE2D


def _run(module, inputs, fused: bool, monkeypatch):
    """Output and gradients (inputs, then parameters) of module(*inputs) with the fused path on or off."""
    if not fused:
        monkeypatch.setattr(fused_attention, "use_fused", lambda *a: False)
    module.zero_grad(set_to_none=True)
    xs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = module(*xs)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    monkeypatch.undo()
    return [out] + [x.grad for x in xs if x.grad is not None] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("rope", [None, RoPE2D(100.0)])
@pytest.mark.parametrize("split", [None, 3])
def test_self_attention_fused_equals_sdpa(rope, split, monkeypatch):
    torch.manual_seed(0)
    attn = Attention(32, rope=rope, num_heads=4, qkv_bias=True).double()
    x, pos = torch.randn(2, 9, 32, dtype=torch.float64), torch.randint(0, 4, (2, 9, 2))
    called = []
    real = fused_attention.self_attention
    monkeypatch.setattr(fused_attention, "self_attention", lambda *a: called.append(1) or real(*a))
    module = _Wrap(attn, lambda m, x_in: m.inner(x_in, pos, split))
    fused = _run(module, [x], True, monkeypatch)
    assert called, "the fused path was not taken"
    plain = _run(module, [x], False, monkeypatch)
    assert len(fused) == len(plain) == 2 + 4
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-12), (a - b).abs().max()


class _Wrap(torch.nn.Module):
    def __init__(self, inner, fn):
        super().__init__()
        self.inner, self.fn = inner, fn

    def forward(self, *xs):
        return self.fn(self, *xs)


@pytest.mark.parametrize("rope", [None, RoPE2D(100.0)])
def test_cross_attention_fused_equals_sdpa(rope, monkeypatch):
    torch.manual_seed(1)
    ca = CrossAttention(32, rope=rope, num_heads=4, qkv_bias=True).double()
    q_in, y = torch.randn(2, 5, 32, dtype=torch.float64), torch.randn(2, 7, 32, dtype=torch.float64)
    qpos, kpos = torch.randint(0, 3, (2, 5, 2)), torch.randint(0, 3, (2, 7, 2))
    module = _Wrap(ca, lambda m, a, b: m.inner(a, b, b, qpos, kpos))
    fused, plain = _run(module, [q_in, y], True, monkeypatch), _run(module, [q_in, y], False, monkeypatch)
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-12), (a - b).abs().max()


def test_training_step_fused_equals_sdpa(monkeypatch):
    """The whole model (packed encoder pass, decoder): same output and gradients both ways."""
    torch.manual_seed(2)
    model = CroCoNet(img_size=32, patch_size=8, enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32,
                     dec_depth=2, dec_num_heads=2, pos_embed="RoPE100").double()
    img1, img2 = torch.randn(3, 3, 32, 32, dtype=torch.float64), torch.randn(3, 3, 32, 32, dtype=torch.float64)
    mask = model.mask_generator(3, 16)
    module = _Wrap(model, lambda m, a, b: m.inner(a, b, mask)[0])
    fused, plain = _run(module, [img1, img2], True, monkeypatch), _run(module, [img1, img2], False, monkeypatch)
    for a, b in zip(fused, plain):
        assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def test_use_fused_only_for_cpu_float_training():
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(2, 3)
    assert fused_attention.use_fused(x, w)
    assert not fused_attention.use_fused(x, w.detach())  # inference keeps the flash kernel
    with torch.no_grad():
        assert not fused_attention.use_fused(x, w)
    assert not fused_attention.use_fused(x.bfloat16(), w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_attention.use_fused(x, w)


def test_interleaved_rows_pair_rope_features():
    """Rows of head 1 of k in a (q|k|v) projection with Dh = 8: pairs (j, j + 2) per axis, v untouched."""
    rows = fused_attention.interleaved_rows(num_heads=2, head_dim=8, groups=3, rotated=2)
    assert rows.shape == (48,) and sorted(rows.tolist()) == list(range(48))
    assert rows[16 + 8: 16 + 16].tolist() == [16 + 8 + i for i in (0, 2, 1, 3, 4, 6, 5, 7)]
    assert rows[32:].tolist() == list(range(32, 48))
