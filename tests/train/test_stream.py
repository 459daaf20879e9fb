"""The shard stream: shard specs, bad shards, the generator stages, exact resume positions, eval pairs."""

import json
import shutil

import numpy as np
import pytest
import torch

from trainkit import jpeg, shards_with_bad_jpegs, write_shards
from slife.errors import SlifeError
from slife.train.augment import PairAugment
from slife.train.stream import (PairStream, check_image_size, eval_pairs, expand_spec, make_loader,
                                resolve_shards, shuffle, split_by_node, split_spec, worker_steps)


def _stream(shards, **kw):
    args = dict(augment=PairAugment(32), batch_size=4, steps_per_epoch=3, seed=0)
    args.update(kw)
    return PairStream(resolve_shards(str(shards)), **args)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_spec_forms(shards, tmp_path):
    assert split_spec("a/{x,y},b") == ["a/{x,y}", "b"]
    assert [p.name for p in expand_spec("d/s{0..1},e")] == ["s0", "s1", "e"]
    s = resolve_shards(str(shards))
    assert len(s.paths) == 2 and s.counts == [16, 16] and s.total == 32
    other = write_shards(tmp_path / "b", n_shards=1, per_shard=5, seed=3, life="other")
    both = resolve_shards(f"{shards},{other}")
    assert both.total == 37
    (tmp_path / "c").mkdir()
    shutil.copytree(other, tmp_path / "c" / "x1")
    shutil.copytree(other, tmp_path / "c" / "x2")
    assert resolve_shards(str(tmp_path / "c" / "x{1,2}")).total == 10
    assert resolve_shards([str(shards / "pairs-000000.tar")]).counts == [16]  # a bare tar: counted by scan


def test_a_shard_listed_twice_is_kept_and_said(shards, caplog):
    twice = resolve_shards(f"{shards},{shards}")
    assert twice.total == 64  # as in webdataset, listing weighs
    assert "2 shard(s) listed more than once" in caplog.text


