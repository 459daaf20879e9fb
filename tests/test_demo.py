"""The demo's smoke version: every stage runs, every artifact exists, every number is finite."""

from __future__ import annotations

import json
import math
import os
import re

import pytest
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
    # counts read as counts: pairs used of those mined, displaced patches of those with truth, 1 epoch
    assert re.search(r"\b4 of the \d+ test pairs mined", text), text
    assert re.search(r"grid position\): \d+ of the \d+ patches with ground truth \(\d+\.\d%\)", text)
    assert "trains for 1 epoch on" in text
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
    # summary.json: every key of the issue's schema, every encoder group
    s = json.loads((out / "summary.json").read_text())
    assert {"seed", "budget_minutes", "chance_top1", "encoders", "zero_flow", "alignment_beyond_shortcut"} <= set(s)
    assert {e["group"] for e in s["encoders"].values()} == {"life", "control", "untrained", "oracle"}
    for e in s["encoders"].values():
        assert set(e) == {"group", "probe_abs_rel", "probe_abs_rel_aligned", "probe_abs_rel_se",
                          "probe_abs_rel_aligned_se", "probe_abs_rel_aligned_vs_untrained", "top1_displaced",
                          "top1_displaced_beyond_position", "top1_displaced_beyond_position_se",
                          "top1_displaced_beyond_position_vs_untrained", "top1_beyond_position",
                          "top1_beyond_position_se", "match_aepe", "match_pck5", "probe_lr"}
        assert all(v is None or math.isfinite(v) for k, v in e.items()
                   if k not in ("group", "top1_displaced_beyond_position_vs_untrained", "probe_lr",
                                "probe_abs_rel_aligned_vs_untrained"))
    assert s["encoders"]["oracle"]["match_aepe"] is None and s["encoders"]["untrained"]["match_aepe"] is not None
    assert set(s["zero_flow"]) == {"match_aepe", "match_pck5"}
    from slife.demo import GRAFFITI

    assert s["match_real_photographs"] is GRAFFITI.is_dir()  # else synthetic warps stand in: measured, but not
    if not GRAFFITI.is_dir():  # the claim about real photographs
        assert "synthetic warps of a rendered view" in text
        assert re.search(r"\| on real photographs \(graffiti\)[^|]*\| – \| – \| not measured here", text)  # either read
    # top-1 beyond position: the untrained control is scored, and each life model against it (paired)
    assert s["encoders"]["untrained"]["top1_displaced_beyond_position"] is not None
    assert set(s["encoders"]["life-kitchen"]["top1_displaced_beyond_position_vs_untrained"]) == {"diff", "se"}
    assert set(s["top1_position_prior"]) == {"all", "displaced", "displaced_told_which_moved"}
    assert all(math.isfinite(v) for v in s["position_prior"].values())  # the probe's readout on constant tokens
    assert s["probe_readouts"] == 2 and s["encoders"]["life-kitchen"]["probe_abs_rel_aligned_se"] > 0  # two readouts
    assert "Every readout's number is the mean of 2 readouts" in text
    # the readout's learning rate: each encoder and control chooses its own on a held-out training place
    assert all(e["probe_lr"] in (1e-3, 3e-3) for e in s["encoders"].values())
    assert "chose the readout's learning rate (0.001, 0.003) on the views of training place" in text
    # the probe margin over the untrained encoder, paired readout by readout (readout k: the same seed for both)
    probes = stages["eval"]["result"]["probe"]
    per = {n: [r["metrics_aligned"]["abs_rel"] for r in json.loads(open(probes[n]).read())["readouts"]]
           for n in ("untrained-s0", "life-kitchen")}
    d = [a - b for a, b in zip(per["untrained-s0"], per["life-kitchen"])]
    vs = s["encoders"]["life-kitchen"]["probe_abs_rel_aligned_vs_untrained"]
    assert vs["diff"] == pytest.approx(sum(d) / 2) and vs["se"] == pytest.approx(abs(d[0] - d[1]) / 2)
    assert s["encoders"]["untrained"]["probe_abs_rel_aligned_vs_untrained"] is None
    assert "the standard error of the readout-by-readout difference" in text
    assert re.search(r"\| untrained \| untrained \| [\d.]+ ± ", text)
    assert set(s["alignment_beyond_shortcut"]) == {"life_life", "life_control", "untrained_untrained",
                                                   "life_same_position"}
    assert s["alignment_beyond_shortcut"]["life_same_position"] == 0.0  # by construction
    se = s["alignment_beyond_shortcut_se"]  # two lives: one pair, every error measured
    assert set(se) == {"life_life", "life_life_displaced", "life_life_minus", "untrained_pairs",
                       "untrained_pairs_sd"} and se["life_life"] is not None
    assert all(se["life_life_minus"][k]["se"] is not None for k in ("untrained_untrained", "life_control"))
    # three untrained controls in the smoke demo (six in the real ones): three pairs, their spread measured
    assert se["untrained_pairs"] == 3 and se["untrained_pairs_sd"] is not None
    assert "3 untrained pairs spread with standard deviation" in text
    # the top-1 claim against the mean of those untrained encoders, their spread beside it
    ut = s["top1_displaced_untrained"]
    assert ut["n"] == 3 and ut["min"] <= ut["mean"] <= ut["max"] and ut["sd"] is not None
    assert "over 3 untrained encoders)" in text and s["other_read"]["top1_displaced_untrained"]["n"] == 3
    # goal 3's measure since session 16, with its errors (no displaced variant)
    assert set(s["alignment_beyond_saliency"]) == set(s["alignment_beyond_shortcut"])
    assert s["alignment_beyond_saliency"]["life_same_position"] == 0.0  # by construction
    se = s["alignment_beyond_saliency_se"]
    assert set(se) == {"life_life", "life_life_minus", "untrained_pairs", "untrained_pairs_sd"}
    assert se["life_life"] is not None and se["untrained_pairs"] == 3
    assert "| beyond position and saliency |" in text and "life models align beyond position and saliency" in text
    assert (out / "eval" / "cas" / "cas_beyond_saliency.png").exists()
    # the claims read the decoder's attention with the target masked, as training does; complete beside it
    assert s["attention_read"] == "masked" and s["other_read"]["attention_read"] == "complete"
    ev = stages["eval"]["result"]
    assert json.loads(open(ev["cas"]).read())["masked"] and not json.loads(open(ev["cas_other_read"]).read())["masked"]
    assert json.loads(open(ev["match_other_read"]).read())["config"]["masked"] is False
    assert set(s["other_read"]["encoders"]) == set(s["encoders"]) - {"oracle"}
    assert s["other_read"]["alignment_beyond_saliency"]["life_same_position"] == 0.0  # by construction either way
    assert "| claim | holds here | with the target complete | numbers |" in text
    # a rerun resumes: every stage is skipped
    r2 = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r2.exit_code == 0 and r2.output.count("(done, skipped)") == 5
    # a folder evaluated with other evaluation settings (here: before the probe averaged readouts, and before
    # session 18's masked read and session 19's six untrained controls): the models are kept, the evaluation and
    # the report redone
    st = json.loads((out / "stages.json").read_text())
    del st["identity"]["plan"]["probe_readouts"], st["identity"]["plan"]["probe_lrs"]  # made before both: one rate
    del st["identity"]["plan"]["attention_masked"], st["identity"]["plan"]["cas_untrained"]  # and before session 19
    (out / "stages.json").write_text(json.dumps(st))
    probe_json = out / "eval" / "probe" / "untrained-s0" / "probe.json"
    os.utime(probe_json, (0, 0))
    r2 = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r2.exit_code == 0 and r2.output.count("(done, skipped)") == 3, r2.output
    assert ("evaluation settings changed (plan.attention_masked, plan.cas_untrained, plan.probe_lrs, "
            "plan.probe_readouts)"
            in " ".join(r2.output.split()))  # the log line may wrap
    assert probe_json.stat().st_mtime > 0  # probed again
    assert json.loads((out / "stages.json").read_text())["identity"]["plan"]["probe_readouts"] == 2
    # a folder whose models were trained with other settings (here: before session 12's targets, so on the
    # paper's normalised ones): a one-line error naming the setting, no reuse
    st = json.loads((out / "stages.json").read_text())
    del st["identity"]["plan"]["norm_pix_loss"]
    st["identity"]["plan"]["probe_epochs"] = 30  # an evaluation setting beside it: the error names the other
    (out / "stages.json").write_text(json.dumps(st))
    r3 = CliRunner().invoke(app, ["demo", "--out", str(out), "--budget-minutes", "0.5"])
    assert r3.exit_code != 0 and "trained with other settings (plan.norm_pix_loss: True -> False)" in r3.output
    assert "Traceback" not in r3.output


