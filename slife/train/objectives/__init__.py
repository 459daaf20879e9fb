"""Training objectives: one plug-in per file on the `Objective` base class (`base.py`).

`OBJECTIVES` is the one registry: name -> (module path, class name); `objective_class(name)` imports the
module on first use, so that `slife --help` stays fast. A new objective is one new file and one line here.

- croco: cross-view completion (CroCo v2): mask the target view, reconstruct it from the source view.
- dinov2: DINOv2-style self-distillation on the life's frames (student ViT, EMA teacher, multi-crop, DINO,
  iBOT and KoLeo losses).
"""

from __future__ import annotations

import importlib

from slife.errors import SlifeError

OBJECTIVES: dict[str, tuple[str, str]] = {
    "croco": ("slife.train.objectives.croco", "CroCo"),
    "dinov2": ("slife.train.objectives.dinov2", "DINOv2"),
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
