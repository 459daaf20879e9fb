"""Life readers: one module per source format, each with `detect(path) -> bool` and `read(path) -> Life`.

`READERS` is the one registry (name -> module path, imported on first use so that `slife --help`
stays fast); `read_life(path)` tries them in order and returns the first match's `Life`.
The `Life` model is in `life.py`; camera maths in `geometry.py`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from slife.errors import SlifeError
from slife.lives.life import Life

# detection order matters: specific layouts first, a bare folder of videos last
READERS: dict[str, str] = {
    "folder": "slife.lives.folder",  # slife life folder (poses.npz; what `slife synth` writes)
    "aria_mps": "slife.lives.aria_mps",  # Project Aria MPS (closed_loop_trajectory.csv, ...)
    "epic_fields": "slife.lives.epic_fields",  # EPIC-Fields JSON
    "scannet": "slife.lives.scannet",  # ScanNet export (color/, depth/, pose/, intrinsic/)
    "tum": "slife.lives.tum",  # TUM RGB-D (rgb.txt, groundtruth.txt)
    "colmap": "slife.lives.colmap",  # COLMAP model (cameras/images/points3D .bin or .txt)
    "video": "slife.lives.video",  # plain folder of videos (or one video file)
}


def reader(name: str):
    """The reader module registered under `name`."""
    if name not in READERS:
        raise SlifeError(f"unknown life format {name!r}; known: {', '.join(READERS)}")
    return importlib.import_module(READERS[name])


def detect_format(path: Path) -> str:
    """Name of the first reader that recognises `path`; SlifeError if none does."""
    path = Path(path)
    if not path.exists():
        raise SlifeError(f"{path}: no such file or folder")
    for name in READERS:
        if reader(name).detect(path):
            return name
    raise SlifeError(
        f"{path}: not a recognised life layout (expected videos, a COLMAP model, EPIC-Fields JSON, "
        "Aria MPS, ScanNet, TUM RGB-D or a slife life folder with poses.npz)"
    )


def read_life(path: Path | str, format: str | None = None, **options) -> Life:
    """Read any supported life at `path` (format auto-detected unless given).

    `options` go to the reader's `read` (e.g. `upright=True` for Aria, `images_dir=` for COLMAP); a reader
    that does not take one raises SlifeError naming it.
    """
    import inspect

    path = Path(path)
    name = format or detect_format(path)
    read = reader(name).read
    accepted = inspect.signature(read).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise SlifeError(f"{path}: the {name} reader takes no option {', '.join(unknown)}")
    return read(path, **options)


__all__ = ["READERS", "Life", "detect_format", "read_life", "reader"]
