import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from typer.testing import CliRunner

from slife.cli import app
from slife.errors import SlifeError
from slife.eval.datasets import nyu, scannet
from slife.eval.depth_probe import AttentiveReadout, align_scale_shift, depth_metrics, mean_metrics

from .models import tiny_checkpoint


def write_nyu(root: Path, n: int = 10, H: int = 48, W: int = 64, train=(1, 3, 5, 7, 9, 10), test=(2, 4, 6, 8)) -> Path:
    """A tiny nyu_depth_v2_labeled.mat (HDF5, MATLAB v7.3 axes) + splits.mat (MATLAB v5), official names."""
    root.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((n, H, W, 3), np.uint8)
    depth = np.zeros((n, H, W), np.float32)
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(n):
        rgb[i, ..., 0] = (xx * 3 + i) % 256
        rgb[i, ..., 1] = (yy * 5) % 256
        rgb[i, ..., 2] = i * 20
        depth[i] = 1.0 + 0.1 * i + yy / H * 3.0  # 1..4.9 m, a floor-like ramp
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)  # (N, 3, W, H) as MATLAB v7.3 stores (H, W, 3, N)
        f["depths"] = depth.transpose(0, 2, 1)  # (N, W, H)
        raw = depth.copy()
        raw[:, :4] = 0
        f["rawDepths"] = raw.transpose(0, 2, 1)
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array(train, float)[:, None],
                                           "testNdxs": np.array(test, float)[:, None]})
    return root


def test_depth_metrics_by_hand():
    gt = np.array([[1.0, 2.0], [4.0, 0.0], [12.0, 5.0]])
    pred = np.array([[1.0, 2.6], [2.0, 5.0], [3.0, 20.0]])  # 20 is clamped to 10; gt 0 and 12 are not scored
    m = depth_metrics(pred, gt)
    # scored: (1,1) (2.6,2) (2,4) (10,5): ratios 1, 1.3, 2, 2
    assert m["delta1"] == 0.25 and m["delta2"] == 0.5 and m["delta3"] == 0.5
    assert m["abs_rel"] == pytest.approx((0 + 0.3 + 0.5 + 1.0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 0.36 + 4 + 25) / 4))
    assert m["log10"] == pytest.approx((0 + math.log10(1.3) + 2 * math.log10(2)) / 4)
    mask = np.array([[True, False], [False, False], [False, False]])
    assert depth_metrics(pred, gt, mask)["abs_rel"] == 0.0
    assert depth_metrics(pred, np.zeros_like(gt)) is None
    g = np.array([1.0, 2.0, 3.0])
    assert depth_metrics(align_scale_shift(0.5 * g - 0.2, g, np.ones(3, bool)), g)["abs_rel"] == pytest.approx(0, abs=1e-9)
    mm = mean_metrics([{"delta1": 1, "delta2": 1, "delta3": 1, "abs_rel": 0.2, "rmse": 1, "log10": 0.1}, None,
                       {"delta1": 0, "delta2": 1, "delta3": 1, "abs_rel": 0.4, "rmse": 3, "log10": 0.3}])
    assert mm["images"] == 2 and mm["abs_rel"] == pytest.approx(0.3) and mm["rmse"] == 2


def test_readout_shapes():
    r = AttentiveReadout(48, (4, 4), 8, dim=32, heads=4)
    out = r(torch.randn(3, 16, 48))
    assert out.shape == (3, 1, 32, 32)
    assert torch.allclose(out, torch.full_like(out, math.log(2.0)))  # head starts at 2 m


def test_nyu_reader_official_layout(tmp_path):
    root = write_nyu(tmp_path / "nyu")
    test = list(nyu.iterate(root, "test"))
    assert [s.name for s in test] == ["2", "4", "6", "8"]
    s = test[1]  # image 4 (1-based) = index 3
    assert s.rgb.shape == (48, 64, 3) and s.depth.shape == (48, 64)
    assert s.rgb[10, 20].tolist() == [(20 * 3 + 3) % 256, 50, 60]
    assert s.depth[0, 0] == pytest.approx(1.3) and s.depth[24, 5] == pytest.approx(1.3 + 1.5)
    assert s.eval_mask.shape == (48, 64) and s.eval_mask.sum() < 48 * 64
    assert len(list(nyu.iterate(root, "train", limit=2))) == 2
    raw = next(nyu.iterate(root, "train", depth_kind="rawDepths"))
    assert (raw.depth[:4] == 0).all() and raw.depth[5, 5] > 0
    d = nyu.describe(root)
    assert d["train"] == 6 and d["test"] == 4 and d["size"] == [64, 48]


