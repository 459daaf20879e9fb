"""Shard-set generations (generations.py + the miner): a grown life re-mined appends a generation of tars,
old tars byte-identical; new pairs involve new frames; nothing new writes nothing; changed recordings refused;
SIGKILL + resume equals one append; a set made before generations is adopted as generation 0; quotas per generation."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace

import numpy as np
import pytest

from slife import pairmine as pm
from slife.errors import SlifeError
from slife.pairmine.generations import new_frames, restrict
from slife.pairmine.ingest import FrameTable, decode_order
from slife.pairmine.shardset import inspect_shards, manifest_shards

TINY_CFG = dict(strategies=("spatial", "temporal", "random", "augmented"), fps=0, short_side=24, min_gap=0.1,
                max_gap=0.5, pairs_per_shard=10)


def _sha(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("pairs-*.tar"))}


def _metas(folder, names) -> dict:
    """key -> the sample's json over the tars `names`."""
    out = {}
    for n in names:
        with tarfile.open(folder / n) as tf:
            for m in tf:
                if m.name.endswith(".json"):
                    out[m.name[: -len(".json")]] = json.loads(tf.extractfile(m).read())
    return out


def _locations(folder) -> dict:
    """generation -> its frame-location index (meta and arrays as lists) for every locations-NNNN.npz."""
    from slife.pairmine.shardset import read_locations

    out = {}
    for p in sorted(folder.glob("locations-*.npz")):
        g = int(p.stem.split("-")[1])
        meta, arrays, err = read_locations(folder, g)
        assert not err, err
        out[g] = {"meta": meta, **{k: v.tolist() for k, v in arrays.items()}}
    return out


def _files(folder) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def grown(tiny_life, tmp_path_factory):
    """A copy of the 2-day tiny life, mined (the set `first`), then grown by a third day (`slife synth --append-days`)."""
    from slife.synth import append_days

    root = tmp_path_factory.mktemp("grown")
    life = root / "life"
    shutil.copytree(tiny_life, life)
    pm.run(pm.MineConfig(**TINY_CFG), life, root / "first")
    append_days(life, 1)
    return life, root / "first"


