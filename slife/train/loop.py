"""The training loop: one process per device, steps over the pair stream, checkpoints, resume. It knows no
objective: what is learned (models, views, loss, after-step hook, extra state, preview) is the `Objective`'s
(`objectives/`), built from `cfg.objective`.

Reads: a `TrainConfig`, pair shards (via `stream.py`), optionally `OUT/last.pt` (or a given checkpoint)
to resume. Writes into OUT (rank 0 only): `last.pt` atomically every `save_every` steps and at the end,
snapshots `step-XXXXXXX.pt` every `keep_every`, `metrics.csv` + TensorBoard (`metrics.py`), previews
(the objective's, every `preview_every`), `train.json` (config, shard summary, bad-sample counts), and with
`log_keys` `keys-rank{r}.txt`. Distributed runs come from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK): DDP (of the objective module) with nccl on cuda, gloo on CPU; one device per process, cuda if present.
A checkpoint holds (DESIGN.md) what the objective saves (`objective`, `model` = the exported network's
state_dict, its arguments `croco_kwargs`/`vit_kwargs`, `objective_state`) and optimizer, scaler, step, epoch,
rng, data (stream position), shardset (the set's fingerprint), segments, config, slife_version; resuming
restores all of it, so an interrupted run ends where an uninterrupted one does. Torch's RNG is re-seeded from
(seed, rank, step) every step. A run resumed on a set that has grown since its checkpoint goes on in a new
segment (`segments.plan`: the segment's steps, stream weights and lr rule; the loop starts the segment's
stream afresh and keeps the weights, optimiser state and step count).
A checkpoint without optimiser state (a released CroCo one) given as `resume` only initialises the weights.
A non-finite loss stops every rank with a SlifeError before the optimiser step; last.pt stays as it was.
Entry point: `run(cfg, shards, out_dir, progress) -> Path`. Files are written by `checkpoint.py`, batches
come from `stream.py`; `_setup` builds what a run uses (a `Training`), `train_steps` runs its steps (the rows'
sums in a `MetricsWindow`), one optimisation step is `train_step`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

import slife
from slife.errors import SlifeError
from slife.io import atomic_file, atomic_write_bytes
from slife.train import TrainConfig
from slife.train.metrics import MetricsLog
from slife.train.objectives import objective_class
from slife.train.objectives.base import Objective
from slife.train.optim import clip_gradients, make_optimizer, scaled_lr, set_lr
from slife.train.segments import Plan, Segment, fingerprint, plan as plan_segment
from slife.train.stream import PairStream, ShardSet, check_image_size, make_loader, resolve_shards

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# processes and devices


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    ddp: bool = False
    owns_group: bool = False  # this run initialised the process group (and destroys it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Read torchrun's environment; init the process group (nccl on cuda, gloo on cpu) when WORLD_SIZE > 1 and
    none is initialised yet (a caller's own group is used, and left to it)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise SlifeError("--device cuda: no CUDA device is available")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, dev, world > 1, owns)


def _all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.ddp:
        import torch.distributed as dist

        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= d.world
    return x


def step_seed(seed: int, rank: int, step: int) -> int:
    """Torch seed for the masking (and any other torch randomness) of one step on one rank."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + 12_345) % (2**63 - 1)


# ----------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoint_path(cfg: TrainConfig, out_dir: Path) -> Path | None:
    """Which checkpoint to resume from, or None to start fresh."""
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        p = out_dir / "last.pt"
        return p if p.exists() else None
    p = Path(cfg.resume)
    if not p.exists():
        raise SlifeError(f"{p}: no such checkpoint to resume from")
    return p


