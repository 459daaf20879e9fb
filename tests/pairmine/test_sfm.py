"""slife sfm (slife/pairmine/sfm.py, through the CLI): a two-day synthetic life, reconstructed in chunks, gets
poses that agree with its own up to a similarity; loop closure links the second day's revisit to the first, so
spatial pairs across the days are mined from the SfM model; a run killed with SIGKILL and started again
registers the same frames."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _sfm_process(life, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "slife", "sfm", str(life), "--out", str(out), *SFM_ARGS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _kill_when(proc, path, timeout=300.0, group=True, sig=signal.SIGKILL):
    """Send `sig` to `proc` (its whole process group, or with group=False the process alone) once `path` exists."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not path.exists() and proc.poll() is None:
            time.sleep(0.02)
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    finally:
        proc.wait()


def _group_gone(pgid: int, timeout: float = 30.0) -> bool:
    """Whether every process of the group `pgid` has exited within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _chunk_models(out) -> dict[str, list[set[str]]]:
    """Each chunk's models (work/map-*/<m>) as the sets of image names they register."""
    import pycolmap

    return {d.name: [{im.name for im in pycolmap.Reconstruction(str(m)).images.values() if im.has_pose}
                     for m in sorted(d.iterdir(), key=lambda p: int(p.name))]
            for d in sorted((out / "work").glob("map-*")) if d.is_dir()}


def test_sfm_killed_and_resumed_registers_the_same_frames(two_days, reconstructed, tmp_path):
    """Stopped with SIGTERM while matching (as a cluster preempts a job: no C++ stack trace from pycolmap's
    signal handler), killed while two chunks map at once in worker processes (only the main process is
    killed: its workers must die with it), then resumed with two workers: each chunk's models and the
    merged model register the same frames as the uninterrupted run that mapped one chunk after the other."""
    out = tmp_path / "killed"
    for marker, group, sig in (("matches-00000.json", True, signal.SIGTERM), ("map-00000.json", False, signal.SIGKILL)):
        proc = _sfm_process(two_days, out, "--map-workers", "2")
        _kill_when(proc, out / "work" / marker, group=group, sig=sig)
        err = proc.stderr.read().decode()
        assert proc.returncode == -sig and "stack trace" not in err, err
        assert (out / "work" / marker).exists() and not (out / "sparse" / "0").exists()
        assert _group_gone(proc.pid), "processes of the killed run still alive after 30 s"  # workers included
        if marker.startswith("map-"):  # killed while 2 of 3 chunks mapped: 2 threads in all with --threads 1, said
            assert "--map-workers 2 is more than --threads 1" in " ".join(err.split())
    proc = _sfm_process(two_days, out, "--map-workers", "2")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert "resuming" in err.decode()
    markers = [json.loads(p.read_text()) for p in sorted((out / "work").glob("map-*.json"))]
    # the killed run wrote chunk 0's marker from a worker; the resumed run maps what is left two at once, or in
    # this process when the killed run had finished all but one chunk before the kill landed
    assert len(markers) == 3 and all(m["cpu_s"] > 0 for m in markers), markers
    assert markers[0]["workers"] == 2 and all(m["workers"] in (1, 2) for m in markers), markers
    assert _chunk_models(out) == _chunk_models(reconstructed[0])
    assert _registered(out) == _registered(reconstructed[0])
    info = json.loads((out / "sfm.json").read_text())
    assert 0 < info["stages"]["mapping"]["wall_s"] <= sum(m["wall_s"] for m in markers)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:  # the parent's pid
            kids.append(int(stat.parent.name))
    return kids