def test_a_grown_life_gets_a_new_generation(grown, tmp_path):
    life, first = grown
    out = tmp_path / "s"
    shutil.copytree(first, out)
    old = _sha(out)
    man = json.loads(pm.run(pm.MineConfig(**TINY_CFG), life, out).read_text())
    new = {k: v for k, v in _sha(out).items() if k not in old}
    assert {k: _sha(out)[k] for k in old} == old and len(new) >= 3  # old tars byte-identical, new ones added
    g0, g1 = man["generations"]
    assert [r["name"] for r in g0["recordings"]] == ["video"] and [r["name"] for r in g1["recordings"]] == ["video-001"]
    assert g1["first_pair"] == g0["pairs"] and g1["first_shard"] == g0["shards"] == len(old)
    assert g1["added"] >= g0["added"] and g1["summary"]["frames_new"] == 16
    assert man["samples"] == g0["samples"] + g1["samples"] and man["summary"]["pairs"] == g0["pairs"] + g1["pairs"]
    assert man["summary"]["frames_used"] <= man["summary"]["frames_sampled"] == 48
    assert [s["generation"] for s in man["shards"]] == [0] * len(old) + [1] * len(new)
    metas = _metas(out, sorted(new))
    assert len(metas) == g1["samples"] and min(int(k.split("_")[-1]) for k in metas) == g0["pairs"]  # keys follow
    assert all("video-001" in (m["video_a"], m["video_b"]) for m in metas.values())  # every new pair: a new frame
    for s in ("temporal", "augmented"):
        assert any(s in m["strategy"] for m in metas.values())
        assert all(m["video_a"] == m["video_b"] == "video-001" for m in metas.values() if m["strategy"] == s)
    # spatial pairs join the new day with the old days where it revisits their places
    cross = [m for m in metas.values() if "spatial" in m["strategy"] and m["video_a"] != m["video_b"]]
    assert len(cross) >= 5 and all(0.15 <= m["jaccard"] <= 0.75 for m in cross)
    P = np.load(life / "poses.npz")
    centre = P["T_world_cam"][:, :3, 3]  # (N, 3)
    d_pairs = [np.linalg.norm(np.array(m["T_a"])[:3, 3] - np.array(m["T_b"])[:3, 3]) for m in cross]
    d_any = np.linalg.norm(centre[32:, None] - centre[None, :32], axis=2)  # every new x old frame
    assert np.median(d_pairs) < np.median(d_any)
    # the set reads as one: every tar listed with its count; the integrity check passes
    assert sum(s.samples for s in manifest_shards(out)) == man["samples"] and inspect_shards(out)["ok"]
    rows = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert [r["pair"] for r in rows] == list(range(g0["pairs"] + g1["pairs"]))
    # nothing new: nothing written
    before = _files(out)
    assert pm.run(pm.MineConfig(**TINY_CFG), life, out) == out / "manifest.json"
    assert _files(out) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_old_frames_are_taken_from_the_old_tars(grown, tmp_path, monkeypatch, workers):
    """An append decodes the new recordings (and old frames no earlier pair used), not the old videos; the bytes
    equal decoding everything. (Forked writers decode in their own processes: counted with one worker only.)"""
    from slife.lives.life import Life
    from slife.pairmine import generations

    life, first = grown
    cfg = pm.MineConfig(**{**TINY_CFG, "workers": workers})
    used = {r[k] for r in map(json.loads, (first / "pairs.jsonl").read_text().splitlines()) for k in ("a", "b")}
    decoded = []
    real = Life.iter_frames
    monkeypatch.setattr(Life, "iter_frames", lambda self, ids, *a, **k: (
        (decoded.append(i) or (i, rgb)) for i, rgb in real(self, ids, *a, **k)))
    shutil.copytree(first, tmp_path / "a")
    shutil.copytree(first, tmp_path / "b")
    man = json.loads(pm.run(cfg, life, tmp_path / "a").read_text())
    rows = [json.loads(x) for x in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
    old = {r[k] for r in rows[man["generations"][1]["first_pair"]:] for k in ("a", "b")} & used
    assert len(old) > 10  # new x old pairs need old frames ...
    if workers == 1:
        assert decoded and not old & set(decoded)  # ... which were not decoded again
    monkeypatch.setattr(generations, "stored_locations", lambda *a, **k: {})
    pm.run(cfg, life, tmp_path / "b")  # every frame decoded: the same bytes
    assert _sha(tmp_path / "a") == _sha(tmp_path / "b")


def test_an_append_finds_old_frames_through_the_location_index(grown, tmp_path, monkeypatch, caplog):
    """Each generation indexes where its tars hold each frame (locations-NNNN.npz); an append looks the old frames
    up there, reading neither the earlier pairs nor an old tar's headers. A damaged, missing or stale index
    falls back to reading them (logged at info), gives the same tars byte for byte, and is written again."""
    import logging

    from slife.pairmine import generations, shardset

    life, first = grown
    cfg = pm.MineConfig(**TINY_CFG)
    assert [p.name for p in first.glob("locations-*.npz")] == ["locations-0000.npz"]
    index0 = _locations(first)[0]
    assert index0["meta"]["shards"] == len(_sha(first)) and len(index0["frame"]) > 20
    assert all(s >= 0 for s in index0["shard"]) and all(n > 0 for n in np.array(index0["loc"])[:, 1])
    read = []
    real_members, real_rows = shardset.tar_members, generations._ends_of_rows
    monkeypatch.setattr(shardset, "tar_members", lambda path: read.append(path.name) or real_members(path))
    monkeypatch.setattr(generations, "_ends_of_rows", lambda rows: read.append("pairs.jsonl") or real_rows(rows))
    shutil.copytree(first, tmp_path / "fast")
    old = set(_sha(first))
    man = json.loads(pm.run(cfg, life, tmp_path / "fast").read_text())
    assert read and not old & set(read) and "pairs.jsonl" not in read  # only the new tars, indexed once written
    assert sorted(_locations(tmp_path / "fast")) == [0, 1] and _locations(tmp_path / "fast")[0] == index0
    assert len(_locations(tmp_path / "fast")[1]["frame"]) >= man["generations"][1]["summary"]["frames_new"]
    out = tmp_path / "misplaced"  # reads well but points 512 bytes off: those frames are decoded again
    shutil.copytree(first, out)
    meta, arrays, _ = shardset.read_locations(out, 0)
    shardset.write_locations(out, 0, meta, **{**arrays, "loc": np.asarray(arrays["loc"]) + 512})
    with caplog.at_level(logging.INFO, logger="slife.pairmine.shards"):
        pm.run(cfg, life, out)
    assert "are not where the frame-location index says" in caplog.text
    assert _sha(out) == _sha(tmp_path / "fast")
    for how in ("damaged", "missing", "stale"):
        out = tmp_path / how
        shutil.copytree(first, out)
        p = out / "locations-0000.npz"
        if how == "damaged":
            p.write_bytes(p.read_bytes()[:100])
        elif how == "missing":
            p.unlink()
        else:  # made for another run of generation 0
            meta, arrays, _ = shardset.read_locations(out, 0)
            shardset.write_locations(out, 0, {**meta, "run": "0" * 16}, **arrays)
        read.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="slife.pairmine.generations"):
            pm.run(cfg, life, out)
        assert {"damaged": "locations-0000.npz is damaged", "missing": "locations-0000.npz is missing",
                "stale": "locations-0000.npz was made for another generation 0"}[how] in caplog.text
        assert "tars are read instead, and their frame-location index written again" in caplog.text
        assert "pairs.jsonl" in read and old <= set(read)
        assert _sha(out) == _sha(tmp_path / "fast") and _locations(out) == _locations(tmp_path / "fast")


