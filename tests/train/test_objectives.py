"""The objectives through the real loop (slife/train/objectives/): each one's loss decreases on tiny shards,
resume equals an uninterrupted run, checkpoints record the objective and load for evaluation, torchrun with
two CPU processes, the CLI, and one-line errors for bad settings. CroCo's own loop tests are test_loop.py's."""

import csv
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainkit import MICRO, MICRO_DINO, MICRO_POSE, MICRO_VIT, interrupt_after, write_shards
from slife.errors import SlifeError
from slife.train import TrainConfig, preset_config, run

REPO = Path(__file__).resolve().parents[2]
BASE = dict(preset="tiny", batch_size=8, warmup_steps=3, precision="fp32", threads=1, num_workers=0,
            samples_per_epoch=64)
# objective -> (model kwargs, objective conf, shard fixture, steps, batch, lr) of its loss-decrease run
CASES = {
    "dinov2": (MICRO_VIT, MICRO_DINO, "shards", 40, 8, 1e-3),
    "egomotion": (MICRO_VIT, MICRO_POSE, "rolled_shards", 120, 16, 1e-3),
    "croco+egomotion": (MICRO, MICRO_POSE, "rolled_shards", 40, 8, 3e-3),
}


def config(name: str, **over) -> TrainConfig:
    kw, conf, _, steps, batch, lr = CASES[name]
    return TrainConfig(**{**BASE, "objective": name, "model_kwargs": kw, "objective_conf": conf, "steps": steps,
                          "batch_size": batch, "lr": lr, "save_every": steps, "log_every": 5, "preview_every": steps,
                          **over})


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, tmp_path_factory):
    """(objective, its last.pt) after its loss-decrease run."""
    name = request.param
    data = request.getfixturevalue(CASES[name][2])
    return name, run(config(name), str(data), tmp_path_factory.mktemp(name.replace("+", "_")))


