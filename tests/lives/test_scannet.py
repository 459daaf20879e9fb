"""slife.lives.scannet: color/pose/depth/intrinsic export, -inf poses dropped, depth camera, pixel convention."""

import numpy as np
import pytest

from lives_scene import FX, FY, CX, CY, assert_projects_like, make_scene, write_png
from slife.errors import SlifeError
from slife.lives import detect_format, read_life


def write_scannet(d, sc, inf_pose=3, skip=(5,)):
    nums = [k * 10 for k in range(sc.n)]  # exported every 10th sensor frame
    for i, k in enumerate(nums):
        write_png(d / "color" / f"{k}.jpg", sc.image(i))
        d.joinpath("pose").mkdir(parents=True, exist_ok=True)
        T = sc.T_world_cam[i] if i != inf_pose else np.full((4, 4), -np.inf)
        np.savetxt(d / "pose" / f"{k}.txt", T)
        if i not in skip:
            write_png(d / "depth" / f"{k}.png", sc.depth_mm(i)[::2, ::2].copy())
    (d / "intrinsic").mkdir()
    K = np.eye(4)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = FX, FY, CX - 0.5, CY - 0.5  # OpenCV convention in the files
    np.savetxt(d / "intrinsic" / "intrinsic_color.txt", K)
    Kd = np.eye(4)
    Kd[0, 0], Kd[1, 1], Kd[0, 2], Kd[1, 2] = FX / 2, FY / 2, CX / 2 - 0.5, CY / 2 - 0.5
    np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", Kd)
    return nums


def test_scannet_projects_and_drops_inf(tmp_path):
    sc = make_scene()
    d = tmp_path / "scene0000_00"
    nums = write_scannet(d, sc)
    assert detect_format(d) == "scannet"
    life = read_life(d)
    assert len(life) == sc.n and life.counts["poses_invalid"] == 1 and not life.pose_valid[3]
    assert assert_projects_like(life, sc) == sc.n - 1
    np.testing.assert_allclose(life.t, np.array(nums) / 30.0)
    assert life.counts["depth_missing"] == 1 and life.depth_paths[5] is None
    np.testing.assert_allclose(life.read_depth(2), 2.002)
    dc = life.depth_camera
    assert (dc.width, dc.height) == (32, 24) and dc.params[2] == pytest.approx(CX / 2)


def test_scannet_bad_pose_file(tmp_path):
    sc = make_scene(n=3)
    d = tmp_path / "s"
    write_scannet(d, sc, inf_pose=-1, skip=())
    (d / "pose" / "10.txt").write_text("1 2 3\n")
    with pytest.raises(SlifeError, match=r"pose/10.txt: expected a 4x4 matrix"):
        read_life(d)


def test_scannet_nan_pose_file_and_unreadable_first_image_are_counted(tmp_path):
    sc = make_scene(n=4)
    d = tmp_path / "s"
    nums = write_scannet(d, sc, inf_pose=-1, skip=())
    np.savetxt(d / "pose" / f"{nums[1]}.txt", np.full((4, 4), np.nan))  # a file of NaN: invalid, not missing
    (d / "color" / f"{nums[0]}.jpg").write_bytes(b"garbage")  # the size comes from the next image
    (d / "depth" / f"{nums[0]}.png").write_bytes(b"garbage")
    life = read_life(d)
    assert life.counts["poses_invalid"] == 1 and "poses_missing" not in life.counts
    assert list(life.pose_valid) == [True, False, True, True]
    assert (life.cameras[0].width, life.cameras[0].height) == (64, 48)
    assert [i for i, _ in life.sources[0].read(range(4))] == [1, 2, 3]  # the unreadable frame is skipped