def _stopped_before_mapping(done, out):
    """A copy of the finished run `done` at `out`, back to the state of a run stopped before mapping."""
    shutil.copytree(done, out)
    for p in [*(out / "work").glob("map-*"), out / "work" / "merge.json", out / "sparse"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    info = json.loads((out / "sfm.json").read_text())
    (out / "sfm.json").write_text(json.dumps({"config": info["config"], "life": info["life"], "complete": False}))
    return out


def _a_worker(proc, timeout=120.0) -> int | None:
    """The pid of a mapping worker (a spawned multiprocessing child) of `proc`, once one runs."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for kid in _children(proc.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    return kid
            except OSError:
                pass
        time.sleep(0.01)
    return None


def test_sfm_parallel_mapping_waits_for_a_locked_database(two_days, reconstructed, tmp_path):
    """COLMAP writes to the database whenever it opens it and fails at once if another process is writing:
    workers that open it while it is locked wait and try again, and still map the same models."""
    import sqlite3

    out = _stopped_before_mapping(reconstructed[0], tmp_path / "locked")
    proc = _sfm_process(two_days, out, "--map-workers", "2")
    db = sqlite3.connect(out / "database.db", isolation_level=None)
    try:
        assert _a_worker(proc) is not None, "no mapping worker seen"
        db.execute("BEGIN IMMEDIATE")  # another writer, before the workers have opened the database
        db.execute("PRAGMA user_version = 3900")
        time.sleep(2.0)
        db.execute("COMMIT")
    finally:
        db.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    markers = [json.loads(p.read_text()) for p in sorted((out / "work").glob("map-*.json"))]
    assert sum(m["db_open_retries"] for m in markers) > 0, markers
    assert _chunk_models(out) == _chunk_models(reconstructed[0])


def test_sfm_dead_mapping_worker_is_a_one_line_error(two_days, reconstructed, tmp_path):
    """A mapping worker killed from outside stops the run with a one-line error naming its chunk (exit 2, no
    traceback), and the other worker does not outlive it."""
    from typer.testing import CliRunner

    from slife.cli import app

    assert "--map-workers" in CliRunner().invoke(app, ["sfm", "--help"]).output
    out = _stopped_before_mapping(reconstructed[0], tmp_path / "dead-worker")
    proc = _sfm_process(two_days, out, "--map-workers", "2")
    worker = _a_worker(proc)
    assert worker is not None, "no mapping worker seen"
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == 2, err
    assert "mapping this chunk failed: its process died (exit code -9)" in err and "Traceback" not in err, err
    assert not (out / "sparse" / "0").exists()
    assert _group_gone(proc.pid), "a process of the failed run still alive after 30 s"


def test_sfm_real_clip_keeps_colmap_warnings_for_verbose(tmp_path):
    """On a real handheld clip COLMAP's bundle adjustment logs solver warnings; at default verbosity they stay
    out of the output (the README: COLMAP's log only with -v), slife's own summary stays."""
    import re

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


def test_sfm_on_a_grown_life_refuses_to_reuse_or_resume_the_old_reconstruction(two_days, reconstructed, tmp_path):
    """A finished reconstruction is not reused, and an unfinished one not resumed, once the life has new frames:
    the chunks are positions in the frame list, and the new day would be silently left out."""
    import shutil

    from typer.testing import CliRunner

    from slife.cli import app
    from slife.synth import append_days

    life, out = tmp_path / "life", tmp_path / "sfm"
    shutil.copytree(two_days, life)
    shutil.copytree(reconstructed[0], out)
    made = json.loads((out / "sfm.json").read_text())
    (out / "sfm.json").write_text(json.dumps({**made, "life": str(life.resolve())}))
    res = CliRunner().invoke(app, ["sfm", str(life), "--out", str(out), *SFM_ARGS])
    assert res.exit_code == 0 and "reusing it" in res.output, res.output  # unchanged: reused
    append_days(life, 1)
    res = CliRunner().invoke(app, ["sfm", str(life), "--out", str(out), *SFM_ARGS])
    assert res.exit_code == 2 and "has 96 sampled frames now" in res.output and "reconstructed from 64" in res.output
    assert len(res.output.strip().splitlines()) == 1
    (out / "sfm.json").write_text(json.dumps({**made, "life": str(life.resolve()), "complete": False}))
    res = CliRunner().invoke(app, ["sfm", str(life), "--out", str(out), *SFM_ARGS])
    assert res.exit_code == 2 and "sampled frames changed since this unfinished reconstruction" in res.output
    assert res.output.count("error:") == 1 and "Traceback" not in res.output