def test_nyu_bad_files(tmp_path):
    with pytest.raises(SlifeError, match="nyu_depth_v2_labeled.mat"):
        nyu.describe(tmp_path)
    root = write_nyu(tmp_path / "a")
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "a") as f:
        del f["depths"]
    with pytest.raises(SlifeError, match=r"no 'depths' dataset"):
        list(nyu.iterate(root, "test"))
    scipy.io.savemat(root / "splits.mat", {"train": np.ones((2, 1))})
    with pytest.raises(SlifeError, match="splits.mat: no trainNdxs / testNdxs"):
        list(nyu.iterate(root, "test", depth_kind="rawDepths"))
    (root / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file, not v7.3")
    write_nyu(tmp_path / "b")
    (tmp_path / "b" / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(SlifeError, match="not an HDF5"):
        nyu.describe(tmp_path / "b")
    (tmp_path / "b" / "splits.mat").write_bytes(b"junk")  # scipy's MatReadError
    with pytest.raises(SlifeError, match="splits.mat: not a readable MATLAB splits file"):
        nyu.read_splits(tmp_path / "b" / "splits.mat")


def test_scannet_reader_layout(tmp_path):
    from PIL import Image

    for scene in ("scene0000_00", "scene0001_00"):
        (tmp_path / scene / "color").mkdir(parents=True)
        (tmp_path / scene / "depth").mkdir()
        (tmp_path / scene / "intrinsic").mkdir()
        for i in range(4):
            Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(tmp_path / scene / "color" / f"{i}.jpg")
            Image.fromarray(np.full((15, 20), 1500 + i, np.uint16)).save(tmp_path / scene / "depth" / f"{i}.png")
    with pytest.raises(SlifeError, match="scannetv2_train.txt"):
        list(scannet.iterate(tmp_path, "train"))
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0001_00\n")
    s = list(scannet.iterate(tmp_path, "test", frame_step=2))
    assert [x.name for x in s] == ["scene0001_00/0", "scene0001_00/2"]
    assert s[1].rgb.shape == (15, 20, 3) and s[1].depth[0, 0] == pytest.approx(1.502)
    assert scannet.detect(tmp_path)
    Image.fromarray(np.full((15, 20, 3), 9, np.uint8)).save(tmp_path / "scene0001_00" / "depth" / "2.png")
    with pytest.raises(SlifeError, match=r"depth/2.png: depth PNG is mode RGB"):
        list(scannet.iterate(tmp_path, "test", frame_step=2))


def test_cli_probe_end_to_end(tmp_path):
    root = write_nyu(tmp_path / "nyu")
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(root), "--out", str(out), "--epochs", "10",
                                 "--batch-size", "3", "--lr", "3e-3", "--control-untrained"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "probe.json").read_text())
    assert rep["num_train"] == 6 and rep["num_test"] == 4 and rep["layer"] == "last"
    assert 0 <= rep["metrics"]["delta1"] <= 1 and math.isfinite(rep["metrics"]["abs_rel"])
    assert len(rep["train_loss"]) == 10 and rep["train_loss"][-1] < 0.5 * rep["train_loss"][0]
    # the readout learns the depth ramp: far better than predicting the mean train depth everywhere
    assert rep["metrics"]["abs_rel"] < 0.5 * rep["baseline_mean_depth"]["abs_rel"]
    assert (out / "probe_examples.png").stat().st_size > 1000
    sd = torch.load(out / "probe_readout.pt", weights_only=True)
    assert "readout" in sd and sd["grid"] == [4, 4]
    assert "scale-aware" in r.output and "untrained encoder" in r.output
    assert "…" not in r.output and "untrained, aligned (control)" in r.output
    assert len(rep["control_untrained"]["train_loss"]) == 10 and 0 <= rep["control_untrained"]["metrics"]["delta1"] <= 1
    r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(tmp_path), "--out", str(out)])
    assert r.exit_code == 2 and "nyu_depth_v2_labeled.mat" in r.output


