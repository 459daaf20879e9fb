"""Pair augmentation: crop sizes, determinism from the rng, asymmetric views, the colour maths, normalisation."""

import numpy as np
import pytest
import torch
from PIL import Image

from slife.train.augment import IMAGENET_MEAN, IMAGENET_STD, PairAugment, default_resize_short, denormalize, to_model_input


def _img(w=72, h=60, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_crop_size_and_default_short_side():
    aug = PairAugment(32)
    assert aug.short == default_resize_short(32) == 37
    assert aug.crop(_img(), np.random.default_rng(0)).size == (32, 32)
    assert PairAugment(224).short == 256
    im = _img(341, 256)  # already at the short side: a plain crop, pixels unchanged
    c = PairAugment(224).crop(im, np.random.default_rng(3))
    a, b = np.asarray(im), np.asarray(c)
    hits = [(y, x) for y in range(0, 33) for x in range(0, 118) if np.array_equal(a[y:y + 224, x:x + 224], b)]
    assert len(hits) == 1


def test_same_rng_same_batch_and_views_differ():
    aug = PairAugment(32)
    pairs = [(_img(seed=i), _img(seed=i)) for i in range(3)]  # 'augmented' pairs: the same frame twice
    a = aug(pairs, np.random.default_rng([1, 0, 0, 5]))
    b = aug(pairs, np.random.default_rng([1, 0, 0, 5]))
    c = aug(pairs, np.random.default_rng([1, 0, 0, 6]))
    assert a["src"].shape == (3, 3, 32, 32) and a["src"].dtype == torch.uint8 and a["src_color"].shape == (3, 4)
    for k in ("src", "tgt", "src_color", "tgt_color"):
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["src"], c["src"])
    assert (a["src"].float() - a["tgt"].float()).abs().mean() > 20  # independent crops differ
    assert not torch.equal(a["src_color"], a["tgt_color"])  # and so does the jitter (asymmetric)
    assert ((a["src_color"][:, :3] - 1).abs() <= 0.4).all() and (a["src_color"][:, 3] == 0).all()


