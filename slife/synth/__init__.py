"""Synthetic lives: render a head-worn camera's days in a textured indoor scene and write a life folder.

Entry points: `run(cfg: SynthConfig, out_dir) -> Path` (the folder), `read_life_json(out_dir)` (a life's
settings), and `append_days(out_dir, days)`, which
grows a `life` by days, each a new recording `video-%03d.mp4` (poses.npz gains a `video` column saying which
recording a row is in; see `slife.lives.folder`). `run` writes, atomically per file:
- `video.mp4`: H.264 (PyAV), frame i = poses row i, frame i's pts * time_base == `t[i]`;
- `poses.npz`: `t` (N,) float64 seconds, `T_world_cam` (N, 4, 4) float64 camera-to-world (OpenCV axes,
  metres, world z up), `K` (3, 3) float64 (pixel centres at +0.5, cx = W / 2), `image_size` (2,) = (W, H),
  and `day` (N,) int32 (which day a frame belongs to);
- `points.ply`: surface samples with their shaded colour and normal (open3d binary PLY);
- `depth/{i:06d}.png`: z-depth, uint16 millimetres, 0 = nothing hit;
- `life.json`: name, kind, scene, seed, days, description, fps, frames, day_starts, config. Written last:
  its presence with the same config marks the folder complete (a rerun returns at once);
- `.synth-partial.json` (`PARTIAL`): the config, while a render is under way (removed after life.json), so
  an interrupted render is rendered again by the same config. Any other non-empty folder (a life with
  other settings, an unfinished render with other settings, files `run` did not write) is refused unless
  `overwrite`: rendering replaces video*.mp4, poses.npz, points.ply and depth/*.png.
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
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from slife.errors import SlifeError, plural
from slife.io import atomic_file, atomic_write_json

log = logging.getLogger(__name__)

KINDS = ("life", "static", "views", "screen")
PARTIAL = ".synth-partial.json"  # {"config": ...} while a render is under way (removed once life.json is written)


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
    photos: bool = False  # also texture walls, floors and prints with photographs (scikit-image's bundled samples)
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


def save_npz_deterministic(path: Path, **arrays) -> None:
    """np.savez with fixed zip timestamps (same arrays -> same bytes), written atomically."""
    with atomic_file(path, keep_suffix=True) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)


def _write_png16(path: Path, mm: np.ndarray) -> None:
    from PIL import Image

    with atomic_file(path, keep_suffix=True, durable=False) as tmp:  # one per frame: no fsync each
        Image.fromarray(mm).save(tmp, format="PNG")


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
    with atomic_file(path, keep_suffix=True) as tmp:  # open3d picks the format by suffix
        if not o3d.io.write_point_cloud(str(tmp), pcd, write_ascii=False, compressed=False, print_progress=False):
            raise SlifeError(f"{path}: open3d could not write the point cloud")
    return int(len(pts))


def _poses(cfg: SynthConfig, scene, rate, days: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                            np.ndarray]:
    """pts (N,) int64, t (N,) float64 (= pts / rate exactly), T_world_cam (N, 4, 4), day (N,) int32.

    A life's days are drawn one after the other from one generator, so `days` (default cfg.days) more than
    cfg.days gives the same first cfg.days days followed by new ones: how `append_days` grows a life."""
    from slife.synth import trajectory as tj

    rng = np.random.default_rng([cfg.seed, 1])
    n = cfg.frames_per_day()
    if cfg.kind == "life":
        t, T, day = tj.life_trajectory(scene, days or cfg.days, cfg.duration / cfg.days, cfg.fps, rng,
                                       cfg.day_seconds)
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
    from slife.synth.encode import VideoWriter, frame_rate
    from slife.synth.render import Renderer
    from slife.synth.scenes import build_scene

    out = Path(out_dir)
    meta_path = out / "life.json"
    config = asdict(cfg)
    if _check_out(out, config, overwrite):
        log.info("%s: already complete, skipped", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
        meta_path.unlink()  # incomplete until written again
    atomic_write_json(out / PARTIAL, {"config": config})  # a kill from here on leaves a folder this config resumes
    for stale in sorted((out / "depth").glob("*.png")) if (out / "depth").is_dir() else []:
        stale.unlink()  # a rerun may write fewer frames (or none)
    for stale in sorted(out.glob("video-*.mp4")):
        stale.unlink()  # recordings appended to the life this replaces
    rate = frame_rate(cfg.fps)
    cam = cfg.camera()
    scene = None if cfg.kind == "screen" else build_scene(cfg.scene, cfg.seed, cfg.texture_size, cfg.photos,
                                                           cfg.texture_scale)
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
        with atomic_file(out / "video.mp4", keep_suffix=True) as tmp, \
                VideoWriter(tmp, cfg.width, cfg.height, cfg.fps, cfg.crf) as vw:
            for k, rgb in enumerate(frames):
                vw.write(rgb, pts[k])
                if progress:
                    progress(1)
    else:
        save_npz_deterministic(out / "poses.npz", t=t, T_world_cam=T, K=cam.K,
                               image_size=np.array([cfg.width, cfg.height], np.int64), day=day)
        renderer = Renderer(scene, cam, shadows=cfg.shadows)
        (out / "points.ply").unlink(missing_ok=True)
        if cfg.points:
            summary["points"] = _write_points(out / "points.ply", renderer, cfg.points,
                                              np.random.default_rng([cfg.seed, 2]))
        light = _light_schedule(cfg, scene, t)
        encode_s = _render_video(cfg, out, out / "video.mp4", renderer, T, pts, np.arange(n), light, progress)
        summary["seconds"] = {**{k: round(v, 3) for k, v in renderer.timing.items()}, "encode": round(encode_s, 3)}
        summary["scene"] = scene.info
    log.info("%s: %s, timing %s", out, plural(n, "frame"), summary.get("seconds"))
    summary.pop("seconds", None)  # timing varies between runs; keep life.json deterministic
    atomic_write_json(meta_path, _meta(cfg, out, t, day, summary), indent=1)
    (out / PARTIAL).unlink(missing_ok=True)
    return out


def _check_out(out: Path, config: dict, overwrite: bool) -> bool:
    """True when `out` already holds the complete life `config` makes (nothing to do); False when it may be
    rendered into: absent, empty, an unfinished render of the same config, or `overwrite`. Any other folder
    (another life, a render with other settings, files not ours) is refused with a SlifeError: rendering
    replaces its video, poses, points and depth files."""
    if out.exists() and not out.is_dir():
        raise SlifeError(f"{out}: is a file, not a folder; choose another output folder")
    if overwrite or not out.exists():
        return False
    meta_path, partial = out / "life.json", out / PARTIAL
    fix = "pass --overwrite to render it again (replacing its files) or choose another folder"
    if meta_path.exists():
        made = _made_with(meta_path, fix)
        if made == config:
            return True
        raise SlifeError(f"{out}: holds a life rendered with other settings ({_differ(made, config)}); {fix}")
    if partial.exists():
        made = _made_with(partial, fix)
        if made == config:
            return False  # an interrupted render of this life: render again
        raise SlifeError(f"{out}: holds an unfinished render with other settings ({_differ(made, config)}); {fix}")
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if entries:
        raise SlifeError(f"{out}: folder is not empty and was not made by `slife synth` "
                         f"({plural(len(entries), 'entry', 'entries')}, first: {entries[0]}); pass --overwrite to "
                         "render into it (replacing its video, poses, points and depth files) or choose another folder")
    return False


def _made_with(path: Path, fix: str) -> dict:
    """The `config` a life.json (or the unfinished-render marker) records; SlifeError when unreadable."""
    try:
        made = json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError) as e:
        raise SlifeError(f"{path}: unreadable ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(made, dict):
        raise SlifeError(f"{path}: has no synth settings (config); {fix}")
    return {**asdict(SynthConfig()), **made}  # a field added since the folder was made counts as its default


def _differ(old: dict, new: dict) -> str:
    """'fps 2 -> 4, width 64 -> 128': the config fields whose values differ, old -> new."""
    return ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))


def _meta(cfg: SynthConfig, out: Path, t: np.ndarray, day: np.ndarray, summary: dict, appended: int = 0) -> dict:
    """life.json's content (written last: its presence with the same config marks the folder complete)."""
    from slife.lives.life import life_name

    meta = {
        "name": life_name(out),
        "kind": cfg.kind,
        "scene": None if cfg.kind == "screen" else cfg.scene,
        "seed": cfg.seed,
        "days": cfg.days + appended if cfg.kind == "life" else 1,
        "description": _describe(cfg, appended),
        "fps": cfg.fps,
        "frames": int(len(t)),
        "image_size": [cfg.width, cfg.height],
        "day_starts": [float(t[np.argmax(day == d)]) for d in np.unique(day)],
        "files": {"video": "video.mp4", "poses": None if cfg.kind == "screen" else "poses.npz",
                  "points": "points.ply" if cfg.kind != "screen" and cfg.points else None,
                  "depth": "depth/{i:06d}.png" if cfg.kind != "screen" and cfg.depth else None},
        "summary": summary,
        "config": asdict(cfg),
    }
    if appended:  # days grown by `append_days`, one recording (video-%03d.mp4) each
        meta["appended_days"] = appended
        meta["files"]["videos"] = [f"video-{k:03d}.mp4" for k in range(1, appended + 1)]
    return meta


