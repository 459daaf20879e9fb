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
