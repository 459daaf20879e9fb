"""The single-life study in miniature: synthesize lives, mine pairs, train tiny CroCos (and, in the objectives
study, DINOv2 and egomotion ViTs), evaluate, report.

Reads nothing but `../shared/data/graffiti_homography` when present (real photographs with known
homographies for zero-shot correspondence; otherwise HPatches-style pairs are made by warping a
synthetic frame). Writes under `out_dir`: `lives/` (slife life folders, and `probe/` the place-disjoint
depth benchmark: `train/` and `test/` folders of held-out scenes), `shards/` (pair shards), `runs/`
(checkpoints, metrics, previews), `eval/` (cas/, cas_half/, probe/, match/, and with objective arms top1/: the
decoder's attention read with the target masked as training does, `_Plan.attention_masked`; cas_complete/ and
match_complete/ read it complete, beside them; with objective arms top1_features/, encoder features, no
attention), `stages.json` (wall time and outputs of each finished stage; a rerun skips them; a folder made with
other evaluation settings, `_EVAL_SETTINGS`, redoes only its evaluation and report, and one made with other
settings of anything else stops with an error rather than reuse its models), `summary.json` (the numbers,
machine-readable) and `report.md` with its PNGs.

Four named studies (`STUDIES`): `default` (a 15-min budget, about 32 min in all on 2 cores: two lives and the two
non-life controls),
`full` (the smallest budget that measured the claims, with a third life and the pairing ablation, plus the
growing-life arm: a life of 2 days trained on, grown to 4 days by `synth --append-days` and `mine-pairs`'
appended generation, training continued in a new segment, against a model trained on the 4 days from the
start for the same total steps; `_do_grow`), `ablation` (the pairing ablation alone: one life's model and the
paper's five pairing arms on that life, each with the default study's training time) and `objectives` (one
life learned by three objectives side by
side: CroCo, DINOv2 and egomotion, each arm with the same wall time, compared on the depth probe and on
correspondence beside untrained encoders of each architecture). Models train two at a time, side by side, one
torch thread each (measured faster than one model on two threads: bench/README.md); steps are calibrated from a
short side-by-side run of each objective so the study fits its budget.
Entry point: `run(cfg, out_dir, announce=None, task=None) -> Path` (report.md). Every stage is the `run`
function behind a CLI command, called by path; `announce(stage, command)` is given the equivalent command
line so the CLI can print the demo as a tutorial, and `task(description, total)` opens a progress context
for each long piece of work. The maths of each stage is in its package (synth, pairmine, train, eval);
this module only chooses sizes, schedules processes and chains stages; `demo_report.py` writes the
summary and the report.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from slife.errors import SlifeError

log = logging.getLogger(__name__)

ABLATION = ("spatial+temporal", "temporal", "spatial", "random", "augmented")  # the paper's order, best first
# the lives' pairs in the default and full studies: augmented pairs beside the spatial and temporal ones taught
# displaced correspondence sooner in the single-model runs of bench/study.md (session 9)
LIFE_PAIRS = "spatial+temporal+augmented"


@dataclass(frozen=True)
class Study:
    """What a named study trains and its default budget; sizes scale with the budget (`_plan`)."""

    lives: tuple  # (scene, days) of each life trained on; the first also holds the pairing ablation
    controls: tuple  # non-life controls trained like a life: "static" (one fixed camera), "screen" (no camera)
    ablation: bool  # also train the pairing-ablation arms (`ABLATION`, but the lives' own strategies) on the first life
    budget_minutes: float  # default budget on 2 cores: training time and sizes scale with it (`_plan`)
    description: str  # one line for --help and the report
    objectives: tuple = ()  # other objectives trained on the first life's pairs beside its CroCo: "objective-<name>"
    growing: tuple | None = None  # (scene, days at first, days grown to) of the growing-life arm (`_do_grow`)
    life_pairs: str = "spatial+temporal"  # the strategies every life's pairs are mined with (controls keep their own)


STUDIES: dict[str, Study] = {
    "default": Study(lives=(("kitchen", 3), ("office", 2)), controls=("static", "screen"), ablation=False,
                     budget_minutes=15.0, description="two lives and the two non-life controls",
                     life_pairs=LIFE_PAIRS),
    "full": Study(lives=(("kitchen", 3), ("office", 2), ("bedroom", 2)), controls=("static", "screen"),
                  ablation=True, budget_minutes=60.0, growing=("kitchen", 2, 4),
                  description="three lives, the two controls, the pairing ablation on the first life and a "
                              "growing life (days 1-2, then grown to 1-4 and training continued)",
                  life_pairs=LIFE_PAIRS),
    "ablation": Study(lives=(("kitchen", 3),), controls=(), ablation=True, budget_minutes=22.5,
                      description="the pairing ablation alone: one life (its own pairs) and the paper's five "
                                  "pairing arms on it, each model with the default study's training time",
                      life_pairs=LIFE_PAIRS),
    "objectives": Study(lives=(("kitchen", 3),), controls=(), ablation=False, objectives=("dinov2", "egomotion"),
                        budget_minutes=20.0, description="one life learned by CroCo, DINOv2 and egomotion, each arm "
                        "with the same training time"),
}


@dataclass(frozen=True)
class DemoConfig:
    """The miniature study; `budget_minutes` (default: the study's) scales durations and training steps."""

    study: str = "default"  # a key of STUDIES
    budget_minutes: float | None = None  # budget on 2 cores (training and sizes; evaluation on top); < 2: smoke
    seed: int = 0  # seeds lives, mining, training and evaluation
    width: int = 128  # synthetic video width in pixels
    height: int = 96  # synthetic video height in pixels
    fps: float = 5.0  # synthetic video frame rate (frames are also mined at this rate)
    batch_size: int = 16  # pairs per training step (16 against 32: twice the steps for the same pairs/s; bench/study.md)
    lr: float = 1e-3  # training learning rate (DESIGN.md: 1e-3 trains tiny CroCo on CPU)
    side_by_side: int = 2  # models (and evaluation jobs) run at once, each in its own process on one torch thread
    photos: bool = True  # scenes textured with photographs too (`slife synth --photos`; bench/study.md)
    heldout_scene: str = "workshop"  # a life no model sees: the CAS test pairs
    probe_train_scenes: tuple = ("gallery", "living_room", "apartment")  # held-out scenes the depth readout trains on
    probe_test_scene: str = "workshop"  # the probe's test place (another layout than the CAS life's)
    probe_views: int = 160  # views rendered per probe scene (3 x 160 = 480 training views)

    def __post_init__(self):
        if self.study not in STUDIES:
            raise SlifeError(f"--study must be one of {', '.join(STUDIES)}, got {self.study!r}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise SlifeError(f"--budget-minutes must be positive, got {self.budget_minutes}")
        if self.side_by_side < 1:
            raise SlifeError(f"side_by_side must be >= 1, got {self.side_by_side}")

    @property
    def spec(self) -> Study:
        return STUDIES[self.study]

    @property
    def budget(self) -> float:
        return self.budget_minutes if self.budget_minutes is not None else self.spec.budget_minutes

    @property
    def smoke(self) -> bool:
        return self.budget < 2.0


@dataclass(frozen=True)
class _Plan:
    """Sizes derived from the study and budget."""

    life_seconds: float  # video seconds per life (all days together)
    width: int
    height: int
    fps: float
    mine_fps: float  # frames sampled per second when mining
    max_pairs: int  # pairs per training set (ablation arms hold it fixed)
    probe_views: int  # views rendered per probe scene
    probe_epochs: int  # readout epochs (measured to converge: bench/README.md)
    probe_readouts: int  # readouts per encoder, their scores averaged (one moves with its seed: bench/eval.md)
    probe_lrs: tuple  # the readout's candidate learning rates: each encoder and control takes the one with the
    # lowest error on a held-out training place (depth_probe.choose_lr; bench/study.md, session 15)
    cas_pairs: int  # test pairs for CAS
    match_pairs: int  # homography pairs for correspondence (0: all)
    batch_size: int  # pairs per training step
    short_side: int  # stored frames' short side; CroCo's training crops are cut from it unresized
    norm_pix_loss: bool  # CroCo's targets: per-patch normalised pixels (the paper) when each model trains at least
    # NORMALISED_TARGETS_FROM minutes (the 60-min default study), else raw
    train_share: float  # share of the budget spent training (the rest: synth and mining; the evaluation is longer
    # than what is left and comes on top, about 17 min for the default study)
    attention_masked: bool  # read the decoder's attention (CAS, top-1, match) with the target masked as in
    # training (`attention.masked_logits`; bench/study.md, session 18) instead of with nothing masked
    cas_untrained: int  # untrained CroCos in the CAS stage: untrained-untrained is the mean over their pairs, and the
    # spread of their pairs' scores is the alignment claims' floor of error (bench/study.md, session 19)


# CroCo's targets by how long each model trains (bench/study.md, sessions 12-14): raw pixels when it is short (the
# 15-min default study's 4.65 min a model: the depth probe, 3 readouts, beat the same initialisation trained on
# the paper's per-patch normalised targets in 5 of 6 model-seeds, by little), the paper's normalised ones from
# the 60-min default study's 18.6 min (raw targets cost most of the alignment there in both seeds measured and
# bought no consistent probe gain). The lengths between were not measured.
NORMALISED_TARGETS_FROM = 18.0  # minutes of training per model
PROBE_LRS = (1e-4, 3e-4, 1e-3, 3e-3)  # the depth readout's learning rates, chosen per encoder (session 15)
# the evaluation reads the decoder's attention with the target masked, as training does (bench/study.md, session 18:
# decided before any number of it); CAS and match also read it complete, DESIGN.md's CAS, beside it
ATTENTION_MASKED = True
# untrained CroCos the CAS stage scores (15 pairs): two untrained models score away from 0 by four times the jackknife
# error of one pair (bench/README.md, session 17), so the alignment claims need the spread of several pairs
CAS_UNTRAINED = 6


def _plan(cfg: DemoConfig) -> _Plan:
    if cfg.smoke:
        return _Plan(life_seconds=4.0, width=64, height=48, fps=4.0, mine_fps=4.0, max_pairs=24, probe_views=6,
                     probe_epochs=1, probe_readouts=2, probe_lrs=(1e-3, 3e-3), cas_pairs=4, match_pairs=1,
                     batch_size=4, short_side=72, norm_pix_loss=False, train_share=0.5,
                     attention_masked=ATTENTION_MASKED, cas_untrained=3)
    s = cfg.budget / cfg.spec.budget_minutes
    train_share = 0.62
    per_model = cfg.budget * train_share / _rounds(cfg)  # minutes each model trains
    return _Plan(life_seconds=max(60.0, 600.0 * min(s, 1.0)), width=cfg.width, height=cfg.height, fps=cfg.fps,
                 mine_fps=cfg.fps, max_pairs=int(max(1000, 12000 * min(s, 1.0))), probe_views=cfg.probe_views,
                 probe_epochs=60, probe_readouts=3, probe_lrs=PROBE_LRS, cas_pairs=96, match_pairs=0,
                 batch_size=cfg.batch_size, short_side=80, norm_pix_loss=per_model >= NORMALISED_TARGETS_FROM,
                 train_share=train_share, attention_masked=ATTENTION_MASKED, cas_untrained=CAS_UNTRAINED)


# plan settings a stages.json made before them lacks: what its models and evaluation had
_PLAN_BEFORE = {"norm_pix_loss": True, "probe_lrs": [1e-3], "attention_masked": False, "cas_untrained": 2}


class _Stages:
    """stages.json: each finished stage's outputs and wall time; a rerun returns them without working."""

    def __init__(self, out_dir: Path, identity: dict):
        self.path = out_dir / "stages.json"
        self.data = {"identity": identity, "stages": {}}
        if self.path.exists():
            old = json.loads(self.path.read_text())
            old_id = old.get("identity") or {}
            if isinstance(old_id.get("plan"), dict):  # settings added to the plan later: the value they had before
                old_id = {**old_id, "plan": {**_PLAN_BEFORE, **old_id["plan"]}}
            changed = _differences(old_id, identity)
            if old_id == identity:
                self.data = {**old, "identity": identity}
            elif changed and all(part == "plan" and k in _EVAL_SETTINGS for part, k in changed):
                log.warning("%s: evaluation settings changed (%s); the evaluation and the report are redone, the "
                            "trained models kept", self.path, ", ".join(f"plan.{k}" for _, k in changed))
                self.data["stages"] = {k: v for k, v in (old.get("stages") or {}).items()
                                       if k not in ("eval", "report")}
            elif (out_dir / "runs").exists():  # trained models of other settings would be resumed as these
                raise SlifeError(f"{out_dir}: its models were trained with other settings "
                                 f"({_difference(old_id, identity)}); use another --out, or "
                                 f"delete {out_dir / 'runs'} to train them again")
            else:
                log.warning("%s: made with other settings; stages are redone (their own outputs resume)", self.path)

    def done(self, name: str):
        return self.data["stages"].get(name)

    def finish(self, name: str, result: dict, seconds: float) -> dict:
        self.data["stages"][name] = {"result": result, "seconds": round(seconds, 2)}
        from slife.io import atomic_write_json

        atomic_write_json(self.path, self.data, indent=2)
        return result


# plan settings that only the evaluation reads: a change redoes the evaluation and the report, not the training
_EVAL_SETTINGS = frozenset({"probe_epochs", "probe_readouts", "probe_lrs", "attention_masked", "cas_untrained"})


def _differences(old: dict, new: dict) -> list[tuple[str, str]]:
    """The settings (part "config" or "plan", key) that differ between two stages.json identities (absent: None)."""
    return [(part, k) for part in ("config", "plan")
            for k in sorted(set(old.get(part) or {}) | set(new.get(part) or {}))
            if (old.get(part) or {}).get(k) != (new.get(part) or {}).get(k)]


def _difference(old: dict, new: dict) -> str:
    """The first setting other than the evaluation's that differs between two stages.json identities:
    "plan.x: old -> new" (absent: None)."""
    for part, k in _differences(old, new):
        if part == "plan" and k in _EVAL_SETTINGS:
            continue
        return f"{part}.{k}: {(old.get(part) or {}).get(k)!r} -> {(new.get(part) or {}).get(k)!r}"
    return "another format of stages.json"


@contextmanager
def _no_task(description: str, total: int | None = None):
    yield lambda *a, **k: None


def run(cfg: DemoConfig, out_dir: Path | str, announce: Callable[[str, str], None] | None = None,
        task: Callable[[str, int | None], ContextManager[Callable[..., None]]] | None = None) -> Path:
    """Run (or resume) the whole miniature study under `out_dir`; returns report.md."""
    progress = task or _no_task
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(cfg)
    stages = _Stages(out, {"config": _jsonable(asdict(cfg)), "plan": _jsonable(asdict(plan))})
    say = announce or (lambda stage, cmd: None)

    def stage(name: str, command: str, fn: Callable[[], dict]) -> dict:
        prev = stages.done(name)
        if prev is not None:
            say(name, f"(done, skipped) {command}")
            return prev["result"]
        say(name, command)
        t0 = time.perf_counter()
        res = fn()
        return stages.finish(name, res, time.perf_counter() - t0)

    lives = stage("synth", _synth_cmd(cfg, plan, out), lambda: _do_synth(cfg, plan, out, progress))
    shards = stage("mine", "slife mine-pairs LIFE --strategy ... --fps %g --max-pairs %d --out %s/shards/NAME"
                   % (plan.mine_fps, plan.max_pairs, out), lambda: _do_mine(cfg, plan, out, lives, progress))
    arms = "|".join(cfg.spec.objectives)
    runs = stage("train", f"slife train {out}/shards/NAME --preset tiny {f'[--objective {arms}] ' if arms else ''}"
                 f"--steps N --threads 1 {_targets_opt(plan)} --out {out}/runs/NAME ({cfg.side_by_side} side by side; "
                 f"the objective-conf for CroCo models only)",
                 lambda: _do_train(cfg, plan, out, shards, progress))
    masked = " --masked" if plan.attention_masked else ""
    top1 = (f"; slife top1 {out}/runs/*/last.pt --pairs {out}/shards/heldout --method auto{masked} (and --method "
            "features)" if arms else "")
    growing = None
    if cfg.spec.growing:
        growing = stage("grow", _grow_cmd(cfg, plan, out), lambda: _do_grow(cfg, plan, out, runs["steps"], progress))
        runs, shards = with_grown(runs, shards, growing)
    uns = ",".join(str(cfg.seed + i) for i in range(plan.cas_untrained))
    evals = stage("eval", f"slife cas {out}/runs/*/last.pt --pairs {out}/shards/heldout --untrained-seeds {uns}"
                  f"{masked}; "
                  f"slife probe life CKPT --data-root {out}/lives/probe --frame-step 1 --epochs {plan.probe_epochs} "
                  f"--batch-size 32 --seed {cfg.seed} --readouts {plan.probe_readouts} "
                  + "".join(f"--lr {x:g} " for x in plan.probe_lrs) +
                  f"--control-oracle --control-position{top1}; slife match hpatches ...{masked}"
                  + ("; slife cas and slife match again with the target complete" if masked else ""),
                  lambda: _do_eval(cfg, plan, out, lives, shards, runs, progress))
    return Path(stage("report", f"(writes {out}/summary.json and {out}/report.md)",
                      lambda: {"report": str(_write_report(cfg, plan, out, stages, lives, shards, runs, evals,
                                                           growing))})["report"])


def with_grown(runs: dict, shards: dict, growing: dict | None) -> tuple[dict, dict]:
    """The train and mine stages' results with the grow stage's models and shards added: the growing study's
    models are evaluated and reported with the rest."""
    if not growing:
        return runs, shards
    return {**runs, "models": {**runs["models"], **growing["models"]}}, {**shards, **growing["shards"]}


# ----------------------------------------------------------------------------------------------- side by side


def _job(fn: Callable, name: str, args: tuple, queue) -> tuple:
    """One job in a spawned process: one torch thread, log records and progress sent to the parent."""
    import logging.handlers

    import torch

    torch.set_num_threads(1)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.DEBUG)

    def progress(n: int = 1, total: int | None = None, info: str | None = None, **_):
        queue.put(("progress", name, n, total, info))

    t0 = time.perf_counter()
    res = fn(*args, progress=progress)
    return res, time.perf_counter() - t0


def _side_by_side(jobs: list[tuple[str, Callable, tuple]], parallel: int, adv: Callable[..., None],
                  grows: frozenset = frozenset(), total: int = 0) -> dict:
    """Run each (name, fn, args) job as fn(*args, progress=...), `parallel` at a time in spawned processes with
    one torch thread each, in the order given; their log records are re-emitted here and their progress summed into
    `adv`. The jobs named in `grows` count towards the bar with the total each declares when it starts
    (`progress(0, total=T)`), added to `total` (the bar's total for the others, as the caller set it).
    Returns name -> (result, seconds). A job's error (a SlifeError's one line) is raised here at once: the running
    jobs are stopped and the queued ones dropped."""
    declared: dict[str, int] = {}

    def report(name: str, n: int, job_total: int | None, info: str | None):
        kw = {}
        if name in grows and job_total is not None:
            declared[name] = job_total
            kw["total"] = total + sum(declared.values())
        adv(n, info=f"{name} {info}" if info else None, **kw)

    if parallel <= 1 or len(jobs) <= 1:
        out = {}
        for name, fn, args in jobs:
            t0 = time.perf_counter()
            adv(0, info=name)
            res = fn(*args, progress=lambda n=1, total=None, info=None, _name=name, **_: report(_name, n, total, info))
            out[name] = (res, time.perf_counter() - t0)
        return out
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # clean interpreters (reused by later jobs): no torch threads inherited by fork
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=parallel, mp_context=ctx) as pool:
        q = manager.Queue()
        futures = {pool.submit(_job, fn, name, args, q): name for name, fn, args in jobs}
        pending, results = set(futures), {}

        def drain():
            while True:
                try:
                    item = q.get_nowait()
                except queue_mod.Empty:
                    return
                if isinstance(item, logging.LogRecord):
                    lg = logging.getLogger(item.name)
                    if lg.isEnabledFor(item.levelno):
                        lg.handle(item)
                elif item[0] == "progress":
                    report(*item[1:])

        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for f in done:
                    results[futures[f]] = f.result()  # re-raises the job's error
        except BaseException:  # a job's error, Ctrl-C: stop the running jobs and drop the queued ones now, not
            for proc in list((getattr(pool, "_processes", None) or {}).values()):  # after them (terminate_workers
                proc.terminate()  # in Python 3.14)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        drain()
    return results


