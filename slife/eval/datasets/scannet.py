"""Reader of ScanNet exported frames for depth evaluation: scene folders with color/, depth/ (mm), intrinsic/.

Reads `<root>/<scene>/color/<n>.jpg`, `<root>/<scene>/depth/<n>.png` (uint16 millimetres, 0 = invalid;
colour is resized to the depth size), with the scenes of each split listed one per line in
`<root>/scannetv2_train.txt` and `<root>/scannetv2_val.txt` (official names; `train.txt` / `test.txt`
are accepted too); every `frame_step`-th frame is used. Returns `DepthSample`s.
Entry points: `detect`, `describe`, `iterate`. The probe is `eval/depth_probe.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from slife.errors import SlifeError
from slife.eval.datasets import DepthSample

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": ("scannetv2_train.txt", "train.txt"), "test": ("scannetv2_val.txt", "test.txt", "val.txt")}


def split_file(root: Path, split: str) -> Path:
    for name in SPLIT_FILES[split]:
        if (Path(root) / name).is_file():
            return Path(root) / name
    raise SlifeError(f"{root}: no {SPLIT_FILES[split][0]} (a list of scene folders, one per line; "
                     f"each scene with color/*.jpg, depth/*.png, intrinsic/)")


def detect(root: Path) -> bool:
    root = Path(root)
    return root.is_dir() and any((root / n).is_file() for names in SPLIT_FILES.values() for n in names) and any(
        (p / "depth").is_dir() for p in root.iterdir() if p.is_dir())


def scene_frames(scene: Path, frame_step: int) -> list[tuple[Path, Path]]:
    """[(color jpg, depth png)] of a scene, every `frame_step`-th depth frame that has a colour image."""
    if not (scene / "depth").is_dir() or not (scene / "color").is_dir():
        raise SlifeError(f"{scene}: expected color/ and depth/ folders (ScanNet export)")
    depth = sorted((scene / "depth").glob("*.png"), key=lambda p: (len(p.stem), p.stem))
    out = []
    for d in depth[::frame_step]:
        c = scene / "color" / f"{d.stem}.jpg"
        if c.is_file():
            out.append((c, d))
    return out


def _scenes(root: Path, split: str) -> list[Path]:
    f = split_file(root, split)
    names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    scenes = [Path(root) / n for n in names if (Path(root) / n).is_dir()]
    if len(scenes) < len(names):
        log.warning("%s: %d of %d listed scenes are missing", f, len(names) - len(scenes), len(names))
    if not scenes:
        raise SlifeError(f"{f}: none of the {len(names)} listed scenes is a folder under {root}")
    return scenes


def describe(root: Path, frame_step: int = 10, **_) -> dict:
    return {"format": "scannet", "root": str(root), "frame_step": frame_step,
            "train_scenes": len(_scenes(root, "train")), "test_scenes": len(_scenes(root, "test"))}


def iterate(root: Path, split: str, limit: int = 0, frame_step: int = 10, **_) -> Iterator[DepthSample]:
    from PIL import Image

    n = 0
    for scene in _scenes(root, split):
        for c, d in scene_frames(scene, frame_step):
            try:
                with Image.open(d) as im:
                    if im.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):  # a single-channel mm map
                        raise SlifeError(f"{d}: depth PNG is mode {im.mode}, expected 16-bit grey millimetres "
                                         "(ScanNet export)")
                    depth = np.asarray(im, dtype=np.float32) / 1000.0  # (H, W) metres
                with Image.open(c) as im:
                    rgb = np.asarray(im.convert("RGB").resize((depth.shape[1], depth.shape[0]), Image.BILINEAR))
            except OSError as e:
                log.warning("%s: skipped (%s)", d, e)
                continue
            yield DepthSample(f"{scene.name}/{d.stem}", rgb, depth)
            n += 1
            if limit and n >= limit:
                return
