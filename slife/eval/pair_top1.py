"""Top-1 patch correspondence on test pairs with ground truth, from decoder attention or encoder feature neighbours.

Reads encoders (checkpoints of any objective through `models.load_models`) and a folder of test pair shards with poses, depth and K (a held-out life's mined pairs, through
`cas.load_test_pairs`: no augmentation, both views at the model's size). For every target patch of every
pair, each encoder's top-1 source patch comes from the map `attention.correspondence_maps` gives for
`method`: the CroCo decoder's cross-attention averaged over heads and blocks ("attention", CroCo checkpoints
only; with `masked`, read with the target masked as in training: `attention.masked_logits`), the cosine
similarity of the encoder's final patch tokens ("features": feature nearest neighbour, any encoder), or
attention where the model has a decoder ("auto"). Accuracy = share of target patches whose top-1 lies within
one patch (Chebyshev) of the true match (`groundtruth.pair_ground_truth`), over all patches with a known match
and over displaced ones (true match more than one patch from the same grid position), beside chance (`cas.accuracy_chance`), the same-position predictor and the position prior
(`cas.position_prior_accuracy`: per target patch, the pick most often right on the other pairs; it ignores
the images; also told which patches moved, what detecting motion without matching reaches), and
chance-corrected as top-1 beyond position (`cas.accuracy_beyond_position`: exactly 0 for any fixed pick that
ignores the images) with its jackknife standard error and each model's paired difference from the untrained
controls. It is the top-1 accuracy that `slife cas` reports beside CAS, for every encoder kind and either map,
so encoders trained with different objectives compare like for like on the same pairs and the same ground
truth. Controls: chance,
the same-position predictor, and untrained encoders (`models.untrained_models`) of each architecture among
the checkpoints (named by `models.untrained_label`: a CroCo and a ViT control when both kinds are compared).
Writes `top1.json` into out_dir. Entry point: `run(cfg, checkpoints, out_dir, progress=None) -> Path`
(the command `slife top1`).
CAS itself (agreement between models) stays in `cas.py`; flow on homographies in `correspondence.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from slife.errors import SlifeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Top1Config:
    pairs: Path | None = None  # folder of test pair shards carrying poses + depth + K (a held-out life's); required
    num_pairs: int = 100  # test pairs used, spread evenly over the set (as `slife cas` takes them)
    method: str = "features"  # attention (CroCo decoder), features (encoder nearest neighbours), auto
    masked: bool = False  # read attention with the target masked as in training (`attention.masked_logits`)
    batch_size: int = 16  # pairs per forward pass
    untrained_seeds: tuple = (0,)  # seeds of the untrained controls, one per seed and architecture (() none)

    def __post_init__(self):
        from slife.eval.attention import METHODS

        if self.method not in METHODS:
            raise SlifeError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.masked and self.method == "features":
            raise SlifeError("--masked reads the decoder's attention, which --method features does not use")
        if self.num_pairs < 1 or self.batch_size < 1:
            raise SlifeError(f"num_pairs and batch_size must be >= 1, got {self.num_pairs}, {self.batch_size}")


def run(cfg: Top1Config, checkpoints: Sequence[Path], out_dir: Path,
        progress: Callable[..., None] | None = None) -> Path:
    """Score each checkpoint's encoder, and the untrained controls, on `cfg.pairs`; write top1.json; return its
    path. All encoders must share one image size and patch grid."""
    from slife.eval.attention import correspondence_maps, same_position_summary, summarize_model
    from slife.eval.cas import (accuracy, accuracy_chance, beyond_position_fields, load_test_pairs, nan_to_none,
                                position_prior_fields)
    from slife.eval.groundtruth import displaced_mask, ground_truth_table
    from slife.eval.models import architectures, image_grid, load_models, model_spec_of, untrained_models
    from slife.io import atomic_write_json

    if cfg.pairs is None:
        raise SlifeError("top-1: no test pair folder given")
    if not checkpoints:
        raise SlifeError("top-1: give at least one checkpoint")
    loaded = load_models(checkpoints, attention=cfg.method == "attention")
    entries = [(n, m, model_spec_of(ck).kwargs, str(p)) for (n, m, ck), p in zip(loaded, checkpoints)]
    entries += [(n, m, spec.kwargs, None)
                for n, spec, m in untrained_models(architectures([ck for _, _, ck in loaded]), cfg.untrained_seeds)]
    if not cfg.untrained_seeds:
        log.warning("top-1: no untrained control (--untrained-seeds is empty): nothing shows what accuracy an "
                    "untrained encoder of these architectures reaches")
    size, patch, side = image_grid(entries[0][2])
    for name, _, kw, _ in entries[1:]:
        if image_grid(kw)[::2] != (size, side):
            raise SlifeError(f"{name}: image size / patch grid {image_grid(kw)} differs from {entries[0][0]}'s "
                             f"{(size, patch, side)}; top-1 accuracy compares encoders on the same patch grid")
    grid = (side, side)
    pairs = load_test_pairs(cfg.pairs, size, cfg.num_pairs)
    true_idx = ground_truth_table(pairs, grid, patch)  # (P, N)
    if true_idx is None:
        raise SlifeError(f"{cfg.pairs}: no test pair carries ground truth (poses + depth + K); top-1 accuracy needs it")
    disp = displaced_mask(true_idx, grid)  # (P, N)
    if progress:
        progress(0, total=len(entries) * len(pairs))
    out, picks = {}, {}
    for name, model, _, path in entries:
        try:
            method = correspondence_maps(model, cfg.method, cfg.masked)[0]
        except ValueError as e:
            raise SlifeError(f"{path or name}: {e}") from None
        s = summarize_model(name, model, pairs, 1, grid, method="features" if method == "features" else "attention",
                            masked=cfg.masked, batch_size=cfg.batch_size, progress=progress)
        picks[name] = s.top1().numpy()
        out[name] = {"kind": "model" if path else "untrained", "method": method, "checkpoint": path,
                     "all": accuracy(s, true_idx), "displaced": accuracy(s, true_idx, mask=disp)}
    untrained = {n: picks[n] for n, m in out.items() if m["kind"] == "untrained"}
    for name, m in out.items():  # beyond position, and each model's paired difference from the untrained controls
        m.update(beyond_position_fields(picks[name], true_idx, grid, disp,
                                        untrained if m["kind"] == "model" else None))
    sp = same_position_summary(grid, 1, len(pairs))
    known = true_idx >= 0
    rep = {"pairs": str(cfg.pairs), "num_pairs": len(pairs), "grid": list(grid), "img_size": size, "patch_size": patch,
           "patches_with_truth": int(known.sum()), "displaced_patches": int(disp.sum()),
           "displaced_share": float(disp.sum() / known.sum()) if known.any() else None,
           "chance": accuracy_chance(true_idx, grid),
           "same_position": {"all": accuracy(sp, true_idx), "displaced": accuracy(sp, true_idx, mask=disp)},
           "position_prior": position_prior_fields(true_idx, grid, disp),
           "models": out, "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
           "notes": "top-1 within one patch (Chebyshev) of the true match; displaced = true match more than one "
                    "patch from the same grid position; features = cosine nearest neighbour of final encoder tokens"}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "top1.json"
    atomic_write_json(path, nan_to_none(rep), indent=2)
    log.info("wrote %s", path)
    return path