def _check_compatible(path: Path, ckpt: dict, cfg: TrainConfig, kind: str, kwargs: dict, conf: dict) -> None:
    """A one-line SlifeError when the checkpoint is of another objective, preset, model or objective settings
    (`kind`, `kwargs`, `conf`: this run's; a finished run would otherwise be taken as this one unchanged); a
    warning for settings that make the resumed run differ from an uninterrupted one."""
    from slife.train.checkpoint import ModelSpec, objective_of

    old = ckpt.get("config") or {}
    if objective_of(ckpt) != cfg.objective:
        raise SlifeError(f"{path}: checkpoint is objective {objective_of(ckpt)!r}, this run is {cfg.objective!r} "
                         f"(use another --out or --resume never)")
    if old.get("preset") not in (None, cfg.preset):
        raise SlifeError(f"{path}: checkpoint is preset {old.get('preset')!r}, this run is {cfg.preset!r} "
                         f"(use another --out or --resume never)")
    theirs = dict(ckpt.get(ModelSpec(kind).args_key) or {})
    if theirs != kwargs:
        diff = sorted(k for k in set(kwargs) | set(theirs) if theirs.get(k) != kwargs.get(k))
        raise SlifeError(f"{path}: checkpoint model differs from this run's ({', '.join(diff)}); "
                         f"use another --out or --resume never")
    used = old.get("objective_conf_used") or {}  # the settings it recorded (a setting added since is not compared)
    diff = sorted(k for k in used if k in conf and used[k] != conf[k])
    if diff:
        raise SlifeError(f"{path}: checkpoint was trained with other objective settings ("
                         + ", ".join(f"{k}: {used.get(k)!r}, now {conf.get(k)!r}" for k in diff)
                         + "); use another --out or --resume never")
    for k in ("batch_size", "seed", "num_workers"):
        if k in old and old[k] != getattr(cfg, k):
            log.warning("%s: resuming with %s=%s (checkpoint: %s): the run will not equal an uninterrupted one",
                        path, k, getattr(cfg, k), old[k])


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    if "torch" in st:
        torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save(path: Path, ckpt: dict, keep_as: Path | None = None) -> None:
    from slife.train.checkpoint import save_checkpoint

    save_checkpoint(path, ckpt)
    if keep_as is not None:
        with atomic_file(keep_as) as tmp:  # a killed run leaves `.NAME.pt.tmp*`, removed at the next start
            try:
                os.link(path, tmp)  # a hard link: no copy, and last.pt is replaced (not rewritten) next time
            except OSError:
                import shutil

                shutil.copyfile(path, tmp)


def _pick_checkpoint(cfg: TrainConfig, out_dir: Path, d: "Dist") -> tuple[Path | None, dict | None, bool]:
    """The checkpoint the run starts from -> (path, contents, whether it holds a training state to continue);
    (None, None, False) for a fresh start. A weights-only checkpoint (no optimiser state, e.g. a released CroCo
    one) only initialises the weights, unless this run has already begun from it (then its own last.pt)."""
    from slife.train.checkpoint import load_checkpoint

    ck_path = _checkpoint_path(cfg, out_dir)
    if ck_path is None:
        return None, None, False
    ckpt = load_checkpoint(ck_path)
    last = out_dir / "last.pt"
    if "optimizer" not in ckpt or "step" not in ckpt:  # a released / weights-only checkpoint: start from it,
        if not last.exists():  # unless this run has already begun from it
            return ck_path, ckpt, False
        ck_path, ckpt = last, load_checkpoint(last)
    elif last.exists() and not last.samefile(ck_path):  # --resume PATH given again after an interruption:
        mine = load_checkpoint(last)  # this run's own progress since PATH is not thrown away
        if int(mine.get("step", -1)) >= int(ckpt["step"]):
            if d.main:
                log.info("%s is at step %d, past %s (step %d): continuing from it", last, int(mine["step"]),
                         ck_path, int(ckpt["step"]))
            ck_path, ckpt = last, mine
        del mine
    return ck_path, ckpt, True


