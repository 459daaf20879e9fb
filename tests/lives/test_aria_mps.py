"""slife.lives.aria_mps: trajectory slerp to frame times, T_device_rgb, FISHEYE624 camera, point filter, real walk."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from lives_scene import rotmat_to_wxyz, write_video
from slife.errors import SlifeError
from slife.lives import detect_format, read_life
from slife.lives.geometry import Camera, make_pose, project_points

DATA = Path(__file__).parents[2] / "../shared/data"
# an Aria-like rgb calibration (1408 px sensor, integer pixel centres), mild distortion
ARIA_PARAMS = [610.0, 715.1, 716.7, 0.40, -0.49, 0.17, 1.13, -1.70, 0.65, 6e-4, 2e-5, -1.5e-5, 2.6e-4, -6.6e-4, 3.8e-5]
R_DEV_RGB = np.array([[0.9934, -0.0515, 0.1026], [0.1036, 0.7865, -0.6088], [-0.0493, 0.6154, 0.7866]])


def rotation(axis, angle):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def T_world_device(t):
    """Constant-rate rotation about a fixed axis and linear translation: slerp + lerp reproduce it exactly."""
    return make_pose(rotation([0.2, 1.0, 0.1], 0.2 + 0.8 * t), [0.1 + 1.4 * t, -0.02 * t, 0.3 + 0.1 * t])


def T_device_rgb():
    U, _, Vt = np.linalg.svd(R_DEV_RGB)
    return make_pose(U @ Vt, [-0.0043, -0.0118, -0.0051])


def write_mps(d: Path, t0=5.0, dur=1.2, video_frames=None):
    slam = d / "slam"
    slam.mkdir(parents=True)
    ts = np.arange(t0, t0 + dur, 0.001)  # 1 kHz
    rows = ["graph_uid,tracking_timestamp_us,utc_timestamp_ns,tx_world_device,ty_world_device,tz_world_device,"
            "qx_world_device,qy_world_device,qz_world_device,qw_world_device,quality_score"]
    for t in ts:
        T = T_world_device(t - t0)
        q = rotmat_to_wxyz(T[:3, :3]).tolist()
        x, y, z = T[:3, 3].tolist()
        rows.append(f"uid,{int(round(t * 1e6))},0,{x!r},{y!r},{z!r},{q[1]!r},{q[2]!r},{q[3]!r},{q[0]!r},1.0")
    (slam / "closed_loop_trajectory.csv").write_text("\n".join(rows) + "\n")
    Tdr = T_device_rgb()
    q = rotmat_to_wxyz(Tdr[:3, :3]).tolist()
    cal = {"Projection": {"Name": "FisheyeRadTanThinPrism", "Params": ARIA_PARAMS},
           "T_Device_Camera": {"Translation": Tdr[:3, 3].tolist(), "UnitQuaternion": [q[0], q[1:]]},
           "Label": "camera-rgb"}
    slam_cal = dict(cal, Label="camera-slam-left", T_Device_Camera={"Translation": [0, 0, 0], "UnitQuaternion": [1, [0, 0, 0]]})
    lines = [json.dumps({"tracking_timestamp_us": int((t0 + k * 0.5) * 1e6), "CameraCalibrations": [slam_cal, cal]})
             for k in range(3)]
    (slam / "online_calibration.jsonl").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(1)
    pts = rng.uniform(-3, 3, (200, 3)) + [1, 0, 3]
    good = np.arange(200) % 4 != 0
    with gzip.open(slam / "semidense_points.csv.gz", "wt") as f:
        f.write("uid,graph_uid,px_world,py_world,pz_world,inv_dist_std,dist_std\n")
        for k, p in enumerate(pts.tolist()):
            f.write(f"{k},g,{p[0]!r},{p[1]!r},{p[2]!r},{0.0005 if good[k] else 0.01},{0.01 if good[k] else 0.2}\n")
    if video_frames:
        tf = t0 + 0.0123 + np.arange(video_frames) / 30.0  # between trajectory samples
        img = [np.full((64, 64, 3), (10 * k) % 256, np.uint8) for k in range(video_frames)]
        write_video(d / "rec.mp4", img, rate=30)
        (d / "rec_mp4_to_vrs_time_ns.csv").write_text(
            "mp4_time_ns,vrs_device_time_ns\n" + "".join(f"{k * 33333333},{int(round(t * 1e9))}\n" for k, t in enumerate(tf)))
    return pts[good]


def test_aria_video_poses_project(tmp_path):
    good = write_mps(tmp_path, video_frames=12)
    assert detect_format(tmp_path) == "aria_mps"
    life = read_life(tmp_path)
    assert life.format == "aria_mps" and len(life) == 12 and life.pose_valid.all() and life.has_pixels
    assert life.counts["points_filtered"] == 50
    np.testing.assert_allclose(life.points, good)
    cam = life.camera(0)
    # the 1408 px calibration scaled to the 64 px video, with Aria's integer pixel centres shifted by 0.5
    truth = Camera("FISHEYE624", 1408, 1408, tuple(ARIA_PARAMS[:1] + [ARIA_PARAMS[1] + 0.5, ARIA_PARAMS[2] + 0.5]
                                                   + ARIA_PARAMS[3:])).scaled(64 / 1408)
    assert cam == truth
    for i in range(12):
        T_gt = T_world_device(life.t[i] - 5.0) @ T_device_rgb()
        uv, _, vis = project_points(life.T_world_cam[i], cam, life.points)
        uv_gt, _, vis_gt = project_points(T_gt, truth, life.points)
        assert vis_gt.sum() > 10
        assert np.abs(uv[vis_gt] - uv_gt[vis_gt]).max() < 1e-3


def test_aria_trajectory_only_and_bad_times(tmp_path):
    write_mps(tmp_path / "a")
    life = read_life(tmp_path / "a")
    assert not life.has_pixels and len(life) in (12, 13) and life.pose_valid.all()  # 1.2 s at 10 Hz
    np.testing.assert_allclose(np.diff(life.t), 0.1)
    write_mps(tmp_path / "b", video_frames=4)
    f = tmp_path / "b" / "rec_mp4_to_vrs_time_ns.csv"
    f.write_text("mp4_time_ns,vrs_device_time_ns\n0,5100000000\n1,5050000000\n2,5200000000\n3,5300000000\n")
    with pytest.raises(SlifeError, match=r"rec_mp4_to_vrs_time_ns.csv: device time does not increase at frame 1"):
        read_life(tmp_path / "b")
    f.write_text("mp4_time_ns,vrs_device_time_ns\n0,5100000000\n")
    with pytest.raises(SlifeError, match=r"1 row but rec.mp4 has 4 frames"):
        read_life(tmp_path / "b")
    (tmp_path / "b" / "slam" / "online_calibration.jsonl").write_text("{not json}\n")
    with pytest.raises(SlifeError, match=r"online_calibration.jsonl: line 1 is not a calibration"):
        read_life(tmp_path / "b")


def test_aria_frames_outside_trajectory_have_no_pose(tmp_path):
    write_mps(tmp_path, video_frames=45)  # 1.5 s of video, 1.2 s of trajectory
    life = read_life(tmp_path)
    assert life.counts["poses_missing"] == int((life.t > 5.0 + 1.199).sum()) > 0
    assert life.pose_valid.sum() == 45 - life.counts["poses_missing"]


def test_real_aria_walk():
    d = DATA / "aria_mps_walk"
    if not d.is_dir():
        pytest.skip("shared data aria_mps_walk/ absent")
    life = read_life(d)
    assert life.format == "aria_mps" and not life.has_pixels
    assert len(life) == 114 and life.pose_valid.all()  # 11.3 s of trajectory at 10 Hz
    assert 20000 < len(life.points) < 99472
    cam = life.camera(0)
    assert cam.model == "FISHEYE624" and cam.width == 2880
    # the rgb camera looks at the semi-dense points it helped map (OpenCV axes); turned around it would not
    uv, z, vis = project_points(life.T_world_cam[0], cam, life.points)
    back = life.T_world_cam[0].copy()
    back[:3, :3] = back[:3, :3] @ np.diag([-1.0, 1.0, -1.0])
    assert vis.mean() > 0.5 > 4 * project_points(back, cam, life.points)[2].mean()
    # walked 7.7 m (summary.json), the interpolated frames cover most of it
    steps = np.linalg.norm(np.diff(life.T_world_cam[:, :3, 3], axis=0), axis=1).sum()
    assert 6.5 < steps < 8.0


def test_aria_upright_video(tmp_path):
    """HD-EPIC-style MP4s turned 90 degrees clockwise: every point lands where the turned image shows it."""
    from slife.lives.aria_mps import read as read_aria

    write_mps(tmp_path, video_frames=6)
    plain = read_aria(tmp_path)
    up = read_aria(tmp_path, upright=True)
    assert up.meta["upright"] and up.camera(0).params[1] == pytest.approx(64 - plain.camera(0).params[2])
    for i in range(6):
        uv, _, vis = project_points(plain.T_world_cam[i], plain.camera(i), plain.points)
        uv2, _, vis2 = project_points(up.T_world_cam[i], up.camera(i), up.points)
        np.testing.assert_array_equal(vis, vis2)
        np.testing.assert_allclose(uv2, np.stack([64 - uv[:, 1], uv[:, 0]], axis=1), atol=1e-9)


def test_frames_at_the_first_and_last_trajectory_sample_keep_their_pose():
    from slife.lives.aria_mps import interpolate_poses

    t_traj = np.arange(201) / 100.0  # 100 Hz over 2 s
    T = np.tile(np.eye(4), (201, 1, 1))
    T[:, 0, 3] = t_traj
    t = np.array([-1e-14, 0.5, 2.0 + 2.8e-14, 2.1, -0.1])  # ns vs us clock conversions differ by ~1e-14 s
    out, ok = interpolate_poses(t_traj, T, t)
    assert ok.tolist() == [True, True, True, False, False]
    assert out[0, 0, 3] == 0.0 and out[2, 0, 3] == 2.0 and out[1, 0, 3] == pytest.approx(0.5)
