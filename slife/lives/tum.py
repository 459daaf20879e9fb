"""TUM RGB-D sequences as a Life: rgb frames, motion-capture poses associated by timestamp, depth.

Reads a sequence folder: `rgb.txt` (`timestamp filename` lines; without it, `rgb/*.png` named by timestamp),
`groundtruth.txt` (`timestamp tx ty tz qx qy qz qw`: the colour camera's optical centre, camera-to-world,
OpenCV axes, metres), optional `depth.txt` (depth PNG, 5000 units per metre, registered to rgb), and
intrinsics from `intrinsics.txt` (first numeric line `fx fy cx cy`, optional second line of 5 OpenCV
distortion coefficients k1 k2 p1 p2 k3) or TUM's published fr1/fr2/fr3 calibration picked from the folder name.
TUM's intrinsics are in the OpenCV pixel convention (centre of pixel (0,0) at (0,0)); slife's is COLMAP's,
so cx and cy gain 0.5 here.
Each rgb frame takes the nearest ground-truth pose within `max_dt` seconds (else no pose, counted); depth
frames are associated the same way. Unsorted rgb.txt / groundtruth.txt lines are sorted with a warning (each
line carries its own timestamp, so sorting loses nothing). Returns a `Life`; entry points `detect`, `read`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.geometry import Camera, make_pose, pose_problem, qvec_to_rotmat
from slife.lives.life import ImageFiles, Life, image_size, life_name

log = logging.getLogger(__name__)

MAX_DT = 0.02  # seconds: the largest rgb <-> ground-truth / depth time difference accepted
DEPTH_SCALE = 5000.0  # TUM depth PNG units per metre

# TUM's published Kinect colour calibrations (OpenCV pixel convention): fx fy cx cy, k1 k2 p1 p2 k3
TUM_INTRINSICS = {
    "fr1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "fr2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "fr3": ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
    "default": ((525.0, 525.0, 319.5, 239.5), (0.0, 0.0, 0.0, 0.0, 0.0)),  # ROS default
}


def detect(path: Path) -> bool:
    """A folder with groundtruth.txt and rgb.txt or rgb/."""
    path = Path(path)
    return path.is_dir() and (path / "groundtruth.txt").is_file() and (
        (path / "rgb.txt").is_file() or (path / "rgb").is_dir())


def _numeric_rows(f: Path, ncols: int, what: str) -> list[list[str]]:
    """Non-comment lines of a TUM text file split in words; SlifeError on a short line."""
    try:
        lines = f.read_text().splitlines()
    except OSError as e:
        raise SlifeError(f"{f}: cannot read ({e.strerror})") from None
    rows = []
    for ln, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split()
        if len(w) < ncols:
            raise SlifeError(f"{f}: line {ln} has {len(w)} fields, expected {ncols} ({what})")
        rows.append(w)
    return rows


def _sorted_times(t: np.ndarray, f: Path, warnings: list[str]) -> np.ndarray:
    """Order that sorts `t`, with a warning when the file was not already sorted."""
    if len(t) > 1 and np.any(np.diff(t) < 0):
        warnings.append(f"{f.name}: timestamps go backwards {plural(int((np.diff(t) < 0).sum()), 'time')}; lines sorted "
                        "by time")
    return np.argsort(t, kind="stable")


def associate(t_query: np.ndarray, t_ref: np.ndarray, max_dt: float) -> np.ndarray:
    """Index into sorted `t_ref` of the nearest timestamp to each `t_query` (N,), -1 if farther than max_dt."""
    if len(t_ref) == 0:
        return np.full(len(t_query), -1, np.int64)
    j = np.clip(np.searchsorted(t_ref, t_query), 1, max(len(t_ref) - 1, 1))
    if len(t_ref) == 1:
        j = np.zeros(len(t_query), np.int64)
    else:
        j = np.where(np.abs(t_ref[j - 1] - t_query) <= np.abs(t_ref[j] - t_query), j - 1, j)
    return np.where(np.abs(t_ref[j] - t_query) <= max_dt, j, -1).astype(np.int64)


def read_intrinsics(path: Path, width: int, height: int) -> Camera:
    """The colour camera: `intrinsics.txt` if present, else TUM's published calibration for fr1/fr2/fr3."""
    f = path / "intrinsics.txt"
    if f.is_file():
        nums = []
        for line in f.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                try:
                    nums.append([float(v) for v in line.split()])
                except ValueError:
                    raise SlifeError(f"{f}: not numbers: {line!r}") from None
        if not nums or len(nums[0]) != 4:
            raise SlifeError(f"{f}: first line must be 'fx fy cx cy'")
        fxy = tuple(nums[0])
        dist = tuple(nums[1]) if len(nums) > 1 else (0.0,) * 5
        if len(dist) not in (4, 5, 8):
            raise SlifeError(f"{f}: distortion line must have 4, 5 or 8 coefficients, got {len(dist)}")
        source = str(f)
    else:
        m = re.search(r"(?:freiburg|fr)([123])", path.resolve().name)
        key = f"fr{m.group(1)}" if m else "default"
        fxy, dist = TUM_INTRINSICS[key]
        source = f"TUM published {key}"
    fx, fy, cx, cy = fxy
    cx, cy = cx + 0.5, cy + 0.5  # OpenCV -> COLMAP pixel convention
    dist = tuple(dist) + (0.0,) * (8 - len(dist))
    k1, k2, p1, p2, k3 = dist[:5]
    if not any(dist):
        cam = Camera("PINHOLE", width, height, (fx, fy, cx, cy))
    elif k3 == 0 and not any(dist[5:]):
        cam = Camera("OPENCV", width, height, (fx, fy, cx, cy, k1, k2, p1, p2))
    else:
        cam = Camera("FULL_OPENCV", width, height, (fx, fy, cx, cy, k1, k2, p1, p2, k3) + tuple(dist[5:8]))
    log.debug("%s: intrinsics from %s", path, source)
    return cam


