"""Synthetic lives: render a head-worn camera's days in a textured indoor scene and write a life folder.

Entry point: `run(cfg: SynthConfig, out_dir) -> Path` (the folder). It writes, atomically per file:
- `video.mp4`: H.264 (PyAV), frame i = poses row i, frame i's pts * time_base == `t[i]`;
- `poses.npz`: `t` (N,) float64 seconds, `T_world_cam` (N, 4, 4) float64 camera-to-world (OpenCV axes,
  metres, world z up), `K` (3, 3) float64 (pixel centres at +0.5, cx = W / 2), `image_size` (2,) = (W, H),
  and `day` (N,) int32 (which day a frame belongs to);
- `points.ply`: surface samples with their shaded colour and normal (open3d binary PLY);
- `depth/{i:06d}.png`: z-depth, uint16 millimetres, 0 = nothing hit;
- `life.json`: name, kind, scene, seed, days, description, fps, frames, day_starts, config. Written last:
  its presence with the same config marks the folder complete (a rerun returns at once).
All days of a life go into the ONE `video.mp4`: day d's frames have t = d * day_seconds + k / fps (one
clock across the life, nights are gaps in t and pts), so temporal pairs never cross days and
spatial pairs do. Same seed -> same bytes of poses.npz, points.ply and depth PNGs (and, with the same
PyAV/x264 build, of video.mp4: x264 runs single-threaded); life.json differs only by the folder's name.

Kinds: `life` (walking, several days), `static` (a fixed surveillance-like camera; lights slowly
change), `views` (independent random views, e.g. a held-out scene for a depth probe) and `screen`
(a screen recording: no camera, so no poses.npz, points or depth; the folder reads as a plain video
life). Scenes are in `scenes.py`, textures in `textures.py`, motion in `trajectory.py`, ray casting
in `render.py`, encoding in `encode.py`. Reading the folder back is left to `slife.lives.folder`.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from slife.errors import SlifeError

log = logging.getLogger(__name__)

KINDS = ("life", "static", "views", "screen")


@dataclass(frozen=True)
class SynthConfig:
    """What to render; every field is part of the life's identity (stored in life.json)."""

    kind: str = "life"  # life | static | views | screen (see the module docstring)
    scene: str = "kitchen"  # a name in slife.synth.scenes.SCENES (held-out: "gallery")
    duration: float = 60.0  # seconds of video in total (a life splits them evenly over its days)
    fps: float = 10.0  # frames per second
    width: int = 256  # image width in pixels (even)
    height: int = 192  # image height in pixels (even)
    seed: int = 0  # one seed fixes scene layout, textures, trajectory and points
    days: int = 2  # days of a `life` (each starts at the same entrance; later days revisit places)
    fov_deg: float = 90.0  # horizontal field of view of the pinhole camera (degrees)
    texture_size: int = 256  # texels per side of each baked texture (power of two)
    texture_scale: float = 1.0  # texture tiles span this many times their usual 1.5-3 m on walls and floors;
    # at 1 a tile repeats several times across a room and matches itself (structure from motion then links
    # views that do not overlap); 5 with texture_size 1024 keeps the detail and stops the repeats
    points: int = 100_000  # surface samples written to points.ply (0: none)
    shadows: bool = True  # soft shadows and ambient occlusion (baked once per scene at mesh vertices)
    depth: bool = True  # write depth/{i:06d}.png
    crf: int = 18  # H.264 quality (lower is better, bigger)
    day_seconds: float = 86400.0  # clock time between the starts of two days

    def __post_init__(self):
        from slife.synth.scenes import SCENES

        if self.kind not in KINDS:
            raise SlifeError(f"unknown synth kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind != "screen" and self.scene not in SCENES:
            raise SlifeError(f"unknown scene {self.scene!r}; known: {', '.join(SCENES)}")
        if not (self.width >= 16 and self.height >= 16 and self.width % 2 == 0 and self.height % 2 == 0):
            raise SlifeError(f"width and height must be even and >= 16 (H.264), got {self.width}x{self.height}")
        if not (self.fps > 0 and self.duration > 0):
            raise SlifeError(f"fps and duration must be positive, got fps={self.fps} duration={self.duration}")
        if self.days < 1:
            raise SlifeError(f"days must be >= 1, got {self.days}")
        if not 10 <= self.fov_deg <= 150:
            raise SlifeError(f"fov_deg must be in [10, 150], got {self.fov_deg}")
        ts = self.texture_size
        if ts < 16 or ts & (ts - 1):
            raise SlifeError(f"texture_size must be a power of two >= 16, got {ts}")
        if not self.texture_scale > 0:
            raise SlifeError(f"texture_scale must be positive, got {self.texture_scale}")
        if self.points < 0 or self.crf < 0:
            raise SlifeError("points and crf must be >= 0")
        if self.kind == "life" and self.day_seconds < self.duration / self.days:
            raise SlifeError(f"day_seconds ({self.day_seconds}) is shorter than one day of video")
        if self.frames_per_day() < 1:
            raise SlifeError(f"duration {self.duration}s at {self.fps} fps gives no frame")

    def frames_per_day(self) -> int:
        days = self.days if self.kind == "life" else 1
        return int(round(self.duration / days * self.fps))

    def camera(self):
        """The pinhole `Camera` (square pixels, centred principal point W/2, H/2)."""
        from slife.lives.geometry import Camera

        f = self.width / 2 / np.tan(np.radians(self.fov_deg) / 2)
        return Camera("PINHOLE", self.width, self.height, (f, f, self.width / 2, self.height / 2))


def _atomic(path: Path, suffix: str = "") -> Path:
    """A temporary name beside `path` (keeps the real suffix last when `suffix` is given)."""
    return path.with_name(f".{path.stem}.tmp{suffix or path.suffix}")


def save_npz_deterministic(path: Path, **arrays) -> None:
    """np.savez with fixed zip timestamps (same arrays -> same bytes), written atomically."""
    tmp = _atomic(path)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
    os.replace(tmp, path)


def _write_png16(path: Path, mm: np.ndarray) -> None:
    from PIL import Image

    tmp = _atomic(path)
    Image.fromarray(mm).save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_points(path: Path, renderer, n: int, rng: np.random.Generator) -> int:
    """Sample n surface points with the colour every view sees; write a binary PLY with normals."""
    import open3d as o3d

    from slife.synth.render import sample_surface

    pts, tri, bary = sample_surface(renderer.scene, n, rng)
    col = renderer.surface_colors(pts, tri, bary, footprint=0.01)
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(pts)
    pcd.colors = o3d.utility.Vector3dVector(col.astype(np.float64))
    pcd.normals = o3d.utility.Vector3dVector(renderer.scene.tri_normal[tri].astype(np.float64))
    tmp = _atomic(path)
    if not o3d.io.write_point_cloud(str(tmp), pcd, write_ascii=False, compressed=False, print_progress=False):
        raise SlifeError(f"{path}: open3d could not write the point cloud")
    os.replace(tmp, path)
    return int(len(pts))


def _poses(cfg: SynthConfig, scene, rate) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pts (N,) int64, t (N,) float64 (= pts / rate exactly), T_world_cam (N, 4, 4), day (N,) int32."""
    from slife.synth import trajectory as tj

    rng = np.random.default_rng([cfg.seed, 1])
    n = cfg.frames_per_day()
    if cfg.kind == "life":
        t, T, day = tj.life_trajectory(scene, cfg.days, cfg.duration / cfg.days, cfg.fps, rng, cfg.day_seconds)
    elif cfg.kind == "static":
        t, T = tj.static_trajectory(scene, n, cfg.fps, rng)
        day = np.zeros(n, np.int32)
    elif cfg.kind == "views":
        t, T = tj.random_views(scene, n, cfg.fps, rng)
        day = np.zeros(n, np.int32)
    else:
        t, T, day = np.arange(n) / cfg.fps, None, np.zeros(n, np.int32)
    pts = np.round(t * rate.numerator / rate.denominator).astype(np.int64)
    t = pts * rate.denominator / rate.numerator  # exactly what a decoder reports as pts * time_base
    return pts, t.astype(np.float64), T, day


def run(cfg: SynthConfig, out_dir: Path | str, progress: Callable[[int], None] | None = None,
        overwrite: bool = False) -> Path:
    """Render the life `cfg` into `out_dir` (created); returns `out_dir`. See the module docstring."""
    from slife.lives.life import life_name
    from slife.synth.encode import VideoWriter, frame_rate
    from slife.synth.render import Renderer, depth_to_png_mm
    from slife.synth.scenes import build_scene

    out = Path(out_dir)
    meta_path = out / "life.json"
    config = asdict(cfg)
    if meta_path.exists() and not overwrite:
        try:
            # a field added since the folder was made counts as its default (texture_scale: 1)
            if {**asdict(SynthConfig()), **json.loads(meta_path.read_text()).get("config", {})} == config:
                log.info("%s: already complete, skipped", out)
                return out
        except (OSError, ValueError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta_path.unlink()  # incomplete until written again
    for stale in sorted((out / "depth").glob("*.png")) if (out / "depth").is_dir() else []:
        stale.unlink()  # a rerun may write fewer frames (or none)
    rate = frame_rate(cfg.fps)
    cam = cfg.camera()
    scene = None if cfg.kind == "screen" else build_scene(cfg.scene, cfg.seed, cfg.texture_size, cfg.texture_scale)
    pts, t, T, day = _poses(cfg, scene, rate)
    n = len(t)
    summary = {"frames": n}

    if cfg.kind == "screen":
        from slife.synth.screen import screen_frames

        for stale in ("poses.npz", "points.ply"):
            (out / stale).unlink(missing_ok=True)
        if (out / "depth").is_dir():
            (out / "depth").rmdir()
        frames = screen_frames(n, cfg.width, cfg.height, cfg.fps, np.random.default_rng([cfg.seed, 4]))
        with VideoWriter(_atomic(out / "video.mp4"), cfg.width, cfg.height, cfg.fps, cfg.crf) as vw:
            for k, rgb in enumerate(frames):
                vw.write(rgb, pts[k])
                if progress:
                    progress(1)
        os.replace(_atomic(out / "video.mp4"), out / "video.mp4")
    else:
        save_npz_deterministic(out / "poses.npz", t=t, T_world_cam=T, K=cam.K,
                               image_size=np.array([cfg.width, cfg.height], np.int64), day=day)
        renderer = Renderer(scene, cam, shadows=cfg.shadows)
        (out / "points.ply").unlink(missing_ok=True)
        if cfg.points:
            summary["points"] = _write_points(out / "points.ply", renderer, cfg.points,
                                              np.random.default_rng([cfg.seed, 2]))
        light = _light_schedule(cfg, scene, t)
        if cfg.depth:
            (out / "depth").mkdir(exist_ok=True)
        with VideoWriter(_atomic(out / "video.mp4"), cfg.width, cfg.height, cfg.fps, cfg.crf) as vw:

            def write(k, rgb, depth):  # runs in a worker thread (x264 and zlib release the GIL)
                vw.write(rgb, pts[k])
                if cfg.depth:
                    _write_png16(out / "depth" / f"{k:06d}.png", depth_to_png_mm(depth))

            with _Writer(write) as writer:
                for k in range(n):
                    rgb, depth = renderer.render(T[k], None if light is None else light[k])
                    writer.put(k, rgb, depth)
                    if progress:
                        progress(1)
        os.replace(_atomic(out / "video.mp4"), out / "video.mp4")
        summary["seconds"] = {**{k: round(v, 3) for k, v in renderer.timing.items()}, "encode": round(vw.seconds, 3)}
        summary["scene"] = scene.info
    log.info("%s: %d frames, timing %s", out, n, summary.get("seconds"))
    summary.pop("seconds", None)  # timing varies between runs; keep life.json deterministic
    day_starts = [float(t[np.argmax(day == d)]) for d in np.unique(day)]
    meta = {
        "name": life_name(out),
        "kind": cfg.kind,
        "scene": None if cfg.kind == "screen" else cfg.scene,
        "seed": cfg.seed,
        "days": cfg.days if cfg.kind == "life" else 1,
        "description": _describe(cfg),
        "fps": cfg.fps,
        "frames": n,
        "image_size": [cfg.width, cfg.height],
        "day_starts": day_starts,
        "files": {"video": "video.mp4", "poses": None if cfg.kind == "screen" else "poses.npz",
                  "points": "points.ply" if cfg.kind != "screen" and cfg.points else None,
                  "depth": "depth/{i:06d}.png" if cfg.kind != "screen" and cfg.depth else None},
        "summary": summary,
        "config": config,
    }
    tmp = _atomic(meta_path)
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return out


class _Writer:
    """Runs `fn(*item)` for each `put` item in order on one background thread (bounded queue); re-raises its error."""

    def __init__(self, fn, maxsize: int = 4):
        import queue
        import threading

        self.fn, self.error = fn, None
        self.q: queue.Queue = queue.Queue(maxsize)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while (item := self.q.get()) is not None:
            if self.error is None:
                try:
                    self.fn(*item)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    self.error = e

    def put(self, *item):
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.q.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


def _light_schedule(cfg: SynthConfig, scene, t: np.ndarray) -> np.ndarray | None:
    """Per-frame light scales (N, L) for the static camera (slow drift, one lamp switched off a while)."""
    if cfg.kind != "static":
        return None
    rng = np.random.default_rng([cfg.seed, 3])
    L = len(scene.lights)
    f = rng.uniform(0.02, 0.1, L)
    ph = rng.uniform(0, 2 * np.pi, L)
    s = 1.0 + 0.2 * np.sin(2 * np.pi * f[None] * t[:, None] + ph[None])  # (N, L)
    off0 = rng.uniform(0.3, 0.6) * t[-1]
    s[(t >= off0) & (t < off0 + 0.2 * (t[-1] + 1)), int(rng.integers(L))] = 0.0
    return s


def _describe(cfg: SynthConfig) -> str:
    if cfg.kind == "life":
        return (f"synthetic egocentric life: a head-worn camera walking in the '{cfg.scene}' scene over "
                f"{cfg.days} day(s), {cfg.duration:g} s of video in total at {cfg.fps:g} fps")
    if cfg.kind == "static":
        return f"non-life control: a fixed surveillance-like camera in the '{cfg.scene}' scene, lights changing"
    if cfg.kind == "views":
        return f"independent random views of the '{cfg.scene}' scene (e.g. a depth-probe set)"
    return "non-life control: a screen recording (2D scrolling windows, no camera, no 3D motion)"


__all__ = ["KINDS", "SynthConfig", "run", "save_npz_deterministic"]
