"""CroCo-style pair augmentation: turn decoded (source, target) image pairs into training tensors.

Reads: PIL RGB images of any size (the stored pair views, DESIGN.md "Pair shards").
Each view independently: resize so its short side is `resize_short` (default round(img_size*256/224):
256 px stored -> 224 px crops, as CroCo), take a random S x S crop (the two crops differ on purpose),
and draw its own colour jitter ("asymmetric", as CroCo's `acolor`: brightness, contrast, saturation
factors in [1-x, 1+x], optional hue). The two views of an `augmented` pair (one frame stored twice,
DESIGN.md) also get their own zoom (crop box side = S / zoom, zoom drawn log-uniformly in `aug_zoom`,
clipped to fit the image) and a horizontal flip (probability `aug_flip`): the 2D transforms are what make
the two copies differ. Other pairs keep CroCo's plain crops (their views already differ by the camera motion).
With `same_crop` both views are cut at the same relative window (colour draws still differ): the egomotion
objectives' labels assume that the views differ by the camera's motion only, and independent crops would add
an unknown image shift of up to 1/8 of the crop.
Two halves: `PairAugment` (in the loader workers) makes the uint8 crops (B,3,S,S) and the jitter
parameters (B,4) of a batch; `to_model_input` (in the training process, on its device) applies the
jitter and ImageNet normalisation -> float32 (B,3,S,S). The jitter is linear in RGB, so per image it is
one 3x3 affine map plus a clamp: nearly free on the device, while workers only decode and crop and ship
4x fewer bytes.
Every random choice comes from a numpy Generator passed in; `stream.py` seeds it from
(seed, rank, worker, step) so a resumed run augments exactly as an uninterrupted one.
Entry points: `PairAugment`, `to_model_input`. Decoding and the sample stream are `stream.py`'s job.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DRAWS = 8  # uniforms drawn per view: x, y, zoom, flip; brightness, contrast, saturation, hue


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


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ArrowArray struct (a stable ABI), for reading Pillow's pixel export."""


_ArrowArray._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                        ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                        ("buffers", ctypes.POINTER(ctypes.c_void_p)),
                        ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.c_void_p),
                        ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def pixel_block(im: Image.Image):
    """A loaded RGB image's pixels in place, as (H, W) uint32 (RGB + a padding byte each), and the Arrow
    capsule that must stay alive while they are read; None if Pillow cannot export them in one block.

    Pillow keeps RGB as 4 bytes a pixel, so `tobytes`/`np.asarray` repack a copy to 3 bytes (and `crop` makes
    one more). Pillow >= 11.2 exports its pixel block through the Arrow C data interface: one fixed-size-list
    child holding W*H*4 bytes. Older Pillow or an image not held in one block gives None.
    """
    W, H = im.size
    try:
        capsule = im.im.__arrow_c_array__()
        arr = _ArrowArray.from_address(_capsule_pointer(capsule, b"arrow_array"))
        child = arr.children[0].contents
        if arr.n_children != 1 or child.length != W * H * 4 or arr.offset or child.offset:
            return None
        px = np.frombuffer((ctypes.c_uint32 * (W * H)).from_address(child.buffers[1]), np.uint32).reshape(H, W)
        return px, capsule
    except (AttributeError, ValueError, TypeError):
        return None


def copy_rgb(im: Image.Image, out: np.ndarray, x0: int = 0, y0: int = 0) -> None:
    """Copy the (h, w) window at (x0, y0) of an RGB image into `out` (h, w, 4) uint8 (RGB + a padding byte):
    one copy of whole 32-bit pixels, row by row, from Pillow's block in place (`pixel_block`); the padding
    byte rides along and the consumer drops it (a strided view, no copy). Other images: the plain path."""
    h, w = out.shape[:2]
    blk = pixel_block(im)
    if blk is None:
        out[..., :3] = np.asarray(im.crop((x0, y0, x0 + w, y0 + h)))
        return
    px, capsule = blk
    out.view(np.uint32).reshape(h, w)[...] = px[y0:y0 + h, x0:x0 + w]
    del px, capsule


