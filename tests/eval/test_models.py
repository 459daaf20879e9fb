"""slife/eval/models.py: evaluations load the encoder of every objective's checkpoint by what it records; the
depth probe and mKNN/CKA run on all of them; CAS and attention matching refuse a checkpoint without decoder
cross-attention in one line, and `slife match` matches features of such encoders instead."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slife.cli import app
from slife.errors import SlifeError
from slife.train.objectives import OBJECTIVES

from .models import objective_checkpoint
from .shards import write_pair_shards
from .test_depth_probe import write_nyu

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("objective_ckpts")
    return {name: objective_checkpoint(d / f"{name.replace('+', '_')}.pt", name, seed=i)
            for i, name in enumerate(OBJECTIVES)}


def test_every_objectives_checkpoint_loads_as_its_encoder(ckpts):
    from slife.eval.models import load_one, model_spec_of, untrained_models

    for name, path in ckpts.items():
        model, ck = load_one(path)
        spec = model_spec_of(ck)
        assert spec.kind == ("croco" if name.startswith("croco") else "vit")
        assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 16, 48)
        assert hasattr(model, "cross_attention_logits") == name.startswith("croco")
        (_, _, control), = untrained_models([spec], [0])
        assert type(control) is type(model)
    with pytest.raises(SlifeError, match=r"dinov2.pt: a dinov2 checkpoint has no decoder cross-attention.*"
                                         r"--metric mknn\|cka.*--method features"):
        load_one(ckpts["dinov2"], attention=True)
    with pytest.raises(SlifeError, match=r"egomotion.pt: an egomotion checkpoint has no decoder cross-attention"):
        load_one(ckpts["egomotion"], attention=True)


def test_untrained_controls_are_named_alike_everywhere_and_never_collide(ckpts):
    """One name per control, whichever evaluation makes it: two CroCo architectures get two names."""
    from slife.eval.models import architectures, load_one, untrained_models
    from slife.train.checkpoint import ModelSpec

    croco = architectures([load_one(ckpts["croco"])[1]])[0]
    vit = architectures([load_one(ckpts["dinov2"])[1]])[0]
    wider = ModelSpec("croco", {**croco.kwargs, "enc_depth": croco.kwargs.get("enc_depth", 2) + 1})
    rows = untrained_models([croco, vit, wider], [0, 1])
    assert [n for n, _, _ in rows] == ["untrained-s0", "untrained-s1", "untrained-vit-s0", "untrained-vit-s1",
                                       "untrained-croco#2-s0", "untrained-croco#2-s1"]
    assert [sp for _, sp, _ in rows] == [croco, croco, vit, vit, wider, wider]


def test_probe_runs_on_every_objectives_checkpoint(ckpts, tmp_path):
    from slife.eval.depth_probe import ProbeConfig, run

    root = write_nyu(tmp_path / "nyu")
    reps = {}
    for name, path in ckpts.items():
        out = tmp_path / name.replace("+", "_")
        cfg = ProbeConfig(data_root=root, epochs=2, batch_size=3, num_examples=1, control_untrained=name == "dinov2",
                          control_oracle=name == "dinov2")
        reps[name] = json.loads(run(cfg, [path], out).read_text())
        assert reps[name]["num_test"] == 4 and 0 <= reps[name]["metrics"]["delta1"] <= 1, name
    assert 0 <= reps["dinov2"]["control_untrained"]["metrics"]["delta1"] <= 1  # an untrained ViT of the same size
    assert 0 <= reps["dinov2"]["control_oracle"]["metrics"]["delta1"] <= 1  # oracle tokens of the ViT's width


def test_mknn_and_cka_across_objectives_and_cas_refuses_a_vit(ckpts, tmp_path):
    shards = write_pair_shards(tmp_path / "shards", num_pairs=6)
    paths = [str(p) for p in ckpts.values()]
    for metric in ("mknn", "cka"):
        r = runner.invoke(app, ["cas", *paths, "--pairs", str(shards), "--out", str(tmp_path / metric), "--metric",
                                metric, "--k", "3", "--num-pairs", "6"])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / metric / f"{metric}.json").read_text())
        m = np.array(rep["matrix"], dtype=float)
        # 4 objectives + 2 untrained controls of each architecture (CroCo: croco, croco+egomotion; ViT: the others)
        assert m.shape == (8, 8) and np.allclose(np.diag(m), 1.0)
        assert rep["names"][4:] == ["untrained-s0", "untrained-s1", "untrained-vit-s0", "untrained-vit-s1"]
        assert [a["kind"] for a in rep["untrained_architectures"]] == ["croco", "vit"]
        # untrained vs untrained: the mean over the pairs of one architecture, never a CroCo against a ViT
        assert rep["controls"]["untrained_vs_untrained"] == pytest.approx((m[4, 5] + m[6, 7]) / 2)
    r = runner.invoke(app, ["cas", str(ckpts["croco"]), str(ckpts["dinov2"]), "--pairs", str(shards), "--out",
                            str(tmp_path / "cas"), "--k", "3"])
    assert r.exit_code == 2 and "dinov2.pt: a dinov2 checkpoint has no decoder cross-attention" in r.output
    assert len(r.output.strip().splitlines()) == 1


def _shifted_sequence(root, side: int = 48):
    """An HPatches-style sequence: image N is the reference window moved by (3N, 2N) px on one texture."""
    seq = root / "v_shift"
    seq.mkdir(parents=True)
    yy, xx = np.mgrid[0:side + 40, 0:side + 40]
    tex = np.stack([(np.sin(xx / 3.0) * 100 + np.cos(yy / 5.0) * 80 + 128), (xx * 5) % 255, (yy * 7) % 255], -1)
    tex = tex.clip(0, 255).astype(np.uint8)
    for i in range(1, 7):
        dx, dy = 3 * (i - 1), 2 * (i - 1)
        Image.fromarray(tex[8 + dy:8 + dy + side, 8 + dx:8 + dx + side]).save(seq / f"{i}.ppm")
        if i > 1:
            np.savetxt(seq / f"H_1_{i}", np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1.0]]))
    return root


def test_match_offers_feature_matching_for_encoders_without_a_decoder(ckpts, tmp_path):
    root = _shifted_sequence(tmp_path / "hp")
    out = tmp_path / "out"
    r = runner.invoke(app, ["match", "hpatches", str(ckpts["dinov2"]), str(ckpts["croco"]), "--data-root", str(root),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "match.json").read_text())
    # auto; an untrained control of each architecture, read like its trained counterpart
    assert rep["methods"] == {"dinov2": "features", "croco": "attention", "untrained-vit-s0": "features",
                              "untrained-s0": "attention"}
    assert rep["models"]["dinov2"]["overall"]["model"]["aepe"] is not None and "(features)" in r.output
    r = runner.invoke(app, ["match", "hpatches", str(ckpts["croco"]), "--data-root", str(root), "--out", str(out),
                            "--method", "features"])
    assert r.exit_code == 0 and json.loads((out / "match.json").read_text())["methods"] == {
        "croco": "features", "untrained-s0": "features"}
    r = runner.invoke(app, ["match", "hpatches", str(ckpts["egomotion"]), "--data-root", str(root), "--out", str(out),
                            "--method", "attention"])
    assert r.exit_code == 2 and "no decoder cross-attention" in r.output and len(r.output.strip().splitlines()) == 1


def test_feature_logits_find_a_shift_with_an_oracle_encoder():
    """feature_logits on an encoder whose tokens are its patches' pixels: the top match is the true patch."""
    from slife.eval.attention import feature_logits
    from slife.train.blocks import patchify

    class PixelEncoder:
        def encode_image(self, img):
            return patchify(img, 8)  # (B, N, 192)

    g = torch.Generator().manual_seed(0)
    big = torch.randn(1, 3, 40, 40, generator=g)
    tgt, src = big[..., :32, :32], big[..., 8:40, :32]  # src = tgt moved up by one patch row
    lg = feature_logits(PixelEncoder(), tgt, src)
    assert len(lg) == 1 and lg[0].shape == (1, 1, 16, 16)
    top = lg[0][0, 0].argmax(-1)
    rows = torch.arange(4, 16)  # target patches of rows 1..3 are source patches of rows 0..2
    assert torch.equal(top[rows], rows - 4)