@pytest.fixture()
def proc_grown(proc_life):
    """The procedural life as it was with two recordings (day0, day1), and grown (day2 added)."""
    table = FrameTable(proc_life, decode_order(proc_life), len(proc_life))
    return restrict(table, ["day0", "day1"]).life, proc_life


def test_changed_or_removed_recordings_are_refused(tmp_path, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("temporal", "random"))
    out = tmp_path / "s"
    pm.run(cfg, before, out)
    sha = _sha(out)
    moved = after.T_world_cam.copy()
    moved[after.source == 1, :3, 3] += 0.01  # day1 changed (as if its poses were computed again)
    with pytest.raises(SlifeError, match="recording 'day1' changed since generation 0.*--overwrite"):
        pm.run(cfg, replace(after, T_world_cam=moved), out)
    gone = FrameTable(after, decode_order(after), len(after))
    with pytest.raises(SlifeError, match="recording 'day1' of generation 0 is no longer in the life"):
        pm.run(cfg, restrict(gone, ["day0", "day2"]).life, out)
    assert _sha(out) == sha
    (out / "locations-0001.npz").write_bytes(b"left by an earlier append")
    man = json.loads(pm.run(replace(cfg, overwrite=True), replace(after, T_world_cam=moved), out).read_text())
    assert [p.name for p in out.glob("locations-*.npz")] == ["locations-0000.npz"]  # --overwrite removed the rest
    assert len(man["generations"]) == 1 and [r["name"] for r in man["generations"][0]["recordings"]] == \
        ["day0", "day1", "day2"]