def resample_into(im: Image.Image, box: tuple[float, float, float, float], out: np.ndarray,
                  flip: bool = False) -> None:
    """Resample the `box` (x0, y0, x1, y1 in image pixels) of an RGB image to `out` (S, S, 4) uint8 with
    antialiased bilinear filtering (as Pillow's BILINEAR resize), flipped left-right if `flip`.

    The box is rounded to whole pixels (at most half a pixel at each edge) so that torch's uint8
    antialiased kernel can take it: on this CPU it is 2-3x faster than Pillow's resampler (0.3-0.6 against
    0.9-1.8 ms for a 280 px box to 224 px), which would otherwise cost as much as decoding the frame. The result
    equals Pillow's resize of the rounded box to +-1 except in the outermost rows and columns, which Pillow
    filters with pixels from outside the box too. Images that `pixel_block` cannot read take Pillow's resize.
    """
    S = out.shape[0]
    W, H = im.size
    blk = pixel_block(im)
    if blk is None:
        r = im.resize((S, S), Image.BILINEAR, box=box)
        copy_rgb(r.transpose(Image.FLIP_LEFT_RIGHT) if flip else r, out)
        return
    px, capsule = blk
    xa, ya = min(max(0, round(box[0])), W - 1), min(max(0, round(box[1])), H - 1)
    xb, yb = min(max(xa + 1, round(box[2])), W), min(max(ya + 1, round(box[3])), H)
    crop = px[ya:yb, xa:xb].copy().view(np.uint8).reshape(1, yb - ya, xb - xa, 4)  # (1,h,w,4)
    del px, capsule
    # (1,4,h,w) channels-last with a whole-image batch stride ([None] after the permute would give the batch
    # dim a stride torch does not read as channels-last): torch's vectorised uint8 path, output channels-last
    x = torch.from_numpy(crop).permute(0, 3, 1, 2)
    r = torch.nn.functional.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
    dst = torch.from_numpy(out).permute(2, 0, 1)[None]  # (1,4,S,S) view of `out`
    dst.copy_(r.flip(-1) if flip else r)


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


