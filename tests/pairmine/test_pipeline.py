"""The mining run: output-folder policy, poses missing, nodes + merge, pairs-only, config validation."""

import json
from dataclasses import replace

import pytest

from slife import pairmine as pm
from slife.errors import SlifeError


def test_refuses_other_settings_unless_overwrite(tmp_path, proc_life, small_cfg):
    pm.run(small_cfg(strategies=("temporal",)), proc_life, tmp_path)
    pm.run(small_cfg(strategies=("temporal",), workers=2), proc_life, tmp_path)  # run-time fields may differ
    with pytest.raises(SlifeError, match="other settings.*max_gap"):
        pm.run(small_cfg(strategies=("temporal",), max_gap=9.0), proc_life, tmp_path)
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
    with pytest.raises(ValueError):
        pm.MineConfig(j_min=0.8, j_max=0.2)
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
