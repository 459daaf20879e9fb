"""The demo's smoke version: every stage runs, every artifact exists, every number is finite."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from slife.cli import app


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


def test_demo_smoke(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r.exit_code == 0, r.output
    report = out / "report.md"
    assert report.exists()
    text = report.read_text()
    for section in ("Lives and mined pairs", "Training", "Correspondence Alignment Score", "Depth probe",
                    "Zero-shot correspondence", "Reading"):
        assert section in text
    for png in ("alignment_vs_training.png", "probe_by_strategy.png", "eval/cas/cas.png"):
        assert (out / png).stat().st_size > 1000
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert set(stages) == {"synth", "mine", "train", "eval", "report"}
    cas = json.loads((out / "eval/cas/cas.json").read_text())
    n_models = len(stages["train"]["result"]["models"])
    assert n_models == 3 + 2 + 4
    assert all(math.isfinite(v) for row in cas["matrix"] for v in row if v is not None)
    for p in stages["eval"]["result"]["probe"].values():
        m = json.loads(open(p).read())["metrics"]
        assert all(math.isfinite(v) for v in _numbers(m))
    # a rerun resumes: every stage is skipped
    r2 = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r2.exit_code == 0 and r2.output.count("(done, skipped)") == 5


def test_half_snapshot_is_nearest_to_half(tmp_path):
    from slife.demo import _half_snapshot

    for s in (24, 48, 49):  # steps 49, keep_every 24: snapshots 24 and 48 (and the final one)
        (tmp_path / f"step-{s:07d}.pt").write_bytes(b"")
    assert _half_snapshot(tmp_path, 49).endswith("step-0000024.pt")
    assert _half_snapshot(tmp_path / "none", 49) is None
