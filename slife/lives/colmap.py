"""A COLMAP sparse model as a Life: registered images with poses, intrinsics, points and tracks.

Reads a model folder (or a project folder with `sparse/0` or `sparse/`) holding cameras/images/points3D as
.bin or .txt (COLMAP >= 3.12 adds rigs/frames files; pycolmap reads both layouts). COLMAP stores
world-to-camera (qvec, tvec); poses here are inverted to camera-to-world, OpenCV axes (COLMAP's camera axes
are OpenCV's), in the model's units. Intrinsics keep COLMAP's camera model and parameters (the distortion
model is recorded); COLMAP's pixel convention is slife's. Tracks: per image, the dense indices of the
points3D it observes (CSR). Images are found in `images_dir` (an error if it is not a folder or holds none
of them) or, by default, in whichever of `<model>/images`, `<model>/../images`, `<model>/../../images`,
`<model>/../rgb`, `<model>/..` holds the most of a sample of the model's image names. Image names grouped
by folder become one source each, ordered by name; images of the model missing from the folder are kept
(poses, tracks) and counted as `frames_missing` with a warning naming the first; images in those folders
that the model lacks (frames SfM did not register) are added as frames without a pose (`poses_missing`). COLMAP has no clock, so `t` is the
timestamp in the name when every name is one (TUM's `1311868169.163498.png`), else the trailing frame number
of the names / `fps` (`frame_000123.jpg`; default `DEFAULT_FPS`), else the rank in the folder / `fps`.
Returns a `Life`; entry points `detect`, `find_model`, `read`, and `colmap_log` (COLMAP's own log only with -v;
also used by `pairmine/sfm.py`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.geometry import CAMERA_MODELS, Camera, invert_pose, make_pose, pose_problem
from slife.lives.life import IMAGE_SUFFIXES, ImageFiles, Life, life_name

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # assumed frame rate when image names carry no timestamp
_FILES = ("cameras", "images", "points3D")
_SIGTERM_RESTORED = False  # import_pycolmap has put back SIGTERM's handler


def import_pycolmap():
    """pycolmap, imported so that SIGTERM ends the process as it would end any Python program. pycolmap's glog
    installs a failure handler at import that prints a C++ stack trace on SIGTERM (a cluster's preemption, `kill`,
    `timeout`), which reads as a crash; the first call from the main thread puts back the handler Python's
    signal table holds (the default unless the program set its own)."""
    global _SIGTERM_RESTORED
    import pycolmap

    if not _SIGTERM_RESTORED and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM) or signal.SIG_DFL)
        _SIGTERM_RESTORED = True
    return pycolmap


def _is_model(d: Path) -> bool:
    return d.is_dir() and any(all((d / f"{f}{ext}").is_file() for f in _FILES) for ext in (".bin", ".txt"))


def find_model(path: Path) -> Path | None:
    """The model folder at `path`, `path/sparse/0` or `path/sparse`, else None."""
    path = Path(path)
    for d in (path, path / "sparse" / "0", path / "sparse"):
        if _is_model(d):
            return d
    return None


def incomplete_model(path: Path) -> str | None:
    """For a folder that holds part of a COLMAP model (at `path`, `path/sparse/0` or `path/sparse`): which
    files are missing, as a message; else None."""
    path = Path(path)
    for d in (path, path / "sparse" / "0", path / "sparse"):
        for ext in (".bin", ".txt"):
            have = [f for f in _FILES if (d / f"{f}{ext}").is_file()]
            if have and len(have) < len(_FILES):
                missing = ", ".join(f + ext for f in _FILES if f not in have)
                return f"{d}: incomplete COLMAP model ({missing} missing)"
    return None


def _bad_binary_file(model: Path) -> str | None:
    """After pycolmap failed: the first binary model file whose records do not fit its size, named with the
    problem; None if all parse (or the model is in text form). Only run on failure: it walks every record."""
    import struct

    def walk(f: Path, record) -> str | None:
        data = f.read_bytes()
        if len(data) < 8:
            return f"{f}: truncated (no record count)"
        (n,), off = struct.unpack_from("<Q", data), 8
        for k in range(n):
            try:
                off = record(data, off)
            except (struct.error, ValueError):
                return f"{f}: truncated or corrupt at record {k} of {n}"
        return None if off == len(data) else f"{f}: {len(data) - off} bytes after the last of {n} records"

    def camera(data, off):
        _, model_id, _, _ = struct.unpack_from("<iiQQ", data, off)
        n = _num_params(model_id)
        struct.unpack_from(f"<{n}d", data, off + 24)
        return off + 24 + 8 * n

    def image(data, off):
        struct.unpack_from("<I7dI", data, off)
        end = data.index(b"\0", off + 64)
        (n,) = struct.unpack_from("<Q", data, end + 1)
        if end + 9 + 24 * n > len(data):
            raise ValueError
        return end + 9 + 24 * n

    def point(data, off):
        (n,) = struct.unpack_from("<Q", data, off + 43)
        if off + 51 + 8 * n > len(data):
            raise ValueError
        return off + 51 + 8 * n

    for name, record in (("cameras", camera), ("images", image), ("points3D", point)):
        f = model / f"{name}.bin"
        if f.is_file():
            problem = walk(f, record)
            if problem:
                return problem
    return None


def _num_params(model_id: int) -> int:
    """Parameters of COLMAP camera model `model_id`, as the installed pycolmap defines it; ValueError if unknown."""
    pycolmap = import_pycolmap()

    try:
        return len(pycolmap.Camera.create_from_model_id(0, pycolmap.CameraModelId(model_id), 1.0, 1, 1).params)
    except Exception:  # pycolmap raises its own check failures for an unknown id
        raise ValueError(f"unknown camera model id {model_id}") from None


def detect(path: Path) -> bool:
    return find_model(Path(path)) is not None


@contextmanager
def colmap_log(logger: logging.Logger) -> Iterator[None]:
    """COLMAP's own log lines (glog, written straight to stderr, past Python's logging) only when `logger`
    shows debug lines (`slife -v`); otherwise only its errors. Used around every pycolmap call."""
    pycolmap = import_pycolmap()

    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if logger.isEnabledFor(logging.DEBUG) else 2  # 0 info, 1 warning, 2 error
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _camera(cam, warnings: list[str]) -> Camera:
    """pycolmap camera -> slife Camera (unsupported distortion models keep their linear part, with a warning)."""
    name = cam.model.name if hasattr(cam.model, "name") else str(cam.model)
    params = tuple(float(v) for v in cam.params)
    if name in CAMERA_MODELS and len(params) == CAMERA_MODELS[name]:
        return Camera(name, int(cam.width), int(cam.height), params)
    K = np.asarray(cam.calibration_matrix())
    warnings.append(f"camera model {name} is not supported; using its linear part (PINHOLE)")
    return Camera.from_K(K, int(cam.width), int(cam.height))


def cam_from_world(im) -> np.ndarray | None:
    """4x4 world-to-camera of a pycolmap Image, None if unregistered (works across pycolmap 3.10-4.x)."""
    if hasattr(im, "has_pose") and not im.has_pose:
        return None
    if hasattr(im, "registered") and not getattr(im, "registered"):
        return None
    cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
    M = np.asarray(cfw.matrix(), dtype=np.float64)  # (3, 4)
    return make_pose(M[:, :3], M[:, 3])


def _find_images_dir(model: Path, names: list[str], images_dir: Path | None) -> Path | None:
    """The folder holding the model's images: `images_dir` when given (an error if it is not a folder), else
    the candidate beside the model that holds the most of up to 65 names spread over the model (so one
    missing file, the first included, does not hide the folder); None when no candidate holds any."""
    if images_dir is not None:
        d = Path(images_dir)
        if not d.is_dir():
            raise SlifeError(f"{d}: no such folder (reader option images_dir)")
        return d
    cands = [model / "images", model.parent / "images", model.parent.parent / "images", model.parent / "rgb",
             model.parent.parent / "rgb", model.parent, model.parent.parent]
    probe = names[::max(1, len(names) // 64)] + names[-1:]
    best, hits = None, 0
    for d in cands:
        h = sum((d / nm).is_file() for nm in probe)
        if h > hits:
            best, hits = d, h
    return best


def _listing(root: Path, folder: str) -> set[str]:
    """Names of the image files in `root/folder` (empty when it is not a folder)."""
    d = root / folder
    try:
        return {e.name for e in os.scandir(d) if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()}
    except OSError:
        return set()


def read(path: Path, images_dir: Path | None = None, fps: float = DEFAULT_FPS) -> Life:
    """Read a COLMAP model (see the module docstring)."""
    pycolmap = import_pycolmap()

    path = Path(path)
    model = find_model(path)
    if model is None:
        raise SlifeError(f"{path}: no COLMAP model (cameras, images, points3D .bin or .txt)")
    try:
        with colmap_log(log):
            rec = pycolmap.Reconstruction(str(model))
    except Exception as e:  # pycolmap raises RuntimeError/ValueError with a multi-line message
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise SlifeError(_bad_binary_file(model) or f"{model}: unreadable COLMAP model ({msg})") from None
    warnings: list[str] = []
    counts: dict = {}
    images = sorted(rec.images.values(), key=lambda im: im.name)
    if not images:
        raise SlifeError(f"{model}: COLMAP model has no images")

    cam_ids = sorted(rec.cameras)
    cameras = [_camera(rec.cameras[c], warnings) for c in cam_ids]
    cam_index = {c: i for i, c in enumerate(cam_ids)}
    pids = sorted(rec.points3D)
    pindex = {p: i for i, p in enumerate(pids)}
    points = np.array([rec.points3D[p].xyz for p in pids], dtype=np.float64).reshape(-1, 3)  # (M, 3)
    colors = np.array([rec.points3D[p].color for p in pids], dtype=np.uint8).reshape(-1, 3)  # (M, 3)

    # sources: one per folder part of the image names; each holds the model's images of that folder and,
    # where the images are found, the folder's other images (frames SfM did not register: kept without a pose)
    names = [im.name for im in images]
    root = _find_images_dir(model, names, images_dir)
    groups: dict[str, list] = {}
    for im in images:
        groups.setdefault(str(PurePosixPath(im.name).parent), []).append(im)
    missing: list[str] = []
    extra = 0
    for folder in sorted(groups):
        ims = groups[folder]
        if root is None:
            groups[folder] = [(im.name, im) for im in ims]
            continue
        have = _listing(root, folder)
        in_model = {PurePosixPath(im.name).name for im in ims}
        missing += [im.name for im in ims if PurePosixPath(im.name).name not in have]
        others = sorted(have - in_model)
        extra += len(others)
        prefix = "" if folder == "." else folder + "/"
        groups[folder] = sorted([(im.name, im) for im in ims] + [(prefix + o, None) for o in others],
                                key=lambda e: e[0])
    if root is None:
        warnings.append(f"images not found (looked beside {model}); the life has poses but no pixels")
    elif len(missing) == len(images) and images_dir is not None:
        raise SlifeError(f"{root}: holds none of the model's {len(images)} images (first: {images[0].name}; "
                         "reader option images_dir)")
    if missing:
        counts["frames_missing"] = len(missing)
        warnings.append(f"{len(missing)} of {len(images)} images of the model are missing from {root} "
                        f"(first: {missing[0]}); their pairs cannot be written")
    if extra:
        counts["poses_missing"] = extra
        warnings.append(f"{plural(extra, 'image')} in {root} not in the model (not registered by SfM); kept without a "
                        "pose")
    n = sum(len(v) for v in groups.values())
    T = np.full((n, 4, 4), np.nan)
    src = np.zeros(n, np.int32)
    fidx = np.zeros(n, np.int64)
    t = np.zeros(n, np.float64)
    cam_id = np.full(n, -1, np.int32)
    indptr = np.zeros(n + 1, np.int64)
    tracks = []
    sources = []
    stems = [PurePosixPath(nm).stem for v in groups.values() for nm, _ in v]
    timed = all(re.fullmatch(r"\d+\.\d+", st) for st in stems)
    numbered = not timed and all(re.search(r"\d+$", st) for st in stems)
    i = 0
    unregistered = 0
    for s, (folder, entries) in enumerate(sorted(groups.items())):
        if root is not None:
            sources.append(ImageFiles(name=re.sub(r"[^A-Za-z0-9-]+", "-", folder).strip("-") or "images",
                                      path=root / folder, files=[root / nm for nm, _ in entries]))
        folder_cams = {im.camera_id for _, im in entries if im is not None}
        folder_cam = cam_index.get(next(iter(folder_cams)), -1) if len(folder_cams) == 1 else -1
        for k, (name, im) in enumerate(entries):
            Tcw = None if im is None else cam_from_world(im)
            if Tcw is None:
                unregistered += im is not None
            else:
                T[i] = invert_pose(Tcw)
            src[i] = s if root is not None else -1
            fidx[i] = k
            stem = PurePosixPath(name).stem
            if timed:
                t[i] = float(stem)
            elif numbered:  # frame_000123.jpg: frame 123 of a video at fps (keeps the gaps between frames)
                t[i] = int(re.search(r"(\d+)$", stem).group(1)) / fps
            else:
                t[i] = k / fps
            cam_id[i] = folder_cam if im is None else cam_index.get(im.camera_id, -1)
            ids = [] if im is None else [pindex[p.point3D_id] for p in im.points2D
                                         if p.has_point3D() and p.point3D_id in pindex]
            tracks.append(np.asarray(ids, dtype=np.int64))
            indptr[i + 1] = indptr[i] + len(ids)
            i += 1
    if unregistered:
        counts["poses_missing"] = counts.get("poses_missing", 0) + unregistered
        warnings.append(f"{unregistered} of {len(images)} images of the model are not registered (no pose)")
    problem = pose_problem(T)
    bad = (problem != "") & (problem != "not finite")
    bad |= (problem == "not finite") & ~np.isnan(T).all(axis=(1, 2))
    if bad.any():
        counts["poses_invalid"] = int(bad.sum())
        warnings.append(f"{int(bad.sum())} of {n} poses dropped ({', '.join(sorted(set(problem[bad])))})")
        T[bad] = np.nan
    valid = np.isfinite(T).all(axis=(1, 2))
    for w in warnings:
        log.warning("%s: %s", model, w)
    return Life(
        name=life_name(path), root=path, format="colmap", sources=sources, source=src, frame_index=fidx, t=t,
        T_world_cam=T, pose_valid=valid, cameras=cameras, camera_id=cam_id, points=points, point_colors=colors,
        tracks=(indptr, np.concatenate(tracks) if tracks else np.zeros(0, np.int64)), counts=counts,
        warnings=warnings,
        meta={"model": str(model), "images_dir": str(root) if root else None,
              "distortion": sorted({c.model for c in cameras}),
              "clock": "timestamps from image names" if timed else
              (f"frame number in image names / {fps:g} fps" if numbered else f"image rank / {fps:g} fps")},
    )
