"""Atomic file writes: the one way slife writes a file that a user or a resumed run relies on.

A file is written under a temporary name in its own folder (`.NAME.tmp<host>-<pid>`, or
`.STEM.tmp<host>-<pid>.SUFFIX` for writers that pick the format from the suffix: matplotlib, Open3D) and
renamed over the target with `os.replace` once complete (atomic on POSIX), so a reader never sees half a
file and a killed writer leaves only a temporary, which starts with a dot and holds `.tmp`. The host and
pid make the temporary unique per process, also across machines sharing a folder (several mining nodes).
Entry points: `atomic_file(path)` (a context manager yielding the temporary path, for writers that need a
path or a file of their own: tar, torch.save, PyAV, matplotlib, Open3D), `atomic_write_bytes`,
`atomic_write_text`, `atomic_write_json`, and `tmp_suffix`. It sits at the package level, below every
layer (lives <- pairmine <- train <- eval <- demo <- cli), because every layer writes files; what a file
holds is its owner's business, and so is removing the temporaries a killed writer of that owner left.
"""

from __future__ import annotations

import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def tmp_suffix() -> str:
    """Unique per process, also across machines sharing the folder (several nodes): host and pid."""
    return f"{re.sub(r'[^A-Za-z0-9-]', '', socket.gethostname())[:32]}-{os.getpid()}"


def tmp_path(path: Path | str, keep_suffix: bool = False) -> Path:
    """The temporary name beside `path`: `.NAME.tmp<host>-<pid>`, or `.STEM.tmp<host>-<pid>.SUFFIX` with
    `keep_suffix` (for writers that choose the file format by its suffix)."""
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{tmp_suffix()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp{tmp_suffix()}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path | str, keep_suffix: bool = False, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an error the file written there is
    renamed to `path` (after an fsync unless `durable=False`, for many small files that can be made again);
    on an error the temporary is removed and the target is left as it was."""
    path = Path(path)
    tmp = tmp_path(path, keep_suffix)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, durable=durable) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, obj, indent: int | None = 1, **dumps_kwargs) -> None:
    """Write `json.dumps(obj, indent=indent, **dumps_kwargs)` to `path` atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent, **dumps_kwargs).encode())


__all__ = ["atomic_file", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "tmp_path", "tmp_suffix"]
