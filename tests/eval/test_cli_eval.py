import json

import numpy as np
import pytest
from typer.testing import CliRunner

from slife.cli import app

from .models import tiny_checkpoint
from .shards import write_pair_shards
from .test_correspondence import _hpatches_from_graffiti, need_graffiti

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return [tiny_checkpoint(d / "a.pt", seed=1), tiny_checkpoint(d / "b.pt", seed=2)]


def test_cli_cas_end_to_end(tmp_path, ckpts):
    shards = write_pair_shards(tmp_path / "shards", num_pairs=6)
    out = tmp_path / "out"
    r = runner.invoke(app, ["cas", *map(str, ckpts), ckpts[0].as_posix(), "--pairs", str(shards), "--out", str(out),
                            "--k", "5", "--num-pairs", "6"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "cas.json").read_text())
    names = rep["names"]
    assert names == ["a", "b", "a#2", "untrained-s0", "untrained-s1", "same-position"]
    m = rep["matrix"]
    assert m[0][2] == 1.0 and m[0][1] == m[1][0]  # a model with itself scores 1; symmetric
    assert rep["chance"] == 5 / 16
    assert set(rep["per_block"]) == {"0", "1"}
    gt = rep["ground_truth"]
    assert gt["pairs_with_truth"] == 6 and 0 < gt["displaced_share"] < 1
    assert gt["accuracy"]["same-position"]["displaced"] == 0.0
    assert "chance" in r.output and "displaced share" in r.output and "agreement beside the shortcut" in r.output
    row = rep["pair_table"][0]
    assert (row["a"], row["b"]) == ("a", "b") and row["cas"] == m[0][1]
    assert row["a_vs_same_position"] == m[0][5] and row["cas_displaced"] == gt["matrix_displaced"][0][1]
    assert (out / "cas.csv").read_text().splitlines()[0] == "," + ",".join(names)
    assert (out / "cas.png").stat().st_size > 1000 and (out / "cas_displaced.csv").exists()
    # CAS beyond position: its own CSVs and heatmap; diagonal 1 for models and untrained controls, 0 for the
    # same-position predictor (identical sets on every pair); the per-block means printed
    cal = rep["calibrated"]
    rows = [line.split(",") for line in (out / "cas_calibrated.csv").read_text().splitlines()]
    assert rows[0] == [""] + names and [float(rows[i + 1][i + 1]) for i in range(6)] == [1, 1, 1, 1, 1, 0]
    assert float(rows[1][2]) == pytest.approx(cal["matrix"][0][1], abs=1e-6)
    assert (out / "cas_calibrated.png").stat().st_size > 1000 and (out / "cas_calibrated_displaced.csv").exists()
    assert cal["model_vs_model_mean"] == pytest.approx((2 * cal["matrix"][0][1] + cal["matrix"][0][2]) / 3)  # a-b, b-a#2, a-a#2
    assert len(cal["model_vs_model_mean_per_block"]) == 2 and len(cal["untrained_vs_untrained_per_block"]) == 2
    assert cal["untrained_pairs"] == 1 and cal["untrained_vs_untrained_sd"] is None  # one pair: no spread
    text = " ".join(r.output.split())
    assert "CAS beyond position (cas_calibrated.csv/.png): mean model vs model" in text
    assert "CAS beyond position, mean model vs model per decoder block" in text
    # output that is not a wide terminal (CliRunner: 80 columns) cuts no number and no header
    assert "…" not in r.output and "beyond position, displaced" in r.output and "untrained-s1" in r.output
    for row in rep["pair_table"]:
        assert f"{row['cas_calibrated']:.3f}" in r.output and f"{row['cas_calibrated_displaced']:.3f}" in r.output
    # three untrained controls: their three pairs' mean and spread, on both null-corrected scores
    r3 = runner.invoke(app, ["cas", str(ckpts[0]), "--pairs", str(shards), "--out", str(tmp_path / "u3"), "--k", "5",
                             "--num-pairs", "6", "--untrained-seeds", "0,1,2"])
    assert r3.exit_code == 0, r3.output
    rep3 = json.loads((tmp_path / "u3" / "cas.json").read_text())
    for key in ("calibrated", "beyond_saliency"):
        sc, m3 = rep3[key], np.array(rep3[key]["matrix"], dtype=float)
        vals = [m3[1, 2], m3[1, 3], m3[2, 3]]  # untrained-s0, -s1, -s2 follow the one model
        assert sc["untrained_pairs"] == 3 and sc["untrained_vs_untrained"] == pytest.approx(np.mean(vals))
        assert sc["untrained_vs_untrained_sd"] == pytest.approx(np.std(vals, ddof=1))
    assert "over 3 pairs)" in " ".join(r3.output.split())
    h = " ".join(runner.invoke(app, ["cas", "--help"]).output.split())
    assert "CAS beyond position" in h and "cas_calibrated.csv" in h
    r = runner.invoke(app, ["cas", str(ckpts[0]), "--pairs", str(shards), "--out", str(tmp_path / "none"), "--k", "5",
                            "--num-pairs", "3", "--untrained-seeds", ""])
    assert r.exit_code == 0 and "WARNING" in r.output and "no untrained control" in " ".join(r.output.split())
    assert json.loads((tmp_path / "none" / "cas.json").read_text())["names"] == ["a", "same-position"]
    for extra, msg in ((["--k", "16"], "--k 16 must be below the 16 patches"),
                       (["--k", "11", "--metric", "mknn"], "--k 11 must be below the 11 other images of the 12 "
                                                           "distinct images"),
                       (["--k", "0"], "--k must be >= 1")):
        r = runner.invoke(app, ["cas", *map(str, ckpts), "--pairs", str(shards), "--out", str(out), "--num-pairs",
                                "6", *extra])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output


