import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slife.errors import SlifeError
from slife.eval.correspondence import (MatchConfig, dense_correspondence, epe_metrics, homography_correspondence,
                                       pixel_centres, rescale_homography, run, score_pair, soft_argmax)
from slife.eval.datasets.hpatches import read_pairs
from slife.eval.groundtruth import homography_to_model_frame, matches_from_homography, patch_centres

from .models import TINY, tiny_model
from .synthetic import map_towards

GRAFFITI = Path(__file__).resolve().parents[2] / "../shared/data/graffiti_homography"
need_graffiti = pytest.mark.skipif(not GRAFFITI.is_dir(), reason=f"real data absent: {GRAFFITI}")


def test_true_homography_flow_has_zero_error_and_a_shift_its_size():
    H = np.array([[0.9, 0.1, 5.0], [-0.05, 1.1, -3.0], [1e-4, 0, 1.0]])
    gt, valid = homography_correspondence(H, (40, 30), (50, 40))
    assert valid.sum() > 600
    m = epe_metrics(gt, gt, valid)
    assert m["epe"] == 0.0 and m["pck1"] == 1.0
    s = epe_metrics(gt + np.array([2.4, 3.2]), gt, valid)
    assert s["epe"] == pytest.approx(4.0) and s["pck3"] == 0.0 and s["pck5"] == 1.0
    # a pure translation of (7, -2) pixels: the identity (zero-flow) error is its length everywhere
    T = np.array([[1, 0, 7.0], [0, 1, -2.0], [0, 0, 1]])
    gt2, v2 = homography_correspondence(T, (40, 30), (40, 30))
    assert epe_metrics(pixel_centres((40, 30)), gt2, v2)["epe"] == pytest.approx(math.hypot(7, 2))
    assert v2.sum() == (40 - 7) * (30 - 2)


def test_soft_argmax_and_upsampling_of_the_identity():
    grid, patch = (4, 4), 8
    c = torch.from_numpy(patch_centres(grid, patch))
    A = -torch.cdist(c, c) ** 2 * 10  # (16, 16) sharply peaked at the same position
    corr = soft_argmax(A.float(), grid, patch).double().numpy()
    assert np.allclose(corr, patch_centres(grid, patch), atol=1e-3)
    pred = dense_correspondence(patch_centres(grid, patch), grid, patch, (50, 40), (100, 80))
    assert np.allclose(pred, pixel_centres((50, 40)) * 2)  # identity in normalised coordinates


def test_truth_attention_scores_displaced_accuracy_one():
    grid, patch, S = (8, 8), 8, 64
    size = (128, 96)
    H = np.array([[1, 0, 48.0], [0, 1, 0], [0, 0, 1]])  # 48 px = 3 model patches across
    Hm = homography_to_model_frame(H, size, size, (S, S))
    ti = matches_from_homography(Hm, grid, patch)
    maps = torch.stack([map_towards(ti) * 50, map_towards(np.arange(64)) * 50])  # (2 blocks, N, N)
    r = score_pair(maps[:1], H, size, size, grid, patch)
    assert r["patch_accuracy"] == 1.0 and r["patch_accuracy_displaced"] == 1.0
    assert r["same_position_accuracy_displaced"] == 0.0
    assert r["displaced_patch_share"] == 1.0
    # chance: true matches in source columns 3..7 (targets 0..4), any row; mean 3x3-neighbourhood size
    # 2.75 rows x 2.8 columns over 64 patches; every known patch is displaced
    assert r["chance_accuracy"] == pytest.approx(2.75 * 2.8 / 64)
    assert r["chance_accuracy_displaced"] == pytest.approx(2.75 * 2.8 / 64)
    assert r["model"]["epe"] < 2  # coarse soft-argmax flow is near the truth (blur at the border)
    assert r["identity"]["epe"] == pytest.approx(48.0)
    assert r["grid_oracle"]["epe"] == pytest.approx(0.0, abs=1e-9)  # a translation is exact on any grid
    ident = score_pair(maps[1:], H, size, size, grid, patch)
    assert ident["patch_accuracy_displaced"] == 0.0 and ident["patch_accuracy"] == 0.0
    both = score_pair(maps, H, size, size, grid, patch)
    assert both["patch_accuracy_per_block"] == [1.0, 0.0]


def _hpatches_from_graffiti(root: Path, side: int = 160) -> Path:
    seq = root / "v_graffiti"
    seq.mkdir(parents=True)
    with Image.open(GRAFFITI / "img1.png") as im:
        f = side / max(im.size)
    for i in range(1, 7):
        with Image.open(GRAFFITI / f"img{i}.png") as im:
            im.convert("RGB").resize((round(im.size[0] * f), round(im.size[1] * f)), Image.BILINEAR).save(seq / f"{i}.ppm")
        if i > 1:
            H = np.loadtxt(GRAFFITI / f"H1to{i}p")
            np.savetxt(seq / f"H_1_{i}", rescale_homography(H, f, f))
    (root / "i_other").mkdir()  # an illumination folder without files is ignored
    return root


@need_graffiti
def test_match_on_real_graffiti(tmp_path):
    root = _hpatches_from_graffiti(tmp_path / "hp", side=96)
    pairs, counts = read_pairs(root)
    assert [p.index for p in pairs] == [2, 3, 4, 5, 6] and counts["sequences"] == 1
    oxford, _ = read_pairs(GRAFFITI)  # Oxford file names read too
    assert len(oxford) == 5 and np.allclose(oxford[1].H[0, 0], 0.76285898)
    out = run(MatchConfig(data_root=root), [], tmp_path / "out", models=[("tiny", tiny_model(0), TINY)])
    rep = json.loads(out.read_text())
    res = rep["models"]["tiny"]
    assert set(res["per_index"]) == {"2", "3", "4", "5", "6"}
    for key in ("model", "identity"):
        assert math.isfinite(res["overall"][key]["aepe"]) and 0 <= res["overall"][key]["pck5"] <= 1
    assert res["per_index"]["6"]["identity"]["aepe"] > res["per_index"]["2"]["identity"]["aepe"]
    assert 0 < res["overall"]["displaced_patch_share"] <= 1
    assert (tmp_path / "out" / "match.csv").read_text().count("\n") == 1 + 6 * 5
    oracle = res["overall"]["grid_oracle"]
    assert oracle["aepe"] < 0.2 * res["overall"]["identity"]["aepe"] and oracle["pck5"] > 0.3
    assert (tmp_path / "out" / "match.png").stat().st_size > 1000


def test_bad_layouts_name_the_expected_files(tmp_path):
    (tmp_path / "v_x").mkdir()
    (tmp_path / "v_x" / "1.ppm").write_bytes(b"")
    with pytest.raises(SlifeError, match=r"H_1_2"):
        read_pairs(tmp_path)
    (tmp_path / "v_x" / "H_1_2").write_text("1 2 3\n")
    (tmp_path / "v_x" / "2.ppm").write_bytes(b"")
    with pytest.raises(SlifeError, match=r"H_1_2: not a 3x3 homography"):
        read_pairs(tmp_path)
    with pytest.raises(ValueError):
        MatchConfig(temperature=0)
