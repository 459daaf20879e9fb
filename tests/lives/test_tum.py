"""slife.lives.tum: timestamp association, xyzw camera-to-world poses, OpenCV->COLMAP pixel shift, real fr2/desk."""

from pathlib import Path

import numpy as np
import pytest

from lives_scene import FX, FY, CX, CY, assert_projects_like, make_scene, rotmat_to_wxyz, write_png
from slife.errors import SlifeError
from slife.lives import detect_format, read_life

DATA = Path(__file__).parents[2] / "../shared/data"


def write_tum(d, sc, gt_offset=0.003, drop_gt=(), shuffle_rgb=False):
    d.mkdir(parents=True, exist_ok=True)
    lines = ["# color images", "# timestamp filename"]
    order = list(range(sc.n))
    if shuffle_rgb:
        order = order[::-1]
    for i in order:
        name = f"rgb/{sc.t[i]:.6f}.png"
        write_png(d / name, sc.image(i))
        lines.append(f"{sc.t[i]:.6f} {name}")
    (d / "rgb.txt").write_text("\n".join(lines) + "\n")
    dl = ["# depth"]
    for i in range(sc.n):
        name = f"depth/{sc.t[i] + 0.001:.6f}.png"
        write_png(d / name, (sc.depth_mm(i).astype(np.uint32) * 5).astype(np.uint16))
        dl.append(f"{sc.t[i] + 0.001:.6f} {name}")
    (d / "depth.txt").write_text("\n".join(dl) + "\n")
    gl = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    for i in range(sc.n):
        if i in drop_gt:
            continue
        q = rotmat_to_wxyz(sc.T_world_cam[i, :3, :3]).tolist()
        tx, ty, tz = sc.T_world_cam[i, :3, 3].tolist()
        # a decoy pose 40 ms away, then the true one near the frame time
        gl.append(f"{sc.t[i] - 0.04:.6f} 9 9 9 0 0 0 1")
        gl.append(f"{sc.t[i] + gt_offset:.6f} {tx!r} {ty!r} {tz!r} {q[1]!r} {q[2]!r} {q[3]!r} {q[0]!r}")
    (d / "groundtruth.txt").write_text("\n".join(gl) + "\n")
    # TUM intrinsics are in the OpenCV pixel convention: half a pixel less than COLMAP's
    (d / "intrinsics.txt").write_text(f"# fx fy cx cy\n{FX!r} {FY!r} {CX - 0.5!r} {CY - 0.5!r}\n")


def test_tum_projects_and_associates(tmp_path):
    sc = make_scene()
    write_tum(tmp_path / "rgbd_dataset_freiburg1_x", sc, drop_gt=(4,))
    life = read_life(tmp_path / "rgbd_dataset_freiburg1_x")
    assert life.format == "tum" and len(life) == sc.n
    np.testing.assert_allclose(life.t, sc.t)
    assert life.counts == {"poses_missing": 1} and not life.pose_valid[4]
    assert assert_projects_like(life, sc) == sc.n - 1
    assert life.depth_scale == 5000.0
    np.testing.assert_allclose(life.read_depth(2), 2.002, atol=1e-6)


def test_tum_unsorted_rgb_is_sorted_with_warning(tmp_path):
    sc = make_scene(n=6)
    write_tum(tmp_path / "s", sc, shuffle_rgb=True)
    life = read_life(tmp_path / "s")
    assert np.all(np.diff(life.t) > 0)
    assert any("go backwards" in w and "sorted" in w for w in life.warnings)
    assert_projects_like(life, sc)


def test_tum_published_intrinsics_and_bad_files(tmp_path):
    sc = make_scene(n=4)
    d = tmp_path / "rgbd_dataset_freiburg3_long_office"
    write_tum(d, sc)
    (d / "intrinsics.txt").unlink()
    life = read_life(d)
    cam = life.camera(0)
    assert cam.model == "PINHOLE" and cam.params == (535.4, 539.2, 320.6, 248.1)
    (d / "groundtruth.txt").write_text("1.0 2 3\n")
    with pytest.raises(SlifeError, match=r"groundtruth.txt: line 1 has 3 fields"):
        read_life(d)
    (d / "rgb.txt").write_text("1.0 rgb/nope.png\n")
    with pytest.raises(SlifeError, match=r"nope.png: listed in rgb.txt but missing"):
        read_life(d)


def test_real_fr2_desk_matches_colmap():
    d = DATA / "tum_fr2_desk"
    if not d.is_dir():
        pytest.skip("shared data tum_fr2_desk/ absent")
    assert detect_format(d) == "tum"
    tum = read_life(d)
    assert len(tum) == 20 and tum.pose_valid.all()
    assert tum.camera(0).model == "FULL_OPENCV" and tum.camera(0).params[2] == pytest.approx(325.6)
    # the poses agree with poses_for_frames.txt (nearest ground truth, printed to 4 decimals)
    rows = [ln.split() for ln in (d / "poses_for_frames.txt").read_text().splitlines() if not ln.startswith("#")]
    ref = np.array([[float(v) for v in r[2:5]] for r in rows])
    np.testing.assert_allclose(tum.T_world_cam[:, :3, 3], ref, atol=6e-5)
    col = read_life(d / "colmap_sparse_derived")
    # relative rotations between frames are world-independent: same camera axes in both (OpenCV)
    for i, j in [(0, 5), (0, 19), (7, 13)]:
        Ra = tum.T_world_cam[i, :3, :3].T @ tum.T_world_cam[j, :3, :3]
        Rb = col.T_world_cam[i, :3, :3].T @ col.T_world_cam[j, :3, :3]
        ang = np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1)))
        assert ang < 1.0, (i, j, ang)
