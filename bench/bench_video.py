"""Video reading speed: slife.lives sampling a 720p H.264 video vs bare PyAV decoding of the same file.

Run: `.venv/bin/python bench/bench_video.py [--seconds 120]` (writes bench/out/bench_720p_<s>s.mp4 once, reused).
Prints a markdown table: frames/s of (a) bare PyAV decoding (threaded, no conversion), (b) the same plus resizing
to 455x256 RGB (in RGB, and in YUV then converted), (c) slife reading every frame resized to short side 256 and handed out as RGB arrays, (d) slife
sampling 2 fps (seeking between keyframes). (a)-(c) alternate on 10 s segments of the clip so that a varying
machine load hits them alike. Goal: (c) / (a) >= 0.8.
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

    from slife.io import atomic_file

    rng = np.random.default_rng(0)
    W, H = size
    tex = rng.integers(0, 256, (H // 4 + 64, W // 4 + 64 * 4, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 4, axis=0), 4, axis=1)  # (H+256, W+1024, 3) blocky texture
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, keep_suffix=True) as tmp, av.open(str(tmp), "w") as c:
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


def bare_pyav(path: Path, t0: float, t1: float, size: tuple[int, int] | None = None,
              args_direct_rgb: bool = False) -> tuple[int, float]:
    """Bare PyAV: seek to t0, decode (threaded) the frames with t0 <= t < t1; optionally resize to RGB `size`."""
    import av
    from av.video.reformatter import VideoReformatter

    start = time.perf_counter()
    n = 0
    r, rgb = VideoReformatter(), VideoReformatter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb = float(s.time_base)
        if t0 > 0:
            c.seek(int(t0 / tb), stream=s, backward=True, any_frame=False)
        for f in c.decode(s):
            t = f.pts * tb
            if t >= t1:
                break
            if t < t0:
                continue
            if size is not None:
                if args_direct_rgb:  # area-resize straight to RGB
                    r.reformat(f, width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
                else:  # area-resize in YUV 4:2:0, then convert the small frame (what slife does)
                    rgb.reformat(r.reformat(f, width=size[0], height=size[1], interpolation="AREA"),
                                 format="rgb24").to_ndarray()
            n += 1
    return n, time.perf_counter() - start


def slife_read(life, ids: np.ndarray, short_side: int = 256) -> tuple[int, float]:
    """slife: hand out the frames `ids` of the life resized to `short_side` as RGB arrays."""
    start = time.perf_counter()
    n = 0
    for _, rgb in life.iter_frames(ids, short_side=short_side):
        assert rgb.shape[0] == short_side
        n += 1
    return n, time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the generated 720p clip")
    ap.add_argument("--segment", type=float, default=10.0,
                    help="readers alternate on segments of this many seconds (fair under a varying load)")
    ap.add_argument("--measure", type=float, default=60.0,
                    help="seconds of the clip that are read (from its start; keeps the run under ~3 min)")
    args = ap.parse_args(argv)
    measure = min(args.measure, args.seconds)
    path = Path(__file__).parent / "out" / f"bench_720p_{int(args.seconds)}s.mp4"
    if not path.exists():
        t0 = time.perf_counter()
        make_video(path, args.seconds)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    from slife.lives import read_life
    from slife.lives.life import resized_size

    t0 = time.perf_counter()
    life = read_life(path)
    probe = time.perf_counter() - t0
    vs = life.sources[0]
    size = resized_size(vs.width, vs.height, 256)
    tot = {"bare": [0, 0.0], "bare_resize": [0, 0.0], "bare_resize_rgb": [0, 0.0], "slife": [0, 0.0]}
    for a in np.arange(0.0, measure, args.segment):
        b = a + args.segment
        for key, fn in (("bare", lambda: bare_pyav(path, a, b)), ("slife", lambda: slife_read(
                life, np.flatnonzero((life.t >= a - 1e-9) & (life.t < b - 1e-9)))),
                        ("bare_resize", lambda: bare_pyav(path, a, b, size)),
                        ("bare_resize_rgb", lambda: bare_pyav(path, a, b, size, args_direct_rgb=True))):
            n, s = fn()
            tot[key][0] += n
            tot[key][1] += s
    sampled = life.select(np.flatnonzero(life.t < measure - 1e-9)).sample(2.0)
    n2, s2 = slife_read(sampled, np.arange(len(sampled)))
    st2 = sampled.sources[0].stats
    n0, s0 = tot["bare"]
    rows = [
        ("bare PyAV decode (threaded, no conversion)", n0, s0, ""),
        (f"bare PyAV decode + area resize in RGB to {size[0]}x{size[1]}", *tot["bare_resize_rgb"], "reused swscale context"),
        (f"bare PyAV decode + area resize in YUV, then RGB", *tot["bare_resize"], "slife's method"),
        ("slife full rate, short side 256", *tot["slife"], f"+ probe {probe:.2f} s (demux, once)"),
        ("slife 2 fps, short side 256", n2, s2, f"{st2['seeks']} seeks, {st2['decoded']} frames decoded"),
    ]
    print(f"\n720p H.264 clip of {args.seconds:g} s at 30 fps ({len(life)} frames, GOP 60, 2 B-frames), first "
          f"{measure:g} s read; readers alternate on {args.segment:g} s segments\n")
    print("| reader | frames out | wall s | frames/s | throughput vs bare decode | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name, n, s, note in rows:
        print(f"| {name} | {n} | {s:.2f} | {n / s:.1f} | {(n / s) / (n0 / s0):.2f} | {note} |")
    n1, s1 = tot["slife"]
    print(f"\nslife full rate / bare decode throughput: {(n1 / s1) / (n0 / s0):.2f} (goal >= 0.8)")
    print(f"slife 2 fps: {n2} frames in {s2:.2f} s, {s1 / s2:.2f}x less time than all {n1} frames")


if __name__ == "__main__":
    main()
