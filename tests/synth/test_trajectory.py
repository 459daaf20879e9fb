"""Head-worn motion: walking speed, free space, pauses, turning, revisits on later days, valid poses."""

import numpy as np
import pytest

from slife.lives.geometry import pose_problem
from slife.synth.scenes import build_scene
from slife.synth.trajectory import astar, life_trajectory, look_rotation, random_views, static_trajectory


@pytest.fixture(scope="module")
def walk():
    scene = build_scene("living_room", 0, 16)
    t, T, day = life_trajectory(scene, 2, 60.0, 10.0, np.random.default_rng(0))
    return scene, t, T, day


def test_look_rotation_axes():
    R = look_rotation(np.array([0.0, np.pi / 2]), np.array([0.0, 0.0]))
    # yaw 0 looks along world +x with image x to the right (-y) and image y down (-z)
    assert np.allclose(R[0], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    assert np.allclose(R[1][:, 2], [0, 1, 0])
    assert np.allclose(np.linalg.det(R), 1.0)


def test_poses_valid_and_timed(walk):
    scene, t, T, day = walk
    assert len(t) == 1200 and (pose_problem(T) == "").all()
    assert np.allclose(np.diff(t[day == 0]), 0.1) and t[day == 1][0] == 86400.0
    z = T[:, 2, 3]
    assert 1.5 < z.min() and z.max() < 1.8  # eye height with bob


def test_walks_at_walking_speed_and_pauses(walk):
    _, t, T, day = walk
    p = T[:, :3, 3]
    v = np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1) / np.diff(t)
    v = v[np.diff(day) == 0]
    assert 1.2 < np.percentile(v, 95) < 1.8  # cruising ~1.4 m/s
    assert v.max() < 2.2
    assert 0.15 < np.mean(v < 0.1) < 0.7  # standing still part of the time


def test_stays_in_free_space(walk):
    import open3d as o3d

    scene, _, T, _ = walk
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.triangles.astype(np.uint32)))
    d = rc.compute_distance(o3d.core.Tensor(T[:, :3, 3].astype(np.float32))).numpy()
    assert d.min() > 0.25  # never inside or against furniture or walls


def test_head_moves_and_turns_back(walk):
    _, _, T, _ = walk
    fwd = T[:, :3, 2]
    yaw = np.unwrap(np.arctan2(fwd[:, 1], fwd[:, 0]))
    pitch = np.degrees(np.arcsin(fwd[:, 2]))
    assert pitch.min() < -25 and pitch.max() > -5  # looks down at tables and up again
    assert np.sum(np.abs(yaw[30:] - yaw[:-30]) > np.radians(150)) > 10  # turns round within 3 s
    roll = np.degrees(np.arcsin(T[:, 2, 0]))
    assert 0.2 < np.abs(roll).max() < 5


def test_later_days_revisit_places(walk):
    _, _, T, day = walk
    a, b = T[day == 0, :2, 3], T[day == 1, :2, 3]
    near = np.linalg.norm(b[:, None] - a[None], axis=2).min(1) < 0.5
    assert near.mean() > 0.5
    assert np.allclose(T[day == 0][0, :2, 3], T[day == 1][0, :2, 3], atol=0.2)  # each day starts at the entrance


def test_same_seed_same_trajectory():
    scene = build_scene("kitchen", 3, 16)
    a = life_trajectory(scene, 1, 10.0, 5.0, np.random.default_rng(7))[1]
    b = life_trajectory(scene, 1, 10.0, 5.0, np.random.default_rng(7))[1]
    c = life_trajectory(scene, 1, 10.0, 5.0, np.random.default_rng(8))[1]
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_astar_goes_around_walls():
    free = np.ones((5, 7), bool)
    free[0:4, 3] = False
    path = astar(free, (0, 0), (0, 6))
    assert path[0] == (0, 0) and path[-1] == (0, 6) and (4, 3) in path
    assert astar(np.eye(2, dtype=bool), (0, 0), (1, 1)) is None  # no squeezing diagonally between two corners


@pytest.mark.parametrize("name", ["office", "bedroom"])
def test_static_and_random_views(name):
    import open3d as o3d

    scene = build_scene(name, 0, 16)
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(scene.vertices), o3d.core.Tensor(scene.triangles.astype(np.uint32)))
    clearance = lambda T: rc.compute_distance(o3d.core.Tensor(T[:, :3, 3].astype(np.float32))).numpy()  # noqa: E731
    t, T = static_trajectory(scene, 5, 10.0, np.random.default_rng(0))
    assert np.allclose(t, np.arange(5) / 10) and np.array_equal(T[0], T[4])
    assert T[0, 2, 3] > 2.0 and T[0, 2, 2] < -0.2  # high up, looking down
    assert clearance(T).min() > 0.1
    t, T = random_views(scene, 20, 10.0, np.random.default_rng(0))
    assert (pose_problem(T) == "").all() and scene.is_free(T[:, :2, 3]).mean() > 0.8
    assert clearance(T).min() > 0.25
