"""Tests for slife/train/model.py: shapes, masking, reference key layout, variants, logits, encode_image.

With CROCO_REPO pointing to a checkout of naver/croco, both models are built with the same weights and
their outputs compared (skipped otherwise; the reference code is never part of slife).
"""

import os
import sys
from pathlib import Path

import pytest
import torch

from slife.train.masking import visible_index
from slife.train.model import CROCO_PRESETS, CroCoNet
from slife.train.pos_embed import sincos_2d

TINY = CROCO_PRESETS["tiny"]


def reference_layout(img=224, patch=16, enc=768, enc_depth=12, dec=512, dec_depth=8, mlp=4, cosine=False):
    """state_dict key -> shape of naver/croco's CroCoNet (written from reading models/croco.py, blocks.py)."""
    n = (img // patch) ** 2
    out = {"mask_token": (1, 1, dec)}
    if cosine:
        out.update(enc_pos_embed=(n, enc), dec_pos_embed=(n, dec))
    out.update({"patch_embed.proj.weight": (enc, 3, patch, patch), "patch_embed.proj.bias": (enc,)})

    def ln(prefix, d):
        return {f"{prefix}.weight": (d,), f"{prefix}.bias": (d,)}

    def lin(prefix, d_in, d_out):
        return {f"{prefix}.weight": (d_out, d_in), f"{prefix}.bias": (d_out,)}

    for i in range(enc_depth):
        b = f"enc_blocks.{i}"
        out.update({**ln(f"{b}.norm1", enc), **lin(f"{b}.attn.qkv", enc, 3 * enc), **lin(f"{b}.attn.proj", enc, enc),
                    **ln(f"{b}.norm2", enc), **lin(f"{b}.mlp.fc1", enc, mlp * enc), **lin(f"{b}.mlp.fc2", mlp * enc, enc)})
    out.update({**ln("enc_norm", enc), **lin("decoder_embed", enc, dec)})
    for i in range(dec_depth):
        b = f"dec_blocks.{i}"
        out.update({**ln(f"{b}.norm1", dec), **lin(f"{b}.attn.qkv", dec, 3 * dec), **lin(f"{b}.attn.proj", dec, dec),
                    **lin(f"{b}.cross_attn.projq", dec, dec), **lin(f"{b}.cross_attn.projk", dec, dec),
                    **lin(f"{b}.cross_attn.projv", dec, dec), **lin(f"{b}.cross_attn.proj", dec, dec),
                    **ln(f"{b}.norm2", dec), **ln(f"{b}.norm3", dec), **lin(f"{b}.mlp.fc1", dec, mlp * dec),
                    **lin(f"{b}.mlp.fc2", mlp * dec, dec), **ln(f"{b}.norm_y", dec)})
    out.update({**ln("dec_norm", dec), **lin("prediction_head", dec, patch * patch * 3)})
    return out


def _layout(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("pos_embed", ["RoPE100", "cosine"])
def test_base_keys_equal_reference(pos_embed):
    with torch.device("meta"):
        model = CroCoNet(**dict(CROCO_PRESETS["base"], pos_embed=pos_embed))
    expected = reference_layout(cosine=pos_embed == "cosine")
    assert list(_layout(model).items()) == list(expected.items())  # same names, shapes and order
    assert sum(v.numel() for v in model.parameters()) == 120_076_288  # ViT-B/16 encoder + 512 x 8 decoder


def test_presets_build_on_meta():
    sizes = {}
    for name, kw in CROCO_PRESETS.items():
        with torch.device("meta"):
            m = CroCoNet(**kw)
        sizes[name] = sum(p.numel() for p in m.parameters())
        assert _layout(m) == reference_layout(kw["img_size"], kw["patch_size"], kw["enc_embed_dim"], kw["enc_depth"],
                                              kw["dec_embed_dim"], kw["dec_depth"])
    assert sizes["tiny"] < sizes["small"] < sizes["base"] < sizes["base-base"] < sizes["large"]
    assert sizes["tiny"] == 3_815_808 and sizes["large"] == 417_918_720


@pytest.mark.parametrize("pos_embed", ["RoPE100", "cosine"])
def test_reference_layout_state_dict_loads_strict(pos_embed):
    torch.manual_seed(0)
    layout = reference_layout(64, 8, 192, 6, 128, 4, cosine=pos_embed == "cosine")
    sd = {k: torch.randn(s) for k, s in layout.items()}
    model = CroCoNet(**dict(TINY, pos_embed=pos_embed))
    assert not model.load_state_dict(sd, strict=True).missing_keys
    assert torch.equal(model.dec_blocks[3].norm_y.bias, sd["dec_blocks.3.norm_y.bias"])


@pytest.mark.parametrize("pos_embed", ["RoPE100", "cosine"])
def test_forward_shapes_and_mask(pos_embed):
    torch.manual_seed(0)
    model = CroCoNet(**dict(TINY, pos_embed=pos_embed))
    img1, img2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    out, mask, target = model(img1, img2)
    assert out.shape == (2, 64, 192) and target.shape == (2, 64, 192) and mask.shape == (2, 64)
    assert mask.sum(1).tolist() == [57, 57]  # int(0.9 * 64)
    assert torch.equal(target, model.patchify(img1)) and torch.equal(model.unpatchify(target), img1)
    out2, mask2, _ = model(img1, img2, mask=mask)
    assert torch.equal(mask2, mask) and torch.allclose(out, out2, atol=1e-5)
    # visible patches of img1 are the only ones of img1 that matter
    row, col = divmod(int(mask[0].nonzero()[0]), 8)  # a masked patch of image 0
    img1b = img1.clone().view(2, 3, 8, 8, 8, 8)  # (B, C, rows, p, cols, p)
    img1b[0, :, row, :, col, :] += 5.0
    out3, _, _ = model(img1b.view(2, 3, 64, 64), img2, mask=mask)
    assert torch.allclose(out3, out, atol=1e-5)
    row, col = divmod(int((~mask[0]).nonzero()[0]), 8)  # a visible patch of image 0
    img1b[0, :, row, :, col, :] += 5.0
    out4, _, _ = model(img1b.view(2, 3, 64, 64), img2, mask=mask)
    assert (out4[0] - out[0]).abs().max() > 1e-3 and torch.allclose(out4[1], out[1], atol=1e-5)
    out.sum().backward()
    assert model.mask_token.grad is not None and model.enc_blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_cosine_and_rope_variants_differ_and_validate():
    torch.manual_seed(0)
    rope = CroCoNet(**dict(TINY, pos_embed="RoPE100"))
    cos = CroCoNet(**dict(TINY, pos_embed="cosine"))
    cos.load_state_dict(rope.state_dict(), strict=False)
    img = torch.randn(1, 3, 64, 64)
    assert rope.rope is not None and rope.enc_pos_embed is None and cos.rope is None
    assert torch.equal(cos.enc_pos_embed, sincos_2d(192, (8, 8))) and cos.dec_pos_embed.shape == (64, 128)
    assert (rope.encode_image(img) - cos.encode_image(img)).abs().max() > 1e-2
    with pytest.raises(ValueError):
        CroCoNet(**dict(TINY, pos_embed="learned"))
    with pytest.raises(ValueError):
        CroCoNet(**dict(TINY, pos_embed="RoPEabc"))


@pytest.mark.parametrize("pos_embed", ["RoPE100", "cosine"])
def test_other_image_sizes_and_interpolate(pos_embed):
    torch.manual_seed(0)
    model = CroCoNet(**dict(TINY, pos_embed=pos_embed)).eval()
    img1, img2 = torch.randn(2, 3, 48, 80), torch.randn(2, 3, 48, 80)
    out, mask, target = model(img1, img2)  # a 6 x 10 grid
    assert out.shape == (2, 60, 192) and mask.sum(1).tolist() == [54, 54]
    assert model.encode_image(img1).shape == (2, 60, 192)
    before = model.encode_image(img1)
    model.interpolate((48, 80))
    assert model.patch_embed.grid_size == (6, 10) and model.patch_embed.num_patches == 60
    if pos_embed == "cosine":
        assert torch.equal(model.enc_pos_embed, sincos_2d(192, (6, 10)))
    assert torch.allclose(model.encode_image(img1), before, atol=1e-5)  # the same tables, now as buffers


def test_cross_attention_logits():
    torch.manual_seed(0)
    model = CroCoNet(**TINY).eval()
    tgt, src = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 48, 64)
    logits = model.cross_attention_logits(tgt, src)
    assert len(logits) == 4 and all(lg.shape == (2, 4, 64, 48) for lg in logits)
    # the logits path decodes exactly like the SDPA path
    f1, p1, _ = model.encode(tgt)
    f2, p2, _ = model.encode(src)
    fast = model.decode(f1, p1, None, f2, p2, (8, 8), (6, 8))
    slow, lg = model.decode(f1, p1, None, f2, p2, (8, 8), (6, 8), return_logits=True)
    assert torch.allclose(fast, slow, atol=1e-5) and all(torch.equal(a, b) for a, b in zip(lg, logits))


def test_cross_attention_logits_with_the_target_masked_decode_as_training_does():
    torch.manual_seed(0)
    model = CroCoNet(**TINY).eval()
    tgt, src = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    mask = model.mask_generator(2, 64, generator=torch.Generator().manual_seed(1))
    logits = model.cross_attention_logits(tgt, src, mask)
    assert len(logits) == 4 and all(lg.shape == (2, 4, 64, 64) for lg in logits)
    f1, p1, f2, p2 = model.encode_pair(tgt, visible_index(mask), src)  # the training path's tokens
    _, lg = model.decode(f1, p1, mask, f2, p2, (8, 8), return_logits=True)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(lg, logits))
    with pytest.raises(ValueError, match="give R x 2 rows"):
        model.cross_attention_logits(tgt, src, mask[:1].repeat(3, 1))
    # a masked patch's pixels never reach the logits; a visible one's do
    hidden, shown = int(mask[0].nonzero()[0]), int((~mask[0]).nonzero()[0])
    for patch, same in ((hidden, True), (shown, False)):
        t2 = tgt.clone()
        r, c = divmod(patch, 8)
        t2[0, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 1.0
        after = model.cross_attention_logits(t2, src, mask)
        assert all(torch.allclose(a[0], b[0], atol=1e-5) for a, b in zip(after, logits)) == same


def test_encode_image_layers():
    torch.manual_seed(0)
    model = CroCoNet(**TINY).eval()
    img = torch.randn(2, 3, 64, 64)
    full = model.encode_image(img)
    assert full.shape == (2, 64, 192)
    assert torch.equal(model.encode_image(img, layer=-1), full) and torch.equal(model.encode_image(img, layer=5), full)
    l0 = model.encode_image(img, layer=0)
    x, pos = model.patch_embed(img)
    assert torch.allclose(l0, model.enc_blocks[0](x, pos), atol=1e-6)  # raw block output, no final norm
    with pytest.raises(IndexError):
        model.encode_image(img, layer=6)


# ---------------------------------------------------------------- against naver/croco (optional)
def _reference():
    repo = os.environ.get("CROCO_REPO")
    if not repo or not (Path(repo) / "models" / "croco.py").exists():
        pytest.skip("set CROCO_REPO to a checkout of naver/croco to compare with the reference")
    sys.path.insert(0, repo)
    try:
        from models.croco import CroCoNet as Ref  # noqa: PLC0415
        from models.pos_embed import RoPE2D as RefRoPE, get_2d_sincos_pos_embed  # noqa: PLC0415
    finally:
        sys.path.remove(repo)
    return Ref, RefRoPE, get_2d_sincos_pos_embed


@pytest.mark.parametrize("pos_embed", ["RoPE100", "cosine"])
def test_same_outputs_as_reference(pos_embed):
    Ref, _, _ = _reference()
    kw = dict(TINY, pos_embed=pos_embed)
    torch.manual_seed(0)
    ref = Ref(**kw).eval()
    ours = CroCoNet(**kw).eval()
    assert list(_layout(ours).items()) == list(_layout(ref).items())
    ours.load_state_dict(ref.state_dict(), strict=True)
    img1, img2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    torch.manual_seed(5)
    r_out, r_mask, r_target = ref(img1, img2)
    torch.manual_seed(5)
    o_out, o_mask, o_target = ours(img1, img2)  # same random draw -> same mask
    assert torch.equal(o_mask, r_mask) and torch.equal(o_target, r_target)
    assert (o_out - r_out).abs().max() < 1e-4
    r_feat = ref._encode_image(img2, do_mask=False)[0]
    assert (ours.encode_image(img2) - r_feat).abs().max() < 1e-4


def test_position_maths_equal_reference():
    _, RefRoPE, ref_sincos = _reference()
    for dim, grid in [(192, (8, 8)), (128, (6, 10))]:
        assert torch.allclose(torch.from_numpy(ref_sincos(dim, grid)).float(), sincos_2d(dim, grid), atol=1e-7)
    if RefRoPE.__module__.endswith("curope2d"):
        pytest.skip("the reference uses its compiled RoPE kernel here")
    from slife.train.pos_embed import RoPE2D  # noqa: PLC0415
    tok, pos = torch.randn(2, 3, 10, 64), torch.randint(0, 14, (2, 10, 2))
    assert torch.allclose(RoPE2D(100.0)(tok, pos), RefRoPE(100.0)(tok, pos), atol=1e-5)


def test_cross_attention_logits_equal_reference():
    Ref, _, _ = _reference()
    torch.manual_seed(0)
    ref = Ref(**TINY).eval()
    ours = CroCoNet(**TINY).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    tgt, src = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    captured = []

    def hook(m, args, out):  # recompute the reference's pre-softmax logits from its own inputs
        query, key, _, qpos, kpos = args
        B, H = query.shape[0], m.num_heads
        q = m.projq(query).reshape(B, query.shape[1], H, -1).permute(0, 2, 1, 3)
        k = m.projk(key).reshape(B, key.shape[1], H, -1).permute(0, 2, 1, 3)
        q, k = m.rope(q, qpos), m.rope(k, kpos)
        captured.append((q @ k.transpose(-2, -1)) * m.scale)

    handles = [blk.cross_attn.register_forward_hook(hook) for blk in ref.dec_blocks]
    with torch.no_grad():
        f1, p1, _ = ref._encode_image(tgt, do_mask=False)
        f2, p2, _ = ref._encode_image(src, do_mask=False)
        ref._decoder(f1, p1, None, f2, p2)
        ours_logits = ours.cross_attention_logits(tgt, src)
    for h in handles:
        h.remove()
    assert len(captured) == len(ours_logits) == 4
    assert max((a - b).abs().max().item() for a, b in zip(captured, ours_logits)) < 1e-4


def test_compiles_and_matches_eager():
    """`slife train --compile`: the training forward traces as one graph (no data-dependent shapes, no breaks)
    and gives the eager outputs and gradients. The aot_eager backend keeps this test fast; inductor itself
    (the default backend, ~80 s to compile here) is exercised by `bench/bench_model.py --compile`."""
    import torch._inductor.config as inductor_config

    kw = dict(img_size=32, patch_size=8, mask_ratio=0.75, enc_embed_dim=32, enc_depth=1, enc_num_heads=2,
              dec_embed_dim=32, dec_depth=1, dec_num_heads=2, mlp_ratio=2, pos_embed="RoPE100")
    torch.manual_seed(0)
    model = CroCoNet(**kw)
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    outs, grads = [], []
    old = inductor_config.fallback_random
    inductor_config.fallback_random = True  # masks drawn as in eager
    try:
        for m in (model, torch.compile(model, backend="aot_eager", fullgraph=True)):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            out, mask, target = m(x, y)
            ((out - target) ** 2)[mask].mean().backward()
            outs.append(out.detach())
            grads.append(model.patch_embed.proj.weight.grad.clone())
    finally:
        inductor_config.fallback_random = old
    assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(grads[0], grads[1], atol=1e-5)
