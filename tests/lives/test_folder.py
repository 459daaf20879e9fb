"""slife.lives.folder: the life folder (poses.npz + video/frames + points.ply + depth/), bad poses and counts."""

import json

import numpy as np
import pytest

from lives_scene import H, W, assert_projects_like, make_scene, write_png, write_video
from slife.errors import SlifeError
from slife.lives import read_life
from slife.lives.folder import read_ply_points


def write_life(d, sc, pixels="frames", depth=True, T=None, t=None):
    d.mkdir(parents=True, exist_ok=True)
    T = sc.T_world_cam if T is None else T
    np.savez(d / "poses.npz", t=sc.t if t is None else t, T_world_cam=T, K=sc.K, image_size=np.array([W, H]))
    if pixels == "frames":
        for i in range(sc.n):
            write_png(d / "frames" / f"{i:06d}.jpg", sc.image(i))
    elif pixels == "video":
        write_video(d / "video.mp4", [sc.image(i) for i in range(sc.n)])
    if depth:
        for i in range(sc.n):
            write_png(d / "depth" / f"{i:06d}.png", sc.depth_mm(i))
    # binary little-endian PLY as Open3D writes it: double xyz, uchar rgb
    dt = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v = np.zeros(len(sc.points), dt)
    v["x"], v["y"], v["z"] = sc.points.T
    v["red"], v["green"], v["blue"] = sc.colors.T
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty double x\nproperty double y\n"
            "property double z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n") % len(v)
    (d / "points.ply").write_bytes(head.encode() + v.tobytes())
    (d / "life.json").write_text(json.dumps({"name": "tiny life", "scene": "test", "seed": 0}))


def test_folder_frames_project(tmp_path):
    sc = make_scene()
    write_life(tmp_path / "L", sc)
    life = read_life(tmp_path / "L")
    assert life.format == "folder" and life.name == "tiny-life" and len(life) == sc.n
    assert assert_projects_like(life, sc) == sc.n
    np.testing.assert_allclose(life.points, sc.points)
    np.testing.assert_array_equal(life.point_colors, sc.colors)
    np.testing.assert_allclose(life.read_depth(3), 2.003)
    img = dict(life.iter_frames([2]))[2]
    assert img.shape == (H, W, 3)


def test_folder_video_and_count_mismatch(tmp_path):
    sc = make_scene(n=8)
    write_life(tmp_path / "V", sc, pixels="video", depth=False)
    life = read_life(tmp_path / "V")
    assert life.has_pixels and len(life) == 8 and life.sources[0].path.name == "video.mp4"
    assert_projects_like(life, sc)
    sc2 = make_scene(n=9)
    np.savez(tmp_path / "V" / "poses.npz", t=sc2.t, T_world_cam=sc2.T_world_cam, K=sc2.K, image_size=[W, H])
    with pytest.raises(SlifeError, match=r"video.mp4: 8 frames but poses.npz has 9 poses"):
        read_life(tmp_path / "V")
    (tmp_path / "V" / "frames").mkdir()
    (tmp_path / "V" / "video.mp4").unlink()
    with pytest.raises(SlifeError, match=r"frames: no numbered images \(000000.jpg, ...\) for 9 poses"):
        read_life(tmp_path / "V")
    write_png(tmp_path / "V" / "frames" / "000009.jpg", sc.image(0))  # frame 9 of 9 poses (0..8): no pose
    with pytest.raises(SlifeError, match=r"frames: 1 image numbered beyond the 9 poses \(first: 000009.jpg; frame i "
                       r"is poses row i, expected 000000..000008\)"):
        read_life(tmp_path / "V")


def test_folder_frames_missing_are_named_and_counted(tmp_path):
    sc = make_scene(n=8)
    write_life(tmp_path / "F", sc, depth=False)
    for i in (1, 2, 4, 6):
        (tmp_path / "F" / "frames" / f"{i:06d}.jpg").unlink()
    life = read_life(tmp_path / "F")  # still read: every pose kept, the frames that are there readable
    assert len(life) == 8 and life.counts == {"frames_missing": 4}
    assert life.warnings == ["frames/: 4 of 8 images missing (000001.jpg, 000002.jpg, 000004.jpg, ...); "
                             "their pairs cannot be written"]
    assert sorted(dict(life.iter_frames(range(8)))) == [0, 3, 5, 7]
    assert_projects_like(life, sc)
    (tmp_path / "F" / "poses.npz").unlink()  # without poses: frames 0..the highest number, t = the number
    (tmp_path / "F" / "frames" / "000007.jpg").unlink()
    life = read_life(tmp_path / "F")
    assert len(life) == 6 and life.t.tolist() == [0, 1, 2, 3, 4, 5] and life.counts == {"frames_missing": 3}
    assert "3 of 6 images missing (000001.jpg, 000002.jpg, 000004.jpg)" in life.warnings[1]


