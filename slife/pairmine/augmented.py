"""Augmented pairs: a frame with itself; the trainer's random crop/scale/flip/colour makes the two views differ.

Reads only the number of frames of the sampled `Life`. Returns self-pairs (a == b, Jaccard 1):
`augmented_per_frame` per frame (a fraction keeps a random subset of frames). Entry points:
`find_pairs(life, cfg, rng)` and `find_pair_arrays`. The independent 2D transforms of the two views are
left to the stream loader (`slife.train.stream`), as DESIGN.md says: the shard stores the frame twice.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def find_pair_arrays(life, cfg, rng: np.random.Generator, vis=None):
    """Self-pairs as arrays (a (P,), b (P,) == a, jaccard (P,) ones)."""
    n = len(life)
    whole = int(np.floor(cfg.augmented_per_frame))
    frac = cfg.augmented_per_frame - whole
    a = np.repeat(np.arange(n, dtype=np.int64), whole)
    if frac > 0:
        a = np.sort(np.concatenate([a, np.flatnonzero(rng.random(n) < frac)]))
    return a, a.copy(), np.ones(len(a))


def find_pairs(life, cfg, rng: np.random.Generator, vis=None) -> Iterator:
    """Strategy interface: yield `Pair`s."""
    from slife.pairmine import Pair

    a, b, _ = find_pair_arrays(life, cfg, rng)
    for x in a.tolist():
        yield Pair(x, x, "augmented", 1.0)