def _doubled(shards, out):
    """The pair set with every sample written twice (new keys, same frames): mined sets reuse frames like this."""
    import io
    import tarfile

    out.mkdir()
    with tarfile.open(shards / "pairs-000000.tar") as src, tarfile.open(out / "pairs-000000.tar", "w") as dst:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
        for copy in ("", "9"):
            for m, data in members:
                ti = tarfile.TarInfo(m.name.replace("plane_", f"plane{copy}_"))
                ti.size = len(data)
                dst.addfile(ti, io.BytesIO(data))
    (out / "pairs-000000.stats.json").write_text(json.dumps({"samples": 12}))
    (out / "manifest.json").write_text(json.dumps({"shards": [{"name": "pairs-000000.tar", "samples": 12}]}))
    return out


def test_cli_mknn_and_cka_compare_each_frame_once(tmp_path, ckpts):
    """Views of the same frame are compared once, so duplicating every pair changes no score, and chance is
    k / (n - 1) over the distinct images (12 frames in 6 pairs, 24 views in the doubled set)."""
    shards = write_pair_shards(tmp_path / "shards", num_pairs=6)
    doubled = _doubled(shards, tmp_path / "doubled")
    for metric in ("mknn", "cka"):
        reps = []
        for name, folder, n in (("once", shards, 6), ("twice", doubled, 12)):
            out = tmp_path / f"{metric}-{name}"
            r = runner.invoke(app, ["cas", *map(str, ckpts), "--pairs", str(folder), "--out", str(out), "--metric",
                                    metric, "--k", "3", "--num-pairs", str(n)])
            assert r.exit_code == 0, r.output
            reps.append(json.loads((out / f"{metric}.json").read_text()))
            assert f"12 distinct images of the {2 * n} views of {n} pairs" in " ".join(r.output.split())
        once, twice = reps
        assert once["num_images"] == twice["num_images"] == 12 and twice["num_views"] == 24
        assert np.allclose(np.array(once["matrix"], float), np.array(twice["matrix"], float))
        if metric == "mknn":
            assert once["chance"] == twice["chance"] == 3 / 11


def test_feature_metrics_on_real_models(ckpts):
    import torch

    from slife.eval.cas import feature_report, pooled_features
    from slife.eval.models import load_models

    imgs = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loaded = load_models(ckpts + [ckpts[0]])
    feats = [pooled_features(m, imgs) for _, m, _ in loaded]
    for metric in ("cka", "mknn"):
        rep = feature_report([n for n, _, _ in loaded], ["model"] * 3, feats, metric, 3)
        assert rep["matrix"][0][2] == pytest.approx(1.0) and rep["matrix"][0][1] < 1.0
    assert rep["chance"] == 3 / 11