def test_demo_untrained_controls_never_share_a_trained_models_initialisation():
    """The untrained controls (`untrained_models`, seed offset) differ from every trained model's initial weights
    (`slife train` seeds torch with its run seed before building the model), in every study and seed, for the
    CroCo models and the ViT arms of other objectives alike."""
    import torch

    from slife.demo import (STUDIES, DemoConfig, _plan, _train_config, _train_sets, _untrained_spec, _untrained_specs,
                            objective_of, untrained_name)
    from slife.eval.models import untrained_models
    from slife.train.model import CROCO_PRESETS

    spec = _untrained_spec()
    assert spec.kind == "croco" and spec.kwargs == dict(CROCO_PRESETS["tiny"])  # the architecture the demo's models train
    key = {"croco": "enc_blocks.0.attn.qkv.weight", "vit": "blocks.0.attn.qkv.weight"}
    for study in STUDIES:
        for seed in (0, 1, 2):
            cfg = DemoConfig(study=study, seed=seed)
            specs = _untrained_specs(cfg)
            assert next(iter(specs)) == untrained_name(cfg)  # CroCo's control first: the one every study has
            controls = {sp.kind: untrained_models([sp], [seed])[0][::2] for sp in specs.values()}
            assert controls["croco"][0] == untrained_name(cfg)
            names = list(_train_sets(cfg))
            if cfg.spec.growing:  # the growing-life arm's two CroCo models share the next index
                names.append("growing")
            for i, name in enumerate(names):
                tc = _train_config(cfg, _plan(cfg), 10, i, objective_of(name))
                sp = _untrained_spec(tc.objective)
                torch.manual_seed(tc.seed)  # what the trainer does before building its model
                init = sp.build().state_dict()[key[sp.kind]]
                assert not torch.equal(init, controls[sp.kind][1].state_dict()[key[sp.kind]])


