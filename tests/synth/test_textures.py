"""Procedural textures: every kind is rich (not flat), in range, tileable where it should be."""

import numpy as np
import pytest

from slife.synth.textures import PHOTO_KINDS, TEXTURE_KINDS, fbm, make_texture, mip_levels, periodic_noise


@pytest.mark.parametrize("kind", list(TEXTURE_KINDS) + list(PHOTO_KINDS))
def test_texture_is_rich(kind):
    img = make_texture(kind, 64, np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and img.dtype == np.float32
    assert 0 <= img.min() and img.max() <= 1
    blocks = img.reshape(8, 8, 8, 8, 3).std(axis=(1, 3)).mean(-1)  # 8x8 patches
    assert (blocks > 0.01).mean() > 0.9  # almost no flat patch
    assert not np.allclose(img, make_texture(kind, 64, np.random.default_rng(1)))


def test_noise_tiles_seamlessly():
    n = periodic_noise(64, 8, np.random.default_rng(0))
    inner = np.abs(np.diff(n, axis=1)).max()
    seam = np.abs(n[:, 0] - n[:, -1]).max()
    assert seam <= inner * 1.01
    f = fbm(64, np.random.default_rng(0))
    assert f.min() == 0 and f.max() == 1


def test_mip_levels_average():
    img = make_texture("brick", 32, np.random.default_rng(0))
    lv = mip_levels(img, 4)
    assert [a.shape[0] for a in lv] == [32, 16, 8, 4]
    assert np.allclose(lv[3].mean((0, 1)), img.mean((0, 1)), atol=1e-5)


def test_photo_surface_tiles_seamlessly():
    """A tinted surface photograph is mirrored 2x2: its opposite edges are equal, so walls show no seam."""
    img = make_texture("photo_surface", 64, np.random.default_rng(3))
    grain_free = PHOTO_KINDS["photo_surface"](64, np.random.default_rng(3))
    assert np.allclose(grain_free[:, 0], grain_free[:, -1]) and np.allclose(grain_free[0], grain_free[-1])
    assert img.shape == (64, 64, 3)
