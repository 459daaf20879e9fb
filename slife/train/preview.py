"""Reconstruction preview: one PNG showing what the model currently predicts for a few training pairs.

Reads: the model (unwrapped CroCoNet), a batch's `src`/`tgt` (B,3,S,S) ImageNet-normalised.
Writes: a PNG, one row per pair: source | masked target | prediction (visible patches from the target,
masked ones predicted; de-normalised per patch when the loss uses normalised pixels) | target, under a
strip that names the columns.
Entry point: `write_preview(model, src, tgt, path, norm_pix_loss)`. When to call it is `loop.py`'s job.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from slife.io import atomic_write_bytes
from slife.train.augment import denormalize


@torch.no_grad()
def reconstruct(model, src: torch.Tensor, tgt: torch.Tensor, norm_pix_loss: bool = True):
    """-> (masked target, prediction), both (B,3,S,S) ImageNet-normalised; masked patches greyed / predicted."""
    was_training = model.training
    model.eval()
    try:
        out, mask, target = model(tgt, src)  # out, target: (B,N,p*p*3); mask: (B,N) True = masked
    finally:
        model.train(was_training)
    out, target = out.float(), target.float()
    if norm_pix_loss:  # predictions live in per-patch normalised units: map back with the target's stats
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        out = out * (var + 1e-6) ** 0.5 + mean
    m = mask.bool().unsqueeze(-1)  # (B,N,1)
    pred = torch.where(m, out, target)  # (B,N,p*p*3)
    masked = torch.where(m, torch.zeros_like(target), target)  # grey (ImageNet mean) where masked
    return model.unpatchify(masked), model.unpatchify(pred)


def _with_column_labels(im: Image.Image, labels: tuple[str, ...]) -> Image.Image:
    """`im` with a white strip on top naming its equally wide columns."""
    from PIL import ImageDraw

    h = 14
    out = Image.new("RGB", (im.width, im.height + h), "white")
    out.paste(im, (0, h))
    draw = ImageDraw.Draw(out)
    w = im.width / len(labels)
    for i, text in enumerate(labels):
        draw.text((i * w + 3, 1), text, fill="black")
    return out


def write_preview(model, src: torch.Tensor, tgt: torch.Tensor, path: Path, norm_pix_loss: bool = True,
                  rows: int = 4, scale: int = 2) -> Path:
    """Write the preview PNG (atomically) for the first `rows` pairs; returns `path`."""
    src, tgt = src[:rows], tgt[:rows]
    masked, pred = reconstruct(model, src, tgt, norm_pix_loss)
    cols = [denormalize(t.float().cpu()) for t in (src, masked, pred, tgt)]  # each (b,3,S,S) in [0,1]
    grid = torch.cat([torch.cat(list(c), dim=2) for c in zip(*cols)], dim=1)  # rows stacked: (3, b*S, 4*S)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (b*S, 4*S, 3)
    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im = _with_column_labels(im, ("source", "masked target", "prediction", "target"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