# ----------------------------------------------------------------------------------------------- stages


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _synth_cmd(cfg: DemoConfig, plan: _Plan, out: Path) -> str:
    return (f"slife synth {out}/lives/SCENE --scene SCENE --days D --duration {plan.life_seconds:g} "
            f"--fps {plan.fps:g} --width {plan.width} --height {plan.height} --seed {cfg.seed}; "
            f"slife synth {out}/lives/probe/train/SCENE --kind views ...")


def _synth_common(cfg: DemoConfig, plan: _Plan) -> dict:
    """SynthConfig kwargs every life of the demo shares."""
    return dict(fps=plan.fps, width=plan.width, height=plan.height, texture_size=64 if cfg.smoke else 256,
                points=4000 if cfg.smoke else 60_000, photos=cfg.photos)


def _lives_spec(cfg: DemoConfig, plan: _Plan) -> dict:
    """relative folder under lives/ -> SynthConfig kwargs."""
    common = _synth_common(cfg, plan)
    spec = {}
    for i, (scene, days) in enumerate(cfg.spec.lives):
        spec[f"life-{scene}"] = dict(kind="life", scene=scene, days=days, duration=plan.life_seconds,
                                     seed=cfg.seed + 10 * i, **common)
    first = cfg.spec.lives[0][0]
    if "static" in cfg.spec.controls:
        spec["control-static"] = dict(kind="static", scene=first, duration=plan.life_seconds, seed=cfg.seed + 100,
                                      **common)
    if "screen" in cfg.spec.controls:
        spec["control-screen"] = dict(kind="screen", duration=plan.life_seconds, seed=cfg.seed + 101, **common)
    spec["heldout"] = dict(kind="life", scene=cfg.heldout_scene, days=1, duration=max(4.0, min(60.0, plan.life_seconds)),
                           seed=cfg.seed + 200, **common)
    views = dict(kind="views", duration=plan.probe_views / plan.fps, **common)
    for j, scene in enumerate(cfg.probe_train_scenes):
        spec[f"probe/train/{scene}"] = dict(scene=scene, seed=cfg.seed + 300 + j, **views)
    spec[f"probe/test/{cfg.probe_test_scene}"] = dict(scene=cfg.probe_test_scene, seed=cfg.seed + 399, **views)
    return spec


