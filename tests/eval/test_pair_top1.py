"""`slife top1`: top-1 patch correspondence for encoders of any objective, beside its controls."""

import json

import pytest
from typer.testing import CliRunner

from slife.cli import app

from .models import objective_checkpoint, tiny_checkpoint
from .shards import write_pair_shards

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("top1")
    return (write_pair_shards(d / "shards", num_pairs=6), tiny_checkpoint(d / "croco.pt", seed=1),
            objective_checkpoint(d / "dino.pt", "dinov2", seed=2))


def test_cli_top1_scores_croco_and_vit_beside_controls(tmp_path, setup):
    shards, croco, dino = setup
    out = tmp_path / "out"
    r = runner.invoke(app, ["top1", str(croco), str(dino), "--pairs", str(shards), "--out", str(out),
                            "--num-pairs", "6", "--untrained-seeds", "0,1"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "top1.json").read_text())
    m = rep["models"]
    # one untrained control per seed and architecture among the checkpoints
    assert list(m) == ["croco", "dino", "untrained-s0", "untrained-s1", "untrained-vit-s0",
                       "untrained-vit-s1"]
    assert {v["method"] for v in m.values()} == {"features"}
    assert [v["kind"] for v in m.values()] == ["model"] * 2 + ["untrained"] * 4
    for v in m.values():
        assert 0 <= v["all"] <= 1 and 0 <= v["displaced"] <= 1
    assert rep["num_pairs"] == 6 and rep["grid"] == [4, 4] and 0 < rep["displaced_share"] < 1
    assert rep["same_position"]["displaced"] == 0.0  # by construction
    assert 0 < rep["chance"] < 1
    assert "same-position (control)" in r.output and "chance (control)" in r.output
    assert "…" not in r.output and "untrained-vit-s1" in r.output  # an 80-column console cuts nothing


def test_top1_attention_is_the_top1_that_cas_reports(tmp_path, setup):
    shards, croco, _ = setup
    r = runner.invoke(app, ["top1", str(croco), "--pairs", str(shards), "--out", str(tmp_path / "t"),
                            "--num-pairs", "6", "--method", "auto", "--untrained-seeds", "0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["cas", str(croco), "--pairs", str(shards), "--out", str(tmp_path / "c"), "--k", "3",
                            "--num-pairs", "6", "--untrained-seeds", "0,1"])
    assert r.exit_code == 0, r.output
    top1 = json.loads((tmp_path / "t" / "top1.json").read_text())
    cas = json.loads((tmp_path / "c" / "cas.json").read_text())["ground_truth"]
    assert top1["models"]["croco"]["method"] == "attention"
    assert top1["models"]["croco"]["displaced"] == cas["accuracy"]["croco"]["displaced"]
    assert top1["models"]["croco"]["all"] == cas["accuracy"]["croco"]["all"]
    assert top1["models"]["untrained-s0"]["displaced"] == cas["accuracy"]["untrained-s0"]["displaced"]
    assert top1["chance"] == cas["accuracy_chance"]
    for k in ("beyond_position", "beyond_position_displaced"):  # the same chance-corrected top-1 in both
        assert top1["models"]["croco"][k] == cas["accuracy"]["croco"][k]
    assert top1["position_prior"] == cas["position_prior"]


def test_cli_top1_attention_on_a_vit_is_a_one_line_error(tmp_path, setup):
    shards, _, dino = setup
    r = runner.invoke(app, ["top1", str(dino), "--pairs", str(shards), "--out", str(tmp_path / "o"),
                            "--method", "attention"])
    assert r.exit_code == 2 and "no decoder cross-attention" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(app, ["top1", str(dino), "--pairs", str(shards), "--out", str(tmp_path / "o"),
                            "--method", "nearest"])
    assert r.exit_code == 2 and "method must be one of" in r.output and len(r.output.strip().splitlines()) == 1
