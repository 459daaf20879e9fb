"""A run continued on a grown shard set (slife/train/segments.py): the set's comparison and the segment plan
alone, then end to end on tiny shards and a micro CroCo: continued from the old step with the optimiser state
kept, new pairs drawn (weighted up), the lr re-warmed to the lower peak, exact resume inside the new segment,
the one log line that says what changed, and the same under torchrun."""

import csv
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainkit import MICRO, write_shards
from slife.train import TrainConfig, run
from slife.train.segments import compare, plan
from slife.train.stream import resolve_shards

REPO = Path(__file__).resolve().parents[2]
FIRST, MORE = 20, 10  # steps of segment 0, then steps added when the set has grown
CFG = TrainConfig(preset="tiny", model_kwargs=MICRO, steps=FIRST, batch_size=8, lr=3e-3, warmup_steps=5,
                  precision="fp32", threads=1, num_workers=0, save_every=5, log_every=5, preview_every=0,
                  samples_per_epoch=64, log_keys=True)


def tar(name, samples=16, size=1000, sha=None, gen=None):
    return {"tar": f"toy/{name}", "samples": samples, "bytes": size, "sha256": sha, "generation": gen}


def test_compare_tells_same_grown_and_changed():
    old = [tar("a", sha="1"), tar("b", sha="2")]
    assert compare(old, list(old)) == ("same", [])
    assert compare(old, old + [tar("c", gen=1)]) == ("grown", [tar("c", gen=1)])
    assert compare(old, [tar("a", sha="1"), tar("b", sha="X"), tar("c")])[0] == "changed"  # b rewritten
    assert compare(old, [tar("a", sha="1"), tar("c")])[0] == "changed"  # b gone
    assert compare(old, [tar("a", sha="1"), tar("b", size=999, sha="2")])[0] == "changed"  # b truncated
    assert compare([tar("a")], [tar("a", sha="1"), tar("b")])[0] == "grown"  # no digest then: name, count, size


def grow(folder: Path, life: str = "new", seed: int = 7) -> Path:
    """Append one tar of 16 new pairs (keys `new_...`) to the shard folder as generation 1 of its manifest."""
    extra = write_shards(folder.parent / f"{life}-tmp", n_shards=1, per_shard=16, seed=seed, life=life)
    name = f"pairs-{len(list(folder.glob('pairs-*.tar'))):06d}"
    shutil.move(extra / "pairs-000000.tar", folder / f"{name}.tar")
    shutil.move(extra / "pairs-000000.stats.json", folder / f"{name}.stats.json")
    shutil.rmtree(extra)
    man = json.loads((folder / "manifest.json").read_text())
    man["shards"].append({"name": f"{name}.tar", "samples": 16, "generation": 1})
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


def test_plan_of_a_fresh_run_a_resumed_one_and_a_grown_set(shards, tmp_path):
    from slife.train.segments import fingerprint

    s = resolve_shards(str(shards))
    p = plan(None, s, 20, 2.0, 0.5)
    assert (p.segment.index, p.segment.start, p.segment.end, p.continued) == (0, 0, 20, False)
    ckpt = {"step": 20, "shardset": fingerprint(s), "segments": [p.segment.record(1e-3, 5, 0.0)]}
    p = plan(ckpt, s, 20, 2.0, 0.5)  # the same set: the same segment, nothing to do past its end
    assert (p.segment.index, p.segment.end, p.continued, p.message) == (0, 20, False, None)
    grown = grow(shutil.copytree(shards, tmp_path / "toy"))
    p = plan(ckpt, resolve_shards(str(grown)), 10, 2.0, 0.5)
    seg = p.segment
    assert (seg.index, seg.start, seg.end, seg.new_pairs, seg.pairs, p.continued) == (1, 20, 30, 16, 48, True)
    assert seg.new_share() == pytest.approx(32 / 64) and seg.weights(fingerprint(resolve_shards(str(grown)))["tars"]) \
        == [1.0, 1.0, 2.0]
    assert "toy generation 1 (1 tar, 16 pairs)" in p.message and "segment 1 starts at step 20" in p.message
    assert seg.lr(20, 1e-3, 5, 0.0) == pytest.approx(0.5e-3 / 5) and seg.lr(24, 1e-3, 5, 0.0) == pytest.approx(0.5e-3)
    assert seg.lr(30, 1e-3, 5, 0.0) == pytest.approx(0.0)
    assert p.history == [dict(ckpt["segments"][0], stopped_at=20)]
    old = {"step": 20, "shardset": fingerprint(resolve_shards(str(grown))), "segments": []}
    p = plan(old, s, 20, 2.0, 0.5)  # the set lost a tar: goes on in its segment, with a warning
    assert p.segment.index == 0 and not p.continued and "not the one the checkpoint was trained on" in p.warning
    p = plan({"step": 5}, s, 20, 2.0, 0.5)  # a checkpoint made before fingerprints: segment 0 of its set
    assert (p.segment.index, p.continued, p.warning) == (0, False, None)


