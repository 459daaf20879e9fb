"""Evaluation datasets: one reader module per official format.

Depth readers (`nyu`, `scannet`, `life`) each have `detect(root) -> bool`, `describe(root, **opts) -> dict`
and `iterate(root, split, limit=0, **opts) -> Iterator[DepthSample]` (split "train" or "test");
`hpatches` reads pairs related by homographies (`read_pairs`). `DEPTH_DATASETS` is the registry
(name -> module path, imported on first use); `depth_reader(name)` returns the module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from slife.errors import SlifeError

DEPTH_DATASETS: dict[str, str] = {
    "nyu": "slife.eval.datasets.nyu",  # nyu_depth_v2_labeled.mat (HDF5 v7.3) + splits.mat
    "scannet": "slife.eval.datasets.scannet",  # exported scenes: color/, depth/ (mm), intrinsic/ + split lists
    "life": "slife.eval.datasets.life",  # any slife life folder with depth/
}

HOMOGRAPHY_DATASETS: dict[str, str] = {
    "hpatches": "slife.eval.datasets.hpatches",  # hpatches-sequences-release, Oxford sequences
}


@dataclass
class DepthSample:
    """One RGB image with its metric depth."""

    name: str  # id within the dataset (index or file stem)
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = invalid
    eval_mask: np.ndarray | None = None  # (H, W) bool region that is scored (e.g. the Eigen crop); None = all


def depth_reader(name: str):
    """The reader module of depth dataset `name`."""
    if name not in DEPTH_DATASETS:
        raise SlifeError(f"unknown depth dataset {name!r}; known: {', '.join(DEPTH_DATASETS)}")
    return importlib.import_module(DEPTH_DATASETS[name])