def test_quotas_and_per_frame_apply_per_generation(tmp_path, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"), max_pairs=40, ratios=(("spatial", 0.5), ("temporal", 0.5)))
    pm.run(cfg, before, tmp_path / "s")
    man = json.loads(pm.run(cfg, after, tmp_path / "s").read_text())
    assert [g["pairs"] for g in man["generations"]] == [40, 40] and man["samples"] == 80
    assert [g["summary"]["combine"]["taken"] for g in man["generations"]] == [{"spatial": 20, "temporal": 20}] * 2
    man = json.loads(pm.run(small_cfg(strategies=("spatial",), per_frame=2), before, tmp_path / "p").read_text())
    man = json.loads(pm.run(small_cfg(strategies=("spatial",), per_frame=2), after, tmp_path / "p").read_text())
    rows = [json.loads(x) for x in (tmp_path / "p" / "pairs.jsonl").read_text().splitlines()]
    new = [r for r in rows if r["pair"] >= man["generations"][1]["first_pair"]]
    src = {}
    for r in new:  # each NEW frame keeps its 2 best partners as the source view, per generation
        src[(r["video_a"], r["frame_a"])] = src.get((r["video_a"], r["frame_a"]), 0) + 1
    assert max(src.values()) <= 2 and all(v == "day2" for v, _ in src)  # old frames get no slots of their own
    assert any(r["video_b"] != "day2" for r in new)  # ... but are partners of new frames


APPEND_WRITER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from slife import pairmine as pm\n"
    "from slife.pairmine import shards\n"
    "from slife.pairmine.procedural import make_life\n"
    "real = shards.encode_frame\n"
    "def slow(*a, **k):\n"
    "    time.sleep(0.03)\n"
    "    return real(*a, **k)\n"
    "shards.encode_frame = slow\n"
    "life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=Path(sys.argv[1]))\n"
    "cfg = pm.MineConfig(strategies=('spatial', 'temporal'), fps=0, voxel=0.3, short_side=16, pairs_per_shard=20)\n"
    "pm.run(cfg, life, sys.argv[2])\n"
)


