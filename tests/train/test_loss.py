"""Tests for slife/train/loss.py: masked MSE with per-patch normalised targets."""

import torch

from slife.train.loss import MaskedMSE


def test_masked_mean_over_masked_patches():
    pred = torch.zeros(1, 2, 4)
    target = torch.tensor([[[1.0, 1, 1, 1], [2.0, 2, 2, 2]]])  # (1, 2, 4)
    mask = torch.tensor([[True, False]])
    assert MaskedMSE(norm_pix_loss=False)(pred, mask, target).item() == 1.0  # only patch 0 counts
    assert MaskedMSE(norm_pix_loss=False, masked=False)(pred, mask, target).item() == 2.5


def test_norm_pix_targets():
    target = torch.tensor([[[1.0, 3.0, 1.0, 3.0]]])  # mean 2, unbiased var 4/3
    pred = (target - 2.0) / (4.0 / 3.0 + 1e-6) ** 0.5  # the normalised target itself
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert MaskedMSE()(pred, mask, target).item() < 1e-10
    assert abs(MaskedMSE()(torch.zeros_like(pred), mask, target).item() - 0.75) < 1e-5  # mean of z^2 = 3/4


def test_bf16_inputs_give_float32_loss():
    pred = torch.randn(2, 3, 12).bfloat16()
    loss = MaskedMSE()(pred, torch.ones(2, 3, dtype=torch.bool), torch.randn(2, 3, 12))
    assert loss.dtype == torch.float32