def _restore(ck_path: Path | None, ckpt: dict | None, state: bool, obj: Objective, opt, scaler, d: "Dist") -> None:
    """Load what `_pick_checkpoint` chose into the objective, optimiser, scaler and RNG (a weights-only checkpoint:
    the exported model's weights only)."""
    from slife.train.checkpoint import check_finite

    if ckpt is None:
        return
    if not state:
        sd = ckpt.get("model", ckpt)
        if not isinstance(sd, dict):
            raise SlifeError(f"{ck_path}: no 'model' state_dict in the checkpoint")
        obj.init_from_weights(sd, ck_path)
        log.info("%s: no optimiser state: starting at step 0 from its weights", ck_path)
        return
    check_finite(ckpt["model"], ck_path)
    obj.load_state(ckpt, ck_path)
    opt.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state((ckpt.get("rng") or {}).get(f"rank{d.rank}") or {})


def _starting_point(cfg: TrainConfig, out_dir: Path, shardset: ShardSet, kind: str, kwargs: dict, conf: dict,
                    lr: float, d: "Dist") -> tuple[Path | None, dict | None, bool, "Plan", dict]:
    """The checkpoint the run starts from and the segment it trains in -> (its path, its contents, whether it
    holds a training state, the `segments.Plan`, the set's fingerprint); rank 0 logs what changed in the set."""
    ck_path, ckpt, state = _pick_checkpoint(cfg, out_dir, d)
    if state:
        _check_compatible(ck_path, ckpt, cfg, kind, kwargs, conf)
    fp = fingerprint(shardset)
    plan = plan_segment(ckpt if state else None, shardset, cfg.steps, cfg.new_weight, cfg.continue_lr,
                        str(ck_path), now=fp)
    if d.main and plan.warning:
        log.warning("%s", plan.warning)
    if d.main and plan.message:
        log.info("%s; %s", plan.message, plan.segment.lr_rule(lr, cfg.warmup_steps, cfg.min_lr))
    return ck_path, ckpt, state, plan, fp


def _data_state(ck_data: dict, plan: "Plan", now: dict, ck_path: Path | None, d: "Dist") -> tuple[dict, dict]:
    """The checkpoint's data record as this run goes on with it -> (the record, this rank's worker positions).
    A new segment starts its stream afresh (the bad samples of the segment that ended go into its record); inside
    a segment a changed setting (`now`: steps_per_epoch, world_size, num_workers) is warned about, and other
    loader workers fall back to skipping whole batches."""
    if plan.continued:
        previous = ck_data.get("positions") or {}
        plan.history[-1]["bad_samples"] = _bad_counts({f"{r}/{w}": p for r, ps in previous.items()
                                                        for w, p in (ps or {}).items()})
        return {"metrics_window": ck_data.get("metrics_window")}, {}
    for k in ("steps_per_epoch", "world_size"):
        if k in ck_data and ck_data[k] != now[k] and d.main:
            log.warning("%s: %s is %s, the checkpoint's was %s: the data stream will not continue exactly",
                        ck_path, k, now[k], ck_data[k])
    positions = (ck_data.get("positions") or {}).get(f"rank{d.rank}") or {}
    if ck_data.get("num_workers", now["num_workers"]) != now["num_workers"]:
        positions = {}  # other workers, other streams: fall back to skipping whole batches
    return ck_data, positions


def _say_training(cfg: TrainConfig, S: int, shardset: ShardSet, seg, lr: float, precision: str, d: "Dist") -> None:
    """Rank 0's line on what is trained, how (and a warning when the segment ends inside its lr warmup)."""
    peak = lr * seg.lr_scale
    if cfg.warmup_steps > seg.steps:
        log.warning("%s ends at step %d, before the lr warmup (%d step%s) reaches its peak %.3g",
                    f"segment {seg.index}" if seg.index else "the run", seg.end, cfg.warmup_steps,
                    "s" * (cfg.warmup_steps != 1), peak)
    n = len(shardset.paths)
    log.info("training %s %s (%s) on %d pairs in %d shard%s: %s of %d pairs x %d process%s, lr %.3g (blr %.3g), "
             "%s, %s", cfg.objective, cfg.preset, S, shardset.total, n, "s" * (n != 1), seg.span, cfg.batch_size,
             d.world, "es" * (d.world != 1), peak, cfg.blr, precision, d.device)


# ----------------------------------------------------------------------------------------------------
# the run