def test_sigkill_during_the_append_then_rerun_equals_one_append(tmp_path, proc_images, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_per_shard=20)
    first = tmp_path / "first"
    g0 = json.loads(pm.run(cfg, before, first).read_text())["generations"][0]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    shutil.copytree(first, ref)
    shutil.copytree(first, out)
    man_ref = json.loads(pm.run(cfg, after, ref).read_text())
    proc = subprocess.Popen([sys.executable, "-c", APPEND_WRITER, str(proc_images), str(out)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / f"pairs-{g0['shards']:06d}.stats.json").exists():
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    written = len(list(out.glob("pairs-*.stats.json")))
    assert g0["shards"] < written < len(man_ref["shards"]), "not killed during the append"
    assert len(json.loads((out / "manifest.json").read_text())["generations"]) == 1  # the old manifest stands
    man = json.loads(pm.run(cfg, after, out).read_text())
    assert _sha(out) == _sha(ref) and not list(out.glob(".*tmp*")) and _locations(out) == _locations(ref)
    strip = lambda m: [{k: v for k, v in g.items() if k not in ("added", "command")} for g in m["generations"]]  # noqa: E731
    assert strip(man) == strip(man_ref) and man["shards"] == man_ref["shards"]
    assert (out / "pairs.jsonl").read_bytes() == (ref / "pairs.jsonl").read_bytes()


def test_a_set_made_before_generations_is_generation_0(tmp_path, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"))
    out = tmp_path / "s"
    legacy = json.loads(pm.run(cfg, before, out).read_text())
    del legacy["generations"]  # what slife wrote before generations: no generations, no generation per shard
    for s in legacy["shards"]:
        del s["generation"]
    (out / "manifest.json").write_text(json.dumps(legacy, indent=1))
    shutil.copytree(out, tmp_path / "changed")
    sha = _sha(out)
    man = json.loads(pm.run(cfg, after, out).read_text())
    g0, g1 = man["generations"]
    assert g0["added"] is None and g0["pairs"] == legacy["summary"]["pairs"] and g0["shards"] == len(sha)
    assert {k: v for k, v in _sha(out).items() if k in sha} == sha and g1["pairs"] > 0
    moved = after.T_world_cam.copy()
    moved[after.source == 0, :3, 3] += 0.01
    with pytest.raises(SlifeError, match="before shard sets had generations.*changed since; pass --overwrite"):
        pm.run(cfg, replace(after, T_world_cam=moved), tmp_path / "changed")


def test_a_damaged_tar_of_an_old_generation_is_written_again(tmp_path, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("temporal",), pairs_per_shard=25)
    pm.run(cfg, before, tmp_path / "s")
    man = json.loads(pm.run(cfg, after, tmp_path / "s").read_text())
    sha = _sha(tmp_path / "s")
    tar = tmp_path / "s" / man["shards"][0]["name"]
    index = _locations(tmp_path / "s")
    tar.write_bytes(tar.read_bytes()[:1024])
    pm.run(cfg, after, tmp_path / "s")
    assert _sha(tmp_path / "s") == sha
    assert _locations(tmp_path / "s") == index  # the repaired tar's frames indexed again


def test_a_damaged_tar_of_a_later_spatial_generation_is_written_again_or_refused(tmp_path, proc_grown, small_cfg):
    """A later generation's spatial pairs are mined again by the rule its record names: the same bytes. A later
    generation recorded without a rule (mined by an older slife, whose rule ranked over the whole life) is
    refused in one line naming --overwrite, its other tars untouched."""
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_per_shard=25)
    out = tmp_path / "s"
    pm.run(cfg, before, out)
    man = json.loads(pm.run(cfg, after, out).read_text())
    g0, g1 = man["generations"]
    assert "spatial_rule" not in g0 and g1["spatial_rule"] == "new-frames" and g1["shards"] >= 2
    sha = _sha(out)
    tar = out / man["shards"][g1["first_shard"]]["name"]
    tar.write_bytes(tar.read_bytes()[:1024])
    pm.run(cfg, after, out)
    assert _sha(out) == sha
    del man["generations"][1]["spatial_rule"]  # as a set mined before the rule
    (out / "manifest.json").write_text(json.dumps(man, indent=1))
    tar.write_bytes(tar.read_bytes()[:1024])
    with pytest.raises(SlifeError, match=r"pairs-000\d+\.tar of generation 1 is missing or damaged \(1 shard\(s\)\) "
                                         r"and generation 1 was mined by an older slife.*pass --overwrite"):
        pm.run(cfg, after, out)
    assert {k: v for k, v in _sha(out).items() if k != tar.name} == {k: v for k, v in sha.items() if k != tar.name}


def test_nodes_then_merge_append_like_one_node(tmp_path, proc_grown, small_cfg):
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_per_shard=15)
    pm.run(cfg, before, tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "nodes")
    one = json.loads(pm.run(cfg, after, tmp_path / "one").read_text())
    for rank in (1, 0):
        pm.run(replace(cfg, num_nodes=2, node_rank=rank), after, tmp_path / "nodes")
    man = json.loads(pm.run(replace(cfg, num_nodes=2), after, tmp_path / "nodes", merge=True).read_text())
    assert _sha(tmp_path / "nodes") == _sha(tmp_path / "one") and man["shards"] == one["shards"]
    assert _locations(tmp_path / "nodes") == _locations(tmp_path / "one") and sorted(_locations(tmp_path / "one")) == [0, 1]
    assert [g["run"] for g in man["generations"]] == [g["run"] for g in one["generations"]]


