"""The single-life study in miniature: synthesize lives, mine pairs, train tiny CroCos, evaluate, report.

Reads nothing but `../shared/data/graffiti_homography` when present (real photographs with known
homographies for zero-shot correspondence; otherwise HPatches-style pairs are made by warping a
synthetic frame). Writes under `out_dir`: `lives/` (slife life folders), `shards/` (pair shards),
`runs/` (checkpoints, metrics, previews), `eval/` (cas/, probe/, match/), `stages.json` (wall time
and outputs of each finished stage; a rerun skips them) and `report.md` with its PNGs.
Entry point: `run(cfg, out_dir, announce=None, task=None) -> Path` (report.md). Every stage is
the `run` function behind a CLI command, called by path; `announce(stage, command)` is given the
equivalent command line so the CLI can print the demo as a tutorial, and `task(description, total)` opens
a progress context for each long piece of work (a life rendered, a model trained) whose callback is
handed to that stage's `run`. The maths of each stage is in
its package (synth, pairmine, train, eval); this module only chooses sizes, chains stages and writes
the report.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, ContextManager

import numpy as np

from slife.errors import SlifeError

log = logging.getLogger(__name__)

ABLATION = ("spatial+temporal", "temporal", "spatial", "random", "augmented")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the miniature study; `budget_minutes` scales durations and training steps."""

    budget_minutes: float = 15.0  # wall-time budget after installation (2 cores); < 2 gives the smoke version
    seed: int = 0  # seeds lives, mining, training and evaluation
    width: int = 128  # synthetic video width in pixels
    height: int = 96  # synthetic video height in pixels
    fps: float = 5.0  # synthetic video frame rate
    train_share: float = 0.75  # share of the budget spent training (measured: synth ~3%, mining ~2%, eval ~8%)
    batch_size: int = 32  # pairs per training step
    lr: float = 1e-3  # training learning rate (DESIGN.md: 1e-3 trains tiny CroCo on CPU)
    lives: tuple = field(default=(("kitchen", 3), ("office", 2), ("bedroom", 2)))  # (scene, days) per life
    heldout_scene: str = "workshop"  # a life no model sees: the CAS test pairs
    probe_scene: str = "gallery"  # a scene no model sees: the depth probe benchmark

    def __post_init__(self):
        if self.budget_minutes <= 0:
            raise SlifeError(f"--budget-minutes must be positive, got {self.budget_minutes}")
        if len(self.lives) < 3:
            raise SlifeError("the demo needs at least three lives")

    @property
    def smoke(self) -> bool:
        return self.budget_minutes < 2.0


@dataclass(frozen=True)
class _Plan:
    """Sizes derived from the budget."""

    life_seconds: float  # video seconds per life
    width: int
    height: int
    fps: float
    mine_fps: float  # frames sampled per second when mining
    max_pairs: int  # pairs per training set (ablation arms hold it fixed)
    probe_views: int  # frames of the held-out probe scene
    cas_pairs: int  # test pairs for CAS
    probe_epochs: int  # probe readout training epochs
    match_pairs: int  # homography pairs for correspondence
    batch_size: int  # pairs per training step


def _plan(cfg: DemoConfig) -> _Plan:
    if cfg.smoke:
        return _Plan(life_seconds=4.0, width=64, height=48, fps=4.0, mine_fps=4.0, max_pairs=24,
                     probe_views=12, cas_pairs=4, probe_epochs=1, match_pairs=1,
                     batch_size=4)
    s = cfg.budget_minutes / 15.0
    return _Plan(life_seconds=max(20.0, 90.0 * s), width=cfg.width, height=cfg.height, fps=cfg.fps,
                 mine_fps=2.0, max_pairs=int(max(200, 600 * s)), probe_views=int(max(40, 100 * s)),
                 cas_pairs=int(max(16, 48 * s)), probe_epochs=int(max(4, 8 * s)), match_pairs=0,
                 batch_size=cfg.batch_size)


