"""Zero-shot dense correspondence from decoder cross-attention (or encoder features), scored against homographies.

Reads checkpoints (DESIGN.md "Checkpoints") and pairs of images related by a homography
(`datasets/hpatches.py`: image 1 = TARGET, which attends; image N = SOURCE). Both images are resized
(stretched) to the model's S x S; the cross-attention logits are averaged over heads and decoder blocks
(`method` attention: CroCo checkpoints only) or, for encoders without a decoder (dinov2, egomotion) and with
`method` features, replaced by the scaled cosine similarity of the encoder's patch tokens (`attention.feature_logits`:
feature nearest-neighbour matching); `method` auto takes attention where the model has it (with `masked`, read
with the target masked as in training: `attention.masked_logits`); a soft-argmax over source patch centres gives
each target patch a source position (coarse flow), whose
displacement (in image-size units) is upsampled bilinearly to every full-resolution target pixel.
Metrics per pair on target pixels whose true match lies inside the source image: EPE (pixels of the
source image), AEPE = mean over pairs of the per-pair mean EPE, PCK-1/3/5 = mean over pairs of the share
of pixels with EPE <= 1/3/5; per pair index (2..6) and overall. Controls beside them (DESIGN.md
"Measured on this kind of machine"): the identity (zero-flow) baseline, the same scores restricted to
pixels of displaced patches (true match > 1 patch from the same grid position) with their share, the
patch-level top-1 accuracy (within one patch) of the model, of the same-position predictor and at chance (a
uniformly random source patch: `cas.accuracy_chance` per pair), a grid oracle (exact matches of the patch
centres, upsampled like the model's flow: the ceiling at this grid), and untrained encoders
(`models.untrained_models`, named by `models.untrained_label`) of each architecture among the checkpoints, scored
like the checkpoints (the control that shows what training added).
Writes `match.json`, `match.csv`, `match.png` into out_dir. Entry point: `run(cfg, checkpoints, out_dir)`.
Pixel convention: slife's (centre of pixel (0, 0) at (0.5, 0.5)); H files use OpenCV's (converted here).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from slife.errors import SlifeError
from slife.eval.attention import METHODS, correspondence_maps, head_average
from slife.eval.groundtruth import (apply_homography, displaced_mask, homography_to_model_frame,
                                    matches_from_homography, patch_centres, within_one)

log = logging.getLogger(__name__)

THRESHOLDS = (1, 3, 5)
DATASETS = ("hpatches",)


@dataclass(frozen=True)
class MatchConfig:
    data_root: Path | None = None  # folder of homography sequences (HPatches release, Oxford sequence, ...)
    dataset: str = "hpatches"  # reader: hpatches (also any folder of image pairs with homographies)
    sequences: tuple[str, ...] = ("v_",)  # sequence-name prefixes to use in an HPatches root (() = all)
    temperature: float = 1.0  # soft-argmax temperature on the head/block-averaged logits
    softmax: bool = False  # soft-argmax over post-softmax maps averaged over heads and blocks (weights, no T)
    max_pairs: int = 0  # evaluate only the first n pairs (0 = all)
    max_side: int = 0  # downscale images whose longer side exceeds this before scoring (0 = full resolution)
    method: str = "auto"  # attention (CroCo decoder), features (encoder nearest neighbours), auto (attention if any)
    masked: bool = False  # read attention with the target masked as in training (`attention.masked_logits`)
    untrained_seeds: tuple[int, ...] = (0,)  # seeds of the untrained controls, one per seed and architecture (() none)

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.masked and self.method == "features":
            raise ValueError("masked reads the decoder's attention, which method features does not use")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_pairs < 0 or self.max_side < 0:
            raise ValueError("max_pairs and max_side must be >= 0")
        object.__setattr__(self, "sequences", tuple(self.sequences))
        object.__setattr__(self, "untrained_seeds", tuple(int(x) for x in self.untrained_seeds))


# ---------------------------------------------------------------------------------------------------------------
# flow maths (pure functions)

def soft_argmax(A: torch.Tensor, grid: tuple[int, int], patch: int, temperature: float = 1.0,
                probabilities: bool = False) -> torch.Tensor:
    """Expected source patch centre per target patch: A (..., N_t, N_s) -> (..., N_t, 2) pixel (x, y) at model size.

    `A` are logits (softmax(A / T) weights) or, with `probabilities`, non-negative weights (renormalised)."""
    centres = torch.from_numpy(patch_centres(grid, patch)).to(A.dtype)  # (N_s, 2)
    if probabilities:
        w = A.clamp_min(0)
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    else:
        w = (A / temperature).softmax(dim=-1)
    return w @ centres  # (..., N_t, 2)


def pixel_centres(size: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) float64 (x, y) of every pixel centre of an image of size (W, H) (slife convention)."""
    W, H = size
    xs, ys = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    return np.stack([xs, ys], axis=-1)