def test_an_append_counts_its_losses_and_coverage_and_strict_stops_it(tmp_path, proc_images, small_cfg):
    """Generations with dataloss's counts: each generation's summary splits its own lost frames into missing and
    corrupt (the old one keeps what it recorded), the set adds them up; coverage is the new frames' per
    generation and the grown life's for the set; --strict stops an append that loses pairs, the old manifest
    standing."""
    from slife.pairmine.procedural import make_life

    imgs = tmp_path / "imgs"
    shutil.copytree(proc_images, imgs)
    after = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=imgs)
    before = restrict(FrameTable(after, decode_order(after), len(after)), ["day0", "day1"]).life
    (imgs / "day0" / "000004.png").write_bytes(b"not a png")
    cfg = small_cfg(strategies=("spatial", "temporal"))
    out = tmp_path / "s"
    g0 = json.loads(pm.run(cfg, before, out).read_text())["generations"][0]["summary"]
    assert (g0["frames_missing"], g0["frames_corrupt"], g0["first_corrupt"]) == (0, 1, str(imgs / "day0" / "000004.png"))
    (imgs / "day2" / "000010.png").unlink()  # a frame of the new day is gone
    with pytest.raises(SlifeError, match=r"--strict: generation 1: \d+ of \d+ pairs .* were not written: 1 frame with "
                                         r"image file missing \(first: .*day2/000010.png\)"):
        pm.run(replace(cfg, strict=True), after, out)
    assert len(json.loads((out / "manifest.json").read_text())["generations"]) == 1  # the old manifest stands
    man = json.loads(pm.run(cfg, after, out).read_text())  # without --strict: finished, with the losses said
    s, (h0, h1) = man["summary"], [g["summary"] for g in man["generations"]]
    assert {k: h0[k] for k in ("frames_missing", "frames_corrupt", "first_corrupt")} == \
        {k: g0[k] for k in ("frames_missing", "frames_corrupt", "first_corrupt")}
    assert h1["frames_missing"] == 1 and h1["first_missing"] == str(imgs / "day2" / "000010.png")
    for k in ("frames_missing", "frames_corrupt", "pairs_dropped_corrupt"):
        assert s[k] == h0[k] + h1[k]
    assert s["first_missing"] == h1["first_missing"] and s["first_corrupt"] == str(imgs / "day0" / "000004.png")
    assert man["samples"] == s["pairs"] - s["pairs_dropped_corrupt"]
    assert [w for w in man["warnings"] if "were not written" in w] == [
        f"generation 1: {h1['pairs_dropped_corrupt']} of {h1['pairs']} pairs "
        f"({100 * h1['pairs_dropped_corrupt'] / h1['pairs']:.1f}%) were not written: "
        + "; ".join([f"1 frame with image file missing (first: {imgs / 'day2' / '000010.png'})"]
                    + ([f"{h1['frames_corrupt']} frame with pixels that do not decode (first: {imgs / 'day0' / '000004.png'})"]
                       if h1["frames_corrupt"] else []))]
    # coverage, recounted from the pair table by (recording, frame): the new day's in generation 1, all in the set
    rows = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    lost = {("day0", 4), ("day2", 10)}  # pairs with these frames are not in the tars: they cover nothing
    spatial = [r for r in rows if "spatial" in r["strategy"].split("+")
               and not {(r["video_a"], r["frame_a"]), (r["video_b"], r["frame_b"])} & lost]
    paired = {(r[f"video_{v}"], r[f"frame_{v}"]) for r in spatial for v in "ab"}
    new_paired = {(r[f"video_{v}"], r[f"frame_{v}"]) for r in spatial if r["pair"] >= man["generations"][1]["first_pair"]
                  for v in "ab"} & {("day2", int(f)) for f in after.frame_index[after.source == 2]}
    n_new = int((after.source == 2).sum())
    assert s["spatial_coverage"] == {"posed_frames": 90, "with_spatial_pair": len(paired), "share": len(paired) / 90}
    assert h1["spatial_coverage"] == {"posed_frames": n_new, "with_spatial_pair": len(new_paired),
                                      "share": len(new_paired) / n_new, "new": True}
    assert len(paired) > h0["spatial_coverage"]["with_spatial_pair"] and len(new_paired) > 0
    r = inspect_shards(out)
    assert r["ok"] and r["pairs_lost"].startswith(f"{s['pairs_dropped_corrupt']} of {s['pairs']} pairs")
    assert r["spatial_coverage"].startswith(f"spatial coverage: {len(paired)} of 90 posed frames")
    assert r["generations"][1]["spatial_coverage"].startswith(f"spatial coverage: {len(new_paired)} of its {n_new} "
                                                              "new posed frames")
    assert "1 frame with image file missing" in r["generations"][1]["pairs_lost"]


