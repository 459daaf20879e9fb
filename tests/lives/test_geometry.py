"""slife.lives.geometry: quaternions, pose inversion/checks, camera models; FISHEYE624 against real Aria data."""

import json
from pathlib import Path

import numpy as np
import pytest

from slife.lives.geometry import (Camera, fit_similarity, invert_pose, make_pose, pose_problem, qvec_to_rotmat,
                                  rotmat_to_qvec, transform_points)

DATA = Path(__file__).parents[2] / "../shared/data"


def test_quaternion_round_trip_and_inverse():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(20, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    R = qvec_to_rotmat(q)
    np.testing.assert_allclose(rotmat_to_qvec(R), q, atol=1e-12)
    T = make_pose(R, rng.normal(size=(20, 3)))
    np.testing.assert_allclose(invert_pose(T) @ T, np.tile(np.eye(4), (20, 1, 1)), atol=1e-12)
    bad = T.copy()
    bad[0, 0, 0] = np.nan
    bad[1, :3, :3] *= 1.1
    bad[2, 3, 0] = 1
    assert list(pose_problem(bad)[:4]) == ["not finite", "not a rotation", "bad last row", ""]


@pytest.mark.parametrize("model,params", [
    ("PINHOLE", (50, 52, 32, 24)),
    ("OPENCV", (50, 52, 32, 24, -0.2, 0.05, 0.001, -0.002)),
    ("FULL_OPENCV", (50, 52, 32, 24, 0.23, -0.78, -0.003, -0.0001, 0.92, 0, 0, 0)),
    ("OPENCV_FISHEYE", (30, 31, 32, 24, 0.1, -0.05, 0.01, 0.0)),
    ("FISHEYE624", (30, 32, 24, 0.4, -0.49, 0.17, 1.13, -1.7, 0.65, 6e-4, 2e-5, -1.5e-5, 2.6e-4, -6.6e-4, 3.8e-5)),
])
def test_unproject_inverts_project(model, params):
    cam = Camera(model, 64, 48, params)
    g = np.stack(np.meshgrid(np.linspace(4, 60, 9), np.linspace(4, 44, 7)), -1).reshape(-1, 2)
    X = cam.unproject(g, depth=np.full(len(g), 2.5))
    uv, front = cam.project(X)
    assert front.all() and np.abs(uv - g).max() < 1e-6
    np.testing.assert_allclose(X[:, 2], 2.5)


def test_fisheye624_against_real_aria_depth():
    """ADT: depth rendered in one Aria camera, unprojected, moved to another camera and projected, matches the
    depth rendered there. Checks the FISHEYE624 formula and Aria's pixel convention (+0.5 px) on real calibrations."""
    from PIL import Image

    d = DATA / "aria_adt_apartment"
    if not d.is_dir():
        pytest.skip("shared data aria_adt_apartment/ absent")
    cal = json.loads((d / "calibration_from_vrs.json").read_text())
    ts = "87551170910000"

    def cam(label, shift):
        c = cal[label]
        p = list(c["projection_params"])
        p[1] += shift
        p[2] += shift
        return Camera("FISHEYE624", *c["image_size"], tuple(p)), np.array(c["T_device_camera"])

    def depth(label):
        with Image.open(d / "depth" / f"{label}_depth_mm_{ts}.png") as im:
            return np.asarray(im).astype(np.float64) / 1000.0  # (H, W) metres, z-depth

    def median_err(a, b, shift):
        ca, Ta = cam(a, shift)
        cb, Tb = cam(b, shift)
        da, db = depth(a), depth(b)
        vv, uu = np.mgrid[8:da.shape[0]:8, 8:da.shape[1]:8]
        uv = np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], 1)  # pixel centres
        z = da[vv.ravel(), uu.ravel()]
        ok = z > 0
        rays = ca.unproject(uv[ok])
        keep = np.hypot(rays[:, 0], rays[:, 1]) < np.tan(np.radians(75))
        Xb = transform_points(invert_pose(Tb) @ Ta, rays[keep] * z[ok][keep, None])
        uvb, front = cb.project(Xb)
        ins = front & cb.inside(uvb)
        zb = db[np.floor(uvb[ins, 1]).astype(int), np.floor(uvb[ins, 0]).astype(int)]
        err = np.abs(zb - Xb[ins, 2])[zb > 0]
        assert len(err) > 1000
        return np.median(err), np.mean(err < 0.01)

    for a, b in [("camera-rgb", "camera-slam-right"), ("camera-slam-left", "camera-rgb")]:
        med, frac = median_err(a, b, 0.5)
        assert med < 0.002 and frac > 0.9, (a, b, med, frac)
        med0, _ = median_err(a, b, 0.0)
        assert med0 > 1.4 * med  # integer-centred pixels (no shift) agree worse


@pytest.mark.parametrize("model,params", [
    ("PINHOLE", (50, 52, 30, 20)),
    ("SIMPLE_PINHOLE", (50, 30, 20)),
    ("FISHEYE624", (30, 32, 20, 0.4, -0.49, 0.17, 1.13, -1.7, 0.65, 6e-3, 2e-3, -1.5e-3, 2.6e-3, -6.6e-3, 3.8e-3)),
])
def test_rotated_cw90_turns_the_image(model, params):
    cam = Camera(model, 64, 48, params)
    X = np.random.default_rng(0).uniform(-1, 1, (50, 3)) + [0, 0, 3]
    uv, _ = cam.project(X)
    Rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    turned = cam.rotated_cw90()
    uv2, _ = turned.project(X @ Rz.T)  # the same points in the turned camera's frame
    assert (turned.width, turned.height) == (48, 64)
    np.testing.assert_allclose(uv2, np.stack([48 - uv[:, 1], uv[:, 0]], axis=1), atol=1e-9)


def test_fit_similarity_recovers_a_known_transform_and_ignores_zero_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    R = qvec_to_rotmat(np.array([0.8, 0.2, -0.4, 0.4]) / np.linalg.norm([0.8, 0.2, -0.4, 0.4]))
    Y = 2.5 * X @ R.T + np.array([1.0, -2.0, 3.0])
    s, R2, t = fit_similarity(X, Y)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1.0, -2.0, 3.0])
    assert np.linalg.det(R2) == pytest.approx(1.0)
    Y[:5] += 100.0  # outliers with zero weight change nothing
    w = np.r_[np.zeros(5), np.ones(45)]
    s, R2, t = fit_similarity(X, Y, w)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1.0, -2.0, 3.0])