def test_to_model_input_normalises():
    u8 = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8))
    y = to_model_input(u8)
    ref = (u8.float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert y.dtype == torch.float32 and torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(denormalize(y), u8.float() / 255, atol=1e-5)


def _jit(u8, params):
    return denormalize(to_model_input(torch.from_numpy(u8), torch.tensor(params, dtype=torch.float32))).numpy()


def test_colour_jitter():
    u8 = np.random.default_rng(1).integers(40, 200, (1, 3, 8, 8), dtype=np.uint8)
    x = u8.astype(np.float32) / 255
    assert np.allclose(_jit(u8, [[1, 1, 1, 0]]), x, atol=1e-5)
    assert np.allclose(_jit(u8, [[1.2, 1, 1, 0]]), np.clip(1.2 * x, 0, 1), atol=1e-5)  # brightness
    gray = _jit(u8, [[1, 1, 0, 0]])  # saturation 0: gray
    assert np.allclose(gray[0, 0], gray[0, 1], atol=1e-5) and np.allclose(gray[0, 1], gray[0, 2], atol=1e-5)
    mu = (np.array([0.299, 0.587, 0.114])[:, None, None] * x[0]).sum(0).mean()
    assert np.allclose(_jit(u8, [[1, 0, 1, 0]]), mu, atol=1e-5)  # contrast 0: the mean gray everywhere
    g = np.full((1, 3, 4, 4), 128, np.uint8)  # a hue shift keeps gray gray
    assert np.allclose(_jit(g, [[1, 1, 1, 0.3]]), 128 / 255, atol=1e-5)
    red = np.broadcast_to(np.array([200, 30, 30], np.uint8)[None, :, None, None], (1, 3, 2, 2)).copy()
    assert _jit(red, [[1, 1, 1, 1 / 3]])[0, :, 0, 0].argmax() == 1  # red + 120 degrees is green-ish


def test_bad_parameters():
    with pytest.raises(ValueError):
        PairAugment(32, resize_short=16)
    with pytest.raises(ValueError):
        PairAugment(32, brightness=1.5)


def _ramp(w=300, h=256):
    """R = x, G = y (so a crop's pixels say where they came from)."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    return Image.fromarray(np.stack([x % 256, y % 256, np.zeros_like(x)], -1).astype(np.uint8))


def test_augmented_pairs_are_zoomed_and_flipped():
    im = _ramp(200, 200)
    aug = PairAugment(64, resize_short=200, aug_zoom=(2.0, 2.0), aug_flip=1.0)
    c = np.asarray(aug.crop(im, np.random.default_rng(0), augmented=True)).astype(float)  # (64,64,3)
    dx = np.diff(c[32, :, 0]).mean()  # flipped: x decreases to the right; zoom 2: half a pixel per pixel
    dy = np.diff(c[:, 32, 1]).mean()
    assert dx == pytest.approx(-0.5, abs=0.05) and dy == pytest.approx(0.5, abs=0.05)
    plain = np.asarray(aug.crop(im, np.random.default_rng(0))).astype(float)  # other pairs: a plain crop
    assert np.diff(plain[32, :, 0]).mean() == pytest.approx(1.0, abs=0.01)
    # the batch call zooms/flips only the pairs marked augmented, each view with its own draw
    out = PairAugment(64, resize_short=200)([(im, im), (im, im)], np.random.default_rng(1), augmented=[True, False])
    s, t = out["src"].float(), out["tgt"].float()
    slope = lambda v: float(torch.diff(v[0, 32]).mean())  # noqa: E731  R channel along a row
    assert abs(slope(s[1])) == pytest.approx(1.0, abs=0.01) and abs(slope(t[1])) == pytest.approx(1.0, abs=0.01)
    zooms = [abs(slope(s[0])), abs(slope(t[0]))]
    assert all(1 / 1.45 <= z <= 1 / 0.69 for z in zooms) and zooms[0] != zooms[1]


@pytest.mark.parametrize("size,augmented", [((341, 256), False), ((300, 200), False), ((341, 256), True)])
def test_crop_into_copies_the_planned_window(size, augmented):
    from slife.train.augment import copy_rgb

    im = _img(*size, seed=5)
    aug = PairAugment(224, resize_short=256)
    out = np.zeros((224, 224, 4), np.uint8)
    u = np.random.default_rng(7).random(4).tolist()
    aug.crop_into(im, u, augmented, out)
    kind, a, b = aug._plan(im.size, u, augmented)  # same draws: the window to copy, or the box to resample
    if kind == "window":
        np.testing.assert_array_equal(out[..., :3], np.asarray(im)[b:b + 224, a:a + 224])
    else:  # torch's antialiased uint8 kernel on the box rounded to whole pixels ~ Pillow's BILINEAR on the box
        ref = im.resize((224, 224), Image.BILINEAR, box=tuple(float(round(v)) for v in a))
        ref = np.asarray(ref.transpose(Image.FLIP_LEFT_RIGHT) if b else ref).astype(int)
        diff = np.abs(out[..., :3].astype(int) - ref)
        assert diff[1:-1, 1:-1].max() <= 1  # the border pixels: Pillow's filter also reads outside the box
        assert diff.mean() < 0.5
    win = np.zeros((5, 6, 4), np.uint8)
    copy_rgb(im, win, 3, 2)  # a window of the pixel block, read in place
    np.testing.assert_array_equal(win[..., :3], np.asarray(im)[2:7, 3:9])


def test_copy_rgb_falls_back_for_images_in_several_blocks():
    from PIL import Image as PILImage

    from slife.train.augment import copy_rgb

    old = PILImage.core.get_block_size()
    PILImage.core.set_block_size(1 << 16)  # 64 KB blocks: this image's rows are not one block, no Arrow export
    try:
        im = _img(341, 256, seed=3)
        out = np.zeros((5, 6, 4), np.uint8)
        copy_rgb(im, out, 3, 2)
        np.testing.assert_array_equal(out[..., :3], np.asarray(im)[2:7, 3:9])
    finally:
        PILImage.core.set_block_size(old)
