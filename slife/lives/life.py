"""The `Life`: one person's recordings, normalised, whatever the source format.

A Life is columnar (numpy arrays of length N frames) so that 10^5-10^6 frames stay cheap:
- `t` (N,) float64 seconds, monotonic within a source (one clock across the life where the source has one);
- `source` (N,) int32 index into `sources` (a video file or an image list), `frame_index` (N,) int64: the
  frame's place in that source (decode order of presentation: 0 = first frame shown);
- `T_world_cam` (N, 4, 4) float64 camera-to-world, OpenCV axes, metres; rows of invalid poses are NaN and
  `pose_valid` (N,) is False there (frames without a pose are kept for temporal pairs);
- `cameras` list of `geometry.Camera` and `camera_id` (N,) int32 into it (-1: unknown intrinsics);
- geometry for visibility, any of: `points` (M, 3) float64 world points (+ `point_colors` (M, 3) uint8),
  `tracks` per-frame observed point ids as CSR (`indptr` (N+1,), `indices` (nnz,) into `points`),
  `depth` per-frame depth maps (`depth_paths` list with None where missing, `depth_scale` units per metre,
  `depth_camera` when the maps have intrinsics of their own, e.g. ScanNet's 640x480 depth).
Readers (one module per format in this package) build it; `Life.sample(fps)` subsamples frames;
`Life.iter_frames(ids, short_side=None)` decodes pixels through each source (optionally resized). Visibility is computed in
`pairmine/visibility.py`; decoding of video files lives in `lives/video.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

from slife.errors import SlifeError
from slife.lives.geometry import Camera


class FrameSource(Protocol):
    """Where the pixels of one video (or one image sequence) come from."""

    name: str  # short name, unique within the life (e.g. the video's file stem)
    path: Path  # file or folder

    def read(self, frame_indices: Sequence[int], short_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame_index, RGB uint8 (H, W, 3)) for the sorted, unique `frame_indices`.

        A frame that cannot be decoded is skipped (not yielded); the caller counts what is missing.
        `short_side` (optional) resizes each frame so that min(H, W) == short_side (see `resized_size`).
        """
        ...


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(W, H) of an image resized so that its short side is `short_side` (aspect kept, long side rounded).

    Intrinsics follow with `Camera.scaled(W_new / W, H_new / H)`.
    """
    s = short_side / min(width, height)
    if width <= height:
        return int(short_side), max(1, int(round(height * s)))
    return max(1, int(round(width * s))), int(short_side)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # image files readers take as frames
# `Life.counts` keys that mean pixels the life should have and cannot give: an image file listed but missing,
# an image file that cannot be read, a video that cannot be read (skipped on request)
LOSS_COUNTS = ("frames_missing", "frames_unreadable", "videos_skipped")


@dataclass
class ImageFiles:
    """A frame source backed by one image file per frame (JPEG/PNG), e.g. COLMAP or ScanNet `color/`."""

    name: str
    path: Path  # the folder holding the images
    files: list[Path]  # one per frame_index

    def read(self, frame_indices: Sequence[int], short_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        from PIL import Image

        for i in frame_indices:
            try:
                with Image.open(self.files[i]) as im:
                    im = im.convert("RGB")
                    if short_side is not None:
                        size = resized_size(im.width, im.height, short_side)
                        if size != im.size:
                            im = im.resize(size, Image.BILINEAR, reducing_gap=2.0)
                    yield int(i), np.asarray(im)  # (H, W, 3) uint8
            except (OSError, ValueError, IndexError):
                continue


def image_size(files: Sequence[Path]) -> tuple[int, int]:
    """(W, H) of the first of `files` that opens; unreadable ones are left to the frame reader, which skips
    and counts them. Raises SlifeError when none opens."""
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as im:
                return im.size
        except (OSError, ValueError):
            continue
    raise SlifeError(f"{Path(files[0]).parent if files else '?'}: none of the {len(files)} images can be read")


def life_name(path: Path | str) -> str:
    """A life's name for keys and folders: its folder name reduced to letters, digits and '-'."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", Path(path).resolve().name).strip("-")
    return name or "life"


