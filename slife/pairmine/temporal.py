"""Temporal pairs: frames of the same video with min_gap <= |t_a - t_b| <= max_gap seconds (to `TIME_TOL`).

Reads the sampled `Life` (`source`, `t` in seconds). Returns pairs (a = source, b = target, no Jaccard):
for each frame, `temporal_per_frame` partners drawn at random from the later frames of its video inside
the gap window (0: all of them), source/target roles at random. Entry points: `find_pairs(life, cfg, rng)`
and `find_pair_arrays`. Poses are not needed. Merging with other strategies is left to `combine.py`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from slife.pairmine import TIME_TOL


def find_pair_arrays(life, cfg, rng: np.random.Generator, vis=None):
    """Temporal pairs as arrays (a (P,), b (P,), jaccard (P,) NaN)."""
    A, B = [], []
    for s in np.unique(life.source):
        ids = np.flatnonzero(life.source == s)
        ids = ids[np.argsort(life.t[ids], kind="stable")]
        t = life.t[ids]
        lo = np.searchsorted(t, t + cfg.min_gap - TIME_TOL, side="left")  # first later frame far enough
        hi = np.searchsorted(t, t + cfg.max_gap + TIME_TOL, side="right")  # one past the last close enough
        lo = np.maximum(lo, np.arange(len(t)) + 1)
        cnt = np.maximum(hi - lo, 0)
        if cfg.temporal_per_frame == 0:
            src = np.repeat(np.arange(len(t)), cnt)
            offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            dst = np.repeat(lo, cnt) + offs
        else:
            k = cfg.temporal_per_frame
            take = np.minimum(cnt, k)  # (n,) draws per frame, distinct
            src = np.repeat(np.arange(len(t)), take)
            j = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)  # draw number
            start = (rng.random(len(t)) * np.maximum(cnt, 1)).astype(np.int64)  # random offset in window
            stride = np.maximum(cnt // k, 1)  # j * stride < cnt for j < min(cnt, k): draws never repeat
            dst = lo[src] + (start[src] + j * stride[src]) % np.maximum(cnt[src], 1)
        A.append(ids[src])
        B.append(ids[dst])
    a = np.concatenate(A) if A else np.zeros(0, np.int64)
    b = np.concatenate(B) if B else np.zeros(0, np.int64)
    flip = rng.random(len(a)) < 0.5
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    return a.astype(np.int64), b.astype(np.int64), np.full(len(a), np.nan)


def find_pairs(life, cfg, rng: np.random.Generator, vis=None) -> Iterator:
    """Strategy interface: yield `Pair`s."""
    from slife.pairmine import Pair

    a, b, _ = find_pair_arrays(life, cfg, rng)
    for x, y in zip(a.tolist(), b.tolist()):
        yield Pair(x, y, "temporal", None)
