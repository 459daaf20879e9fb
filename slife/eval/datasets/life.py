"""Reader of slife life folders with depth maps as a depth benchmark (e.g. synthetic lives from `slife synth`).

Two layouts:
- a place-disjoint benchmark: a folder with `train/` and `test/`, each holding one or more life folders
  (e.g. `slife synth --kind views` of different scenes): every `frame_step`-th frame with depth of the
  lives under `train/` is "train", of those under `test/` "test", so test views show places no training
  view shows (what `slife demo` builds);
- one life folder: the first (1 - test_share) of its frames (in life order) are "train", the rest "test",
  so the two splits are apart in time only (they may show the same places).
A life is anything `slife.lives.read_life` recognises whose frames have depth (`depth/{i:06d}.png`, uint16
mm, 0 = invalid). Returns `DepthSample`s named `{life}/{frame}`. A view whose depth map cannot be read (not an
image, truncated) is left out: it is named in a warning and, when `iterate` is given a `skipped` list, appended
there ({"name", "file", "error"}) so the caller can count it.
Entry points: `detect`, `describe`, `iterate`. Reading lives is `slife.lives`' job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from slife.errors import SlifeError
from slife.eval.datasets import DepthSample

log = logging.getLogger(__name__)


def detect(root: Path) -> bool:
    root = Path(root)
    return (root / "depth").is_dir() or ((root / "train").is_dir() and (root / "test").is_dir())


def _life_frames(root: Path, frame_step: int):
    from slife.lives import read_life

    if not (root / "depth").is_dir():
        raise SlifeError(f"{root}: no depth/ folder (expected a life folder with depth/{{i:06d}}.png, uint16 mm)")
    life = read_life(root)
    if life.depth_paths is None:
        raise SlifeError(f"{root}: the life has no depth maps (expected depth/{{i:06d}}.png)")
    return life, np.array([i for i, p in enumerate(life.depth_paths) if p is not None], dtype=np.int64)[::frame_step]


def _split_lives(root: Path, split: str) -> list[Path]:
    lives = sorted(p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not lives:
        raise SlifeError(f"{root / split}: no life folders (expected one folder per place, each with depth/)")
    return lives


def _frames(root: Path, frame_step: int, test_share: float) -> dict:
    """split -> [(life, frame ids)]."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir() and not (root / "depth").is_dir():
        return {sp: [_life_frames(p, frame_step) for p in _split_lives(root, sp)] for sp in ("train", "test")}
    life, ids = _life_frames(root, frame_step)
    if len(ids) < 2:
        raise SlifeError(f"{root}: {len(ids)} frames with depth; need at least 2 (one train, one test)")
    n_test = max(1, int(round(len(ids) * test_share)))
    return {"train": [(life, ids[:-n_test])], "test": [(life, ids[-n_test:])]}


def describe(root: Path, frame_step: int = 1, test_share: float = 0.2, **_) -> dict:
    sp = _frames(root, frame_step, test_share)
    split = "places" if len(sp["train"]) > 1 or sp["train"][0][0] is not sp["test"][0][0] else "time"
    return {"format": "life", "root": str(root), "split": split,
            "lives": {k: [life.name for life, _ in v] for k, v in sp.items()}, "frame_step": frame_step,
            "test_share": test_share if split == "time" else None,
            "train": int(sum(len(ids) for _, ids in sp["train"])), "test": int(sum(len(ids) for _, ids in sp["test"]))}


def iterate(root: Path, split: str, limit: int = 0, frame_step: int = 1, test_share: float = 0.2,
            skipped: list | None = None, **_) -> Iterator[DepthSample]:
    """Samples of `split` (first `limit` if > 0); views with an unreadable depth map are left out, named in a
    warning (the first 5 of each call) and appended to `skipped` when given."""
    n = bad = 0
    for life, ids in _frames(root, frame_step, test_share)[split]:
        for i, rgb in life.iter_frames(ids):
            if limit and n >= limit:
                return
            try:
                depth = life.read_depth(i)
            except (OSError, ValueError, SyntaxError) as e:  # PIL: not an image, truncated, bad header
                bad += 1
                file = str(life.depth_paths[i])
                if bad <= 5:
                    log.warning("%s: unreadable depth map (%s: %s); view %s/%d left out", file, type(e).__name__,
                                e, life.name, int(i))
                if skipped is not None:
                    skipped.append({"name": f"{life.name}/{int(i)}", "file": file, "error": f"{type(e).__name__}: {e}"})
                continue
            if depth is None:
                continue
            if depth.shape != rgb.shape[:2]:
                from PIL import Image

                depth = np.asarray(Image.fromarray(depth).resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST))
            n += 1
            yield DepthSample(f"{life.name}/{int(i)}", np.asarray(rgb, dtype=np.uint8), depth.astype(np.float32))
