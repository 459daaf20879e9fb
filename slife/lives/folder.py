"""The slife life folder (what `slife synth` writes) as a Life.

Reads (DESIGN.md): `poses.npz` with `t` (N,) float64 seconds, `T_world_cam` (N, 4, 4) float64 camera-to-world,
OpenCV axes, metres, `K` (3, 3) or (N, 3, 3) pinhole intrinsics, `image_size` (2,) = (W, H); pixels from
`video.mp4` (frame i = poses row i) or `frames/{i:06d}.jpg` (or none: a trajectory-only life). A life
recorded in several sittings (what `slife synth --append-days` grows) has an optional `video` (N,) int array
in poses.npz: rows with `video == 0` are the frames of `video.mp4` in order, rows with `video == k` those of
`video-{k:03d}.mp4` (one recording each, one frame source each);
`points.ply` (world points with colours); `depth/{i:06d}.png` (uint16 mm, 0 = invalid); `life.json`.
Returns a `Life`; invalid poses (NaN/inf, not a rotation) are dropped with a count and a warning, so are
images missing from frames/ (`frames_missing`, the first named; the frame reader skips them); `t` going
backwards is an error (row i is tied to video frame i, so reordering would detach poses from pixels).
Entry points: `detect`, `read`, `read_ply_points`. Writing the folder is left to `slife/synth`.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.geometry import Camera, pose_problem
from slife.lives.life import ImageFiles, Life, life_name

log = logging.getLogger(__name__)

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a PLY file (ascii or binary) -> points (M, 3) float64 and colours (M, 3) uint8 or None.

    Only the `vertex` element is read (it must come first in a binary file, as Open3D and most writers do).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SlifeError(f"{path}: cannot read ({e.strerror})") from None
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise SlifeError(f"{path}: not a PLY file")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt, n, props, first = None, None, [], None
    element = None
    for line in header:
        w = line.split()
        if not w:
            continue
        if w[0] == "format":
            fmt = w[1]
        elif w[0] == "element":
            element = w[1]
            first = first or element
            if element == "vertex":
                n = int(w[2])
        elif w[0] == "property" and element == "vertex":
            if w[1] == "list":
                raise SlifeError(f"{path}: list property in vertex element is not supported")
            if w[1] not in _PLY_TYPES:
                raise SlifeError(f"{path}: unknown PLY type {w[1]!r}")
            props.append((w[2], _PLY_TYPES[w[1]]))
    names = [p for p, _ in props]
    if n is None or not {"x", "y", "z"} <= set(names):
        raise SlifeError(f"{path}: PLY has no vertex x, y, z")
    if fmt == "ascii":
        rows = body.decode("ascii", "replace").split("\n")[:n]
        arr = np.loadtxt(rows, ndmin=2) if n else np.zeros((0, len(names)))
        col = {nm: arr[:, i] for i, nm in enumerate(names)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        if first != "vertex":
            raise SlifeError(f"{path}: binary PLY whose first element is not vertex is not supported")
        order = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(nm, order + t) for nm, t in props])
        if len(body) < n * dt.itemsize:
            raise SlifeError(f"{path}: truncated PLY ({len(body)} bytes for {n} vertices)")
        arr = np.frombuffer(body, dtype=dt, count=n)
        col = {nm: arr[nm] for nm in names}
    else:
        raise SlifeError(f"{path}: unknown PLY format {fmt!r}")
    pts = np.stack([col["x"], col["y"], col["z"]], axis=1).astype(np.float64)  # (M, 3)
    colors = None
    rgb = [c for c in (("red", "green", "blue"), ("r", "g", "b")) if set(c) <= set(names)]
    if rgb:
        c = np.stack([col[k] for k in rgb[0]], axis=1)
        if c.dtype.kind == "f" and (c.size == 0 or c.max() <= 1.0):
            c = c * 255.0
        colors = np.clip(np.round(c), 0, 255).astype(np.uint8)  # (M, 3)
    return pts, colors


def detect(path: Path) -> bool:
    """A folder with `poses.npz` (or a `life.json` beside a video.mp4 / frames/)."""
    path = Path(path)
    return path.is_dir() and (
        (path / "poses.npz").is_file()
        or ((path / "life.json").is_file() and ((path / "video.mp4").is_file() or (path / "frames").is_dir()))
    )


def _load_npz(f: Path) -> dict:
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise SlifeError(f"{f}: unreadable npz ({type(e).__name__}: {e})") from None


def recording_file(path: Path, k: int) -> Path:
    """The video file of recording k of a life folder: `video.mp4` for 0, `video-{k:03d}.mp4` after it."""
    return Path(path) / ("video.mp4" if k == 0 else f"video-{k:03d}.mp4")


def _recordings(path: Path, recording: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
    """Open one video per recording -> (sources, source (N,) int32, frame_index (N,) int64); SlifeError naming
    the file when one is missing or holds another number of frames than poses.npz gives it."""
    from slife.lives.video import open_video

    ks = np.unique(recording)
    sources = []
    source = np.searchsorted(ks, recording).astype(np.int32)  # (N,) index into sources
    frame_index = np.zeros(len(recording), np.int64)
    for s, k in enumerate(ks):
        rows = np.flatnonzero(recording == k)
        f = recording_file(path, int(k))
        vs = open_video(f, name=f.stem)
        if len(vs) != len(rows):
            raise SlifeError(f"{f}: {plural(len(vs), 'frame')} but poses.npz has {plural(len(rows), 'row')} "
                             f"with video == {k}")
        sources.append(vs)
        frame_index[rows] = np.arange(len(rows))
    return sources, source, frame_index


def _frames(frames_dir: Path, n: int | None, t: np.ndarray | None, counts: dict,
            warnings: list[str]) -> tuple[list, int, np.ndarray]:
    """frames/{i:06d}.jpg as one ImageFiles source -> (sources, n, t). Without poses (n None) the frames are
    0..the highest number, t = the number (1 fps). Numbers missing below n stay in the life (the frame
    reader skips them), counted (`frames_missing`) and named in a warning; an image numbered n or more (a
    frame without a pose) or none at all is an error."""
    nums = {int(p.stem): p for p in sorted(frames_dir.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stem.isdigit()}
    if not nums:
        raise SlifeError(f"{frames_dir}: no numbered images (000000.jpg, ...)" + (f" for {plural(n, 'pose')}" if n else ""))
    if n is None:
        n = max(nums) + 1
        t = np.arange(n, dtype=np.float64)
        warnings.append("frames/ without poses.npz: t is the frame number (1 fps)")
    beyond = sorted(k for k in nums if k >= n)
    if beyond:
        raise SlifeError(f"{frames_dir}: {plural(len(beyond), 'image')} numbered beyond the "
                         f"{plural(n, 'pose')} (first: "
                         f"{nums[beyond[0]].name}; frame i is poses row i, expected 000000..{n - 1:06d})")
    suffix = next(iter(nums.values())).suffix
    missing = [i for i in range(n) if i not in nums]
    if missing:
        named = ", ".join(f"{i:06d}{suffix}" for i in missing[:3]) + (", ..." if len(missing) > 3 else "")
        counts["frames_missing"] = len(missing)
        warnings.append(f"frames/: {len(missing)} of {n} images missing ({named}); their pairs cannot be written")
    files = [nums.get(i, frames_dir / f"{i:06d}{suffix}") for i in range(n)]
    return [ImageFiles(name="frames", path=frames_dir, files=files)], n, t


def read(path: Path) -> Life:
    """Read a slife life folder; see the module docstring for the files and their units."""
    from slife.lives.video import open_video

    path = Path(path)
    meta: dict = {}
    name = life_name(path)
    if (path / "life.json").is_file():
        try:
            meta["life"] = json.loads((path / "life.json").read_text())
        except (OSError, ValueError) as e:
            raise SlifeError(f"{path / 'life.json'}: unreadable JSON ({e})") from None
        if isinstance(meta["life"], dict) and meta["life"].get("name"):
            name = re.sub(r"[^A-Za-z0-9-]+", "-", str(meta["life"]["name"])).strip("-") or name
    counts: dict = {}
    warnings: list[str] = []

    pf = path / "poses.npz"
    if pf.is_file():
        z = _load_npz(pf)
        for key in ("t", "T_world_cam", "K", "image_size"):
            if key not in z:
                raise SlifeError(f"{pf}: missing array {key!r} (has {', '.join(sorted(z)) or 'nothing'})")
        t = np.asarray(z["t"], dtype=np.float64).reshape(-1)  # (N,)
        T = np.asarray(z["T_world_cam"], dtype=np.float64)
        n = len(t)
        if T.shape != (n, 4, 4):
            raise SlifeError(f"{pf}: T_world_cam has shape {T.shape}, expected ({n}, 4, 4) for {n} timestamps")
        if not np.isfinite(t).all():
            raise SlifeError(f"{pf}: t has {int((~np.isfinite(t)).sum())} non-finite timestamps")
        if n > 1 and np.any(np.diff(t) < 0):
            i = int(np.flatnonzero(np.diff(t) < 0)[0])
            raise SlifeError(f"{pf}: t goes backwards at row {i + 1} ({t[i]:.6f} -> {t[i + 1]:.6f} s)")
        W, H = (int(v) for v in np.asarray(z["image_size"]).reshape(-1)[:2])
        K = np.asarray(z["K"], dtype=np.float64)
        if K.shape == (3, 3):
            K = np.broadcast_to(K, (n, 3, 3))
        if K.shape != (n, 3, 3):
            raise SlifeError(f"{pf}: K has shape {K.shape}, expected (3, 3) or ({n}, 3, 3)")
        recording = np.asarray(z["video"], np.int64).reshape(-1) if "video" in z else None  # (N,) or None
        if recording is not None and (len(recording) != n or (n and recording.min() < 0)):
            raise SlifeError(f"{pf}: video has {len(recording)} rows (>= 0 expected), t has {n}")
    else:  # life.json + pixels only: no poses
        t, T, K, W, H, n, recording = None, None, None, None, None, None, None

    # pixels
    sources: list = []
    source = frame_index = None  # one source, frame i = row i, unless the life has several recordings
    video = path / "video.mp4"
    frames_dir = path / "frames"
    if recording is not None and n and recording.max() > 0:
        sources, source, frame_index = _recordings(path, recording)
        meta["video"] = {"fps": sources[0].fps, "width": sources[0].width, "height": sources[0].height,
                         "codec": sources[0].codec}
        W, H = W or sources[0].width, H or sources[0].height
    elif video.is_file():
        vs = open_video(video, name="video")
        sources = [vs]
        if n is None:
            n, t = len(vs), vs.t
        elif len(vs) != n:
            raise SlifeError(f"{video}: {plural(len(vs), 'frame')} but {pf.name} has {plural(n, 'pose')}")
        meta["video"] = {"fps": vs.fps, "width": vs.width, "height": vs.height, "codec": vs.codec}
        W, H = W or vs.width, H or vs.height
    elif frames_dir.is_dir():
        sources, n, t = _frames(frames_dir, n, t, counts, warnings)

    # poses and cameras
    pose_valid = None
    cameras: list[Camera] = []
    camera_id = None
    if T is not None:
        problem = pose_problem(T)
        bad = problem != ""
        if bad.any():
            kinds = {k: int((problem == k).sum()) for k in set(problem[bad])}
            counts["poses_invalid"] = int(bad.sum())
            warnings.append(f"{pf.name}: {int(bad.sum())} of {n} poses dropped ({', '.join(f'{v} {k}' for k, v in kinds.items())})")
            T = T.copy()
            T[bad] = np.nan
        pose_valid = ~bad
        Kf = K.reshape(n, 9)
        okK = np.isfinite(Kf).all(axis=1) & (Kf[:, 0] > 0) & (Kf[:, 4] > 0)
        if (~okK).any():
            counts["intrinsics_invalid"] = int((~okK).sum())
            warnings.append(f"{pf.name}: {int((~okK).sum())} frames with invalid K")
        camera_id = np.full(n, -1, np.int32)
        if okK.any():
            uniq, inv = np.unique(Kf[okK], axis=0, return_inverse=True)
            cameras = [Camera.from_K(u.reshape(3, 3), W, H) for u in uniq]
            camera_id[okK] = inv.reshape(-1).astype(np.int32)

    # geometry
    points = colors = None
    if (path / "points.ply").is_file():
        points, colors = read_ply_points(path / "points.ply")
    depth_paths = None
    if (path / "depth").is_dir():
        depth_paths = [path / "depth" / f"{i:06d}.png" for i in range(n)]
        depth_paths = [p if p.is_file() else None for p in depth_paths]
        missing = sum(p is None for p in depth_paths)
        if missing:
            counts["depth_missing"] = missing
            warnings.append(f"depth/: {missing} of {n} frames have no depth map")
    for w in warnings:
        log.warning("%s: %s", path, w)
    if n is None:
        raise SlifeError(f"{path}: life folder has neither poses.npz nor video.mp4 nor frames/")
    return Life(
        name=name, root=path, format="folder", sources=sources,
        source=np.full(n, 0 if sources else -1, np.int32) if source is None else source,
        frame_index=np.arange(n, dtype=np.int64) if frame_index is None else frame_index, t=t,
        T_world_cam=T, pose_valid=pose_valid, cameras=cameras, camera_id=camera_id, points=points,
        point_colors=colors, depth_paths=depth_paths, depth_scale=1000.0, counts=counts, warnings=warnings,
        meta=meta,
    )