def _render_video(cfg: SynthConfig, out: Path, video: Path, renderer, T: np.ndarray, pts: np.ndarray, rows: np.ndarray,
                  light: np.ndarray | None, progress: Callable[[int], None] | None) -> float:
    """Render poses rows `rows` into the one recording `video` (atomically) and their depth maps
    (`depth/{row:06d}.png`); returns the seconds spent encoding."""
    from slife.synth.encode import VideoWriter
    from slife.synth.render import depth_to_png_mm

    if cfg.depth:
        (out / "depth").mkdir(exist_ok=True)
    with atomic_file(video, keep_suffix=True) as tmp, VideoWriter(tmp, cfg.width, cfg.height, cfg.fps, cfg.crf) as vw:

        def write(k, rgb, depth):  # runs in a worker thread (x264 and zlib release the GIL)
            vw.write(rgb, pts[k])
            if cfg.depth:
                _write_png16(out / "depth" / f"{k:06d}.png", depth_to_png_mm(depth))

        with _Writer(write) as writer:
            for k in rows:
                rgb, depth = renderer.render(T[k], None if light is None else light[k])
                writer.put(int(k), rgb, depth)
                if progress:
                    progress(1)
    return vw.seconds


def read_life_json(out_dir: Path | str) -> tuple[dict, SynthConfig]:
    """(life.json's content, the SynthConfig it records) of the synthetic life at `out_dir`; SlifeError when
    there is no life.json or it cannot be read."""
    meta_path = Path(out_dir) / "life.json"
    try:
        meta = json.loads(meta_path.read_text())
        return meta, SynthConfig(**meta["config"])
    except FileNotFoundError:
        raise SlifeError(f"{out_dir}: no life.json; render the life with `slife synth` first") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SlifeError(f"{meta_path}: unreadable ({type(e).__name__}: {e})") from None


