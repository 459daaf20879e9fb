"""CroCo cross-view completion network (CroCoNet) and its named sizes (CROCO_PRESETS).

Reads: image pairs (B, 3, H, W), ImageNet-normalised; img1 is the TARGET view (masked), img2 the SOURCE
(reference) view. H, W must be multiples of the patch size (the training size `img_size` by default).
Returns: `model(img1, img2) -> (out (B, N, p*p*3), mask (B, N) bool True = masked, target (B, N, p*p*3))`;
`encode_image(img, layer=None) -> (B, N, D)`; `cross_attention_logits(img_tgt, img_src, mask=None) -> [(B, heads,
N_tgt, N_src)] * dec_depth`.
Entry point: `CroCoNet(**croco_kwargs)`, `CROCO_PRESETS[name]`.
Written from scratch after naver/croco `models/croco.py` (CroCo, CroCo v2): same constructor arguments,
same state_dict key names and shapes, same maths, so released checkpoints load and give the same outputs.
Leaves blocks to `train/blocks.py`, masking to `train/masking.py`, position maths to `train/pos_embed.py`,
the loss to `train/loss.py` and checkpoint files to `train/checkpoint.py`.
"""

from __future__ import annotations

import logging
from functools import partial

import torch
import torch.nn as nn

from slife.train.blocks import Block, DecoderBlock, PatchEmbed, init_linears_and_norms, to_pair, patchify, unpatchify
from slife.train.masking import RandomMask, visible_index
from slife.train.pos_embed import RoPE2D, sincos_2d

log = logging.getLogger(__name__)

# Named sizes: constructor arguments only (they go into checkpoints as `croco_kwargs`).
CROCO_PRESETS: dict[str, dict] = {
    # CPU-sized model of DESIGN.md: 64x64 images, 8 px patches (8x8 grid), ~3.5 M parameters
    "tiny": dict(img_size=64, patch_size=8, mask_ratio=0.9, enc_embed_dim=192, enc_depth=6, enc_num_heads=3,
                 dec_embed_dim=128, dec_depth=4, dec_num_heads=4, mlp_ratio=4, norm_im2_in_dec=True,
                 pos_embed="RoPE100"),
    # ViT-S/16 encoder with a narrow decoder
    "small": dict(img_size=224, patch_size=16, mask_ratio=0.9, enc_embed_dim=384, enc_depth=12, enc_num_heads=6,
                  dec_embed_dim=256, dec_depth=8, dec_num_heads=8, mlp_ratio=4, norm_im2_in_dec=True,
                  pos_embed="RoPE100"),
    # = CroCo v2 ViTBase_SmallDecoder
    "base": dict(img_size=224, patch_size=16, mask_ratio=0.9, enc_embed_dim=768, enc_depth=12, enc_num_heads=12,
                 dec_embed_dim=512, dec_depth=8, dec_num_heads=16, mlp_ratio=4, norm_im2_in_dec=True,
                 pos_embed="RoPE100"),
    # = CroCo v2 ViTBase_BaseDecoder
    "base-base": dict(img_size=224, patch_size=16, mask_ratio=0.9, enc_embed_dim=768, enc_depth=12,
                      enc_num_heads=12, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, mlp_ratio=4,
                      norm_im2_in_dec=True, pos_embed="RoPE100"),
    # = CroCo v2 ViTLarge_BaseDecoder
    "large": dict(img_size=224, patch_size=16, mask_ratio=0.9, enc_embed_dim=1024, enc_depth=24,
                  enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, mlp_ratio=4,
                  norm_im2_in_dec=True, pos_embed="RoPE100"),
}