def _config_dict(cfg: TrainConfig, extra: dict) -> dict:
    d = asdict(cfg)
    d.update(extra)
    return d


def run(cfg: TrainConfig, shards, out_dir: Path, progress: Callable | None = None) -> Path:
    """Train; returns the path of last.pt (see the module docstring)."""
    d = setup_distributed(cfg.device)
    try:
        return _run(cfg, shards, Path(out_dir), progress, d)
    finally:
        if d.owns_group:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX); emulated bf16 is ~2x slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on a bf16-capable GPU or CPU, else fp32; other values pass through."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


class NonFiniteLoss(Exception):
    """The loss of a step (averaged over ranks) is NaN or inf; raised before the optimiser step."""


def train_step(net, obj: Objective, views: dict, opt, scaler, step: int, amp_dtype, clip_grad: float | None,
               d: "Dist") -> tuple[float, dict[str, float], float]:
    """One optimisation step -> (loss, the objective's logged numbers, grad norm before clipping), all
    averaged over ranks. `net` is the objective, maybe DDP-wrapped; `obj` the objective itself."""
    with torch.autocast(d.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss, logs = net(views, step)
    names = list(logs)
    stats = _all_mean(torch.stack([loss.detach().float()] + [logs[k].detach().float().to(loss.device) for k in names]), d)
    loss_val = float(stats[0])
    if not torch.isfinite(stats[0]):
        raise NonFiniteLoss(loss_val)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    grad_norm = clip_gradients(obj.parameters(), clip_grad)
    scaler.step(opt)
    scaler.update()
    obj.after_step(step)
    return loss_val, dict(zip(names, stats[1:].tolist())), grad_norm


class MetricsWindow:
    """The sums behind the next metrics.csv row: loss, grad norm and the objective's logged numbers over the `n`
    steps since the last row (saved in checkpoints and restored on resume, so that metrics.csv equals an
    uninterrupted run's), data wait and time over the `nt` of them this process timed."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.loss, self.gn, self.n = saved.get("loss", 0.0), saved.get("gn", 0.0), saved.get("n", 0)
        self.logs = dict(saved.get("logs") or {})
        self._restart_clock()

    def _restart_clock(self) -> None:
        self.wait, self.t0, self.nt = 0.0, time.perf_counter(), 0

    def add(self, loss: float, grad_norm: float, logs: dict[str, float]) -> None:
        self.loss += loss
        self.gn += grad_norm
        self.logs = {k: self.logs.get(k, 0.0) + v for k, v in logs.items()}
        self.n += 1
        self.nt += 1

    def row(self, step: int, epoch: int, lr: float, batch: int, bad_samples: int) -> dict:
        """The metrics.csv row at `step` (`batch`: pairs per step over all processes)."""
        dt = time.perf_counter() - self.t0
        return {"step": step, "epoch": epoch, "loss": self.loss / self.n, "lr": lr,
                "pairs_per_s": self.nt * batch / dt, "data_wait_share": self.wait / dt,
                "grad_norm": self.gn / self.n, "bad_samples": bad_samples,
                **{k: v / self.n for k, v in self.logs.items()}}

    def restart(self) -> None:
        self.loss, self.gn, self.n, self.logs = 0.0, 0.0, 0, {}
        self._restart_clock()

    def state(self) -> dict:
        """What a checkpoint keeps of it."""
        return {"loss": self.loss, "n": self.n, "gn": self.gn, "logs": dict(self.logs)}


@dataclass(frozen=True)
class Training:
    """What the steps of a run use, set up once by `_setup`: the objective and how it is stepped, the segment and
    its stream, and the records that go into checkpoints and train.json."""

    cfg: TrainConfig
    out_dir: Path
    d: Dist
    obj: Objective  # the objective itself
    net: torch.nn.Module  # the objective as stepped: maybe DDP-wrapped, maybe compiled
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # autocast dtype (None: fp32)
    lr: float  # the run's peak lr (the segment scales it)
    seg: Segment  # the segment this run trains in
    start: int  # the step it starts at
    steps_per_epoch: int
    loader: object  # batches of the segment's stream from `start` on
    positions: dict  # worker -> stream position the checkpoint recorded (this rank)
    window: dict | None  # the metrics window the checkpoint recorded
    shardset: ShardSet
    fp: dict  # the set's fingerprint
    extra: dict  # config fields this run resolved (lr_abs, precision_used ...)
    data_pos: dict  # the data record's fields that hold for the whole run
    segments: list  # the run's segment records, the last one this run's

    @property
    def eff_batch(self) -> int:
        return self.cfg.batch_size * self.d.world

    @property
    def last(self) -> Path:
        return self.out_dir / "last.pt"

    def epoch_of(self, step: int) -> int:  # epochs of the current segment's stream
        return (step - self.seg.start) // self.steps_per_epoch

    def checkpoint(self, step: int, ranks: dict, window: MetricsWindow) -> dict:
        """The checkpoint at `step` (`ranks`: every rank's RNG and stream positions, `_gather_rank_state`)."""
        data = dict(self.data_pos, step=step, epoch=self.epoch_of(step),
                    step_in_epoch=(step - self.seg.start) % self.steps_per_epoch,
                    positions={r: v["positions"] for r, v in ranks.items()}, metrics_window=window.state())
        return {**self.obj.checkpoint_state(), "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict(), "step": step, "epoch": self.epoch_of(step),
                "rng": {r: v["rng"] for r, v in ranks.items()}, "data": data,
                "shardset": self.fp, "segments": self.segments,
                "config": _config_dict(self.cfg, self.extra), "slife_version": slife.__version__}

    def summary(self, **more) -> dict:
        """train.json."""
        from slife.train.checkpoint import ModelSpec

        return {"config": _config_dict(self.cfg, self.extra), "objective": self.cfg.objective,
                ModelSpec(self.obj.kind).args_key: self.obj.model_kwargs,
                "shards": dict(self.shardset.summary(), digest=self.fp["digest"]), "end_step": self.seg.end,
                "segments": self.segments, **more, "slife_version": slife.__version__}


def _setup(cfg: TrainConfig, shards, out_dir: Path, d: Dist) -> Training | Path:
    """Check the settings and the set, pick the checkpoint and the segment, build the objective, optimiser, scaler
    and stream, restore the checkpoint's state, write train.json (rank 0) -> the `Training`, or the path of the
    checkpoint when it is already at its segment's end."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = resolve_precision(cfg.precision, d.device)
    if precision == "fp16" and d.device.type != "cuda":
        raise SlifeError("--precision fp16 needs a cuda device; use bf16 or fp32 on CPU")
    shardset = shards if isinstance(shards, ShardSet) else resolve_shards(shards)
    cls = objective_class(cfg.objective)
    kwargs, conf = cls.resolve_model_kwargs(cfg), cls.resolve_conf(cfg)  # one-line errors before any work
    S = kwargs["img_size"] if isinstance(kwargs["img_size"], int) else kwargs["img_size"][0]
    check_image_size(shardset, S)
    cls.check_shards(shardset)
    out_dir.mkdir(parents=True, exist_ok=True)
    if d.main:
        from slife.train.checkpoint import remove_stale_temporaries

        if remove_stale_temporaries(out_dir):
            log.info("%s: removed checkpoint temporaries of an interrupted save", out_dir)

    # the checkpoint to continue, and the segment of the run it continues in (segments.py)
    eff_batch = cfg.batch_size * d.world
    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, eff_batch)
    ck_path, ckpt, state, plan, fp = _starting_point(cfg, out_dir, shardset, cls.kind, kwargs, conf, lr, d)
    seg, start = plan.segment, int(ckpt["step"]) if state else 0
    if start >= seg.end:
        log.info("%s: already at step %d, the end of %s: nothing to do", ck_path, start, seg.span)
        return out_dir / "last.pt" if (out_dir / "last.pt").exists() else ck_path

    # objective (its models; their schedules span the run up to the segment's end), optimiser, schedule
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    obj = cls(kwargs, conf, seg.end).to(d.device)
    opt = make_optimizer(obj, lr, cfg.weight_decay, betas=obj.betas)
    scaler = torch.amp.GradScaler(d.device.type, enabled=precision == "fp16")
    _restore(ck_path, ckpt, state, obj, opt, scaler, d)
    ck_data = dict(ckpt.get("data") or {}) if state else {}
    del ckpt
    if state and d.main:
        log.info("resuming from %s at step %d (%s)", ck_path, start, seg.span)

    # data: a new segment starts a new stream over the set; inside a segment the stream goes on where it was
    samples_per_epoch = cfg.samples_per_epoch or max(cfg.batch_size, shardset.total // d.world)
    steps_per_epoch = max(1, samples_per_epoch // cfg.batch_size)
    ck_data, positions = _data_state(ck_data, plan, {"steps_per_epoch": steps_per_epoch, "world_size": d.world,
                                                     "num_workers": cfg.num_workers}, ck_path, d)
    stream = PairStream(shardset, obj.augment(cfg), cfg.batch_size, steps_per_epoch, seed=cfg.seed, rank=d.rank,
                        world=d.world, start_step=start, shuffle_buffer=cfg.shuffle_buffer, positions=positions,
                        origin=seg.start, segment=seg.index, weights=seg.weights(fp["tars"]))
    loader = make_loader(stream, cfg.num_workers)

    net = obj
    if d.ddp:
        net = torch.nn.parallel.DistributedDataParallel(
            obj, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    t = Training(
        cfg, out_dir, d, obj, net, opt, scaler, amp_dtype, lr, seg, start, steps_per_epoch, loader, positions,
        ck_data.get("metrics_window"), shardset, fp,
        extra={"lr_abs": lr, "precision_used": precision, "effective_batch": eff_batch, "world_size": d.world,
               "shards": shardset.spec, "objective_conf_used": obj.conf},
        data_pos={"steps_per_epoch": steps_per_epoch, "samples_per_epoch": samples_per_epoch,
                  "batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "world_size": d.world,
                  "seed": cfg.seed, "segment": seg.index, "origin": seg.start},
        segments=plan.history + [seg.record(lr, cfg.warmup_steps, cfg.min_lr)])
    if d.main:
        _write_json(out_dir / "train.json", t.summary())
        _say_training(cfg, S, shardset, seg, lr, precision, d)
    return t


def _run(cfg: TrainConfig, shards, out_dir: Path, progress, d: Dist) -> Path:
    """Set up, train to the segment's end, write the final train.json -> the path of last.pt."""
    t = _setup(cfg, shards, out_dir, d)
    if isinstance(t, Path):  # nothing to do
        return t
    metrics = MetricsLog(out_dir, t.start, t.obj.log_names, cfg.log_every) if d.main else None
    keys_file = open(out_dir / f"keys-rank{d.rank}.txt", "a") if cfg.log_keys else None
    positions = dict(t.positions)  # worker -> stream position after the last batch trained on (this rank)
    if progress is not None and d.main and t.start:
        progress(t.start, total=t.seg.end, info=f"resumed at step {t.start}" if t.start > t.seg.start
                 else f"segment {t.seg.index} from step {t.start}")
    try:
        step = train_steps(t, positions, metrics, keys_file, progress)
    finally:
        if keys_file is not None:
            keys_file.close()
        if metrics is not None:
            metrics.close()
    if d.main:
        bad_total = _bad_counts(positions)
        _write_json(out_dir / "train.json", t.summary(bad_samples=bad_total, final_step=step))
        if bad_total:
            log.warning("skipped bad samples: %s", bad_total)
    return t.last


def train_steps(t: Training, positions: dict, metrics: MetricsLog | None, keys_file, progress) -> int:
    """Train from `t.start` to the segment's end -> the step reached: per step, a batch, the lr, one
    `train_step`, then (rank 0) a metrics row, a preview, and (all ranks) a checkpoint when due. `positions`
    (worker -> stream position) is kept up to date; `metrics`/`keys_file` are rank 0's / given with log_keys."""
    cfg, d, obj, seg = t.cfg, t.d, t.obj, t.seg
    win, step, it = MetricsWindow(t.window), t.start, iter(t.loader)
    try:
        while step < seg.end:
            t_wait = time.perf_counter()
            try:
                batch = next(it)
            except SlifeError as e:  # from a loader worker: torch prefixes the worker's traceback
                raise SlifeError(str(e).strip().splitlines()[-1].split("SlifeError: ", 1)[-1]) from None
            win.wait += time.perf_counter() - t_wait
            assert batch["step"] == step, (batch["step"], step)  # stream and loop agree on the position
            positions[batch["worker"]] = batch["pos"]
            if keys_file is not None:
                keys_file.write("".join(f"{step} {k}\n" for k in batch["keys"]))
            views = obj.views(batch, d.device)

            cur_lr = seg.lr(step, t.lr, cfg.warmup_steps, cfg.min_lr)
            set_lr(t.opt, cur_lr)
            torch.manual_seed(step_seed(cfg.seed, d.rank, step))
            try:
                loss, logs, gn = train_step(t.net, obj, views, t.opt, t.scaler, step, t.amp_dtype, cfg.clip_grad, d)
            except NonFiniteLoss as e:
                kept = (f"last.pt (step {_ckpt_step(t.last)}) is intact" if t.last.exists()
                        else "no checkpoint was written")
                raise SlifeError(f"{t.out_dir}: loss became {e.args[0]} at step {step}; stopped. {kept}; "
                                 "try a lower --lr/--blr, --clip-grad or --precision fp32") from None
            step += 1
            win.add(loss, gn, logs)

            info = None
            if d.main and (step % cfg.log_every == 0 or step == seg.end):
                row = win.row(step, t.epoch_of(step), cur_lr, t.eff_batch, sum(_bad_counts(positions).values()))
                metrics.write(row)
                if step % cfg.log_every == 0:  # a run's last row, off the grid, leaves its window to a resumed run
                    win.restart()
                info = f"loss {row['loss']:.4f}  lr {cur_lr:.2e}  {row['pairs_per_s']:.0f} pairs/s"
            if d.main and cfg.preview_every and (step % cfg.preview_every == 0 or step == seg.end):
                p = obj.preview(views, t.out_dir / "previews" / f"step-{step:07d}.png")
                if p is not None:
                    metrics.image("preview", p, step)
            snapshot = bool(cfg.keep_every) and step % cfg.keep_every == 0
            if step % cfg.save_every == 0 or step == seg.end or snapshot:
                ranks = _gather_rank_state(d, positions)  # every rank takes part
                if d.main:
                    keep = t.out_dir / f"step-{step:07d}.pt" if snapshot else None
                    _save(t.last, t.checkpoint(step, ranks, win), keep)
            if progress is not None and d.main:
                progress(1, info=info) if info is not None else progress(1)
    finally:
        del it
    return step


def _bad_counts(positions: dict) -> dict:
    """Bad samples skipped so far by kind, summed over this rank's loader workers (from their stream positions)."""
    total: dict = {}
    for p in positions.values():
        for k, v in (p.get("bad") or {}).items():
            total[k] = total.get(k, 0) + v
    return total


def _gather_rank_state(d: Dist, positions: dict) -> dict:
    """Every rank's RNG state and data stream positions: {"rank0": {"rng", "positions"}, ...} (all ranks call this)."""
    mine = {"rng": _rng_state(), "positions": {int(w): p for w, p in positions.items()}}
    if not d.ddp:
        return {"rank0": mine}
    import torch.distributed as dist

    states = [None] * d.world
    dist.all_gather_object(states, mine)
    return {f"rank{r}": s for r, s in enumerate(states)}


def _ckpt_step(path: Path):
    try:
        from slife.train.checkpoint import load_checkpoint

        return load_checkpoint(path).get("step")
    except Exception:
        return "?"


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())
