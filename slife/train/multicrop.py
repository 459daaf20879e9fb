"""DINO/DINOv2 multi-crop augmentation of the frames of a pair batch, made in the loader workers.

Reads: PIL RGB images of any size (the two stored views of each pair, DESIGN.md "Pair shards"): each view is
one frame. Every frame gets 2 global crops (random resized crops covering `global_scale` of the frame's area,
aspect ratio in [3/4, 4/3], resampled to S x S) and `local_crops` local ones (`local_scale`, s x s), each
flipped left-right with probability 0.5, with DINO's photometric draws: colour jitter (brightness, contrast
`jitter`, saturation `jitter`/2, hue `hue`) with probability 0.8, grayscale 0.2, Gaussian blur (sigma
0.1-2.0 px at 224 px, scaled to the crop) with probability 1.0 / 0.1 / 0.5 (global 1 / global 2 / local),
solarisation with probability 0.2 (global 2).
Returns (`finish`): {"global": uint8 (2*F, 3, S, S) crop-major (crop 0 of every frame, then crop 1),
"global_color": (2*F, 4), "local": uint8 (L*F, 3, s, s) crop-major, "local_color": (L*F, 4)} for F = 2 x pairs
frames (pair i's source view is frame 2i, its target 2i+1); `augment.to_model_input` applies the colour
parameters (jitter, grayscale as saturation 0) and normalises on the device. Crops, flips, blur and
solarisation happen here on uint8 pixels: blur commutes with the (linear) jitter, but solarisation comes
before the jitter here, after it in DINOv2.
Every random choice comes from the batch's numpy Generator (`new_batch`), drawn all at once, so the stream's
(seed, rank, worker, step) seeding makes resumed runs crop exactly as uninterrupted ones.
Entry point: `MultiCrop`, used by `objectives/dinov2.py`; the stream (`stream.py`) calls it as it calls
`augment.PairAugment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from slife.train.augment import default_resize_short, resample_into

# per crop: area, log aspect, x, y, flip, jitter on, brightness, contrast, saturation, hue, grayscale, blur on,
# blur sigma, solarise
DRAWS = 14


@dataclass(frozen=True)
class MultiCrop:
    """2 global + `local_crops` local crops of each frame of a pair batch (see the module docstring)."""

    global_size: int  # side S of the global crops (the model's training size)
    local_size: int  # side s of the local crops
    local_crops: int = 6  # local crops per frame (DINOv2: 8)
    global_scale: tuple[float, float] = (0.32, 1.0)  # share of the frame's area a global crop covers
    local_scale: tuple[float, float] = (0.05, 0.32)  # share of the frame's area a local crop covers
    jitter: float = 0.4  # brightness/contrast factors in [1-x, 1+x], saturation in [1-x/2, 1+x/2]
    hue: float = 0.1  # hue shift in [-x, x] turns

    def __post_init__(self):
        if self.global_size < 8 or self.local_size < 1 or self.local_crops < 0:
            raise ValueError(f"need global_size >= 8, local_size >= 1, local_crops >= 0; got {self.global_size}, "
                             f"{self.local_size}, {self.local_crops}")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must be LO, HI with 0 < LO <= HI <= 1, got {getattr(self, name)}")
        if not 0 <= self.jitter < 1 or not 0 <= self.hue <= 0.5:
            raise ValueError(f"jitter must be in [0, 1) and hue in [0, 0.5], got {self.jitter}, {self.hue}")

    @property
    def short(self) -> int:
        """Short side JPEGs may be decoded at (DCT draft): as the pair crops', so global crops keep detail."""
        return default_resize_short(self.global_size)

    @property
    def crops(self) -> int:
        return 2 + self.local_crops

    def new_batch(self, size: int, rng: np.random.Generator) -> dict:
        """Empty crop arrays for `size` pairs (2 * size frames), crop-major, RGB + a padding byte, and every
        random draw of the batch: "u" (2 * size frames, crops, DRAWS) uniforms."""
        S, s, F = self.global_size, self.local_size, 2 * size
        return {"global": np.empty((2, F, S, S, 4), np.uint8),  # filled in place
                "local": np.empty((self.local_crops, F, s, s, 4), np.uint8),
                "u": rng.random((F, self.crops, DRAWS))}

    def _box(self, size: tuple[int, int], u, scale: tuple[float, float]) -> tuple[float, float, float, float]:
        """A random resized crop box (x0, y0, x1, y1) of an image of `size` (w, h) from draws u (area, aspect, x, y):
        area share uniform in `scale`, aspect ratio log-uniform in [3/4, 4/3], sides clipped to the image."""
        W, H = size
        area = W * H * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
        w, h = min(W, math.sqrt(area * aspect)), min(H, math.sqrt(area / aspect))
        x0, y0 = u[2] * (W - w), u[3] * (H - h)
        return x0, y0, x0 + w, y0 + h

    def fill_view(self, batch: dict, i: int, view: int, im: Image.Image, augmented: bool = False) -> None:
        """Every crop of view `view` (0 source, 1 target) of pair i, i.e. frame 2i + view, from its draws.
        (`augmented` pairs need nothing more: every crop is already drawn independently.)"""
        if im.mode != "RGB":
            im = im.convert("RGB")
        f = 2 * i + view
        blur_p = (1.0, 0.1) + (0.5,) * self.local_crops
        for c in range(self.crops):
            u = batch["u"][f, c].tolist()
            glob = c < 2
            out = batch["global"][c, f] if glob else batch["local"][c - 2, f]  # (side, side, 4)
            resample_into(im, self._box(im.size, u, self.global_scale if glob else self.local_scale), out,
                          flip=u[4] < 0.5)
            if u[11] < blur_p[c]:
                sigma = (0.1 + 1.9 * u[12]) * out.shape[0] / 224  # DINO's sigma range at 224 px
                rgb = Image.fromarray(np.ascontiguousarray(out[..., :3])).filter(ImageFilter.GaussianBlur(sigma))
                out[..., :3] = np.asarray(rgb)
            if c == 1 and u[13] < 0.2:
                px = out[..., :3]
                px[...] = np.where(px >= 128, 255 - px, px)

    def colors(self, u: np.ndarray) -> np.ndarray:
        """Per-crop draws (..., DRAWS) -> jitter parameters float32 (..., 4): (brightness, contrast, saturation,
        hue turns), identity (1, 1, 1, 0) where the jitter is off (p 0.2), saturation 0 where grayscale (p 0.2)."""
        half = np.array([self.jitter, self.jitter, self.jitter / 2, self.hue])
        centre = np.array([1.0, 1.0, 1.0, 0.0])
        on = (u[..., 5:6] < 0.8)
        p = centre + on * half * (2 * u[..., 6:10] - 1)  # (..., 4)
        p[..., 2] = np.where(u[..., 10] < 0.2, 0.0, p[..., 2])
        return p.astype(np.float32)

    def finish(self, batch: dict, n: int) -> dict:
        """The crops of the first n pairs (2n frames) as tensors, crop-major (see the module docstring)."""
        F = 2 * n
        col = self.colors(batch["u"][:F])  # (F, crops, 4)
        out = {}
        for key, arr, cols in (("global", batch["global"][:, :F], col[:, :2]),
                               ("local", batch["local"][:, :F], col[:, 2:])):
            k, _, side = arr.shape[:3]
            t = torch.from_numpy(np.ascontiguousarray(arr)).reshape(k * F, side, side, 4)  # (k*F, side, side, 4)
            out[key] = t.permute(0, 3, 1, 2)[:, :3]  # (k*F, 3, side, side) uint8 view, channels-last
            out[f"{key}_color"] = torch.from_numpy(np.ascontiguousarray(cols.transpose(1, 0, 2))).reshape(k * F, 4)
        return out
