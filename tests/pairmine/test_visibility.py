"""Visibility: projection limits, z-buffer occlusion, fisheye cameras, tracks, depth back-projection."""

import numpy as np

from slife.lives.geometry import Camera, make_pose
from slife.lives.life import Life
from slife.pairmine.visibility import compute_visibility, jaccard_exact


def _life(points, cam, n=1, tracks=None):
    T = np.repeat(make_pose(np.eye(3), np.zeros(3))[None], n, 0)  # cameras at the origin looking +z
    return Life(name="v", root=__import__("pathlib").Path("v"), format="mem", sources=[],
                source=np.full(n, -1, np.int32), frame_index=np.arange(n), t=np.arange(n, dtype=float),
                T_world_cam=T, cameras=[cam], camera_id=np.zeros(n, np.int32), points=points, tracks=tracks)


def test_limits_and_occlusion():
    cam = Camera("PINHOLE", 64, 48, (32.0, 32.0, 32.0, 24.0))
    pts = np.array([
        [0.0, 0.0, 2.0],  # 0 visible
        [0.0, 0.0, 4.0],  # 1 behind point 0 in the same z-buffer cell -> hidden
        [0.0, 0.0, -2.0],  # 2 behind the camera
        [50.0, 0.0, 2.0],  # 3 outside the image
        [1.0, 0.5, 20.0],  # 4 beyond max_depth
        [0.9, 0.6, 3.0],  # 5 visible elsewhere in the image
    ])
    vis = compute_visibility(_life(pts, cam), max_depth=10, voxel=0, zbuffer_cells=16)
    assert vis.method == "points" and vis.row(0).tolist() == [0, 5]
    vis = compute_visibility(_life(pts, cam), max_depth=10, voxel=0, zbuffer_cells=0)  # no occlusion test
    assert vis.row(0).tolist() == [0, 1, 5]


def test_fisheye_sees_wide():
    # a FISHEYE624 camera sees a point 80 degrees off axis, which a pinhole of the same focal cannot
    fish = Camera("FISHEYE624", 200, 200, (60.0, 100.0, 100.0) + (0.0,) * 12)
    pin = Camera("PINHOLE", 200, 200, (60.0, 60.0, 100.0, 100.0))
    ang = np.deg2rad(80)
    pts = np.array([[np.sin(ang) * 3, 0, np.cos(ang) * 3], [0, 0, 3.0]])
    assert compute_visibility(_life(pts, fish), voxel=0).row(0).tolist() == [0, 1]
    assert compute_visibility(_life(pts, pin), voxel=0).row(0).tolist() == [1]


def test_tracks_and_jaccard():
    indptr = np.array([0, 3, 6, 6])
    indices = np.array([0, 1, 2, 1, 2, 3])
    cam = Camera("PINHOLE", 64, 48, (32.0, 32.0, 32.0, 24.0))
    life = _life(np.zeros((4, 3)), cam, n=3, tracks=(indptr, indices))
    vis = compute_visibility(life)
    assert vis.method == "tracks" and vis.row(1).tolist() == [1, 2, 3]
    J = jaccard_exact(vis, np.array([0, 0, 2]), np.array([1, 0, 0]))
    assert np.allclose(J, [2 / 4, 1.0, 0.0])


def test_depth_backprojection(tiny_life):
    from dataclasses import replace

    from slife.lives import read_life

    life = replace(read_life(tiny_life), points=None)  # force the depth path
    vis = compute_visibility(life, voxel=0.1)
    assert vis.method == "depth"
    assert (vis.sizes[life.pose_valid] > 20).all()
    # neighbouring frames overlap more than frames far apart in time
    J = jaccard_exact(vis, np.array([0, 0]), np.array([1, 15]))
    assert J[0] > J[1] and J[0] > 0.3