def test_readouts_are_averaged_and_readout_k_is_the_single_run_of_seed_plus_k(tmp_path):
    """--readouts N fits N readouts (seeds SEED..SEED+N-1) on the same tokens: each metric is their mean with the
    standard error of that mean; readout k is exactly the one-readout probe run with seed SEED+k."""
    from slife.eval.depth_probe import ProbeConfig, run

    root = write_nyu(tmp_path / "nyu")
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    base = dict(dataset="nyu", data_root=root, epochs=4, batch_size=3, lr=3e-3)
    rep = json.loads(run(ProbeConfig(**base, seed=5, readouts=3, control_untrained=True), [ck],
                         tmp_path / "three").read_text())
    assert [r["seed"] for r in rep["readouts"]] == [5, 6, 7]
    for kind in ("metrics", "metrics_aligned"):
        vals = [r[kind]["abs_rel"] for r in rep["readouts"]]
        assert len(set(vals)) == 3  # the seed moves the score
        assert rep[kind]["abs_rel"] == pytest.approx(np.mean(vals))
        assert rep[f"{kind}_se"]["abs_rel"] == pytest.approx(np.std(vals, ddof=1) / math.sqrt(3))
    rep2 = json.loads(run(ProbeConfig(**base, seed=5, readouts=2, control_untrained=True, control_oracle=True,
                                      control_position=True), [ck], tmp_path / "two").read_text())
    for ctrl in ("control_untrained", "control_oracle", "control_position"):  # every control: the same readouts
        assert [r["seed"] for r in rep2[ctrl]["readouts"]] == [5, 6] and rep2[ctrl]["metrics_aligned_se"] is not None
    one = json.loads(run(ProbeConfig(**base, seed=6), [ck], tmp_path / "one").read_text())
    assert one["readouts"] is None and one["metrics_se"] is None
    assert one["metrics"] == rep["readouts"][1]["metrics"] and one["train_loss"] == rep["readouts"][1]["train_loss"]
    r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(root), "--out", str(tmp_path / "cli"),
                                 "--epochs", "2", "--batch-size", "3", "--readouts", "2"])
    assert r.exit_code == 0 and "mean of 2 readouts" in r.output and " ± " in r.output, r.output
    cli = json.loads((tmp_path / "cli" / "probe.json").read_text())
    assert f"{cli['metrics']['abs_rel']:.3f} ± {cli['metrics_se']['abs_rel']:.3f}" in r.output
    r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(root), "--readouts", "0"])
    assert r.exit_code != 0 and "--readouts must be >= 1" in r.output


def test_several_blocks_are_standardised_and_concatenated(tmp_path):
    """--layer repeated: each block's tokens standardised per token and concatenated (the readout reads all of
    them); one block as it is; a block named twice or outside the encoder is a one-line error."""
    from slife.eval.depth_probe import encode_split
    from slife.eval.models import image_grid, load_one, model_spec_of

    root = write_nyu(tmp_path / "nyu")
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    model, ckpt = load_one(ck)
    model.eval()
    S = image_grid(model_spec_of(ckpt).kwargs)[0]
    samples = list(nyu.iterate(root / "nyu_depth_v2_labeled.mat", "test"))
    one = encode_split(model, samples, S, [0])["tokens"].float()
    last = encode_split(model, samples, S, [None])["tokens"].float()
    both = encode_split(model, samples, S, [0, None])["tokens"].float()
    D = one.shape[-1]
    assert both.shape == (*one.shape[:2], 2 * D)
    expect = torch.cat([torch.nn.functional.layer_norm(t, (D,)) for t in (one, last)], -1)
    assert torch.allclose(both, expect, atol=2e-2)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(root), "--out", str(out), "--epochs", "2",
                                 "--batch-size", "3", "--layer", "-1", "--layer", "0"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "probe.json").read_text())
    assert rep["layer"] == "0+last" and "layer 0+last" in r.output  # block order, whatever the order given
    assert torch.load(out / "probe_readout.pt", weights_only=True)["enc_dim"] == 2 * D
    from slife.eval.depth_probe import ProbeConfig

    assert ProbeConfig(layers=-1).layers == (-1,) and ProbeConfig(layers=[3, 0]).layers == (3, 0)
    for bad in ((), True, ("1",)):
        with pytest.raises(SlifeError, match="--layer: give one or more encoder block numbers"):
            ProbeConfig(layers=bad)
    for bad, msg in ((["--layer", "1", "--layer", "-1"], "names a block twice"), (["--layer", "99"], "layer 99 outside")):
        r = CliRunner().invoke(app, ["probe", "nyu", str(ck), "--data-root", str(root), "--out", str(out), *bad])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, r.output


def test_life_reader_on_a_synthetic_life(tiny_life, tmp_path):
    from slife.eval.datasets import life

    tr = list(life.iterate(tiny_life, "train"))
    te = list(life.iterate(tiny_life, "test"))
    d = life.describe(tiny_life)
    assert len(tr) == d["train"] and len(te) == d["test"] and d["test"] == round(0.2 * (d["train"] + d["test"]))
    s = te[0]
    assert s.rgb.shape == (48, 64, 3) and s.depth.shape == (48, 64)
    assert 0.1 < np.median(s.depth[s.depth > 0]) < 20
    assert {x.name for x in tr}.isdisjoint({x.name for x in te})
    with pytest.raises(SlifeError, match="depth/"):
        life.describe(tmp_path)


