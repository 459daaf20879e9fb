"""Tests for slife/train/blocks.py: SDPA attention equals the explicit formula, logits option, patches."""

import pytest
import torch

from slife.train.blocks import Attention, CrossAttention, DecoderBlock, PatchEmbed, patchify, unpatchify
from slife.train.pos_embed import RoPE2D


def _explicit_attention(q, k, v, scale):
    return ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v


@pytest.mark.parametrize("rope", [None, RoPE2D(100.0)])
def test_self_attention_matches_explicit(rope):
    torch.manual_seed(0)
    attn = Attention(32, rope=rope, num_heads=4, qkv_bias=True)
    x, pos = torch.randn(2, 6, 32), torch.randint(0, 3, (2, 6, 2))
    qkv = attn.qkv(x).view(2, 6, 3, 4, 8).permute(2, 0, 3, 1, 4)  # (3, B, H, N, Dh)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if rope is not None:
        q, k = rope(q, pos), rope(k, pos)
    expected = attn.proj(_explicit_attention(q, k, v, 8 ** -0.5).transpose(1, 2).reshape(2, 6, 32))
    assert torch.allclose(attn(x, pos), expected, atol=1e-5)


@pytest.mark.parametrize("rope", [None, RoPE2D(100.0)])
def test_cross_attention_logits_reproduce_sdpa(rope):
    torch.manual_seed(1)
    ca = CrossAttention(32, rope=rope, num_heads=4, qkv_bias=True)
    q_in, y = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    qpos, kpos = torch.randint(0, 3, (2, 5, 2)), torch.randint(0, 3, (2, 7, 2))
    fast = ca(q_in, y, y, qpos, kpos)  # SDPA path, fused k/v projection
    slow, logits = ca(q_in, y, y, qpos, kpos, return_logits=True)
    assert logits.shape == (2, 4, 5, 7)
    assert torch.allclose(fast, slow, atol=1e-5)
    v = ca.projv(y).view(2, 7, 4, 8).transpose(1, 2)  # (B, H, Nk, Dh)
    by_hand = ca.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32))
    assert torch.allclose(by_hand, fast, atol=1e-5)
    # separate key and value tensors take the unfused path
    v_in = torch.randn(2, 7, 32)
    out, lg = ca(q_in, y, v_in, qpos, kpos, return_logits=True)
    assert torch.allclose(ca(q_in, y, v_in, qpos, kpos), out, atol=1e-5) and torch.allclose(lg, logits)


def test_decoder_block_logits_option():
    torch.manual_seed(2)
    blk = DecoderBlock(32, 4, qkv_bias=True, rope=RoPE2D(100.0))
    x, y = torch.randn(1, 4, 32), torch.randn(1, 4, 32)
    pos = torch.randint(0, 2, (1, 4, 2))
    x1, y1 = blk(x, y, pos, pos)
    x2, y2, logits = blk(x, y, pos, pos, return_logits=True)
    assert torch.allclose(x1, x2, atol=1e-5) and y1 is y and y2 is y and logits.shape == (1, 4, 4, 4)
    assert not hasattr(DecoderBlock(32, 4, norm_mem=False).norm_y, "weight")


def test_patch_embed_positions():
    pe = PatchEmbed(img_size=(16, 24), patch_size=8, embed_dim=10)
    assert pe.grid_size == (2, 3) and pe.num_patches == 6
    x, pos = pe(torch.randn(2, 3, 16, 24))
    assert x.shape == (2, 6, 10) and pos.shape == (2, 6, 2)
    assert pos[1].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]  # (y, x), row-major
    x, pos = pe(torch.randn(1, 3, 32, 8))  # other sizes work
    assert x.shape == (1, 4, 10) and pos[0, -1].tolist() == [3, 0]
    with pytest.raises(ValueError):
        pe(torch.randn(1, 3, 20, 24))
    with pytest.raises(ValueError):
        PatchEmbed(img_size=20, patch_size=8)


def test_patchify_layout_and_roundtrip():
    imgs = torch.randn(2, 3, 8, 12)
    x = patchify(imgs, 4)  # (2, 6, 48)
    assert x.shape == (2, 6, 48)
    # patch 4 = row 1, col 1; entry (r, c, ch) at (r * 4 + c) * 3 + ch
    assert x[1, 4, (2 * 4 + 3) * 3 + 1] == imgs[1, 1, 4 + 2, 4 + 3]
    assert torch.equal(unpatchify(x, 4, (2, 3)), imgs)