@pytest.mark.parametrize("weight", [1.0, 3.0])
def test_new_pairs_are_drawn_by_their_weight(shards, tmp_path, weight):
    from slife.train.stream import CountingHandler, PairStream

    s = resolve_shards(str(grow(shutil.copytree(shards, tmp_path / "toy"))))  # 32 old pairs, 16 new
    stream = PairStream(s, None, 8, 100, weights=[1.0, 1.0, weight], segment=1)
    keys = [x["__key__"] for x in stream.epoch_samples(0, 0, 1, CountingHandler(), 1500)]
    share = sum(k.startswith("new_") for k in keys) / len(keys)
    assert len(keys) == 3008 and share == pytest.approx(16 * weight / (32 + 16 * weight), abs=0.08)


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def _keys(run_dir: Path, rank: int = 0) -> list[tuple[int, str]]:
    return [(int(s), k) for s, k in (ln.split() for ln in (run_dir / f"keys-rank{rank}.txt").read_text().splitlines())]


def _by_step(run_dir: Path) -> dict[int, list[str]]:
    """step -> its keys, as the last process that trained the step wrote them (a resumed run appends)."""
    out: dict[int, list[str]] = {}
    for (s, k), prev in zip(_keys(run_dir), [None] + _keys(run_dir)[:-1]):
        if prev is None or prev[0] != s:
            out[s] = []
        out[s].append(k)
    return out


@pytest.fixture(scope="module")
def first(shards, tmp_path_factory):
    """A run of FIRST steps on a copy of the toy shards (-> its folder), then the copy grown by one generation."""
    root = tmp_path_factory.mktemp("grown")
    data = shutil.copytree(shards, root / "toy")
    out = root / "run"
    run(CFG, str(data), out)
    grow(data)
    return data, out


@pytest.fixture(scope="module")
def continued(first, tmp_path_factory):
    """The first run continued, uninterrupted, on the grown set for MORE steps."""
    data, out = first
    out2 = tmp_path_factory.mktemp("continued") / "run"
    shutil.copytree(out, out2)
    seen = []
    last = run(dataclasses.replace(CFG, steps=MORE), str(data), out2, progress=lambda n=1, **kw: seen.append((n, kw)))
    return last, seen


def test_a_grown_set_continues_the_run_from_its_step(first, continued, caplog):
    data, out = first
    last, seen = continued
    assert seen[0] == (FIRST, {"total": FIRST + MORE, "info": "segment 1 from step 20"}) and len(seen) == 1 + MORE
    old, ck = torch.load(out / "last.pt", weights_only=True), torch.load(last, weights_only=True)
    assert ck["step"] == FIRST + MORE
    # the optimiser state was kept: AdamW's per-parameter step counts went on from FIRST
    steps = {float(s["step"]) for s in ck["optimizer"]["state"].values()}
    assert steps == {FIRST + MORE} and {float(s["step"]) for s in old["optimizer"]["state"].values()} == {FIRST}
    # the segments and the set's fingerprint are recorded
    assert [s["segment"] for s in ck["segments"]] == [0, 1] and ck["segments"][0]["stopped_at"] == FIRST
    seg = ck["segments"][1]
    assert (seg["start_step"], seg["end_step"], seg["new_pairs"], seg["pairs"], seg["new_weight"]) == \
        (FIRST, FIRST + MORE, 16, 48, 2.0)
    assert seg["new_tars"] == ["toy/pairs-000002.tar"] and "re-warmed" in seg["lr_rule"]
    assert len(ck["shardset"]["tars"]) == 3 and ck["shardset"]["digest"] != old["shardset"]["digest"]
    train_json = json.loads((last.parent / "train.json").read_text())
    assert train_json["segments"] == ck["segments"] and train_json["final_step"] == FIRST + MORE
    # the new pairs are drawn from the new segment on (their share: test_new_pairs_are_drawn_by_their_weight)
    keys = _keys(last.parent)
    assert not [k for s, k in keys if s < FIRST and k.startswith("new_")]
    assert [k for s, k in keys if s >= FIRST and k.startswith("new_")]
    # the lr: re-warmed over warmup_steps to continue_lr x the peak, then cosine to min_lr at the segment's end
    rows = {int(r["step"]): r for r in _rows(last.parent)}
    assert sorted(rows) == list(range(5, FIRST + MORE + 1, 5))
    assert rows[25]["lr"] == pytest.approx(0.5 * 3e-3) and rows[30]["lr"] < 0.2 * 3e-3
    # run again: nothing to do; the one line that says what changed was said once, on the run that continued
    with caplog.at_level(logging.INFO, logger="slife.train"):
        assert run(dataclasses.replace(CFG, steps=MORE), str(data), last.parent) == last
    assert "nothing to do" in caplog.text and "has grown" not in caplog.text


