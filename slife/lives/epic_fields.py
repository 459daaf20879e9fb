"""An EPIC-Fields reconstruction (one JSON per video) as a Life: poses, camera, points, frames or video.

Reads `<video>.json` = {"camera": {"model", "width", "height", "params"} (COLMAP model and order),
"images": {frame_name: [qw, qx, qy, qz, tx, ty, tz]} (world-to-camera, COLMAP convention; also accepted as a
list of [qw, qx, qy, qz, tx, ty, tz, frame_name]), "points": [[x, y, z, r, g, b], ...]}. Poses are inverted to
camera-to-world, OpenCV axes. Frame names are EPIC-KITCHENS' `frame_<n>.jpg`, n counted from 1.
Pixels: a video `<video>.MP4`/`.mp4` beside the JSON (every video frame becomes a frame; registered ones get
their pose; t from pts), else a frames folder (`<video>/`, `frames/` or `rgb_frames/<video>/`: the registered
frames only, t = (n - 1) / `DEFAULT_FPS`), else no pixels. Returns a `Life`; entry points `detect`, `read`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.geometry import CAMERA_MODELS, Camera, invert_pose, make_pose, pose_problem, qvec_to_rotmat
from slife.lives.life import ImageFiles, Life, life_name

log = logging.getLogger(__name__)

DEFAULT_FPS = 50.0  # EPIC-KITCHENS frames are extracted at the video rate, 50 fps for most videos


def _looks_like_epic(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"camera"' in head and (b'"images"' in head or b'"model"' in head)


def find_json(path: Path) -> Path | None:
    """The EPIC-Fields JSON at `path` (the file itself, or the only such JSON in the folder)."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() == ".json" and _looks_like_epic(path) else None
    if path.is_dir():
        found = [f for f in sorted(path.glob("*.json")) if _looks_like_epic(f)]
        return found[0] if len(found) == 1 else None
    return None


def detect(path: Path) -> bool:
    return find_json(Path(path)) is not None


def _frame_number(name: str) -> int | None:
    m = re.search(r"(\d+)\.\w+$", name)
    return int(m.group(1)) if m else None


def read(path: Path) -> Life:
    """Read an EPIC-Fields JSON (see the module docstring)."""
    from slife.lives.video import VIDEO_SUFFIXES, open_video

    path = Path(path)
    f = find_json(path)
    if f is None:
        raise SlifeError(f"{path}: no EPIC-Fields JSON (or several)")
    try:
        d = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise SlifeError(f"{f}: unreadable JSON ({e})") from None
    for key in ("camera", "images"):
        if key not in d:
            raise SlifeError(f"{f}: missing {key!r}")
    c = d["camera"]
    try:
        model = str(c["model"])
        params = tuple(float(v) for v in c["params"])
        W, H = int(c["width"]), int(c["height"])
    except (KeyError, TypeError, ValueError) as e:
        raise SlifeError(f"{f}: bad camera ({e})") from None
    if model not in CAMERA_MODELS or len(params) != CAMERA_MODELS[model]:
        raise SlifeError(f"{f}: unsupported camera {model} with {len(params)} parameters")
    cam = Camera(model, W, H, params)

    imgs = d["images"]
    items = list(imgs.items()) if isinstance(imgs, dict) else [(r[7], r[:7]) for r in imgs]
    entries = []
    for name, v in items:
        k = _frame_number(str(name))
        if k is None or len(v) != 7:
            raise SlifeError(f"{f}: bad image entry {name!r}")
        entries.append((k, str(name), np.asarray(v, dtype=np.float64)))
    entries.sort(key=lambda e: e[0])
    if not entries:
        raise SlifeError(f"{f}: no images")
    nums = np.array([e[0] for e in entries], dtype=np.int64)
    if len(np.unique(nums)) != len(nums):
        raise SlifeError(f"{f}: frame numbers repeat")
    q = np.array([e[2] for e in entries])  # (R, 7) qw qx qy qz tx ty tz, world-to-camera
    with np.errstate(invalid="ignore", divide="ignore"):
        T_reg = invert_pose(make_pose(qvec_to_rotmat(q[:, :4]), q[:, 4:]))  # (R, 4, 4) camera-to-world

    stem = f.stem
    warnings: list[str] = []
    counts: dict = {}
    video = next((f.parent / f"{stem}{s}" for s in VIDEO_SUFFIXES + tuple(s.upper() for s in VIDEO_SUFFIXES)
                  if (f.parent / f"{stem}{s}").is_file()), None)
    frames_dir = next((p for p in (f.parent / stem, f.parent / "frames", f.parent / "rgb_frames" / stem)
                       if p.is_dir()), None)
    if video is not None:
        vs = open_video(video, name=stem)
        n = len(vs)
        fidx = np.arange(n, dtype=np.int64)
        t = vs.t
        rows = nums - 1
        if rows.min() < 0 or rows.max() >= n:
            raise SlifeError(f"{f}: frame {int(nums.max())} beyond the {plural(n, 'frame')} of {video.name}")
        if n > len(entries):  # EPIC-Fields registers a subset of the frames: the rest have no pose (counted)
            counts["poses_missing"] = n - len(entries)
            log.info("%s: %d of %d video frames are not registered (no pose)", f, n - len(entries), n)
        sources, source = [vs], np.zeros(n, np.int32)
    else:
        n = len(entries)
        fidx = np.arange(n, dtype=np.int64)
        t = (nums - 1) / DEFAULT_FPS
        rows = np.arange(n)
        if frames_dir is not None:
            files = [frames_dir / e[1] for e in entries]
            absent = sum(not p.is_file() for p in files)
            if absent:
                counts["frames_missing"] = absent
                warnings.append(f"{frames_dir.name}/: {absent} of {n} registered frames are missing")
            sources, source = [ImageFiles(name=stem, path=frames_dir, files=files)], np.zeros(n, np.int32)
        else:
            warnings.append("no video or frames folder beside the JSON: poses without pixels")
            sources, source = [], np.full(n, -1, np.int32)
    T = np.full((n, 4, 4), np.nan)
    T[rows] = T_reg
    problem = pose_problem(T_reg)
    bad = problem != ""
    if bad.any():
        counts["poses_invalid"] = int(bad.sum())
        warnings.append(f"{f.name}: {int(bad.sum())} of {len(entries)} poses dropped ({', '.join(sorted(set(problem[bad])))})")
        T[rows[bad]] = np.nan
    valid = np.isfinite(T).all(axis=(1, 2))

    points = colors = None
    if d.get("points"):
        P = np.asarray(d["points"], dtype=np.float64)
        if P.ndim != 2 or P.shape[1] < 3:
            raise SlifeError(f"{f}: points must be [[x, y, z, r, g, b], ...]")
        ok = np.isfinite(P[:, :3]).all(axis=1)
        if (~ok).any():
            counts["points_invalid"] = int((~ok).sum())
        points = P[ok, :3]  # (M, 3)
        colors = np.clip(P[ok, 3:6], 0, 255).astype(np.uint8) if P.shape[1] >= 6 else None
    for w in warnings:
        log.warning("%s: %s", f, w)
    return Life(
        name=life_name(f.with_suffix("")), root=path, format="epic_fields", sources=sources, source=source,
        frame_index=fidx, t=t, T_world_cam=T, pose_valid=valid, cameras=[cam], camera_id=np.zeros(n, np.int32),
        points=points, point_colors=colors, counts=counts, warnings=warnings,
        meta={"json": str(f), "distortion": model, "registered_frames": len(entries)},
    )