def test_loss_decreases_and_numbers_are_logged(trained):
    name, last = trained
    r = rows(last.parent)
    # the first row (mean of steps 1-5) against the mean of the last third (a first try compared against the
    # first two rows: DINO's loss falls mostly within the first 5 steps, then creeps towards log K)
    first, late = r[0]["loss"], [x["loss"] for x in r[-(len(r) // 3):]]
    assert sum(late) / len(late) < 0.9 * first, (name, [x["loss"] for x in r])
    from slife.train.objectives import objective_class

    cls = objective_class(name)
    with open(last.parent / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert header[-len(cls.log_names):] == list(cls.log_names)  # the objective's numbers follow the loop's
    assert all(v == v for x in r for k, v in x.items() if k not in ("rot_err_deg", "trans_err_deg"))  # no NaN
    assert (last.parent / "previews" / f"step-{CASES[name][3]:07d}.png").stat().st_size > 500


def test_checkpoint_records_the_objective_and_loads_for_evaluation(trained):
    from slife.eval.models import load_one

    name, last = trained
    ck = torch.load(last, weights_only=True)
    kind = "croco" if name.startswith("croco") else "vit"
    assert ck["objective"] == name and ck[f"{kind}_kwargs"] == CASES[name][0]
    assert set(ck["objective_state"]) and not set(ck["objective_state"]) & {f"model.{k}" for k in ck["model"]}
    assert json.loads((last.parent / "train.json").read_text())["objective"] == name
    model, _ = load_one(last)  # what evaluations do: build what the checkpoint records
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape[:2] == (1, 16)
    if name == "dinov2":  # the exported encoder is the teacher's backbone, in timm's layout
        from test_vit import timm_layout

        assert {k: tuple(v.shape) for k, v in ck["model"].items()} == timm_layout(**MICRO_VIT)
        teacher = {k[len("teacher.backbone."):]: v for k, v in ck["objective_state"].items()
                   if k.startswith("teacher.backbone.")}
        assert not teacher  # saved once, as `model`
        student = {k[len("student.backbone."):]: v for k, v in ck["objective_state"].items()
                   if k.startswith("student.backbone.")}
        assert student.keys() == ck["model"].keys()
        assert any(not torch.equal(student[k], ck["model"][k]) for k in student)  # the EMA lags the student


@pytest.mark.parametrize("name", list(CASES))
def test_resume_equals_an_uninterrupted_run(name, request, tmp_path):
    data = str(request.getfixturevalue(CASES[name][2]))
    cfg = config(name, steps=12, save_every=6, log_every=3, preview_every=0, batch_size=8)
    ref = run(cfg, data, tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):  # stopped at step 9; last.pt was written at step 6
        run(cfg, data, tmp_path / "cut", progress=interrupt_after(9))
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == 6
    last = run(cfg, data, tmp_path / "cut")
    a, b = torch.load(ref, weights_only=True), torch.load(last, weights_only=True)
    for part in ("model", "objective_state"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.allclose(a[part][k], b[part][k], atol=1e-6, rtol=0), (part, k)
    skip = ("pairs_per_s", "data_wait_share")
    ra, rb = ([v for r in rows(tmp_path / d) for k, v in r.items() if k not in skip] for d in ("ref", "cut"))
    assert rb == pytest.approx(ra, abs=1e-5, nan_ok=True)  # metrics.csv keeps 6 digits


@pytest.mark.multiprocess
def test_torchrun_two_cpu_processes_for_each_objective(shards, rolled_shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'tests' / 'train'}", OMP_NUM_THREADS="1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(REPO / "tests" / "train" / "ddp_objectives.py"), str(shards), str(rolled_shards), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in CASES:
        out = tmp_path / name
        ck = torch.load(out / "last.pt", weights_only=True)
        assert ck["objective"] == name and ck["step"] == 3 and set(ck["rng"]) == {"rank0", "rank1"}
        assert ck["config"]["world_size"] == 2 and ck["config"]["effective_batch"] == 8
        keys = [{ln.split()[1] for ln in (out / f"keys-rank{k}.txt").read_text().splitlines()} for k in (0, 1)]
        assert keys[0] and keys[1] and not keys[0] & keys[1]  # each rank reads its own shard
        assert len(rows(out)) == 3  # only rank 0 writes metrics


def test_presets_and_recipes():
    d = preset_config("dinov2", "base")
    assert (d.objective, d.blr, d.weight_decay, d.clip_grad, d.hue) == ("dinov2", 5e-4, 0.04, 3.0, 0.1)
    assert preset_config("croco", "base") == dataclasses.replace(preset_config("croco", "base"), objective="croco")
    assert preset_config("egomotion", "large").preset == "large"
    with pytest.raises(SlifeError, match="unknown preset 'base-base' for objective dinov2 \\(known: tiny, small, base, large\\)"):
        preset_config("dinov2", "base-base")
    with pytest.raises(SlifeError, match="unknown objective 'mae'; known: croco, croco\\+egomotion, dinov2, egomotion"):
        TrainConfig(objective="mae")


def test_bad_settings_are_one_line_errors(shards, tmp_path):
    for over, msg in ((dict(objective_conf={"foo": 1}), "unknown setting\\(s\\) foo for dinov2 \\(known, with defaults: "
                                                        "local_crops=6"),
                      (dict(objective_conf={"centering": "x"}), "centering must be sinkhorn or centering"),
                      (dict(objective_conf={"local_size": 12}), "local_size 12 is not a multiple of the patch size 8"),
                      (dict(model_kwargs=dict(MICRO_VIT, enc_depth=2)), "unknown argument\\(s\\) enc_depth "
                                                                        "\\(VisionTransformer takes")):
        with pytest.raises(SlifeError, match=msg) as e:
            run(config("dinov2", **over), str(shards), tmp_path / "x")
        assert "\n" not in str(e.value)
    bare = write_shards(tmp_path / "bare", n_shards=1, per_shard=4, poses=False)
    with pytest.raises(SlifeError, match="none of the first 4 pairs has both camera poses"):
        run(config("egomotion"), str(bare), tmp_path / "y")
    croco = run(TrainConfig(model_kwargs=MICRO, **{**BASE, "steps": 1, "lr": 1e-3, "preview_every": 0}), str(shards),
                tmp_path / "z")
    with pytest.raises(SlifeError, match="checkpoint is objective 'croco', this run is 'croco\\+egomotion'"):
        run(config("croco+egomotion", steps=2), str(shards), croco.parent)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_start_dinov2_from_released_vit_weights(shards, tmp_path):
    from slife.train.vit import VisionTransformer

    torch.manual_seed(7)
    released = VisionTransformer(**MICRO_VIT).state_dict()  # as timm's state_dict of this size would be
    torch.save(released, tmp_path / "vit.pth")  # a bare state_dict, no "model" key
    last = run(config("dinov2", steps=1, resume=str(tmp_path / "vit.pth"), preview_every=0), str(shards),
               tmp_path / "ft")
    ck = torch.load(last, weights_only=True)
    assert ck["step"] == 1
    w = "blocks.0.attn.qkv.weight"  # teacher = EMA with momentum ~0.992 of a student that started there
    assert torch.allclose(ck["model"][w], released[w], atol=1e-2) and not torch.equal(ck["model"][w], released[w])


def test_cli_objective_end_to_end(shards, tmp_path):
    from typer.testing import CliRunner

    from slife.cli import app

    args = ["train", str(shards), "--out", str(tmp_path / "run"), "--objective", "dinov2", "--model-kwargs",
            json.dumps(MICRO_VIT), "--objective-conf", json.dumps(MICRO_DINO), "--steps", "2", "--batch-size", "4",
            "--threads", "1", "--num-workers", "0", "--preview-every", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "trained to step 2 of 2" in r.output
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["objective"] == "dinov2" and ck["vit_kwargs"] == MICRO_VIT and ck["config"]["weight_decay"] == 0.04
    r = CliRunner().invoke(app, args[:-2] + ["--objective-conf", '{"prototypes": 7, "nope": 1}'])
    assert r.exit_code == 2 and "unknown setting(s) nope" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["train", str(shards), "--objective", "dinov2", "--preset", "base-base"])
    assert r.exit_code == 2 and "unknown preset 'base-base'" in r.output
    r = CliRunner().invoke(app, ["train", "--help"])
    assert "--objective" in r.output and "--objective-conf" in r.output and "Sinkhorn-Knopp" in r.output
