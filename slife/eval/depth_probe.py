"""Depth probe of a frozen encoder: an attentive readout trained on top, scored with the standard depth metrics.

Reads a checkpoint of any objective (DESIGN.md "Checkpoints": its CroCo or ViT encoder) and a depth dataset
(`datasets/`: nyu, scannet, life).
Each image is centre-cropped to a square and resized to the model's S x S (depth and the scored region by
nearest neighbour); the frozen encoder's patch tokens (final block after its norm, or the block(s) in `layers`)
are computed once. With several blocks (as DINOv2's linear probe reads its last four), each block's tokens are
standardised per token (a layer norm without weights: the blocks' scales differ) and concatenated along the
feature axis. The readout: one cross-attention block whose queries are one learned token per output
patch plus a fixed 2D sin-cos position, attending to the projected encoder tokens (+ the same positions),
an MLP (both residual, pre-norm) and a linear map to the patch's p x p pixels of LOG-DEPTH (metres;
regression, not bins), trained with an L1 loss on valid pixels, AdamW and a cosine schedule.
Metrics (`depth_metrics`) per test image on valid pixels (0 < depth <= max_depth, inside the Eigen crop
for NYU), prediction clamped to [min_depth, max_depth], averaged over images: delta1/2/3, AbsRel, RMSE,
log10. Scale-aware (no median scaling); also least-squares scale-and-shift aligned per image when asked.
With `readouts` > 1, that many readouts (seeds seed, seed + 1, ...: initialisation and batch order) are fit on
the same frozen tokens and every metric is their mean, with its standard error (`metrics_se`,
`metrics_aligned_se`: the readouts' standard deviation / sqrt(n)) and each readout's own metrics in
`readouts`: a single readout's score moves with its seed by about as much as encoders differ at small scale
(bench/eval.md), so one fit can rank two encoders either way. Examples, the saved weights and `train_loss`
are readout 0's; `seconds.train` covers all readouts (`per_epoch`: per readout epoch).
With several learning rates (`lr`), each encoder and control chooses its own on a validation split of its
training views (`choose_lr`: with two training places or more, the last place by name, place-disjoint like the
test split; otherwise the last 20% of the training views): one readout (seed `seed`) per rate fit on the rest,
the lowest validation AbsRel wins, and every readout then trains on all training views at that rate. DINOv2's
linear evaluation grid-searches its rate too, on its validation set; here the choice is made on held-out training
views so that the test place plays no part. It rests on one readout per rate, whose score moves with its seed.
probe.json gives the rate used ("lr") and the validation scores ("lr_choice").
Reported beside them, as controls, the same metrics for a constant prediction (the mean train depth) and, when
asked, for the same readout on an untrained encoder of the same architecture (the negative control), on
depth-oracle tokens (`depth_oracle_tokens`: the true log-depth, the positive control that shows the readout can
learn) and on constant tokens (the position prior: the readout's queries carry their patch's position, so with
tokens that say nothing about the image it learns the typical depth at each image position, the near floor at the bottom
and the far wall higher up, and predicts it for every view; an encoder whose score is near this one carries
no depth the readout can use beyond where in the image a patch lies).
Views the reader leaves out (a life's unreadable depth maps) are counted per split, warned about and listed
in `probe.json` ("skipped_views"). Writes `probe.json` (metrics, config, losses), `probe_examples.png` and `probe_readout.pt` into out_dir.
Entry point: `run(cfg, checkpoints, out_dir) -> Path`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from slife.errors import SlifeError

log = logging.getLogger(__name__)

ENV_ROOTS = {"nyu": "SLIFE_NYU_ROOT", "scannet": "SLIFE_SCANNET_ROOT", "life": "SLIFE_LIFE_ROOT"}
METRIC_NAMES = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "log10")


@dataclass(frozen=True)
class ProbeConfig:
    dataset: str = "nyu"  # depth dataset reader: nyu, scannet or life
    data_root: Path | None = None  # dataset folder (or the .mat for nyu)
    layers: tuple[int, ...] = (-1,)  # encoder blocks read (0-based, negative from the end; -1 = last, after the
    # final norm); several: concatenated in block order
    epochs: int = 30  # readout training epochs
    batch_size: int = 16  # images per step
    lr: tuple[float, ...] = (1e-3,)  # AdamW peak learning rate (cosine to 0, 5% warmup); several: each encoder
    # and control uses the one with the lowest error on a validation split of its training views (`choose_lr`)
    weight_decay: float = 0.05  # AdamW weight decay
    dim: int = 128  # readout width
    heads: int = 4  # readout attention heads
    depth_kind: str = "depths"  # nyu: "depths" (filled) or "rawDepths"
    frame_step: int = 10  # scannet / life: use every n-th frame
    max_train: int = 0  # first n training images (0 = all)
    max_test: int = 0  # first n test images (0 = all)
    min_depth: float = 1e-3  # metres; predictions clamped below
    max_depth: float = 10.0  # metres; depth capped (pixels beyond are not scored, predictions clamped)
    align: bool = True  # also report least-squares scale-and-shift aligned metrics
    num_examples: int = 4  # test images drawn in probe_examples.png
    control_untrained: bool = False  # also fit the same readout on an untrained encoder (same architecture, seeded)
    control_oracle: bool = False  # also fit it on depth-oracle tokens (the true log-depth): shows the readout can learn
    control_position: bool = False  # also fit it on constant tokens: the depth prior per image position alone
    seed: int = 0  # readout initialisation and batch order (readout k of --readouts: seed + k)
    readouts: int = 1  # readouts fit per encoder and control; the metrics are their mean (bench/eval.md)

    def __post_init__(self):
        if self.dataset not in ENV_ROOTS:
            raise SlifeError(f"dataset must be one of {', '.join(ENV_ROOTS)}, got {self.dataset!r}")
        if self.depth_kind not in ("depths", "rawDepths"):
            raise SlifeError(f"--depth must be 'depths' or 'rawDepths', got {self.depth_kind!r}")
        for name in ("epochs", "batch_size", "dim", "heads", "frame_step", "readouts"):
            if getattr(self, name) < 1:
                raise SlifeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.dim % 4 or self.dim % self.heads:
            raise SlifeError(f"--dim ({self.dim}) must be divisible by 4 and by --heads ({self.heads})")
        if not 0 < self.min_depth < self.max_depth:
            raise SlifeError(f"need 0 < --min-depth < --max-depth, got {self.min_depth}, {self.max_depth}")
        layers = (self.layers,) if isinstance(self.layers, int) else tuple(self.layers)
        if not layers or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
            raise SlifeError(f"--layer: give one or more encoder block numbers, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        lrs = (self.lr,) if isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) else tuple(self.lr)
        if not lrs or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < math.inf
                              for x in lrs):
            raise SlifeError(f"--lr: give one or more learning rates > 0, got {self.lr!r}")
        if len(set(lrs)) < len(lrs):
            raise SlifeError(f"--lr names a rate twice ({', '.join(map(str, lrs))})")
        object.__setattr__(self, "lr", tuple(float(x) for x in lrs))
        if self.weight_decay < 0 or self.max_train < 0 or self.max_test < 0:
            raise SlifeError("--weight-decay, --max-train, --max-test must be >= 0")


# ---------------------------------------------------------------------------------------------------------------
# metrics (pure functions)

def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, min_depth: float = 1e-3,
                  max_depth: float = 10.0) -> dict | None:
    """Metrics of one image on pixels with min_depth < gt <= max_depth (and in `mask`); pred clamped to
    [min_depth, max_depth]. None if no pixel is valid."""
    gt = np.asarray(gt, dtype=np.float64)
    valid = (gt > min_depth) & (gt <= max_depth) & np.isfinite(gt)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        return None
    g = gt[valid]
    p = np.clip(np.asarray(pred, dtype=np.float64)[valid], min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    return {
        "delta1": float((ratio < 1.25).mean()), "delta2": float((ratio < 1.25 ** 2).mean()),
        "delta3": float((ratio < 1.25 ** 3).mean()), "abs_rel": float((np.abs(p - g) / g).mean()),
        "rmse": float(np.sqrt(((p - g) ** 2).mean())), "log10": float(np.abs(np.log10(p) - np.log10(g)).mean()),
    }


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """pred * s + t with (s, t) minimising the squared error to gt on `valid` pixels."""
    p = np.asarray(pred, dtype=np.float64)[valid]
    g = np.asarray(gt, dtype=np.float64)[valid]
    if len(p) < 2:
        return np.asarray(pred, dtype=np.float64)
    A = np.stack([p, np.ones_like(p)], axis=1)  # (n, 2)
    (s, t), *_ = np.linalg.lstsq(A, g, rcond=None)
    return np.asarray(pred, dtype=np.float64) * s + t


def mean_metrics(rows: Iterable[dict | None]) -> dict:
    """Average of per-image metrics over images with valid pixels (+ "images")."""
    rows = [r for r in rows if r is not None]
    if not rows:
        return {**{k: None for k in METRIC_NAMES}, "images": 0}
    return {**{k: float(np.mean([r[k] for r in rows])) for k in METRIC_NAMES}, "images": len(rows)}


# ---------------------------------------------------------------------------------------------------------------
# the readout

class AttentiveReadout(nn.Module):
    """Encoder tokens (B, N_in, D_enc) -> log-depth (B, 1, h*p, w*p): one learned query per output patch."""

    def __init__(self, enc_dim: int, grid: tuple[int, int], patch: int, dim: int = 128, heads: int = 4,
                 mlp_ratio: int = 4):
        from slife.train.pos_embed import sincos_2d

        super().__init__()
        self.grid, self.patch = tuple(grid), int(patch)
        n = grid[0] * grid[1]
        self.queries = nn.Parameter(torch.randn(1, n, dim) * 0.02)  # (1, N_out, dim) one token per output patch
        self.register_buffer("pos", sincos_2d(dim, grid)[None], persistent=False)  # (1, N, dim) fixed positions
        self.proj = nn.Linear(enc_dim, dim)
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.norm_out = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch * patch)  # the patch's pixels of log-depth
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, math.log(2.0))  # start at 2 m

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B = tokens.shape[0]
        kv = self.norm_kv(self.proj(tokens) + self.pos)  # (B, N_in, dim)
        q = self.queries.expand(B, -1, -1) + self.pos  # (B, N_out, dim)
        x = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]  # (B, N_out, dim)
        x = x + self.mlp(self.norm_mlp(x))  # (B, N_out, dim)
        out = self.head(self.norm_out(x))  # (B, N_out, p*p)
        h, w = self.grid
        p = self.patch
        return out.view(B, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(B, 1, h * p, w * p)  # (B, 1, H, W)


def log_l1_loss(log_pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |log pred - log depth| over valid pixels; log_pred, depth, valid (B, 1, H, W)."""
    diff = (log_pred - torch.log(depth.clamp_min(1e-6))).abs()
    return (diff * valid).sum() / valid.sum().clamp_min(1)


