"""slife.lives.video: real pts timestamps, presentation order, decoding only asked frames, bad files."""

from pathlib import Path

import numpy as np
import pytest

from lives_scene import make_scene, write_video
from slife.errors import SlifeError
from slife.lives import detect_format, read_life
from slife.lives.video import open_video

DATA = Path(__file__).parents[2] / "../shared/data"


def test_pts_timestamps_equal_encoded(tmp_path):
    sc = make_scene(n=10)
    pts = [0, 40, 100, 130, 250, 260, 400, 433, 500, 610]  # ms, irregular on purpose
    write_video(tmp_path / "a.mp4", [sc.image(i) for i in range(10)], pts=pts, time_base=(1, 1000))
    life = read_life(tmp_path)
    assert life.format == "video" and len(life) == 10
    np.testing.assert_allclose(life.t, np.array(pts) / 1000.0, atol=1e-9)
    np.testing.assert_array_equal(life.frame_index, np.arange(10))
    # frames come back in presentation order with their pixels (B-frames reordered by the codec)
    got = dict(life.iter_frames([0, 4, 9]))
    for i in (0, 4, 9):
        assert np.abs(got[i].astype(int) - sc.image(i).astype(int)).mean() < 6


def test_read_only_asked_frames_with_seeks(tmp_path):
    sc = make_scene(n=24)
    write_video(tmp_path / "v.mp4", [sc.image(i) for i in range(24)])  # keyframe every 4 frames
    vs = open_video(tmp_path / "v.mp4")
    assert vs.keyframe.sum() >= 5
    everything = dict(vs.read(range(24)))
    assert sorted(everything) == list(range(24)) and vs.stats["seeks"] == 0  # sequential: never flush the decoder
    want = [1, 13, 14, 22]
    got = dict(vs.read(want))
    assert sorted(got) == want
    assert vs.stats["seeks"] >= 2 and vs.stats["decoded"] < 24
    for i in want:
        np.testing.assert_array_equal(got[i], everything[i])
    small = dict(vs.read([5], short_side=16))
    assert small[5].shape == (16, 21, 3)


def test_sample_fps(tmp_path):
    sc = make_scene(n=20)
    write_video(tmp_path / "v.mp4", [sc.image(i) for i in range(20)], rate=10)
    life = read_life(tmp_path / "v.mp4")
    s = life.sample(2.0)
    np.testing.assert_allclose(np.diff(s.t), 0.5, atol=1e-6)
    assert len(s) == 4


def test_real_videos():
    d = DATA / "videos"
    if not d.is_dir():
        pytest.skip("shared data videos/ absent")
    life = read_life(d)
    names = [s.name for s in life.sources]
    assert names == sorted(names) and {"bikes", "carphone_pristine"} <= set(names)  # more clips may be added
    b = names.index("bikes")
    bikes = life.sources[b]
    assert len(bikes) == 250 and bikes.fps == 25
    np.testing.assert_allclose(bikes.t, np.arange(250) / 25.0, atol=1e-9)
    assert len(life.sources[names.index("carphone_pristine")]) == 120
    ids = np.flatnonzero(life.source == b)[[10, 200]]
    got = dict(life.iter_frames(ids))
    assert got[ids[0]].shape == (272, 640, 3)


def test_bad_videos(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(SlifeError, match="broken.mp4"):
        read_life(tmp_path)
    assert detect_format(tmp_path) == "video"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlifeError, match="not a recognised life layout"):
        read_life(empty)
    with pytest.raises(SlifeError, match="no such file"):
        read_life(tmp_path / "missing.mp4")


def test_every_unreadable_video_named_in_one_run_or_skipped(tmp_path):
    sc = make_scene(n=6)
    for name in ("a.mp4", "c.mp4"):
        write_video(tmp_path / name, [sc.image(i) for i in range(6)])
    (tmp_path / "b.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (tmp_path / "d.mov").write_bytes(b"")
    (tmp_path / "e.mkv").write_bytes((tmp_path / "a.mp4").read_bytes()[:200])
    with pytest.raises(SlifeError, match=r"3 of 5 videos cannot be read: b.mp4, d.mov, e.mkv \(first: .*b.mp4: .*"
                                         r"pass -O skip_unreadable=true to skip them"):
        read_life(tmp_path)
    life = read_life(tmp_path, skip_unreadable="true")  # as the command line gives it
    assert [s.name for s in life.sources] == ["a", "c"] and len(life) == 12
    assert life.counts == {"videos_skipped": 3}
    assert [w.split(":")[0] for w in life.warnings] == ["b.mp4", "d.mov", "e.mkv"]
    assert all("skipped, cannot be read" in w for w in life.warnings)
    np.testing.assert_array_equal(life.source, np.repeat([0, 1], 6))
    for name in ("a.mp4", "c.mp4"):
        (tmp_path / name).unlink()
    with pytest.raises(SlifeError, match=r"3 of 3 videos cannot be read: b.mp4, d.mov, e.mkv") as e:
        read_life(tmp_path, skip_unreadable=True)  # nothing left to skip to
    assert "skip_unreadable" not in str(e.value)


def test_truncated_video(tmp_path):
    sc = make_scene(n=12)
    write_video(tmp_path / "full.mp4", [sc.image(i) for i in range(12)])
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(SlifeError, match="cut.mp4"):
        read_life(tmp_path / "cut")


def test_display_rotation_is_applied(tmp_path):
    """A phone video with a 90-degree display matrix reads upright, at the displayed size."""
    import av

    from slife.lives import read_life

    img = np.zeros((48, 64, 3), np.uint8)
    img[:12, :24] = 255  # a bright block in the coded frame's top-left corner
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(90)
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    life = read_life(tmp_path)
    src = life.sources[0]
    assert src.rotation == 90 and (src.width, src.height) == (48, 64)
    (_, rgb), = list(life.iter_frames([0]))
    assert rgb.shape == (64, 48, 3)
    expect = np.rot90(img, 1)  # displayed = coded turned 90 degrees counterclockwise: block at bottom-left
    assert np.abs(rgb.astype(int) - expect).mean() < 12
    (_, small), = list(life.iter_frames([1], short_side=24))
    assert small.shape == (32, 24, 3)