def test_several_recordings(tmp_path):
    sc = make_scene(n=8)
    d = tmp_path / "R"
    write_life(d, sc, pixels="video", depth=False)  # video.mp4: rows 0-7 ...
    write_video(d / "video-001.mp4", [sc.image(i) for i in (5, 6, 7)])  # ... and a second recording of 3 frames
    rec = np.r_[np.zeros(5, int), np.ones(3, int)]
    np.savez(d / "poses.npz", t=sc.t, T_world_cam=sc.T_world_cam, K=sc.K, image_size=[W, H], video=rec)
    with pytest.raises(SlifeError, match=r"video.mp4: 8 frames but poses.npz has 5 rows with video == 0"):
        read_life(d)
    write_video(d / "video.mp4", [sc.image(i) for i in range(5)])
    life = read_life(d)
    assert [s.name for s in life.sources] == ["video", "video-001"] and life.source.tolist() == rec.tolist()
    assert life.frame_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    got = dict(life.iter_frames([1, 6]))
    assert np.abs(got[6].astype(int) - sc.image(6)).mean() < 12 and np.abs(got[1].astype(int) - sc.image(1)).mean() < 12
    (d / "video-001.mp4").unlink()
    with pytest.raises(SlifeError, match="video-001.mp4: no such video file"):
        read_life(d)


def test_bad_poses_dropped_with_counts(tmp_path):
    sc = make_scene(n=6)
    T = sc.T_world_cam.copy()
    T[1, 0, 0] = np.nan
    T[2, 0, 3] = np.inf
    T[3, :3, :3] *= 2.0  # not a rotation
    write_life(tmp_path / "B", sc, depth=False, T=T)
    life = read_life(tmp_path / "B")
    assert life.counts["poses_invalid"] == 3
    np.testing.assert_array_equal(life.pose_valid, [True, False, False, False, True, True])
    assert any("3 of 6 poses dropped" in w for w in life.warnings)
    assert assert_projects_like(life, sc) == 3
    T[:] = np.nan
    write_life(tmp_path / "C", sc, depth=False, T=T)
    life = read_life(tmp_path / "C")
    assert len(life) == 6 and not life.has_poses and life.summary()["pose_share"] == 0.0


def test_backwards_time_is_an_error(tmp_path):
    sc = make_scene(n=5)
    t = sc.t.copy()
    t[3] = t[1]
    write_life(tmp_path / "T", sc, depth=False, t=t)
    with pytest.raises(SlifeError, match=r"poses.npz: t goes backwards at row 3"):
        read_life(tmp_path / "T")


def test_trajectory_only_and_missing_keys(tmp_path):
    sc = make_scene(n=5)
    d = tmp_path / "traj"
    d.mkdir()
    np.savez(d / "poses.npz", t=sc.t, T_world_cam=sc.T_world_cam, K=sc.K, image_size=[W, H])
    life = read_life(d)
    assert not life.has_pixels and life.has_poses and (life.source == -1).all()
    np.savez(d / "poses.npz", t=sc.t, K=sc.K, image_size=[W, H])
    with pytest.raises(SlifeError, match="poses.npz: missing array 'T_world_cam'"):
        read_life(d)
    (d / "poses.npz").write_bytes(b"not a zip")
    with pytest.raises(SlifeError, match="poses.npz: unreadable npz"):
        read_life(d)
    np.savez(d / "poses.npz", t=sc.t, T_world_cam=sc.T_world_cam, K=sc.K, image_size=[W, H])
    data = (d / "poses.npz").read_bytes()
    (d / "poses.npz").write_bytes(data[: len(data) // 2])  # truncated: zipfile.BadZipFile
    with pytest.raises(SlifeError, match="poses.npz: unreadable npz"):
        read_life(d)


def test_ascii_ply(tmp_path):
    f = tmp_path / "p.ply"
    f.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                 "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n1 2 3 10 20 30\n4 5 6 0 0 255\n")
    p, c = read_ply_points(f)
    np.testing.assert_allclose(p, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(c, [[10, 20, 30], [0, 0, 255]])


def test_tiny_life_fixture(request):
    """The synth engineer's shared fixture (when present) reads back as a folder life with poses and depth."""
    try:
        path = request.getfixturevalue("tiny_life")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py has no tiny_life fixture")
    life = read_life(path)
    assert life.format == "folder" and life.has_poses and life.has_pixels
    i = int(np.flatnonzero(life.pose_valid)[0])
    assert life.camera(i) is not None
    assert life.points is not None and len(life.points) > 0
    got = dict(life.iter_frames([i]))
    assert got[i].shape == (life.camera(i).height, life.camera(i).width, 3)
