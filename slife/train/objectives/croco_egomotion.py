"""CroCo with egomotion as an auxiliary loss: cross-view completion plus a head that predicts the pair's relative
camera motion from CroCo's own encoder tokens.

Views: CroCo's (a pair's two crops, here both cut at the same window, as the egomotion labels need: pure CroCo
crops each view independently) and the motion labels of posed pairs (`pose.pair_motion`); the shard set
must hold posed pairs (`egomotion.check_poses`); unposed and `augmented` pairs count for CroCo only.
Models: `CroCoNet` (exported as `model` + `croco_kwargs`: the checkpoint is a CroCo one, CAS and attention
matching read it) and `pose.PoseHead` (`objective_state`) on the tokens the encoder computes anyway: all of
the source view's and the target's visible ones (10% at mask ratio 0.9), so the head costs little.
Loss: CroCo's masked MSE + `egomotion_weight` x (rotation + translation losses, `egomotion.py`).
Logged: croco_loss and the egomotion numbers. Preview: CroCo's reconstruction.
Entry point: the `CroCoEgomotion` class (registered as "croco+egomotion").
"""

from __future__ import annotations

from slife.train.objectives.croco import CroCo
from slife.train.objectives.egomotion import EgomotionHead


class CroCoEgomotion(EgomotionHead, CroCo):
    name = "croco+egomotion"
    default_conf = {**CroCo.default_conf,
                    "egomotion_weight": 0.1,  # weight of the egomotion loss beside CroCo's
                    **EgomotionHead.head_conf}
    log_names = ("croco_loss",) + EgomotionHead.pose_log_names

    @classmethod
    def resolve_conf(cls, cfg) -> dict:
        return cls.resolve_head(super().resolve_conf(cfg), cfg.preset)

    def __init__(self, model_kwargs: dict, conf: dict, steps: int):
        super().__init__(model_kwargs, conf, steps)
        self.head = self.make_head(self.net.enc_embed_dim)

    def views(self, batch: dict, device) -> dict:
        return self.motion_views(super().views(batch, device), batch, device)

    def forward(self, views: dict, step: int):
        out, mask, target, tok = self.net(views["tgt"], views["src"], return_tokens=True)
        l_croco = self.criterion(out.float(), mask, target.float())
        R, t = self.head(tok["src"], tok["src_pos"], tok["tgt"], tok["tgt_pos"], tok["grid"])
        l_pose, logs = self.pose_step(R, t, views)
        return l_croco + self.conf["egomotion_weight"] * l_pose, {"croco_loss": l_croco.detach(), **logs}
