"""Load the checkpoints an evaluation compares, and build the untrained controls of the same architecture.

Reads checkpoints in the format of DESIGN.md ("Checkpoints": `model` state_dict and its arguments) of every
training objective through `slife.train.checkpoint.load_model`, which builds what the checkpoint records:
CroCoNet (`croco_kwargs`: croco, croco+egomotion, released CroCo) or the ViT encoder (`vit_kwargs`: dinov2,
egomotion). Every such model has `encode_image(img, layer=None) -> (B, N, D)` (probe, mKNN/CKA, feature
matching); only CroCoNets have `cross_attention_logits` (CAS, attention matching): asking a ViT for it
(`attention=True`) is a one-line error. Any failure is one `SlifeError` line naming the file.
Entry points: `load_models`, `load_one`, `model_spec_of`, `architectures`, `untrained_models`, `model_label`,
`image_grid`.
Attention and features are read in `attention.py` / `cas.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from slife.errors import SlifeError

log = logging.getLogger(__name__)


def model_label(path: Path) -> str:
    """A short name for a checkpoint: its stem, or its folder's name for generic stems (last.pt, best.pt...)."""
    path = Path(path)
    if path.stem in ("last", "best", "checkpoint", "model", "final") or path.stem.startswith("step"):
        return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
    return path.stem


def load_one(path: Path, attention: bool = False):
    """(model, ckpt) for one checkpoint; SlifeError on a missing file, missing keys or another architecture,
    and with `attention` on a checkpoint whose model has no decoder cross-attention (not a CroCo one)."""
    from slife.train.checkpoint import load_model, objective_of

    path = Path(path)
    if not path.is_file():
        raise SlifeError(f"{path}: no such checkpoint file")
    try:
        model, ckpt = load_model(path)
    except SlifeError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SlifeError(f"{path}: not a CroCo checkpoint of a known architecture ({first[:200]})") from None
    if attention and not hasattr(model, "cross_attention_logits"):
        obj = objective_of(ckpt)
        raise SlifeError(f"{path}: {'an' if obj[:1] in 'aeiou' else 'a'} {obj} checkpoint has no decoder "
                         "cross-attention, which CAS and "
                         "attention matching read (CroCo checkpoints only); compare its features with "
                         "`slife cas --metric mknn|cka`, match with `slife match --method features`")
    if not hasattr(model, "encode_image"):
        raise SlifeError(f"{path}: the loaded model has no encode_image")
    model.eval()
    return model, ckpt


def load_models(paths: Sequence[Path], attention: bool = False) -> list[tuple[str, object, dict]]:
    """[(label, model, ckpt)] for each checkpoint (see `load_one`); labels are made unique."""
    out, seen = [], {}
    for p in paths:
        model, ckpt = load_one(p, attention)
        name = model_label(p)
        if name in seen:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 1
        out.append((name, model, ckpt))
    return out


def model_spec_of(ckpt: dict):
    """The `ModelSpec` (kind, constructor arguments) stored in (or recovered from) a checkpoint."""
    from slife.train.checkpoint import model_spec_from_ckpt

    return model_spec_from_ckpt(ckpt)


def architectures(ckpts: Sequence[dict]) -> list:
    """Each architecture (`ModelSpec`) among checkpoints once, in checkpoint order: what untrained controls are
    built for."""
    specs = []
    for ck in ckpts:
        spec = model_spec_of(ck)
        if all(spec != x for x in specs):
            specs.append(spec)
    return specs


# Untrained controls draw their weights from seeds offset by this, so that untrained-s0 is not the initial
# model of `slife train --seed 0` (which seeds torch with the run seed before building the model): a trained
# model compared with its own initialisation would make the control look more alike than chance.
UNTRAINED_SEED_OFFSET = 1_000_003


def untrained_label(kind: str, seed: int, nth: int = 1) -> str:
    """The name of an untrained control, the same in every evaluation and in the demo: untrained-s<seed> for
    CroCo, untrained-<kind>-s<seed> for another architecture (untrained-vit-s0), and, when several
    architectures of one kind are compared, untrained-<kind>#<nth>-s<seed> for the nth of them after the first."""
    if nth > 1:
        return f"untrained-{kind}#{nth}-s{seed}"
    return f"untrained-s{seed}" if kind == "croco" else f"untrained-{kind}-s{seed}"


def untrained_architecture(label: str) -> str:
    """The architecture part of an `untrained_label` (its seed dropped): two untrained controls are of one
    architecture when theirs are equal."""
    return label.rsplit("-s", 1)[0]


def untrained_models(specs, seeds: Sequence[int]) -> list[tuple[str, object, object]]:
    """[(label, spec, model)]: for each architecture of `specs` (`ModelSpec`s: CroCoNet or ViT), networks with
    seeded random weights (the untrained controls), named by `untrained_label`; seed s builds its weights from
    torch seed s + UNTRAINED_SEED_OFFSET, never a training run's start."""
    import torch

    out = []
    state = torch.random.get_rng_state()
    try:
        for si, spec in enumerate(specs):
            nth = 1 + sum(x.kind == spec.kind for x in specs[:si])
            for s in seeds:
                torch.manual_seed(int(s) + UNTRAINED_SEED_OFFSET)
                m = spec.build()
                m.eval()
                out.append((untrained_label(spec.kind, int(s), nth), spec, m))
    finally:
        torch.random.set_rng_state(state)
    return out


def image_grid(model_kwargs: dict) -> tuple[int, int, int]:
    """(image size S, patch size p, patches per side S // p) of a square model (CroCoNet's or the ViT's arguments)."""
    size = model_kwargs.get("img_size", 224)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise SlifeError(f"non-square model image size {size} is not supported")
        size = size[0]
    patch = int(model_kwargs.get("patch_size", 16))
    return int(size), patch, int(size) // patch
