"""Optimiser and learning-rate schedule for CroCo pre-training (MAE/CroCo recipe).

Reads: a model's named parameters. Returns: an AdamW (betas 0.9/0.95) whose parameters are split into a
decayed group (weight matrices) and an undecayed one (1-D parameters: biases, norms; positional
embeddings; mask/cls tokens); `lr_at(step)` gives linear warmup then half-cosine decay to `min_lr`;
`clip_gradients` clips the global grad norm. The absolute rate follows the linear scaling rule
lr = blr * effective_batch / 256 (`scaled_lr`), and both numbers are recorded by the loop.
Entry points: `make_optimizer`, `lr_at`, `set_lr`, `clip_gradients`, `scaled_lr`.
Stepping, precision and checkpoints are `loop.py`'s job.
"""

from __future__ import annotations

import math

import torch

NO_DECAY_NAMES = ("pos_embed", "mask_token", "cls_token")


def no_weight_decay(name: str, p: torch.Tensor) -> bool:
    """True for parameters that should not be decayed: 1-D (biases, norms), positions, tokens."""
    leaf = name.rsplit(".", 1)[-1]
    return p.ndim <= 1 or leaf == "bias" or any(k in name for k in NO_DECAY_NAMES) or leaf.endswith("token")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """[decayed params, undecayed params] of the trainable parameters, in a stable order."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_weight_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.05,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW over `param_groups`; lr is overwritten every step by `set_lr`."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)


def scaled_lr(blr: float, effective_batch: int) -> float:
    """Linear scaling rule: absolute lr = blr * effective_batch / 256."""
    return blr * effective_batch / 256


def lr_at(step: int, lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate for optimisation step `step` (0-based): linear warmup, then cosine to `min_lr`."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def clip_gradients(params, max_norm: float | None) -> float:
    """Clip the global gradient norm to `max_norm` (None/0: only measure it); returns the norm before."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
