"""DINOv2-style self-distillation on the life's frames: a ViT student and its EMA teacher.

Views: the frames of the pair shards. Each pair gives its two stored views as two frames, so a frame weighs as
many times as it appears in pairs (as source or target; an `augmented` pair's frame twice): frames that many
spatial/temporal pairs share are seen more often, as `--max-pairs` caps and the mining strategies decide.
Each frame gets DINO's multi-crop (`multicrop.MultiCrop`): 2 global crops at the model's size and
`local_crops` local ones at `local_size`, with flips, colour jitter, grayscale, blur and solarisation.
Models: student = ViT (`vit.VisionTransformer`, timm's layout) + `dino.DINOHead` (shared by the DINO and iBOT
losses, as DINOv2's default), an iBOT mask token (1, D); teacher = the same ViT + head, never trained by
gradients: after every optimiser step it moves to the student by an EMA whose momentum follows a cosine from
`momentum_teacher` to 1 over the run (`after_step`).
Loss: `dino_weight` x DINO on the class token (the teacher sees the 2 global crops, the student all crops;
targets by Sinkhorn-Knopp, or a centred softmax with `centering: "centering"`, at the teacher temperature,
warmed up linearly from `warmup_teacher_temp` to `teacher_temp` over `teacher_temp_warmup` of the steps; the
student at `student_temp`) + `ibot_weight` x iBOT on the patch tokens the student saw masked (a share
`mask_probability` of the global crops, ratios spread evenly over `mask_ratio`, random patches; DINOv2 masks
blocks) + `koleo_weight` x KoLeo on the student's class tokens of each global crop.
Logged: dino_loss, ibot_loss, koleo_loss, teacher_entropy (mean entropy of the class-token targets, nats: it
drops towards 0 if the teacher collapses to one prototype; log K is uniform), teacher_temp, momentum.
Exported `model`: the teacher's backbone (DINOv2 evaluates the teacher), `vit_kwargs`; the student, heads,
mask token and centres are `objective_state`. Not done here (DINOv2 does them): freezing the last layer in the
first epoch, the weight-decay schedule, stochastic depth, LayerScale, register tokens.
Preview: per frame its global and local crops and a PCA of the teacher's patch tokens as RGB.
Entry point: the `DINOv2` class (registered as "dinov2").
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn as nn

from slife.errors import SlifeError
from slife.train.dino import (DINOHead, centered_softmax, dino_loss, ibot_loss, koleo_loss, sinkhorn_knopp,
                              update_center)
from slife.train.objectives.base import Objective
from slife.train.vit import VIT_PRESETS, VisionTransformer

# head sizes when the conf leaves them at None: (hidden, bottleneck, prototypes); DINO/DINOv2's beyond tiny
HEAD_SIZES = {"tiny": (256, 64, 1024)}
DEFAULT_HEAD = (2048, 256, 65536)


class DINOv2(Objective):
    name = "dinov2"
    kind = "vit"
    presets = VIT_PRESETS
    export = "teacher.backbone"
    default_conf = {
        "local_crops": 6,  # local crops per frame (DINOv2: 8)
        "local_size": None,  # local crop side in px; None = img_size * 96/224 rounded to whole patches
        "global_scale": (0.32, 1.0),  # share of the frame's area a global crop covers
        "local_scale": (0.05, 0.32),  # share of the frame's area a local crop covers
        "prototypes": None,  # K, the head's output size; None = 1024 (tiny) or 65536
        "head_hidden": None,  # head MLP width; None = 256 (tiny) or 2048
        "head_bottleneck": None,  # head bottleneck width; None = 64 (tiny) or 256
        "centering": "sinkhorn",  # teacher targets: sinkhorn (Sinkhorn-Knopp, DINOv2) or centering (DINO)
        "student_temp": 0.1,  # student softmax temperature
        "teacher_temp": 0.07,  # teacher temperature after the warmup
        "warmup_teacher_temp": 0.04,  # teacher temperature at step 0
        "teacher_temp_warmup": 0.3,  # share of the steps over which the teacher temperature rises linearly
        "momentum_teacher": 0.992,  # EMA momentum at step 0; rises to 1 by a cosine over the run
        "center_momentum": 0.9,  # EMA momentum of the centres (centering only)
        "dino_weight": 1.0,  # weight of the class-token loss
        "ibot_weight": 1.0,  # weight of the masked-patch loss
        "koleo_weight": 0.1,  # weight of the KoLeo regulariser
        "mask_ratio": (0.1, 0.5),  # share of patches masked in a masked global crop (spread evenly)
        "mask_probability": 0.5,  # share of global crops that are masked for the student
    }
    log_names = ("dino_loss", "ibot_loss", "koleo_loss", "teacher_entropy", "teacher_temp", "momentum")
    betas = (0.9, 0.999)

    @classmethod
    def recipe(cls, preset: str) -> dict:
        """DINO's optimiser (lr 5e-4 x batch/256, wd 0.04, clip 3, betas 0.9/0.999) and hue jitter 0.1; on the
        CPU-scale tiny preset lr 5e-4 at batch 32 (blr 4e-3), as CroCo's tiny recipe raises its lr."""
        common = dict(weight_decay=0.04, clip_grad=3.0, hue=0.1)
        return {**common, "blr": 4e-3} if preset == "tiny" else {**common, "blr": 5e-4}

    @classmethod
    def resolve_conf(cls, cfg) -> dict:
        conf = super().resolve_conf(cfg)
        hidden, bottleneck, k = HEAD_SIZES.get(cfg.preset, DEFAULT_HEAD)
        for key, v in (("head_hidden", hidden), ("head_bottleneck", bottleneck), ("prototypes", k)):
            conf[key] = int(v if conf[key] is None else conf[key])
        for key in ("global_scale", "local_scale", "mask_ratio"):
            conf[key] = tuple(float(x) for x in conf[key])
            if len(conf[key]) != 2 or not 0 < conf[key][0] <= conf[key][1] <= 1:
                raise SlifeError(f"--objective-conf: {key} must be [LO, HI] with 0 < LO <= HI <= 1, got {conf[key]}")
        if conf["centering"] not in ("sinkhorn", "centering"):
            raise SlifeError(f"--objective-conf: centering must be sinkhorn or centering, got {conf['centering']!r}")
        if min(conf["student_temp"], conf["teacher_temp"], conf["warmup_teacher_temp"]) <= 0:
            raise SlifeError("--objective-conf: temperatures must be > 0")
        if not 0 <= conf["momentum_teacher"] <= 1 or not 0 <= conf["center_momentum"] <= 1:
            raise SlifeError("--objective-conf: momentum_teacher and center_momentum must be in [0, 1]")
        if int(conf["local_crops"]) < 0 or min(conf["head_hidden"], conf["head_bottleneck"], conf["prototypes"]) < 1:
            raise SlifeError("--objective-conf: local_crops must be >= 0 and head sizes >= 1")
        if not 0 < conf["mask_probability"] <= 1 or not 0 <= conf["teacher_temp_warmup"] <= 1:
            raise SlifeError("--objective-conf: mask_probability must be in (0, 1], teacher_temp_warmup in [0, 1]")
        kw = cls.resolve_model_kwargs(cfg)
        p, S = int(kw.get("patch_size", 16)), int(kw.get("img_size", 224))
        if conf["local_size"] is None:
            conf["local_size"] = max(1, round(S * 96 / 224 / p)) * p
        if int(conf["local_size"]) % p or int(conf["local_size"]) < p:
            raise SlifeError(f"--objective-conf: local_size {conf['local_size']} is not a multiple of the patch size {p}")
        conf["local_size"] = int(conf["local_size"])
        return conf

    def __init__(self, model_kwargs: dict, conf: dict, steps: int):
        super().__init__(model_kwargs, conf, steps)
        c = self.conf
        # student: backbone + head, and the iBOT mask token
        backbone = VisionTransformer(**model_kwargs)
        D = backbone.embed_dim
        self.student = nn.ModuleDict({"backbone": backbone, "head": DINOHead(D, c["prototypes"], c["head_hidden"],
                                                                             c["head_bottleneck"])})
        self.mask_token = nn.Parameter(torch.zeros(1, D))  # (1, D)
        # teacher: a copy, moved only by the EMA
        self.teacher = copy.deepcopy(self.student)
        for q in self.teacher.parameters():
            q.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, c["prototypes"]))  # (1, K) class-token centre (centering)
        self.register_buffer("center_patch", torch.zeros(1, c["prototypes"]))  # (1, K) patch centre (centering)

    # ---------------------------------------------------------------------------------------------- schedules
    def momentum(self, step: int) -> float:
        """EMA momentum after step `step`: cosine from momentum_teacher to 1."""
        m0 = float(self.conf["momentum_teacher"])
        return 1 - (1 - m0) * (math.cos(math.pi * step / max(1, self.total_steps)) + 1) / 2

    def teacher_temp(self, step: int) -> float:
        c = self.conf
        warm = int(c["teacher_temp_warmup"] * self.total_steps)
        if step >= warm:
            return float(c["teacher_temp"])
        return c["warmup_teacher_temp"] + (c["teacher_temp"] - c["warmup_teacher_temp"]) * step / warm

    # ---------------------------------------------------------------------------------------------- a step
    def augment(self, cfg):
        from slife.train.multicrop import MultiCrop

        c = self.conf
        return MultiCrop(self.img_size, int(c["local_size"]), int(c["local_crops"]), c["global_scale"],
                         c["local_scale"], jitter=cfg.color_jitter, hue=cfg.hue)

    def views(self, batch: dict, device) -> dict:
        """{"global": (2F, 3, S, S), "local": (L*F, 3, s, s)} crop-major, for F = 2 x pairs frames."""
        from slife.train.augment import to_model_input

        return {"global": to_model_input(batch["global"], batch["global_color"], device),
                "local": to_model_input(batch["local"], batch["local_color"], device)}

    def draw_masks(self, n: int, num_patches: int) -> torch.Tensor:
        """(n, N) bool, True = masked for the student: round(mask_probability n) (at least one) of the n global
        crops, with masked shares spread evenly over mask_ratio, random patches (torch's global generator)."""
        lo, hi = self.conf["mask_ratio"]
        k = max(1, int(round(self.conf["mask_probability"] * n)))
        counts = (torch.linspace(lo, hi, k) * num_patches).round().clamp(1, num_patches).long()  # (k,)
        which = torch.randperm(n)[:k]  # (k,)
        rank = torch.rand(k, num_patches).argsort(dim=1).argsort(dim=1)  # (k, N) a random order of the patches
        masks = torch.zeros(n, num_patches, dtype=torch.bool)
        masks[which] = rank < counts[:, None]
        return masks

    def targets(self, scores: torch.Tensor, temp: float, center: torch.Tensor) -> torch.Tensor:
        """Teacher scores (n, K) -> target distributions (n, K) (Sinkhorn-Knopp, or centred softmax + centre update)."""
        if self.conf["centering"] == "sinkhorn":
            return sinkhorn_knopp(scores, temp)
        q = centered_softmax(scores, center, temp)
        update_center(center, scores, float(self.conf["center_momentum"]))
        return q

    def forward(self, views: dict, step: int):
        g, loc = views["global"], views["local"]  # (2F, 3, S, S), (L*F, 3, s, s)
        F2 = g.shape[0]
        N = math.prod(self.student["backbone"].grid(g.shape[-2], g.shape[-1]))
        masks = self.draw_masks(F2, N).to(g.device)  # (2F, N)
        temp, c = self.teacher_temp(step), self.conf

        with torch.no_grad():  # teacher: global crops, nothing masked
            t_cls, t_patch = self.teacher["backbone"].forward_tokens(g)  # (2F, D), (2F, N, D)
            t_scores = self.teacher["head"](torch.cat([t_cls, t_patch[masks]])).float()  # (2F + M, K)
            q_cls = self.targets(t_scores[:F2], temp, self.center)  # (2F, K)
            q_patch = self.targets(t_scores[F2:], temp, self.center_patch)  # (M, K)

        # student: masked global crops, local crops; one head pass over every token it scores
        s_cls, s_patch = self.student["backbone"].forward_tokens(g, masks, self.mask_token)  # (2F, D), (2F, N, D)
        s_cls_local = (self.student["backbone"].forward_tokens(loc)[0] if len(loc)
                       else s_cls.new_zeros(0, s_cls.shape[-1]))  # (L*F, D)
        s_scores = self.student["head"](torch.cat([s_cls, s_cls_local, s_patch[masks]]))  # (2F + L*F + M, K)
        n_cls = F2 + len(s_cls_local)
        student_crops = list(s_scores[:n_cls].chunk(n_cls * 2 // F2)) if n_cls else []  # per crop (F, K)
        l_dino = dino_loss(student_crops, list(q_cls.chunk(2)), c["student_temp"])
        l_ibot = ibot_loss(s_scores[n_cls:], q_patch, masks, c["student_temp"])
        l_koleo = sum(koleo_loss(x) for x in s_cls.chunk(2)) / 2
        loss = c["dino_weight"] * l_dino + c["ibot_weight"] * l_ibot + c["koleo_weight"] * l_koleo
        entropy = -(q_cls * q_cls.clamp_min(1e-12).log()).sum(-1).mean()
        logs = {"dino_loss": l_dino.detach(), "ibot_loss": l_ibot.detach(), "koleo_loss": l_koleo.detach(),
                "teacher_entropy": entropy, "teacher_temp": torch.tensor(temp), "momentum": torch.tensor(self.momentum(step))}
        return loss, logs

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """teacher <- m teacher + (1 - m) student, m = `momentum(step)`."""
        m = self.momentum(step)
        t = [p for p in self.teacher.parameters()]
        s = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(t, m)
        torch._foreach_add_(t, s, alpha=1 - m)

    # ---------------------------------------------------------------------------------------------- files
    def init_from_weights(self, sd: dict, path) -> None:
        """A released ViT (timm's layout) starts both the student's and the teacher's backbone."""
        super().init_from_weights(sd, path)
        self.student["backbone"].load_state_dict(self.teacher["backbone"].state_dict())

    @torch.no_grad()
    def preview(self, views: dict, path: Path) -> Path:
        """Per frame (up to 4): global crops, up to 4 local crops, the teacher's patch tokens of global crop 0
        projected on their first 3 principal components (over the frames shown) as RGB."""
        from slife.train.augment import denormalize
        from slife.train.preview import write_grid

        g, loc = views["global"].float(), views["local"].float()
        F = g.shape[0] // 2
        n = min(4, F)
        bb = self.teacher["backbone"]
        rows_, cols_ = bb.grid(g.shape[-2], g.shape[-1])
        tok = bb.forward_tokens(g[:n])[1].float()  # (n, N, D)
        flat = tok.reshape(-1, tok.shape[-1])
        flat = flat - flat.mean(0)
        _, _, v = torch.linalg.svd(flat, full_matrices=False)  # rows of v: principal directions
        pc = (flat @ v[:3].t()).reshape(n, rows_, cols_, 3)  # (n, h, w, 3)
        pc = (pc - pc.amin((0, 1, 2))) / (pc.amax((0, 1, 2)) - pc.amin((0, 1, 2))).clamp_min(1e-6)
        pc = torch.nn.functional.interpolate(pc.permute(0, 3, 1, 2), size=g.shape[-2:], mode="nearest")  # (n, 3, S, S)
        L = loc.shape[0] // F if F else 0
        rows = []
        for f in range(n):
            tiles = [denormalize(g[c * F + f:c * F + f + 1])[0] for c in range(2)]
            tiles += [denormalize(loc[c * F + f:c * F + f + 1])[0] for c in range(min(L, 4))]
            rows.append(tiles + [pc[f]])
        return write_grid(rows, path)