def test_pairs_only_appends_a_generation(tmp_path, proc_grown, small_cfg):
    """--pairs-only on a grown life appends the new pairs (the earlier lines unchanged, the same pairs a tar set
    gets), lists the generations, and with nothing new writes nothing; a changed recording is refused as with
    tars; an old pairs-only set (no generations) is refused with the way on."""
    before, after = proc_grown
    cfg = small_cfg(strategies=("spatial", "temporal"), pairs_only=True)
    out = tmp_path / "s"
    pm.run(cfg, before, out)
    old = (out / "pairs.jsonl").read_text().splitlines()
    man = json.loads(pm.run(cfg, after, out).read_text())
    rows = (out / "pairs.jsonl").read_text().splitlines()
    g0, g1 = man["generations"]
    assert rows[: len(old)] == old and len(rows) == len(old) + g1["pairs"]
    assert g1["first_pair"] == len(old) == g0["pairs"]
    assert [r["name"] for r in g1["recordings"]] == ["day2"] and g1["shards"] == 0 and man["shards"] == []
    assert [json.loads(x)["pair"] for x in rows] == list(range(len(rows)))
    tars = tmp_path / "t"  # the same pairs as the tar path appends
    pm.run(replace(cfg, pairs_only=False), before, tars)
    pm.run(replace(cfg, pairs_only=False), after, tars)
    tar_rows = (tars / "pairs.jsonl").read_text().splitlines()
    assert [json.loads(x)["name_a"] for x in rows] == [json.loads(x)["name_a"] for x in tar_rows]
    stamp = (out / "pairs.jsonl").stat().st_mtime_ns
    pm.run(cfg, after, out)  # nothing new
    assert (out / "pairs.jsonl").stat().st_mtime_ns == stamp
    moved = after.T_world_cam.copy()
    moved[after.source == 1, :3, 3] += 0.01
    with pytest.raises(SlifeError, match="recording 'day1' changed since generation 0"):
        pm.run(cfg, replace(after, T_world_cam=moved), out)
    m = json.loads((out / "manifest.json").read_text())
    del m["generations"]  # as an older slife wrote it
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SlifeError, match="pairs-only set made by slife .* before pairs-only sets had generations.*"
                                         "--overwrite"):
        pm.run(cfg, after, out)


def _grow_three(table_life, cfg, out, monkeypatch, drop_cache=(), damage=()):
    """Mine day0, then append day1, then day2 into `out`; before the append that follows generation k, its
    visibility cache is removed (k in drop_cache) or overwritten with garbage (k in damage). Returns the
    number of frames each visibility projection saw."""
    from slife.pairmine import pipeline, visibility

    seen = []
    orig = visibility.compute_visibility

    def counted(life, *a, **k):
        seen.append(len(life))
        return orig(life, *a, **k)

    monkeypatch.setattr(visibility, "compute_visibility", counted)
    monkeypatch.setattr(pipeline, "compute_visibility", counted)
    table = FrameTable(table_life, decode_order(table_life), len(table_life))
    for k, names in enumerate((["day0"], ["day0", "day1"], ["day0", "day1", "day2"])):
        if k:
            cache = out / f"visibility-{k - 1:04d}.npz"
            if k - 1 in drop_cache:
                cache.unlink()
            if k - 1 in damage:
                cache.write_bytes(b"not an npz")
        pm.run(cfg, restrict(table, names).life, out)
    return seen


