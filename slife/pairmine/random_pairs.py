"""Random pairs: uniform pairs of distinct frames within the life (`random_per_frame` per frame).

Reads only the number of frames of the sampled `Life`. Returns pairs (a = source, b = target, no Jaccard).
Entry points: `find_pairs(life, cfg, rng)` and `find_pair_arrays`. Named `random_pairs` so that it does
not shadow the standard library's `random`. Merging is left to `combine.py`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def find_pair_arrays(life, cfg, rng: np.random.Generator, vis=None):
    """Random pairs as arrays (a (P,), b (P,), jaccard (P,) NaN)."""
    n = len(life)
    if n < 2 or cfg.random_per_frame == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    a = np.repeat(np.arange(n, dtype=np.int64), cfg.random_per_frame)
    b = rng.integers(0, n - 1, size=len(a))  # (P,) uniform over the other n - 1 frames
    b = b + (b >= a)
    return a, b.astype(np.int64), np.full(len(a), np.nan)


def find_pairs(life, cfg, rng: np.random.Generator, vis=None) -> Iterator:
    """Strategy interface: yield `Pair`s."""
    from slife.pairmine import Pair

    a, b, _ = find_pair_arrays(life, cfg, rng)
    for x, y in zip(a.tolist(), b.tolist()):
        yield Pair(x, y, "random", None)
