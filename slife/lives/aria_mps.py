"""Project Aria MPS output (HD-EPIC, Ego-Exo4D, Aria Everyday) as a Life: RGB video frames posed by SLAM.

Reads, in `path` or its `slam/` (or `trajectory/`, `mps/slam/`) folder:
- `closed_loop_trajectory.csv`: `tracking_timestamp_us`, `t[xyz]_world_device` (metres), `q[xyzw]_world_device`;
  device poses (about 1 kHz) interpolated to each frame's device time (linear translation, slerp rotation;
  frames outside the trajectory or in a gap over `MAX_GAP_S` get no pose, counted);
- `online_calibration.jsonl`: per-timestamp calibrations; the nearest line to each frame gives the `camera-rgb`
  FisheyeRadTanThinPrism intrinsics (slife model FISHEYE624; Aria's pixel centres are integers, slife's are
  +0.5, so cx, cy gain 0.5) and T_device_rgb; T_world_cam = T_world_device(t) @ T_device_rgb (OpenCV axes);
- `semidense_points.csv.gz` (or the older `global_points.csv.gz`): `p[xyz]_world`, kept when
  `inv_dist_std < MAX_INV_DIST_STD` and `dist_std < MAX_DIST_STD` (projectaria_tools' default filter);
- pixels: an `*.mp4` beside the MPS folder (or in it) with `<video>_mp4_to_vrs_time_ns.csv` (or
  `mp4_to_vrs_time_ns.csv`) mapping frame k (row k) to device time in ns (`vrs_device_time_ns`). Calibrations
  are scaled to the video's size when it differs from the sensor's (1408 or 2880 px). MP4s turned upright
  (HD-EPIC's frames are turned 90 degrees clockwise) need `read(path, upright=True)`: the default keeps the
  sensor's orientation (nothing in the files says which one an MP4 has).
Without a video, the life is trajectory-only: frames every 1 / `TRAJECTORY_FPS` s along the trajectory, no
sources (spatial mining still works on it). `t` is device time in seconds. Returns a `Life`; entry points
`detect`, `find_mps`, `read`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.geometry import Camera, make_pose, pose_problem, qvec_to_rotmat
from slife.lives.life import Life, life_name

log = logging.getLogger(__name__)

TRAJECTORY_FPS = 10.0  # frames per second of a trajectory-only life (no video)
MAX_GAP_S = 0.05  # a frame between trajectory samples further apart than this gets no pose
MAX_INV_DIST_STD = 0.001  # semidense point filter (projectaria_tools filter_points_from_confidence defaults)
MAX_DIST_STD = 0.05  # metres
RGB_LABEL = "camera-rgb"
SENSOR_SIZES = (704, 1408, 2880)  # Aria RGB sensor sizes (square), to guess the calibration's image size


def find_mps(path: Path) -> Path | None:
    """The folder holding closed_loop_trajectory.csv: `path` itself or its slam/, trajectory/, mps/slam/."""
    path = Path(path)
    if not path.is_dir():
        return None
    for d in (path, path / "slam", path / "trajectory", path / "mps" / "slam"):
        if (d / "closed_loop_trajectory.csv").is_file():
            return d
    return None


def detect(path: Path) -> bool:
    return find_mps(Path(path)) is not None


def _csv_columns(f: Path, want: list[str], opener=open) -> np.ndarray:
    """Float columns `want` of a CSV with a header row -> (R, len(want)) float64 (string columns are skipped)."""
    try:
        with opener(f, "rt") as fh:
            header = fh.readline().strip().split(",")
            missing = [w for w in want if w not in header]
            if missing:
                raise SlifeError(f"{f}: missing columns {', '.join(missing)}")
            idx = [header.index(w) for w in want]
            data = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SlifeError(f"{f}: unreadable ({e})") from None
    if not data.strip():
        return np.zeros((0, len(want)))
    try:
        arr = np.loadtxt(io.StringIO(data), delimiter=",", usecols=idx, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise SlifeError(f"{f}: bad number ({e})") from None
    return arr


def read_trajectory(f: Path, warnings: list[str], counts: dict) -> tuple[np.ndarray, np.ndarray]:
    """closed_loop_trajectory.csv -> (t (R,) seconds device time, T_world_device (R, 4, 4)), sorted, valid only."""
    cols = ["tracking_timestamp_us", "tx_world_device", "ty_world_device", "tz_world_device",
            "qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device"]
    a = _csv_columns(f, cols)
    if len(a) == 0:
        raise SlifeError(f"{f}: no poses")
    t = a[:, 0] * 1e-6
    if np.any(np.diff(t) < 0):
        warnings.append(f"{f.name}: timestamps go backwards {plural(int((np.diff(t) < 0).sum()), 'time')}; rows sorted "
                        "by time")
        o = np.argsort(t, kind="stable")
        a, t = a[o], t[o]
    with np.errstate(invalid="ignore"):
        T = make_pose(qvec_to_rotmat(np.concatenate([a[:, 7:8], a[:, 4:7]], axis=1)), a[:, 1:4])
    qn = np.linalg.norm(a[:, 4:8], axis=1)
    bad = (pose_problem(T) != "") | ~np.isfinite(qn) | (np.abs(qn - 1) > 1e-3) | ~np.isfinite(t)
    dup = np.concatenate([[False], np.diff(t) == 0])
    if bad.any():
        counts["trajectory_invalid"] = int(bad.sum())
        warnings.append(f"{f.name}: {int(bad.sum())} of {len(t)} poses dropped (not finite or not unit quaternions)")
    if (dup & ~bad).any():
        counts["trajectory_duplicate_t"] = int((dup & ~bad).sum())
    keep = ~bad & ~dup
    if not keep.any():
        raise SlifeError(f"{f}: no valid pose")
    return t[keep], T[keep]


def interpolate_poses(t_traj: np.ndarray, T_traj: np.ndarray, t: np.ndarray, max_gap: float = MAX_GAP_S):
    """Device poses at times `t` (N,): linear translation and slerp rotation between the bracketing samples.

    Returns (T (N, 4, 4) with NaN where no pose, ok (N,) bool). A time outside [t_traj[0], t_traj[-1]] or between
    samples more than `max_gap` apart gets no pose.
    """
    from scipy.spatial.transform import Rotation

    n = len(t)
    out = np.full((n, 4, 4), np.nan)
    if len(t_traj) == 1:
        ok = np.abs(t - t_traj[0]) < 1e-9
        out[ok] = T_traj[0]
        return out, ok
    eps = 1e-6  # s: ns and us clocks converted to seconds differ by ~1e-14 at a shared sample time
    t = np.asarray(t, dtype=np.float64)
    near = (t >= t_traj[0] - eps) & (t <= t_traj[-1] + eps)
    t = np.where(near, np.clip(t, t_traj[0], t_traj[-1]), t)  # a frame at the first or last sample keeps its pose
    j = np.clip(np.searchsorted(t_traj, t, side="right") - 1, 0, len(t_traj) - 2)  # left sample
    t0, t1 = t_traj[j], t_traj[j + 1]
    ok = (t >= t_traj[0]) & (t <= t_traj[-1]) & (t1 - t0 <= max_gap)
    if not ok.any():
        return out, ok
    j, t0, t1, tq = j[ok], t0[ok], t1[ok], t[ok]
    a = ((tq - t0) / (t1 - t0))[:, None]  # (n_ok, 1) in [0, 1]
    R0 = Rotation.from_matrix(T_traj[j, :3, :3])
    R1 = Rotation.from_matrix(T_traj[j + 1, :3, :3])
    dR = (R0.inv() * R1).as_rotvec()  # (n_ok, 3) shortest relative rotation
    R = R0 * Rotation.from_rotvec(dR * a)
    out[ok] = make_pose(R.as_matrix(), (1 - a) * T_traj[j, :3, 3] + a * T_traj[j + 1, :3, 3])
    return out, ok


def _pose_from_json(d: dict) -> np.ndarray:
    """{"Translation": [x, y, z], "UnitQuaternion": [w, [x, y, z]]} -> 4x4."""
    w, xyz = d["UnitQuaternion"]
    return make_pose(qvec_to_rotmat(np.array([w, *xyz], dtype=np.float64)), np.asarray(d["Translation"], float))


def read_calibrations(f: Path, label: str = RGB_LABEL) -> tuple[np.ndarray, list[tuple[tuple, np.ndarray]]]:
    """online_calibration.jsonl -> (t (C,) seconds, [(15 Aria params, T_device_cam (4, 4))] per line) for `label`."""
    ts, cals = [], []
    try:
        lines = f.read_text().splitlines()
    except OSError as e:
        raise SlifeError(f"{f}: cannot read ({e.strerror})") from None
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            cam = next((c for c in d["CameraCalibrations"] if c.get("Label") == label), None)
            if cam is None:
                continue
            params = tuple(float(v) for v in cam["Projection"]["Params"])
            T = _pose_from_json(cam["T_Device_Camera"])
            t = float(d["tracking_timestamp_us"]) * 1e-6
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise SlifeError(f"{f}: line {ln} is not a calibration ({type(e).__name__}: {e})") from None
        if len(params) != 15:
            raise SlifeError(f"{f}: line {ln}: {label} has {len(params)} projection parameters, expected 15 (FISHEYE624)")
        ts.append(t)
        cals.append((params, T))
    if not cals:
        raise SlifeError(f"{f}: no {label} calibration")
    o = np.argsort(ts, kind="stable")
    return np.asarray(ts)[o], [cals[i] for i in o]


def _sensor_size(params: tuple) -> int:
    return min(SENSOR_SIZES, key=lambda s: abs(s / 2 - params[1]))


def fisheye_camera(params: tuple, size: int, out_w: int | None = None, out_h: int | None = None) -> Camera:
    """Aria FisheyeRadTanThinPrism params (sensor pixels, integer pixel centres) -> slife Camera, optionally rescaled."""
    p = list(params)
    p[1] += 0.5
    p[2] += 0.5
    cam = Camera("FISHEYE624", size, size, tuple(p))
    if out_w is not None and (out_w, out_h) != (size, size):
        cam = cam.scaled(out_w / size, out_h / size)
    return cam


def _find_video(path: Path, mps: Path) -> tuple[Path | None, Path | None]:
    """(video, mp4_to_vrs_time_ns.csv) near the MPS folder, or (None, None)."""
    for d in dict.fromkeys((path, mps, path.parent, mps.parent)):
        for v in sorted(d.glob("*.mp4")) + sorted(d.glob("*.MP4")):
            for c in (d / f"{v.stem}_mp4_to_vrs_time_ns.csv", d / "mp4_to_vrs_time_ns.csv"):
                if c.is_file():
                    return v, c
    return None, None


def read_video_times(f: Path) -> np.ndarray:
    """mp4_to_vrs_time_ns.csv -> device time (seconds) of each video frame, row k = frame k."""
    with open(f) as fh:
        header = fh.readline().strip().split(",")
    col = next((h for h in header if "vrs" in h.lower() and "ns" in h.lower()), None)
    if col is None:
        col = next((h for h in header if "device" in h.lower()), None)
    if col is None:
        raise SlifeError(f"{f}: no vrs_device_time_ns column (has {', '.join(header)})")
    cols = [col]
    frame_col = next((h for h in header if "frame" in h.lower() and h != col), None)
    if frame_col:
        cols.append(frame_col)
    a = _csv_columns(f, cols)
    t = a[:, 0] * 1e-9
    if frame_col:
        order = np.argsort(a[:, 1], kind="stable")
        if not np.array_equal(a[order, 1], np.arange(len(a))):
            raise SlifeError(f"{f}: {frame_col} is not 0..{len(a) - 1}")
        t = t[order]
    if not np.isfinite(t).all():
        raise SlifeError(f"{f}: non-finite times")
    if np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise SlifeError(f"{f}: device time does not increase at frame {i + 1}; frames and times would not match")
    return t


def read(path: Path, upright: bool = False) -> Life:
    """Read Aria MPS output (see the module docstring).

    `upright=True`: the MP4's frames were turned 90 degrees clockwise from the sensor (HD-EPIC's exports, or
    projectaria_tools' `make_upright`); cameras and poses are turned with them (`Camera.rotated_cw90`).
    """
    from slife.lives.video import open_video

    path = Path(path)
    mps = find_mps(path)
    if mps is None:
        raise SlifeError(f"{path}: no closed_loop_trajectory.csv (in it or its slam/)")
    warnings: list[str] = []
    counts: dict = {}
    t_traj, T_traj = read_trajectory(mps / "closed_loop_trajectory.csv", warnings, counts)
    calf = mps / "online_calibration.jsonl"
    if not calf.is_file():
        raise SlifeError(f"{calf}: missing (needed for the RGB camera's intrinsics and T_device_rgb)")
    t_cal, cals = read_calibrations(calf)

    video, times = _find_video(path, mps)
    sources: list = []
    if video is not None:
        vs = open_video(video, name=video.stem)
        t = read_video_times(times)
        if len(t) != len(vs):
            raise SlifeError(f"{times}: {plural(len(t), 'row')} but {video.name} has {plural(len(vs), 'frame')}")
        sources = [vs]
        out_w, out_h = vs.width, vs.height
    else:
        t = np.arange(t_traj[0], t_traj[-1] + 1e-9, 1.0 / TRAJECTORY_FPS)
        out_w = out_h = None
        warnings.append(f"no video with mp4_to_vrs_time_ns.csv: trajectory-only life at {TRAJECTORY_FPS:g} Hz")
    n = len(t)
    T_dev, ok = interpolate_poses(t_traj, T_traj, t)
    if (~ok).any():
        counts["poses_missing"] = int((~ok).sum())
        warnings.append(f"{int((~ok).sum())} of {n} frames fall outside the trajectory or in a gap > {MAX_GAP_S * 1000:.0f} ms")

    # nearest calibration line per frame -> camera and T_device_rgb
    k = np.clip(np.searchsorted(t_cal, t), 1, max(len(t_cal) - 1, 1)) if len(t_cal) > 1 else np.zeros(n, int)
    if len(t_cal) > 1:
        k = np.where(np.abs(t_cal[k - 1] - t) <= np.abs(t_cal[k] - t), k - 1, k)
    cam_of: dict = {}  # Camera -> index in cameras (online calibrations often repeat)
    cameras: list[Camera] = []
    id_of_line = {}
    for c in np.unique(k):
        params = cals[int(c)][0]
        if upright:  # scale to the sensor-oriented video size, then turn with the frames
            cam = fisheye_camera(params, _sensor_size(params), out_h, out_w).rotated_cw90()
        else:
            cam = fisheye_camera(params, _sensor_size(params), out_w, out_h)
        id_of_line[int(c)] = cam_of.setdefault(cam, len(cameras))
        if id_of_line[int(c)] == len(cameras):
            cameras.append(cam)
    cam_id = np.array([id_of_line[int(c)] for c in k], dtype=np.int32)  # (N,)
    T_dev_cam = np.stack([cals[int(c)][1] for c in k]) if n else np.zeros((0, 4, 4))
    if upright:
        Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # camera frame turned about z
        T_dev_cam = T_dev_cam @ make_pose(Rz.T, np.zeros(3))
    T = np.einsum("nij,njk->nik", T_dev, T_dev_cam)  # (N, 4, 4) T_world_rgb
    T[~ok] = np.nan

    points = None
    pf = next((mps / f for f in ("semidense_points.csv.gz", "global_points.csv.gz") if (mps / f).is_file()), None)
    if pf is not None:
        a = _csv_columns(pf, ["px_world", "py_world", "pz_world", "inv_dist_std", "dist_std"], opener=gzip.open)
        good = np.isfinite(a).all(axis=1) & (a[:, 3] < MAX_INV_DIST_STD) & (a[:, 4] < MAX_DIST_STD)
        counts["points_filtered"] = int((~good).sum())
        points = a[good, :3]  # (M, 3) world, metres
    else:
        warnings.append("no semidense_points.csv.gz / global_points.csv.gz")
    for w in warnings:
        log.warning("%s: %s", path, w)
    return Life(
        name=life_name(path), root=path, format="aria_mps", sources=sources,
        source=np.full(n, 0 if sources else -1, np.int32), frame_index=np.arange(n, dtype=np.int64), t=t,
        T_world_cam=T, pose_valid=ok, cameras=cameras, camera_id=cam_id, points=points, counts=counts,
        warnings=warnings,
        meta={"mps": str(mps), "video": str(video) if video else None, "distortion": "FISHEYE624", "upright": upright,
              "clock": "Aria device time (tracking_timestamp), seconds",
              "point_filter": {"inv_dist_std": MAX_INV_DIST_STD, "dist_std": MAX_DIST_STD}},
    )
