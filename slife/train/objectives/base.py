"""The objective interface: everything a training objective owns, so that the loop (`train/loop.py`) knows none.

An `Objective` is an nn.Module (the module the loop optimises and DDP wraps). It owns:
- its model(s), built in `__init__` from `model_kwargs` (the exported network's constructor arguments: a
  preset of `presets`, `TrainConfig.model_kwargs` overrides, `img_size`; checked by `resolve_model_kwargs`)
  and `conf` (its own settings: `default_conf` + `TrainConfig.objective_conf`, checked by `resolve_conf`);
- the views it takes from a sample: `check_shards(shards)` refuses a shard set without what it needs (poses),
  `augment(cfg)` makes the loader-side augmentation (uint8 crops made in
  the loader workers; the stream calls its `new_batch`/`fill_view`/`finish`, see `augment.PairAugment`),
  `views(batch, device)` turns a batch into the tensors of one step on the device;
- its loss and logged numbers: `forward(views, step) -> (loss, logs)`, `logs` a dict of scalar tensors named
  in `log_names` (metrics.csv columns after the loop's own);
- what it does after each optimiser step: `after_step(step)` (an EMA teacher, schedules);
- its checkpoint state: `checkpoint_state()` -> {"objective": name, "model": the state_dict of the exported
  submodule `export` (the encoder evaluations read, e.g. CroCoNet with the reference keys), the model's
  arguments under `ModelSpec.args_key` (`croco_kwargs` or `vit_kwargs`), and "objective_state": the rest of
  its state_dict (teacher, heads, centres), omitted when empty}; `load_state(ckpt, path)` restores it and
  `init_from_weights(sd, path)` starts from a weights-only checkpoint's `model`;
- its preview picture: `preview(views, path)`.
Also per objective: `recipe(preset)` (TrainConfig fields that differ from the CroCo recipes of
`TRAIN_PRESETS`) and `betas` (AdamW's). Every random draw of `forward` uses torch's global generator, which the
loop re-seeds from (seed, rank, step) before each step, so a resumed run draws what an uninterrupted one does.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from slife.errors import SlifeError


class Objective(nn.Module):
    """Base class of the training objectives (see the module docstring)."""

    name: ClassVar[str] = ""  # the registry key (`objectives.OBJECTIVES`), recorded in checkpoints
    kind: ClassVar[str] = "croco"  # `ModelSpec.kind` of the exported model: "croco" or "vit"
    presets: ClassVar[dict[str, dict]] = {}  # model size name -> constructor arguments of the exported model
    export: ClassVar[str] = "net"  # submodule saved as the checkpoint's `model`
    default_conf: ClassVar[dict] = {}  # the objective's own settings and their defaults
    log_names: ClassVar[tuple[str, ...]] = ()  # numbers `forward` logs besides the loss, in column order
    betas: ClassVar[tuple[float, float]] = (0.9, 0.95)  # AdamW betas

    def __init__(self, model_kwargs: dict, conf: dict, steps: int):
        super().__init__()
        self.model_kwargs = dict(model_kwargs)  # the exported model's constructor arguments
        self.conf = dict(conf)  # resolved settings (`resolve_conf`)
        self.total_steps = int(steps)  # the step the run ends at (its current segment's end): what schedules span

    # ------------------------------------------------------------------------------------------ settings
    @classmethod
    def recipe(cls, preset: str) -> dict:
        """TrainConfig fields this objective sets differently from `TRAIN_PRESETS[preset]` (none: CroCo's)."""
        return {}

    @classmethod
    def model_class(cls) -> type:
        from slife.train.checkpoint import MODEL_CLASSES

        return MODEL_CLASSES[cls.kind]

    @classmethod
    def resolve_model_kwargs(cls, cfg) -> dict:
        """The exported model's constructor arguments for `cfg` (preset, overrides, img_size), checked by
        building the model on the meta device (no weights allocated); SlifeError naming the problem."""
        mcls = cls.model_class()
        if cfg.preset not in cls.presets:
            raise SlifeError(f"unknown preset {cfg.preset!r} for objective {cls.name} (known: {', '.join(cls.presets)})")
        known = set(inspect.signature(mcls.__init__).parameters) - {"self", "norm_layer"}
        unknown = sorted(set(cfg.model_kwargs or {}) - known)
        if unknown:
            raise SlifeError(f"--model-kwargs: unknown argument(s) {', '.join(unknown)} ({mcls.__name__} takes "
                             f"{', '.join(sorted(known))})")
        kw = dict(cls.presets[cfg.preset])
        kw.update(cfg.model_kwargs or {})
        if cfg.img_size is not None:
            kw["img_size"] = cfg.img_size
        p, s = kw.get("patch_size", 16), kw.get("img_size", 224)
        try:
            if s % p:
                raise SlifeError(f"image size {s} is not a multiple of the patch size {p} (preset {cfg.preset!r})")
            with torch.device("meta"):
                mcls(**kw)
        except (TypeError, ValueError, RuntimeError) as e:
            raise SlifeError(f"cannot build {mcls.__name__}({kw}): {str(e).strip().splitlines()[0]}") from None
        if cfg.resize_short is not None and cfg.resize_short < s:
            raise SlifeError(f"--resize-short {cfg.resize_short} is smaller than the image size {s}")
        return kw

    @classmethod
    def resolve_conf(cls, cfg) -> dict:
        """`default_conf` updated with `cfg.objective_conf`; unknown keys are a one-line error listing the known."""
        given = dict(cfg.objective_conf or {})
        unknown = sorted(set(given) - set(cls.default_conf))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in cls.default_conf.items()) or "none"
            raise SlifeError(f"--objective-conf: unknown setting(s) {', '.join(unknown)} for {cls.name} "
                             f"(known, with defaults: {known})")
        return {**cls.default_conf, **given}

    @classmethod
    def build(cls, cfg) -> "Objective":
        """The objective of a run, from its TrainConfig (all checks first, then the models)."""
        kw, conf = cls.resolve_model_kwargs(cfg), cls.resolve_conf(cfg)
        return cls(kw, conf, cfg.steps)

    @property
    def img_size(self) -> int:
        """Side S of the training crops (the exported model's img_size)."""
        s = self.model_kwargs.get("img_size", 224)
        return int(s if isinstance(s, int) else s[0])

    def exported_model(self) -> nn.Module:
        """The exported network (it has `encode_image`)."""
        return self.get_submodule(self.export)

    @classmethod
    def check_shards(cls, shards) -> None:
        """A one-line SlifeError if the shard set lacks what this objective needs (checked before any work)."""

    # ------------------------------------------------------------------------------------------ a step
    def augment(self, cfg):
        """The loader-side augmentation: CroCo's pair crops and colour draws (`augment.PairAugment`)."""
        from slife.train.augment import PairAugment

        return PairAugment(self.img_size, cfg.resize_short, cfg.color_jitter, cfg.color_jitter, cfg.color_jitter,
                           cfg.hue, aug_zoom=tuple(cfg.aug_zoom), aug_flip=cfg.aug_flip)

    def views(self, batch: dict, device) -> dict:
        """A pair batch -> {"src", "tgt": float32 (B, 3, S, S) jittered, normalised, on `device`}."""
        from slife.train.augment import to_model_input

        return {"src": to_model_input(batch["src"], batch["src_color"], device),  # (B, 3, S, S) reference view
                "tgt": to_model_input(batch["tgt"], batch["tgt_color"], device)}  # (B, 3, S, S) other view

    def forward(self, views: dict, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (scalar loss to minimise, {name in log_names: scalar tensor})."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after optimiser step `step` (0-based) has updated the weights."""

    def preview(self, views: dict, path: Path) -> Path | None:
        """Write a preview PNG of what the objective currently does on `views`; None if it has none."""
        return None

    # ------------------------------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        """{"objective", "model", <args key>, "objective_state" (if any)} (see the module docstring)."""
        from slife.train.checkpoint import ModelSpec

        prefix = self.export + "."
        sd = self.state_dict()
        out = {"objective": self.name, "model": {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)},
               ModelSpec(self.kind, self.model_kwargs).args_key: dict(self.model_kwargs)}
        rest = {k: v for k, v in sd.items() if not k.startswith(prefix)}
        if rest:
            out["objective_state"] = rest
        return out

    def load_state(self, ckpt: dict, path) -> None:
        """Restore what `checkpoint_state` saved; a one-line SlifeError if it does not fit."""
        from slife.train.checkpoint import check_weights

        sd = {f"{self.export}.{k}": v for k, v in ckpt["model"].items()}
        sd.update(ckpt.get("objective_state") or {})
        check_weights(sd, self.state_dict(), path, f"checkpoint state does not fit this run's {self.name} objective")
        self.load_state_dict(sd)

    def init_from_weights(self, sd: dict, path) -> None:
        """Start from the weights `sd` of the exported model (a released or weights-only checkpoint's `model`)."""
        from slife.train.checkpoint import check_weights

        enc = self.exported_model()
        check_weights(sd, enc.state_dict(), path, "weights do not fit this run's model")
        enc.load_state_dict(sd, strict=True)