@dataclass(frozen=True)
class PairAugment:
    """Independent random crop and colour-jitter draw for each view of a pair."""

    img_size: int  # side S of the square training crops (pixels)
    resize_short: int | None = None  # short side before cropping; None = round(img_size * 256/224)
    brightness: float = 0.4  # brightness factor drawn from [1-x, 1+x] per view (CroCo acolor: 0.4)
    contrast: float = 0.4  # contrast factor from [1-x, 1+x] per view
    saturation: float = 0.4  # saturation factor from [1-x, 1+x] per view
    hue: float = 0.0  # hue shift drawn from [-x, x] turns (CroCo acolor: 0)
    aug_zoom: tuple[float, float] = (0.7, 1.4)  # augmented pairs: zoom range of each view (log-uniform)
    aug_flip: float = 0.5  # augmented pairs: probability that a view is flipped left-right
    same_crop: bool = False  # both views take the source view's crop draws (position, zoom, flip); colours differ

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
        lo, hi = self.aug_zoom
        if not 0 < lo <= hi or not 0 <= self.aug_flip <= 1:
            raise ValueError(f"need 0 < aug_zoom[0] <= aug_zoom[1] and aug_flip in [0, 1], got {self.aug_zoom}, "
                             f"{self.aug_flip}")

    @property
    def short(self) -> int:
        return self.resize_short or default_resize_short(self.img_size)

    def _plan(self, size: tuple[int, int], u, augmented: bool):
        """One view's crop of an image of `size` (w, h) from its geometry draws `u` (4 uniforms in [0, 1): x,
        y, zoom, flip): ("window", x0, y0) for a plain S x S window of the image, or ("box", (x0, y0, x1, y1),
        flip) for a box of the image to resample to S x S."""
        S, short = self.img_size, self.short
        ux, uy, uz, uf = u
        w, h = size
        scale = short / min(w, h)  # original px -> resized px
        rw, rh = max(short, round(w * scale)), max(short, round(h * scale))  # resized size
        sx, sy = w / rw, h / rh
        if augmented:
            lo, hi = np.log(self.aug_zoom[0]), np.log(self.aug_zoom[1])
            L = min(S / float(np.exp(lo + (hi - lo) * uz)), rw, rh)  # box side in resized px (log-uniform zoom)
            x0, y0 = ux * (rw - L), uy * (rh - L)
            return "box", (x0 * sx, y0 * sy, (x0 + L) * sx, (y0 + L) * sy), uf < self.aug_flip
        x0, y0 = min(int(ux * (rw - S + 1)), rw - S), min(int(uy * (rh - S + 1)), rh - S)
        if (rw, rh) == (w, h):
            return "window", x0, y0
        # resample only the crop's box of the original: cost ~ S^2, not the whole image
        return "box", (x0 * sx, y0 * sy, (x0 + S) * sx, (y0 + S) * sy), False

    def crop(self, img: Image.Image, rng: np.random.Generator, augmented: bool = False) -> Image.Image:
        """One view as a PIL image (what `crop_into` writes into a batch): resize short side to `short`,
        random S x S crop (RGB); for an `augmented` pair's view the crop box is S / zoom (clipped to the
        image) resampled to S x S, then maybe flipped."""
        out = np.empty((self.img_size, self.img_size, 4), np.uint8)  # (S,S,4)
        self.crop_into(img, rng.random(4).tolist(), augmented, out)
        return Image.fromarray(np.ascontiguousarray(out[..., :3]))

    def crop_into(self, img: Image.Image, u, augmented: bool, out: np.ndarray) -> None:
        """One view (see `crop`, geometry draws `u` as in `_plan`) written straight into `out` (S, S, 4) uint8:
        RGB + a padding byte."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        kind, a, b = self._plan(img.size, u, augmented)
        if kind == "window":
            copy_rgb(img, out, a, b)
        else:
            resample_into(img, a, out, flip=b)

    def colors(self, u: np.ndarray) -> np.ndarray:
        """Jitter from uniforms (..., 4) -> float32 (..., 4): brightness, contrast, saturation factors in
        [1-x, 1+x] and a hue shift in [-hue, hue] turns."""
        half = np.array([self.brightness, self.contrast, self.saturation, self.hue])  # (4,) half-widths
        centre = np.array([1.0, 1.0, 1.0, 0.0])
        return (centre + half * (2 * u - 1)).astype(np.float32)

    def new_batch(self, size: int, rng: np.random.Generator) -> dict:
        """Empty batch arrays for `size` pairs, crops (size,S,S,4) uint8 (RGB + padding), and all their random
        draws at once: "u" (size, 2 views, 8) uniforms, per view 4 for the geometry and 4 for the colour."""
        S = self.img_size
        out = {k: np.empty((size, S, S, 4), np.uint8) for k in ("src", "tgt")}  # filled in place
        out["u"] = rng.random((size, 2, DRAWS))  # (size,2,8); one call: per-view draws cost ~5 us each
        return out

    def fill(self, batch: dict, i: int, src: Image.Image, tgt: Image.Image, augmented: bool = False) -> None:
        """Pair i of `batch`: each view's crop (and zoom/flip if `augmented`) from its draws."""
        self.fill_view(batch, i, 0, src, augmented)
        self.fill_view(batch, i, 1, tgt, augmented)

    def fill_view(self, batch: dict, i: int, view: int, im: Image.Image, augmented: bool = False) -> None:
        """View `view` (0 source, 1 target) of pair i of `batch` from its draws. The stream fills each view as
        soon as it is decoded, so that its pixels are still in cache."""
        u = batch["u"][i, 0 if self.same_crop else view, :4].tolist()  # python floats for the crop arithmetic
        self.crop_into(im, u, augmented, batch[("src", "tgt")[view]][i])

    def finish(self, batch: dict, n: int) -> dict:
        """The first n pairs as tensors: "src","tgt" uint8 (n,3,S,S) (a channels-last view, no copy),
        "src_color","tgt_color" float32 (n,4) jitter parameters."""
        out = {}
        col = self.colors(batch["u"][:n, :, 4:])  # (n,2,4)
        for v, k in enumerate(("src", "tgt")):
            out[k] = torch.from_numpy(batch[k][:n]).permute(0, 3, 1, 2)[:, :3]  # (n,3,S,S) uint8 view
            out[f"{k}_color"] = torch.from_numpy(np.ascontiguousarray(col[:, v]))  # (n,4)
        return out

    def __call__(self, pairs: list[tuple[Image.Image, Image.Image]], rng: np.random.Generator,
                 augmented: list[bool] | None = None) -> dict:
        """A batch of (src, tgt) PIL pairs -> {"src","tgt": uint8 (B,3,S,S) crops (a channels-last view, no
        copy), "src_color","tgt_color": float32 (B,4) jitter parameters}; `to_model_input` applies the jitter.
        `augmented[i]` marks pair i as an `augmented` pair (zoom and flip its views too)."""
        batch = self.new_batch(len(pairs), rng)
        for i, (src, tgt) in enumerate(pairs):
            self.fill(batch, i, src, tgt, bool(augmented[i]) if augmented is not None else False)
        return self.finish(batch, len(pairs))


