"""slife/train/multicrop.py: DINO's multi-crop of each view of a pair batch, crop-major, deterministic."""

import numpy as np
import pytest
import torch
from PIL import Image

from trainkit import texture
from slife.train.augment import to_model_input
from slife.train.multicrop import MultiCrop


def _batch(mc: MultiCrop, pairs: int, seed: int = 0):
    ims = [Image.fromarray(texture(np.random.default_rng(i), 90)) for i in range(2 * pairs)]
    b = mc.new_batch(pairs, np.random.default_rng(seed))
    for i in range(pairs):
        mc.fill_view(b, i, 0, ims[2 * i])
        mc.fill_view(b, i, 1, ims[2 * i + 1])
    return mc.finish(b, pairs), ims


def test_shapes_order_and_determinism():
    mc = MultiCrop(32, 16, local_crops=3, global_scale=(0.9, 1.0), local_scale=(0.3, 0.3))
    out, ims = _batch(mc, 2)
    assert out["global"].shape == (8, 3, 32, 32) and out["global"].dtype == torch.uint8  # 2 crops x 4 frames
    assert out["local"].shape == (12, 3, 16, 16) and out["local_color"].shape == (12, 4)
    again, _ = _batch(mc, 2)
    assert all(torch.equal(out[k], again[k]) for k in out)  # same draws, same crops
    other, _ = _batch(mc, 2, seed=1)
    assert not torch.equal(out["global"], other["global"])
    # crop-major: global crop c of frame f is row c * F + f, and frame f is view f % 2 of pair f // 2; a crop
    # covering 90-100% of the frame looks like the frame (up to a flip, blur and solarisation of crop 1)
    small = [np.asarray(im.resize((32, 32), Image.BILINEAR)).astype(float) for im in ims]
    for f in range(4):
        crop = out["global"][f].permute(1, 2, 0).numpy().astype(float)  # crop 0 (blurred, never solarised)
        d = [min(np.abs(crop - s).mean(), np.abs(crop[:, ::-1] - s).mean()) for s in small]
        assert int(np.argmin(d)) == f, d
    x = to_model_input(out["global"], out["global_color"])
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32


def test_photometric_draws():
    mc = MultiCrop(16, 8, local_crops=2)
    u = np.random.default_rng(0).random((4000, 14))
    p = mc.colors(u)
    assert np.mean(np.all(p == [1, 1, 1, 0], axis=1)) == pytest.approx(0.2 * 0.8, abs=0.03)  # jitter off, colour kept
    assert np.mean(p[:, 2] == 0) == pytest.approx(0.2, abs=0.03)  # grayscale
    on = u[:, 5] < 0.8
    assert p[on, 0].min() >= 0.6 and p[on, 0].max() <= 1.4 and np.abs(p[on, 3]).max() <= 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="global_scale"):
        MultiCrop(32, 16, global_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="local_crops"):
        MultiCrop(32, 16, local_crops=-1)
