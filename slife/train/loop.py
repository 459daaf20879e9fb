"""The training loop: one process per device, steps over the pair stream, checkpoints, resume.

Reads: a `TrainConfig`, pair shards (via `stream.py`), optionally `OUT/last.pt` (or a given checkpoint)
to resume. Writes into OUT (rank 0 only): `last.pt` atomically every `save_every` steps and at the end,
snapshots `step-XXXXXXX.pt` every `keep_every`, `metrics.csv` + TensorBoard (`metrics.py`), previews
(`preview.py`), `train.json` (config, shard summary, bad-sample counts), and with `log_keys`
`keys-rank{r}.txt`. Distributed runs come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK):
DDP with nccl on cuda, gloo on CPU; one device per process, cuda if present.
A checkpoint holds (DESIGN.md) model (unwrapped state_dict), croco_kwargs, optimizer, scaler, step, epoch,
rng, data (stream position), config, slife_version; resuming restores all of it, so an interrupted run
ends where an uninterrupted one does. The masking RNG is re-seeded from (seed, rank, step) every step.
A checkpoint without optimiser state (a released CroCo one) given as `resume` only initialises the weights.
A non-finite loss stops every rank with a SlifeError before the optimiser step; last.pt stays as it was.
Entry point: `run(cfg, shards, out_dir, progress) -> Path`. The network is `model.py`'s, files are
written by `checkpoint.py`, batches come from `stream.py`.
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
from slife.train.augment import PairAugment, to_model_input
from slife.train.metrics import MetricsLog
from slife.train.optim import clip_gradients, lr_at, make_optimizer, scaled_lr, set_lr
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

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Read torchrun's environment; init the process group (nccl on cuda, gloo on cpu) when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise SlifeError("--device cuda: no CUDA device is available")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, dev, world > 1)


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


def _model_kwargs(cfg: TrainConfig) -> dict:
    from slife.train.model import CROCO_PRESETS

    if cfg.preset not in CROCO_PRESETS:
        raise SlifeError(f"unknown preset {cfg.preset!r} (known: {', '.join(CROCO_PRESETS)})")
    import inspect

    from slife.train.model import CroCoNet

    known = set(inspect.signature(CroCoNet.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg.croco_kwargs or {}) - known)
    if unknown:
        raise SlifeError(f"--croco-kwargs: unknown argument(s) {', '.join(unknown)} (CroCoNet takes "
                         f"{', '.join(sorted(known))})")
    kw = dict(CROCO_PRESETS[cfg.preset])
    kw.update(cfg.croco_kwargs or {})
    if cfg.img_size is not None:
        kw["img_size"] = cfg.img_size
    p, s = kw.get("patch_size", 16), kw.get("img_size", 224)
    try:
        if s % p:
            raise SlifeError(f"image size {s} is not a multiple of the patch size {p} (preset {cfg.preset!r})")
        with torch.device("meta"):  # checks the arguments without allocating the weights
            CroCoNet(**kw)
    except (TypeError, ValueError, RuntimeError) as e:
        raise SlifeError(f"cannot build CroCoNet({kw}): {str(e).strip().splitlines()[0]}") from None
    if cfg.resize_short is not None and cfg.resize_short < s:
        raise SlifeError(f"--resize-short {cfg.resize_short} is smaller than the image size {s}")
    return kw


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


def _check_compatible(path: Path, ckpt: dict, cfg: TrainConfig, kwargs: dict) -> None:
    old = ckpt.get("config") or {}
    if old.get("preset") not in (None, cfg.preset):
        raise SlifeError(f"{path}: checkpoint is preset {old.get('preset')!r}, this run is {cfg.preset!r} "
                         f"(use another --out or --resume never)")
    if dict(ckpt.get("croco_kwargs") or {}) != kwargs:
        diff = sorted(k for k in set(kwargs) | set(ckpt.get("croco_kwargs") or {})
                      if (ckpt.get("croco_kwargs") or {}).get(k) != kwargs.get(k))
        raise SlifeError(f"{path}: checkpoint model differs from this run's ({', '.join(diff)}); "
                         f"use another --out or --resume never")
    for k in ("batch_size", "seed", "num_workers"):
        if k in old and old[k] != getattr(cfg, k):
            log.warning("%s: resuming with %s=%s (checkpoint: %s): the run will not equal an uninterrupted one",
                        path, k, getattr(cfg, k), old[k])


def _init_from(path: Path, ckpt: dict, model: torch.nn.Module) -> None:
    """Load only the weights of a checkpoint that is not a slife training state (e.g. a released CroCo one)."""
    from slife.train.checkpoint import check_weights

    sd = ckpt.get("model", ckpt)
    if not isinstance(sd, dict):
        raise SlifeError(f"{path}: no 'model' state_dict in the checkpoint")
    check_weights(sd, model.state_dict(), path, "weights do not fit this run's model")
    model.load_state_dict(sd, strict=True)
    log.info("%s: no optimiser state: starting at step 0 from its weights", path)


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


# ----------------------------------------------------------------------------------------------------
# the run


def _config_dict(cfg: TrainConfig, extra: dict) -> dict:
    d = asdict(cfg)
    d.update(extra)
    return d


def run(cfg: TrainConfig, shards, out_dir: Path, progress: Callable | None = None) -> Path:
    """Train; returns the path of last.pt (see the module docstring)."""
    from slife.train.loss import MaskedMSE
    from slife.train.model import CroCoNet

    d = setup_distributed(cfg.device)
    try:
        return _run(cfg, shards, Path(out_dir), progress, d, CroCoNet, MaskedMSE)
    finally:
        if d.ddp:
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


def _run(cfg, shards, out_dir, progress, d: Dist, CroCoNet, MaskedMSE) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = resolve_precision(cfg.precision, d.device)
    if precision == "fp16" and d.device.type != "cuda":
        raise SlifeError("--precision fp16 needs a cuda device; use bf16 or fp32 on CPU")
    shardset = shards if isinstance(shards, ShardSet) else resolve_shards(shards)
    kwargs = _model_kwargs(cfg)
    S = kwargs["img_size"]
    augment = PairAugment(S, cfg.resize_short, cfg.color_jitter, cfg.color_jitter, cfg.color_jitter, cfg.hue,
                          aug_zoom=tuple(cfg.aug_zoom), aug_flip=cfg.aug_flip)
    check_image_size(shardset, S)
    out_dir.mkdir(parents=True, exist_ok=True)
    if d.main:
        from slife.train.checkpoint import remove_stale_temporaries

        if remove_stale_temporaries(out_dir):
            log.info("%s: removed checkpoint temporaries of an interrupted save", out_dir)

    # model, optimiser, schedule
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = CroCoNet(**kwargs).to(d.device)
    eff_batch = cfg.batch_size * d.world
    lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.blr, eff_batch)
    opt = make_optimizer(model, lr, cfg.weight_decay)
    scaler = torch.amp.GradScaler(d.device.type, enabled=precision == "fp16")
    criterion = MaskedMSE(norm_pix_loss=cfg.norm_pix_loss)

    # resume
    start, ck_data, ckpt = 0, {}, None
    ck_path = _checkpoint_path(cfg, out_dir)
    if ck_path is not None:
        from slife.train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(ck_path)
        last = out_dir / "last.pt"
        if "optimizer" not in ckpt or "step" not in ckpt:  # a released / weights-only checkpoint: start from it,
            if last.exists():  # unless this run has already begun from it
                ck_path = out_dir / "last.pt"
                ckpt = load_checkpoint(ck_path)
            else:
                _init_from(ck_path, ckpt, model)
                ckpt = None
        elif last.exists() and not last.samefile(ck_path):  # --resume PATH given again after an interruption:
            mine = load_checkpoint(last)  # this run's own progress since PATH is not thrown away
            if int(mine.get("step", -1)) >= int(ckpt["step"]):
                if d.main:
                    log.info("%s is at step %d, past %s (step %d): continuing from it", last, int(mine["step"]),
                             ck_path, int(ckpt["step"]))
                ck_path, ckpt = last, mine
            del mine
    if ckpt is not None:
        _check_compatible(ck_path, ckpt, cfg, kwargs)
        from slife.train.checkpoint import check_finite

        check_finite(ckpt["model"], ck_path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state((ckpt.get("rng") or {}).get(f"rank{d.rank}") or {})
        start, ck_data = int(ckpt["step"]), dict(ckpt.get("data") or {})
        if d.main:
            log.info("resuming from %s at step %d", ck_path, start)
        del ckpt
        if start >= cfg.steps:
            log.info("%s: already at step %d of %d: nothing to do", ck_path, start, cfg.steps)
            return out_dir / "last.pt" if (out_dir / "last.pt").exists() else ck_path

    samples_per_epoch = cfg.samples_per_epoch or max(cfg.batch_size, shardset.total // d.world)
    steps_per_epoch = max(1, samples_per_epoch // cfg.batch_size)
    for k, v in (("steps_per_epoch", steps_per_epoch), ("world_size", d.world)):
        if k in ck_data and ck_data[k] != v and d.main:
            log.warning("%s: %s is %s, the checkpoint's was %s: the data stream will not continue exactly",
                        ck_path, k, v, ck_data[k])
    positions = (ck_data.get("positions") or {}).get(f"rank{d.rank}") or {}
    if ck_data.get("num_workers", cfg.num_workers) != cfg.num_workers:
        positions = {}  # other workers, other streams: fall back to skipping whole batches
    stream = PairStream(shardset, augment, cfg.batch_size, steps_per_epoch, seed=cfg.seed, rank=d.rank,
                        world=d.world, start_step=start, shuffle_buffer=cfg.shuffle_buffer, positions=positions)
    loader = make_loader(stream, cfg.num_workers)

    net = model
    if d.ddp:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]

    extra = {"lr_abs": lr, "precision_used": precision, "effective_batch": eff_batch, "world_size": d.world, "shards": shardset.spec}
    data_pos = {"steps_per_epoch": steps_per_epoch, "samples_per_epoch": samples_per_epoch,
                "batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "world_size": d.world,
                "seed": cfg.seed}

    positions = dict(positions)  # worker -> stream position after the last batch trained on (this rank)

    def checkpoint(step: int, ranks: dict) -> dict:
        return {"model": model.state_dict(), "croco_kwargs": kwargs, "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "epoch": step // steps_per_epoch,
                "rng": {r: v["rng"] for r, v in ranks.items()},
                "data": dict(data_pos, step=step, epoch=step // steps_per_epoch, step_in_epoch=step % steps_per_epoch,
                             positions={r: v["positions"] for r, v in ranks.items()},
                             metrics_window={k: win[k] for k in ("loss", "n", "gn")}),
                "config": _config_dict(cfg, extra), "slife_version": slife.__version__}

    metrics = MetricsLog(out_dir, start) if d.main else None
    keys_file = open(out_dir / f"keys-rank{d.rank}.txt", "a") if cfg.log_keys else None
    if d.main:
        if cfg.warmup_steps > cfg.steps:
            log.warning("the run ends at step %d, before the lr warmup (%d steps) reaches its peak %.3g",
                        cfg.steps, cfg.warmup_steps, lr)
        _write_json(out_dir / "train.json", {"config": _config_dict(cfg, extra), "croco_kwargs": kwargs,
                                             "shards": shardset.summary(), "slife_version": slife.__version__})
        log.info("training %s (%s) on %d pairs in %d shards: %d steps of %d pairs x %d processes, lr %.3g "
                 "(blr %.3g), %s, %s", cfg.preset, S, shardset.total, len(shardset.paths), cfg.steps,
                 cfg.batch_size, d.world, lr, cfg.blr, precision, d.device)

    last = out_dir / "last.pt"
    step = start
    # metrics window: loss and grad-norm sums over the n steps since the last row (restored on resume, so that
    # metrics.csv equals an uninterrupted run's), data wait and time over the nt steps timed in this process
    win = {"loss": 0.0, "n": 0, "gn": 0.0, **(ck_data.get("metrics_window") or {}),
           "wait": 0.0, "t0": time.perf_counter(), "nt": 0}
    it = iter(loader)
    if progress is not None and d.main and start:
        progress(start, info=f"resumed at step {start}")
    try:
        while step < cfg.steps:
            t_wait = time.perf_counter()
            try:
                batch = next(it)
            except SlifeError as e:  # from a loader worker: torch prefixes the worker's traceback
                raise SlifeError(str(e).strip().splitlines()[-1].split("SlifeError: ", 1)[-1]) from None
            win["wait"] += time.perf_counter() - t_wait
            assert batch["step"] == step, (batch["step"], step)  # stream and loop agree on the position
            positions[batch["worker"]] = batch["pos"]
            if keys_file is not None:
                keys_file.write("".join(f"{step} {k}\n" for k in batch["keys"]))
            src = to_model_input(batch["src"], batch["src_color"], d.device)  # (B,3,S,S) reference view
            tgt = to_model_input(batch["tgt"], batch["tgt_color"], d.device)  # (B,3,S,S) masked view

            cur_lr = lr_at(step, lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)
            set_lr(opt, cur_lr)
            torch.manual_seed(step_seed(cfg.seed, d.rank, step))
            with torch.autocast(d.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out, mask, target = net(tgt, src)  # img1 = target (masked), img2 = source
                loss = criterion(out.float(), mask, target.float())
            loss_all = _all_mean(loss.detach().float().clone(), d)
            loss_val = float(loss_all)
            if not torch.isfinite(loss_all):
                raise SlifeError(f"{out_dir}: loss became {loss_val} at step {step}; stopped. "
                                 f"{'last.pt (step ' + str(_ckpt_step(last)) + ') is intact' if last.exists() else 'no checkpoint was written'}; "
                                 f"try a lower --lr/--blr, --clip-grad or --precision fp32")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            win["gn"] += clip_gradients(model.parameters(), cfg.clip_grad)
            scaler.step(opt)
            scaler.update()
            step += 1
            win["loss"] += loss_val
            win["n"] += 1
            win["nt"] += 1

            if d.main and (step % cfg.log_every == 0 or step == cfg.steps):
                dt = time.perf_counter() - win["t0"]
                row = {"step": step, "epoch": step // steps_per_epoch, "loss": win["loss"] / win["n"],
                       "lr": cur_lr, "pairs_per_s": win["nt"] * eff_batch / dt, "data_wait_share": win["wait"] / dt,
                       "grad_norm": win["gn"] / win["n"], "bad_samples": sum(_bad_counts(positions).values())}
                metrics.write(row)
                win = {"loss": 0.0, "n": 0, "gn": 0.0, "wait": 0.0, "t0": time.perf_counter(), "nt": 0}
                info = f"loss {row['loss']:.4f}  lr {cur_lr:.2e}  {row['pairs_per_s']:.0f} pairs/s"
            else:
                info = None
            if d.main and cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
                from slife.train.preview import write_preview

                p = write_preview(model, src, tgt, out_dir / "previews" / f"step-{step:07d}.png", cfg.norm_pix_loss)
                metrics.image("preview", p, step)
            snapshot = bool(cfg.keep_every) and step % cfg.keep_every == 0
            if step % cfg.save_every == 0 or step == cfg.steps or snapshot:
                ranks = _gather_rank_state(d, positions)  # every rank takes part
                if d.main:
                    keep = out_dir / f"step-{step:07d}.pt" if snapshot else None
                    _save(last, checkpoint(step, ranks), keep)
            if progress is not None and d.main:
                progress(1, info=info) if info is not None else progress(1)
    finally:
        del it
        if keys_file is not None:
            keys_file.close()
        if metrics is not None:
            metrics.close()
    if d.main:
        bad_total = _bad_counts(positions)
        _write_json(out_dir / "train.json", {"config": _config_dict(cfg, extra), "croco_kwargs": kwargs,
                                             "shards": shardset.summary(), "bad_samples": bad_total,
                                             "final_step": step, "slife_version": slife.__version__})
        if bad_total:
            log.warning("skipped bad samples: %s", bad_total)
    return last


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
