"""Egomotion: learn to see by moving. A ViT encodes both views of a posed pair; a small head predicts the
relative camera motion between them (rotation and translation direction).

Views: a pair's two crops cut at the same window (`augment.PairAugment` with `same_crop`: independent crops
would add image motion the labels do not have) and its motion labels from the shards' poses
(`pose.pair_motion`: camera b = target in camera a = source's frame). Pairs without both poses, and
`augmented` pairs (one frame under 2D transforms), do not count in the loss; a shard set whose first pairs
carry no poses is refused at the start (`check_poses`).
Models: the encoder `vit.VisionTransformer` (timm's layout; exported as `model` with `vit_kwargs`), and
`pose.PoseHead` on the patch tokens of both views (`objective_state`).
Loss: `rotation_weight` x chordal rotation loss + `translation_weight` x (1 - cos) of the direction.
Logged: rotation and translation losses, mean angular errors (degrees) and the share of posed pairs.
Preview: per pair source | target | true and predicted rotation angle and translation direction.
Entry point: the `Egomotion` class (registered as "egomotion").
"""

from __future__ import annotations

from pathlib import Path

import torch

from slife.errors import SlifeError
from slife.train.objectives.base import Objective
from slife.train.pose import PoseHead, pair_motion, pose_losses, rotation_angle_deg
from slife.train.vit import VIT_PRESETS, VisionTransformer

HEAD_DEFAULTS = {"tiny": 128}  # head width when head_dim is None; 256 beyond tiny


def check_poses(shards, probe: int = 64) -> None:
    """SlifeError unless some of the first `probe` pairs of the shard set carry both poses (T_a, T_b)."""
    from itertools import islice

    from slife.train.stream import CountingHandler, well_formed
    from slife.train.tario import tar_samples

    handler = CountingHandler()
    samples = well_formed(tar_samples(({"url": u} for u in shards.paths), handler), handler)
    seen = 0
    for s in islice(samples, probe):
        seen += 1
        if pair_motion([s["json"]])["valid_R"].any():
            return
    raise SlifeError(f"{shards.spec}: none of the first {seen} pairs has both camera poses (T_a, T_b) and real "
                     "camera motion; the egomotion objectives need posed pairs (mine a life with poses)")


class EgomotionHead:
    """What the egomotion objectives share: the head's settings and the pose part of a step."""

    head_conf = {
        "head_dim": None,  # pose head width; None = 128 (tiny) or 256
        "head_depth": 2,  # transformer blocks of the pose head
        "head_heads": 4,  # attention heads of the pose head
        "rotation_weight": 1.0,  # weight of the chordal rotation loss
        "translation_weight": 1.0,  # weight of the translation-direction loss
    }
    pose_log_names = ("rotation_loss", "translation_loss", "rot_err_deg", "trans_err_deg", "posed_share")

    @staticmethod
    def resolve_head(conf: dict, preset: str) -> dict:
        if conf["head_dim"] is None:
            conf["head_dim"] = HEAD_DEFAULTS.get(preset, 256)
        conf["head_dim"], conf["head_depth"], conf["head_heads"] = (int(conf[k]) for k in
                                                                    ("head_dim", "head_depth", "head_heads"))
        if conf["head_dim"] % conf["head_heads"] or conf["head_dim"] % 4 or conf["head_depth"] < 0:
            raise SlifeError(f"--objective-conf: head_dim ({conf['head_dim']}) must be divisible by 4 and by "
                             f"head_heads ({conf['head_heads']}); head_depth >= 0")
        return conf

    @classmethod
    def check_shards(cls, shards) -> None:
        check_poses(shards)

    def make_head(self, in_dim: int) -> PoseHead:
        c = self.conf
        return PoseHead(in_dim, c["head_dim"], c["head_depth"], c["head_heads"])

    def pose_step(self, R, t, views) -> tuple[torch.Tensor, dict]:
        """Weighted pose loss and its logs from predictions R (B, 3, 3), t (B, 3)."""
        pl = pose_losses(R, t, views["motion"])
        loss = self.conf["rotation_weight"] * pl["rotation"] + self.conf["translation_weight"] * pl["translation"]
        logs = {"rotation_loss": pl["rotation"].detach(), "translation_loss": pl["translation"].detach(),
                "rot_err_deg": pl["rot_err_deg"], "trans_err_deg": pl["trans_err_deg"], "posed_share": pl["posed"]}
        return loss, logs

    def augment(self, cfg):
        """The pair crops with both views cut at the same window (`PairAugment.same_crop`)."""
        import dataclasses

        return dataclasses.replace(super().augment(cfg), same_crop=True)

    @staticmethod
    def motion_views(views: dict, batch: dict, device) -> dict:
        views["motion"] = {k: v.to(device) for k, v in pair_motion(batch["meta"]).items()}
        return views

    @torch.no_grad()
    def pose_preview(self, views: dict, R, t, path: Path) -> Path:
        """Per pair (up to 4): source | target | true vs predicted rotation angle and direction error."""
        from slife.train.augment import denormalize
        from slife.train.preview import text_tile, write_grid

        m = views["motion"]
        S = views["src"].shape[-1]
        rows = []
        for i in range(min(4, len(R))):
            if bool(m["valid_R"][i]):
                ang = float(rotation_angle_deg(torch.eye(3, device=R.device), m["R"][i]))
                err = float(rotation_angle_deg(R[i], m["R"][i]))
                lines = [f"rot {ang:.1f}", f"err {err:.1f}"]
                if bool(m["valid_t"][i]):
                    cos = float((t[i] * m["t"][i]).sum().clamp(-1, 1))
                    lines.append(f"t err {float(torch.rad2deg(torch.arccos(torch.tensor(cos)))):.0f}")
            else:
                lines = ["no pose"]
            rows.append([denormalize(views["src"][i:i + 1].float())[0], denormalize(views["tgt"][i:i + 1].float())[0],
                         text_tile(lines, S, max(S, 64))])
        return write_grid(rows, path)


class Egomotion(EgomotionHead, Objective):
    name = "egomotion"
    kind = "vit"
    presets = VIT_PRESETS
    export = "encoder"
    default_conf = dict(EgomotionHead.head_conf)
    log_names = EgomotionHead.pose_log_names

    @classmethod
    def resolve_conf(cls, cfg) -> dict:
        return cls.resolve_head(super().resolve_conf(cfg), cfg.preset)

    def __init__(self, model_kwargs: dict, conf: dict, steps: int):
        super().__init__(model_kwargs, conf, steps)
        self.encoder = VisionTransformer(**model_kwargs)
        self.head = self.make_head(self.encoder.embed_dim)

    def views(self, batch: dict, device) -> dict:
        return self.motion_views(super().views(batch, device), batch, device)

    def _predict(self, views: dict):
        src, tgt = views["src"], views["tgt"]
        B = src.shape[0]
        _, tok = self.encoder.forward_tokens(torch.cat([src, tgt]))  # (2B, N, D): both views in one pass
        grid = self.encoder.grid(src.shape[-2], src.shape[-1])
        pos = self.encoder.patch_embed.positions(*grid, tok.device).expand(B, -1, -1)  # (B, N, 2)
        return self.head(tok[:B], pos, tok[B:], pos, grid)

    def forward(self, views: dict, step: int):
        R, t = self._predict(views)
        return self.pose_step(R, t, views)

    @torch.no_grad()
    def preview(self, views: dict, path: Path) -> Path:
        R, t = self._predict(views)
        return self.pose_preview(views, R, t, path)