def test_objectives_study_trains_each_objective_on_the_first_life_beside_its_controls():
    """--study objectives: a DINOv2 and an egomotion arm on the first life's shards, each with its own recipe, and
    an untrained control of each architecture that is the architecture the arm's checkpoint records."""
    from slife.demo import (DemoConfig, _plan, _train_config, _train_sets, _untrained_spec, _untrained_specs,
                            objective_of)
    from slife.train import TrainConfig
    from slife.train.checkpoint import model_spec_from_ckpt
    from slife.train.objectives import objective_class

    cfg = DemoConfig(study="objectives")
    sets = _train_sets(cfg)
    assert sets == {"life-kitchen": "life-kitchen", "objective-dinov2": "life-kitchen",
                    "objective-egomotion": "life-kitchen"}
    assert [objective_of(n) for n in sets] == ["croco", "dinov2", "egomotion"]
    assert [(n, s.kind) for n, s in _untrained_specs(cfg).items()] == [("untrained-s0", "croco"),
                                                                        ("untrained-vit-s0", "vit")]
    plan = _plan(cfg)
    croco, dino, ego = (_train_config(cfg, plan, 10, i, objective_of(n)) for i, n in enumerate(sets))
    assert (croco.objective, croco.lr) == ("croco", cfg.lr)
    assert (dino.objective, dino.lr, dino.blr, dino.weight_decay) == ("dinov2", None, 4e-3, 0.04)  # DINO's recipe
    assert (ego.objective, ego.lr) == ("egomotion", cfg.lr)
    for objective in ("croco", "dinov2", "egomotion"):
        built = objective_class(objective).build(TrainConfig(objective=objective, preset="tiny"))
        assert model_spec_from_ckpt(built.checkpoint_state()) == _untrained_spec(objective)


