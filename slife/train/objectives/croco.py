"""CroCo cross-view completion as an objective: mask the target view, reconstruct it from the source view.

Views: a pair's two crops (`augment.PairAugment`: independent crops and colour draws per view).
Loss: `loss.MaskedMSE` on the masked patches of the target (per-patch normalised pixels unless
`norm_pix_loss` is off). Model: `model.CroCoNet` (sizes `CROCO_PRESETS`), exported as the checkpoint's
`model` with the reference key names and `croco_kwargs`, so checkpoints stay those of CroCo v2 (plus
`objective`). Preview: source | masked target | reconstruction | target (`preview.write_preview`).
Entry point: the `CroCo` class (registered as "croco").
"""

from __future__ import annotations

from pathlib import Path

from slife.train import loss as loss_mod
from slife.train.model import CROCO_PRESETS, CroCoNet
from slife.train.objectives.base import Objective


class CroCo(Objective):
    name = "croco"
    kind = "croco"
    presets = CROCO_PRESETS
    export = "net"
    default_conf = {
        "norm_pix_loss": True,  # MSE against per-patch normalised pixels (MAE, CroCo)
    }

    def __init__(self, model_kwargs: dict, conf: dict, steps: int):
        super().__init__(model_kwargs, conf, steps)
        self.net = CroCoNet(**model_kwargs)
        self.criterion = loss_mod.MaskedMSE(norm_pix_loss=bool(conf["norm_pix_loss"]))

    def forward(self, views: dict, step: int):
        out, mask, target = self.net(views["tgt"], views["src"])  # img1 = target (masked), img2 = source
        return self.criterion(out.float(), mask, target.float()), {}

    def preview(self, views: dict, path: Path) -> Path:
        from slife.train.preview import write_preview

        return write_preview(self.net, views["src"], views["tgt"], path, bool(self.conf["norm_pix_loss"]))
