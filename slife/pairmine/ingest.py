"""Ingest: read a life and sample its frames into the frame table that every strategy works on.

Reads any life layout through `slife.lives.read_life` (or takes a `Life` already in memory) and keeps
about `fps` frames per second of each video (`Life.sample`). Returns the sampled `Life` plus
`decode_rank` (N,) int64: each frame's place in the order `Life.iter_frames` decodes (source, then
frame index), which fixes the deterministic pair order. Entry point: `ingest(life_or_path, fps, reader, reader_options)`.
Visibility (what each frame sees) is left to `visibility.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slife.lives.life import Life

log = logging.getLogger(__name__)


@dataclass
class FrameTable:
    """The sampled life and the per-frame facts the miner needs."""

    life: Life  # sampled life (frame i of the table = frame i of this life)
    decode_rank: np.ndarray  # (N,) int64 position in decode order (source, frame_index)
    frames_total: int  # frames in the life before sampling

    def __len__(self) -> int:
        return len(self.life)

    def frame_file(self, i: int) -> Path | None:
        """The image file of frame i when its source is one file per frame (`ImageFiles`), else None."""
        s = int(self.life.source[i])
        fi = int(self.life.frame_index[i])
        if 0 <= s < len(self.life.sources):
            files = getattr(self.life.sources[s], "files", None)
            if files is not None and 0 <= fi < len(files):
                return Path(files[fi])
        return None

    def frame_name(self, i: int) -> str:
        """A stable name for frame i: its image file name where there is one, else source/frame_index."""
        s = int(self.life.source[i])
        fi = int(self.life.frame_index[i])
        if 0 <= s < len(self.life.sources):
            src = self.life.sources[s]
            f = self.frame_file(i)
            if f is not None:
                try:
                    rel = str(f.relative_to(src.path))
                except ValueError:
                    rel = f.name
                return rel if len(self.life.sources) == 1 else f"{src.name}/{rel}"  # COLMAP-style image name
            return f"{src.name}/{fi:06d}"
        return f"frame/{fi:06d}"


def decode_order(life: Life) -> np.ndarray:
    """(N,) int64 rank of each frame in `Life.iter_frames` order: by source, then frame index, then index."""
    n = len(life)
    order = np.lexsort((np.arange(n), life.frame_index, life.source))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def ingest(life_or_path: Life | Path | str, fps: float, reader: str | None = None,
           reader_options: tuple[tuple[str, str], ...] = ()) -> FrameTable:
    """Read (if given a path; with the `reader` format and options if given) and sample the life at `fps`
    frames per second of each video."""
    if isinstance(life_or_path, Life):
        life = life_or_path
    else:
        from slife.lives import read_life

        life = read_life(Path(life_or_path), reader, **dict(reader_options))
    n0 = len(life)
    sampled = life.sample(fps) if fps else life
    log.info("%s: %d frames, %s", life.name, n0, f"{len(sampled)} sampled at {fps:g} fps" if fps else
             f"all {len(sampled)} used (--fps 0)")
    return FrameTable(sampled, decode_order(sampled), n0)