def _do_synth(cfg: DemoConfig, plan: _Plan, out: Path, task) -> dict:
    from slife.synth import SynthConfig, run as synth_run

    specs = {name: SynthConfig(**kw) for name, kw in _lives_spec(cfg, plan).items()}
    total = sum(sc.frames_per_day() * (sc.days if sc.kind == "life" else 1) for sc in specs.values())
    paths = {}
    with task(f"synth {len(specs)} lives", total) as adv:
        for name, sc in specs.items():
            paths[name] = str(synth_run(sc, out / "lives" / name, progress=adv))
    paths["probe"] = str(out / "lives" / "probe")
    return paths


def _mine_sets(cfg: DemoConfig) -> dict:
    """shard-set name -> (life name, strategies)."""
    first = f"life-{cfg.spec.lives[0][0]}"
    sets = {f"life-{scene}": (f"life-{scene}", cfg.spec.life_pairs) for scene, _ in cfg.spec.lives}
    if "static" in cfg.spec.controls:
        sets["control-static"] = ("control-static", "temporal+augmented")  # one place: spatial J ~ 1 everywhere
    if "screen" in cfg.spec.controls:
        sets["control-screen"] = ("control-screen", "temporal+random")  # no poses: no spatial pairs
    if cfg.spec.ablation:
        for arm in ABLATION:  # the first life's own model is the arm of its strategies
            if arm != cfg.spec.life_pairs:
                sets[f"ablation-{arm}"] = (first, arm)
    return sets


