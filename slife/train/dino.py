"""DINOv2's projection head and losses: DINO (class token), iBOT (masked patches), KoLeo; teacher targets.

Reads: head outputs ("prototype scores") of student and teacher, (n, K) float; class tokens (n, D).
Returns: scalar float32 losses; teacher target distributions (n, K).
- `DINOHead`: MLP (in -> hidden -> hidden -> bottleneck, GELU), L2 normalisation, then K prototypes with
  unit-norm rows (weight normalisation with its gain fixed at 1, as DINO/DINOv2's last layer): scores are
  cosine similarities in [-1, 1].
- Teacher targets: `sinkhorn_knopp` (DINOv2's default: 3 iterations of alternating normalisation so that
  prototypes are used equally over the batch, summed over all processes) or `centered_softmax` (DINO:
  softmax((t - centre) / temperature), the centre an EMA of the batch means, `update_center`).
- `dino_loss`: cross-entropy between each teacher global crop's target and the student's softmax(s / T_s) of
  every other crop (never a crop with itself), averaged over crop pairs and images.
- `ibot_loss`: the same per masked patch, averaged over each image's masked patches, then over masked images.
- `koleo_loss`: Kozachenko-Leonenko entropy estimator on L2-normalised class tokens: -mean log of the distance
  to the nearest other token of the batch (spreads the features out).
Entry points: the functions above. What is distilled, schedules and EMA are `objectives/dinov2.py`'s.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from slife.train.blocks import init_linears_and_norms


def _all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes in place (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


class DINOHead(nn.Module):
    """MLP projection + L2-normalised bottleneck + unit-norm prototypes (see the module docstring)."""

    def __init__(self, in_dim: int, prototypes: int = 65536, hidden: int = 2048, bottleneck: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.Linear(bottleneck, prototypes, bias=False)  # rows normalised in forward
        init_linears_and_norms(self, partial(nn.init.trunc_normal_, std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in_dim) -> (n, prototypes) cosine scores."""
        z = F.normalize(self.mlp(x), dim=-1, eps=1e-6)  # (n, bottleneck)
        return F.linear(z, F.normalize(self.last_layer.weight, dim=-1, eps=1e-6))  # (n, K)


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, temperature: float, iterations: int = 3) -> torch.Tensor:
    """Teacher scores (n, K) -> targets (n, K), rows summing to 1, prototypes used equally over the batch of all
    processes (DINOv2's SinkhornKnopp centering)."""
    q = torch.exp(scores.float() / temperature).t()  # (K, n); cosine scores <= 1: at most e^(1/T)
    n = _all_sum(torch.tensor(float(q.shape[1]), device=q.device))
    K = q.shape[0]
    q /= _all_sum(q.sum())
    for _ in range(iterations):
        q /= _all_sum(q.sum(dim=1, keepdim=True))  # each prototype: total mass 1 ...
        q /= K  # ... 1/K
        q /= q.sum(dim=0, keepdim=True)  # each sample: total mass 1 ...
        q /= n  # ... 1/n
    return (q * n).t()  # (n, K) rows sum to 1


@torch.no_grad()
def centered_softmax(scores: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """DINO's teacher targets: softmax((scores - center) / temperature), (n, K)."""
    return F.softmax((scores.float() - center) / temperature, dim=-1)


@torch.no_grad()
def update_center(center: torch.Tensor, scores: torch.Tensor, momentum: float) -> None:
    """center (1, K) <- momentum * center + (1 - momentum) * mean of `scores` (n, K) over all processes."""
    total = _all_sum(torch.cat([scores.float().sum(0), torch.tensor([float(len(scores))], device=scores.device)]))
    center.mul_(momentum).add_(total[:-1] / total[-1].clamp_min(1), alpha=1 - momentum)


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], student_temp: float) -> torch.Tensor:
    """student: per crop (n, K) scores (the first len(teacher) crops are the teacher's crops, in order);
    teacher: per global crop (n, K) targets -> mean cross-entropy over (teacher, other student crop) pairs."""
    logp = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    total, terms = 0.0, 0
    for it, q in enumerate(teacher):
        for iv, lp in enumerate(logp):
            if iv == it:
                continue
            total = total + (-(q * lp).sum(dim=-1)).mean()
            terms += 1
    return total / max(terms, 1)


def ibot_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, student_temp: float) -> torch.Tensor:
    """student (M, K) scores and teacher (M, K) targets of the M masked patches of `mask` (n, N) bool (in
    mask.nonzero() order) -> cross-entropy averaged per image over its masked patches, then over masked images."""
    ce = -(teacher * F.log_softmax(student.float() / student_temp, dim=-1)).sum(dim=-1)  # (M,)
    per_image = mask.sum(dim=1)  # (n,)
    weight = (1.0 / per_image.clamp_min(1).float()).repeat_interleave(per_image)  # (M,) 1 / masked count of its image
    return (ce * weight).sum() / (per_image > 0).sum().clamp_min(1)


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x (n, D) -> -mean log distance of each L2-normalised row to its nearest other row."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        sim = x @ x.t()  # (n, n)
        sim.fill_diagonal_(-2.0)  # never itself
        nn_idx = sim.argmax(dim=1)  # (n,)
    d = (x - x[nn_idx]).norm(dim=-1)  # (n,) differentiable in x
    return -torch.log(d + eps).mean()
