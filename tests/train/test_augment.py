"""Pair augmentation: crop sizes, determinism from the rng, asymmetric views, the colour maths."""

import numpy as np
import pytest
import torch
from PIL import Image

from slife.train.augment import (IMAGENET_MEAN, IMAGENET_STD, PairAugment, apply_color, default_resize_short,
                                 denormalize)


def _img(w=72, h=60, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_crop_size_and_default_short_side():
    aug = PairAugment(32)
    assert aug.short == default_resize_short(32) == 37
    assert aug.crop(_img(), np.random.default_rng(0)).shape == (32, 32, 3)
    assert PairAugment(224).short == 256


def test_same_rng_same_batch_and_views_differ():
    aug = PairAugment(32)
    pairs = [(_img(seed=i), _img(seed=i)) for i in range(3)]  # 'augmented' pairs: the same frame twice
    a = aug(pairs, np.random.default_rng([1, 0, 0, 5]))
    b = aug(pairs, np.random.default_rng([1, 0, 0, 5]))
    c = aug(pairs, np.random.default_rng([1, 0, 0, 6]))
    assert a["src"].shape == (3, 3, 32, 32) and a["src"].dtype == torch.float32
    assert torch.equal(a["src"], b["src"]) and torch.equal(a["tgt"], b["tgt"])
    assert not torch.equal(a["src"], c["src"])
    assert (a["src"] - a["tgt"]).abs().mean() > 0.1  # independent crops and jitter make the views differ


def test_identity_jitter_is_plain_normalisation():
    u8 = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    y = apply_color(u8, np.array([[1.0, 1.0, 1.0, 0.0]] * 2))
    ref = (torch.from_numpy(u8).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(denormalize(y), torch.from_numpy(u8).float() / 255, atol=1e-5)


def test_colour_factors():
    u8 = np.random.default_rng(1).integers(40, 200, (1, 3, 8, 8), dtype=np.uint8)
    x = u8.astype(np.float32) / 255
    bright = denormalize(apply_color(u8, np.array([[1.2, 1.0, 1.0, 0.0]]))).numpy()
    assert np.allclose(bright, np.clip(1.2 * x, 0, 1), atol=1e-5)
    gray = denormalize(apply_color(u8, np.array([[1.0, 1.0, 0.0, 0.0]]))).numpy()  # saturation 0
    assert np.allclose(gray[0, 0], gray[0, 1], atol=1e-5) and np.allclose(gray[0, 1], gray[0, 2], atol=1e-5)
    flat = denormalize(apply_color(u8, np.array([[1.0, 0.0, 1.0, 0.0]]))).numpy()  # contrast 0: mean gray
    mu = (np.array([0.299, 0.587, 0.114])[:, None, None] * x[0]).sum(0).mean()
    assert np.allclose(flat, mu, atol=1e-5)
    g = np.full((1, 3, 4, 4), 128, np.uint8)  # hue rotation keeps gray gray
    assert np.allclose(denormalize(apply_color(g, np.array([[1, 1, 1, 1.0]]))).numpy(), 128 / 255, atol=1e-5)


def test_bad_parameters():
    with pytest.raises(ValueError):
        PairAugment(32, resize_short=16)
    with pytest.raises(ValueError):
        PairAugment(32, brightness=1.5)