def test_the_log_says_what_changed(first, tmp_path, caplog):
    data, out = first
    shutil.copytree(out, tmp_path / "run")
    cfg = dataclasses.replace(CFG, steps=1, log_keys=False)
    with caplog.at_level(logging.INFO, logger="slife.train"):
        run(cfg, str(data), tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if "has grown" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert ("trained on 32 pairs in 2 tars; the set has grown by toy generation 1 (1 tar, 16 pairs): segment 1 "
            "starts at step 20 for 1 step over 48 pairs" in lines[0]), lines[0]
    assert "re-warmed linearly over 5 steps to 0.5 x 0.003 = 0.0015" in lines[0]


def test_resume_inside_a_segment_is_exact(first, continued, tmp_path):
    data, out = first
    shutil.copytree(out, tmp_path / "run")
    cfg = dataclasses.replace(CFG, steps=MORE)
    calls = []

    def stop(n=1, **kw):
        calls.append(n)
        if len(calls) == 8:  # the resume call, then steps 21..27: last.pt was written at step 25
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, str(data), tmp_path / "run", progress=stop)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 25 and [s["segment"] for s in ck["segments"]] == [0, 1]
    seen = []
    last = run(cfg, str(data), tmp_path / "run", progress=lambda n=1, **kw: seen.append((n, kw)))
    assert seen[0] == (25, {"total": FIRST + MORE, "info": "resumed at step 25"})
    ref = torch.load(continued[0], weights_only=True)
    mine = torch.load(last, weights_only=True)
    assert mine["segments"] == ref["segments"]
    for k in ref["model"]:
        assert torch.allclose(ref["model"][k], mine["model"][k], atol=1e-6, rtol=0), k
    assert _by_step(last.parent) == _by_step(continued[0].parent)  # the same pairs at every step
    a, b = _rows(last.parent), _rows(continued[0].parent)
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-5)


def test_cli_continue_options(first, tmp_path):
    from typer.testing import CliRunner

    from slife.cli import app

    data, out = first
    shutil.copytree(out, tmp_path / "run")
    args = ["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--croco-kwargs",
            json.dumps(MICRO), "--steps", "2", "--batch-size", "4", "--threads", "1", "--num-workers", "0",
            "--preview-every", "0", "--new-weight", "3", "--continue-lr", "0.25"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    seg = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["segments"][-1]
    assert (seg["segment"], seg["new_weight"], seg["lr_scale"], seg["end_step"]) == (1, 3.0, 0.25, FIRST + 2)
    r = CliRunner().invoke(app, args[:-1] + ["1.5"])
    assert r.exit_code == 2 and "--continue-lr" in r.output and len(r.output.strip().splitlines()) == 1
    help_text = CliRunner().invoke(app, ["train", "--help"]).output
    assert "--new-weight" in help_text and "--continue-lr" in help_text and "re-warm" in help_text


@pytest.mark.multiprocess
def test_torchrun_continues_a_grown_set(shards, tmp_path):
    import socket

    data = shutil.copytree(shards, tmp_path / "toy")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="1000")  # log lines unwrapped

    def torchrun(steps):
        with socket.socket() as sock:  # a free port, so that parallel test runs do not meet on torchrun's default
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "slife", "train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny",
               "--croco-kwargs", json.dumps(MICRO), "--steps", str(steps), "--batch-size", "4", "--threads", "1",
               "--num-workers", "1", "--precision", "fp32", "--log-keys", "--preview-every", "0", "--log-every", "2",
               "--warmup-steps", "1"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stderr

    torchrun(4)
    grow(data)
    err = torchrun(4)
    assert err.count("has grown by toy generation 1") == 1, err[-3000:]  # said once, by rank 0
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 8 and [s["segment"] for s in ck["segments"]] == [0, 1] and set(ck["rng"]) == {"rank0", "rank1"}
    assert {float(s["step"]) for s in ck["optimizer"]["state"].values()} == {8}
    for r in (0, 1):  # every rank draws new pairs in the new segment (the new tar is shared when there are few)
        keys = _keys(tmp_path / "run", r)
        assert not [k for s, k in keys if s < 4 and k.startswith("new_")]
        assert [k for s, k in keys if s >= 4 and k.startswith("new_")]