class _Stages:
    """stages.json: each finished stage's outputs and wall time; a rerun returns them without working."""

    def __init__(self, out_dir: Path, identity: dict):
        self.path = out_dir / "stages.json"
        self.data = {"identity": identity, "stages": {}}
        if self.path.exists():
            old = json.loads(self.path.read_text())
            if old.get("identity") == identity:
                self.data = old
            else:
                log.warning("%s: made with other settings; stages are redone (their own outputs resume)", self.path)

    def done(self, name: str):
        return self.data["stages"].get(name)

    def finish(self, name: str, result: dict, seconds: float) -> dict:
        self.data["stages"][name] = {"result": result, "seconds": round(seconds, 2)}
        from slife.io import atomic_write_json

        atomic_write_json(self.path, self.data, indent=2)
        return result


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
    stages = _Stages(out, {"config": _jsonable(asdict(cfg)), "plan": asdict(plan)})
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
    shards = stage("mine", "slife mine-pairs LIFE --strategy ... --max-pairs %d --out %s/shards/NAME"
                   % (plan.max_pairs, out), lambda: _do_mine(cfg, plan, out, lives, progress))
    runs = stage("train", f"slife train {out}/shards/NAME --preset tiny --steps N --out {out}/runs/NAME",
                 lambda: _do_train(cfg, plan, out, shards, progress))
    evals = stage("eval", f"slife cas {out}/runs/*/last.pt --pairs {out}/shards/heldout; slife probe life ...; "
                  f"slife match hpatches ...", lambda: _do_eval(cfg, plan, out, lives, shards, runs, progress))
    return stage("report", f"(writes {out}/report.md)",
                 lambda: {"report": str(_write_report(cfg, plan, out, stages, lives, shards, runs, evals))})["report"]


# ----------------------------------------------------------------------------------------------- stages


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _synth_cmd(cfg: DemoConfig, plan: _Plan, out: Path) -> str:
    return (f"slife synth {out}/lives/SCENE --scene SCENE --days D --duration {plan.life_seconds:g} "
            f"--fps {plan.fps:g} --width {plan.width} --height {plan.height} --seed {cfg.seed}")


def _lives_spec(cfg: DemoConfig, plan: _Plan) -> dict:
    """name -> SynthConfig kwargs."""
    common = dict(fps=plan.fps, width=plan.width, height=plan.height, texture_size=64 if cfg.smoke else 256,
                  points=4000 if cfg.smoke else 60_000)
    spec = {}
    for i, (scene, days) in enumerate(cfg.lives):
        spec[f"life-{scene}"] = dict(kind="life", scene=scene, days=days, duration=plan.life_seconds,
                                     seed=cfg.seed + 10 * i, **common)
    spec["control-static"] = dict(kind="static", scene=cfg.lives[0][0], duration=plan.life_seconds,
                                  seed=cfg.seed + 100, **common)
    spec["control-screen"] = dict(kind="screen", duration=plan.life_seconds, seed=cfg.seed + 101, **common)
    spec["heldout"] = dict(kind="life", scene=cfg.heldout_scene, days=1, duration=max(4.0, plan.life_seconds / 2),
                           seed=cfg.seed + 200, **common)
    spec["probe"] = dict(kind="views", scene=cfg.probe_scene, duration=plan.probe_views / plan.fps,
                         seed=cfg.seed + 300, **common)
    return spec


def _do_synth(cfg: DemoConfig, plan: _Plan, out: Path, task) -> dict:
    from slife.synth import SynthConfig, run as synth_run

    paths = {}
    for name, kw in _lives_spec(cfg, plan).items():
        sc = SynthConfig(**kw)
        with task(f"synth {name}", sc.frames_per_day() * (sc.days if sc.kind == "life" else 1)) as adv:
            paths[name] = str(synth_run(sc, out / "lives" / name, progress=adv))
    return paths


def _mine_sets(cfg: DemoConfig, lives: dict) -> dict:
    """shard-set name -> (life name, strategies)."""
    first = f"life-{cfg.lives[0][0]}"
    sets = {}
    for scene, _ in cfg.lives:
        sets[f"life-{scene}"] = (f"life-{scene}", "spatial+temporal")
    sets["control-static"] = ("control-static", "temporal+augmented")  # one place: spatial J ~ 1 everywhere
    sets["control-screen"] = ("control-screen", "temporal+random")  # no poses: no spatial pairs
    for arm in ABLATION[1:]:
        sets[f"ablation-{arm}"] = (first, arm)
    return sets