def dense_correspondence(corr: np.ndarray, grid: tuple[int, int], patch: int, size_tgt: tuple[int, int],
                         size_src: tuple[int, int]) -> np.ndarray:
    """Coarse source positions (h*w, 2) at model size -> (H_t, W_t, 2) source pixel per full-resolution target pixel.

    The displacement in image-size units (source position / S minus target patch centre / S) is upsampled
    bilinearly (patch centres are the sample points), added to each target pixel's normalised position and
    scaled to the source image size."""
    h, w = grid
    S = np.array([w * patch, h * patch], dtype=np.float64)
    disp = (np.asarray(corr, dtype=np.float64) - patch_centres(grid, patch)) / S  # (N, 2) normalised
    d = torch.from_numpy(disp.reshape(h, w, 2)).permute(2, 0, 1)[None]  # (1, 2, h, w)
    Wt, Ht = size_tgt
    up = F.interpolate(d, size=(Ht, Wt), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()  # (Ht, Wt, 2)
    base = pixel_centres(size_tgt) / np.array([Wt, Ht], dtype=np.float64)  # (Ht, Wt, 2) normalised
    return (base + up) * np.array(size_src, dtype=np.float64)


def homography_correspondence(H: np.ndarray, size_tgt: tuple[int, int], size_src: tuple[int, int],
                              opencv_pixels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """True source pixel of every target pixel under H (target -> source) -> ((H_t, W_t, 2), valid (H_t, W_t)).

    `opencv_pixels`: H uses integer pixel centres (HPatches, Oxford); valid = finite and inside the source."""
    p = pixel_centres(size_tgt)  # (Ht, Wt, 2)
    sh = 0.5 if opencv_pixels else 0.0
    ph = np.concatenate([p - sh, np.ones(p.shape[:2] + (1,))], axis=-1) @ np.asarray(H, dtype=np.float64).T  # (Ht, Wt, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = ph[..., :2] / ph[..., 2:3] + sh
    Ws, Hs = size_src
    valid = np.isfinite(q).all(-1) & (ph[..., 2] > 0) & (q[..., 0] >= 0) & (q[..., 0] < Ws) & (q[..., 1] >= 0) & (q[..., 1] < Hs)
    return np.where(valid[..., None], q, 0.0), valid


def epe_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, thresholds=THRESHOLDS) -> dict:
    """Per-image end-point error stats on `valid` pixels: {"epe": mean, "pck-t": share <= t, "pixels"} (NaN if none)."""
    m = np.asarray(valid, dtype=bool)
    if not m.any():
        return {"epe": math.nan, **{f"pck{t}": math.nan for t in thresholds}, "pixels": 0}
    e = np.linalg.norm(np.asarray(pred)[m] - np.asarray(gt)[m], axis=-1)  # (n,)
    return {"epe": float(e.mean()), **{f"pck{t}": float((e <= t).mean()) for t in thresholds}, "pixels": int(m.sum())}


def aggregate(per_pair: list[dict]) -> dict:
    """AEPE (mean of per-pair mean EPE) and PCK (mean of per-pair shares) over pairs with valid pixels."""
    rows = [r for r in per_pair if r and r.get("pixels", 0) > 0]
    if not rows:
        return {"aepe": None, **{f"pck{t}": None for t in THRESHOLDS}, "pairs": 0}
    return {"aepe": float(np.mean([r["epe"] for r in rows])),
            **{f"pck{t}": float(np.mean([r[f"pck{t}"] for r in rows])) for t in THRESHOLDS}, "pairs": len(rows)}


def rescale_homography(H: np.ndarray, f_tgt: float, f_src: float) -> np.ndarray:
    """H (OpenCV pixels) for the two images resized by f_tgt and f_src (x' = f (x + 0.5) - 0.5)."""
    def D(f):
        return np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1.0]])

    return D(f_src) @ np.asarray(H, dtype=np.float64) @ np.linalg.inv(D(f_tgt))