def test_an_append_projects_only_the_new_frames_and_finds_the_same_pairs(tmp_path, proc_life, small_cfg,
                                                                          monkeypatch, caplog):
    """The append's pair search takes the old frames' visibility from the set's cache and projects only the new
    frames; its pair table (spatial + temporal + random + augmented, two appends onto a life whose days revisit
    the same rooms) is byte-identical to the one it gives with the cache removed (the grown life's visibility
    computed again). Each later generation's spatial pairs are the new-frame rule's (`spatial.new_frame_pairs`
    over the grown life: every pair has a new frame, cross-day pairs where a day revisits a room). A damaged
    cache file falls back to computing the visibility with a log line, gives the same pairs, and is written
    again."""
    import logging

    from slife.pairmine.spatial import new_frame_pairs
    from slife.pairmine.visibility import compute_visibility

    cfg = small_cfg(strategies=("spatial", "temporal", "random", "augmented"), pairs_only=True)
    n = [int((proc_life.source == s).sum()) for s in range(3)]
    fast = _grow_three(proc_life, cfg, tmp_path / "fast", monkeypatch)
    assert fast == [n[0], n[1], n[2]]  # generation 0: its whole life; each append: its new day only
    whole = _grow_three(proc_life, cfg, tmp_path / "whole", monkeypatch, drop_cache=(0, 1))
    assert whole == [n[0], n[0] + n[1], sum(n)]  # every append: the whole grown life, as before the cache
    rows = (tmp_path / "fast" / "pairs.jsonl").read_text()
    assert rows == (tmp_path / "whole" / "pairs.jsonl").read_text()
    strategies = {s for r in rows.splitlines() for s in json.loads(r)["strategy"].split("+")}
    assert strategies == {"spatial", "temporal", "random", "augmented"}
    g = [json.loads((tmp_path / d / "manifest.json").read_text())["generations"] for d in ("fast", "whole")]
    strip = lambda gs: [{k: v for k, v in x.items() if k not in ("added", "command")} for x in gs]  # noqa: E731
    assert strip(g[0]) == strip(g[1]) and len(g[0]) == 3
    assert [x.get("spatial_rule") for x in g[0]] == [None, "new-frames", "new-frames"]
    table = FrameTable(proc_life, decode_order(proc_life), len(proc_life))
    all_rows = [json.loads(r) for r in rows.splitlines()]
    for k, names in ((1, ["day0", "day1"]), (2, ["day0", "day1", "day2"])):
        sub = restrict(table, names)  # the life generation k was mined from
        life, new = sub.life, new_frames(sub, [names[-1]])
        mine = all_rows[g[0][k]["first_pair"]:g[0][k]["first_pair"] + g[0][k]["pairs"]]
        spatial = {(r["a"], r["b"]): r["jaccard"] for r in mine if "spatial" in r["strategy"]}
        assert all(new[a] or new[b] for a, b in spatial)  # every pair has a new frame
        assert {a for a, _ in spatial} <= set(np.flatnonzero(new).tolist())  # old frames: partners only
        vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells)
        a, b, J = new_frame_pairs(vis, new, cfg.j_min, cfg.j_max, cfg.per_frame)
        want = dict(zip(zip(a.tolist(), b.tolist()), J.tolist()))
        unordered = lambda d: {(min(x), max(x)): v for x, v in d.items()}  # noqa: E731  (a pair found from both ends)
        assert unordered(spatial) == unordered(want)  # the pairs and their exact Jaccards
        assert any(life.source[a] != life.source[b] for a, b in spatial)  # joins days
    # the whole-life path wrote the caches it lacked: the next append there would be fast
    assert sorted(p.name for p in (tmp_path / "whole").glob("visibility-*.npz")) == \
        ["visibility-0000.npz", "visibility-0001.npz", "visibility-0002.npz"]
    with caplog.at_level(logging.INFO, logger="slife.pairmine.generations"):
        damaged = _grow_three(proc_life, cfg, tmp_path / "damaged", monkeypatch, damage=(1,))
    assert damaged == [n[0], n[1], sum(n)]
    assert "visibility-0001.npz is damaged" in caplog.text and "computed again" in caplog.text
    assert (tmp_path / "damaged" / "pairs.jsonl").read_text() == rows
    from slife.pairmine.shardset import read_visibility

    assert read_visibility(tmp_path / "damaged", 1)[0] is not None  # written again
