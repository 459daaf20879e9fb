"""Reader of NYU-Depth-v2 labelled data: `nyu_depth_v2_labeled.mat` (MATLAB v7.3 = HDF5) and `splits.mat`.

Reads, with h5py and axes as stored (MATLAB is column-major, so h5py sees them reversed): `images`
(1449, 3, 640, 480) uint8 -> (480, 640, 3) RGB; `depths` (filled) or `rawDepths` (1449, 640, 480)
float32 metres -> (480, 640); `splits.mat` (MATLAB v5, scipy.io) `trainNdxs` (795, 1) and `testNdxs`
(654, 1), 1-based. The Eigen crop (rows 45:471, cols 41:601 of 480 x 640) is given as `eval_mask`.
Returns `DepthSample`s; entry points: `detect`, `describe`, `iterate`. The probe is `eval/depth_probe.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from slife.errors import SlifeError
from slife.eval.datasets import DepthSample

log = logging.getLogger(__name__)

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
DEPTH_KINDS = ("depths", "rawDepths")
EIGEN_CROP = (45, 471, 41, 601)  # rows [45, 471), cols [41, 601) of a 480 x 640 image


def paths(root: Path) -> tuple[Path, Path]:
    """(labelled .mat, splits.mat) for a folder holding both, or for the .mat path itself (splits beside it)."""
    root = Path(root)
    mat = root if root.suffix == ".mat" and root.name != SPLITS_NAME else root / MAT_NAME
    splits = mat.parent / SPLITS_NAME
    if not mat.is_file():
        raise SlifeError(f"{root}: no {MAT_NAME} (expected {MAT_NAME} and {SPLITS_NAME} in this folder)")
    if not splits.is_file():
        raise SlifeError(f"{mat.parent}: no {SPLITS_NAME} beside {MAT_NAME} (official 1-based trainNdxs/testNdxs)")
    return mat, splits


def detect(root: Path) -> bool:
    root = Path(root)
    return (root / MAT_NAME).is_file() or (root.suffix == ".mat" and root.is_file())


def eigen_mask(h: int, w: int) -> np.ndarray:
    """(h, w) bool Eigen crop, scaled from 480 x 640 when the image has another size."""
    r0, r1, c0, c1 = EIGEN_CROP
    sy, sx = h / 480.0, w / 640.0
    m = np.zeros((h, w), bool)
    m[int(round(r0 * sy)):int(round(r1 * sy)), int(round(c0 * sx)):int(round(c1 * sx))] = True
    return m


def read_splits(path: Path) -> dict[str, np.ndarray]:
    """{"train": (n,) int64 0-based, "test": (m,) int64 0-based} from splits.mat."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        s = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError, NotImplementedError, MatReadError) as e:
        raise SlifeError(f"{path}: not a readable MATLAB splits file ({str(e).splitlines()[0]})") from None
    missing = [k for k in ("trainNdxs", "testNdxs") if k not in s]
    if missing:
        keys = ", ".join(k for k in s if not k.startswith("__"))
        raise SlifeError(f"{path}: no {' / '.join(missing)} (keys: {keys or 'none'})")
    return {"train": np.asarray(s["trainNdxs"]).ravel().astype(np.int64) - 1,
            "test": np.asarray(s["testNdxs"]).ravel().astype(np.int64) - 1}


def _open(mat: Path, depth_kind: str):
    import h5py

    if depth_kind not in DEPTH_KINDS:
        raise SlifeError(f"depth kind must be one of {DEPTH_KINDS}, got {depth_kind!r}")
    try:
        f = h5py.File(mat, "r")
    except OSError as e:
        raise SlifeError(f"{mat}: not an HDF5 (MATLAB v7.3) file ({str(e).splitlines()[0]})") from None
    missing = [k for k in ("images", depth_kind) if k not in f]
    if missing:
        keys = ", ".join(list(f.keys())[:10])
        f.close()
        raise SlifeError(f"{mat}: no {' / '.join(repr(k) for k in missing)} dataset (keys: {keys or 'none'})")
    im, d = f["images"], f[depth_kind]
    if im.ndim != 4 or im.shape[1] != 3 or d.ndim != 3 or d.shape[0] != im.shape[0] or d.shape[1:] != im.shape[2:]:
        shape = (tuple(im.shape), tuple(d.shape))
        f.close()
        raise SlifeError(f"{mat}: images/{depth_kind} of shapes {shape[0]} / {shape[1]}, expected (N, 3, W, H) / "
                         "(N, W, H) as MATLAB v7.3 stores them")
    return f


def describe(root: Path, depth_kind: str = "depths", **_) -> dict:
    mat, splits = paths(root)
    sp = read_splits(splits)
    with _open(mat, depth_kind) as f:
        n, _, w, h = f["images"].shape
    return {"format": "nyu", "file": str(mat), "depth": depth_kind, "images": int(n), "size": [int(w), int(h)],
            "train": int(len(sp["train"])), "test": int(len(sp["test"])), "eigen_crop": list(EIGEN_CROP)}


def iterate(root: Path, split: str, limit: int = 0, depth_kind: str = "depths", **_) -> Iterator[DepthSample]:
    """Samples of the official `split` ("train" or "test") in splits.mat order (first `limit` if > 0)."""
    mat, splits = paths(root)
    idx = read_splits(splits)[split]
    if limit:
        idx = idx[:limit]
    with _open(mat, depth_kind) as f:
        n = f["images"].shape[0]
        bad = idx[(idx < 0) | (idx >= n)]
        if len(bad):
            raise SlifeError(f"{splits}: index {int(bad[0]) + 1} outside 1..{n} of {mat.name}")
        for i in idx:
            rgb = np.ascontiguousarray(np.asarray(f["images"][int(i)]).transpose(2, 1, 0))  # (H, W, 3)
            depth = np.ascontiguousarray(np.asarray(f[depth_kind][int(i)], dtype=np.float32).T)  # (H, W) metres
            depth[~np.isfinite(depth)] = 0
            yield DepthSample(str(int(i) + 1), rgb.astype(np.uint8), depth, eigen_mask(*depth.shape))
