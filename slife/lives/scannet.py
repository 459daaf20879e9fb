"""A ScanNet scene export (SensReader output) as a Life: colour frames, poses, depth, intrinsics.

Reads `color/<n>.jpg`, `pose/<n>.txt` (4x4 camera-to-world, OpenCV axes, metres; invalid poses are written
as -inf and are dropped with a count), `depth/<n>.png` (uint16 mm, 0 = invalid), `intrinsic/intrinsic_color.txt`
and `intrinsic/intrinsic_depth.txt` (4x4, the 3x3 top-left is K). Frame numbers n are the sensor's frame
ids at 30 Hz, so t = n / 30 s. ScanNet's intrinsics follow the OpenCV pixel convention; cx, cy gain 0.5 here
(slife uses COLMAP's). Depth maps (usually 640x480) get their own `Life.depth_camera`.
Returns a `Life`; entry points `detect`, `read`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slife.errors import SlifeError
from slife.lives.geometry import Camera, pose_problem
from slife.lives.life import ImageFiles, Life, image_size, life_name

log = logging.getLogger(__name__)

FPS = 30.0  # ScanNet's sensor frame rate (frame ids count at this rate)


def detect(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "color").is_dir() and (path / "pose").is_dir()


def _numbered(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(p.stem): p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.stem.isdigit()}


def _matrix(f: Path) -> np.ndarray:
    try:
        M = np.loadtxt(f, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise SlifeError(f"{f}: not a 4x4 matrix ({e})") from None
    if M.shape != (4, 4):
        raise SlifeError(f"{f}: expected a 4x4 matrix, got shape {M.shape}")
    return M


def _camera(f: Path, width: int, height: int) -> Camera:
    K = _matrix(f)[:3, :3]
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SlifeError(f"{f}: invalid intrinsics")
    return Camera("PINHOLE", width, height, (K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5))


def read(path: Path) -> Life:
    """Read a ScanNet export folder (see the module docstring)."""
    path = Path(path)
    color = _numbered(path / "color", (".jpg", ".jpeg", ".png"))
    if not color:
        raise SlifeError(f"{path / 'color'}: no numbered colour images")
    nums = sorted(color)
    n = len(nums)
    warnings: list[str] = []
    counts: dict = {}
    poses = _numbered(path / "pose", (".txt",))
    T = np.full((n, 4, 4), np.nan)
    has_file = np.array([k in poses for k in nums], bool)
    missing = int((~has_file).sum())
    for i, k in enumerate(nums):
        if has_file[i]:
            T[i] = _matrix(poses[k])
    if missing:
        counts["poses_missing"] = missing
        warnings.append(f"pose/: {missing} of {n} frames have no pose file")
    problem = pose_problem(T)
    bad = has_file & (problem != "")  # a file of NaN counts too
    if bad.any():
        counts["poses_invalid"] = int(bad.sum())
        warnings.append(f"pose/: {int(bad.sum())} of {n} poses dropped (-inf, NaN or not a rotation)")
        T[bad] = np.nan
    valid = np.isfinite(T).all(axis=(1, 2))

    W, H = image_size([color[k] for k in nums])
    kc = path / "intrinsic" / "intrinsic_color.txt"
    cameras, cam_id = [], np.full(n, -1, np.int32)
    if kc.is_file():
        cameras = [_camera(kc, W, H)]
        cam_id[:] = 0
    else:
        warnings.append("intrinsic/intrinsic_color.txt missing: intrinsics unknown")

    depth = _numbered(path / "depth", (".png",))
    depth_paths = depth_camera = None
    if depth:
        depth_paths = [depth.get(k) for k in nums]
        nd = sum(p is None for p in depth_paths)
        if nd:
            counts["depth_missing"] = nd
            warnings.append(f"depth/: {nd} of {n} frames have no depth map")
        kd = path / "intrinsic" / "intrinsic_depth.txt"
        dW, dH = image_size([p for p in depth_paths if p is not None])
        if kd.is_file():
            depth_camera = _camera(kd, dW, dH)
        elif (dW, dH) != (W, H):
            warnings.append("intrinsic/intrinsic_depth.txt missing and depth size differs from colour")
    for w in warnings:
        log.warning("%s: %s", path, w)
    return Life(
        name=life_name(path), root=path, format="scannet",
        sources=[ImageFiles(name="color", path=path / "color", files=[color[k] for k in nums])],
        source=np.zeros(n, np.int32), frame_index=np.arange(n, dtype=np.int64),
        t=np.asarray(nums, dtype=np.float64) / FPS, T_world_cam=T, pose_valid=valid, cameras=cameras,
        camera_id=cam_id, depth_paths=depth_paths, depth_scale=1000.0, depth_camera=depth_camera,
        counts=counts, warnings=warnings, meta={"frame_ids": "file numbers at 30 Hz"},
    )