# ---------------------------------------------------------------------------------------------------------------
# one pair

def _load_rgb(path: Path, max_side: int) -> tuple[np.ndarray, float]:
    """RGB uint8 (H, W, 3) and the scale applied (1.0 unless the longer side exceeded max_side)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w0 = im.size[0]
            if max_side and max(im.size) > max_side:
                f = max_side / max(im.size)
                im = im.resize((max(1, round(im.size[0] * f)), max(1, round(im.size[1] * f))), Image.BILINEAR)
            return np.asarray(im), im.size[0] / w0
    except OSError as e:
        raise SlifeError(f"{path}: cannot read image ({e})") from None


def to_model_input(rgb: np.ndarray, S: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> (3, S, S) float32 ImageNet-normalised, stretched to S x S."""
    from slife.train.augment import normalize

    t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)[None]  # (1, 3, H, W)
    t = F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
    return normalize(t)[0]


def score_pair(maps: torch.Tensor, H: np.ndarray, size_tgt, size_src, grid, patch, temperature=1.0,
               probabilities=False) -> dict:
    """All numbers of one pair from its per-block head-averaged maps (L, N_t, N_s) and the full-res H (OpenCV)."""
    S = grid[1] * patch
    A = maps.mean(0)  # (N_t, N_s)
    corr = soft_argmax(A, grid, patch, temperature, probabilities).numpy()  # (N, 2)
    pred = dense_correspondence(corr, grid, patch, size_tgt, size_src)  # (Ht, Wt, 2)
    gt, valid = homography_correspondence(H, size_tgt, size_src)
    ident = pixel_centres(size_tgt)
    Hm = homography_to_model_frame(H, size_tgt, size_src, (S, S))
    # grid oracle: the exact match of every patch centre, upsampled like the model's flow (the ceiling of
    # any flow sampled on this patch grid)
    oracle = dense_correspondence(np.nan_to_num(apply_homography(Hm, patch_centres(grid, patch))), grid, patch,
                                  size_tgt, size_src)
    true_idx = matches_from_homography(Hm, grid, patch)  # (N,)
    disp = displaced_mask(true_idx, grid)  # (N,)
    # every target pixel's patch at model size
    Wt, Ht = size_tgt
    cols = np.minimum((np.arange(Wt) + 0.5) * S / Wt // patch, grid[1] - 1).astype(np.int64)
    rows = np.minimum((np.arange(Ht) + 0.5) * S / Ht // patch, grid[0] - 1).astype(np.int64)
    pix_patch = rows[:, None] * grid[1] + cols[None, :]  # (Ht, Wt)
    vdisp = valid & disp[pix_patch]
    known = true_idx >= 0
    top1 = maps.argmax(-1).numpy()  # (L, N_t)
    top1_avg = A.argmax(-1).numpy()  # (N_t,)
    same = np.arange(len(true_idx))
    from slife.eval.cas import accuracy_chance

    acc = lambda pred_idx, m: float(within_one(pred_idx, true_idx, grid)[m].mean()) if m.any() else math.nan  # noqa: E731
    return {
        "model": epe_metrics(pred, gt, valid), "identity": epe_metrics(ident, gt, valid),
        "model_displaced": epe_metrics(pred, gt, vdisp), "identity_displaced": epe_metrics(ident, gt, vdisp),
        "grid_oracle": epe_metrics(oracle, gt, valid),
        "displaced_pixel_share": float(vdisp.sum() / valid.sum()) if valid.any() else math.nan,
        "displaced_patch_share": float(disp.sum() / known.sum()) if known.any() else math.nan,
        "patch_accuracy": acc(top1_avg, known), "patch_accuracy_displaced": acc(top1_avg, disp),
        "patch_accuracy_per_block": [acc(t, known) for t in top1],
        "patch_accuracy_displaced_per_block": [acc(t, disp) for t in top1],
        "same_position_accuracy": acc(same, known), "same_position_accuracy_displaced": acc(same, disp),
        "chance_accuracy": accuracy_chance(true_idx[None], grid),
        "chance_accuracy_displaced": accuracy_chance(np.where(disp, true_idx, -1)[None], grid),
        "patches_known": int(known.sum()), "patches_displaced": int(disp.sum()),
    }


def _nanmean(xs):
    v = [x for x in xs if x is not None and isinstance(x, float) and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def summarize(records: list[dict]) -> dict:
    """Overall and per-index aggregates of per-pair records (each with "index" and the keys of score_pair)."""
    def block(rs):
        nb = max((len(r["patch_accuracy_per_block"]) for r in rs), default=0)
        return {
            "model": aggregate([r["model"] for r in rs]), "identity": aggregate([r["identity"] for r in rs]),
            "model_displaced": aggregate([r["model_displaced"] for r in rs]),
            "identity_displaced": aggregate([r["identity_displaced"] for r in rs]),
            "grid_oracle": aggregate([r["grid_oracle"] for r in rs]),
            "displaced_pixel_share": _nanmean([r["displaced_pixel_share"] for r in rs]),
            "displaced_patch_share": (sum(r["patches_displaced"] for r in rs) / max(sum(r["patches_known"] for r in rs), 1)),
            "patch_accuracy": _nanmean([r["patch_accuracy"] for r in rs]),
            "patch_accuracy_displaced": _nanmean([r["patch_accuracy_displaced"] for r in rs]),
            "patch_accuracy_per_block": [_nanmean([r["patch_accuracy_per_block"][b] for r in rs
                                                   if b < len(r["patch_accuracy_per_block"])]) for b in range(nb)],
            "patch_accuracy_displaced_per_block": [
                _nanmean([r["patch_accuracy_displaced_per_block"][b] for r in rs
                          if b < len(r["patch_accuracy_displaced_per_block"])]) for b in range(nb)],
            "same_position_accuracy": _nanmean([r["same_position_accuracy"] for r in rs]),
            "same_position_accuracy_displaced": _nanmean([r["same_position_accuracy_displaced"] for r in rs]),
            "chance_accuracy": _nanmean([r["chance_accuracy"] for r in rs]),
            "chance_accuracy_displaced": _nanmean([r["chance_accuracy_displaced"] for r in rs]),
            "pairs": len(rs),
        }

    out = {"overall": block(records), "per_index": {}}
    for i in sorted({r["index"] for r in records}):
        out["per_index"][str(i)] = block([r for r in records if r["index"] == i])
    return out


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------------------------
# entry point

def run(cfg: MatchConfig, checkpoints: Sequence[Path], out_dir: Path,
        progress: Callable[..., None] | None = None, models: Sequence[tuple[str, object, dict]] | None = None) -> Path:
    """Score each checkpoint's attention flow on the homography pairs of `cfg.data_root`; write match.json/.csv/.png.

    Untrained controls (`cfg.untrained_seeds`) are built for each architecture among the checkpoints; `models`
    ((label, model, croco_kwargs) triples) may be given instead of checkpoints (the demo, which brings its own
    untrained controls; tests)."""
    from slife.io import atomic_write_text
    from slife.eval.datasets.hpatches import read_pairs
    from slife.eval.models import architectures, image_grid, load_models, model_spec_of, untrained_models
    from slife.eval.plots import plot_match

    if cfg.data_root is None:
        raise SlifeError("match: no dataset folder given (--data-root or SLIFE_HPATCHES_ROOT)")
    pairs, counts = read_pairs(Path(cfg.data_root), cfg.sequences)
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    if models is None:
        if not checkpoints:
            raise SlifeError("match: give at least one checkpoint")
        loaded = load_models(checkpoints, attention=cfg.method == "attention")
        models = [(n, m, model_spec_of(ck).kwargs) for n, m, ck in loaded]
        models += [(n, m, spec.kwargs) for n, spec, m in
                   untrained_models(architectures([ck for _, _, ck in loaded]), cfg.untrained_seeds)]
        if not cfg.untrained_seeds:
            log.warning("match: no --untrained-seeds, so no untrained control: nothing shows what training added "
                        "to these scores")
    if progress:
        progress(0, total=len(pairs) * len(models))
    cache: dict[Path, tuple[np.ndarray, float]] = {}

    def image(p: Path):
        if p not in cache:
            cache[p] = _load_rgb(p, cfg.max_side)
        return cache[p]

    results, records_all, timing, methods = {}, {}, {}, {}
    for name, model, kw in models:
        try:
            methods[name], maps_of = correspondence_maps(model, cfg.method, cfg.masked)
        except ValueError as e:  # attention on a model without a decoder, a mask ratio the masked read cannot use
            raise SlifeError(f"{name}: {e}") from None
        S, patch, side = image_grid(kw)
        grid = (side, side)
        recs = []
        t0 = time.perf_counter()
        for pr in pairs:
            ref, ft = image(pr.ref_path)
            img, fs = image(pr.img_path)
            H = rescale_homography(pr.H, ft, fs) if (ft != 1.0 or fs != 1.0) else pr.H
            size_t, size_s = (ref.shape[1], ref.shape[0]), (img.shape[1], img.shape[0])
            with torch.inference_mode():
                logits = maps_of(to_model_input(ref, S)[None], to_model_input(img, S)[None])
            maps = head_average(logits, cfg.softmax)[0]  # (L, N, N)
            r = score_pair(maps, H, size_t, size_s, grid, patch, cfg.temperature, cfg.softmax)
            r.update({"sequence": pr.sequence, "index": pr.index})
            recs.append(r)
            if progress:
                progress(1)
        timing[name] = len(pairs) / max(time.perf_counter() - t0, 1e-9)
        results[name] = summarize(recs)
        records_all[name] = recs
    rep = _clean({
        "dataset": cfg.dataset, "data_root": str(cfg.data_root), "counts": {**counts, "pairs": len(pairs)},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "checkpoints": {n: str(p) for (n, _, _), p in zip(models, checkpoints)} if checkpoints else {},
        "untrained": [n for n, _, _ in models[len(checkpoints):]] if checkpoints else [],
        "models": results, "pairs_per_s": timing, "methods": methods,
        "per_pair": {n: [{k: r[k] for k in ("sequence", "index", "model", "identity", "patch_accuracy",
                                            "patch_accuracy_displaced", "displaced_patch_share")} for r in recs]
                     for n, recs in records_all.items()},
        "notes": ("target = image 1 (attends), source = image N; EPE in source-image pixels at the evaluated "
                  "resolution; identity = zero flow; displaced = true match more than one patch from the same "
                  "grid position at the model's size"),
    })
    out_dir = Path(out_dir)  # made only now: a run that fails on its inputs leaves no empty folder
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "match.json"
    atomic_write_text(path, json.dumps(rep, indent=2))
    write_match_csv(out_dir / "match.csv", rep)
    plot_match(rep, out_dir / "match.png")
    log.info("wrote %s", path)
    return path


def write_match_csv(path: Path, rep: dict) -> None:
    """One row per (model or identity, subset, pair index or 'all')."""
    import csv
    import io

    from slife.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "predictor", "pixels", "index", "aepe", "pck1", "pck3", "pck5", "pairs"])
    for name, res in rep["models"].items():
        blocks = [("all", res["overall"])] + list(res["per_index"].items())
        for idx, b in blocks:
            for pred, key, sub in (("model", "model", "all"), ("identity", "identity", "all"),
                                   ("model", "model_displaced", "displaced"),
                                   ("identity", "identity_displaced", "displaced"),
                                   ("grid-oracle", "grid_oracle", "all")):
                m = b[key]
                fmt = lambda v: "" if v is None else f"{v:.6f}"  # noqa: E731
                w.writerow([name, pred, sub, idx, fmt(m["aepe"]), fmt(m["pck1"]), fmt(m["pck3"]), fmt(m["pck5"]),
                            m["pairs"]])
    atomic_write_text(path, buf.getvalue())