@dataclass
class Life:
    """One life's frames, poses, intrinsics and geometry; see the module docstring for every field."""

    name: str  # letters, digits, '-' (see life_name)
    root: Path  # the folder (or file) it was read from
    format: str  # reader name in slife.lives.READERS
    sources: list  # list[FrameSource]; may be empty for a trajectory-only life
    source: np.ndarray  # (N,) int32 index into sources (or -1 when there are no pixels)
    frame_index: np.ndarray  # (N,) int64 index within the source
    t: np.ndarray  # (N,) float64 seconds
    T_world_cam: np.ndarray | None = None  # (N, 4, 4) float64 camera-to-world, NaN where invalid
    pose_valid: np.ndarray | None = None  # (N,) bool
    cameras: list[Camera] = field(default_factory=list)
    camera_id: np.ndarray | None = None  # (N,) int32 into cameras, -1 = unknown
    points: np.ndarray | None = None  # (M, 3) float64 world points
    point_colors: np.ndarray | None = None  # (M, 3) uint8
    tracks: tuple[np.ndarray, np.ndarray] | None = None  # CSR (indptr (N+1,), indices (nnz,)) into points
    depth_paths: list | None = None  # per frame Path or None (uint16 PNG)
    depth_scale: float = 1000.0  # depth PNG units per metre (1000: mm, 5000: TUM)
    depth_camera: Camera | None = None  # intrinsics of the depth maps when they differ from the frame's camera
    counts: dict = field(default_factory=dict)  # what the reader dropped or fixed, e.g. {"poses_invalid": 3}
    warnings: list[str] = field(default_factory=list)  # one line each, for `slife inspect`
    meta: dict = field(default_factory=dict)  # source-specific extras (e.g. distortion, clock)

    def __post_init__(self):
        n = len(self.t)
        if self.pose_valid is None and self.T_world_cam is not None:
            self.pose_valid = np.isfinite(self.T_world_cam).all(axis=(1, 2))
        for name in ("source", "frame_index", "T_world_cam", "pose_valid", "camera_id"):
            a = getattr(self, name)
            if a is not None and len(a) != n:
                raise ValueError(f"Life.{name} has {len(a)} rows for {n} frames")
        if self.tracks is not None and len(self.tracks[0]) != n + 1:
            raise ValueError(f"Life.tracks indptr has {len(self.tracks[0])} entries for {n} frames")

    def __len__(self) -> int:
        return len(self.t)

    @property
    def has_poses(self) -> bool:
        return self.T_world_cam is not None and bool(np.any(self.pose_valid))

    @property
    def has_pixels(self) -> bool:
        return len(self.sources) > 0

    def camera(self, i: int) -> Camera | None:
        """The camera of frame i, or None when its intrinsics are unknown."""
        if self.camera_id is None or self.camera_id[i] < 0:
            return None
        return self.cameras[int(self.camera_id[i])]

    def frame_tracks(self, i: int) -> np.ndarray:
        """Point ids observed in frame i (COLMAP tracks); requires `tracks`."""
        indptr, indices = self.tracks
        return indices[indptr[i]:indptr[i + 1]]

    def source_name(self, i: int) -> str:
        """The name of frame i's video or image sequence ('' for a trajectory-only life)."""
        s = int(self.source[i])
        return self.sources[s].name if 0 <= s < len(self.sources) else ""

    def select(self, ids: np.ndarray) -> "Life":
        """A Life with only the frames `ids` (in that order); geometry and sources are shared."""
        ids = np.asarray(ids, dtype=np.int64)
        take = lambda a: None if a is None else a[ids]  # noqa: E731
        tracks = None
        if self.tracks is not None:
            indptr, indices = self.tracks
            lens = indptr[ids + 1] - indptr[ids]
            new_ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            parts = [indices[indptr[i]:indptr[i + 1]] for i in ids]
            tracks = (new_ptr, np.concatenate(parts) if parts else indices[:0])
        depth = None if self.depth_paths is None else [self.depth_paths[i] for i in ids]
        return replace(
            self, source=self.source[ids], frame_index=self.frame_index[ids], t=self.t[ids],
            T_world_cam=take(self.T_world_cam), pose_valid=take(self.pose_valid), camera_id=take(self.camera_id),
            tracks=tracks, depth_paths=depth, counts=dict(self.counts), warnings=list(self.warnings),
        )

    def sample(self, fps: float | None) -> "Life":
        """Keep about `fps` frames per second of each source (the frame nearest each 1/fps tick).

        `fps=None` or 0 keeps every frame. Deterministic: ticks start at each source's first frame.
        """
        if not fps:
            return self
        keep = []
        for s in np.unique(self.source):
            ids = np.flatnonzero(self.source == s)
            ids = ids[np.argsort(self.t[ids], kind="stable")]
            t = self.t[ids]
            if len(t) == 0:
                continue
            ticks = np.arange(t[0], t[-1] + 1e-9, 1.0 / fps)
            pos = np.clip(np.searchsorted(t, ticks), 1, len(t) - 1) if len(t) > 1 else np.zeros(len(ticks), int)
            if len(t) > 1:
                left_closer = (ticks - t[pos - 1]) <= (t[pos] - ticks)
                pos = np.where(left_closer, pos - 1, pos)
            keep.append(ids[np.unique(pos)])
        ids = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
        return self.select(ids)

    def iter_frames(self, ids: Iterable[int], short_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Decode frames by life index -> (life index, RGB uint8 (H, W, 3)), grouped by source, each once.

        Frames that fail to decode are skipped; compare the yielded ids with the asked ones to count them.
        `short_side` resizes on the way out (min(H, W) == short_side; scale K with `Camera.scaled`).
        """
        ids = np.unique(np.asarray(list(ids), dtype=np.int64))
        for s in np.unique(self.source[ids]):
            if s < 0:
                continue
            sel = ids[self.source[ids] == s]
            order = np.argsort(self.frame_index[sel], kind="stable")
            sel = sel[order]
            by_fi: dict[int, list[int]] = {}
            for i in sel:
                by_fi.setdefault(int(self.frame_index[i]), []).append(int(i))
            src = self.sources[int(s)]
            frames = src.read(sorted(by_fi)) if short_side is None else src.read(sorted(by_fi), short_side=short_side)
            for fi, rgb in frames:
                for i in by_fi.get(int(fi), ()):
                    yield i, rgb

    def check_pixels(self, progress=None, short_side: int = 64) -> dict:
        """Decode every frame (small, to keep it cheap) and count the ones that fail.

        Returns {"frames_checked", "frames_undecodable", "first_undecodable" (life index or None)};
        `progress(n)` advances by n frames. Frames without a source are not checked.
        """
        ids = np.flatnonzero(self.source >= 0)
        seen = np.zeros(len(self), bool)
        for i, _ in self.iter_frames(ids, short_side=short_side):
            seen[i] = True
            if progress:
                progress(1)
        bad = ids[~seen[ids]]
        if progress and len(bad):
            progress(len(bad))
        return {"frames_checked": int(len(ids)), "frames_undecodable": int(len(bad)),
                "first_undecodable": int(bad[0]) if len(bad) else None}

    def read_depth(self, i: int) -> np.ndarray | None:
        """Depth of frame i in metres (H, W) float32, 0 where invalid, or None if the frame has none."""
        if self.depth_paths is None or self.depth_paths[i] is None:
            return None
        from PIL import Image

        with Image.open(self.depth_paths[i]) as im:
            d = np.asarray(im, dtype=np.float32)
        return d / float(self.depth_scale)

    def summary(self) -> dict:
        """Plain-data description for `slife inspect` and manifests."""
        n = len(self)
        dur, steps = 0.0, 0
        for s in np.unique(self.source):
            dt = np.diff(np.sort(self.t[self.source == s]))  # (n_s - 1,)
            if len(dt):
                # recording time: frame intervals, leaving out gaps (nights between days, pauses of the
                # recorder) longer than 10x the median interval
                rec = dt[dt <= 10 * max(float(np.median(dt)), 1e-9)]
                dur += float(rec.sum())
                steps += len(rec)
        return {
            "name": self.name,
            "root": str(self.root),
            "format": self.format,
            "sources": [getattr(s, "name", str(s)) for s in self.sources],
            "frames": n,
            "duration_s": dur,
            "fps": steps / dur if dur > 0 else None,
            "posed_frames": int(self.pose_valid.sum()) if self.pose_valid is not None else 0,
            "pose_share": float(self.pose_valid.mean()) if self.pose_valid is not None and n else 0.0,
            "points": 0 if self.points is None else int(len(self.points)),
            "tracks": self.tracks is not None,
            "depth_frames": 0 if self.depth_paths is None else sum(p is not None for p in self.depth_paths),
            "depth_scale": self.depth_scale if self.depth_paths is not None else None,
            "cameras": [{"model": c.model, "width": c.width, "height": c.height} for c in self.cameras],
            "counts": dict(self.counts),
            "warnings": list(self.warnings),
        }
