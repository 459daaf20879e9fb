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
    "frames": "slife.lives.frames",  # folder of image frames (or of folders of them), no poses
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
    partial = reader("colmap").incomplete_model(path)
    if partial:
        raise SlifeError(partial)
    raise SlifeError(
        f"{path}: not a recognised life layout (expected videos, image frames, a COLMAP model, EPIC-Fields JSON, "
        "Aria MPS, ScanNet, TUM RGB-D or a slife life folder with poses.npz)"
    )


def _typed(path: Path, name: str, param, value):
    """A reader option given as text ('key=value' on the command line) -> the type of the parameter's default."""
    if not isinstance(value, str):
        return value
    default = param.default
    ann = str(param.annotation)
    if isinstance(default, bool) or ann == "bool":
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SlifeError(f"{path}: reader option {name} takes true/false, got {value!r}")
    if isinstance(default, (int, float)) or ann in ("int", "float"):
        try:
            return type(default)(value) if isinstance(default, (int, float)) else float(value)
        except ValueError:
            raise SlifeError(f"{path}: reader option {name} takes a number, got {value!r}") from None
    if "Path" in ann:
        return Path(value)
    return value


def parse_options(items) -> dict[str, str]:
    """['key=value', ...] (the CLI's --reader-option) -> {key: value}; SlifeError on a malformed item."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SlifeError(f"reader option {item!r}: expected KEY=VALUE (e.g. upright=true)")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def reader_options(name: str) -> dict[str, object]:
    """The options the reader `name` takes: {option: default}."""
    import inspect

    params = list(inspect.signature(reader(name).read).parameters.values())[1:]
    return {p.name: p.default for p in params}


def read_life(path: Path | str, format: str | None = None, **options) -> Life:
    """Read any supported life at `path` (format auto-detected unless given).

    `options` go to the reader's `read` (e.g. `upright=True` for Aria, `images_dir=` for COLMAP); values given
    as text (from the command line) are converted to the type of the option's default. A reader that does not
    take an option raises SlifeError naming it and the options it does take.
    """
    import inspect

    path = Path(path)
    name = format or detect_format(path)
    read = reader(name).read
    accepted = inspect.signature(read).parameters
    unknown = [k for k in options if k not in accepted or k == next(iter(accepted))]
    if unknown:
        takes = ", ".join(reader_options(name)) or "none"
        raise SlifeError(f"{path}: the {name} reader takes no option {', '.join(unknown)} (it takes: {takes})")
    return read(path, **{k: _typed(path, k, accepted[k], v) for k, v in options.items()})


__all__ = ["READERS", "Life", "detect_format", "parse_options", "read_life", "reader", "reader_options"]