class CroCoNet(nn.Module):
    """Siamese ViT encoder + cross-attention decoder predicting the masked patches of img1 from img2."""

    def __init__(self,
                 img_size=224,            # training image size, int or (H, W); other multiples of the patch work
                 patch_size=16,           # square patch side in pixels
                 mask_ratio=0.9,          # share of img1's patches hidden from the encoder
                 enc_embed_dim=768,       # encoder width
                 enc_depth=12,            # encoder blocks
                 enc_num_heads=12,        # encoder attention heads
                 dec_embed_dim=512,       # decoder width
                 dec_depth=8,             # decoder blocks
                 dec_num_heads=16,        # decoder attention heads
                 mlp_ratio=4,             # MLP hidden width / block width
                 norm_layer=None,         # norm constructor; default LayerNorm(eps=1e-6) as the reference
                 norm_im2_in_dec=True,    # LayerNorm (norm_y) on the img2 memory inside each decoder block
                 pos_embed="cosine",      # 'cosine' (2D sin-cos added to tokens) or 'RoPE<freq>', e.g. 'RoPE100'
                 ):
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        if not isinstance(pos_embed, str) or not (pos_embed == "cosine" or pos_embed.startswith("RoPE")):
            raise ValueError(f"unknown pos_embed {pos_embed!r}: use 'cosine' or 'RoPE<freq>' such as 'RoPE100'")
        self.pos_embed = pos_embed
        self.enc_depth, self.enc_embed_dim = enc_depth, enc_embed_dim
        self.dec_depth, self.dec_embed_dim = dec_depth, dec_embed_dim

        # patches and masking
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, enc_embed_dim)
        self.mask_generator = RandomMask(mask_ratio)

        # positions: sin-cos buffers (reference names, saved in the state_dict) or RoPE in every attention
        if pos_embed == "cosine":
            self.register_buffer("enc_pos_embed", sincos_2d(enc_embed_dim, self.patch_embed.grid_size))  # (N, De)
            self.register_buffer("dec_pos_embed", sincos_2d(dec_embed_dim, self.patch_embed.grid_size))  # (N, Dd)
            self.rope = None
        else:
            try:
                freq = float(pos_embed[len("RoPE"):])
            except ValueError:
                raise ValueError(f"unknown pos_embed {pos_embed!r}: use 'cosine' or 'RoPE<freq>'") from None
            self.enc_pos_embed = None
            self.dec_pos_embed = None
            self.rope = RoPE2D(freq=freq)

        # encoder
        self.enc_blocks = nn.ModuleList([
            Block(enc_embed_dim, enc_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer, rope=self.rope)
            for _ in range(enc_depth)])
        self.enc_norm = norm_layer(enc_embed_dim)

        # decoder
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))  # (1, 1, Dd)
        self.decoder_embed = nn.Linear(enc_embed_dim, dec_embed_dim, bias=True)
        self.dec_blocks = nn.ModuleList([
            DecoderBlock(dec_embed_dim, dec_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                         norm_mem=norm_im2_in_dec, rope=self.rope)
            for _ in range(dec_depth)])
        self.dec_norm = norm_layer(dec_embed_dim)
        self.prediction_head = nn.Linear(dec_embed_dim, patch_size**2 * 3, bias=True)

        self.initialize_weights()

    # ---------------------------------------------------------------- setup
    def initialize_weights(self) -> None:
        """MAE/CroCo init: xavier-uniform linears and patch projection, zero biases, unit norms.
        Nothing to do on the meta device (argument checks), where torch's init functions import its compiler."""
        if self.mask_token.is_meta:
            return
        self.patch_embed.init_weights()
        nn.init.normal_(self.mask_token, std=0.02)
        init_linears_and_norms(self, nn.init.xavier_uniform_)

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    def interpolate(self, img_size) -> "CroCoNet":
        """Set the default image size to `img_size` (int or (H, W)); sin-cos buffers are recomputed exactly
        for the new grid (RoPE needs nothing). Returns self."""
        pe = self.patch_embed
        rows, cols = pe.grid(*to_pair(img_size))
        pe.img_size, pe.grid_size, pe.num_patches = to_pair(img_size), (rows, cols), rows * cols
        if self.enc_pos_embed is not None:
            dev = self.enc_pos_embed.device
            self.enc_pos_embed = sincos_2d(self.enc_embed_dim, (rows, cols)).to(dev)  # (N, De)
            self.dec_pos_embed = sincos_2d(self.dec_embed_dim, (rows, cols)).to(dev)  # (N, Dd)
        return self

    def _sincos(self, which: str, grid: tuple[int, int]) -> torch.Tensor | None:
        """The sin-cos table for `grid` (the buffer when the grid is the training one), or None for RoPE."""
        buf = getattr(self, which)
        if buf is None or tuple(grid) == tuple(self.patch_embed.grid_size):
            return buf
        dim = self.enc_embed_dim if which == "enc_pos_embed" else self.dec_embed_dim
        return sincos_2d(dim, grid).to(buf.device)  # (N', D)

    # ---------------------------------------------------------------- parts
    def _embed(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """img (B, 3, H, W) -> patch tokens with the sin-cos table added (if any) (B, N, De), positions (B, N, 2)."""
        x, pos = self.patch_embed(img)  # (B, N, De), (B, N, 2)
        pe = self._sincos("enc_pos_embed", self.patch_embed.grid(img.shape[-2], img.shape[-1]))
        return (x if pe is None else x + pe), pos

    @staticmethod
    def _visible(x: torch.Tensor, pos: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, N, D) and positions (B, N, 2) at the visible indices `keep` (B, N_vis)."""
        return (x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1])),  # (B, N_vis, D)
                pos.gather(1, keep[..., None].expand(-1, -1, 2)))  # (B, N_vis, 2)

    def encode(self, img: torch.Tensor, mask: torch.Tensor | None = None, layer: int | None = None):
        """img (B, 3, H, W) -> tokens (B, N_vis, De) of the visible patches, their positions (B, N_vis, 2),
        all positions (B, N, 2). With `layer`, stop after that block (final norm only after the last)."""
        x, pos = self._embed(img)  # (B, N, De), (B, N, 2)
        posvis = pos
        if mask is not None:
            x, posvis = self._visible(x, pos, visible_index(mask))  # (B, N_vis, De), (B, N_vis, 2)
        last = self.enc_depth - 1 if layer is None else range(self.enc_depth)[layer]
        for blk in self.enc_blocks[: last + 1]:
            x = blk(x, posvis)
        if last == self.enc_depth - 1:
            x = self.enc_norm(x)
        return x, posvis, pos

    def encode_pair(self, img1: torch.Tensor, keep: torch.Tensor, img2: torch.Tensor):
        """`encode` of the visible patches `keep` (B, N_vis) of img1 and of all of img2, in one pass: the
        tokens of both go through each linear layer as one matrix (the weights' gradients are then summed
        by the matrix product instead of by an extra add per weight, ~6% of a base step) and attend within
        their own image. Same results as two `encode` calls. img1, img2 (B, 3, H, W) of one size ->
        feat1 (B, N_vis, De), all positions of img1 (B, N, 2), feat2 (B, N, De), positions of img2 (B, N, 2)."""
        B = img1.shape[0]
        x, pos = self._embed(torch.cat([img1, img2]))  # (2B, N, De), (2B, N, 2)
        x1, posvis = self._visible(x[:B], pos[:B], keep)  # (B, N_vis, De), (B, N_vis, 2)
        nv = keep.shape[1]
        xp, posp = torch.cat([x1, x[B:]], dim=1), torch.cat([posvis, pos[B:]], dim=1)  # (B, N_vis + N, De), (.., 2)
        for blk in self.enc_blocks:
            xp = blk(xp, posp, split=nv)
        xp = self.enc_norm(xp)
        return xp[:, :nv], pos[:B], xp[:, nv:], pos[B:]

    def decode(self, feat1, pos1, mask1, feat2, pos2, grid1, grid2=None, return_logits: bool = False,
               keep: torch.Tensor | None = None):
        """feat1 (B, N_vis, De) visible img1 tokens, feat2 (B, N2, De) img2 tokens -> (B, N, Dd) after dec_norm
        (and with return_logits the list of cross-attention logits (B, H, N, N2)). mask1 None: img1 complete.
        grid1, grid2: patch grids of img1 and img2 (grid2 defaults to grid1); keep: visible_index(mask1)."""
        x = self.decoder_embed(feat1)  # (B, N_vis, Dd)
        y = self.decoder_embed(feat2)  # (B, N, Dd)
        if mask1 is not None:
            B, N = mask1.shape
            keep = (visible_index(mask1) if keep is None else keep)[..., None].expand(-1, -1, x.shape[-1])  # (B, N_vis, Dd)
            full = self.mask_token.to(x.dtype).expand(B, N, -1)  # (B, N, Dd)
            x = full.scatter(1, keep, x)  # (B, N, Dd): visible tokens back in place, mask tokens elsewhere
        if self.dec_pos_embed is not None:
            x = x + self._sincos("dec_pos_embed", grid1)  # (B, N, Dd)
            y = y + self._sincos("dec_pos_embed", grid2 or grid1)  # (B, N2, Dd)
        logits = []
        for blk in self.dec_blocks:
            if return_logits:
                x, y, lg = blk(x, y, pos1, pos2, return_logits=True)
                logits.append(lg)
            else:
                x, y = blk(x, y, pos1, pos2)
        x = self.dec_norm(x)
        return (x, logits) if return_logits else x

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, p*p*3)."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, N, p*p*3) -> (B, 3, H, W); grid defaults to the training grid."""
        return unpatchify(x, self.patch_size, grid or self.patch_embed.grid_size)

    # ---------------------------------------------------------------- uses
    def forward(self, img1: torch.Tensor, img2: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False):
        """img1 target (masked), img2 source, (B, 3, H, W) each -> (out, mask, target).

        out (B, N, p*p*3) predicted pixels of every patch of img1, mask (B, N) bool True = masked (drawn with
        `mask_generator` unless given), target (B, N, p*p*3) = patchify(img1). With `return_tokens`, a fourth
        item holds the encoder's output for auxiliary heads: {"tgt" (B, N_vis, De) visible img1 tokens,
        "tgt_pos" (B, N_vis, 2) their positions, "src" (B, N, De) img2 tokens, "src_pos" (B, N, 2), "grid"}."""
        B, _, H, W = img1.shape
        grid = self.patch_embed.grid(H, W)
        N = grid[0] * grid[1]
        mask_given = mask
        if mask is None:
            mask = self.mask_generator(B, N, device=img1.device)  # (B, N) True = masked
        num_masked = getattr(self.mask_generator, "num_masked", None) if mask_given is None else None
        keep = visible_index(mask, None if num_masked is None else N - num_masked(N))  # (B, N_vis)
        feat1, pos1, feat2, pos2 = self.encode_pair(img1, keep, img2)
        dec = self.decode(feat1, pos1, mask, feat2, pos2, grid, keep=keep)  # (B, N, Dd)
        out = self.prediction_head(dec)  # (B, N, p*p*3)
        if not return_tokens:
            return out, mask, self.patchify(img1)
        posvis1 = pos1.gather(1, keep[..., None].expand(-1, -1, 2))  # (B, N_vis, 2)
        tokens = {"tgt": feat1, "tgt_pos": posvis1, "src": feat2, "src_pos": pos2, "grid": grid}
        return out, mask, self.patchify(img1), tokens

    def encode_image(self, img: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Unmasked encoder tokens (B, N, De): after enc_norm by default, or the output of block `layer`
        (0-based, negative counts from the end; the last block's output gets enc_norm)."""
        return self.encode(img, None, layer)[0]

    def cross_attention_logits(self, img_tgt: torch.Tensor, img_src: torch.Tensor,
                               mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Pre-softmax cross-attention logits q.k*scale of every decoder block: list of dec_depth tensors
        (B, heads, N_tgt, N_src); queries from img_tgt, keys from img_src. Nothing masked by default; `mask`
        (B, N_tgt) bool (True = masked) hides those target patches from the encoder as in training, so their
        queries start from the mask token, as every query that the loss trains does. A mask of R * B rows reads
        each pair R times (read r of pair b at row r * B + b; logits (R * B, heads, N_tgt, N_src)), the source
        encoded once."""
        grid1 = self.patch_embed.grid(img_tgt.shape[-2], img_tgt.shape[-1])
        grid2 = self.patch_embed.grid(img_src.shape[-2], img_src.shape[-1])
        feat2, pos2, _ = self.encode(img_src)  # (B, N_src, De)
        B = img_tgt.shape[0]
        if mask is not None and mask.shape[0] != B:
            if mask.shape[0] % B:
                raise ValueError(f"a mask of {mask.shape[0]} rows for {B} pairs: give R x {B} rows")
            reads = mask.shape[0] // B
            img_tgt, feat2, pos2 = img_tgt.repeat(reads, 1, 1, 1), feat2.repeat(reads, 1, 1), pos2.repeat(reads, 1, 1)
        feat1, _, pos1 = self.encode(img_tgt, mask)  # (B, N_vis, De), all positions (B, N_tgt, 2)
        return self.decode(feat1, pos1, mask, feat2, pos2, grid1, grid2, return_logits=True)[1]
