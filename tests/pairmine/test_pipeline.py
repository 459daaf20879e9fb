"""The mining run: output-folder policy, poses missing, nodes + merge (+ overwrite), pairs-only, config validation,
the two-phase writer of --workers (frames decoded once, same bytes, resume after SIGKILL, spool removed)."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace

import numpy as np
import pytest

from writer_script import slow_writer_script
from slife import pairmine as pm
from slife.errors import SlifeError


def test_refuses_other_settings_unless_overwrite(tmp_path, proc_life, small_cfg):
    pm.run(small_cfg(strategies=("temporal",)), proc_life, tmp_path)
    pm.run(small_cfg(strategies=("temporal",), workers=2), proc_life, tmp_path)  # run-time fields may differ
    with pytest.raises(SlifeError, match=r"other settings \(max_gap differs: 5.0 -> 9.0\); pass --overwrite"):
        pm.run(small_cfg(strategies=("temporal",), max_gap=9.0), proc_life, tmp_path)
    with pytest.raises(SlifeError, match=r"\(2 settings differ: max_gap 5.0 -> 9.0, min_gap 1.0 -> 2.0\)"):
        pm.run(small_cfg(strategies=("temporal",), max_gap=9.0, min_gap=2.0), proc_life, tmp_path)
    man = json.loads(pm.run(small_cfg(strategies=("temporal",), max_gap=9.0, overwrite=True), proc_life,
                            tmp_path).read_text())
    assert man["config"]["max_gap"] == 9.0
    (tmp_path / "x").mkdir()
    other = tmp_path / "x"
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SlifeError, match="not empty"):
        pm.run(small_cfg(strategies=("temporal",)), proc_life, other)


def test_no_poses(tmp_path, proc_life, small_cfg):
    life = replace(proc_life, T_world_cam=None, pose_valid=None)
    with pytest.raises(SlifeError, match="slife sfm"):
        pm.run(small_cfg(strategies=("spatial",)), life, tmp_path / "a")
    man = json.loads(pm.run(small_cfg(strategies=("spatial", "temporal")), life, tmp_path / "b").read_text())
    assert any("slife sfm" in w for w in man["warnings"])
    assert set(man["summary"]["pairs_per_strategy"]) == {"temporal"} and man["samples"] > 0
    assert man["summary"]["frames_without_pose"] == len(life)


def test_no_pairs_is_an_error_that_leaves_no_folder(tmp_path, proc_life, small_cfg):
    with pytest.raises(SlifeError, match="no pairs found.*temporal 0"):
        pm.run(small_cfg(strategies=("temporal",), min_gap=1e5, max_gap=2e5), proc_life, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_failed_run_does_not_block_the_corrected_one(tmp_path, proc_life, small_cfg):
    out = tmp_path / "o"
    with pytest.raises(SlifeError, match="slife sfm"):
        pm.run(small_cfg(strategies=("spatial",)), replace(proc_life, T_world_cam=None, pose_valid=None), out)
    assert not out.exists()
    out.mkdir()  # an older version wrote mine.json before failing: a folder holding only it counts as empty
    (out / "mine.json").write_text(json.dumps({"life": "elsewhere", "config": {}}))
    man = json.loads(pm.run(small_cfg(strategies=("temporal",)), proc_life, out).read_text())
    assert man["samples"] > 0 and json.loads((out / "mine.json").read_text())["life"] != "elsewhere"
    (tmp_path / "f").write_text("x")
    with pytest.raises(SlifeError, match="is a file"):
        pm.run(small_cfg(strategies=("temporal",)), proc_life, tmp_path / "f")


def test_a_life_without_pixels_needs_pairs_only(tmp_path, proc_life, small_cfg):
    life = replace(proc_life, sources=[])
    with pytest.raises(SlifeError, match="--pairs-only"):
        pm.run(small_cfg(strategies=("temporal",)), life, tmp_path / "o")
    pm.run(small_cfg(strategies=("temporal",), pairs_only=True), life, tmp_path / "o")
    rows = [json.loads(r) for r in (tmp_path / "o" / "pairs.jsonl").read_text().splitlines()]
    names = [line.split() for line in (tmp_path / "o" / "pairs.txt").read_text().splitlines()]
    assert all(n == [f"frame/{r['frame_a']:06d}", f"frame/{r['frame_b']:06d}"] for r, n in zip(rows, names))


def test_rerun_rewrites_truncated_shards_and_refuses_a_changed_life(tmp_path, proc_life, small_cfg):
    cfg = small_cfg(strategies=("temporal",), pairs_per_shard=25)
    out = tmp_path / "o"
    man = json.loads(pm.run(cfg, proc_life, out).read_text())
    tar = out / man["shards"][1]["name"]
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    again = json.loads(pm.run(cfg, proc_life, out).read_text())
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in man["shards"]]
    assert tar.stat().st_size == man["shards"][1]["bytes"]
    moved = proc_life.T_world_cam.copy()
    moved[:, :3, 3] += 0.01  # the same life path, other content (e.g. rendered again)
    life2 = replace(proc_life, T_world_cam=moved)
    runs = {json.loads(p.read_text())["run"] for p in out.glob("pairs-*.stats.json")}
    with pytest.raises(SlifeError, match="recording 'day0' changed since generation 0.*--overwrite"):
        pm.run(cfg, life2, out)
    assert runs == {json.loads(p.read_text())["run"] for p in out.glob("pairs-*.stats.json")}  # nothing written
    pm.run(replace(cfg, overwrite=True), life2, out)
    assert not runs & {json.loads(p.read_text())["run"] for p in out.glob("pairs-*.stats.json")}


def test_nodes_then_merge_equal_one_run(tmp_path, proc_life, small_cfg):
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_per_shard=25)
    one = json.loads(pm.run(cfg, proc_life, tmp_path / "one").read_text())
    out = tmp_path / "nodes"
    for rank in (1, 0, 2):
        pm.run(replace(cfg, num_nodes=3, node_rank=rank), proc_life, out)
    man = json.loads(pm.run(replace(cfg, num_nodes=3), proc_life, out, merge=True).read_text())
    assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in one["shards"]]
    assert man["summary"]["pairs_per_strategy"] == one["summary"]["pairs_per_strategy"]


def test_merge_before_nodes_finish_is_an_error(tmp_path, proc_life, small_cfg):
    cfg = small_cfg(strategies=("temporal",), pairs_per_shard=25, num_nodes=2)
    pm.run(cfg, proc_life, tmp_path)
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(SlifeError, match="not complete"):
        pm.run(cfg, proc_life, tmp_path, merge=True)


def test_pairs_only_decodes_nothing(tmp_path, proc_life, small_cfg, monkeypatch):
    from slife.lives.life import Life

    monkeypatch.setattr(Life, "iter_frames", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    man = json.loads(pm.run(small_cfg(strategies=("spatial", "temporal"), pairs_only=True), proc_life,
                            tmp_path).read_text())
    rows = (tmp_path / "pairs.jsonl").read_text().splitlines()
    txt = (tmp_path / "pairs.txt").read_text().splitlines()
    assert len(rows) == len(txt) == man["summary"]["pairs"] > 0
    assert txt[0].split()[0].startswith("day") and man["shards"] == []


def test_max_pairs_holds_across_strategy_sets(tmp_path, proc_life, small_cfg):
    for strat in (("spatial",), ("temporal",), ("spatial", "temporal")):
        man = json.loads(pm.run(small_cfg(strategies=strat, max_pairs=60, pairs_only=True), proc_life,
                                tmp_path / "+".join(strat)).read_text())
        assert man["summary"]["pairs"] == 60


def test_config_validation():
    with pytest.raises(SlifeError, match="unknown strategy"):
        pm.MineConfig(strategies=("spatial", "magic"))
    with pytest.raises(SlifeError, match="--j-min"):
        pm.MineConfig(j_min=0.8, j_max=0.2)
    for bad, opt in ((dict(fps=-1), "--fps"), (dict(pairs_per_shard=0), "--pairs-per-shard"),
                     (dict(workers=0), "--workers"), (dict(num_nodes=2, node_rank=2), "--node-rank")):
        with pytest.raises(SlifeError, match=opt):
            pm.MineConfig(**bad)
    with pytest.raises(SlifeError, match="ratio"):
        pm.MineConfig(strategies=("spatial",), ratios=(("temporal", 1.0),))
    assert pm.parse_strategies("spatial+temporal") == ("spatial", "temporal")
    assert pm.parse_ratios("spatial=0.25,temporal=0.75") == (("spatial", 0.25), ("temporal", 0.75))


def test_node_defaults_from_environment(monkeypatch):
    for k in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_NNODES",
              "SLURM_NODEID", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(k, raising=False)
    assert (pm.default_num_nodes(), pm.default_node_rank()) == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert (pm.default_num_nodes(), pm.default_node_rank()) == (4, 2)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "6")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert (pm.default_num_nodes(), pm.default_node_rank()) == (8, 5)


def _log_decodes(monkeypatch, log_path):
    """Append every frame id `Life.iter_frames` yields to `log_path` (one line each, from any forked process)."""
    from slife.lives.life import Life

    real = Life.iter_frames

    def logged(self, ids, *a, **k):
        for i, rgb in real(self, ids, *a, **k):
            with open(log_path, "a") as f:
                f.write(f"{i}\n")
            yield i, rgb

    monkeypatch.setattr(Life, "iter_frames", logged)


def _decoded(log_path) -> list[int]:
    return [int(x) for x in log_path.read_text().split()] if log_path.exists() else []


def _stats_sha(folder):
    return {p.name: json.loads(p.read_text())["sha256"] for p in sorted(folder.glob("pairs-*.stats.json"))}


def test_workers_decode_each_frame_once(tmp_path, proc_life, small_cfg, monkeypatch):
    from slife.pairmine import pipeline

    monkeypatch.setattr(pipeline, "PART_FRAMES", 16)  # several parts per worker, frames far apart across parts
    cfg = small_cfg(strategies=("spatial", "temporal", "augmented"))
    one = json.loads(pm.run(cfg, proc_life, tmp_path / "one").read_text())
    log_path = tmp_path / "decoded.txt"
    _log_decodes(monkeypatch, log_path)
    steps = []
    two = json.loads(pm.run(replace(cfg, workers=2), proc_life, tmp_path / "two", progress=steps.append).read_text())
    assert sum(steps) == two["summary"]["pairs"] and len(steps) > 4  # progress counts pairs over both phases
    ids = _decoded(log_path)
    assert len(ids) == len(set(ids)) == one["summary"]["frames_used"] > 40  # each frame decoded once
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    assert _stats_sha(tmp_path / "one") == _stats_sha(tmp_path / "two") and len(two["shards"]) > 3
    assert not (tmp_path / "two" / ".frames").exists()  # spool removed once the set is complete


def test_workers_same_bytes_with_video_and_depth(tmp_path, tiny_life):
    cfg = pm.MineConfig(strategies=("temporal", "random"), fps=0, short_side=24, min_gap=0.1, max_gap=0.5,
                        pairs_per_shard=10)
    one = json.loads(pm.run(cfg, tiny_life, tmp_path / "one").read_text())
    two = json.loads(pm.run(replace(cfg, workers=2), tiny_life, tmp_path / "two").read_text())
    assert len(one["shards"]) > 3 and [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    with tarfile.open(tmp_path / "two" / "pairs-000000.tar") as tf:
        assert any(m.name.endswith("src.depth.png") for m in tf)


def test_depth_at_the_native_size_is_stored_to_the_millimetre(tmp_path, tiny_life):
    import io

    from PIL import Image

    cfg = pm.MineConfig(strategies=("temporal",), fps=0, short_side=48, min_gap=0.1, max_gap=0.5, pairs_per_shard=50)
    man = json.loads(pm.run(cfg, tiny_life, tmp_path / "o").read_text())
    assert [s["name"] for s in man["life"]["sources"]] == ["video"]
    with tarfile.open(tmp_path / "o" / "pairs-000000.tar") as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
    key = sorted(k for k in members if k.endswith(".json"))[0][: -len(".json")]
    frame = json.loads(members[key + ".json"])["frame_a"]
    stored = np.asarray(Image.open(io.BytesIO(members[key + ".src.depth.png"])))
    life = np.asarray(Image.open(tiny_life / "depth" / f"{frame:06d}.png"))
    assert stored.shape == life.shape and np.array_equal(stored, life)  # rounded, not truncated, to the mm


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_depth_maps_are_counted(tmp_path, tiny_life, workers):
    import shutil

    life = tmp_path / "life"
    shutil.copytree(tiny_life, life)
    (life / "depth" / "000003.png").write_bytes(b"junk")
    cfg = pm.MineConfig(strategies=("temporal",), fps=0, short_side=24, min_gap=0.1, max_gap=0.5,
                        pairs_per_shard=10, workers=workers)
    man = json.loads(pm.run(cfg, life, tmp_path / "o").read_text())
    rows = [json.loads(r) for r in (tmp_path / "o" / "pairs.jsonl").read_text().splitlines()]
    with_3 = sum(3 in (r["frame_a"], r["frame_b"]) for r in rows)
    assert man["summary"]["pairs_without_depth"] == with_3 > 0
    depth = 0
    for t in sorted((tmp_path / "o").glob("pairs-*.tar")):
        with tarfile.open(t) as tf:
            depth += sum(m.name.endswith("src.depth.png") for m in tf)
    assert depth == man["samples"] - with_3


SPOOL_WRITER = slow_writer_script(0.02, workers=2, part_frames=12)


@pytest.mark.parametrize("resume_workers", [2, 1])
def test_workers_killed_in_spooling_resume_without_decoding_twice(tmp_path, proc_images, proc_life, small_cfg,
                                                                  monkeypatch, resume_workers):
    from slife.pairmine import pipeline, shards

    cfg = small_cfg(strategies=("spatial", "temporal"), workers=2)
    ref = json.loads(pm.run(replace(cfg, workers=1), proc_life, tmp_path / "ref").read_text())
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", SPOOL_WRITER, str(proc_images), str(out)],
                            start_new_session=True)  # its own process group: the pool workers die with it
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / ".frames").glob("part-*.json"))) < 2:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # finished before the kill: the asserts below say so
        pass
    finally:
        proc.wait()
    parts = sorted((out / ".frames").glob("part-*.json"))
    spool = shards.Spool(out / ".frames", json.loads(parts[0].read_text())["run"] if parts else "")
    done = set(spool.asked.tolist())
    assert len(done) >= 2 and not list(out.glob("pairs-*.stats.json")), "not killed while spooling"
    assert len(done) < ref["summary"]["frames_used"]
    log_path = tmp_path / "decoded.txt"
    _log_decodes(monkeypatch, log_path)
    monkeypatch.setattr(pipeline, "PART_FRAMES", 12)
    man = json.loads(pm.run(replace(cfg, workers=resume_workers), proc_life, out).read_text())  # resume
    again = _decoded(log_path)
    assert not done & set(again), "frames of complete spool parts were decoded again"
    assert len(done) + len(set(again)) == ref["summary"]["frames_used"]
    assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in ref["shards"]]
    assert not (out / ".frames").exists() and not list(out.glob(".*tmp*"))


def test_overwrite_with_nodes_keeps_other_nodes_shards(tmp_path, proc_life, small_cfg):
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_per_shard=25)
    one = json.loads(pm.run(cfg, proc_life, tmp_path / "one").read_text())
    out = tmp_path / "nodes"
    old = json.loads(pm.run(small_cfg(strategies=("temporal",), pairs_per_shard=5), proc_life, out).read_text())
    n_new = len(one["shards"])
    assert len(old["shards"]) > n_new >= 3  # old shards in every node's range, and beyond the new count

    def files(rank):
        ids = [int(s) for s in np.array_split(np.arange(n_new), 3)[rank]]
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for s in ids
                for p in (out / f"pairs-{s:06d}.tar", out / f"pairs-{s:06d}.stats.json")}

    def node(rank):
        return replace(cfg, num_nodes=3, node_rank=rank, overwrite=True, workers=2)
    pm.run(node(1), proc_life, out)
    first = files(1)
    assert not (out / ".frames-node1").exists()  # its spool is gone once its shards are done
    pm.run(node(0), proc_life, out)  # rank 0 removes the old manifest and old shards beyond the new count
    assert files(1) == first  # ... but not node 1's fresh shards
    assert not (out / "manifest.json").exists()  # node 2's range still holds old shards: not complete
    assert not (out / f"pairs-{n_new:06d}.tar").exists()
    both = {**files(0), **first}
    pm.run(node(2), proc_life, out)  # the last node completes the set and writes the manifest
    assert {**files(0), **files(1)} == both
    for merged in (json.loads((out / "manifest.json").read_text()),
                   json.loads(pm.run(replace(cfg, num_nodes=3), proc_life, out, merge=True).read_text())):
        assert [s["sha256"] for s in merged["shards"]] == [s["sha256"] for s in one["shards"]]
        assert merged["summary"]["pairs_per_strategy"] == one["summary"]["pairs_per_strategy"]
    assert sorted(p.name for p in out.glob("pairs-*.tar")) == [s["name"] for s in one["shards"]]
    assert json.loads((out / "mine.json").read_text())["config"]["pairs_per_shard"] == 25


def test_merge_refuses_shards_of_other_settings(tmp_path, proc_life, small_cfg):
    out = tmp_path / "nodes"
    pm.run(small_cfg(strategies=("temporal",), pairs_per_shard=5), proc_life, out)
    cfg = small_cfg(strategies=("temporal",), pairs_per_shard=25, num_nodes=2, overwrite=True)
    pm.run(cfg, proc_life, out)  # rank 0 only: rank 1's range still holds the old run's shards
    with pytest.raises(SlifeError, match="other settings"):
        pm.run(replace(cfg, overwrite=False), proc_life, out, merge=True)


def test_frames_used_and_coverage_count_the_pairs_written(tmp_path, proc_images, small_cfg):
    """A frame that does not decode is neither used nor covered: the counts are those of the pairs in the tars."""
    import shutil
    from slife.pairmine.procedural import make_life

    imgs = tmp_path / "imgs"
    shutil.copytree(proc_images, imgs)
    life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=imgs)
    (imgs / "day1" / "000004.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    man = json.loads(pm.run(small_cfg(strategies=("spatial", "temporal")), life, out).read_text())
    s = man["summary"]
    bad = "day1/000004.png"
    rows = [r for r in (json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines())
            if bad not in (r["name_a"], r["name_b"])]
    assert man["samples"] == len(rows) < s["pairs"]
    used = {n for r in rows for n in (r["name_a"], r["name_b"])}
    assert bad not in used and s["frames_used"] == len(used) == s["frames_sampled"] - 1
    covered = {n for r in rows if "spatial" in r["strategy"].split("+") for n in (r["name_a"], r["name_b"])}
    c = s["spatial_coverage"]
    assert c["posed_frames"] == 90 and c["with_spatial_pair"] == len(covered) <= 89
    assert man["generations"][0]["summary"]["frames_used"] == s["frames_used"]


def test_log_says_found_and_merged_counts(tmp_path, proc_life, small_cfg, caplog):
    """The log's per-strategy counts say they are found before merging; the merged counts match the manifest."""
    import logging

    with caplog.at_level(logging.INFO, logger="slife.pairmine"):
        man = json.loads(pm.run(small_cfg(strategies=("spatial", "temporal"), pairs_only=True), proc_life,
                                tmp_path).read_text())
    s = man["summary"]
    msgs = [r.getMessage() for r in caplog.records]
    assert f"spatial: {s['combine']['found']['spatial']} pairs found (before duplicates" in " ".join(msgs)
    per = {k: sum(v for lab, v in s["pairs_per_strategy"].items() if k in lab.split("+")) for k in ("spatial", "temporal")}
    assert f"{s['pairs']} pairs after merging duplicates (spatial: {per['spatial']}, temporal: {per['temporal']})" in msgs
    assert s["combine"]["found"]["spatial"] > per["spatial"]  # orientation duplicates merged
    assert f"{proc_life.name}: 90 frames, all 90 used (--fps 0)" in msgs  # was '90 sampled at all fps'
