"""Plain videos as a life: one frame source per video file, decoded with PyAV; no poses, no geometry.

Reads a video file (*.mp4, *.mov, *.mkv, *.avi, *.webm) or a folder of them (sorted by name, not recursive).
Timestamps are the real presentation timestamps (pts x time_base, seconds), read by demuxing packets
without decoding; `frame_index` is the presentation order (0 = first frame shown). Each video is its own
clock (there is no common clock between plain videos).
Videos that cannot be read are all named in one error, or with the reader option `skip_unreadable` left out
and counted (`videos_skipped`). Returns a `Life` whose sources are `VideoSource`s; `VideoSource.read` decodes only the asked frames
(threaded, seeking to the keyframe before a wanted frame when that is ahead of the decoder) and can resize
to a stored short side on the way out. Entry points: `detect`, `read`, `open_video` (used by the folder,
EPIC-Fields and Aria readers). Sampling at an fps is `Life.sample`; pixels for pairs are taken by
`pairmine/ingest.py`.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.life import Life, life_name, resized_size

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")


def list_videos(path: Path) -> list[Path]:
    """The video files at `path`: itself if it is one, else the videos directly inside the folder, by name."""
    path = Path(path)
    if path.is_file():
        return [path] if _is_video(path) else []
    if path.is_dir():
        return sorted(p for p in path.iterdir() if _is_video(p))
    return []


@dataclass
class VideoSource:
    """A frame source backed by one video file (see `FrameSource` in life.py)."""

    name: str  # short name, unique within the life (the file stem)
    path: Path  # the video file
    pts: np.ndarray  # (F,) int64 presentation timestamps in `time_base` units, sorted (frame_index order)
    keyframe: np.ndarray  # (F,) bool: frame i (presentation order) is a keyframe (a seek target)
    time_base: float  # seconds per pts tick
    width: int  # displayed frame width in pixels (after `rotation`)
    height: int  # displayed frame height in pixels (after `rotation`)
    fps: float | None = None  # the container's average frame rate, if it states one
    codec: str = ""  # codec name, e.g. 'h264'
    stats: dict = field(default_factory=dict)  # frames asked / yielded / seeks / decode errors (last read)
    dropped: dict = field(default_factory=dict)  # packets left out when probing: {"duplicate_pts": n, ...}
    rotation: int = 0  # display rotation in degrees counterclockwise (phone videos: 90, -90, 180); applied on read

    @property
    def t(self) -> np.ndarray:
        """(F,) float64 presentation time of each frame in seconds."""
        return self.pts.astype(np.float64) * self.time_base

    def __len__(self) -> int:
        return len(self.pts)

    def read(self, frame_indices: Sequence[int], short_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame_index, RGB uint8 (H, W, 3)) for the asked frames, in increasing frame_index.

        Only the asked frames are converted; frames between them are decoded but not converted, and when the
        keyframe before the next asked frame lies ahead of the decoder the reader seeks to it instead.
        `short_side` resizes (swscale area filter, in the decoded pixel format, then to RGB) so that
        min(H, W) == short_side. Frames that fail to decode are skipped (counted in `stats['decode_errors']`).
        """
        import av
        import av.video.reformatter

        want = np.unique(np.asarray(list(frame_indices), dtype=np.int64))
        want = want[(want >= 0) & (want < len(self.pts))]
        self.stats = {"asked": int(len(want)), "yielded": 0, "seeks": 0, "decode_errors": 0, "decoded": 0}
        if len(want) == 0:
            return
        size = None if short_side is None else resized_size(self.width, self.height, short_side)
        index_of = {int(p): i for i, p in enumerate(self.pts)}
        kf = np.flatnonzero(self.keyframe)
        if len(kf) == 0 or kf[0] != 0:
            kf = np.concatenate([[0], kf])
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise SlifeError(f"{self.path}: cannot open video ({e})") from None
        with container, ThreadPoolExecutor(1) as pool:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # reformatters live for the whole read: each keeps its swscale context (filter set-up is costly)
            scaler = av.video.reformatter.VideoReformatter()
            to_rgb = av.video.reformatter.VideoReformatter()

            quarter = (self.rotation // 90) % 4  # counterclockwise quarter turns to display the frame upright
            coded = size if size is None or quarter % 2 == 0 else (size[1], size[0])  # resize before rotating

            def convert(frame):  # runs on the pool's one thread while the decoder goes on (swscale drops the GIL)
                if coded is not None and (frame.width, frame.height) != coded:
                    # area-resize in the decoder's pixel format (4:2:0: half the samples of RGB), then convert
                    # the small frame: 4x cheaper than resizing in RGB, and the chroma it drops is what a 4:2:0
                    # JPEG of the stored frame drops anyway (mean 1.7 grey levels on a photo)
                    frame = scaler.reformat(frame, width=coded[0], height=coded[1], interpolation="AREA")
                rgb = to_rgb.reformat(frame, format="rgb24").to_ndarray()  # (H, W, 3) uint8 as coded
                return np.ascontiguousarray(np.rot90(rgb, quarter)) if quarter else rgb

            pending: deque = deque()  # (frame_index, future) in frame order

            def ready(block: bool):
                while pending and (block or len(pending) > 4 or pending[0][1].done()):
                    idx, fut = pending.popleft()
                    self.stats["yielded"] += 1
                    yield idx, fut.result()

            it = None
            pos = -1  # presentation index the decoder has reached
            ti = errors = 0
            while ti < len(want):
                target = int(want[ti])
                k = int(kf[np.searchsorted(kf, target, side="right") - 1])  # keyframe at or before target
                if it is None or k > pos + 1:  # (k == pos + 1: the keyframe is next anyway; a seek would only flush)
                    if k > 0 or it is not None:
                        container.seek(int(self.pts[k]), stream=stream, backward=True, any_frame=False)
                        self.stats["seeks"] += 1
                    it = container.decode(stream)
                    pos = max(pos, k)
                try:
                    frame = next(it)
                except StopIteration:
                    break
                except av.error.FFmpegError as e:  # corrupt data: give up this frame, re-seek for the next
                    errors += 1  # the first is a warning, the rest are summed up after the read
                    (log.warning if errors == 1 else log.debug)("%s: decode error near frame %d (%s)",
                                                                self.path, target, e)
                    self.stats["decode_errors"] += 1
                    ti += 1
                    it = None
                    pos = max(pos, target)
                    continue
                self.stats["decoded"] += 1
                idx = index_of.get(frame.pts) if frame.pts is not None else None
                if idx is None:
                    continue
                pos = max(pos, idx)
                if idx < target:
                    continue
                while ti < len(want) and want[ti] < idx:  # asked frames the decoder never produced
                    ti += 1
                if ti < len(want) and want[ti] == idx:
                    pending.append((idx, pool.submit(convert, frame)))
                    yield from ready(block=False)
                    ti += 1
            yield from ready(block=True)
            if errors > 1:
                log.warning("%s: %d decode errors in this read; the frames near them were skipped", self.path, errors)


def open_video(path: Path, name: str | None = None) -> VideoSource:
    """Probe a video file: demux every packet (no decoding) for presentation timestamps and keyframes.

    Raises SlifeError (naming the file) when it cannot be opened, has no video stream or no frames.
    Packets without pts fall back to dts (or are left out); packets with equal pts are kept once: frames are
    identified by pts, so two frames at one time cannot be told apart. Both are counted in `dropped`.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise SlifeError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise SlifeError(f"{path}: cannot open video ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.video:
            raise SlifeError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        pts, key = [], []
        no_pts = 0
        try:
            for pkt in container.demux(stream):
                if pkt.size == 0 or pkt.is_discard:
                    continue
                p = pkt.pts if pkt.pts is not None else pkt.dts
                if p is None:
                    no_pts += 1
                    continue
                pts.append(int(p))
                key.append(bool(pkt.is_keyframe))
        except av.error.FFmpegError as e:
            if not pts:
                raise SlifeError(f"{path}: unreadable video ({type(e).__name__}: {e})") from None
            log.warning("%s: demuxing stopped after %s (%s)", path, plural(len(pts), "packet"), e)
        if not pts:
            raise SlifeError(f"{path}: video has no frames")
        if no_pts:
            log.warning("%s: %s without timestamps ignored", path, plural(no_pts, "packet"))
        pts_a = np.asarray(pts, dtype=np.int64)  # (F,) decode order
        key_a = np.asarray(key, dtype=bool)
        order = np.argsort(pts_a, kind="stable")  # presentation order
        pts_a, key_a = pts_a[order], key_a[order]
        dup = np.concatenate([[False], np.diff(pts_a) == 0])
        if dup.any():
            log.warning("%s: %s at the same timestamp as the previous one; kept once", path, plural(int(dup.sum()), "frame"))
            pts_a, key_a = pts_a[~dup], key_a[~dup]
        dropped = {k: v for k, v in (("packets_without_pts", no_pts), ("duplicate_pts", int(dup.sum()))) if v}
        tb = float(stream.time_base) if stream.time_base else 1.0 / float(stream.average_rate or 30)
        rate = float(stream.average_rate) if stream.average_rate else None
        rotation = _display_rotation(container, stream, path)
        w, h = int(stream.codec_context.width), int(stream.codec_context.height)
        if rotation % 180:
            w, h = h, w
        return VideoSource(
            name=name or path.stem, path=path, pts=pts_a, keyframe=key_a, time_base=tb, width=w, height=h,
            fps=rate, codec=stream.codec_context.name or "", dropped=dropped, rotation=rotation,
        )


def _display_rotation(container, stream, path: Path) -> int:
    """Display rotation (degrees counterclockwise, a multiple of 90) from the first frame's display matrix."""
    import av

    try:
        container.seek(0, stream=stream)
        frame = next(container.decode(stream), None)
    except (av.error.FFmpegError, StopIteration):
        return 0
    angle = int(round(float(getattr(frame, "rotation", 0) or 0)))
    if angle % 90:
        log.warning("%s: display rotation %d degrees is not a multiple of 90; frames are read unrotated", path, angle)
        return 0
    return angle


def detect(path: Path) -> bool:
    """A video file, or a folder holding at least one video file directly."""
    return bool(list_videos(Path(path)))


def read(path: Path, skip_unreadable: bool = False) -> Life:
    """Every video at `path` as one source each; t from pts (seconds), frame_index in presentation order.

    Every video is probed before any error: the ones that cannot be read are all named (one warning each,
    and together in the error). With `skip_unreadable` they are left out instead, counted
    (`videos_skipped`) and listed in the life's warnings; an error still when none can be read.
    """
    path = Path(path)
    videos = list_videos(path)
    if not videos:
        raise SlifeError(f"{path}: no video files (*{', *'.join(VIDEO_SUFFIXES)})")
    sources, src, fidx, ts = [], [], [], []
    names: set[str] = set()
    bad: list[tuple[Path, str]] = []
    for v in videos:
        try:
            vs = open_video(v, name=v.stem if v.stem not in names else v.name)
        except SlifeError as e:
            if len(videos) == 1:
                raise
            bad.append((v, str(e)))
            log.warning("%s", e)
            continue
        names.add(vs.name)
        src.append(np.full(len(vs), len(sources), np.int32))
        sources.append(vs)
        fidx.append(np.arange(len(vs), dtype=np.int64))
        ts.append(vs.t)
    if bad and (not skip_unreadable or not sources):
        listed = ", ".join(v.name for v, _ in bad)
        fix = "; pass -O skip_unreadable=true to skip them" if sources else ""
        raise SlifeError(f"{path}: {len(bad)} of {len(videos)} videos cannot be read: {listed} "
                         f"(first: {bad[0][1]}){fix}")
    counts: dict = {"videos_skipped": len(bad)} if bad else {}
    warnings = [f"{v.name}: skipped, cannot be read ({why})" for v, why in bad]
    for vs in sources:
        for k, v in vs.dropped.items():
            counts[k] = counts.get(k, 0) + v
            warnings.append(f"{vs.path.name}: {plural(v, 'frame')} left out ({k.replace('_', ' ')})")
    meta = {"videos": {vs.name: {"fps": vs.fps, "width": vs.width, "height": vs.height, "codec": vs.codec,
                                 "frames": len(vs)} for vs in sources}}
    return Life(
        name=life_name(path if path.is_dir() else path.with_suffix("")), root=path, format="video",
        sources=sources, source=np.concatenate(src), frame_index=np.concatenate(fidx), t=np.concatenate(ts),
        counts=counts, warnings=warnings, meta=meta,
    )
