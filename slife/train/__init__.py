"""train: encoders trained on pair shards as a stream, with a choice of objective (CroCo by default).

Reads pair shards (DESIGN.md "Pair shards"); writes a run folder: `last.pt` (+ kept snapshots
`step-XXXXXXX.pt`), `metrics.csv`, TensorBoard events, `previews/*.png`, `train.json` (the config and
shard summary, the run's segments). Entry point: `run(cfg, shards, out_dir) -> Path` (the last.pt it wrote);
works alone or under `torchrun` (one process per device, DDP). Run again on a shard set that has grown since
the run folder's last checkpoint, it continues the run in a new segment (`segments.py`).
`preset_config(objective, preset)` is the TrainConfig of a named preset for an objective.
Modules: objectives/ (one plug-in per objective: croco, croco+egomotion, dinov2, egomotion; each owns its
models, views, loss, after-step hook, checkpoint state and preview), model/blocks/masking/pos_embed/loss
(CroCo), vit (the ViT of the other objectives, timm's layout), dino (DINOv2 heads and losses), pose
(egomotion head and losses), checkpoint (files), stream (shards -> batches), augment (pair crops and colour),
multicrop (DINOv2's crops), optim (AdamW, schedule), loop (steps, precision, DDP, checkpoints, resume, metrics),
segments (a run continued on a grown shard set), metrics (csv + TensorBoard), preview (PNG grids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PRECISIONS = ("auto", "bf16", "fp32", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides its shards and output folder."""

    objective: str = "croco"  # what is learned: a key of slife.train.objectives.OBJECTIVES
    preset: str = "tiny"  # model size: a key of the objective's presets (CroCo: CROCO_PRESETS; ViTs: VIT_PRESETS)
    model_kwargs: dict | None = field(default=None, hash=False)  # overrides of the preset's constructor arguments
    objective_conf: dict | None = field(default=None, hash=False)  # overrides of the objective's default_conf
    img_size: int | None = None  # training crop side in px; None = the model's img_size
    steps: int = 2000  # steps of the run's segment: of the run at first; steps to add when the set grew (segments.py)
    batch_size: int = 32  # pairs per step per process (effective batch = batch_size x processes)
    blr: float = 1.5e-4  # base learning rate; lr = blr * effective batch / 256
    lr: float | None = None  # absolute learning rate; overrides blr when given
    min_lr: float = 0.0  # learning rate at the end of the cosine decay (of each segment)
    warmup_steps: int = 100  # linear warmup steps (of each segment: a continued one re-warms)
    continue_lr: float = 0.5  # peak lr of a continued segment (the set grew), as a share of the run's peak lr
    new_weight: float = 2.0  # in a continued segment, each new pair is drawn this many times as often as an old one
    weight_decay: float = 0.05  # AdamW decay of weight matrices (not of 1-D params, positions, tokens)
    clip_grad: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    precision: str = "auto"  # auto (bf16 where the hardware computes it natively, else fp32) | bf16 | fp32 | fp16 (cuda)
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto (cuda if present, one per process) | cpu | cuda
    threads: int | None = None  # torch intra-op threads per process; None = torch's default
    seed: int = 0  # seeds masking, shard sampling, shuffling and augmentation
    num_workers: int = 1  # data loader processes per training process (0: load in the training process)
    shuffle_buffer: int = 256  # samples held by the shuffle buffer of each loader worker
    samples_per_epoch: int | None = None  # pairs per epoch per process; None = pairs in the shards / processes
    resize_short: int | None = None  # short side each view is resized to before its crop; None = img_size*256/224
    color_jitter: float = 0.4  # brightness/contrast/saturation jitter of each view, factors in [1-x, 1+x]
    hue: float = 0.0  # hue jitter of each view in turns (CroCo: 0)
    aug_zoom: tuple[float, float] = (0.7, 1.4)  # 'augmented' pairs: zoom range of each view (log-uniform)
    aug_flip: float = 0.5  # 'augmented' pairs: probability that a view is flipped left-right
    save_every: int = 500  # write last.pt every this many steps (and at the end)
    keep_every: int = 0  # also keep a snapshot step-XXXXXXX.pt every this many steps (0: none)
    log_every: int = 10  # metrics.csv / TensorBoard row every this many steps
    preview_every: int = 500  # reconstruction preview PNG every this many steps (0: none)
    resume: str = "auto"  # auto (OUT/last.pt if present) | never (start over) | a checkpoint (weights-only: init)
    log_keys: bool = False  # debug: append the keys of the pairs each rank trains on to keys-rank{r}.txt

    def __post_init__(self):
        from slife.errors import SlifeError

        from slife.train.objectives import check_objective

        check_objective(self.objective)
        if self.precision not in PRECISIONS:
            raise SlifeError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("steps", "batch_size", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise SlifeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "keep_every", "preview_every", "num_workers", "seed"):
            if getattr(self, name) < 0:
                raise SlifeError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.blr <= 0 or (self.lr is not None and self.lr <= 0):
            raise SlifeError("learning rates must be > 0")
        if not 0 < self.continue_lr <= 1:
            raise SlifeError(f"--continue-lr must be in (0, 1] (a share of the run's peak lr), got {self.continue_lr}")
        if not self.new_weight > 0:
            raise SlifeError(f"--new-weight must be > 0, got {self.new_weight}")
        if self.img_size is not None and self.img_size < 8:
            raise SlifeError(f"--img-size must be >= 8, got {self.img_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SlifeError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if not 0 <= self.color_jitter < 1 or not 0 <= self.hue <= 0.5:
            raise SlifeError("color_jitter must be in [0,1) and hue in [0,0.5]")
        if len(self.aug_zoom) != 2 or not 0 < self.aug_zoom[0] <= self.aug_zoom[1] or not 0 <= self.aug_flip <= 1:
            raise SlifeError(f"need aug_zoom LO,HI with 0 < LO <= HI and aug_flip in [0,1], got {self.aug_zoom}, "
                             f"{self.aug_flip}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < self.batch_size:
            raise SlifeError(f"--samples-per-epoch ({self.samples_per_epoch}) must be >= --batch-size ({self.batch_size})")
        if not self.resume:
            raise SlifeError("resume must be auto, never or a checkpoint path")


# Named presets: the model size and the optimisation recipe that goes with it (CroCo's; other objectives change
# some fields through their `recipe`, see `preset_config`).
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # CPU scale (DESIGN.md): 64 px, lr 1e-3 at batch 32 (= blr 8e-3), ~127 pairs/s on 2 threads in bf16
    "tiny": TrainConfig(preset="tiny", steps=2000, batch_size=32, blr=8e-3, warmup_steps=100, save_every=250,
                        preview_every=250),
    # one GPU
    "small": TrainConfig(preset="small", steps=50_000, batch_size=64, blr=1.5e-4, warmup_steps=2_000,
                         save_every=1000, preview_every=1000, num_workers=8, shuffle_buffer=2000),
    # CroCo v2 recipe (blr 1.5e-4, batch 64 per GPU); steps to taste
    "base": TrainConfig(preset="base", steps=200_000, batch_size=64, blr=1.5e-4, warmup_steps=10_000,
                        save_every=2000, preview_every=2000, num_workers=8, shuffle_buffer=5000, clip_grad=None),
    "base-base": TrainConfig(preset="base-base", steps=200_000, batch_size=64, blr=1.5e-4, warmup_steps=10_000,
                             save_every=2000, preview_every=2000, num_workers=8, shuffle_buffer=5000, clip_grad=None),
    "large": TrainConfig(preset="large", steps=200_000, batch_size=32, blr=1.5e-4, warmup_steps=10_000,
                         save_every=2000, preview_every=2000, num_workers=8, shuffle_buffer=5000, clip_grad=None),
}


def preset_config(objective: str, preset: str) -> TrainConfig:
    """The TrainConfig of `preset` for `objective`: `TRAIN_PRESETS[preset]` with the objective's own recipe
    (`Objective.recipe`); SlifeError for a preset the objective does not have."""
    import dataclasses

    from slife.errors import SlifeError
    from slife.train.objectives import objective_class

    cls = objective_class(objective)
    if preset not in TRAIN_PRESETS or preset not in cls.presets:
        raise SlifeError(f"unknown preset {preset!r} for objective {objective} (known: "
                         f"{', '.join(p for p in TRAIN_PRESETS if p in cls.presets)})")
    return dataclasses.replace(TRAIN_PRESETS[preset], objective=objective, **cls.recipe(preset))


def run(cfg: TrainConfig, shards, out_dir: Path | str, progress: Callable | None = None) -> Path:
    """Train cfg.objective on `shards` (spec: folder(s), comma list, brace pattern) into `out_dir`; returns last.pt.

    A run folder whose last checkpoint was made on a smaller version of the same set (a generation appended
    since) is continued in a new segment of cfg.steps more steps (`segments.py`); the same call again resumes
    inside that segment.
    `progress(n, info=str)` is called on rank 0 after every step (n steps done since the last call); a resumed
    run first calls `progress(start_step, total=end_step, info=...)`.
    """
    from slife.train import loop

    return loop.run(cfg, shards, Path(out_dir), progress=progress)