def _image_list(path: Path, warnings: list[str], name: str) -> tuple[np.ndarray, list[Path]]:
    """(timestamps (N,), files) from `<name>.txt`, or from `<name>/` file names when the list is absent."""
    lst = path / f"{name}.txt"
    if lst.is_file():
        rows = _numeric_rows(lst, 2, "timestamp filename")
        try:
            t = np.array([float(r[0]) for r in rows], dtype=np.float64)
        except ValueError as e:
            raise SlifeError(f"{lst}: bad timestamp ({e})") from None
        files = [path / r[1] for r in rows]
        src = lst
    else:
        folder = path / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        try:
            t = np.array([float(p.stem) for p in files], dtype=np.float64)
        except ValueError:
            raise SlifeError(f"{folder}: without {name}.txt the images must be named by timestamp") from None
        src = folder
    if not np.isfinite(t).all():
        raise SlifeError(f"{src}: non-finite timestamps")
    order = _sorted_times(t, src, warnings)
    return t[order], [files[i] for i in order]


def read(path: Path, max_dt: float = MAX_DT) -> Life:
    """Read a TUM RGB-D sequence folder (see the module docstring)."""
    path = Path(path)
    warnings: list[str] = []
    counts: dict = {}
    t, files = _image_list(path, warnings, "rgb")
    if len(t) == 0:
        raise SlifeError(f"{path}: no rgb frames")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SlifeError(f"{missing[0]}: listed in rgb.txt but missing ({len(missing)} missing)")
    W, H = image_size(files)

    gt = path / "groundtruth.txt"
    rows = _numeric_rows(gt, 8, "timestamp tx ty tz qx qy qz qw")
    try:
        g = np.array([[float(v) for v in r[:8]] for r in rows], dtype=np.float64)  # (G, 8)
    except ValueError as e:
        raise SlifeError(f"{gt}: not numbers ({e})") from None
    g = g.reshape(-1, 8)
    g = g[_sorted_times(g[:, 0], gt, warnings)]
    j = associate(t, g[:, 0], max_dt)
    n = len(t)
    T = np.full((n, 4, 4), np.nan)
    has = j >= 0
    if has.any():
        gj = g[j[has]]
        q_wxyz = np.concatenate([gj[:, 7:8], gj[:, 4:7]], axis=1)
        T[has] = make_pose(qvec_to_rotmat(q_wxyz), gj[:, 1:4])
    if (~has).any():
        counts["poses_missing"] = int((~has).sum())
        warnings.append(f"{gt.name}: {int((~has).sum())} of {n} frames have no pose within {max_dt * 1000:.0f} ms")
    problem = pose_problem(T)
    bad = has & (problem != "")
    if bad.any():
        counts["poses_invalid"] = int(bad.sum())
        warnings.append(f"{gt.name}: {int(bad.sum())} associated poses dropped ({', '.join(sorted(set(problem[bad])))})")
    valid = has & ~bad
    T[~valid] = np.nan

    depth_paths = None
    if (path / "depth.txt").is_file() or (path / "depth").is_dir():
        td, dfiles = _image_list(path, warnings, "depth")
        jd = associate(t, td, max_dt)
        depth_paths = [dfiles[k] if k >= 0 and dfiles[k].is_file() else None for k in jd]
        nd = sum(p is None for p in depth_paths)
        if nd:
            counts["depth_missing"] = nd
            warnings.append(f"depth: {nd} of {n} frames have no depth within {max_dt * 1000:.0f} ms")

    cam = read_intrinsics(path, W, H)
    for w in warnings:
        log.warning("%s: %s", path, w)
    return Life(
        name=life_name(path), root=path, format="tum",
        sources=[ImageFiles(name="rgb", path=files[0].parent, files=files)],
        source=np.zeros(n, np.int32), frame_index=np.arange(n, dtype=np.int64), t=t,
        T_world_cam=T, pose_valid=valid, cameras=[cam], camera_id=np.zeros(n, np.int32),
        depth_paths=depth_paths, depth_scale=DEPTH_SCALE, counts=counts, warnings=warnings,
        meta={"distortion": cam.model, "max_dt": max_dt, "pixel_convention": "TUM intrinsics shifted by +0.5 px"},
    )
