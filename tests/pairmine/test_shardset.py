"""The shard-set format (shardset.py): manifest contents, inspect_shards integrity checks; preview sheet."""

import json

from slife import pairmine as pm
from slife.pairmine.shardset import inspect_shards


def test_manifest_and_inspect(tmp_path, proc_life, small_cfg):
    cfg = small_cfg(strategies=("spatial", "temporal", "random"), preview=2)
    man = json.loads(pm.run(cfg, proc_life, tmp_path, command="slife mine-pairs X").read_text())
    assert man["command"] == "slife mine-pairs X" and man["slife_version"]
    assert man["config"]["strategies"] == ["spatial", "temporal", "random"]
    s = man["summary"]
    assert sum(s["pairs_per_strategy"].values()) == s["pairs"] == man["samples"]
    assert sum(s["jaccard_hist"]["counts"]) > 0 and sum(s["dt_hist"]["counts"]) == s["pairs"]
    assert s["by_strategy"]["spatial"]["jaccard_hist"]["counts"][:1] == [0]  # spatial J >= 0.15
    cov = s["spatial_coverage"]  # posed frames with a spatial pair, recounted from the pair table
    rows = [json.loads(ln) for ln in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    paired = {r[k] for r in rows if "spatial" in r["strategy"].split("+") for k in ("a", "b")}
    assert cov == {"posed_frames": 90, "with_spatial_pair": len(paired), "share": len(paired) / 90}
    r = inspect_shards(tmp_path)
    assert r["ok"], r["problems"]
    assert r["spatial_coverage"] == f"spatial coverage: {len(paired)} of 90 posed frames ({100 * len(paired) / 90:.1f}%) " \
                                   "have a spatial pair" and r["pairs_lost"] is None
    assert r["samples"] == man["samples"] and r["shards"] == len(man["shards"])
    assert r["samples_per_strategy"] == s["written_per_strategy"]
    # preview sheet exists and is an image
    from PIL import Image

    im = Image.open(tmp_path / "preview.png")
    assert im.height >= 3 * 2 * 100
    # corruption is found: a flipped byte (sha256), a truncated tar (unreadable / count)
    tars = sorted(tmp_path.glob("pairs-*.tar"))
    data = bytearray(tars[0].read_bytes())
    data[600] ^= 0xFF
    tars[0].write_bytes(bytes(data))
    tars[1].write_bytes(tars[1].read_bytes()[:2048])
    r = inspect_shards(tmp_path)
    assert not r["ok"]
    text = " ".join(r["problems"])
    assert "pairs-000000.tar: sha256" in text and "pairs-000001.tar" in text
    (tmp_path / "pairs-000002.stats.json").write_text("{broken")  # listed as a problem, not raised
    assert any(p.startswith("pairs-000002.stats.json: unreadable") for p in inspect_shards(tmp_path)["problems"])


def test_inspect_unfinished(tmp_path):
    r = inspect_shards(tmp_path)
    assert not r["ok"] and "manifest.json missing" in r["problems"][0]


def test_is_augmented_reads_the_pair_json():
    from slife.pairmine.shardset import is_augmented

    assert is_augmented({"strategy": "augmented"}) and is_augmented({"strategy": "temporal+augmented"})
    assert is_augmented({"strategy": "x", "video_a": "v", "video_b": "v", "frame_a": 3, "frame_b": 3})
    assert not is_augmented({"strategy": "spatial", "video_a": "v", "video_b": "v", "frame_a": 3, "frame_b": 4})
    assert not is_augmented(None)


def test_view_K_falls_back_to_K_only_when_K_b_is_absent():
    from slife.pairmine.shardset import view_K

    K, Kb = [[1, 0, 2], [0, 1, 2], [0, 0, 1]], [[3, 0, 2], [0, 3, 2], [0, 0, 1]]
    assert view_K({"K": K, "K_b": Kb}, "src") == K and view_K({"K": K, "K_b": Kb}, "tgt") == Kb
    assert view_K({"K": K}, "tgt") == K  # DESIGN.md's fields alone: one K for both views
    assert view_K({"K": K, "K_b": None}, "tgt") is None  # ours: the target's intrinsics are unknown
    assert view_K({}, "src") is None