def test_bad_shard_sets(shards, tmp_path):
    with pytest.raises(SlifeError, match="no such shard folder"):
        resolve_shards(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlifeError, match="not a shard folder"):
        resolve_shards(str(tmp_path / "empty"))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "pairs-000000.tar").write_bytes(b"junk")  # no manifest, no stats
    with pytest.raises(SlifeError, match="none of its 1 pairs-\\*.tar is finished"):
        resolve_shards(str(tmp_path / "unfinished"))
    e = write_shards(tmp_path / "zero", n_shards=1, per_shard=0)
    with pytest.raises(SlifeError, match="no pairs to train on"):
        resolve_shards(str(e))
    t = tmp_path / "trunc"
    shutil.copytree(shards, t)
    data = (t / "pairs-000001.tar").read_bytes()
    (t / "pairs-000001.tar").write_bytes(data[: len(data) // 2 + 100])  # cut mid-member
    s = resolve_shards(str(t))
    assert s.paths == [str(t / "pairs-000000.tar")] and len(s.skipped) == 1
    assert "truncated" in next(iter(s.skipped.values()))
    (t / "pairs-000000.tar").write_bytes(data[:4096])  # cut at a block boundary: no end-of-archive
    with pytest.raises(SlifeError, match="2 unreadable"):
        resolve_shards(str(t))


def test_incomplete_shards_are_skipped_named_and_counted(shards, tmp_path, caplog):
    t = tmp_path / "incomplete"
    shutil.copytree(shards, t)
    (t / "pairs-000001.stats.json").unlink()  # listed in the manifest, but its stats are gone (DESIGN.md: incomplete)
    s = resolve_shards(str(t))
    assert s.paths == [str(t / "pairs-000000.tar")] and s.total == 16
    assert s.skipped == {str(t / "pairs-000001.tar"): "incomplete shard (no pairs-000001.stats.json beside it)"}
    assert "skipped 1 of 2 tars as incomplete shards" in caplog.text and "pairs-000001.tar" in caplog.text
    assert all(r.levelname == "WARNING" for r in caplog.records if "incomplete" in r.getMessage())
    caplog.clear()
    assert len(eval_pairs(str(t), 64, 20)) == 16  # the evaluations' reader (slife cas) too
    assert "skipped 1 of 2 tars as incomplete shards" in caplog.text
    (t / "pairs-000000.stats.json").unlink()
    with pytest.raises(SlifeError, match="0 unreadable, 2 incomplete: pairs-000000.tar: incomplete shard"):
        resolve_shards(str(t))


def test_image_smaller_than_crop(shards):
    check_image_size(resolve_shards(str(shards)), 64)
    with pytest.raises(SlifeError, match="72x72, smaller than the 96 px"):
        check_image_size(resolve_shards(str(shards)), 96)


def test_generator_stages():
    a = list(shuffle(iter(range(100)), 10, np.random.default_rng(0)))
    assert sorted(a) == list(range(100)) and a != list(range(100))
    assert a == list(shuffle(iter(range(100)), 10, np.random.default_rng(0)))
    assert split_by_node(list(range(5)), 1, 2) == [1, 3] and split_by_node([7], 1, 2) == [7]
    # worker w owns the global steps b with b % W == w, epoch by epoch, from the start step on
    g = worker_steps(4, 3, worker=1, num_workers=2)
    assert next(g) == (1, 1, [5]) and next(g) == (2, 0, [7]) and next(g) == (3, 0, [9, 11])


def test_stream_is_deterministic_and_resumes_exactly(shards):
    full = _take(_stream(shards).batches(), 7)
    assert [b["step"] for b in full] == list(range(7))
    assert full[0]["src"].shape == (4, 3, 32, 32)
    resumed = _take(_stream(shards, start_step=4).batches(), 3)  # mid-epoch (epoch 1, step 1 of 3)
    for a, b in zip(full[4:], resumed):
        assert a["keys"] == b["keys"] and torch.equal(a["src"], b["src"]) and torch.equal(a["tgt"], b["tgt"])
    keys = [k for b in full[:3] for k in b["keys"]]
    assert len(set(keys)) >= 10  # an epoch mostly visits different pairs (resampled with replacement)


def test_loader_workers_keep_step_order_and_resume(shards):
    full = _take(iter(make_loader(_stream(shards), num_workers=2)), 6)
    assert [b["step"] for b in full] == list(range(6)) and {b["worker"] for b in full} == {0, 1}
    resumed = _take(iter(make_loader(_stream(shards, start_step=3), num_workers=2)), 3)
    assert [b["step"] for b in resumed] == [3, 4, 5]
    assert all(torch.equal(a["src"], b["src"]) for a, b in zip(full[3:], resumed))


def test_ranks_read_different_pairs(shards):
    k0 = {k for b in _take(_stream(shards, rank=0, world=2).batches(), 4) for k in b["keys"]}
    k1 = {k for b in _take(_stream(shards, rank=1, world=2).batches(), 4) for k in b["keys"]}
    assert k0 and k1 and not (k0 & k1)  # two shards, split by node


def test_bad_samples_are_skipped_and_counted(tmp_path):
    import webdataset as wds

    from trainkit import texture

    f = tmp_path / "s"
    f.mkdir()
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(f / "pairs-000000.tar")) as w:
        img = jpeg(np.zeros((72, 72, 3), np.uint8))
        w.write({"__key__": "toy_000000100", "src.jpg": b"not a jpeg", "tgt.jpg": img, "json": b"{}"})
        w.write({"__key__": "toy_000000101", "src.jpg": img, "json": b"{}"})  # no tgt.jpg
        for i in range(4):
            im = jpeg(texture(rng)[:72, :72])
            w.write({"__key__": f"toy_{i:09d}", "src.jpg": im, "tgt.jpg": im, "json": b"{}"})
    (f / "pairs-000000.stats.json").write_text(json.dumps({"samples": 6}))
    (f / "manifest.json").write_text(json.dumps({"shards": [{"name": "pairs-000000.tar", "samples": 6}]}))
    batches = _take(_stream(f, batch_size=2, steps_per_epoch=2).batches(), 2)
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == 4 and set(keys) <= {f"toy_{i:09d}" for i in range(4)}  # full batches of good pairs only
    assert batches[-1]["bad"]["bad_sample"] >= 2


def test_eval_pairs(tmp_path):
    import webdataset as wds

    f = write_shards(tmp_path / "s", n_shards=1, per_shard=3, depth=True)
    a = eval_pairs(str(f), 32, 2)
    b = eval_pairs(str(f), 32, 2)
    assert len(a) == 2 and a[0]["src"].shape == (3, 32, 32) and torch.equal(a[0]["tgt"], b[0]["tgt"])
    assert a[0]["json"]["life"] == "toy" and a[0]["key"] == "toy_000000000"
    K = a[0]["K_src"]  # 72 px, f = 86.4, c = 36 -> 32/72 of it, still centred
    assert np.allclose(K, [[38.4, 0, 16], [0, 38.4, 16], [0, 0, 1]])
    d = a[0]["src_depth"]
    assert d.shape == (32, 32) and d.dtype == np.float32 and 0.99 < d.min() < d.max() < 1.8
    # a wide view (96 x 72): resized to 43 x 32 px (K scaled by 32/72), then x cropped at 5 px
    g = tmp_path / "wide"
    g.mkdir()
    K = [[90.0, 0, 48.0], [0, 90.0, 36.0], [0, 0, 1]]
    with wds.TarWriter(str(g / "pairs-000000.tar")) as w:
        im = jpeg(np.full((72, 96, 3), 100, np.uint8))
        w.write({"__key__": "w_000000000", "src.jpg": im, "tgt.jpg": im, "json": json.dumps({"K": K, "K_b": None})})
    (g / "pairs-000000.stats.json").write_text(json.dumps({"samples": 1}))
    (g / "manifest.json").write_text(json.dumps({"shards": [{"name": "pairs-000000.tar", "samples": 1}]}))
    (p,) = eval_pairs(str(g), 32, 5)
    s = 32 / 72
    sx = 43 / 96
    assert np.allclose(p["K_src"], [[90 * sx, 0, 48 * sx - 5], [0, 90 * s, 36 * s], [0, 0, 1]])
    assert p["K_tgt"] is None and p["tgt_depth"] is None
    with wds.TarWriter(str(g / "pairs-000000.tar")) as w:  # DESIGN.md's fields only: one K for both views
        w.write({"__key__": "w_000000000", "src.jpg": im, "tgt.jpg": im, "json": json.dumps({"K": K})})
    (p,) = eval_pairs(str(g), 32, 5)
    assert np.allclose(p["K_tgt"], p["K_src"])


def test_resume_is_exact_after_failed_decodes(tmp_path):
    f = shards_with_bad_jpegs(tmp_path / "s")
    kw = dict(batch_size=2, steps_per_epoch=8, shuffle_buffer=32)
    full = _take(_stream(f, **kw).batches(), 8)
    assert full[3]["pos"]["bad"].get("bad_sample", 0) >= 1  # decodes failed before the resume point
    pos = {0: full[3]["pos"]}
    resumed = _take(_stream(f, start_step=4, positions=pos, **kw).batches(), 4)
    assert [b["keys"] for b in resumed] == [b["keys"] for b in full[4:]]
    assert all(torch.equal(a["src"], b["src"]) for a, b in zip(full[4:], resumed))
    assert resumed[-1]["bad"] == full[-1]["bad"]  # the counts carry on too
    naive = _take(_stream(f, start_step=4, **kw).batches(), 4)  # batches x batch size: off by the failures
    assert [b["keys"] for b in naive] != [b["keys"] for b in full[4:]]
