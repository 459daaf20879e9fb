"""Reader of a slife life folder with depth maps as a depth benchmark (e.g. a synthetic life from `slife synth`).

Reads any life `slife.lives.read_life` recognises whose frames have depth (`depth/{i:06d}.png`, uint16 mm,
0 = invalid); every `frame_step`-th frame with depth is used; the first (1 - test_share) of them (in life
order) are "train", the rest "test", so the two splits are apart in time. Returns `DepthSample`s.
Entry points: `detect`, `describe`, `iterate`. Reading lives is `slife.lives`' job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from slife.errors import SlifeError
from slife.eval.datasets import DepthSample


def detect(root: Path) -> bool:
    return (Path(root) / "depth").is_dir()


def _frames(root: Path, frame_step: int, test_share: float):
    from slife.lives import read_life

    root = Path(root)
    if not (root / "depth").is_dir():
        raise SlifeError(f"{root}: no depth/ folder (expected a life folder with depth/{{i:06d}}.png, uint16 mm)")
    life = read_life(root)
    if life.depth_paths is None:
        raise SlifeError(f"{root}: the life has no depth maps (expected depth/{{i:06d}}.png)")
    ids = np.array([i for i, p in enumerate(life.depth_paths) if p is not None], dtype=np.int64)[::frame_step]
    if len(ids) < 2:
        raise SlifeError(f"{root}: {len(ids)} frames with depth; need at least 2 (one train, one test)")
    n_test = max(1, int(round(len(ids) * test_share)))
    return life, {"train": ids[:-n_test], "test": ids[-n_test:]}


def describe(root: Path, frame_step: int = 1, test_share: float = 0.2, **_) -> dict:
    life, sp = _frames(root, frame_step, test_share)
    return {"format": "life", "root": str(root), "life": life.name, "frame_step": frame_step,
            "test_share": test_share, "train": int(len(sp["train"])), "test": int(len(sp["test"]))}


def iterate(root: Path, split: str, limit: int = 0, frame_step: int = 1, test_share: float = 0.2,
            **_) -> Iterator[DepthSample]:
    life, sp = _frames(root, frame_step, test_share)
    ids = sp[split][:limit] if limit else sp[split]
    for i, rgb in life.iter_frames(ids):
        depth = life.read_depth(i)
        if depth is None:
            continue
        if depth.shape != rgb.shape[:2]:
            from PIL import Image

            depth = np.asarray(Image.fromarray(depth).resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST))
        yield DepthSample(str(int(i)), np.asarray(rgb, dtype=np.uint8), depth.astype(np.float32))
