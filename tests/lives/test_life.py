"""slife.lives.life: resized sizes, image-file sources, sampling, selection with tracks, summary."""

import numpy as np

from lives_scene import make_scene, write_png
from slife.lives.geometry import Camera
from slife.lives.life import ImageFiles, Life, resized_size


def test_resized_size():
    assert resized_size(1280, 720, 256) == (455, 256)
    assert resized_size(720, 1280, 256) == (256, 455)
    assert resized_size(64, 48, 24) == (32, 24)
    assert resized_size(1408, 1408, 256) == (256, 256)


def test_image_files_and_life(tmp_path):
    sc = make_scene(n=6)
    files = []
    for i in range(6):
        files.append(tmp_path / f"{i}.png")
        write_png(files[-1], sc.image(i))
    files[4] = tmp_path / "missing.png"
    src = ImageFiles(name="imgs", path=tmp_path, files=files)
    indptr = np.array([0, 2, 3, 3, 5, 6, 8])
    life = Life(name="x", root=tmp_path, format="test", sources=[src], source=np.zeros(6, np.int32),
                frame_index=np.arange(6), t=np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.52]), T_world_cam=sc.T_world_cam[:6],
                cameras=[Camera.from_K(sc.K, 64, 48)], camera_id=np.zeros(6, np.int32),
                points=sc.points, tracks=(indptr, np.arange(8)))
    got = dict(life.iter_frames([5, 1, 4, 1], short_side=24))
    assert sorted(got) == [1, 5] and got[1].shape == (24, 32, 3)  # frame 4's file is missing: skipped
    s = life.sample(4.0)  # ticks 0, .25, .5 -> frames 0, 2, 4
    np.testing.assert_array_equal(s.t, [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(s.frame_tracks(0), [0, 1])
    np.testing.assert_array_equal(s.frame_tracks(2), [5])
    assert s.tracks[0][-1] == 3 and len(s.frame_tracks(1)) == 0
    summ = life.summary()
    assert summ["frames"] == 6 and summ["pose_share"] == 1.0 and summ["tracks"] and summ["points"] == len(sc.points)
