"""slife.lives.colmap: .txt and .bin models (world-to-camera inverted), tracks CSR, images dir, real model."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from lives_scene import FX, FY, CX, CY, H, W, assert_projects_like, make_scene, rotmat_to_wxyz, write_png
from slife.errors import SlifeError
from slife.lives import detect_format, read_life
from slife.lives.geometry import project_points

DATA = Path(__file__).parents[2] / "../shared/data"


def write_colmap_txt(model: Path, sc, skip_image=None):
    """Classic COLMAP text model (no rigs/frames files) observing every visible scene point."""
    model.mkdir(parents=True, exist_ok=True)
    (model / "cameras.txt").write_text(f"# Camera list\n1 PINHOLE {W} {H} {FX!r} {FY!r} {CX!r} {CY!r}\n")
    lines = ["# Image list"]
    obs = {j: [] for j in range(len(sc.points))}
    for i in range(sc.n):
        if i == skip_image:
            continue
        Tcw = np.linalg.inv(sc.T_world_cam[i])
        q = rotmat_to_wxyz(Tcw[:3, :3]).tolist()
        t = Tcw[:3, 3].tolist()
        lines.append(f"{i + 1} {q[0]!r} {q[1]!r} {q[2]!r} {q[3]!r} {t[0]!r} {t[1]!r} {t[2]!r} 1 cam/{i:04d}.png")
        uv = sc.pixels(i)[0].tolist()
        vis = np.flatnonzero(sc.visible(i))
        pts2d = []
        for k, j in enumerate(vis):
            pts2d.append(f"{uv[j][0]!r} {uv[j][1]!r} {j + 1}")
            obs[j].append((i + 1, k))
        lines.append(" ".join(pts2d))
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    pl = ["# 3D point list"]
    for j, X in enumerate(sc.points.tolist()):
        if not obs[j]:
            continue
        c = sc.colors[j].tolist()
        track = " ".join(f"{a} {b}" for a, b in obs[j])
        pl.append(f"{j + 1} {X[0]!r} {X[1]!r} {X[2]!r} {c[0]} {c[1]} {c[2]} 0.5 {track}")
    (model / "points3D.txt").write_text("\n".join(pl) + "\n")
    for i in range(sc.n):
        write_png(model.parent.parent / "images" / "cam" / f"{i:04d}.png", sc.image(i))


def test_colmap_txt_and_bin(tmp_path):
    import pycolmap

    sc = make_scene()
    proj = tmp_path / "proj"
    write_colmap_txt(proj / "sparse" / "0", sc)
    assert detect_format(proj) == "colmap"
    life = read_life(proj)
    assert life.format == "colmap" and len(life) == sc.n
    assert assert_projects_like(life, sc) == sc.n
    # tracks: the ids observed in frame i are exactly the scene points visible there
    for i in range(sc.n):
        got = np.sort(life.points[life.frame_tracks(i)], axis=0)
        want = np.sort(sc.points[sc.visible(i)], axis=0)
        np.testing.assert_allclose(got, want)
    assert life.sources[0].name == "cam" and life.sources[0].files[0].is_file()
    np.testing.assert_allclose(life.t, np.arange(sc.n) / 30.0)
    # the same model as .bin (pycolmap writes COLMAP's binary format)
    rec = pycolmap.Reconstruction(str(proj / "sparse" / "0"))
    binm = tmp_path / "bin" / "sparse" / "0"
    binm.mkdir(parents=True)
    rec.write_binary(str(binm))
    lb = read_life(binm, format="colmap")
    assert assert_projects_like(lb, sc) == sc.n
    assert lb.tracks[0][-1] == life.tracks[0][-1]
    # a damaged binary model: the error names the file; a missing file is named too
    from slife.lives.colmap import _bad_binary_file

    assert _bad_binary_file(binm) is None
    for name in ("images.bin", "points3D.bin"):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(binm, bad)
        data = (bad / name).read_bytes()
        (bad / name).write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(SlifeError, match=rf"bad-{name}/{name}: truncated"):
            read_life(bad, format="colmap")
    (tmp_path / "bad-images.bin" / "cameras.bin").unlink()
    with pytest.raises(SlifeError, match=r"incomplete COLMAP model \(cameras.bin missing\)"):
        read_life(tmp_path / "bad-images.bin")


def test_colmap_unregistered_and_bad(tmp_path):
    sc = make_scene(n=5)
    m = tmp_path / "m" / "sparse" / "0"
    write_colmap_txt(m, sc, skip_image=2)  # image 2 is on disk but not in the model (SfM did not register it)
    life = read_life(m)
    assert len(life) == 5 and life.pose_valid.tolist() == [True, True, False, True, True]
    assert life.counts == {"poses_missing": 1} and life.frame_tracks(2).size == 0 and life.camera(2) is not None
    np.testing.assert_allclose(life.t, np.arange(5) / 30.0)  # kept in its place, for temporal pairs
    from slife.pairmine import MineConfig
    from slife.pairmine.temporal import find_pair_arrays

    a, b, _ = find_pair_arrays(life, MineConfig(min_gap=0.01, max_gap=0.04, temporal_per_frame=0),
                               np.random.default_rng(0))
    assert {(1, 2), (2, 3)} <= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    (m.parent.parent / "images" / "cam" / "0002.png").unlink()
    life = read_life(m)
    assert len(life) == 4 and life.pose_valid.all()
    np.testing.assert_allclose(life.t, np.array([0, 1, 3, 4]) / 30.0)  # frame numbers in the names keep the gap
    (m / "images.txt").write_text("1 0.5 0.5 0.5\n")
    with pytest.raises(SlifeError, match=r"sparse/0: unreadable COLMAP model"):
        read_life(m)


def test_real_colmap_model_with_rigs_and_frames():
    d = DATA / "tum_fr2_desk" / "colmap_sparse_derived"
    if not d.is_dir():
        pytest.skip("shared data tum_fr2_desk/ absent")
    life = read_life(d)
    assert life.format == "colmap" and len(life) == 20 and life.pose_valid.all()
    assert len(life.points) == 2434 and life.camera(0).model == "FULL_OPENCV"
    assert life.meta["images_dir"].endswith("tum_fr2_desk/rgb")
    np.testing.assert_allclose(life.t[0], 1311868169.163498)
    # each track point projects near its 2D observation (COLMAP reports 0.73 px mean reprojection error)
    import pycolmap

    rec = pycolmap.Reconstruction(str(d))
    im = sorted(rec.images.values(), key=lambda im: im.name)[3]
    obs = np.array([p.xy for p in im.points2D if p.has_point3D()])
    X = life.points[life.frame_tracks(3)]
    uv, z, vis = project_points(life.T_world_cam[3], life.camera(3), X)
    assert vis.mean() > 0.99
    assert np.median(np.linalg.norm(uv - obs, axis=1)) < 1.0
    img = dict(life.iter_frames([3], short_side=240))[3]
    assert img.shape == (240, 320, 3)


def test_colmap_log_only_with_verbose():
    """COLMAP logs through glog straight to stderr: its lines (warnings too) show only when slife logs debug."""
    import subprocess
    import sys

    script = ("import logging, pycolmap\n"
              "from slife.lives.colmap import colmap_log\n"
              "log = logging.getLogger('slife.test')\n"
              "logging.getLogger('slife').setLevel(logging.DEBUG if sys.argv[1] == 'v' else logging.INFO)\n"
              "with colmap_log(log):\n"
              "    pycolmap.logging.warning('probe-warning')\n"
              "    pycolmap.logging.error('probe-error')\n"
              "pycolmap.logging.warning('probe-after')\n")
    runs = {v: subprocess.run([sys.executable, "-c", "import sys\n" + script, v], capture_output=True, text=True)
            for v in ("default", "v")}
    assert "probe-warning" not in runs["default"].stderr and "probe-error" in runs["default"].stderr
    assert "probe-warning" in runs["v"].stderr
    assert "probe-after" in runs["default"].stderr  # the level is given back afterwards