def append_days(out_dir: Path | str, days: int, progress: Callable[[int], None] | None = None) -> Path:
    """Grow the synthetic life at `out_dir` by `days` days, each a new recording `video-%03d.mp4`; returns the folder.

    The life's settings come from its life.json. Day d's walk is the same whether the life was rendered
    with d + 1 days or grown to them (one generator draws the days in order), so growing is deterministic:
    growing by 1 then 1 gives the same bytes as growing by 2. The existing recordings, depth maps and
    points are not touched; poses.npz is rewritten with the new rows (and its `video` column, see
    `slife.lives.folder`), then life.json (last: a kill before it leaves the folder to be grown again,
    to the same bytes)."""
    from slife.lives.life import life_name
    from slife.synth.encode import frame_rate
    from slife.synth.render import Renderer
    from slife.synth.scenes import build_scene

    out = Path(out_dir)
    meta_path = out / "life.json"
    if days < 1:
        raise SlifeError(f"--append-days must be >= 1, got {days}")
    meta, cfg = read_life_json(out)
    if cfg.kind != "life":
        raise SlifeError(f"{out}: a '{cfg.kind}' life has no days to append (only --kind life grows)")
    if cfg.depth and not (out / "depth").is_dir():
        raise SlifeError(f"{out}: depth/ is missing; render the life again with `slife synth --overwrite`")
    have = int(meta.get("appended_days", 0))
    n_old = int(meta["frames"])
    rate = frame_rate(cfg.fps)
    scene = build_scene(cfg.scene, cfg.seed, cfg.texture_size, cfg.photos, cfg.texture_scale)
    pts, t, T, day = _poses(cfg, scene, rate, days=cfg.days + have + days)
    try:
        with np.load(out / "poses.npz", allow_pickle=False) as z:
            same = len(z["t"]) >= n_old and np.array_equal(z["t"][:n_old], t[:n_old]) \
                and np.array_equal(z["T_world_cam"][:n_old], T[:n_old])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        same = False
    if not same:
        raise SlifeError(f"{out / 'poses.npz'}: does not hold the poses life.json's settings make; render the life "
                         "again with `slife synth --overwrite`")
    if progress:
        progress(0, total=int(days * cfg.frames_per_day()))
    recording = np.zeros(len(t), np.int32)  # (N,) 0: video.mp4 (the first cfg.days days); then a file a day
    recording[day >= cfg.days] = day[day >= cfg.days] - cfg.days + 1
    renderer = Renderer(scene, cfg.camera(), shadows=cfg.shadows)
    for d in range(cfg.days + have, cfg.days + have + days):
        rows = np.flatnonzero(day == d)
        k = d - cfg.days + 1
        _render_video(cfg, out, out / f"video-{k:03d}.mp4", renderer, T, pts, rows, None, progress)
    save_npz_deterministic(out / "poses.npz", t=t, T_world_cam=T, K=cfg.camera().K,
                           image_size=np.array([cfg.width, cfg.height], np.int64), day=day, video=recording)
    summary = {k: v for k, v in meta.get("summary", {}).items()}
    summary["frames"] = int(len(t))
    meta = {**_meta(cfg, out, t, day, summary, appended=have + days), "name": meta.get("name") or life_name(out)}
    atomic_write_json(meta_path, meta, indent=1)  # the life keeps its name (its samples' keys) as it grows
    log.info("%s: %s appended (%s in all)", out, plural(days, "day"), plural(len(t), "frame"))
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


def _describe(cfg: SynthConfig, appended: int = 0) -> str:
    """life.json's description; a life grown by `appended` days counts them (days and seconds)."""
    if cfg.kind == "life":
        days = cfg.days + appended
        return (f"synthetic egocentric life: a head-worn camera walking in the '{cfg.scene}' scene over "
                f"{plural(days, 'day')}, {cfg.duration / cfg.days * days:g} s of video in total at {cfg.fps:g} fps")
    if cfg.kind == "static":
        return f"non-life control: a fixed surveillance-like camera in the '{cfg.scene}' scene, lights changing"
    if cfg.kind == "views":
        return f"independent random views of the '{cfg.scene}' scene (e.g. a depth-probe set)"
    return "non-life control: a screen recording (2D scrolling windows, no camera, no 3D motion)"


__all__ = ["KINDS", "PARTIAL", "SynthConfig", "append_days", "read_life_json", "run", "save_npz_deterministic"]
