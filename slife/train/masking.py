"""Random patch masking for cross-view completion.

Reads: a batch size B and a patch count N. Returns: a (B, N) bool mask, True = masked (hidden from the
encoder, to be predicted), False = visible. Every image gets exactly int(mask_ratio * N) masked patches.
Entry point: `RandomMask(mask_ratio)(B, N, device)`. Leaves to `train/model.py` the gathering of the
visible tokens (`visible_index`) and to `train/loss.py` the use of the mask in the loss.

Same random draw as naver/croco's RandomMask (uniform noise, argsort, first int(ratio N) entries of the
permutation), so the same seed gives the same mask in both implementations.
"""

from __future__ import annotations

import torch


class RandomMask(torch.nn.Module):
    """Callable mask generator (an nn.Module without state, swappable like the reference's)."""

    def __init__(self, mask_ratio: float):
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        self.mask_ratio = float(mask_ratio)

    def num_masked(self, num_patches: int) -> int:
        return int(self.mask_ratio * num_patches)

    def forward(self, batch: int, num_patches: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.rand(batch, num_patches, device=device, generator=generator)  # (B, N) uniform
        perm = noise.argsort(dim=1)  # (B, N) a random permutation of 0..N-1 per image
        return perm < self.num_masked(num_patches)  # (B, N) bool, True = masked

    def extra_repr(self) -> str:
        return f"mask_ratio={self.mask_ratio}"


def visible_index(mask: torch.Tensor, n_visible: int | None = None) -> torch.Tensor:
    """(B, N) bool mask with the same count per row -> (B, N_vis) long indices of visible patches, ascending.

    `n_visible` (when the caller knows it, e.g. from `RandomMask.num_masked`) keeps the shapes static, so the
    model compiles (`torch.compile`) without data-dependent sizes; otherwise it is counted and checked.
    """
    B, N = mask.shape
    if n_visible is None:
        counts = (~mask).sum(dim=1)  # (B,)
        if bool((counts != counts[0]).any()):
            raise ValueError("every image of a batch must have the same number of visible patches")
        n_visible = int(counts[0])
    # a stable sort of the 0/1 mask puts the visible patches first, in ascending order
    return torch.argsort(mask.to(torch.uint8), dim=1, stable=True)[:, :n_visible]  # (B, N_vis)
