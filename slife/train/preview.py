"""Preview pictures of training: PNG grids of image tiles, and CroCo's reconstruction preview.

Reads: the model (unwrapped CroCoNet), a batch's `src`/`tgt` (B,3,S,S) ImageNet-normalised; or any rows of
image tiles (3, h, w) in [0, 1] that an objective draws (`objectives/*.py`).
Writes: a PNG (atomically). CroCo's (`write_preview`): one row per pair: source | masked target | prediction
(visible patches from the target, masked ones predicted; de-normalised per patch when the loss uses normalised
pixels) | target, under a strip that names the columns. `write_grid` lays out any rows of tiles (smaller tiles
padded with black), optionally under such a strip of column names; `text_tile` renders a few lines of text as a
tile (Pillow's built-in font).
Entry points: `write_preview(model, src, tgt, path, norm_pix_loss)`, `write_grid(rows, path, labels=)`,
`text_tile`. When to call them is the objective's (`Objective.preview`) and the loop's job.
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
    """Write the reconstruction preview PNG (atomically) for the first `rows` pairs; returns `path`."""
    src, tgt = src[:rows], tgt[:rows]
    masked, pred = reconstruct(model, src, tgt, norm_pix_loss)
    cols = [denormalize(t.float().cpu()) for t in (src, masked, pred, tgt)]  # each (b,3,S,S) in [0,1]
    return write_grid([list(r) for r in zip(*cols)], path, scale,
                      labels=("source", "masked target", "prediction", "target"))


def write_grid(rows: list[list[torch.Tensor]], path: Path, scale: int = 2,
               labels: tuple[str, ...] | None = None) -> Path:
    """Rows of tiles (3, h, w) in [0, 1] -> one PNG, each tile in a cell of the largest tile's size (padded
    with black), magnified `scale` times (nearest), under a strip naming the columns if `labels` are given (one
    per column); written atomically; returns `path`."""
    H = max(t.shape[1] for r in rows for t in r)
    W = max(t.shape[2] for r in rows for t in r)
    ncol = max(len(r) for r in rows)
    grid = torch.zeros(3, len(rows) * H, ncol * W)  # (3, rows*H, cols*W)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            grid[:, i * H:i * H + t.shape[1], j * W:j * W + t.shape[2]] = t.float().cpu().clamp(0, 1)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (rows*H, cols*W, 3)
    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    if labels:
        if len(labels) != ncol:
            raise ValueError(f"write_grid: {len(labels)} labels for {ncol} columns")
        im = _with_column_labels(im, labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def text_tile(lines: list[str], height: int, width: int) -> torch.Tensor:
    """A (3, height, width) tile in [0, 1]: `lines` in white on black, Pillow's built-in font."""
    from PIL import ImageDraw

    im = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((2, 1 + 11 * i), line, fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