def _mine_base(cfg: DemoConfig, plan: _Plan) -> dict:
    """MineConfig kwargs every shard set of the demo shares: enough candidates per frame that every ablation
    arm can reach the same cap (max_pairs)."""
    return dict(fps=plan.mine_fps, short_side=plan.short_side, seed=cfg.seed, temporal_per_frame=4,
                random_per_frame=4, augmented_per_frame=4.0, pairs_per_shard=max(50, plan.max_pairs // 4),
                preview=4 if not cfg.smoke else 2)


def _do_mine(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, task) -> dict:
    from slife import pairmine as pm

    res = {}
    base = _mine_base(cfg, plan)
    sets = _mine_sets(cfg)
    with task(f"mine {len(sets) + 1} shard sets", None) as adv:
        for name, (life, strategy) in sets.items():
            mc = pm.MineConfig(strategies=pm.parse_strategies(strategy), max_pairs=plan.max_pairs, **base)
            manifest = pm.run(mc, lives[life], out / "shards" / name, progress=adv,
                              command=f"slife mine-pairs {lives[life]} --strategy {strategy} --fps {plan.mine_fps:g} "
                                      f"--max-pairs {plan.max_pairs}")
            m = json.loads(Path(manifest).read_text())
            res[name] = {"path": str(Path(manifest).parent), "life": life, "strategy": strategy,
                         "pairs": m["summary"].get("pairs_written", m["summary"]["pairs"]),
                         "per_strategy": m["summary"]["pairs_per_strategy"]}
        # held-out test pairs for CAS: spatial+temporal from a life no model trains on
        mc = pm.MineConfig(strategies=("spatial", "temporal"), max_pairs=max(plan.cas_pairs * 2, 16), **base)
        manifest = pm.run(mc, lives["heldout"], out / "shards" / "heldout", progress=adv,
                          command="slife mine-pairs heldout")
    m = json.loads(Path(manifest).read_text())
    res["heldout"] = {"path": str(Path(manifest).parent), "life": "heldout", "strategy": "spatial+temporal",
                      "pairs": m["summary"]["pairs"], "per_strategy": m["summary"]["pairs_per_strategy"]}
    return res


def _train_sets(cfg: DemoConfig) -> dict:
    """model name -> shard-set name (the first life's model is also the ablation arm of its strategies, when
    they are one, and the CroCo arm beside the objective arms, which train on the first life's pairs)."""
    sets = {name: name for name in _mine_sets(cfg)}
    sets.update({f"objective-{obj}": f"life-{cfg.spec.lives[0][0]}" for obj in cfg.spec.objectives})
    return sets


def objective_of(name: str) -> str:
    """The training objective of a demo model: objective-<name> arms train <name>, every other model CroCo."""
    return name.split("-", 1)[1] if name.startswith("objective-") else "croco"


def _objectives(cfg: DemoConfig) -> tuple:
    """The objectives a study trains, CroCo first."""
    return ("croco",) + tuple(cfg.spec.objectives)


def _train_config(cfg: DemoConfig, plan: _Plan, steps: int, index: int, objective: str = "croco", **over):
    from slife.train import TrainConfig
    from slife.train.objectives import objective_class

    # independently trained models: each its own initialisation, masking and data order. CroCo takes the demo's
    # lr (1e-3: its tiny recipe); another objective takes its own tiny recipe (lr = its blr x batch / 256)
    recipe = objective_class(objective).recipe("tiny")
    if objective != "croco":
        recipe.setdefault("lr", None if "blr" in recipe else cfg.lr)
    kw = dict(objective=objective, preset="tiny", steps=steps, batch_size=plan.batch_size, lr=cfg.lr,
              warmup_steps=max(1, steps // 10),
              save_every=max(1, steps // 2), keep_every=max(1, steps // 2), preview_every=max(1, steps),
              log_every=max(1, steps // 50), seed=1000 * cfg.seed + index, num_workers=0 if cfg.smoke else 1,
              threads=1 if cfg.side_by_side > 1 else None)
    kw.update(recipe)
    if objective == "croco":  # each view a random crop of the stored frame, unresized: larger shifts between the
        kw["resize_short"] = plan.short_side  # two crops than CroCo's 256 -> 224 (bench/study.md, session 9)
        # raw or normalised by how long each model trains (NORMALISED_TARGETS_FROM)
        kw["objective_conf"] = {"norm_pix_loss": plan.norm_pix_loss}
    kw.update(over)
    return TrainConfig(**kw)


def _train_one(tc, shards: str, out_dir: str, progress=None) -> str:
    from slife.train import run as train_run

    return str(train_run(tc, shards, Path(out_dir), progress=progress))


def _calibrate(cfg: DemoConfig, plan: _Plan, shards: str, tmp: Path, task) -> dict:
    """objective -> (training pairs/s of ONE model while `side_by_side` run at once, fixed seconds per run), from
    short runs of each objective the study trains (each run `side_by_side` times when it is the only one, so
    that the runs measured are side by side as the real ones).

    The result is kept in `tmp/calibration.json`, so a demo interrupted while training resumes its runs with the
    same step counts (and so the same learning-rate schedules) instead of measuring again."""
    import csv

    objectives = _objectives(cfg)
    saved = tmp / "calibration.json"
    if saved.exists():
        c = json.loads(saved.read_text())
        per = c.get("objectives") or {"croco": c}  # calibration.json from before objectives: CroCo's
        if set(objectives) <= set(per):
            return {o: (float(per[o]["pairs_per_s"]), float(per[o]["overhead_s"])) for o in objectives}
    steps = 8
    runs = [o for o in objectives for _ in range(-(-cfg.side_by_side // len(objectives)))]
    jobs = [(f"calibrate-{i}", _train_one, (_train_config(cfg, plan, steps, 900 + i, objective, warmup_steps=1,
                                                          save_every=1000, keep_every=0, preview_every=0, log_every=1,
                                                          resume="never"), shards, str(tmp / str(i))))
            for i, objective in enumerate(runs)]
    with task("calibrate training speed", steps * len(jobs)) as adv:
        done = _side_by_side(jobs, cfg.side_by_side, adv)
    rates, overheads = {o: [] for o in objectives}, {o: [] for o in objectives}
    for i, objective in enumerate(runs):
        seconds = done[f"calibrate-{i}"][1]
        r = [float(x["pairs_per_s"]) for x in csv.DictReader((tmp / str(i) / "metrics.csv").open())][2:]
        pps = float(np.median(r)) if r else steps * plan.batch_size / seconds
        rates[objective].append(pps)
        overheads[objective].append(max(0.0, seconds - steps * plan.batch_size / pps))
    res = {o: (float(np.median(rates[o])), float(np.median(overheads[o]))) for o in objectives}
    from slife.io import atomic_write_json

    atomic_write_json(saved, {"objectives": {o: {"pairs_per_s": p, "overhead_s": h} for o, (p, h) in res.items()},
                              "side_by_side": cfg.side_by_side, "steps": steps}, indent=None)
    return res


def _rounds(cfg: DemoConfig) -> float:
    """Rounds of training in a study: its models train `side_by_side` at a time, and the growing-life arm
    (`_do_grow`) adds half a run alone, then half a run beside a whole one. Each round gets an equal share of the
    training time."""
    rounds = -(-len(_train_sets(cfg)) // cfg.side_by_side)
    if cfg.spec.growing:
        rounds += 1.5 if cfg.side_by_side > 1 else 2.0
    return rounds


def _do_train(cfg: DemoConfig, plan: _Plan, out: Path, shards: dict, task) -> dict:
    """Train every model of the study; each objective gets the steps its calibrated speed fits in the same wall
    time per model (`steps` is CroCo's, `steps_per_objective` all of them)."""
    sets = _train_sets(cfg)
    rounds = _rounds(cfg)
    if cfg.smoke:
        steps_of, pps_of = {o: 2 for o in _objectives(cfg)}, {o: None for o in _objectives(cfg)}
    else:
        cal = _calibrate(cfg, plan, shards[next(iter(sets.values()))]["path"], out / "runs" / ".calibration", task)
        steps_of, pps_of = {}, {}
        for objective, (pps, overhead) in cal.items():
            seconds = cfg.budget * 60 * plan.train_share / rounds - overhead
            steps_of[objective], pps_of[objective] = max(20, int(seconds * pps / plan.batch_size)), pps
    jobs = [(name, _train_one, (_train_config(cfg, plan, steps_of[objective_of(name)], i, objective_of(name)),
                                shards[shard_set]["path"], str(out / "runs" / name)))
            for i, (name, shard_set) in enumerate(sets.items())]
    total = sum(steps_of[objective_of(name)] for name in sets)
    with task(f"train {len(jobs)} models, {cfg.side_by_side} side by side", total) as adv:
        done = _side_by_side(jobs, cfg.side_by_side, adv)
    res = {"steps": steps_of["croco"], "calibrated_pairs_per_s": pps_of["croco"], "side_by_side": cfg.side_by_side,
           "models": {}}
    if cfg.spec.objectives:
        res["steps_per_objective"], res["calibrated_pairs_per_s_per_objective"] = steps_of, pps_of
    for name, shard_set in sets.items():
        ckpt, seconds = done[name]
        steps = steps_of[objective_of(name)]
        res["models"][name] = {"checkpoint": ckpt, "shards": shard_set, "seconds": seconds,
                               "objective": objective_of(name), "steps": steps,
                               "half": _half_snapshot(Path(ckpt).parent, steps)}
    return res


def _targets_opt(plan: _Plan) -> str:
    """The `slife train` option that gives the demo's CroCo models their reconstruction targets."""
    return f"--objective-conf '{{\"norm_pix_loss\": {str(plan.norm_pix_loss).lower()}}}'"


def _grow_cmd(cfg: DemoConfig, plan: _Plan, out: Path) -> str:
    scene, before, after = cfg.spec.growing
    life, sh = f"{out}/lives/growing-{scene}", f"{out}/shards/growing"
    t = _targets_opt(plan)
    return (f"slife synth {life} --scene {scene} --days {before} ...; slife mine-pairs {life} --out {sh} "
            f"--max-pairs {plan.max_pairs // 2}; slife train {sh} --steps N/2 {t} --out {out}/runs/growing-continued; "
            f"slife synth {life} --append-days {after - before}; slife mine-pairs {life} --out {sh} ...; "
            f"slife train {sh} --steps N/2 {t} --out {out}/runs/growing-continued (continues: segment 1); "
            f"slife mine-pairs {life} --out {out}/shards/growing-whole --max-pairs {plan.max_pairs}; "
            f"slife train {out}/shards/growing-whole --steps N {t} --out {out}/runs/growing-whole")


def _do_grow(cfg: DemoConfig, plan: _Plan, out: Path, steps: int, task) -> dict:
    """The growing-life arm: a life of `before` days (synthesized), mined (generation 0, max_pairs / 2 pairs) and
    trained on for steps // 2 steps (`growing-continued`); the life grown in place to `after` days
    (`synth.append_days`), the new days' pairs appended (generation 1, its own max_pairs / 2: `mine-pairs`
    quotas are per generation) and the same run continued for the remaining steps (a new segment:
    `train/segments.py`); beside it `growing-whole`, the grown life mined at once (max_pairs) and trained from
    the same initialisation for `steps`. Each step skips what is done, so an interrupted stage resumes.
    Returns {"first_steps", "steps", "life", "days", "old_tars_unchanged" (generation 0's tars hash as its manifest
    recorded them), "models": name -> run record, "shards": name -> set record}."""
    import hashlib

    from slife import pairmine as pm
    from slife.synth import SynthConfig, append_days, run as synth_run

    scene, before, after = cfg.spec.growing
    life, sets = out / "lives" / f"growing-{scene}", {"growing": plan.max_pairs // 2, "growing-whole": plan.max_pairs}
    sc = SynthConfig(kind="life", scene=scene, days=before, duration=plan.life_seconds * before / after,
                     seed=cfg.seed + 50, **_synth_common(cfg, plan))
    first = steps // 2
    index = len(_train_sets(cfg))  # both arms: the same seed, so the same initial weights
    cont, whole = out / "runs" / "growing-continued", out / "runs" / "growing-whole"

    def mine(name: str, adv) -> Path:
        mc = pm.MineConfig(strategies=pm.parse_strategies("spatial+temporal"), max_pairs=sets[name],
                           **_mine_base(cfg, plan))
        return pm.run(mc, life, out / "shards" / name, progress=adv,
                      command=f"slife mine-pairs {life} --strategy spatial+temporal --max-pairs {sets[name]}")

    with task(f"growing life: days 1-{before}", None) as adv:
        synth_run(sc, life, progress=adv)
        if not json.loads((life / "life.json").read_text()).get("appended_days"):  # not grown yet
            mine("growing", adv)
            _train_one(_train_config(cfg, plan, first, index), str(out / "shards" / "growing"), str(cont),
                       progress=adv)
            append_days(life, after - before, progress=adv)
    with task(f"growing life: grown to days 1-{after}", None) as adv:
        for name in sets:
            mine(name, adv)
    jobs = [("growing-continued", _train_one, (_train_config(cfg, plan, steps - first, index),
                                               str(out / "shards" / "growing"), str(cont))),
            ("growing-whole", _train_one, (_train_config(cfg, plan, steps, index), str(out / "shards" / "growing-whole"),
                                           str(whole)))]
    with task("growing life: continue, and train on all days", 2 * steps - first) as adv:
        done = _side_by_side(jobs, cfg.side_by_side, adv)
    res = {"first_steps": first, "steps": steps, "life": str(life), "days": [before, after], "models": {},
           "shards": {}}
    for name in sets:
        m = json.loads((out / "shards" / name / "manifest.json").read_text())
        if name == "growing":  # measured, not assumed: generation 0's tars are the bytes the manifest recorded
            old = [e for e in m["shards"] if e.get("generation") == 0]
            res["old_tars_unchanged"] = bool(old) and all(
                hashlib.sha256((out / "shards" / name / e["name"]).read_bytes()).hexdigest() == e.get("sha256")
                for e in old)
        res["shards"][name] = {"path": str(out / "shards" / name), "life": life.name, "strategy": "spatial+temporal",
                               "pairs": m["summary"].get("pairs_written", m["summary"]["pairs"]),
                               "per_strategy": m["summary"]["pairs_per_strategy"],
                               "generations": [g.get("pairs") for g in m.get("generations") or []]}
    for name, shard_set in (("growing-continued", "growing"), ("growing-whole", "growing-whole")):
        ckpt, seconds = done[name]
        res["models"][name] = {"checkpoint": ckpt, "shards": shard_set, "seconds": seconds,
                               "half": _half_snapshot(Path(ckpt).parent, steps)}
    return res


def _half_snapshot(run_dir: Path, steps: int) -> str | None:
    """The kept snapshot nearest to half the run (with an odd step count, keep_every = steps // 2 also keeps
    one just before the end: that one is not "half training")."""
    snaps = [p for p in run_dir.glob("step-*.pt") if int(p.stem.split("-")[1]) < steps]
    return str(min(snaps, key=lambda p: abs(int(p.stem.split("-")[1]) - steps / 2))) if snaps else None


GRAFFITI = Path(__file__).resolve().parents[2] / "shared" / "data" / "graffiti_homography"  # real photographs
SYNTHETIC_HOMOGRAPHIES = "homographies"  # eval/ subfolder of the warps made where GRAFFITI is absent


def _match_root(cfg: DemoConfig, out: Path, lives: dict) -> Path:
    """HPatches-style pairs: the real graffiti sequence if shared/ has it (`GRAFFITI`), else warps of a
    synthetic frame."""
    if GRAFFITI.is_dir():
        return GRAFFITI
    root = out / "eval" / SYNTHETIC_HOMOGRAPHIES / "v_synthetic"
    if (root / "H_1_6").exists():
        return root.parent
    import io

    from PIL import Image

    from slife.io import atomic_file, atomic_write_text
    from slife.lives import read_life

    life = read_life(lives[f"probe/test/{cfg.probe_test_scene}"])
    _, rgb = next(life.iter_frames([0]))
    img = Image.fromarray(rgb).resize((256, 192))
    root.mkdir(parents=True, exist_ok=True)
    with atomic_file(root / "1.ppm", keep_suffix=True, durable=False) as tmp:  # every file whole: H_1_6, the
        img.save(tmp)  # last one, says the folder is complete
    rng = np.random.default_rng(cfg.seed)
    for k in range(2, 7):
        a = np.radians(rng.uniform(-15, 15))
        s = rng.uniform(0.85, 1.15)
        H = np.array([[s * np.cos(a), -s * np.sin(a), rng.uniform(-20, 20)],
                      [s * np.sin(a), s * np.cos(a), rng.uniform(-15, 15)],
                      [rng.uniform(-2e-4, 2e-4), rng.uniform(-2e-4, 2e-4), 1.0]])
        c = np.array([[1, 0, 128], [0, 1, 96], [0, 0, 1.0]])
        H = c @ H @ np.linalg.inv(c)
        Hi = np.linalg.inv(H)
        warped = img.transform(img.size, Image.PERSPECTIVE, (Hi / Hi[2, 2]).ravel()[:8], Image.BILINEAR)
        with atomic_file(root / f"{k}.ppm", keep_suffix=True, durable=False) as tmp:
            warped.save(tmp)
        buf = io.StringIO()
        np.savetxt(buf, H)
        atomic_write_text(root / f"H_1_{k}", buf.getvalue())
    return root.parent


def untrained_name(cfg: DemoConfig, kind: str = "croco") -> str:
    """The demo's untrained control encoder of an architecture (`eval.models.untrained_models` with the demo's
    seed, named as every evaluation names it): untrained-s<seed> for CroCo (the control of every study),
    untrained-<kind>-s<seed> for another."""
    from slife.eval.models import untrained_label

    return untrained_label(kind, cfg.seed)


def _untrained_spec(objective: str = "croco"):
    """The architecture an objective's demo models train at the tiny preset (a `ModelSpec`): the architecture of
    their untrained control."""
    from slife.train.checkpoint import ModelSpec
    from slife.train.objectives import objective_class

    cls = objective_class(objective)
    return ModelSpec(cls.kind, dict(cls.presets["tiny"]))


def architecture_of(name: str) -> str:
    """The architecture a demo model trains ("croco" or "vit"): the kind of its own untrained control."""
    return _untrained_spec(objective_of(name)).kind


def _untrained_specs(cfg: DemoConfig) -> dict:
    """untrained control name -> ModelSpec, one per architecture the study trains (CroCo's first)."""
    out = {}
    for objective in _objectives(cfg):
        spec = _untrained_spec(objective)
        out.setdefault(untrained_name(cfg, spec.kind), spec)
    return out


def _probe_one(pcfg, checkpoint: str | None, out_dir: str, untrained_seed: int | None = None, spec=None,
               progress=None) -> str:
    """One depth probe: a trained checkpoint, or (checkpoint None) the untrained control of architecture `spec`."""
    from slife.eval.depth_probe import run as probe_run

    if checkpoint is not None:
        return str(probe_run(pcfg, [Path(checkpoint)], Path(out_dir), progress=progress))
    from slife.eval.models import untrained_models

    model = untrained_models([spec], [untrained_seed])[0][2]
    return str(probe_run(pcfg, [], Path(out_dir), progress=progress, model=model, spec=spec))


def _do_eval(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, shards: dict, runs: dict, task) -> dict:
    """Every evaluation of the study as one pool of jobs, `cfg.side_by_side` at a time: the depth probes first
    (`_probe_jobs`), then CAS and correspondence (`_attention_jobs`), which fill the cores the last probes leave
    free (bench/bench_eval_schedule.py, bench/eval.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # evaluation tensors are small: one thread is faster than two here (bench/eval.md)
    try:
        probes, total, what = _probe_jobs(cfg, plan, out, lives, runs)
        attention = _attention_jobs(cfg, plan, out, lives, shards, runs)
        with task(f"evaluation: {what}, then {', '.join(name for name, _, _ in attention)}; "
                  f"{cfg.side_by_side} side by side", total) as adv:  # the attention jobs add theirs as they start
            done = _side_by_side(probes + attention, cfg.side_by_side, adv,
                                 grows=frozenset(name for name, _, _ in attention), total=total)
        return {"probe": {name: done[name][0] for name, _, _ in probes},
                **{name: str(done[name][0]) for name, _, _ in attention}}
    finally:
        torch.set_num_threads(threads)


def _probe_jobs(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, runs: dict) -> tuple[list, int, str]:
    """The depth probes as `_side_by_side` jobs named by encoder, the longest first (the untrained encoder's, which
    carries the oracle and the position prior); their progress total (encodings and readout steps); what they
    are, in words. `plan.probe_readouts` readouts per encoder; the oracle (positive control) and the untrained
    encoder (negative control) have the same readout and budget as every model."""
    from slife.eval.depth_probe import ProbeConfig, readout_steps

    pcfg = ProbeConfig(dataset="life", data_root=Path(lives["probe"]), epochs=plan.probe_epochs, frame_step=1,
                       batch_size=32, seed=cfg.seed, readouts=plan.probe_readouts, lr=plan.probe_lrs)
    ev = out / "eval" / "probe"
    jobs = [(name, _probe_one, (pcfg, m["checkpoint"], str(ev / name))) for name, m in runs["models"].items()]
    # the untrained controls, one per architecture; the oracle and the position prior ride with the first's
    for i, (un, spec) in enumerate(_untrained_specs(cfg).items()):
        jobs.insert(i, (un, _probe_one, (replace(pcfg, control_oracle=i == 0, control_position=i == 0), None,
                                         str(ev / un), cfg.seed, spec)))
    n_train = len(cfg.probe_train_scenes) * plan.probe_views  # every place has probe_views views, so the
    n_fit = n_train - plan.probe_views  # learning rates' fits read all training places but the last
    fits = len(jobs) + 2  # the oracle and the position prior are fits of their own
    encoding = len(jobs) * (n_train + plan.probe_views)  # each encoder's views, train and test, encoded once
    choice = f", learning rate of {len(plan.probe_lrs)} chosen on a training place" if len(plan.probe_lrs) > 1 else ""
    return (jobs, encoding + fits * readout_steps(pcfg, n_train, n_fit),
            f"depth probes ({len(jobs)} encoders, {plan.probe_readouts} readouts each{choice})")


def _cas_config(cfg: DemoConfig, cas_pairs: int, heldout: str | Path, masked: bool, untrained: int):
    """The CAS stage's CasConfig: the held-out life's pairs, k 10 (3 in the smoke demo), attention read `masked`
    or not, `untrained` untrained controls seeded from the run's seed on."""
    from slife.eval.cas import CasConfig

    return CasConfig(pairs=Path(heldout), num_pairs=cas_pairs, k=10 if not cfg.smoke else 3, masked=masked,
                     untrained_seeds=tuple(range(cfg.seed, cfg.seed + untrained)))


def finished_stages(demo_dir: Path, need: tuple = ("mine", "train")) -> tuple:
    """A finished demo's stages.json, for scoring it again (bench scripts): (its DemoConfig, its plan as a dict with
    `_PLAN_BEFORE`'s values for settings added since, {stage: result}). A SlifeError naming the file for a folder
    whose stages.json is missing, unreadable, or lacks a result of the stages in `need` (with "train", a growing
    study also needs "grow": its models are evaluated with the rest, `with_grown`)."""
    path = Path(demo_dir) / "stages.json"
    try:
        st = json.loads(path.read_text())
        cfg = DemoConfig(**{k: v for k, v in st["identity"]["config"].items() if k in DemoConfig.__dataclass_fields__})
        plan = {**_PLAN_BEFORE, **st["identity"]["plan"]}
        results = {k: v["result"] for k, v in st["stages"].items()}
        need = tuple(need) + (("grow",) if cfg.spec.growing and "train" in need else ())
        missing = [k for k in need if k not in results]
    except FileNotFoundError:
        raise SlifeError(f"{path}: not found (not a `slife demo` folder)") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise SlifeError(f"{path}: not a demo's stages.json: {e!r}") from None
    if missing:
        raise SlifeError(f"{path}: not finished ({', '.join(missing)} missing)")
    return cfg, plan, results


def same_plan(demo_dir: Path, stored: dict, plan: _Plan) -> None:
    """A SlifeError naming the settings where a finished demo's plan (`finished_stages`) differs from `plan`, the one
    this code would score it with: its outputs were made by other code."""
    changed = [k for _, k in _differences({"plan": stored}, {"plan": _jsonable(asdict(plan))})]
    if changed:
        raise SlifeError(f"{Path(demo_dir) / 'stages.json'}: made with another plan ({', '.join(changed)}); "
                         "use the code that made it")


def _cas_models(runs: dict) -> dict:
    """The models CAS scores, in the CAS stage's order: the CroCo ones (it reads decoder cross-attention)."""
    return {n: m for n, m in runs["models"].items() if objective_of(n) == "croco"}


def finished_cas(demo_dir: Path, untrained: int | None = None) -> tuple:
    """What a finished demo's CAS stage ran on (`finished_stages`), for scoring it again: (its CasConfig with
    `untrained` untrained controls (None: as many as its CAS stage scored), the CroCo models {name: {"checkpoint",
    "half", ...}} in the stage's order, the eval stage's result ({} before it finished))."""
    cfg, plan, res = finished_stages(demo_dir)
    try:
        runs, shards = with_grown(res["train"], res["mine"], res.get("grow"))
        heldout = shards["heldout"]["path"]
    except (KeyError, TypeError) as e:
        raise SlifeError(f"{Path(demo_dir) / 'stages.json'}: not a finished demo's stages.json: {e!r}") from None
    models = _cas_models(runs)
    n = plan["cas_untrained"] if untrained is None else untrained
    return (_cas_config(cfg, plan["cas_pairs"], heldout, plan["attention_masked"], n), models,
            res.get("eval") or {})


def _attention_jobs(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, shards: dict, runs: dict) -> list:
    """The evaluations that read the decoder's attention (or, for encoders without a decoder, feature neighbours),
    as `_side_by_side` jobs named by their key in the eval stage's result, longest first: CAS on the held-out life's
    pairs (end and half of training; CroCo models), top-1 correspondence of every model on them (studies with
    objective arms), and zero-shot correspondence (every model, the untrained controls), each read as
    `plan.attention_masked` says; CAS (end of training) and zero-shot correspondence also read it the other way
    (`cas_other_read`, `match_other_read`)."""
    from slife.eval.cas import run as cas_run
    from slife.eval.correspondence import MatchConfig
    from slife.eval.pair_top1 import Top1Config, run as top1_run

    every = runs["models"]
    models = _cas_models(runs)
    ckpts = [Path(m["checkpoint"]) for m in models.values()]
    ev = out / "eval"
    cas_cfg = _cas_config(cfg, plan.cas_pairs, shards["heldout"]["path"], plan.attention_masked, plan.cas_untrained)
    other = "complete" if plan.attention_masked else "masked"  # the attention read the other way, beside the claims'
    jobs = [("cas", cas_run, (cas_cfg, ckpts, ev / "cas"))]
    halves = [Path(m["half"]) for m in models.values() if m.get("half")]
    if len(halves) == len(ckpts):
        jobs.append(("cas_half", cas_run, (cas_cfg, halves, ev / "cas_half")))
    jobs.append(("cas_other_read", cas_run, (replace(cas_cfg, masked=not plan.attention_masked), ckpts,
                                             ev / f"cas_{other}")))
    if cfg.spec.objectives:  # by each model's own map (auto) and by encoder features for all, like for like
        for key, method in (("top1", "auto"), ("top1_features", "features")):
            tcfg = Top1Config(pairs=Path(shards["heldout"]["path"]), num_pairs=plan.cas_pairs, method=method,
                              masked=plan.attention_masked and method != "features",  # features read no attention
                              untrained_seeds=(cfg.seed,))
            jobs.append((key, top1_run, (tcfg, [Path(m["checkpoint"]) for m in every.values()], ev / key)))
    # method auto: CroCo models by decoder cross-attention, encoders without a decoder by feature neighbours
    mcfg = MatchConfig(data_root=_match_root(cfg, out, lives), max_pairs=plan.match_pairs, max_side=320,
                       masked=plan.attention_masked)
    named = {n: m["checkpoint"] for n, m in every.items()}
    jobs.append(("match", _match_one, (mcfg, cfg, named, ev / "match")))
    jobs.append(("match_other_read", _match_one, (replace(mcfg, masked=not plan.attention_masked), cfg, named,
                                                  ev / f"match_{other}")))
    return jobs


def _match_one(mcfg, cfg: DemoConfig, checkpoints: dict, out_dir: Path, progress=None) -> Path:
    """Zero-shot correspondence of the demo's models, named as the demo names them ({name: checkpoint}), and of its
    untrained controls."""
    from slife.eval.correspondence import run as match_run
    from slife.eval.models import load_models, model_spec_of, untrained_models

    loaded = [(name, m, model_spec_of(ck).kwargs) for (_, m, ck), name in
              zip(load_models([Path(c) for c in checkpoints.values()]), checkpoints)]
    controls = untrained_models(list(_untrained_specs(cfg).values()), [cfg.seed])
    loaded += [(un, m, spec.kwargs) for un, spec, m in controls]
    return match_run(mcfg, [], out_dir, progress=progress, models=loaded)


# ----------------------------------------------------------------------------------------------- report


def _write_report(cfg, plan, out, stages, lives, shards, runs, evals, growing=None) -> Path:
    from slife.demo_report import write_report, write_summary

    write_summary(cfg, plan, out, runs, evals, growing)
    return write_report(cfg, plan, out, stages.data["stages"], lives, shards, runs, evals, growing)
