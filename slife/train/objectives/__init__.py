"""Training objectives: one plug-in per file on the `Objective` base class (`base.py`).

`OBJECTIVES` is the one registry: name -> (module path, class name); `objective_class(name)` imports the
module on first use, so that `slife --help` stays fast. A new objective is one new file and one line here.

- croco: cross-view completion (CroCo v2): mask the target view, reconstruct it from the source view.
- croco+egomotion: CroCo plus an auxiliary head predicting the relative camera motion of the pair from
  CroCo's own encoder tokens.
- dinov2: DINOv2-style self-distillation on the life's frames (student ViT, EMA teacher, multi-crop, DINO,
  iBOT and KoLeo losses).
- egomotion: a ViT and a small head trained to predict the relative camera motion (rotation and translation
  direction) between the two views of a posed pair.
"""

from __future__ import annotations

import importlib

from slife.errors import SlifeError

OBJECTIVES: dict[str, tuple[str, str]] = {
    "croco": ("slife.train.objectives.croco", "CroCo"),
    "croco+egomotion": ("slife.train.objectives.croco_egomotion", "CroCoEgomotion"),
    "dinov2": ("slife.train.objectives.dinov2", "DINOv2"),
    "egomotion": ("slife.train.objectives.egomotion", "Egomotion"),
}


def check_objective(name: str) -> None:
    """SlifeError (one line, listing the known names) unless `name` is a registered objective."""
    if name not in OBJECTIVES:
        raise SlifeError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")


def objective_class(name: str):
    """The Objective subclass registered as `name`."""
    check_objective(name)
    mod, cls = OBJECTIVES[name]
    return getattr(importlib.import_module(mod), cls)


__all__ = ["OBJECTIVES", "check_objective", "objective_class"]
