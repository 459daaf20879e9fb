"""slife/train/vit.py: the ViT's state_dict is timm's VisionTransformer layout (keys and shapes from timm's
documented constructor), its maths is the standard ViT forward written here from that layout, and it loads
into timm itself when timm is installed."""

import pytest
import torch
import torch.nn.functional as F

from slife.train.vit import VIT_PRESETS, VisionTransformer

from trainkit import MICRO_VIT


def timm_layout(img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int, mlp_ratio=4) -> dict:
    """Key -> shape of timm's VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
    qkv_bias=True, class_token=True, global_pool='token', num_classes=0, init_values=None): class token, its
    position first in pos_embed, Conv2d patch projection, pre-norm blocks with a fused qkv, final norm, no head."""
    D, N, h = embed_dim, (img_size // patch_size) ** 2, int(embed_dim * mlp_ratio)
    spec = {"cls_token": (1, 1, D), "pos_embed": (1, 1 + N, D), "patch_embed.proj.weight": (D, 3, patch_size, patch_size),
            "patch_embed.proj.bias": (D,), "norm.weight": (D,), "norm.bias": (D,)}
    for i in range(depth):
        b = f"blocks.{i}."
        spec.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,), b + "attn.qkv.weight": (3 * D, D),
                     b + "attn.qkv.bias": (3 * D,), b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                     b + "norm2.weight": (D,), b + "norm2.bias": (D,), b + "mlp.fc1.weight": (h, D),
                     b + "mlp.fc1.bias": (h,), b + "mlp.fc2.weight": (D, h), b + "mlp.fc2.bias": (D,)})
    return spec


def reference_forward(sd: dict, img: torch.Tensor, num_heads: int, patch: int) -> torch.Tensor:
    """The standard ViT forward (timm's VisionTransformer.forward_features) from a state_dict: (B, 1 + N, D)."""
    x = F.conv2d(img, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # (B, N, D)
    x = torch.cat([sd["cls_token"].expand(len(x), -1, -1), x], dim=1) + sd["pos_embed"]
    B, T, D = x.shape
    ln = lambda t, k: F.layer_norm(t, (D,), sd[k + ".weight"], sd[k + ".bias"], eps=1e-6)  # noqa: E731
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}."
        qkv = F.linear(ln(x, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, T, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (D // num_heads) ** -0.5).softmax(-1) @ v  # (B, H, T, Dh)
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, D), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        hdn = F.gelu(F.linear(ln(x, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        x = x + F.linear(hdn, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        i += 1
    return ln(x, "norm")


@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_state_dict_is_timms_layout(preset):
    kw = VIT_PRESETS[preset]
    with torch.device("meta"):
        sd = VisionTransformer(**kw).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == timm_layout(**kw)


def test_maths_is_the_standard_vit_forward():
    torch.manual_seed(0)
    m = VisionTransformer(**MICRO_VIT)
    with torch.no_grad():
        m.cls_token.normal_()  # make every parameter matter
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    img = torch.randn(2, 3, 32, 32)
    ref = reference_forward(m.state_dict(), img, MICRO_VIT["num_heads"], 8)
    cls, patches = m.forward_tokens(img)
    assert torch.allclose(cls, ref[:, 0], atol=1e-5) and torch.allclose(patches, ref[:, 1:], atol=1e-5)
    assert torch.allclose(m.encode_image(img), ref[:, 1:], atol=1e-5) and torch.allclose(m(img), ref[:, 0], atol=1e-5)
    with torch.enable_grad():  # the training path (fused CPU attention) computes the same
        img.requires_grad_(True)
        assert torch.allclose(m.forward_tokens(img)[1], ref[:, 1:], atol=1e-5)
    assert m.encode_image(img, layer=0).shape == (2, 16, 64)
    assert m.encode_image(torch.randn(1, 3, 48, 64)).shape == (1, 6 * 8, 64)  # other grids: positions resized
    masked = m.forward_tokens(img, torch.ones(2, 16, dtype=torch.bool), torch.zeros(1, 64))[1]
    assert not torch.allclose(masked, patches)


def test_loads_into_timm_when_installed():
    timm = pytest.importorskip("timm", reason="timm is not installed (the layout spec above is checked always)")
    m = VisionTransformer(**MICRO_VIT)
    t = timm.models.vision_transformer.VisionTransformer(num_classes=0, qkv_bias=True, class_token=True,
                                                         global_pool="token", **MICRO_VIT)
    t.load_state_dict(m.state_dict(), strict=True)
    t.eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(t(img), m(img), atol=1e-5)
        assert torch.allclose(t.forward_features(img)[:, 1:], m.encode_image(img), atol=1e-5)
