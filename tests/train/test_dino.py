"""slife/train/dino.py (heads, targets, losses) and the DINOv2 objective's own parts (objectives/dinov2.py):
the teacher is an EMA of the student, the schedules, the masks."""

import math

import pytest
import torch

from trainkit import MICRO_DINO, MICRO_VIT
from slife.train import TrainConfig
from slife.train.dino import DINOHead, centered_softmax, dino_loss, ibot_loss, koleo_loss, sinkhorn_knopp, update_center

pytestmark = pytest.mark.usefixtures("one_thread")


def dinov2(steps: int = 100, **conf):
    from slife.train.objectives.dinov2 import DINOv2

    torch.manual_seed(0)
    cfg = TrainConfig(objective="dinov2", model_kwargs=MICRO_VIT, objective_conf={**MICRO_DINO, **conf}, steps=steps)
    return DINOv2.build(cfg)


def views(frames: int = 4, local: int = 2):
    g = torch.Generator().manual_seed(1)
    return {"global": torch.randn(2 * frames, 3, 32, 32, generator=g),
            "local": torch.randn(local * frames, 3, 16, 16, generator=g)}


def test_the_teacher_is_an_ema_of_the_student():
    obj = dinov2()
    s0 = {k: v.clone() for k, v in obj.student.state_dict().items()}
    assert all(torch.equal(v, obj.teacher.state_dict()[k]) for k, v in s0.items())  # starts as a copy
    assert not any(p.requires_grad for p in obj.teacher.parameters())
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.5)
    for step in range(3):
        t_before = {k: v.clone() for k, v in obj.teacher.state_dict().items()}
        loss, _ = obj(views(), step)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in obj.teacher.parameters())  # no gradient reaches the teacher
        opt.step()
        obj.after_step(step)
        m = obj.momentum(step)
        s = obj.student.state_dict()
        for k, t in obj.teacher.state_dict().items():
            assert torch.allclose(t, m * t_before[k] + (1 - m) * s[k], atol=1e-6), k
    w = "backbone.blocks.0.attn.qkv.weight"
    assert not torch.equal(obj.teacher.state_dict()[w], obj.student.state_dict()[w])  # it lags behind


def test_schedules():
    obj = dinov2(steps=100, momentum_teacher=0.99, teacher_temp_warmup=0.3)
    assert obj.momentum(0) == pytest.approx(0.99) and obj.momentum(50) == pytest.approx(0.995)
    assert obj.momentum(100) == pytest.approx(1.0)
    assert obj.teacher_temp(0) == pytest.approx(0.04) and obj.teacher_temp(15) == pytest.approx(0.055)
    assert obj.teacher_temp(30) == obj.teacher_temp(99) == pytest.approx(0.07)
    _, logs = obj(views(), 15)
    assert float(logs["teacher_temp"]) == pytest.approx(0.055)
    assert 0 < float(logs["teacher_entropy"]) <= math.log(128) + 1e-4


def test_masks_spread_over_the_ratio_range():
    obj = dinov2(mask_probability=0.5, mask_ratio=(0.25, 0.75))
    torch.manual_seed(0)
    m = obj.draw_masks(8, 16)
    per = m.sum(1)
    assert (per > 0).sum() == 4 and sorted(per[per > 0].tolist()) == [4, 7, 9, 12]
    assert obj.draw_masks(1, 16).any()  # at least one masked crop, so the mask token always gets a gradient


def test_sinkhorn_knopp_balances_prototypes():
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(64, 8, generator=g), dim=-1)
    scores[:, 0] += 0.5  # one prototype favoured by every sample
    q = sinkhorn_knopp(scores, 0.1)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-5)  # distributions
    assert q.sum(0).max() / q.sum(0).min() < 1.5  # used about equally, unlike the plain softmax
    p = torch.softmax(scores / 0.1, -1)
    assert p.sum(0).max() / p.sum(0).min() > 3
    center = torch.zeros(1, 8)
    update_center(center, scores, 0.0)
    assert torch.allclose(center, scores.mean(0, keepdim=True))
    assert torch.allclose(centered_softmax(scores, center, 0.1).sum(1), torch.ones(64), atol=1e-5)


def test_losses_by_hand():
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # targets of 2 images
    s_same = torch.tensor([[-10.0, 10.0], [10.0, -10.0]])  # a student crop that agrees: loss ~ 0
    assert float(dino_loss([s_same, s_same], [t, t], 1.0)) < 1e-6
    s_flat = torch.zeros(2, 2)
    # crop 0 is only compared with teacher crop 1 and vice versa; the flat student costs log 2 each
    assert float(dino_loss([s_same, s_flat], [t, t], 1.0)) == pytest.approx(math.log(2) / 2, abs=1e-6)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])  # 3 masked patches
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[0.0, 0.0], [10.0, -10.0], [-10.0, 10.0]])  # image 0: log 2 and ~0; image 2: ~0
    assert float(ibot_loss(s, q, mask, 1.0)) == pytest.approx((math.log(2) / 2 + 0) / 2, abs=1e-6)
    spread = torch.eye(4)
    bunched = torch.eye(4) + 3.0
    assert float(koleo_loss(spread)) < float(koleo_loss(bunched))  # KoLeo rewards spread-out features


def test_head_scores_are_cosines():
    h = DINOHead(16, prototypes=32, hidden=8, bottleneck=4)
    out = h(torch.randn(5, 16))
    assert out.shape == (5, 32) and out.abs().max() <= 1 + 1e-5