GRAY = (0.299, 0.587, 0.114)  # luma weights (sum 1), as torchvision's grayscale


def color_affine(params: torch.Tensor, mean_gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Jitter params (B,4) = (b, c, s, hue turns) and each image's mean gray (B,) -> (A (B,3,3), t (B,)).

    brightness b, contrast c (blend with the image's mean gray), saturation s (blend with the pixel's
    gray) and a hue rotation H (in YIQ space) compose, without intermediate clamps, to x' = A x + t with
    A = c b H S and t = (1-c) b mean_gray; S and H keep gray, so the order of the four does not matter.
    """
    b, c, s, h = params.float().unbind(-1)  # each (B,)
    dev = params.device
    w = torch.tensor(GRAY, device=dev)
    eye = torch.eye(3, device=dev)
    S = s[:, None, None] * eye + (1 - s)[:, None, None] * w.expand(3, 3)  # (B,3,3): rows blend with gray
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
    th = -h * 2 * torch.pi  # sign: +1/3 turn takes red to green, as an HSV hue shift
    cos, sin, one, zero = torch.cos(th), torch.sin(th), torch.ones_like(th), torch.zeros_like(th)
    rot = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], -1).view(-1, 3, 3)  # (B,3,3)
    H = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B,3,3)
    A = (c * b)[:, None, None] * (H @ S)
    t = (1 - c) * b * mean_gray
    return A, t


def to_model_input(u8: torch.Tensor, color: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """uint8 (B,3,S,S) crops (+ jitter params (B,4)) -> float32 (B,3,S,S) jittered, clamped to [0,1],
    ImageNet-normalised, on `device`."""
    x = u8.to(device, non_blocking=True).float().div_(255).contiguous()  # (B,3,S,S) in [0,1]
    B = x.shape[0]
    if color is not None:
        flat = x.view(B, 3, -1)  # (B,3,N)
        w = torch.tensor(GRAY, device=x.device)
        A, t = color_affine(color.to(x.device), torch.einsum("c,bc->b", w, flat.mean(-1)))
        x = torch.bmm(A, flat).add_(t.view(B, 1, 1)).clamp_(0, 1).view_as(x)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