def test_life_reader_place_disjoint_layout(tiny_life, tmp_path):
    """train/ and test/ folders of lives: every frame of the train lives trains, every frame of the test lives tests."""
    from slife.eval.datasets import life

    for split, names in (("train", ("a", "b")), ("test", ("c",))):
        (tmp_path / split).mkdir()
        for nm in names:
            (tmp_path / split / nm).symlink_to(tiny_life, target_is_directory=True)
    d = life.describe(tmp_path)
    one = life.describe(tiny_life)
    n = one["train"] + one["test"]
    assert d["split"] == "places" and one["split"] == "time"
    assert (d["train"], d["test"]) == (2 * n, n)
    assert life.detect(tmp_path) and len(list(life.iterate(tmp_path, "train", limit=3))) == 3
    assert len(list(life.iterate(tmp_path, "test"))) == n
    (tmp_path / "test" / "c").unlink()
    with pytest.raises(SlifeError, match="test: no life folders"):
        life.describe(tmp_path)


def test_depth_oracle_reaches_aligned_absrel_below_005(tiny_life, tmp_path):
    """The positive control: the same readout on the true log-depth (fixed random projection) learns depth,
    so a probe that cannot separate two encoders is not failing for want of a readout that can learn. The
    position prior (the readout on constant tokens) predicts one depth map for every view, and the oracle
    beats it."""
    from slife.eval.depth_probe import AttentiveReadout, ProbeConfig, run

    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    cfg = ProbeConfig(dataset="life", data_root=tiny_life, frame_step=1, epochs=60, batch_size=8, lr=3e-3,
                      control_oracle=True, control_position=True)
    rep = json.loads(run(cfg, [ck], tmp_path / "out").read_text())
    orc, pos = rep["control_oracle"], rep["control_position"]
    assert orc["metrics_aligned"]["abs_rel"] <= 0.05, orc["metrics_aligned"]
    assert orc["metrics_aligned"]["abs_rel"] < rep["metrics_aligned"]["abs_rel"]  # the (random) encoder's tokens
    assert len(orc["train_loss"]) == 60 and orc["metrics"]["images"] == rep["num_test"]
    assert pos["metrics"]["images"] == rep["num_test"] and len(pos["train_loss"]) == 60
    assert pos["metrics_aligned"]["abs_rel"] > 2 * orc["metrics_aligned"]["abs_rel"]  # 0.12 against 0.045 here
    # constant tokens: what the readout predicts depends on the patch's position only, the same for every view
    ro = AttentiveReadout(16, (4, 4), 2, dim=32, heads=4)
    torch.nn.init.normal_(ro.head.weight)
    out = ro(torch.zeros(3, 16, 16))
    assert out.shape == (3, 1, 8, 8) and out.std() > 0 and torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_cli_probe_leaves_out_unreadable_depth_maps(tiny_life, tmp_path):
    """A view whose depth PNG is junk is left out, named, counted and warned about; all test views junk -> exit 2."""
    import shutil

    from slife.eval.datasets import life

    root = tmp_path / "life"
    shutil.copytree(tiny_life, root)
    n_test = life.describe(root, frame_step=1)["test"]
    depth = sorted((root / "depth").glob("*.png"))
    (depth[-1]).write_text("junk")
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    out = tmp_path / "out"
    args = ["probe", "life", str(ck), "--data-root", str(root), "--epochs", "1", "--frame-step", "1"]
    r = CliRunner().invoke(app, args + ["--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "probe.json").read_text())
    assert rep["num_test"] == n_test - 1 and rep["skipped_views"]["test"] == 1 and rep["skipped_views"]["train"] == 0
    assert rep["skipped_views"]["views"][0]["file"].endswith(depth[-1].name)
    text = " ".join(r.output.split())
    assert "left out 0 train and 1 test views" in text
    assert "WARNING" in text and f"{depth[-1].name}: unreadable depth map" in text
    # one life: the test split shares its places with training, said at warning level
    assert "one life, split in time: its last 20% of frames test the probe and show the same places" in text
    for p in depth[-n_test:]:
        p.write_text("junk")
    r = CliRunner().invoke(app, args + ["--out", str(tmp_path / "out2")])
    assert r.exit_code == 2 and f"0 train and {n_test} test views left out" in " ".join(r.output.split())
    assert not (tmp_path / "out2").exists()  # a failed run leaves no empty output folder


def test_several_learning_rates_are_chosen_on_a_held_out_training_place(tiny_life, tiny_life_b, tmp_path):
    """--lr repeated: each encoder and control fits one readout per rate on the training places but the last and
    takes the rate with the lowest validation AbsRel on that place; the readouts then train on every training
    view at that rate, exactly as a one-rate probe at it would. Views not named PLACE/FRAME validate on the last
    20%. A rate given twice, or not > 0, is a one-line error."""
    from slife.eval.depth_probe import ProbeConfig, run, validation_split

    fit, val, what = validation_split(["b/0", "a/1", "b/2", "a/3", "c/4"])
    assert list(fit) == [0, 1, 2, 3] and list(val) == [4] and "training place c (1 views" in what
    # ScanNet: the scans of one room (scene0705_00, _01, _02) are one place
    fit, val, what = validation_split(["scene0705_00/0", "scene0705_01/0", "scene0001_00/0", "scene0705_02/5"])
    assert list(val) == [0, 1, 3] and "training place scene0705 (3 views" in what
    fit, val, what = validation_split([str(i) for i in range(10)])
    assert list(val) == [8, 9] and list(fit) == list(range(8)) and "not place-disjoint" in what
    root = tmp_path / "places"
    for split, lives in (("train", {"a": tiny_life, "b": tiny_life_b}), ("test", {"c": tiny_life})):
        (root / split).mkdir(parents=True)
        for nm, src in lives.items():
            (root / split / nm).symlink_to(src, target_is_directory=True)
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    base = dict(dataset="life", data_root=root, frame_step=2, epochs=6, batch_size=8, seed=1)
    rep = json.loads(run(ProbeConfig(**base, lr=(1e-6, 3e-3), control_untrained=True), [ck],
                         tmp_path / "grid").read_text())
    ch = rep["lr_choice"]
    assert "training place tiny-office" in ch["validation"] and set(ch["scores"]) == {"1e-06", "0.003"}
    assert ch["scores"]["0.003"] != ch["scores"]["1e-06"] and rep["lr"] == float(min(ch["scores"], key=ch["scores"].get))
    un = rep["control_untrained"]["lr_choice"]  # each control chooses its own, on the same views
    assert un["validation"] == ch["validation"] and un["scores"] != ch["scores"]
    one = json.loads(run(ProbeConfig(**base, lr=rep["lr"]), [ck], tmp_path / "one").read_text())
    assert one["lr"] == rep["lr"] and one["lr_choice"] is None
    assert rep["metrics"] == one["metrics"] and rep["train_loss"] == one["train_loss"]  # then the same readout
    r = CliRunner().invoke(app, ["probe", "life", str(ck), "--data-root", str(root), "--out", str(tmp_path / "cli"),
                                 "--epochs", "2", "--frame-step", "2", "--lr", "1e-3", "--lr", "1e-2"])
    assert r.exit_code == 0 and "learning rate chosen on the views of training place tiny-office" in " ".join(r.output.split())
    for bad, msg in ((["--lr", "1e-3", "--lr", "1e-3"], "names a rate twice"), (["--lr", "0"], "rates > 0"),
                     (["--lr", "inf"], "rates > 0")):
        r = CliRunner().invoke(app, ["probe", "life", str(ck), "--data-root", str(root), *bad])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, r.output


def test_progress_counts_each_fit_from_zero_to_its_total(tmp_path):
    """The probe's progress: each fit (the encoder's, each control's) starts a new count that ends at its total
    (encoding, the learning-rate choice and every readout's steps), so the CLI's bar never runs past its end."""
    from slife.eval.depth_probe import ProbeConfig, run

    root = write_nyu(tmp_path / "nyu")
    ck = tiny_checkpoint(tmp_path / "enc.pt", seed=3)
    calls = []
    run(ProbeConfig(dataset="nyu", data_root=root, epochs=2, batch_size=3, readouts=2, lr=(1e-3, 3e-3),
                    control_untrained=True, control_oracle=True, control_position=True), [ck], tmp_path / "out",
        progress=lambda n=1, **kw: calls.append((n, kw)))
    fits, count, total = [], 0, None
    for n, kw in calls + [(0, {"reset": True})]:
        if kw.get("reset"):
            if total is not None:
                fits.append((count, total))
            count, total = 0, None
        total = kw.get("total", total)
        count += n
    assert len(fits) == 4 and all(c == t for c, t in fits), fits
    assert [kw["description"] for _, kw in calls if kw.get("reset")] == [
        "probe: encoder", "probe: untrained encoder (control)", "probe: depth oracle (control)",
        "probe: position prior (control)"]
