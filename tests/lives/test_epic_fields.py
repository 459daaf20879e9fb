"""slife.lives.epic_fields: JSON world-to-camera poses inverted, points, frames folder or video, bad entries."""

import json

import numpy as np
import pytest

from lives_scene import FX, FY, CX, CY, H, W, assert_projects_like, make_scene, rotmat_to_wxyz, write_png, write_video
from slife.errors import SlifeError
from slife.lives import detect_format, read_life


def epic_json(sc, registered, as_list=False):
    images = {}
    for i in registered:
        Tcw = np.linalg.inv(sc.T_world_cam[i])
        images[f"frame_{i + 1:010d}.jpg"] = rotmat_to_wxyz(Tcw[:3, :3]).tolist() + Tcw[:3, 3].tolist()
    if as_list:
        images = [v + [k] for k, v in images.items()]
    pts = np.concatenate([sc.points, sc.colors.astype(float)], axis=1).tolist()
    return {"camera": {"id": 1, "model": "OPENCV", "width": W, "height": H,
                       "params": [FX, FY, CX, CY, 0.0, 0.0, 0.0, 0.0]}, "images": images, "points": pts}


def test_epic_frames_folder(tmp_path):
    sc = make_scene()
    reg = [0, 2, 3, 5, 8, 11]
    (tmp_path / "P01_01.json").write_text(json.dumps(epic_json(sc, reg)))
    for i in reg:
        write_png(tmp_path / "P01_01" / f"frame_{i + 1:010d}.jpg", sc.image(i))
    assert detect_format(tmp_path) == "epic_fields"
    life = read_life(tmp_path / "P01_01.json")
    assert life.format == "epic_fields" and len(life) == len(reg) and life.name == "P01-01"
    assert assert_projects_like(life, sc, rows=reg) == len(reg)
    np.testing.assert_allclose(life.t, np.array(reg) / 50.0)
    np.testing.assert_allclose(life.points, sc.points)
    assert life.camera(0).model == "OPENCV"
    assert dict(life.iter_frames([1]))[1].shape == (H, W, 3)


def test_epic_video_all_frames_posed_subset(tmp_path):
    sc = make_scene(n=10)
    reg = [1, 4, 7]
    (tmp_path / "P02_03.json").write_text(json.dumps(epic_json(sc, reg, as_list=True)))
    write_video(tmp_path / "P02_03.MP4", [sc.image(i) for i in range(sc.n)])
    life = read_life(tmp_path)
    assert len(life) == 10 and life.pose_valid.sum() == 3 and life.has_pixels
    np.testing.assert_array_equal(np.flatnonzero(life.pose_valid), reg)
    assert life.counts["poses_missing"] == 7  # unregistered video frames are counted
    assert_projects_like(life, sc)
    np.testing.assert_allclose(life.t, np.arange(10) / 10.0)


def test_epic_bad(tmp_path):
    sc = make_scene(n=4)
    d = epic_json(sc, [0, 1, 2, 3])
    d["images"]["frame_0000000002.jpg"][0] = float("nan")
    (tmp_path / "a.json").write_text(json.dumps(d))
    life = read_life(tmp_path / "a.json")
    assert life.counts["poses_invalid"] == 1 and not life.pose_valid[1] and not life.has_pixels
    d["camera"]["model"] = "WEIRD"
    (tmp_path / "a.json").write_text(json.dumps(d))
    with pytest.raises(SlifeError, match=r"a.json: unsupported camera WEIRD"):
        read_life(tmp_path / "a.json")
    (tmp_path / "a.json").write_text('{"camera": {"model": 1}, "images": [')
    with pytest.raises(SlifeError, match=r"a.json: unreadable JSON"):
        read_life(tmp_path / "a.json")
