"""Cross-view completion loss: mean squared error on the masked patches.

Reads: predictions (B, N, p*p*3), mask (B, N) bool True = masked, target patches (B, N, p*p*3) from
`CroCoNet.forward`. Returns: a scalar float32 loss. Entry point: `MaskedMSE(norm_pix_loss=True)`.
With `norm_pix_loss`, each target patch is normalised by its own mean and (unbiased) variance, as MAE and
CroCo do. Leaves everything else (optimiser, schedule) to the trainer.
"""

from __future__ import annotations

import torch


class MaskedMSE(torch.nn.Module):
    """MSE per patch, averaged over masked patches (or over all patches with masked=False)."""

    def __init__(self, norm_pix_loss: bool = True, masked: bool = True, eps: float = 1e-6):
        super().__init__()
        self.norm_pix_loss = norm_pix_loss  # normalise each target patch to zero mean, unit variance
        self.masked = masked  # average over masked patches only
        self.eps = eps  # added to the per-patch variance

    def forward(self, pred: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)  # (B, N, 1)
            var = target.var(dim=-1, keepdim=True)  # (B, N, 1)
            target = (target - mean) / (var + self.eps).sqrt()
        per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, N)
        if not self.masked:
            return per_patch.mean()
        m = mask.to(per_patch.dtype)  # (B, N)
        return (per_patch * m).sum() / m.sum()
