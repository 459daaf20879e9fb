"""Shard writing: read back with webdataset and tarfile, frames encoded once, identical bytes, SIGKILL + resume."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from writer_script import slow_writer_script
from slife import pairmine as pm
from slife.pairmine import shards


def _samples(folder: Path) -> dict:
    """key -> (json, src bytes, tgt bytes) over every tar, read with tarfile."""
    out = {}
    for tp in sorted(folder.glob("pairs-*.tar")):
        with tarfile.open(tp) as tf:
            for m in tf:
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return out


def test_write_and_read_back(tmp_path, proc_life, small_cfg, monkeypatch):
    calls = []
    real = shards.encode_frame
    monkeypatch.setattr(shards, "encode_frame", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = small_cfg(strategies=("spatial", "temporal", "augmented"))
    man = json.loads(pm.run(cfg, proc_life, tmp_path).read_text())
    n = man["summary"]["pairs"]
    assert n == man["samples"] > 100 and len(man["shards"]) == -(-n // 40)
    used = man["summary"]["frames_used"]
    assert len(calls) == used  # each frame encoded once, however many pairs use it
    s = _samples(tmp_path)
    assert len(s) == n
    key = f"proc_{0:09d}"
    js = json.loads(s[key]["json"])
    assert set(s[key]) == {"json", "src.jpg", "tgt.jpg"}
    for f in ("life", "strategy", "video_a", "video_b", "frame_a", "frame_b", "t_a", "t_b", "jaccard", "T_a",
              "T_b", "K", "K_b", "cam_a", "cam_b"):
        assert f in js
    # stored size: short side 16 of 32 x 24 -> 21 x 16, K scaled with it
    assert js["cam_a"]["width"] == 21 and js["cam_a"]["height"] == 16
    assert js["K"][0][0] == pytest.approx(0.6 * 32 * 21 / 32)
    # plain webdataset reads the same samples
    import webdataset as wds

    urls = [str(p) for p in sorted(tmp_path.glob("pairs-*.tar"))]
    got = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(got) == n and got[0]["src.jpg"].size == (21, 16) and isinstance(got[0]["json"], dict)
    # keys follow the deterministic pair order of pairs.jsonl
    rows = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    for r in rows[:50]:
        js = json.loads(s[f"proc_{r['pair']:09d}"]["json"])
        assert (js["frame_a"], js["video_a"], js["strategy"]) == (r["frame_a"], r["video_a"], r["strategy"])


def test_depth_members(tmp_path, tiny_life):
    from PIL import Image
    import io

    cfg = pm.MineConfig(strategies=("temporal",), fps=0, short_side=24, min_gap=0.1, max_gap=0.5)
    pm.run(cfg, tiny_life, tmp_path)
    s = _samples(tmp_path)
    sample = next(iter(s.values()))
    assert {"src.depth.png", "tgt.depth.png"} <= set(sample)
    d = np.asarray(Image.open(io.BytesIO(sample["src.depth.png"])))
    assert d.dtype == np.uint16 and d.shape == (24, 32) and 200 < np.median(d[d > 0]) < 20000


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_frames_skipped_and_counted(tmp_path, proc_images, small_cfg, workers):
    import shutil
    from slife.pairmine.procedural import make_life

    imgs = tmp_path / "imgs"
    shutil.copytree(proc_images, imgs)
    life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=imgs)
    (imgs / "day1" / "000004.png").write_bytes(b"not a png")
    (imgs / "day2" / "000010.png").unlink()
    man = json.loads(pm.run(small_cfg(strategies=("temporal",), workers=workers), life, tmp_path / "out").read_text())
    s = man["summary"]
    assert s["frames_corrupt"] == 1 and s["first_corrupt"] == str(imgs / "day1" / "000004.png")  # its path
    assert s["frames_missing"] == 1 and s["first_missing"] == str(imgs / "day2" / "000010.png")
    assert s["pairs_dropped_corrupt"] > 0 and man["samples"] == s["pairs"] - s["pairs_dropped_corrupt"]
    lost = [w for w in man["warnings"] if "were not written" in w]
    assert lost == [f"{s['pairs_dropped_corrupt']} of {s['pairs']} pairs "
                    f"({100 * s['pairs_dropped_corrupt'] / s['pairs']:.1f}%) were not written: 1 frame with image file "
                    f"missing (first: {imgs / 'day2' / '000010.png'}); 1 frame with pixels that do not decode "
                    f"(first: {imgs / 'day1' / '000004.png'})"]


def test_strict_makes_lost_pairs_an_error_and_keeps_the_shards(tmp_path, proc_images, small_cfg):
    import shutil
    from slife.errors import SlifeError
    from slife.pairmine.procedural import make_life

    imgs = tmp_path / "imgs"
    shutil.copytree(proc_images, imgs)
    life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=imgs)
    (imgs / "day0" / "000007.png").write_bytes(b"not a png")
    cfg = small_cfg(strategies=("temporal",), strict=True)
    with pytest.raises(SlifeError, match=r"--strict: \d+ of \d+ pairs .* were not written: 1 frame with pixels "
                                         r"that do not decode \(first: .*day0/000007.png\)"):
        pm.run(cfg, life, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists() and list((tmp_path / "out").glob("pairs-*.tar"))
    from dataclasses import replace

    man = json.loads(pm.run(replace(cfg, strict=False), life, tmp_path / "out").read_text())  # strict: run-time only
    assert man["summary"]["frames_corrupt"] == 1


WRITER = slow_writer_script(0.03)


def test_sigkill_and_resume_equals_one_run(tmp_path, proc_images, proc_life, small_cfg):
    cfg = small_cfg(strategies=("spatial", "temporal"))
    ref = tmp_path / "ref"
    pm.run(cfg, proc_life, ref)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(proc_images), str(out)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob("pairs-*.stats.json")):
            time.sleep(0.05)
        assert list(out.glob("pairs-*.stats.json")), "writer made no shard in time"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "manifest.json").exists()
    done = len(list(out.glob("pairs-*.stats.json")))
    assert done < len(list(ref.glob("pairs-*.tar")))  # really interrupted
    pm.run(cfg, proc_life, out)  # resume
    assert not list(out.glob(".*tmp*"))  # the killed writer's temporaries are gone
    a, b = _samples(ref), _samples(out)
    assert a == b  # same pairs, same keys, same bytes
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (ref, out))
    assert [s["sha256"] for s in ma["shards"]] == [s["sha256"] for s in mb["shards"]]


def test_workers_give_the_same_shards(tmp_path, proc_life, small_cfg):
    one = json.loads(pm.run(small_cfg(strategies=("temporal", "random")), proc_life, tmp_path / "a").read_text())
    two = json.loads(pm.run(small_cfg(strategies=("temporal", "random"), workers=2), proc_life,
                            tmp_path / "b").read_text())
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]


def test_spool_parts_read_back_and_tidy(tmp_path, proc_life):
    from slife.pairmine.ingest import ingest

    table = ingest(proc_life, 0)
    spool = tmp_path / ".frames"
    spool.mkdir()
    ids = np.array([0, 1, 2, 40, 41])
    c = shards.spool_part(table, ids, spool, 0, 16, 90, "run-a")
    assert c == {"frames_decoded": 5, "frames_missing": 0, "frames_corrupt": 0}
    shards.spool_part(table, np.array([5]), spool, 1, 16, 90, "run-b")  # other settings: dropped on open
    (spool / ".part-00002.bin.tmpx-1").write_bytes(b"partial")  # a killed writer's temporary
    (spool / "part-00003.bin").write_bytes(b"renamed, no index")
    sp = shards.Spool(spool, "run-a")
    assert sp.asked.tolist() == [0, 1, 2, 40, 41] and sp.last_part == 0
    assert sorted(p.name for p in spool.iterdir()) == ["part-00000.bin", "part-00000.json"]
    got = sp.read([41, 0, 7])
    rgb = dict(proc_life.iter_frames([0]))[0]
    assert set(got) == {0, 41} and got[0] == (shards.encode_frame(rgb, 16, 90)[0], None)
    assert sp.sizes[0] == (21, 16) and 5 not in sp.sizes and len(sp.sizes) == 5
    sp.close()


def test_node_counts_split_missing_and_corrupt(tmp_path, proc_images, caplog):
    """The writer's own counts (logged per node) tell a missing image file from one that does not decode, and a
    loss names its first frame of either kind by its path."""
    import logging
    import shutil

    from slife import pairmine as pm
    from slife.pairmine.procedural import make_life

    imgs = tmp_path / "imgs"
    shutil.copytree(proc_images, imgs)
    life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=imgs)
    (imgs / "day1" / "000004.png").write_bytes(b"not a png")
    (imgs / "day2" / "000010.png").unlink()
    cfg = pm.MineConfig(strategies=("temporal",), fps=0, short_side=16, pairs_per_shard=40)
    with caplog.at_level(logging.INFO, logger="slife.pairmine.pipeline"):
        man = json.loads(pm.run(cfg, life, tmp_path / "out").read_text())
    node = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("node 0/1"))
    assert "'frames_missing': 1, 'frames_corrupt': 1" in node
    s = man["summary"]
    assert (s["first_missing"], s["first_corrupt"]) == (str(imgs / "day2" / "000010.png"),
                                                        str(imgs / "day1" / "000004.png"))