# ---------------------------------------------------------------------------------------------------------------
# data preparation

def prepare(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray | None, S: int):
    """Centre square crop, resize -> (image (3, S, S) ImageNet-normalised, depth (S, S) float32, mask (S, S) bool)."""
    from PIL import Image

    from slife.train.augment import normalize

    H, W = depth.shape
    if rgb.shape[:2] != (H, W):
        raise SlifeError(f"image {rgb.shape[:2]} and depth {(H, W)} sizes differ")
    s = min(H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    rgb_c = rgb[y0:y0 + s, x0:x0 + s]
    t = torch.from_numpy(np.array(rgb_c, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)[None]  # (1, 3, s, s)
    t = F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    d = np.asarray(Image.fromarray(np.ascontiguousarray(depth[y0:y0 + s, x0:x0 + s], dtype=np.float32))
                   .resize((S, S), Image.NEAREST))  # (S, S)
    m = np.ones((S, S), bool) if mask is None else np.asarray(
        Image.fromarray(np.ascontiguousarray(mask[y0:y0 + s, x0:x0 + s]).astype(np.uint8) * 255)
        .resize((S, S), Image.NEAREST)) > 0
    return normalize(t)[0], d, m


def encode_split(model, samples, S: int, layers: Sequence[int | None], batch_size: int = 32,
                 progress: Callable[..., None] | None = None) -> dict:
    """Frozen features of a split: {"tokens" (n, N, D) float16, "depth" (n, S, S), "mask" (n, S, S), "rgb" list}.

    `layers`: the blocks read (None: the last, after the final norm). One block: its tokens as they are; several:
    each standardised per token (layer norm, no weights), concatenated (D = blocks x width)."""
    toks, depths, masks, rgbs, names = [], [], [], [], []
    buf = []

    def block(x, layer):
        return model.encode_image(x) if layer is None else model.encode_image(x, layer=layer)  # (B, N, De)

    def flush():
        with torch.inference_mode():
            x = torch.stack(buf)  # (B, 3, S, S)
            if len(layers) == 1:
                f = block(x, layers[0])  # (B, N, De)
            else:
                f = torch.cat([F.layer_norm(b, b.shape[-1:]) for b in (block(x, la) for la in layers)], -1)
            toks.append(f.to(torch.float16))
        buf.clear()

    for smp in samples:
        img, d, m = prepare(smp.rgb, smp.depth, smp.eval_mask, S)
        buf.append(img)
        depths.append(d)
        masks.append(m)
        names.append(smp.name)
        if len(rgbs) < 16:
            from slife.train.augment import denormalize

            rgbs.append((denormalize(img[None])[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8))
        if len(buf) >= batch_size:
            flush()
        if progress:
            progress(1)
    if buf:
        flush()
    if not depths:
        return {"tokens": None, "depth": np.zeros((0, S, S), np.float32), "mask": np.zeros((0, S, S), bool),
                "rgb": [], "names": []}
    return {"tokens": torch.cat(toks), "depth": np.stack(depths), "mask": np.stack(masks), "rgb": rgbs, "names": names}


def depth_oracle_tokens(depth: np.ndarray, mask: np.ndarray, patch: int, dim: int, seed: int = 0,
                        min_depth: float = 1e-3, max_depth: float = 10.0) -> torch.Tensor:
    """The positive control's tokens: each patch's true log-depth through a fixed random projection.

    depth, mask (n, S, S) -> (n, N, dim) float16, N = (S / patch)^2 in row-major patch order, like an encoder's.
    Pixels without valid depth carry log(2 m) (they are not scored). A readout that cannot reach a low error
    on these tokens cannot separate encoders either; one that can shows the probe is able to learn depth."""
    d = torch.from_numpy(np.asarray(depth, dtype=np.float32))  # (n, S, S)
    valid = torch.from_numpy(np.asarray(mask, dtype=bool)) & (d > min_depth) & (d <= max_depth)
    ld = torch.where(valid, d.clamp(min_depth, max_depth).log(), torch.tensor(math.log(2.0)))  # (n, S, S)
    n, S, _ = ld.shape
    g = S // patch
    pt = ld.view(n, g, patch, g, patch).permute(0, 1, 3, 2, 4).reshape(n, g * g, patch * patch)  # (n, N, p*p)
    R = torch.randn(patch * patch, dim, generator=torch.Generator().manual_seed(seed)) / math.sqrt(patch * patch)
    return (pt @ R).to(torch.float16)  # (n, N, dim)


# ---------------------------------------------------------------------------------------------------------------
# entry point

def train_readout(readout: AttentiveReadout, tokens: torch.Tensor, depth: np.ndarray, mask: np.ndarray,
                  cfg: ProbeConfig, lr: float, progress: Callable[..., None] | None = None) -> list[float]:
    """Fit the readout (AdamW, peak `lr`, warmup + cosine) on frozen tokens; returns the mean loss of each epoch."""
    from slife.train.optim import lr_at, make_optimizer, set_lr

    n = len(tokens)
    d = torch.from_numpy(depth)[:, None]  # (n, 1, S, S)
    valid = torch.from_numpy(mask)[:, None] & (d > cfg.min_depth) & (d <= cfg.max_depth)  # (n, 1, S, S)
    opt = make_optimizer(readout, lr, cfg.weight_decay, betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, total // 20)
    g = torch.Generator().manual_seed(cfg.seed)
    losses, step = [], 0
    readout.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for b in range(steps_per_epoch):
            ix = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            set_lr(opt, lr_at(step, lr, warm, total))
            loss = log_l1_loss(readout(tokens[ix].float()), d[ix], valid[ix].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(ix)
            step += 1
            if progress:
                progress(1)
        losses.append(tot / n)
    readout.eval()
    return losses


def predict(readout: AttentiveReadout, tokens: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """(n, S, S) float32 metric depth predictions."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(tokens), batch_size):
            out.append(readout(tokens[i:i + batch_size].float()).exp()[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def score(pred: np.ndarray, depth: np.ndarray, mask: np.ndarray, cfg: ProbeConfig) -> tuple[dict, dict | None]:
    """`mean_metrics` of predictions (n, S, S) against the true depth: scale-aware, and aligned (None unless
    cfg.align)."""
    rows, rows_al = [], []
    for p, g, m in zip(pred, depth, mask):
        rows.append(depth_metrics(p, g, m, cfg.min_depth, cfg.max_depth))
        if cfg.align:
            valid = m & (g > cfg.min_depth) & (g <= cfg.max_depth)
            rows_al.append(depth_metrics(align_scale_shift(p, g, valid), g, m, cfg.min_depth, cfg.max_depth))
    return mean_metrics(rows), mean_metrics(rows_al) if cfg.align else None


def validation_split(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Training views -> (indices fit, indices validated, what the validation views are). Views are named
    PLACE/FRAME (a life's; a ScanNet scan's, whose scans sceneNNNN_00, _01, ... of one room are one place): with
    two places or more the validation views are those of the last place by name, so validation is place-disjoint
    like the life benchmark's test split; otherwise the last 20% of the views in order (NYU's are named by index),
    which may show the places the others show."""
    places = [re.sub(r"^(scene\d{4})_\d{2}$", r"\1", n.rsplit("/", 1)[0]) if "/" in n else None for n in names]
    groups = sorted({p for p in places if p is not None})
    if len(groups) >= 2 and None not in places:
        val = np.array([p == groups[-1] for p in places])
        what = f"the views of training place {groups[-1]} ({int(val.sum())} views; the readout fits the other places')"
    else:
        k = max(1, round(0.2 * len(names)))
        val = np.arange(len(names)) >= len(names) - k
        what = f"the last {k} of {len(names)} training views (not place-disjoint: they may show the others' places)"
    return np.flatnonzero(~val), np.flatnonzero(val), what


def readout_steps(cfg: ProbeConfig, n_train: int, n_fit: int = 0) -> int:
    """Optimizer steps of one encoder's (or control's) readouts: `cfg.readouts` fits on n_train views, and with
    several rates in cfg.lr one fit per rate on the n_fit views outside the validation split (`choose_lr`)."""
    steps = cfg.readouts * math.ceil(n_train / cfg.batch_size)
    if len(cfg.lr) > 1:
        steps += len(cfg.lr) * math.ceil(n_fit / cfg.batch_size)
    return cfg.epochs * steps


def choose_lr(tr: dict, cfg: ProbeConfig, side: int, patch: int, progress: Callable[..., None] | None = None) -> dict:
    """The learning rate of cfg.lr with the lowest validation error: for each, one readout (seed cfg.seed) is fit
    on the training views but the validation split's (`validation_split`) and scored on those (aligned AbsRel,
    scale-aware without cfg.align). -> {"lr", "validation", "scores" {lr: AbsRel}}; the test views are never seen."""
    fit_ix, val_ix, what = validation_split(tr["names"])
    if len(fit_ix) == 0:
        raise SlifeError(f"{cfg.data_root}: --lr with {len(cfg.lr)} rates needs at least 2 training views, got "
                         f"{len(tr['names'])}")
    if len(val_ix) < 10:
        log.warning("%s: the learning rate is chosen on %s: very few views", cfg.data_root, what)
    key = "metrics_aligned" if cfg.align else "metrics"
    fit = {k: tr[k][fit_ix] for k in ("tokens", "depth", "mask")}  # the two splits, taken once for every rate
    val = {k: tr[k][val_ix] for k in ("tokens", "depth", "mask")}
    scores = {}
    for lr in cfg.lr:
        torch.manual_seed(cfg.seed)
        readout = AttentiveReadout(tr["tokens"].shape[-1], (side, side), patch, cfg.dim, cfg.heads)
        train_readout(readout, fit["tokens"], fit["depth"], fit["mask"], cfg, lr, progress)
        m, m_al = score(predict(readout, val["tokens"]), val["depth"], val["mask"], cfg)
        scores[lr] = (m_al if cfg.align else m)["abs_rel"]
        if scores[lr] is None:
            raise SlifeError(f"{cfg.data_root}: {what} have no valid depth pixel to choose the learning rate on")
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}  # a rate that diverged is not chosen
    if not finite:
        raise SlifeError(f"{cfg.data_root}: the readout diverged at every learning rate of --lr "
                         f"({', '.join(f'{x:g}' for x in cfg.lr)})")
    best = min(finite, key=finite.get)
    return {"lr": best, "validation": what, "metric": f"{key}.abs_rel",
            "scores": {str(k): v for k, v in scores.items()}}


def _mean_over_readouts(ms: list[dict]) -> dict:
    """The mean of several readouts' `mean_metrics` (one readout: its own)."""
    if len(ms) == 1 or any(m["images"] == 0 for m in ms):
        return ms[0]
    return {**{k: float(np.mean([m[k] for m in ms])) for k in METRIC_NAMES}, "images": ms[0]["images"]}


def mean_se(vals: Sequence[float]) -> float:
    """Standard error of the mean of independent replicates (readouts): their standard deviation / sqrt(n)."""
    return float(np.std(vals, ddof=1) / math.sqrt(len(vals)))


def _se_over_readouts(ms: list[dict]) -> dict | None:
    """Standard error of that mean (`mean_se`); None for one readout."""
    if len(ms) < 2 or any(m["images"] == 0 for m in ms):
        return None
    return {k: mean_se([m[k] for m in ms]) for k in METRIC_NAMES}


def readout_margin(base: dict, rep: dict, key: str = "abs_rel") -> dict | None:
    """Aligned `key` of probe result `base` (probe.json or one of its controls; say the untrained encoder's) minus
    that of `rep`, over their readouts (> 0 for AbsRel: `rep` probes better): {"diff": the mean of the per-readout
    differences, "se": their `mean_se`}. Readout k has seed SEED + k for every encoder (initialisation and batch
    order), so two results of the same settings pair readout by readout. se is None with one readout or readouts
    that do not pair (other counts or seeds: diff is then the difference of the means). None where either lacks
    its aligned metrics."""
    def per(r):
        rs = r.get("readouts") or [{"seed": (r.get("config") or {}).get("seed"),
                                    "metrics_aligned": r.get("metrics_aligned")}]
        return [((x.get("metrics_aligned") or {}).get(key), x.get("seed")) for x in rs]

    a, b = per(base), per(rep)
    if any(x is None for x, _ in a + b):
        return None
    if len(a) < 2 or len(a) != len(b) or any(s is None or s != t for (_, s), (_, t) in zip(a, b)):
        return {"diff": float(np.mean([x for x, _ in a]) - np.mean([y for y, _ in b])), "se": None}
    d = [x - y for (x, _), (y, _) in zip(a, b)]
    return {"diff": float(np.mean(d)), "se": mean_se(d)}


def run(cfg: ProbeConfig, checkpoints: Sequence[Path], out_dir: Path, progress: Callable[..., None] | None = None,
        model=None, spec=None) -> Path:
    """Train and score the depth probe on the first checkpoint's frozen encoder; write probe.json/.png/.pt.

    `model` and its architecture `spec` (a `checkpoint.ModelSpec`: CroCoNet or ViT) may be given instead of a
    checkpoint (the demo's untrained control)."""
    from slife.io import atomic_write_text
    from slife.eval.datasets import depth_reader
    from slife.eval.models import image_grid, load_one, model_spec_of
    from slife.eval.plots import plot_depth_examples
    from slife.train.checkpoint import save_checkpoint

    if cfg.data_root is None:
        raise SlifeError(f"probe: no dataset folder given (--data-root or ${ENV_ROOTS[cfg.dataset]})")
    if model is None:
        if not checkpoints:
            raise SlifeError("probe: give a checkpoint")
        model, ckpt = load_one(checkpoints[0])  # any objective's encoder (CroCoNet or ViT)
        spec = model_spec_of(ckpt)
    elif spec is None:
        raise SlifeError("probe: a model given without its ModelSpec")
    model.eval()
    S, patch, side = image_grid(spec.kwargs)
    enc_depth = int(model.enc_depth)
    for la in cfg.layers:
        if not -enc_depth <= la < enc_depth:
            raise SlifeError(f"probe: layer {la} outside the encoder's {enc_depth} blocks")
    blocks = sorted(la % enc_depth for la in cfg.layers)  # 0-based, in block order whatever the order given
    if len(set(blocks)) < len(blocks):
        raise SlifeError(f"probe: --layer names a block twice ({', '.join(map(str, cfg.layers))}; "
                         f"the encoder has {enc_depth} blocks)")
    layers = [None if b == enc_depth - 1 else b for b in blocks]  # None: the last block, after the final norm
    layer_name = "+".join("last" if la is None else str(la) for la in layers)
    if not Path(cfg.data_root).exists():
        raise SlifeError(f"{cfg.data_root}: no such folder (the {cfg.dataset} dataset's --data-root)")
    reader = depth_reader(cfg.dataset)
    opts = {"depth_kind": cfg.depth_kind, "frame_step": cfg.frame_step}
    desc = reader.describe(cfg.data_root, **opts)
    if desc.get("split") == "time":
        log.warning("%s: one life, split in time: its last %d%% of frames test the probe and show the same places "
                    "as the training frames, so the score also rewards remembering the places; for a "
                    "place-disjoint benchmark give a folder with train/ and test/ lives (what `slife demo` builds)",
                    cfg.data_root, round(100 * (desc.get("test_share") or 0.2)))
    torch.manual_seed(cfg.seed)
    skipped: dict[str, list] = {"train": [], "test": []}  # views the reader left out (last encoding pass)

    def fit(encoder, splits=None, label="encoder"):
        """Encode both splits with `encoder` (or take `splits` as given), fit cfg.readouts fresh readouts, score
        them -> (readout 0, tr, te, readout 0's predictions, result with their mean). The progress bar counts each
        fit (the encoder's, each control's) from zero."""
        if progress:
            progress(0, reset=True, description=f"probe: {label}")
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        if splits is None:
            for sk in skipped.values():
                sk.clear()
            tr = encode_split(encoder, reader.iterate(cfg.data_root, "train", cfg.max_train, skipped=skipped["train"],
                                                      **opts), S, layers, progress=progress)
            te = encode_split(encoder, reader.iterate(cfg.data_root, "test", cfg.max_test, skipped=skipped["test"],
                                                      **opts), S, layers, progress=progress)
        else:
            tr, te = splits
        t_encode = time.perf_counter() - t0
        if tr["tokens"] is None or te["tokens"] is None:
            lost = (f" ({len(skipped['train'])} train and {len(skipped['test'])} test views left out: unreadable "
                    "depth maps)" if skipped["train"] or skipped["test"] else "")
            raise SlifeError(f"{cfg.data_root}: {len(tr['names'])} train and {len(te['names'])} test images{lost}; "
                             "need both")
        if progress:
            n_fit = len(validation_split(tr["names"])[0]) if len(cfg.lr) > 1 else 0
            progress(0, total=(len(tr["names"]) + len(te["names"])) * (splits is None)
                     + readout_steps(cfg, len(tr["names"]), n_fit))
        t1 = time.perf_counter()
        chosen = choose_lr(tr, cfg, side, patch, progress) if len(cfg.lr) > 1 else None
        lr = chosen["lr"] if chosen else cfg.lr[0]
        t_choose = time.perf_counter() - t1
        per, first = [], None  # {"seed", "metrics", "metrics_aligned", "train_loss"} per readout; readout 0, its pred
        for k in range(cfg.readouts):
            kcfg = replace(cfg, seed=cfg.seed + k)
            torch.manual_seed(kcfg.seed)
            readout = AttentiveReadout(tr["tokens"].shape[-1], (side, side), patch, cfg.dim, cfg.heads)
            losses = train_readout(readout, tr["tokens"], tr["depth"], tr["mask"], kcfg, lr, progress)
            pred = predict(readout, te["tokens"])  # (n, S, S)
            m, m_al = score(pred, te["depth"], te["mask"], cfg)
            per.append({"seed": kcfg.seed, "metrics": m, "metrics_aligned": m_al, "train_loss": losses})
            first = first or (readout, pred)  # only readout 0's predictions are kept (examples, saved weights)
        t_train = time.perf_counter() - t1 - t_choose
        result = {"metrics": _mean_over_readouts([r["metrics"] for r in per]),
                  "metrics_aligned": _mean_over_readouts([r["metrics_aligned"] for r in per]) if cfg.align else None,
                  "metrics_se": _se_over_readouts([r["metrics"] for r in per]),
                  "metrics_aligned_se": _se_over_readouts([r["metrics_aligned"] for r in per]) if cfg.align else None,
                  "train_loss": per[0]["train_loss"], "readouts": per if cfg.readouts > 1 else None,
                  "lr": lr, "lr_choice": chosen,
                  "seconds": {"encode": t_encode, "choose_lr": t_choose, "train": t_train,
                              "per_epoch": t_train / (cfg.epochs * cfg.readouts)}}
        return first[0], tr, te, first[1], result

    readout, tr, te, pred, result = fit(model)
    if skipped["train"] or skipped["test"]:
        log.warning("%s: %d train and %d test views left out (unreadable depth maps, e.g. %s); the metrics are on "
                    "the %d train / %d test views that remain", cfg.data_root, len(skipped["train"]),
                    len(skipped["test"]), (skipped["train"] + skipped["test"])[0]["file"], len(tr["names"]),
                    len(te["names"]))
    if len(te["names"]) < 10:
        log.warning("%s: only %d test images (%d train) with --frame-step %d: the metrics rest on very few images",
                    cfg.data_root, len(te["names"]), len(tr["names"]), cfg.frame_step)
    train_valid = (tr["depth"] > cfg.min_depth) & (tr["depth"] <= cfg.max_depth) & tr["mask"]
    mean_depth = float(tr["depth"][train_valid].mean()) if train_valid.any() else 1.0
    rows_base = [depth_metrics(np.full_like(g, mean_depth), g, m, cfg.min_depth, cfg.max_depth)
                 for g, m in zip(te["depth"], te["mask"])]
    control = None
    if cfg.control_untrained:
        from slife.eval.models import untrained_models

        control = fit(untrained_models([spec], [cfg.seed])[0][2], label="untrained encoder (control)")[4]
        control["seed"] = cfg.seed
    oracle = None
    if cfg.control_oracle:
        dim = int(tr["tokens"].shape[-1])
        oracle = fit(None, tuple(dict(sp, tokens=depth_oracle_tokens(sp["depth"], sp["mask"], patch, dim, cfg.seed,
                                                                      cfg.min_depth, cfg.max_depth))
                                 for sp in (tr, te)), label="depth oracle (control)")[4]
        oracle["tokens"] = "true log-depth per patch through a fixed random projection (depth_oracle_tokens)"
    position = None
    if cfg.control_position:
        position = fit(None, tuple(dict(sp, tokens=torch.zeros(1, *sp["tokens"].shape[1:], dtype=sp["tokens"].dtype)
                                        .expand(len(sp["tokens"]), -1, -1)) for sp in (tr, te)),
                       label="position prior (control)")[4]
        position["tokens"] = "zeros: the readout sees only each patch's position (the depth prior per position)"
    rep = {
        "dataset": cfg.dataset, "data": desc, "checkpoint": str(checkpoints[0]) if checkpoints else None,
        "layer": layer_name, "target": "log-depth regression (metres), L1 loss",
        "resolution": [S, S], "crop": "centre square, resized to the model size; depth nearest",
        "eigen_crop": cfg.dataset == "nyu", "num_train": len(tr["names"]), "num_test": len(te["names"]),
        "skipped_views": {"train": len(skipped["train"]), "test": len(skipped["test"]),
                          "views": skipped["train"] + skipped["test"]},
        **result, "baseline_mean_depth": {**mean_metrics(rows_base), "depth_m": mean_depth},
        "control_untrained": control, "control_oracle": oracle, "control_position": position,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
    }
    out_dir = Path(out_dir)  # made only now: a run that fails on its data leaves no empty folder
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "probe.json"
    atomic_write_text(path, json.dumps(rep, indent=2))
    save_checkpoint(out_dir / "probe_readout.pt", {
        "readout": readout.state_dict(), "enc_dim": int(tr["tokens"].shape[-1]), "grid": [side, side],
        "patch": patch, "dim": cfg.dim, "heads": cfg.heads, "layers": blocks,
        "config": rep["config"], "encoder_checkpoint": rep["checkpoint"] or ""})
    k = min(cfg.num_examples, len(te["rgb"]))
    plot_depth_examples(te["rgb"][:k], list(pred[:k]), list(te["depth"][:k]), out_dir / "probe_examples.png",
                        cfg.max_depth, f"{cfg.dataset}: predicted vs true depth (test images)")
    log.info("wrote %s", path)
    return path