def test_objectives_study_smoke(tmp_path):
    """`slife demo --study objectives` (smoke size) evaluates every arm: top-1 by each model's own map (the CroCo's
    decoder attention read masked) and by encoder features for all (no attention read, so not masked)."""
    out = tmp_path / "objectives"
    r = CliRunner().invoke(app, ["demo", "--study", "objectives", "--out", str(out), "--budget-minutes", "0.5"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    arms = s["objectives"]["arms"]
    assert set(arms) == {"croco", "dinov2", "egomotion"}
    assert arms["croco"]["top1_method"] == "masked attention"
    for arm in arms.values():
        assert all(math.isfinite(arm[k]) for k in ("probe_abs_rel_aligned", "top1_displaced",
                                                   "top1_displaced_features"))
    assert "## Objectives on one life: depth and correspondence" in (out / "report.md").read_text()


def test_full_study_trains_every_ablation_arm_beside_the_lives_own_pairs():
    """The lives mine spatial+temporal+augmented pairs; the ablation then trains each of the paper's five arms
    (spatial+temporal included) on the first life, and CroCo crops each view from the stored frame unresized."""
    from slife.demo import ABLATION, DemoConfig, _mine_sets, _plan, _train_config

    cfg = DemoConfig(study="full")
    sets = _mine_sets(cfg)
    assert {n: st for n, (_, st) in sets.items() if n.startswith("life-")} == dict.fromkeys(
        ("life-kitchen", "life-office", "life-bedroom"), "spatial+temporal+augmented")
    assert [st for n, (life, st) in sets.items() if n.startswith("ablation-") and life == "life-kitchen"] == list(ABLATION)
    plan = _plan(cfg)
    assert _train_config(cfg, plan, 10, 0).resize_short == plan.short_side == 80
    assert _train_config(cfg, plan, 10, 0, "dinov2").resize_short is None  # its multi-crop recipe is its own


def test_ablation_study_trains_the_five_arms_beside_the_lives_model_with_the_default_studys_time():
    """--study ablation: one life, its own model and the paper's five arms on it, no controls; the same life
    length and pair cap as the default study, and (six models, three rounds of two) the same training time per
    model as the default study's four models in two rounds."""
    from slife.demo import ABLATION, LIFE_PAIRS, DemoConfig, _mine_sets, _plan

    cfg, default = DemoConfig(study="ablation"), DemoConfig()
    assert _mine_sets(cfg) == {"life-kitchen": ("life-kitchen", LIFE_PAIRS),
                               **{f"ablation-{arm}": ("life-kitchen", arm) for arm in ABLATION}}
    plan, dplan = _plan(cfg), _plan(default)
    same = ("max_pairs", "life_seconds", "batch_size", "short_side")
    assert [getattr(plan, k) for k in same] == [getattr(dplan, k) for k in same]
    assert cfg.budget * plan.train_share / 3 == pytest.approx(default.budget * dplan.train_share / 2)


def test_half_snapshot_is_nearest_to_half(tmp_path):
    from slife.demo import _half_snapshot

    for s in (24, 48, 49):  # steps 49, keep_every 24: snapshots 24 and 48 (and the final one)
        (tmp_path / f"step-{s:07d}.pt").write_bytes(b"")
    assert _half_snapshot(tmp_path, 49).endswith("step-0000024.pt")
    assert _half_snapshot(tmp_path / "none", 49) is None


def _counting_job(steps: int, declare: bool, progress=None) -> int:
    if declare:
        progress(0, total=steps)
    for _ in range(steps):
        progress(1)
    return steps


def test_side_by_side_bar_adds_the_totals_its_growing_jobs_declare():
    """The eval stage's one bar: the probes' total is known before they start, the attention jobs declare theirs
    when they start; at the end the bar's count is its total, so its time left was never a guess past the end."""
    from slife.demo import _side_by_side

    calls = []
    jobs = [("probe", _counting_job, (5, True)), ("cas", _counting_job, (3, True)), ("match", _counting_job, (2, True))]
    done = _side_by_side(jobs, 1, lambda n=1, total=None, info=None: calls.append((n, total)),
                         grows=frozenset({"cas", "match"}), total=5)
    assert {k: r for k, (r, _) in done.items()} == {"probe": 5, "cas": 3, "match": 2}
    assert [t for _, t in calls if t is not None] == [8, 10]  # the probe's own declaration is left out: total holds it
    assert sum(n for n, _ in calls) == 10


def _sleeping_job(seconds: float, fail: bool, progress=None) -> float:
    import time

    from slife.errors import SlifeError

    time.sleep(seconds)
    if fail:
        raise SlifeError("a job's one-line error")
    return seconds


def test_side_by_side_stops_the_other_jobs_at_a_jobs_error():
    """A job's error ends the pool at once: the running job is stopped and the queued ones never start (before,
    the error waited for every queued job, up to the eval stage's 20 minutes)."""
    import time

    from slife.demo import _side_by_side
    from slife.errors import SlifeError

    jobs = [("long", _sleeping_job, (120, False)), ("bad", _sleeping_job, (0.5, True)),
            ("queued", _sleeping_job, (120, False))]
    t0 = time.perf_counter()
    with pytest.raises(SlifeError, match="a job's one-line error"):
        _side_by_side(jobs, 2, lambda *_, **__: None)
    assert time.perf_counter() - t0 < 100  # not the 120 s of either sleeping job


def test_probe_margin_is_paired_readout_by_readout_only_where_the_seeds_pair():
    from slife.eval.depth_probe import readout_margin

    def probe(vals, seeds):
        rs = [{"seed": s, "metrics_aligned": {"abs_rel": v}} for v, s in zip(vals, seeds)]
        return {"readouts": rs if len(rs) > 1 else None, "metrics_aligned": {"abs_rel": sum(vals) / len(vals)},
                "config": {"seed": seeds[0]}}

    u, m = probe([0.30, 0.20, 0.25], [0, 1, 2]), probe([0.28, 0.17, 0.24], [0, 1, 2])
    d = readout_margin(u, m)  # differences 0.02, 0.03, 0.01: mean 0.02, sd 0.01
    assert d["diff"] == pytest.approx(0.02) and d["se"] == pytest.approx(0.01 / math.sqrt(3))
    assert readout_margin(probe([0.3], [0]), probe([0.2], [0])) == pytest.approx({"diff": 0.1, "se": None})
    other = readout_margin(u, probe([0.28, 0.17, 0.24], [1, 2, 3]))  # other seeds: the means alone
    assert other["diff"] == pytest.approx(0.02) and other["se"] is None
    assert readout_margin(u, probe([0.2, 0.2], [0, 1]))["se"] is None
    assert readout_margin(u, {"metrics_aligned": None}) is None


def test_targets_follow_how_long_each_model_trains():
    """Raw-pixel targets for short training, the paper's per-patch normalised ones from the 60-min default study's
    training time per model (bench/study.md, session 14); the printed command says which."""
    from slife.demo import DemoConfig, _plan, _targets_opt

    assert _plan(DemoConfig()).norm_pix_loss is False  # 15 min: 4.65 min a model
    assert _plan(DemoConfig(budget_minutes=35)).norm_pix_loss is False
    assert _plan(DemoConfig(budget_minutes=60)).norm_pix_loss is True  # 18.6 min a model
    assert _plan(DemoConfig(study="full")).norm_pix_loss is False  # 60 min over 6.5 rounds: 5.7 min a model
    assert _plan(DemoConfig(study="full", budget_minutes=200)).norm_pix_loss is True
    assert '"norm_pix_loss": true' in _targets_opt(_plan(DemoConfig(budget_minutes=60)))


def test_the_graffiti_claim_is_not_measured_on_synthetic_warps():
    from slife.demo_report import claims

    life = {"group": "life", "probe_abs_rel_aligned": 0.2, "top1_displaced": 0.3, "match_aepe": 10.0,
            "match_pck5": 0.5}
    s = {"encoders": {"life-kitchen": life, "untrained": {**life, "group": "untrained"}},
         "zero_flow": {"match_aepe": 50.0, "match_pck5": 0.01}, "chance_top1": 0.125,
         "alignment_beyond_shortcut": {"life_life": None, "life_control": None, "untrained_untrained": None,
                                       "life_same_position": 0.0}}
    graffiti = lambda s: next(c for c in claims(s) if "graffiti" in c["claim"])  # noqa: E731
    assert graffiti({**s, "match_real_photographs": True})["holds"] is True
    c = graffiti({**s, "match_real_photographs": False})
    assert c["holds"] is None and c["numbers"].startswith("not measured here")


def test_full_study_smoke(tmp_path):
    """`slife demo --study full` (smoke size): the third life, the five ablation arms and the growing life are
    trained, evaluated and reported; the continued model's probe margin over the one trained on all days at once
    is paired readout by readout."""
    out = tmp_path / "full"
    r = CliRunner().invoke(app, ["demo", "--study", "full", "--out", str(out), "--budget-minutes", "0.5"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert {n for n, e in s["encoders"].items() if e["group"] == "ablation"} == {
        f"ablation-{a}" for a in ("spatial+temporal", "temporal", "spatial", "random", "augmented")}
    assert {"life-kitchen", "life-office", "life-bedroom", "growing-continued", "growing-whole"} <= set(s["encoders"])
    g = s["growing"]
    assert g["days"] == [2, 4] and len(g["segments"]) == 2 and g["old_tars_unchanged"] is True
    probes = json.loads((out / "stages.json").read_text())["stages"]["eval"]["result"]["probe"]
    per = {n: [x["metrics_aligned"]["abs_rel"] for x in json.loads(open(probes[n]).read())["readouts"]]
           for n in ("growing-continued", "growing-whole")}
    d = [a - b for a, b in zip(per["growing-continued"], per["growing-whole"])]
    assert g["probe_continued_minus_whole"]["diff"] == pytest.approx(sum(d) / 2)
    assert g["probe_continued_minus_whole"]["se"] == pytest.approx(abs(d[0] - d[1]) / 2)
    text = (out / "report.md").read_text()
    for section in ("Pairing ablation (one life, equal pair caps)", "A growing life: training continued"):
        assert section in text
    pm = g["probe_continued_minus_whole"]
    assert f"Continued minus from-the-start: probe_abs_rel_aligned {pm['diff']:.3f} ± {pm['se']:.3f}" in text


def test_a_finished_demo_scored_with_another_plan_is_a_one_line_error_naming_the_settings(tmp_path):
    """The bench scripts that score a finished demo again read its stages.json through `finished_stages` and refuse
    one whose plan is not the one this code would score it with (`same_plan`), naming the settings."""
    from dataclasses import asdict, replace

    from slife.demo import DemoConfig, _jsonable, _plan, finished_stages, same_plan
    from slife.errors import SlifeError

    cfg = DemoConfig(seed=3)
    plan = _plan(cfg)
    (tmp_path / "stages.json").write_text(json.dumps(
        {"identity": {"config": _jsonable(asdict(cfg)), "plan": _jsonable(asdict(plan))},
         "stages": {"mine": {"result": {}, "seconds": 1}, "train": {"result": {}, "seconds": 1}}}))
    got, stored, res = finished_stages(tmp_path)
    assert got.seed == 3 and set(res) == {"mine", "train"}
    same_plan(tmp_path, stored, plan)  # the same plan: no error
    with pytest.raises(SlifeError) as e:
        same_plan(tmp_path, stored, replace(plan, probe_epochs=plan.probe_epochs + 1, cas_pairs=plan.cas_pairs + 1))
    msg = str(e.value)
    assert str(tmp_path / "stages.json") in msg and "cas_pairs, probe_epochs" in msg and "\n" not in msg
    with pytest.raises(SlifeError, match="not finished \\(eval missing\\)"):
        finished_stages(tmp_path, ("train", "eval"))
    full = DemoConfig(study="full")  # a growing study: its grow stage's models are evaluated with the trained ones
    (tmp_path / "stages.json").write_text(json.dumps(
        {"identity": {"config": _jsonable(asdict(full)), "plan": _jsonable(asdict(_plan(full)))},
         "stages": {"mine": {"result": {}, "seconds": 1}, "train": {"result": {}, "seconds": 1}}}))
    with pytest.raises(SlifeError, match="not finished \\(grow missing\\)"):
        finished_stages(tmp_path)
