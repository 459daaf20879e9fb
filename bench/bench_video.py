"""Video reading speed: slife.lives sampling a 720p H.264 video vs bare PyAV decoding of the same file.

Run: `.venv/bin/python bench/bench_video.py [--seconds 120]` (writes bench/out/bench_720p_<s>s.mp4 once, reused).
Prints a markdown table: frames/s of (a) bare PyAV decoding (threaded, no conversion), (b) slife reading every
frame resized to short side 256 and handed out as RGB arrays, (c) slife sampling 2 fps (seeks between
keyframes), with the ratio of (b) to (a): the goal is >= 0.8.
"""

from __future__ import annotations

import argparse
import fractions
import sys
import time
from pathlib import Path

import numpy as np


def make_video(path: Path, seconds: float, fps: int = 30, size=(1280, 720), gop: int = 60) -> None:
    """A moving textured scene (panning random texture + moving blocks), H.264 yuv420p, B-frames on."""
    import av

    rng = np.random.default_rng(0)
    W, H = size
    tex = rng.integers(0, 256, (H // 4 + 64, W // 4 + 64 * 4, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 4, axis=0), 4, axis=1)  # (H+256, W+1024, 3) blocky texture
    tmp = path.with_suffix(".tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"preset": "veryfast", "crf": "23", "g": str(gop), "bf": "2"}
        n = int(seconds * fps)
        for k in range(n):
            x = int(400 + 300 * np.sin(k / 90)) + (k % 7)
            y = int(120 + 100 * np.sin(k / 55))
            img = np.ascontiguousarray(tex[y:y + H, x:x + W])
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = k
            f.time_base = fractions.Fraction(1, fps)
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    tmp.replace(path)


def bare_pyav(path: Path) -> tuple[int, float]:
    import av

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n, time.perf_counter() - t0


def bare_pyav_resized(path: Path, size: tuple[int, int]) -> tuple[int, float]:
    import av

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            f.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
            n += 1
    return n, time.perf_counter() - t0


def slife_read(path: Path, fps: float | None, short_side: int = 256) -> tuple[int, float, float, dict]:
    from slife.lives import read_life

    t0 = time.perf_counter()
    life = read_life(path)
    t_probe = time.perf_counter() - t0
    life = life.sample(fps)
    n = 0
    for _, rgb in life.iter_frames(np.arange(len(life)), short_side=short_side):
        assert rgb.shape[0] == short_side
        n += 1
    return n, time.perf_counter() - t0, t_probe, dict(life.sources[0].stats)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the generated 720p clip")
    args = ap.parse_args(argv)
    path = Path(__file__).parent / "out" / f"bench_720p_{int(args.seconds)}s.mp4"
    if not path.exists():
        t0 = time.perf_counter()
        make_video(path, args.seconds)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    from slife.lives.life import resized_size

    n0, s0 = bare_pyav(path)
    nr, sr = bare_pyav_resized(path, resized_size(1280, 720, 256))
    n1, s1, p1, st1 = slife_read(path, None)
    n2, s2, p2, st2 = slife_read(path, 2.0)
    rows = [
        ("bare PyAV decode (threaded, no conversion)", n0, s0, ""),
        ("bare PyAV decode + resize to 455x256 RGB", nr, sr, ""),
        ("slife full rate, short side 256", n1, s1, f"probe {p1:.2f} s"),
        ("slife 2 fps, short side 256", n2, s2, f"probe {p2:.2f} s, {st2['seeks']} seeks, {st2['decoded']} decoded"),
    ]
    print(f"\n720p H.264 clip, {args.seconds:g} s at 30 fps ({n0} frames), GOP 60, B-frames 2; 2 shared cores\n")
    print("| reader | frames out | wall s | frames/s | vs bare decode | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name, n, s, note in rows:
        print(f"| {name} | {n} | {s:.2f} | {n / s:.1f} | {s0 / s:.2f}x time-ratio | {note} |")
    print(f"\nslife full rate / bare decode throughput: {(n1 / s1) / (n0 / s0):.2f} (goal >= 0.8)")
    print(f"slife 2 fps: {n2} frames in {s2:.2f} s = {s1 / s2:.2f}x faster than reading everything")


if __name__ == "__main__":
    main()
