"""Plain ViT encoder (VisionTransformer) in timm's key layout, and its named sizes (VIT_PRESETS).

Reads: images (B, 3, H, W), ImageNet-normalised, H and W multiples of the patch size.
Returns: `forward_tokens(img, mask, mask_token) -> (cls (B, D), patches (B, N, D))` after the final norm;
`encode_image(img, layer=None) -> (B, N, D)` patch tokens (the encoder interface every slife encoder has:
CroCoNet's has the same signature); `grid(H, W) -> (rows, cols)`.
Entry point: `VisionTransformer(**vit_kwargs)`, `VIT_PRESETS[name]`.

The layout: the state_dict keys and shapes are exactly those of timm's
`timm.models.vision_transformer.VisionTransformer(img_size, patch_size, embed_dim=D, depth, num_heads,
mlp_ratio, qkv_bias=True, class_token=True, global_pool='token', num_classes=0)` (no LayerScale):
`cls_token` (1, 1, D), `pos_embed` (1, 1 + N, D) with the class token's position first,
`patch_embed.proj.{weight,bias}`, `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}`,
`norm.{weight,bias}`; LayerNorm eps 1e-6, exact GELU, pre-norm blocks, the same maths. DINOv2's released
backbones use the same names plus a `mask_token` (1, D) and LayerScale `ls1/ls2.gamma`; here the iBOT mask
token belongs to the objective (`objectives/dinov2.py`), so `model` loads with strict=True into timm's class
(`load_state_dict` of `timm.create_model('vit_base_patch16_224', num_classes=0)` for the `base` preset).
Other grids than the training one (local crops, evaluation sizes) interpolate the patch positions bicubically.
The blocks are CroCo's (`train/blocks.py`, whose parameter names match timm's), so training on CPU takes the
fused attention path.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from slife.train.blocks import Block, PatchEmbed, init_linears_and_norms, to_pair
from slife.train.pos_embed import interpolate_pos_embed

# Named sizes: constructor arguments only (they go into checkpoints as `vit_kwargs`).
VIT_PRESETS: dict[str, dict] = {
    # CPU scale, the encoder of CroCo's tiny preset: 64 px, 8 px patches (8x8 grid), 192 wide, 6 deep
    "tiny": dict(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4),
    # ViT-S/16
    "small": dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4),
    # ViT-B/16 (timm vit_base_patch16_224)
    "base": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4),
    # ViT-L/16 (timm vit_large_patch16_224)
    "large": dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4),
}


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned absolute positions, pre-norm blocks, final norm."""

    def __init__(self,
                 img_size=224,      # training image size, int or (H, W); other multiples of the patch work
                 patch_size=16,     # square patch side in pixels
                 embed_dim=768,     # token width D
                 depth=12,          # transformer blocks
                 num_heads=12,      # attention heads
                 mlp_ratio=4.0,     # MLP hidden width / D
                 ):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # timm's default
        self.embed_dim, self.enc_depth = embed_dim, depth  # enc_depth: CroCoNet's name, read by the probe

        # patches, class token, positions (class token's first)
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))  # (1, 1, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))  # (1, 1+N, D)

        # encoder
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(embed_dim)

        self.initialize_weights()

    def initialize_weights(self) -> None:
        """timm/DINOv2 init: truncated-normal (std 0.02) linears and positions, class token N(0, 1e-6),
        zero biases, unit norms; the patch projection xavier-uniform on the flattened patch (MAE, CroCo).
        Nothing to do on the meta device (argument checks), where torch's init functions import its compiler."""
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.patch_embed.init_weights()
        init_linears_and_norms(self, partial(nn.init.trunc_normal_, std=0.02))

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def grid(self, H: int, W: int) -> tuple[int, int]:
        return self.patch_embed.grid(H, W)

    def interpolate(self, img_size) -> "VisionTransformer":
        """Set the default image size to `img_size` (the learned positions are resized when used). Returns self."""
        pe = self.patch_embed
        rows, cols = pe.grid(*to_pair(img_size))
        pe.img_size, pe.grid_size, pe.num_patches = to_pair(img_size), (rows, cols), rows * cols
        return self

    def _patch_pos(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positions of the patches (N', D) on `grid`: the stored table, or its bicubic resize."""
        table = self.pos_embed[0, 1:]  # (N, D)
        rows = int(round(table.shape[0] ** 0.5))
        old = (rows, table.shape[0] // rows)  # the table is stored square (timm's convention)
        return interpolate_pos_embed(table, old, grid)

    def prepare_tokens(self, img: torch.Tensor, mask: torch.Tensor | None = None,
                       mask_token: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """img (B, 3, H, W) -> tokens (B, 1 + N, D) with positions added, class token first; patch positions
        (B, N, 2). With `mask` (B, N) bool True = masked, those patch embeddings become `mask_token` (1, D)
        before the positions are added (iBOT/DINOv2)."""
        x, pos = self.patch_embed(img)  # (B, N, D), (B, N, 2)
        if mask is not None:
            x = torch.where(mask[..., None], mask_token.to(x.dtype).view(1, 1, -1), x)  # (B, N, D)
        x = x + self._patch_pos(self.grid(img.shape[-2], img.shape[-1])).to(x.dtype)  # (B, N, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).to(x.dtype).expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1), pos

    def forward_tokens(self, img: torch.Tensor, mask: torch.Tensor | None = None,
                       mask_token: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """img (B, 3, H, W) -> class token (B, D) and patch tokens (B, N, D), after the final norm."""
        x, pos = self.prepare_tokens(img, mask, mask_token)  # (B, 1 + N, D)
        for blk in self.blocks:
            x = blk(x, pos)  # no RoPE: positions are unused by the blocks
        x = self.norm(x)
        return x[:, 0], x[:, 1:]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """The class token after the final norm (B, D): timm's `forward` with num_classes=0."""
        return self.forward_tokens(img)[0]

    def encode_image(self, img: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Patch tokens (B, N, D), class token dropped: after the final norm by default, or the output of block
        `layer` (0-based, negative counts from the end; the last block's output gets the norm), as CroCoNet's."""
        last = self.enc_depth - 1 if layer is None else range(self.enc_depth)[layer]
        x, pos = self.prepare_tokens(img)
        for blk in self.blocks[: last + 1]:
            x = blk(x, pos)
        if last == self.enc_depth - 1:
            x = self.norm(x)
        return x[:, 1:]
