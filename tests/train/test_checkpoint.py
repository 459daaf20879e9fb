"""Tests for slife/train/checkpoint.py: atomic save, weights_only load, argument recovery, load_model errors."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from slife.errors import SlifeError
from slife.train.checkpoint import croco_args_from_ckpt, load_checkpoint, load_model, save_checkpoint
from slife.train.model import CROCO_PRESETS, CroCoNet

TINY = CROCO_PRESETS["tiny"]
SMALLER = dict(img_size=32, patch_size=8, enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=16,
               dec_depth=1, dec_num_heads=2)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = CroCoNet(**TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))[0].sum().backward()
    opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "croco_kwargs": dict(TINY), "optimizer": opt.state_dict(),
                           "step": 1, "rng": {"torch": torch.get_rng_state(), "numpy": [1, 2, 3]}})
    return path, model


def _one_line_error(fn, *needles):
    with pytest.raises(SlifeError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_save_is_atomic_and_loads_weights_only(tiny_ckpt):
    path, model = tiny_ckpt
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left
    raw = torch.load(path, weights_only=True)  # plain weights_only load works, nothing to allow
    assert raw["step"] == 1 and set(raw["model"]) == set(model.state_dict())
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["model"]["enc_norm.weight"], model.enc_norm.weight)
    assert "state" in ckpt["optimizer"]


def test_save_refuses_objects_weights_only_cannot_load(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['rng'\]\['np'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "x.pt", {"rng": {"np": np.zeros(3)}})
    assert list(tmp_path.iterdir()) == []


def test_load_model_same_outputs(tiny_ckpt):
    path, model = tiny_ckpt
    loaded, ckpt = load_model(path)
    assert ckpt["croco_kwargs"] == TINY
    img = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.eval().encode_image(img), model.eval().encode_image(img))
    bigger, _ = load_model(path, img_size=96)
    assert bigger.patch_embed.grid_size == (12, 12)


def test_croco_args_all_formats():
    s = "CroCoNet(enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, pos_embed='RoPE100', img_size=(224, 224))"
    expected = dict(enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, pos_embed="RoPE100", img_size=(224, 224))
    assert croco_args_from_ckpt({"croco_kwargs": {"img_size": [64, 64], "pos_embed": "cosine"}}) == \
        {"img_size": (64, 64), "pos_embed": "cosine"}
    assert croco_args_from_ckpt({"args": argparse.Namespace(model=s, lr=0.1)}) == expected
    assert croco_args_from_ckpt({"args": {"model": s}}) == expected
    assert croco_args_from_ckpt({"args": s}) == expected
    assert croco_args_from_ckpt({"model": {}}) == {}  # CroCo v1 release: default arguments
    assert croco_args_from_ckpt({"args": argparse.Namespace(lr=0.1)}) == {}


def test_croco_args_never_evaluates(tmp_path):
    evil = "CroCoNet(enc_depth=__import__('os').system('touch " + str(tmp_path / "pwned") + "'))"
    _one_line_error(lambda: croco_args_from_ckpt({"args": {"model": evil}}, "f.pt"), "f.pt", "not a literal")
    assert not (tmp_path / "pwned").exists()
    _one_line_error(lambda: croco_args_from_ckpt({"args": {"model": "os.system('x')"}}, "f.pt"), "CroCoNet(...)")
    _one_line_error(lambda: croco_args_from_ckpt({"croco_kwargs": {"depth": 3}}, "f.pt"), "unknown", "'depth'")


def test_old_namespace_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    kw = dict(SMALLER, pos_embed="RoPE100")
    model = CroCoNet(**kw)
    model_str = "CroCoNet(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    path = tmp_path / "old.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(model=model_str, lr=1.5e-4), "epoch": 3}, path)
    loaded, ckpt = load_model(path)
    assert ckpt["epoch"] == 3 and loaded.enc_depth == 2 and loaded.rope is not None
    ddp = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}, "croco_kwargs": kw}, ddp)
    assert torch.equal(load_model(ddp)[0].mask_token, model.mask_token)


def test_cosine_buffers_of_another_grid_are_recomputed(tmp_path):
    kw = dict(SMALLER, pos_embed="cosine")
    sd = CroCoNet(**dict(kw, img_size=48)).state_dict()  # buffers for a 6 x 6 grid
    save_checkpoint(tmp_path / "c.pt", {"model": sd, "croco_kwargs": kw})  # arguments say 32 px (4 x 4)
    model, _ = load_model(tmp_path / "c.pt")
    assert model.enc_pos_embed.shape == (16, 32)


def test_bad_files_are_one_line_errors(tmp_path, tiny_ckpt):
    path, model = tiny_ckpt
    _one_line_error(lambda: load_checkpoint(tmp_path / "nope.pt"), "nope.pt", "no such checkpoint")
    _one_line_error(lambda: load_checkpoint(tmp_path), "is a folder")
    (tmp_path / "junk.pt").write_bytes(b"hello, this is not a checkpoint at all" * 10)
    _one_line_error(lambda: load_checkpoint(tmp_path / "junk.pt"), "junk.pt", "not a readable PyTorch checkpoint")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    _one_line_error(lambda: load_model(tmp_path / "cut.pt"), "cut.pt", "corrupt or truncated")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    _one_line_error(lambda: load_checkpoint(tmp_path / "tensor.pt"), "tensor.pt", "expected a dict")
    torch.save({"model": {}, "cfg": Path("x")}, tmp_path / "unsafe.pt")
    _one_line_error(lambda: load_checkpoint(tmp_path / "unsafe.pt"), "unsafe.pt", "weights_only=True")
    torch.save({"weights": {}}, tmp_path / "nomodel.pt")
    _one_line_error(lambda: load_model(tmp_path / "nomodel.pt"), "nomodel.pt", "no 'model' state_dict")


def test_mismatching_state_dicts(tmp_path):
    torch.manual_seed(0)
    kw = dict(SMALLER, pos_embed="RoPE100")
    sd = CroCoNet(**kw).state_dict()
    missing = {k: v for k, v in sd.items() if k != "dec_blocks.0.norm_y.weight"}
    save_checkpoint(tmp_path / "m.pt", {"model": missing, "croco_kwargs": kw})
    _one_line_error(lambda: load_model(tmp_path / "m.pt"), "m.pt", "1 missing key(s), first 'dec_blocks.0.norm_y.weight'")
    model, _ = load_model(tmp_path / "m.pt", strict=False)
    assert torch.equal(model.enc_norm.bias, sd["enc_norm.bias"])
    extra = dict(sd, **{"head.weight": torch.zeros(2)})
    save_checkpoint(tmp_path / "u.pt", {"model": extra, "croco_kwargs": kw})
    _one_line_error(lambda: load_model(tmp_path / "u.pt"), "u.pt", "unexpected key(s), first 'head.weight'")
    save_checkpoint(tmp_path / "s.pt", {"model": sd, "croco_kwargs": dict(kw, dec_embed_dim=32)})
    _one_line_error(lambda: load_model(tmp_path / "s.pt"), "s.pt", "mask_token has shape (1, 1, 16)", "(1, 1, 32)")
    save_checkpoint(tmp_path / "b.pt", {"model": sd, "croco_kwargs": dict(kw, enc_num_heads=5)})
    _one_line_error(lambda: load_model(tmp_path / "b.pt"), "b.pt", "cannot build CroCoNet")
    nan = {k: (torch.full_like(v, float("nan")) if k == "enc_norm.weight" else v) for k, v in sd.items()}
    save_checkpoint(tmp_path / "n.pt", {"model": nan, "croco_kwargs": kw})
    _one_line_error(lambda: load_model(tmp_path / "n.pt"), "n.pt", "NaN or inf", "'enc_norm.weight'")