def test_cli_cas_bad_checkpoints(tmp_path, ckpts):
    import torch

    from slife.train.checkpoint import save_checkpoint

    shards = write_pair_shards(tmp_path / "shards", num_pairs=2)
    other = tiny_checkpoint(tmp_path / "wide.pt", seed=0, img_size=64)  # another grid
    r = runner.invoke(app, ["cas", str(ckpts[0]), str(other), "--pairs", str(shards), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "differs from the first checkpoint" in r.output
    assert not (tmp_path / "o").exists()  # a run refused on its inputs leaves no empty output folder
    r = runner.invoke(app, ["cas", str(tmp_path / "nope.pt"), "--pairs", str(shards), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no such checkpoint file" in r.output and not (tmp_path / "o").exists()
    sd = torch.load(ckpts[0], weights_only=True)
    sd["model"] = {k: v for k, v in sd["model"].items() if not k.startswith("dec_blocks.1")}
    save_checkpoint(tmp_path / "missing.pt", sd)
    r = runner.invoke(app, ["cas", str(tmp_path / "missing.pt"), "--pairs", str(shards), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing.pt" in r.output and "missing key" in r.output
    assert len(r.output.strip().splitlines()) == 1
    wide = tiny_checkpoint(tmp_path / "wide2.pt", seed=0, enc_embed_dim=96)  # weights of another architecture
    sd = torch.load(wide, weights_only=True)
    sd["croco_kwargs"] = torch.load(ckpts[0], weights_only=True)["croco_kwargs"]
    save_checkpoint(tmp_path / "other.pt", sd)
    r = runner.invoke(app, ["cas", str(tmp_path / "other.pt"), "--pairs", str(shards), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "other.pt" in r.output and "shape" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["cas", str(ckpts[0]), "--pairs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nowhere" in r.output


@need_graffiti
def test_cli_match_end_to_end(tmp_path, ckpts):
    root = _hpatches_from_graffiti(tmp_path / "hp", side=96)
    out = tmp_path / "out"
    r = runner.invoke(app, ["match", "hpatches", str(ckpts[0]), "--data-root", str(root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "match.json").read_text())
    assert rep["counts"]["pairs"] == 5 and "a" in rep["models"]
    assert "id AEPE" in r.output and "same-pos acc" in r.output
    # the untrained control of the checkpoint's architecture, scored like it, and chance beside acc
    assert rep["untrained"] == ["untrained-s0"] and set(rep["models"]) == {"a", "untrained-s0"}
    u, o = rep["models"]["untrained-s0"]["overall"], rep["models"]["a"]["overall"]
    assert 0 <= u["patch_accuracy_displaced"] <= 1 and u["model"]["pairs"] == 5
    assert 4 / 16 <= o["chance_accuracy_displaced"] <= 9 / 16 and o["chance_accuracy"] == u["chance_accuracy"]
    text = " ".join(r.output.split())
    assert "untrained-s0 (control)" in text and "chance (control)" in text and "chance acc" in text
    assert "…" not in r.output
    r = runner.invoke(app, ["match", "hpatches", str(ckpts[0]), "--data-root", str(root), "--out", str(out),
                            "--untrained-seeds", "", "--max-pairs", "1"])
    assert r.exit_code == 0 and "WARNING" in r.output and "no untrained control" in " ".join(r.output.split())
    assert list(json.loads((out / "match.json").read_text())["models"]) == ["a"]
    r = runner.invoke(app, ["match", "hpatches", str(ckpts[0]), "--data-root", str(tmp_path), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "H_1_2" in r.output and not (tmp_path / "o").exists()


def test_cli_probe_names_a_missing_data_root_and_explains_the_life_layouts(tmp_path, ckpts):
    r = runner.invoke(app, ["probe", "life", str(ckpts[0]), "--data-root", str(tmp_path / "nope"), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 2 and "nope: no such folder" in r.output and not (tmp_path / "o").exists()
    h = " ".join(runner.invoke(app, ["probe", "--help"]).output.split())
    assert "train/ and test/" in h and "place-disjoint" in h and "last 20% of frames" in h


def test_cli_probe_bad_options_are_one_line_errors(tmp_path, ckpts):
    for extra, msg in ((["--frame-step", "0"], "--frame-step must be >= 1"), (["--depth", "x"], "--depth must be")):
        r = runner.invoke(app, ["probe", "life", str(ckpts[0]), "--data-root", str(tmp_path), *extra])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
