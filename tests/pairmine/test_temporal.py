"""Temporal, random and augmented strategies: gaps respected, counts, determinism."""

import numpy as np

from slife.pairmine import MineConfig
from slife.pairmine import augmented, random_pairs, temporal


def test_temporal_gaps_and_videos(proc_life):
    cfg = MineConfig(min_gap=1.0, max_gap=3.0, temporal_per_frame=2)
    a, b, J = temporal.find_pair_arrays(proc_life, cfg, np.random.default_rng(0))
    dt = np.abs(proc_life.t[a] - proc_life.t[b])
    assert len(a) > 100
    assert dt.min() >= 1.0 and dt.max() <= 3.0
    assert (proc_life.source[a] == proc_life.source[b]).all()  # never across videos
    assert np.isnan(J).all()
    key = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))
    assert len(key) == len(a)  # distinct draws
    # at 2 fps the window [1, 3] s holds 5 later frames: 2 draws per frame except near the end
    lo = np.minimum(a, b)
    assert np.bincount(lo).max() == 2


def test_temporal_all_in_window(proc_life):
    cfg = MineConfig(min_gap=0.5, max_gap=1.0, temporal_per_frame=0)
    a, b, _ = temporal.find_pair_arrays(proc_life, cfg, np.random.default_rng(0))
    # 2 fps: gaps 0.5 and 1.0 s -> 2 partners per frame, 2 fewer per video at its end; 3 videos of 30
    assert len(a) == 3 * (2 * 30 - 3)


def test_temporal_deterministic(proc_life):
    cfg = MineConfig()
    r1 = temporal.find_pair_arrays(proc_life, cfg, np.random.default_rng(5))
    r2 = temporal.find_pair_arrays(proc_life, cfg, np.random.default_rng(5))
    assert np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])


def test_random_and_augmented(proc_life):
    cfg = MineConfig(random_per_frame=2, augmented_per_frame=0.5)
    a, b, _ = random_pairs.find_pair_arrays(proc_life, cfg, np.random.default_rng(0))
    assert len(a) == 2 * len(proc_life) and (a != b).all() and b.max() < len(proc_life)
    a, b, J = augmented.find_pair_arrays(proc_life, cfg, np.random.default_rng(0))
    assert (a == b).all() and (J == 1).all() and 25 <= len(a) <= 65
    pairs = list(augmented.find_pairs(proc_life, MineConfig(), np.random.default_rng(0)))
    assert len(pairs) == len(proc_life) and pairs[0].strategy == "augmented"


def test_a_gap_of_float_noise_is_the_gap(proc_life):
    """Times are frame numbers / fps: a 1 s gap at 5 fps can come out as 0.9999999999999998 s. It is a 1 s gap to
    --min-gap/--max-gap and to the manifest's time-gap histogram."""
    from dataclasses import replace

    from slife.pairmine.combine import combine
    from slife.pairmine.ingest import FrameTable, decode_order
    from slife.pairmine.manifest import summarize

    life = replace(proc_life, t=proc_life.frame_index / 5.0)
    dt = np.abs(life.t[5:] - life.t[:-5])[life.source[5:] == life.source[:-5]]
    assert (dt < 1.0).any()  # the noise is there
    cfg = MineConfig(min_gap=1.0, max_gap=1.0, temporal_per_frame=0)
    a, b, J = temporal.find_pair_arrays(life, cfg, np.random.default_rng(0))
    assert len(a) == 3 * (30 - 5)  # every frame with the one 5 frames on, none missed at either end of the window
    table = FrameTable(life, decode_order(life), len(life))
    pairs = combine({"temporal": (a, b, J)}, ("temporal",), table.decode_rank, np.random.default_rng(0), 0, {})
    h = summarize(table, pairs)["dt_hist"]
    assert h["counts"][h["edges"].index(1)] == len(a)  # all in 1-2 s, none in 0.5-1
