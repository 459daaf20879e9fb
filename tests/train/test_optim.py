"""AdamW groups (no decay on 1-D params, positions, tokens), the lr rule and schedule, clipping."""

import math

import pytest
import torch

from slife.train.optim import clip_gradients, lr_at, make_optimizer, no_weight_decay, scaled_lr


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_pos_embed = torch.nn.Parameter(torch.zeros(1, 4, 8))
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, 8))
        self.fc = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)


def test_param_groups_and_betas():
    net = _Net()
    opt = make_optimizer(net, 1e-3, weight_decay=0.05)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([8, 8])]  # only fc.weight
    assert len(no_decay["params"]) == 5  # pos embed, mask token, fc.bias, norm weight+bias
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert no_weight_decay("dec_blocks.0.attn.qkv.bias", torch.zeros(3))
    assert not no_weight_decay("dec_blocks.0.attn.qkv.weight", torch.zeros(3, 3))


def test_lr_rule_and_schedule():
    assert scaled_lr(1.5e-4, 256) == pytest.approx(1.5e-4)
    assert scaled_lr(1.5e-4, 512) == pytest.approx(3e-4)
    lr, w, T = 1e-3, 10, 110
    assert lr_at(0, lr, w, T) == pytest.approx(1e-4)  # warmup starts above 0
    assert lr_at(9, lr, w, T) == pytest.approx(1e-3)
    assert lr_at(10, lr, w, T) == pytest.approx(1e-3)
    assert lr_at(60, lr, w, T, min_lr=1e-5) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # cosine midpoint
    assert lr_at(110, lr, w, T, min_lr=1e-5) == pytest.approx(1e-5)
    lrs = [lr_at(s, lr, w, T) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay after warmup


def test_clip_gradients():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert clip_gradients([p], None) == pytest.approx(5.0)
    assert clip_gradients([p], 1.0) == pytest.approx(5.0)  # returns the norm before clipping
    assert math.isclose(float(p.grad.norm()), 1.0, rel_tol=1e-5)