def _do_mine(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, task) -> dict:
    from slife import pairmine as pm

    res = {}
    # enough candidates per frame that every ablation arm reaches the same cap (max_pairs)
    base = dict(fps=plan.mine_fps, short_side=72 if cfg.smoke else 80, seed=cfg.seed, temporal_per_frame=4,
                random_per_frame=4, augmented_per_frame=4.0,
                pairs_per_shard=max(50, plan.max_pairs // 2), preview=4 if not cfg.smoke else 2)
    for name, (life, strategy) in _mine_sets(cfg, lives).items():
        mc = pm.MineConfig(strategies=pm.parse_strategies(strategy), max_pairs=plan.max_pairs, **base)
        with task(f"mine {name}", None) as adv:
            manifest = pm.run(mc, lives[life], out / "shards" / name, progress=adv,
                              command=f"slife mine-pairs {lives[life]} --strategy {strategy} --max-pairs {plan.max_pairs}")
        m = json.loads(Path(manifest).read_text())
        res[name] = {"path": str(Path(manifest).parent), "life": life, "strategy": strategy,
                     "pairs": m["summary"].get("pairs_written", m["summary"]["pairs"]),
                     "per_strategy": m["summary"]["pairs_per_strategy"]}
    # held-out test pairs for CAS: spatial+temporal from a life no model trains on
    mc = pm.MineConfig(strategies=("spatial", "temporal"), max_pairs=max(plan.cas_pairs * 2, 16), **base)
    manifest = pm.run(mc, lives["heldout"], out / "shards" / "heldout", command="slife mine-pairs heldout")
    res["heldout"] = {"path": str(Path(manifest).parent), "life": "heldout", "strategy": "spatial+temporal",
                      "pairs": json.loads(Path(manifest).read_text())["summary"]["pairs"]}
    return res


def _train_sets(cfg: DemoConfig) -> dict:
    """model name -> shard-set name (the first life's model is also the ablation's spatial+temporal arm)."""
    names = {f"life-{s}": f"life-{s}" for s, _ in cfg.lives}
    names.update({"control-static": "control-static", "control-screen": "control-screen"})
    names.update({f"ablation-{a}": f"ablation-{a}" for a in ABLATION[1:]})
    return names


def _calibrate(cfg: DemoConfig, plan: _Plan, shards: str, tmp: Path) -> tuple[float, float]:
    """(steady training pairs/s, fixed seconds per run) of the tiny preset here, from a 6-step run."""
    import csv

    from slife.train import TrainConfig, run as train_run

    steps = 6
    tc = TrainConfig(preset="tiny", steps=steps, batch_size=plan.batch_size, lr=cfg.lr, warmup_steps=1,
                     save_every=1000, preview_every=0, log_every=1, resume="never", seed=cfg.seed, num_workers=1)
    t0 = time.perf_counter()
    train_run(tc, shards, tmp)
    total = time.perf_counter() - t0
    rates = [float(r["pairs_per_s"]) for r in csv.DictReader((tmp / "metrics.csv").open())][1:]
    pps = float(np.median(rates)) if rates else steps * plan.batch_size / total
    return pps, max(0.0, total - steps * plan.batch_size / pps)


def _do_train(cfg: DemoConfig, plan: _Plan, out: Path, shards: dict, task) -> dict:
    from slife.train import TrainConfig, run as train_run

    sets = _train_sets(cfg)
    if cfg.smoke:
        steps, pps = 2, None
    else:
        pps, overhead = _calibrate(cfg, plan, shards[next(iter(sets.values()))]["path"], out / "runs" / ".calibration")
        seconds = cfg.budget_minutes * 60 * cfg.train_share / len(sets) - overhead
        steps = max(20, int(seconds * pps / plan.batch_size))
    res = {"steps": steps, "calibrated_pairs_per_s": pps, "models": {}}
    for i, (name, shard_set) in enumerate(sets.items()):
        # independently trained models: each its own initialisation, masking and data order
        tc = TrainConfig(preset="tiny", steps=steps, batch_size=plan.batch_size, lr=cfg.lr,
                         warmup_steps=max(1, steps // 10), save_every=max(1, steps // 2),
                         keep_every=max(1, steps // 2), preview_every=max(1, steps), log_every=max(1, steps // 50),
                         seed=1000 * cfg.seed + i, num_workers=0 if cfg.smoke else 1)
        t0 = time.perf_counter()
        with task(f"train {name}", steps) as adv:
            ckpt = train_run(tc, shards[shard_set]["path"], out / "runs" / name, progress=adv)
        res["models"][name] = {"checkpoint": str(ckpt), "shards": shard_set, "seconds": time.perf_counter() - t0,
                               "half": _half_snapshot(Path(ckpt).parent, steps)}
    return res


def _half_snapshot(run_dir: Path, steps: int) -> str | None:
    """The kept snapshot nearest to half the run (with an odd step count, keep_every = steps // 2 also keeps
    one just before the end: that one is not "half training")."""
    snaps = [p for p in run_dir.glob("step-*.pt") if int(p.stem.split("-")[1]) < steps]
    return str(min(snaps, key=lambda p: abs(int(p.stem.split("-")[1]) - steps / 2))) if snaps else None


def _match_root(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict) -> Path:
    """HPatches-style pairs: the real graffiti sequence if shared/ has it, else warps of a synthetic frame."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "graffiti_homography"
    if shared.is_dir():
        return shared
    root = out / "eval" / "homographies" / "v_synthetic"
    if (root / "H_1_6").exists():
        return root.parent
    from PIL import Image

    from slife.lives import read_life

    life = read_life(lives["probe"])
    _, rgb = next(life.iter_frames([0]))
    img = Image.fromarray(rgb).resize((256, 192))
    root.mkdir(parents=True, exist_ok=True)
    img.save(root / "1.ppm")
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
        warped.save(root / f"{k}.ppm")
        np.savetxt(root / f"H_1_{k}", H)
    return root.parent


def _do_eval(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, shards: dict, runs: dict, progress) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # evaluation tensors are small: one thread is faster than two here (bench/eval.md)
    try:
        return _eval_all(cfg, plan, out, lives, shards, runs)
    finally:
        torch.set_num_threads(threads)


def _eval_all(cfg: DemoConfig, plan: _Plan, out: Path, lives: dict, shards: dict, runs: dict) -> dict:
    from slife.eval.cas import CasConfig, run as cas_run
    from slife.eval.correspondence import MatchConfig, run as match_run
    from slife.eval.depth_probe import ProbeConfig, run as probe_run

    models = runs["models"]
    ckpts = [Path(m["checkpoint"]) for m in models.values()]
    ev = out / "eval"
    res = {}
    cas_cfg = CasConfig(pairs=Path(shards["heldout"]["path"]), num_pairs=plan.cas_pairs, k=10 if not cfg.smoke else 3)
    res["cas"] = str(cas_run(cas_cfg, ckpts, ev / "cas"))
    halves = [Path(m["half"]) for m in models.values() if m.get("half")]
    if len(halves) == len(ckpts):
        res["cas_half"] = str(cas_run(cas_cfg, halves, ev / "cas_half"))
    probe_cfg = ProbeConfig(dataset="life", data_root=Path(lives["probe"]), epochs=plan.probe_epochs,
                            frame_step=1, seed=cfg.seed)
    res["probe"] = {}
    for name, m in models.items():
        res["probe"][name] = str(probe_run(probe_cfg, [Path(m["checkpoint"])], ev / "probe" / name))
    import torch

    from slife.train.model import CROCO_PRESETS, CroCoNet

    torch.manual_seed(cfg.seed)
    untrained = CroCoNet(**CROCO_PRESETS["tiny"])
    res["probe"]["untrained"] = str(probe_run(probe_cfg, [], ev / "probe" / "untrained", model=untrained,
                                              croco_kwargs=dict(CROCO_PRESETS["tiny"])))
    mcfg = MatchConfig(data_root=_match_root(cfg, plan, out, lives), max_pairs=plan.match_pairs, max_side=320)
    res["match"] = str(match_run(mcfg, ckpts, ev / "match"))
    return res


# ----------------------------------------------------------------------------------------------- report


def _write_report(cfg, plan, out, stages, lives, shards, runs, evals) -> Path:
    from slife.demo_report import write_report

    return write_report(cfg, plan, out, stages.data["stages"], lives, shards, runs, evals)
