"""slife.lives.frames: a folder of image frames; times from timestamp names or frame numbers / fps; checks."""

import numpy as np
import pytest

from lives_scene import make_scene, write_png, write_video
from slife.errors import SlifeError
from slife.lives import detect_format, read_life


def test_numbered_frames_need_fps_and_keep_their_gaps(tmp_path):
    sc = make_scene(n=6)
    d = tmp_path / "walk" / "frames"
    nums = [0, 1, 2, 4, 10, 11]  # frames 3 and 5-9 were not extracted: the gaps stay in t
    for i, k in enumerate(nums):
        write_png(d / f"{k:06d}.png", sc.image(i))
    assert detect_format(tmp_path / "walk") == "frames" and detect_format(d) == "frames"
    with pytest.raises(SlifeError, match=r"frames: image names are not timestamps.*-O fps=N"):
        read_life(d)
    life = read_life(d, fps="2")  # as the command line gives it
    assert life.format == "frames" and [s.name for s in life.sources] == ["frames"]
    np.testing.assert_allclose(life.t, np.array(nums) / 2.0)
    assert not life.has_poses and life.counts == {} and life.meta["clock"] == "frame number in image names / 2 fps"
    got = dict(life.iter_frames([0, 5]))
    assert np.abs(got[5].astype(int) - sc.image(5).astype(int)).max() == 0  # PNG: exact pixels
    # the parent folder holds one subfolder of frames: the same life, its source named after the subfolder
    assert np.array_equal(read_life(tmp_path / "walk", fps=2).t, life.t)


def test_timestamp_names_subfolders_and_checks(tmp_path):
    sc = make_scene(n=8)
    for day, t0 in (("day1", 100.0), ("day2", 5000.0)):
        for i in range(4):
            write_png(tmp_path / day / f"{t0 + 0.25 * i:.6f}.png", sc.image(i))
    (tmp_path / "day2" / "5000.900000.jpg").write_bytes(b"not a jpeg")  # unreadable: left out, named
    write_png(tmp_path / "day2" / "5000.75.png", sc.image(5))  # the same time as 5000.750000.png: kept once
    write_png(tmp_path / "day1" / "101.000000.png", sc.image(6)[:20, :30])  # another size: counted
    life = read_life(tmp_path)
    assert life.format == "frames" and [s.name for s in life.sources] == ["day1", "day2"]
    np.testing.assert_allclose(life.t, [100, 100.25, 100.5, 100.75, 101, 5000, 5000.25, 5000.5, 5000.75])
    np.testing.assert_array_equal(life.source, [0] * 5 + [1] * 4)
    np.testing.assert_array_equal(life.frame_index, [0, 1, 2, 3, 4, 0, 1, 2, 3])
    assert life.counts == {"frames_unreadable": 1, "duplicate_times": 1, "frames_other_size": 1}
    assert any("1 of 6 images cannot be read" in w and "5000.900000.jpg" in w for w in life.warnings)
    assert life.meta["videos"]["day1"]["fps"] == pytest.approx(4.0)
    assert len(dict(life.iter_frames(range(len(life))))) == len(life)
    # sampled like a video: about 2 frames a second of each folder
    assert len(life.sample(2.0)) == 3 + 2
    # a folder of videos and images is read as videos; one without any readable image is an error
    write_video(tmp_path / "v.mp4", [sc.image(i) for i in range(3)])
    assert detect_format(tmp_path) == "video"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "1.5.jpg").write_bytes(b"")
    with pytest.raises(SlifeError, match=r"bad: no image can be read \(1 image, first: 1.5.jpg\)"):
        read_life(tmp_path / "bad")


def test_a_subfolder_without_a_readable_image(tmp_path):
    sc = make_scene(n=4)
    for i in range(3):
        write_png(tmp_path / "day1" / f"{100 + i:.6f}.png", sc.image(i))
    (tmp_path / "day2").mkdir()
    for name in ("200.000000.jpg", "200.500000.jpg"):
        (tmp_path / "day2" / name).write_bytes(b"not a jpeg")
    with pytest.raises(SlifeError, match=r"in 1 of 2 image folders no image can be read: day2 \(first: .*day2/"
                       r"200.000000.jpg\); pass -O skip_unreadable=true to skip them"):
        read_life(tmp_path)
    life = read_life(tmp_path, skip_unreadable="true")  # as the command line gives it
    assert [s.name for s in life.sources] == ["day1"] and len(life) == 3
    assert life.counts == {"frames_unreadable": 2}
    assert life.warnings == [f"{tmp_path / 'day2'}: skipped, no image can be read (2 images, first: 200.000000.jpg)"]
    for i in range(3):
        (tmp_path / "day1" / f"{100 + i:.6f}.png").write_bytes(b"")
    with pytest.raises(SlifeError, match=r"in 2 of 2 image folders no image can be read: day1, day2") as e:
        read_life(tmp_path, skip_unreadable=True)  # nothing left to skip to
    assert "skip_unreadable" not in str(e.value)
