"""Write RGB frames to an H.264 MP4 with exact presentation timestamps (PyAV / libx264).

Reads RGB uint8 (H, W, 3) frames and integer pts in units of 1 / rate (rate = the nominal fps as a
fraction); writes one `.mp4` (yuv420p, so W and H must be even). Frame i of the file is the i-th frame
written; its decoded time is pts * time_base, which `slife.synth.run` also stores as `t` in poses.npz.
Entry point: `VideoWriter` (a context manager). Reading videos back is left to `slife.lives.video`.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_rate(fps: float) -> Fraction:
    """The nominal frame rate as a fraction (e.g. 29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """H.264 writer: `write(rgb, pts)` for each frame in presentation order, then `close()`."""

    def __init__(self, path: Path | str, width: int, height: int, fps: float, crf: int = 18, preset: str = "veryfast"):
        import av

        if width % 2 or height % 2:
            raise ValueError(f"H.264 (yuv420p) needs an even width and height, got {width}x{height}")
        self.av = av
        self.rate = frame_rate(fps)
        self.time_base = 1 / self.rate
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height = int(width), int(height)
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = self.time_base
        # single thread: deterministic bytes and no fight for the 2 cores
        self.stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1"}
        self.frames = 0
        self.seconds = 0.0  # time spent encoding (for benchmarks)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        t0 = time.perf_counter()
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, np.uint8), format="rgb24")
        frame.pts = int(pts)
        frame.time_base = self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        t0 = time.perf_counter()
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.seconds += time.perf_counter() - t0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
