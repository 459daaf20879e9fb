"""slife/train/pose.py (labels from poses, 6D rotations, the losses) and the egomotion objective's head: it
recovers a known relative rotation on synthetic pairs better than the best constant predictor."""

import math

import numpy as np
import pytest
import torch

from trainkit import MICRO_POSE, MICRO_VIT, rolled_window, texture
from slife.lives.geometry import make_pose
from slife.train import TrainConfig
from slife.train.augment import normalize
from slife.train.pose import pair_motion, pose_losses, rotation_6d, rotation_angle_deg

pytestmark = pytest.mark.usefixtures("one_thread")


def rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_pair_motion_is_camera_b_in_camera_as_frame():
    from scipy.spatial.transform import Rotation

    Ra = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    Ta = make_pose(Ra, [1.0, 2.0, 3.0])
    rel = make_pose(rz(25) @ Rotation.from_euler("x", 5, degrees=True).as_matrix(), [0.0, 0.0, 2.0])
    Tb = Ta @ rel  # b = a moved by `rel` expressed in a's frame
    bad = np.eye(4)
    bad[0, 0] = 2  # not a rotation
    metas = [{"T_a": Ta.tolist(), "T_b": Tb.tolist(), "strategy": "spatial"},
             {"T_a": Ta.tolist(), "T_b": Ta.tolist(), "strategy": "temporal", "frame_a": 1, "frame_b": 2},
             {"T_a": Ta.tolist(), "T_b": Tb.tolist(), "strategy": "augmented"},
             {"T_a": None, "T_b": Tb.tolist(), "strategy": "temporal"},
             {"T_a": bad.tolist(), "T_b": Tb.tolist(), "strategy": "spatial"}]
    m = pair_motion(metas)
    assert torch.allclose(m["R"][0], torch.from_numpy(rel[:3, :3]).float(), atol=1e-6)
    assert torch.allclose(m["t"][0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert m["valid_R"].tolist() == [True, True, False, False, False]
    assert m["valid_t"].tolist() == [True, False, False, False, False]  # no motion: no direction


def test_rotation_6d_and_losses():
    R = rotation_6d(torch.randn(16, 6))
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(16, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16), atol=1e-5)
    assert torch.allclose(rotation_6d(torch.tensor([[1.0, 0, 0, 0, 1, 0]]))[0], torch.eye(3))
    true = torch.from_numpy(np.stack([rz(30), rz(-60)])).float()
    motion = {"R": true, "t": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), "valid_R": torch.tensor([True, False]),
              "valid_t": torch.tensor([True, True])}
    out = pose_losses(torch.eye(3).expand(2, 3, 3), torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]), motion)
    assert float(out["rot_err_deg"]) == pytest.approx(30, abs=1e-3)  # only the first pair counts
    assert float(out["rotation"]) == pytest.approx(8 * math.sin(math.radians(15)) ** 2, abs=1e-5)
    assert float(out["translation"]) == pytest.approx(0.5) and float(out["trans_err_deg"]) == pytest.approx(45)
    assert float(rotation_angle_deg(true[:1], true[1:])) == pytest.approx(90, abs=1e-3)


def _rolled_pairs(n_tex: int, per_tex: int, seed: int):
    """Pairs of 32 px windows of textures, the target camera rolled by up to 30 degrees: views and labels."""
    rng = np.random.default_rng(seed)
    src, tgt, metas = [], [], []
    for _ in range(n_tex):
        tex = texture(rng, 96)
        for _ in range(per_tex):
            x, y = (int(v) for v in rng.integers(16, 48, 2))
            th = float(rng.uniform(-30, 30))
            src.append(tex[y:y + 32, x:x + 32])
            tgt.append(rolled_window(tex, x, y, 32, th))
            metas.append({"strategy": "spatial", "T_a": np.eye(4).tolist(),
                          "T_b": make_pose(rz(th), [1.0, 0.0, 0.0]).tolist()})
    to = lambda a: normalize(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 255)  # noqa: E731
    return {"src": to(src), "tgt": to(tgt), "motion": pair_motion(metas)}


def test_egomotion_recovers_a_known_relative_rotation_better_than_a_constant():
    from slife.train.objectives.egomotion import Egomotion

    torch.manual_seed(0)
    cfg = TrainConfig(objective="egomotion", model_kwargs=MICRO_VIT, steps=100,
                      objective_conf={**MICRO_POSE, "translation_weight": 0.0})
    obj = Egomotion.build(cfg)
    train, test = _rolled_pairs(32, 16, seed=0), _rolled_pairs(8, 16, seed=1)
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    sub = lambda v, ix: {"src": v["src"][ix], "tgt": v["tgt"][ix], "motion": {k: t[ix] for k, t in v["motion"].items()}}  # noqa: E731
    for step in range(100):
        loss, _ = obj(sub(train, torch.randint(0, 512, (32,), generator=g)), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        R, _ = obj._predict(test)
    err = float(rotation_angle_deg(R, test["motion"]["R"]).mean())
    # the best constant: the chordal mean of the training rotations (projected onto the rotations)
    u, _, vt = torch.linalg.svd(train["motion"]["R"].mean(0))
    const = (u @ vt).expand(len(R), 3, 3)
    err_const = float(rotation_angle_deg(const, test["motion"]["R"]).mean())
    assert 12 < err_const < 18  # mean |roll| of a uniform draw in [-30, 30]: 15 degrees
    assert err < 0.85 * err_const, (err, err_const)
