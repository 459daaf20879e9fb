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
    for section in ("What this run's numbers support", "Lives and mined pairs", "Training", "Depth probe",
                    "Correspondence and alignment", "Zero-shot correspondence"):
        assert section in text
    for png in ("alignment_vs_training.png", "probe_by_encoder.png", "eval/cas/cas.png", "eval/match/match.png"):
        assert (out / png).stat().st_size > 1000
    stages = json.loads((out / "stages.json").read_text())["stages"]
    assert set(stages) == {"synth", "mine", "train", "eval", "report"}
    models = stages["train"]["result"]["models"]
    assert set(models) == {"life-kitchen", "life-office", "control-static", "control-screen"}
    cas = json.loads((out / "eval/cas/cas.json").read_text())
    assert all(math.isfinite(v) for row in cas["matrix"] for v in row if v is not None)
    for p in stages["eval"]["result"]["probe"].values():
        m = json.loads(open(p).read())["metrics"]
        assert all(math.isfinite(v) for v in _numbers(m))
    # summary.json: every key of the schema, every encoder group
    s = json.loads((out / "summary.json").read_text())
    assert {"seed", "budget_minutes", "chance_top1", "encoders", "zero_flow", "alignment_beyond_shortcut"} <= set(s)
    assert {e["group"] for e in s["encoders"].values()} == {"life", "control", "untrained", "oracle"}
    for e in s["encoders"].values():
        assert set(e) == {"group", "probe_abs_rel", "probe_abs_rel_aligned", "top1_displaced", "match_aepe",
                          "match_pck5"}
        assert all(v is None or math.isfinite(v) for k, v in e.items() if k != "group")
    assert s["encoders"]["oracle"]["match_aepe"] is None and s["encoders"]["untrained"]["match_aepe"] is not None
    assert set(s["zero_flow"]) == {"match_aepe", "match_pck5"}
    assert set(s["alignment_beyond_shortcut"]) == {"life_life", "life_control", "untrained_untrained",
                                                   "life_same_position"}
    assert s["alignment_beyond_shortcut"]["life_same_position"] == 0.0  # by construction
    # a rerun resumes: every stage is skipped
    r2 = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r2.exit_code == 0 and r2.output.count("(done, skipped)") == 5


def test_demo_untrained_controls_never_share_a_trained_models_initialisation():
    """The untrained control (`untrained_models`, seed offset) differs from every trained model's initial weights
    (`slife train` seeds torch with its run seed before building the model), in every study and seed."""
    import torch

    from slife.demo import STUDIES, DemoConfig, _plan, _train_config, _train_sets, _untrained_spec, untrained_name
    from slife.eval.models import untrained_models
    from slife.train.model import CROCO_PRESETS, CroCoNet

    kw = dict(CROCO_PRESETS["tiny"])
    spec = _untrained_spec()
    assert spec.kind == "croco" and spec.kwargs == kw  # the architecture the demo's models train
    for study in STUDIES:
        for seed in (0, 1, 2):
            cfg = DemoConfig(study=study, seed=seed)
            name, control = untrained_models(spec, [seed])[0]
            assert name == untrained_name(cfg)
            w = control.state_dict()["enc_blocks.0.attn.qkv.weight"]
            growing = 1 if cfg.spec.growing else 0  # the growing-life arm's two models share the next index
            for i in range(len(_train_sets(cfg)) + growing):
                tc = _train_config(cfg, _plan(cfg), 10, i)
                torch.manual_seed(tc.seed)  # what the trainer does before building its model
                init = CroCoNet(**kw).state_dict()["enc_blocks.0.attn.qkv.weight"]
                assert not torch.equal(init, w)


def test_half_snapshot_is_nearest_to_half(tmp_path):
    from slife.demo import _half_snapshot

    for s in (24, 48, 49):  # steps 49, keep_every 24: snapshots 24 and 48 (and the final one)
        (tmp_path / f"step-{s:07d}.pt").write_bytes(b"")
    assert _half_snapshot(tmp_path, 49).endswith("step-0000024.pt")
    assert _half_snapshot(tmp_path / "none", 49) is None
