"""CroCo-style pair augmentation: turn one decoded (source, target) image pair into training tensors.

Reads: PIL RGB images of any size (the stored pair views, DESIGN.md "Pair shards").
Returns: per batch {"src","tgt"}: float32 (B,3,S,S) ImageNet-normalised, S = `img_size`.
Each view independently: resize so its short side is `resize_short` (default round(img_size*8/7): 256 px
stored -> 224 px crops, as CroCo), take a random S x S crop (the two crops differ on purpose), and apply
its own colour jitter (brightness, contrast, saturation in [1-x, 1+x], optional hue; "asymmetric" as
CroCo's `acolor`). Because the jitter is linear in RGB it is applied to a whole batch as one per-image
3x3 affine map followed by a clamp to [0,1], which makes it nearly free.
Every random choice comes from a numpy Generator passed in; `stream.py` seeds it from
(seed, rank, worker, step) so a resumed run augments exactly as an uninterrupted one.
Entry point: `PairAugment`. Decoding and the sample stream are `stream.py`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # luma weights (sum 1), as torchvision


def default_resize_short(img_size: int) -> int:
    """Short side each view is resized to before its random crop (CroCo: 256 stored -> 224 crop)."""
    return int(round(img_size * 256 / 224))


def resize_short_side(img: Image.Image, short: int) -> Image.Image:
    """Resize `img` (antialiased) so that its short side is `short`; no-op if it already is."""
    w, h = img.size
    if min(w, h) == short:
        return img
    s = short / min(w, h)
    return img.resize((max(short, round(w * s)), max(short, round(h * s))), Image.BILINEAR)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) float in [0,1] -> ImageNet-normalised, in place."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (B,3,H,W) -> [0,1] (clamped), a new tensor."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _hue_matrix(theta: float) -> np.ndarray:
    """3x3 RGB map rotating chroma by `theta` radians in YIQ space (keeps luma and gray)."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = np.cos(theta), np.sin(theta)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.linalg.inv(to_yiq) @ rot @ to_yiq


@dataclass(frozen=True)
class PairAugment:
    """Independent random crop + colour jitter of each view of a pair, then ImageNet normalisation."""

    img_size: int  # side S of the square training crops (pixels)
    resize_short: int | None = None  # short side before cropping; None = round(img_size * 256/224)
    brightness: float = 0.4  # brightness factor drawn from [1-x, 1+x] per view (CroCo acolor: 0.4)
    contrast: float = 0.4  # contrast factor from [1-x, 1+x] per view
    saturation: float = 0.4  # saturation factor from [1-x, 1+x] per view
    hue: float = 0.0  # hue shift from [-x, x] turns (CroCo acolor: 0)

    def __post_init__(self):
        if self.img_size < 8:
            raise ValueError(f"img_size must be >= 8, got {self.img_size}")
        if self.resize_short is not None and self.resize_short < self.img_size:
            raise ValueError(f"resize_short {self.resize_short} is smaller than img_size {self.img_size}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    @property
    def short(self) -> int:
        return self.resize_short or default_resize_short(self.img_size)

    def crop(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """One view: resize short side to `short`, random S x S crop -> uint8 (S,S,3)."""
        S, short = self.img_size, self.short
        w, h = img.size
        scale = short / min(w, h)  # original px -> resized px
        rw, rh = max(short, round(w * scale)), max(short, round(h * scale))  # resized size
        x0 = int(rng.integers(0, rw - S + 1))
        y0 = int(rng.integers(0, rh - S + 1))
        if (rw, rh) == (w, h):
            out = img.crop((x0, y0, x0 + S, y0 + S))
        else:  # resample only the crop's box of the original: cost ~ S^2, not the whole image
            sx, sy = w / rw, h / rh
            out = img.resize((S, S), Image.BILINEAR, box=(x0 * sx, y0 * sy, (x0 + S) * sx, (y0 + S) * sy))
        return np.asarray(out.convert("RGB"))  # (S,S,3) uint8

    def color(self, rng: np.random.Generator) -> np.ndarray:
        """One view's jitter as (4,): brightness, contrast, saturation factors and hue angle (radians)."""
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        h = rng.uniform(-self.hue, self.hue) * 2 * np.pi
        return np.array([b, c, s, h])

    def __call__(self, pairs: list[tuple[Image.Image, Image.Image]], rng: np.random.Generator) -> dict:
        """A batch of (src, tgt) PIL pairs -> {"src","tgt"}: float32 (B,3,S,S), normalised."""
        crops, colors = [], []
        for src, tgt in pairs:
            crops.append((self.crop(src, rng), self.crop(tgt, rng)))
            colors.append((self.color(rng), self.color(rng)))
        out = {}
        for j, name in enumerate(("src", "tgt")):
            u8 = np.stack([c[j] for c in crops]).transpose(0, 3, 1, 2)  # (B,3,S,S) uint8
            out[name] = apply_color(u8, np.stack([c[j] for c in colors]))
        return out


def apply_color(u8: torch.Tensor | np.ndarray, params: np.ndarray) -> torch.Tensor:
    """uint8 (B,3,S,S) and jitter params (B,4) -> float32 (B,3,S,S) jittered, clamped, normalised.

    brightness b, contrast c (blend with the image's mean gray), saturation s (blend with per-pixel
    gray) and hue rotation H compose, without intermediate clamps, to x' = A x + t with
    A = c b H S and t = (1-c) b mean_gray (S and H keep gray, so the order of the four does not matter).
    Done in numpy: single-threaded and predictable inside loader workers and the training process alike.
    """
    u8 = np.asarray(u8)
    B = u8.shape[0]
    x = u8.reshape(B, 3, -1).astype(np.float32) * np.float32(1 / 255)  # (B,3,N) in [0,1]
    mu = np.einsum("c,bcn->b", GRAY.astype(np.float32), x) / x.shape[-1]  # (B,) mean gray
    A = np.empty((B, 3, 3))
    for i, (b, c, s, h) in enumerate(params):
        S = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), GRAY)  # saturation: blend with gray
        H = _hue_matrix(h) if h else np.eye(3)
        A[i] = c * b * (H @ S)
    t = ((1 - params[:, 1]) * params[:, 0]).astype(np.float32) * mu  # (B,)
    y = np.matmul(A.astype(np.float32), x)  # (B,3,N)
    y += t[:, None, None]
    np.clip(y, 0, 1, out=y)
    y -= np.array(IMAGENET_MEAN, dtype=np.float32)[None, :, None]
    y /= np.array(IMAGENET_STD, dtype=np.float32)[None, :, None]
    return torch.from_numpy(y.reshape(u8.shape))
