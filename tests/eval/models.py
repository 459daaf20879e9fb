"""Tiny seeded CroCoNets and their checkpoints for evaluation tests."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(img_size=32, patch_size=8, mask_ratio=0.9, enc_embed_dim=48, enc_depth=2, enc_num_heads=3,
            dec_embed_dim=32, dec_depth=2, dec_num_heads=2, mlp_ratio=2, norm_im2_in_dec=True, pos_embed="RoPE100")


def tiny_model(seed: int = 0, **over):
    from slife.train.model import CroCoNet

    torch.manual_seed(seed)
    return CroCoNet(**{**TINY, **over}).eval()


def tiny_checkpoint(path: Path, seed: int = 0, **over) -> Path:
    from slife.train.checkpoint import save_checkpoint

    kw = {**TINY, **over}
    m = tiny_model(seed, **over)
    save_checkpoint(path, {"model": m.state_dict(), "croco_kwargs": kw, "step": 0, "epoch": 0})
    return Path(path)


TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, mlp_ratio=2)
# small heads for every objective (only the exported encoder is evaluated)
OBJECTIVE_CONF = {"croco": {}, "croco+egomotion": dict(head_dim=16, head_depth=1, head_heads=2),
                  "dinov2": dict(local_crops=0, prototypes=16, head_hidden=16, head_bottleneck=8),
                  "egomotion": dict(head_dim=16, head_depth=1, head_heads=2)}


def objective_checkpoint(path: Path, objective: str, seed: int = 0) -> Path:
    """A checkpoint as `slife train --objective OBJECTIVE` writes it (what the objective saves; no optimiser
    state), of a tiny seeded model."""
    from slife.train import TrainConfig
    from slife.train.checkpoint import save_checkpoint
    from slife.train.objectives import objective_class

    torch.manual_seed(seed)
    kw = TINY if objective.startswith("croco") else TINY_VIT
    cfg = TrainConfig(objective=objective, model_kwargs=kw, objective_conf=OBJECTIVE_CONF[objective])
    save_checkpoint(path, {**objective_class(objective).build(cfg).checkpoint_state(), "step": 0, "epoch": 0})
    return Path(path)
