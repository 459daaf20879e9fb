"""The training loop end to end on tiny shards and a micro CroCo: learning, exact resume (also after a
SIGKILL), checkpoints, NaN stop, bad input, torchrun with two CPU processes, and the CLI."""

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainkit import MICRO, interrupt_after
from slife.errors import SlifeError
from slife.train import TrainConfig, run

REPO = Path(__file__).resolve().parents[2]
STEPS = 40
CFG = TrainConfig(preset="tiny", model_kwargs=MICRO, steps=STEPS, batch_size=8, lr=3e-3, warmup_steps=5,
                  precision="fp32", threads=1, num_workers=0, save_every=10, keep_every=20, log_every=5,
                  preview_every=20, samples_per_epoch=64)
CLI_ARGS = ["--preset", "tiny", "--croco-kwargs", json.dumps(MICRO), "--steps", str(STEPS), "--batch-size", "8",
            "--lr", "3e-3", "--warmup-steps", "5", "--precision", "fp32", "--threads", "1", "--num-workers", "0",
            "--save-every", "10", "--keep-every", "20", "--log-every", "5", "--preview-every", "20",
            "--samples-per-epoch", "64"]


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def _same_weights(a: Path, b: Path):
    ma, mb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert ma["step"] == mb["step"]
    for k in ma["model"]:
        assert torch.allclose(ma["model"][k], mb["model"][k], atol=1e-6, rtol=0), k
    return ma, mb


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    """One uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("ref")
    return run(CFG, str(shards), out)


def test_learns_and_writes_its_files(reference):
    out = reference.parent
    losses = _losses(out)
    assert [s for s, _ in losses] == list(range(5, STEPS + 1, 5))
    first, last = losses[0][1], sum(v for _, v in losses[-3:]) / 3
    assert last < 0.85 * first, losses  # per-patch normalised MSE starts near 1
    names = {p.name for p in out.iterdir()}
    assert {"last.pt", "step-0000020.pt", "step-0000040.pt", "metrics.csv", "train.json", "previews", "tb"} <= names
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step-0000020.png", "step-0000040.png"]
    with open(out / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["pairs_per_s"]) > 0 and 0 <= float(row["data_wait_share"]) <= 1
    for p in out.glob("*.pt"):  # every checkpoint loads with weights_only=True and has the DESIGN.md keys
        ck = torch.load(p, weights_only=True)
        assert {"model", "croco_kwargs", "optimizer", "scaler", "step", "epoch", "rng", "data", "config",
                "slife_version"} <= set(ck)
    ck = torch.load(reference, weights_only=True)
    assert ck["step"] == STEPS and ck["croco_kwargs"] == MICRO and ck["epoch"] == STEPS // 8
    assert ck["config"]["lr"] == 3e-3 and ck["config"]["blr"] == CFG.blr and ck["config"]["lr_abs"] == 3e-3
    from slife.train.checkpoint import load_model

    model, _ = load_model(reference)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert run(CFG, str(shards_of(reference)), out) == reference  # nothing left to do


def shards_of(last: Path) -> str:
    return json.loads((last.parent / "train.json").read_text())["config"]["shards"]


def test_interrupted_run_equals_uninterrupted(reference, shards, tmp_path):
    with pytest.raises(KeyboardInterrupt):  # stopped at step 25; last.pt was written at step 20
        run(CFG, str(shards), tmp_path, progress=interrupt_after(25))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 20
    last = run(CFG, str(shards), tmp_path)  # --resume auto
    _same_weights(reference, last)
    a, b = _losses(tmp_path), _losses(reference.parent)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert [v for _, v in a] == pytest.approx([v for _, v in b], abs=1e-5)  # csv keeps 6 digits


def test_resume_path_given_again_continues_the_runs_own_progress(reference, shards, tmp_path):
    cfg = dataclasses.replace(CFG, resume=str(reference.parent / "step-0000020.pt"))
    with pytest.raises(KeyboardInterrupt):  # the resume call, then steps 21..32: last.pt was written at step 30
        run(cfg, str(shards), tmp_path, progress=interrupt_after(13))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 30
    seen = []
    last = run(cfg, str(shards), tmp_path, progress=lambda n=1, **kw: seen.append(n))  # the same command again
    assert seen[0] == 30 and len(seen) == 1 + STEPS - 30  # from its own last.pt, not from step 20 again
    _same_weights(reference, last)


def test_windows_and_snapshots_not_aligned_with_saves(shards, tmp_path):
    cfg = dataclasses.replace(CFG, log_every=4, keep_every=15, preview_every=0)  # save_every 10
    ref = run(cfg, str(shards), tmp_path / "ref")
    assert {p.name for p in ref.parent.glob("step-*.pt")} == {"step-0000015.pt", "step-0000030.pt"}
    with pytest.raises(KeyboardInterrupt):  # last.pt was written at step 10, inside the metrics window of steps 9-12
        run(cfg, str(shards), tmp_path / "int", progress=interrupt_after(14))
    assert torch.load(tmp_path / "int" / "last.pt", weights_only=True)["step"] == 10
    run(cfg, str(shards), tmp_path / "int")

    def rows(d):
        with open(d / "metrics.csv") as f:
            return [(int(r["step"]), float(r["loss"]), float(r["grad_norm"])) for r in csv.DictReader(f)]

    a, b = rows(tmp_path / "int"), rows(ref.parent)
    assert [r[0] for r in a] == [r[0] for r in b] == list(range(4, STEPS + 1, 4))
    assert [v for r in a for v in r[1:]] == pytest.approx([v for r in b for v in r[1:]], abs=1e-5)

    # stopped by its --steps off the log grid (inside the warmup, so the weights go on exactly), then continued:
    # the last row of the short run (step 5) gives way to the window of steps 5-8 that the continued run logs
    run(dataclasses.replace(cfg, steps=5), str(shards), tmp_path / "short")
    assert [r[0] for r in rows(tmp_path / "short")] == [4, 5]
    _same_weights(ref, run(cfg, str(shards), tmp_path / "short"))
    a = rows(tmp_path / "short")
    assert [r[0] for r in a] == [r[0] for r in b]
    assert [v for r in a for v in r[1:]] == pytest.approx([v for r in b for v in r[1:]], abs=1e-5)


def test_sigkilled_run_resumes_exactly(reference, shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "slife", "train", str(shards), "--out", str(tmp_path), *CLI_ARGS]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (tmp_path / "step-0000020.pt").exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    step = torch.load(tmp_path / "last.pt", weights_only=True)["step"]
    assert 20 <= step < STEPS
    (tmp_path / ".last.pt.12345.tmp").write_bytes(b"half a checkpoint")  # as a kill during a save leaves it
    last = run(CFG, str(shards), tmp_path)
    _same_weights(reference, last)
    assert not list(tmp_path.glob(".*.tmp"))


def test_nan_loss_stops_with_last_good_checkpoint(shards, tmp_path, monkeypatch):
    import slife.train.loss as loss_mod

    real = loss_mod.MaskedMSE

    class NaNAfter(real):
        calls = 0

        def forward(self, *a):
            NaNAfter.calls += 1
            out = super().forward(*a)
            return out * float("nan") if NaNAfter.calls > 12 else out

    monkeypatch.setattr(loss_mod, "MaskedMSE", NaNAfter)
    with pytest.raises(SlifeError, match=r"loss became nan at step 12.*last.pt \(step 10\) is intact"):
        run(dataclasses.replace(CFG, steps=20), str(shards), tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 10


def test_bad_input(reference, shards, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference.parent, out)
    other = dict(MICRO, enc_depth=1)
    with pytest.raises(SlifeError, match="checkpoint model differs from this run's \\(enc_depth\\)"):
        run(dataclasses.replace(CFG, model_kwargs=other, steps=STEPS + 5), str(shards), out)
    with pytest.raises(SlifeError, match="checkpoint is preset 'tiny', this run is 'small'"):
        run(dataclasses.replace(CFG, preset="small", steps=STEPS + 5), str(shards), out)
    # another loss: a finished run is not taken as this one, nor continued with it
    for steps in (STEPS, STEPS + 5):
        with pytest.raises(SlifeError, match="other objective settings \\(norm_pix_loss: True, now False\\)"):
            run(dataclasses.replace(CFG, objective_conf={"norm_pix_loss": False}, steps=steps), str(shards), out)
    with pytest.raises(SlifeError, match="not a multiple of the patch size"):
        run(dataclasses.replace(CFG, img_size=36), str(shards), tmp_path / "a")
    with pytest.raises(SlifeError, match="smaller than the 96 px"):
        run(dataclasses.replace(CFG, img_size=96), str(shards), tmp_path / "b")
    with pytest.raises(SlifeError, match="no such shard folder"):
        run(CFG, str(tmp_path / "nothing"), tmp_path / "c")
    with pytest.raises(SlifeError, match="precision"):
        dataclasses.replace(CFG, precision="fp8")
    with pytest.raises(SlifeError, match="unknown argument\\(s\\) foo"):
        run(dataclasses.replace(CFG, model_kwargs=dict(MICRO, foo=1)), str(shards), tmp_path / "d")
    with pytest.raises(SlifeError, match="cannot build CroCoNet"):
        run(dataclasses.replace(CFG, model_kwargs=dict(MICRO, enc_depth="x")), str(shards), tmp_path / "e")
    with pytest.raises(SlifeError, match="--resize-short 16 is smaller than the image size"):
        run(dataclasses.replace(CFG, resize_short=16), str(shards), tmp_path / "f")
    assert not any((tmp_path / n).exists() for n in "def")


def test_start_from_weights_only_checkpoint(reference, shards, tmp_path):
    ck = torch.load(reference, weights_only=True)
    torch.save({"model": ck["model"], "croco_kwargs": ck["croco_kwargs"]}, tmp_path / "released.pth")
    cfg = dataclasses.replace(CFG, steps=2, resume=str(tmp_path / "released.pth"), preview_every=0)
    last = run(cfg, str(shards), tmp_path / "ft")
    assert torch.load(last, weights_only=True)["step"] == 2
    assert run(dataclasses.replace(cfg, steps=3), str(shards), tmp_path / "ft") == last  # continues last.pt
    assert torch.load(last, weights_only=True)["step"] == 3
    with pytest.raises(SlifeError, match="weights do not fit this run's model"):
        run(dataclasses.replace(cfg, model_kwargs=dict(MICRO, enc_embed_dim=32)), str(shards), tmp_path / "x")
    extra = dict(ck["model"], **{f"extra.{i}": torch.zeros(1) for i in range(50)})
    torch.save({"model": extra, "croco_kwargs": ck["croco_kwargs"]}, tmp_path / "extra.pth")
    with pytest.raises(SlifeError, match=r"50 unexpected key\(s\), first 'extra.0'\)$"):  # one short line
        run(dataclasses.replace(cfg, resume=str(tmp_path / "extra.pth")), str(shards), tmp_path / "y")
    nan = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v for k, v in ck["model"].items()}
    torch.save({"model": nan, "croco_kwargs": ck["croco_kwargs"]}, tmp_path / "nan.pth")
    with pytest.raises(SlifeError, match="nan.pth: weights contain NaN or inf"):
        run(dataclasses.replace(cfg, resume=str(tmp_path / "nan.pth")), str(shards), tmp_path / "z")


@pytest.mark.multiprocess
def test_torchrun_two_cpu_processes(shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    import socket

    with socket.socket() as sock:  # a free port, so that parallel test runs do not meet on torchrun's default
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "slife", "train", str(shards), "--out", str(tmp_path), "--preset", "tiny",
           "--croco-kwargs", json.dumps(MICRO), "--steps", "4", "--batch-size", "4", "--threads", "1",
           "--num-workers", "1", "--precision", "fp32", "--log-keys", "--preview-every", "0", "--log-every", "2"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == 4 and set(ck["rng"]) == {"rank0", "rank1"} and ck["config"]["world_size"] == 2
    assert ck["config"]["effective_batch"] == 8
    keys = [{ln.split()[1] for ln in (tmp_path / f"keys-rank{r}.txt").read_text().splitlines()} for r in (0, 1)]
    assert len(keys[0]) > 4 and len(keys[1]) > 4 and not keys[0] & keys[1]  # each rank reads its own shard
    assert len(_losses(tmp_path)) == 2  # only rank 0 writes metrics


def test_cli_default_out_is_runs_slash_the_shard_folder_name(shards, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from slife.cli import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["train", str(shards), "--preset", "tiny", "--croco-kwargs", json.dumps(MICRO),
                                 "--steps", "1", "--batch-size", "4", "--threads", "1", "--num-workers", "0",
                                 "--preview-every", "0"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / shards.name / "last.pt").exists()


def test_cli_end_to_end(shards, tmp_path):
    from typer.testing import CliRunner

    from slife.cli import app

    runner = CliRunner()
    args = ["train", str(shards), "--out", str(tmp_path / "run"), "--preset", "tiny", "--croco-kwargs",
            json.dumps(MICRO), "--steps", "3", "--batch-size", "4", "--threads", "1", "--num-workers", "0",
            "--preview-every", "3"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "last.pt" in r.output and (tmp_path / "run" / "previews" / "step-0000003.png").exists()
    assert "trained to step 3 of 3" in r.output and "last logged loss" in r.output
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]["precision"] == "auto"
    r = runner.invoke(app, ["train", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such shard folder" in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["train", "--help"])
    assert r.output.count("[preset") >= 8 and "[auto]" in r.output  # defaults in brackets are not eaten as markup


def test_auto_precision_follows_the_hardware():
    from slife.train.loop import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"


def test_resume_is_exact_after_failed_decodes(tmp_path):
    from trainkit import shards_with_bad_jpegs

    f = shards_with_bad_jpegs(tmp_path / "s")
    cfg = dataclasses.replace(CFG, steps=16, batch_size=2, save_every=6, keep_every=0, preview_every=0,
                              samples_per_epoch=16, shuffle_buffer=32)
    ref = run(cfg, str(f), tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):  # last.pt was written at step 6, mid epoch 0 after failed decodes
        run(cfg, str(f), tmp_path / "cut", progress=interrupt_after(9))
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert ck["step"] == 6 and ck["data"]["positions"]["rank0"][0]["bad"]["bad_sample"] >= 1
    _same_weights(ref, run(cfg, str(f), tmp_path / "cut"))
    bad = [json.loads((d / "train.json").read_text())["bad_samples"] for d in (tmp_path / "ref", tmp_path / "cut")]
    assert bad[0] == bad[1] and bad[0]["bad_sample"] >= 2


def test_preview_names_its_columns(tmp_path):
    """The reconstruction preview carries a label strip over its four columns (source | masked target |
    prediction | target)."""
    import numpy as np
    from PIL import Image

    from slife.train.model import CROCO_PRESETS, CroCoNet
    from slife.train.preview import write_preview

    torch.manual_seed(0)
    m = CroCoNet(**CROCO_PRESETS["tiny"])
    p = write_preview(m, torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), tmp_path / "p.png", scale=1)
    im = np.asarray(Image.open(p).convert("L"))
    assert im.shape == (2 * 64 + 14, 4 * 64)
    strip = im[:14]
    assert (strip == 255).mean() > 0.7 and (strip < 128).any()  # white with dark text
    for c in range(4):  # some text in every column's label
        assert (strip[:, c * 64:(c + 1) * 64] < 128).any()
