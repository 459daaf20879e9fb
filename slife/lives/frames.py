"""A folder of image frames as a life: one source per folder of images; times from the names or from `fps`.

Reads a folder holding image files (`IMAGE_SUFFIXES`: *.jpg, *.png, ...), e.g. `frames/000123.jpg` as
`ffmpeg -i walk.mp4 frames/%06d.jpg` writes them, or named by their timestamp in seconds
(`1311868169.163498.png`); or a folder whose subfolders hold them (one source each, as a folder of videos
has one per video: `day1/`, `day2/`). Nothing deeper is read; hidden files are ignored.
Times (seconds, one clock per folder): names that are all timestamps (digits, a decimal point, digits) give
`t` directly; otherwise the reader option `fps` is needed: `t` = the number at the end of each name / fps
(`frame_000123.jpg` -> 123 / fps; keeps the gaps of frames dropped when extracting), or the rank in the
folder / fps when some name has no number. Without `fps` such names are an error that asks for it: frame
numbers alone carry no clock, and a guessed rate would silently stretch every temporal gap.
Checks, as the video reader's probe: every image's header is read (PIL, no decoding); files that cannot be
read are left out, counted (`frames_unreadable`) and the first is named; frames at the same time as the
previous one are kept once (`duplicate_times`); images of another size than the folder's first are
counted (`frames_other_size`); a subfolder without a readable image is an error naming each such
subfolder, or with the reader option `skip_unreadable` left out and its images counted as unreadable
(as the video reader does with videos); nothing readable at all is an error. No poses, no geometry.
Returns a `Life` whose sources are `ImageFiles` (frame_index = rank by time). Entry points: `detect`, `read`.
Sampling at an fps is `Life.sample`; decoding is `ImageFiles.read`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from slife.errors import SlifeError, plural
from slife.lives.life import IMAGE_SUFFIXES, ImageFiles, Life, life_name

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"\d+\.\d+")  # a name that is a time in seconds, e.g. 1311868169.163498
_NUMBER = re.compile(r"(\d+)$")  # the frame number at the end of a name, e.g. frame_000123


def _images(d: Path) -> list[str]:
    """Names of the image files directly in folder `d`, sorted (hidden files left out)."""
    try:
        with os.scandir(d) as it:
            return sorted(e.name for e in it if e.name.lower().endswith(IMAGE_SUFFIXES)
                          and not e.name.startswith(".") and e.is_file())
    except OSError:
        return []


def folders(path: Path) -> list[tuple[str, Path, list[str]]]:
    """(source name, folder, image names) for `path` itself when it holds images, else for each subfolder that does."""
    path = Path(path)
    if not path.is_dir():
        return []
    direct = _images(path)
    if direct:
        return [(path.name, path, direct)]
    subs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    return [(d.name, d, names) for d in subs if (names := _images(d))]


def detect(path: Path) -> bool:
    """A folder holding image files, or whose subfolders do."""
    return bool(folders(Path(path)))


def _times(folder: Path, names: list[str], fps: float) -> tuple[np.ndarray, str]:
    """(t (F,) seconds for each name, how the clock was made)."""
    stems = [Path(n).stem for n in names]
    if all(_TIMESTAMP.fullmatch(s) for s in stems):
        if fps:
            log.warning("%s: image names are timestamps; the reader option fps=%g is not used", folder, fps)
        return np.array([float(s) for s in stems], np.float64), "timestamps in image names"
    if not fps:
        raise SlifeError(f"{folder}: image names are not timestamps in seconds (e.g. {names[0]}); give the frame "
                         "rate the frames were taken at with -O fps=N (t = the number in the name / N)")
    nums = [_NUMBER.search(s) for s in stems]
    if all(nums):
        return np.array([int(m.group(1)) for m in nums], np.float64) / fps, f"frame number in image names / {fps:g} fps"
    return np.arange(len(names), dtype=np.float64) / fps, f"rank in the folder / {fps:g} fps"


def _probe(files: list[Path]) -> list[tuple[int, int] | None]:
    """(W, H) from each file's header (no decoding), None where it cannot be read."""
    from PIL import Image

    out: list[tuple[int, int] | None] = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(im.size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            out.append(None)
    return out


def read(path: Path, fps: float = 0.0, skip_unreadable: bool = False) -> Life:
    """Read a folder of image frames (see the module docstring); `fps` turns frame numbers into seconds.

    A subfolder none of whose images can be read is, as an unreadable video is to the video reader, an
    error naming every such subfolder; with `skip_unreadable` it is left out instead, its images counted
    (`frames_unreadable`) and the folder named in a warning. An error still when nothing can be read."""
    path = Path(path)
    if fps < 0:
        raise SlifeError(f"{path}: reader option fps must be > 0, got {fps}")
    found = folders(path)
    if not found:
        raise SlifeError(f"{path}: no image files (*{', *'.join(IMAGE_SUFFIXES)}) in it or in its subfolders")
    sources, src, fidx, ts = [], [], [], []
    counts: dict = {}
    warnings: list[str] = []
    videos: dict = {}
    clocks = set()
    dead: list[tuple[str, list[Path]]] = []  # (subfolder, its images) where no image can be read
    for name, folder, names in found:
        t, clock = _times(folder, names, fps)
        clocks.add(clock)
        order = np.lexsort((np.arange(len(names)), t))  # by time, then by name
        files = [folder / names[k] for k in order]
        t = t[order]
        sizes = _probe(files)
        ok = np.array([s is not None for s in sizes])
        if not ok.any():
            if len(found) == 1:
                raise SlifeError(f"{folder}: no image can be read ({plural(len(files), 'image')}, first: "
                                 f"{files[0].name})")
            dead.append((name, files))
            continue
        if not ok.all():
            bad = [f for f, good in zip(files, ok) if not good]
            counts["frames_unreadable"] = counts.get("frames_unreadable", 0) + len(bad)
            warnings.append(f"{folder}: {len(bad)} of {len(files)} images cannot be read, left out (first: {bad[0]})")
        readable = np.flatnonzero(ok)
        dup = np.zeros(len(t), bool)
        dup[readable[1:]] = np.diff(t[readable]) == 0  # the same time as the previous readable frame
        if dup.any():
            counts["duplicate_times"] = counts.get("duplicate_times", 0) + int(dup.sum())
            warnings.append(f"{folder}: {plural(int(dup.sum()), 'image')} at the same time as the previous one; kept once "
                            f"(first: {files[int(np.flatnonzero(dup)[0])].name})")
        keep = ok & ~dup
        files = [f for f, k in zip(files, keep) if k]
        sizes = [s for s, k in zip(sizes, keep) if k]
        t = t[keep]
        w, h = sizes[0]
        other = sum(s != (w, h) for s in sizes)
        if other:
            counts["frames_other_size"] = counts.get("frames_other_size", 0) + other
            warnings.append(f"{folder}: {other} of {len(files)} images are not {w}x{h} like the first")
        dt = np.diff(t)
        rate = 1.0 / float(np.median(dt)) if len(dt) and np.median(dt) > 0 else (fps or None)
        videos[name] = {"fps": rate, "width": w, "height": h,
                        "codec": Counter(f.suffix.lower().lstrip(".") for f in files).most_common(1)[0][0],
                        "frames": len(files)}
        src.append(np.full(len(files), len(sources), np.int32))
        fidx.append(np.arange(len(files), dtype=np.int64))
        ts.append(t)
        sources.append(ImageFiles(name=re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "frames", path=folder,
                                  files=files))
    if dead and (not skip_unreadable or not sources):
        fix = "; pass -O skip_unreadable=true to skip them" if sources else ""
        raise SlifeError(f"{path}: in {len(dead)} of {len(found)} image folders no image can be read: "
                         f"{', '.join(d for d, _ in dead)} (first: {dead[0][1][0]}){fix}")
    for name, files in dead:
        counts["frames_unreadable"] = counts.get("frames_unreadable", 0) + len(files)
        warnings.append(f"{files[0].parent}: skipped, no image can be read ({plural(len(files), 'image')}, first: "
                        f"{files[0].name})")
    for w in warnings:  # each names its folder (the life folder itself, or a subfolder of it)
        log.warning("%s", w)
    return Life(
        name=life_name(path), root=path, format="frames", sources=sources, source=np.concatenate(src),
        frame_index=np.concatenate(fidx), t=np.concatenate(ts), counts=counts, warnings=warnings,
        meta={"videos": videos, "clock": ", ".join(sorted(clocks))},
    )
