"""slife sfm (slife/pairmine/sfm.py, through the CLI): a two-day synthetic life, reconstructed in chunks, gets
poses that agree with its own up to a similarity; loop closure links the second day's revisit to the first, so
spatial pairs across the days are mined from the SfM model; a run killed with SIGKILL and started again
registers the same frames."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from slife.errors import SlifeError

# 2 days x 8 s at 4 fps = 64 frames of 160x120; chunks of 24 frames (3 chunks: two merges); one thread, so
# that the reconstruction is the same on every run (with two, bundle-adjustment sums change order)
SFM_ARGS = ["--fps", "0", "--max-side", "160", "--max-features", "512", "--overlap", "5", "--threads", "1",
            "--chunk", "24", "--chunk-overlap", "4", "--loop-min-gap", "5", "--vocab-words", "256"]


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    from slife.synth import SynthConfig, run

    cfg = SynthConfig(kind="life", scene="kitchen", duration=16.0, fps=4.0, width=160, height=120, days=2,
                      texture_size=256, points=20000, depth=False, crf=18, seed=0)
    return run(cfg, tmp_path_factory.mktemp("sfm") / "two-days")


@pytest.fixture(scope="module")
def reconstructed(two_days, tmp_path_factory):
    from typer.testing import CliRunner

    from slife.cli import app

    out = tmp_path_factory.mktemp("sfm-out") / "sfm"
    res = CliRunner().invoke(app, ["sfm", str(two_days), "--out", str(out), *SFM_ARGS])
    assert res.exit_code == 0, res.output
    return out, res.output


def _registered(out) -> set[str]:
    import pycolmap

    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    return {im.name for im in rec.images.values() if im.has_pose}


def test_sfm_registers_and_matches_ground_truth(two_days, reconstructed):
    from slife.lives import read_life
    from slife.pairmine.sfm import SfmConfig, pose_error, run

    out, output = reconstructed
    model = out / "sparse" / "0"
    assert str(model) in output.replace("\n", "")
    assert "frames registered" in output and "merge" in output  # the summary table, a row per stage
    info = json.loads((out / "sfm.json").read_text())
    assert info["complete"] and info["frames"] == 64
    assert set(info["stages"]) == {"frames", "features", "words", "pairs", "matching", "mapping", "merge"}
    assert all(s["cpu_s"] >= 0 and s["wall_s"] >= 0 for s in info["stages"].values())
    assert info["pairs"]["loop"] > 0 and info["models_merged"] >= 2  # chunks were merged
    rec, gt = read_life(out), read_life(two_days)
    assert rec.format == "colmap" and rec.tracks is not None and rec.has_pixels and len(rec) == 64
    err = pose_error(gt, rec)
    assert err["registered"] >= 0.8  # most frames, of both days
    assert err["ate_median"] < 0.05 * err["extent"]
    assert info["ground_truth"]["registered"] == pytest.approx(err["registered"])
    assert info["registered"] == rec.pose_valid.sum()
    # a rerun reuses the finished model; other settings on the same folder: a one-line error
    cfg = SfmConfig(fps=0, max_side=160, max_features=512, overlap=5, num_threads=1, chunk=24, chunk_overlap=4,
                    loop_min_gap=5, vocab_words=256)
    assert run(cfg, two_days, out) == model
    with pytest.raises(SlifeError, match="other settings.*fps"):
        run(SfmConfig(fps=2, max_side=160, overlap=5, num_threads=1), two_days, out)


def test_sfm_links_the_revisit_into_spatial_pairs(two_days, reconstructed, tmp_path):
    """Day 2 revisits day 1's places: the SfM model's tracks join them, so spatial pairs join the two days,
    and those pairs are true (the frames see the same surface points in the ground-truth life)."""
    from slife import pairmine as pm
    from slife.lives import read_life
    from slife.pairmine.visibility import compute_visibility, jaccard_exact

    out, _ = reconstructed
    cfg = pm.MineConfig(strategies=("spatial",), fps=0, pairs_only=True, per_frame=0, j_min=0.05)
    pm.run(cfg, out, tmp_path / "pairs")
    pairs = [json.loads(ln) for ln in open(tmp_path / "pairs" / "pairs.jsonl")]
    day = lambda p, k: int(p[f"t_{k}"] // 86400)  # noqa: E731
    across = [p for p in pairs if day(p, "a") != day(p, "b")]
    assert len(across) >= 10, f"{len(across)} of {len(pairs)} spatial pairs join the two days"
    gt = read_life(two_days)
    index = {round(float(t), 6): i for i, t in enumerate(gt.t)}
    a = np.array([index[round(p["t_a"], 6)] for p in across])
    b = np.array([index[round(p["t_b"], 6)] for p in across])
    j = jaccard_exact(compute_visibility(gt, voxel=0.1), a, b)
    assert np.mean(j > 0.05) > 0.9, j  # the frames of each pair see the same place


def test_sfm_merge_ties_tracks_across_chunks(reconstructed):
    """The merge triangulates the matches between frames that different chunks mapped: the merged model has
    points whose tracks hold frames that only different chunks mapped; two rounds of bundle adjustment."""
    import pycolmap

    out, _ = reconstructed
    merge = json.loads((out / "work" / "merge.json").read_text())
    assert merge["points_created"] > 0 and len(merge["ba_iterations"]) == 2
    rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    chunk_of = {}  # frames mapped by one chunk only (not in an overlap): image name -> chunk
    for d in sorted((out / "work").glob("map-*")):
        if d.is_dir():
            for m in d.iterdir():
                for im in pycolmap.Reconstruction(str(m)).images.values():
                    chunk_of.setdefault(im.name, set()).add(d.name)
    only = {n: next(iter(c)) for n, c in chunk_of.items() if len(c) == 1}
    names = {i: im.name for i, im in rec.images.items()}
    across = sum(len({only.get(names[e.image_id]) for e in p.track.elements} - {None}) >= 2
                 for p in rec.points3D.values())
    assert across >= 20, f"{across} of {rec.num_points3D()} points tie frames of different chunks"


def _sfm_process(life, out):
    return subprocess.Popen([sys.executable, "-m", "slife", "sfm", str(life), "--out", str(out), *SFM_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_when(proc, path, timeout=300.0):
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not path.exists() and proc.poll() is None:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        proc.wait()


def test_sfm_killed_and_resumed_registers_the_same_frames(two_days, reconstructed, tmp_path):
    out = tmp_path / "killed"
    # killed once while matching, once while mapping: each time a chunk is in progress
    for marker in ("matches-00000.json", "map-00000.json"):
        proc = _sfm_process(two_days, out)
        _kill_when(proc, out / "work" / marker)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        assert (out / "work" / marker).exists() and not (out / "sparse" / "0").exists()
    proc = _sfm_process(two_days, out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert "resuming" in err.decode()
    assert _registered(out) == _registered(reconstructed[0])


def test_sfm_real_clip_keeps_colmap_warnings_for_verbose(tmp_path):
    """On a real handheld clip COLMAP's bundle adjustment logs solver warnings; at default verbosity they stay
    out of the output (the README: COLMAP's log only with -v), slife's own summary stays."""
    import re
    from pathlib import Path

    clip = Path(__file__).resolve().parents[2] / "../shared/data/videos/pillow.mp4"
    if not clip.is_file():
        pytest.skip("shared data videos/pillow.mp4 absent")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "pillow.mp4").symlink_to(clip.resolve())
    r = subprocess.run([sys.executable, "-m", "slife", "sfm", str(tmp_path / "v"), "--out", str(tmp_path / "sfm"),
                        "--fps", "2", "--max-side", "320"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not [ln for ln in r.stderr.splitlines() if re.match(r"[IWE]\d{8} ", ln)], r.stderr
    assert "frames registered" in r.stderr
