"""Combine: merge the pairs of several strategies, drop duplicates, cut to quotas, fix the write order.

Reads per-strategy pair arrays (a = source frame, b = target frame, Jaccard or NaN), in the order the
strategies were asked. A pair found by several strategies (either orientation) is kept once, oriented as
the first strategy found it, and records all of them (`strategy` "spatial+temporal"). With `max_pairs`
each strategy gets a quota (`ratios`, default equal shares) of distinct pairs, filled in strategy order
from seeded random draws; quota a strategy cannot fill goes to the others, so the total is fixed whenever
enough pairs exist (the ablation's need). Returns a `PairTable` in the deterministic write order: by the
decode position of the later-decoded frame, so the writer can emit a pair as soon as both frames are
decoded. Entry point: `combine(found, strategies, ...)`. Writing is left to `shards.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PairTable:
    """Mined pairs in write order (pair index = row)."""

    a: np.ndarray  # (P,) int64 source frame (sampled-life index)
    b: np.ndarray  # (P,) int64 target frame
    mask: np.ndarray  # (P,) int64 bit s set when strategies[s] found the pair
    jaccard: np.ndarray  # (P,) float64, NaN when unknown
    strategies: tuple[str, ...]  # bit order of `mask`
    counts: dict = field(default_factory=dict)  # found / kept per strategy, duplicates
    first_pair: int = 0  # the set's pair index of row 0 (a later generation's pairs follow the earlier ones')
    first_shard: int = 0  # the shard number of the table's first shard (likewise)

    def __len__(self) -> int:
        return len(self.a)

    def shard_rows(self, s: int, pairs_per_shard: int) -> tuple[int, int]:
        """Rows [r0, r1) of this table that shard number s holds."""
        lo = (s - self.first_shard) * pairs_per_shard
        return lo, min(len(self.a), lo + pairs_per_shard)

    def shard_ids(self, pairs_per_shard: int) -> list[int]:
        """The shard numbers this table's pairs fill."""
        return list(range(self.first_shard, self.first_shard + -(-len(self.a) // pairs_per_shard)))

    def label(self, i: int) -> str:
        m = int(self.mask[i])
        return "+".join(s for k, s in enumerate(self.strategies) if m >> k & 1)

    def labels(self) -> list[str]:
        names = {}
        out = []
        for m in self.mask.tolist():
            if m not in names:
                names[m] = "+".join(s for k, s in enumerate(self.strategies) if m >> k & 1)
            out.append(names[m])
        return out


def quotas(max_pairs: int, ratios: dict[str, float], order: tuple[str, ...]) -> dict:
    """First-pass quota per strategy: max_pairs split by ratios (default equal), remainder to the first."""
    r = np.array([ratios.get(s, 0.0 if ratios else 1.0) for s in order], np.float64)
    if r.sum() <= 0:
        r = np.ones(len(order))
    q = np.floor(max_pairs * r / r.sum()).astype(np.int64)
    q[np.argmax(r)] += max_pairs - int(q.sum())
    return {s: int(x) for s, x in zip(order, q)}


def combine(found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], strategies: tuple[str, ...],
            decode_rank: np.ndarray, rng: np.random.Generator, max_pairs: int = 0,
            ratios: dict[str, float] | None = None) -> PairTable:
    """Merge, deduplicate, apply quotas and order; see the module docstring."""
    n = len(decode_rank)
    parts = []
    for si, s in enumerate(strategies):
        if s not in found:
            continue
        a, b, J = found[s]
        key = np.minimum(a, b) * n + np.maximum(a, b)
        parts.append((key, np.full(len(a), si), a, b, J))
    counts = {"found": {s: int(len(found[s][0])) if s in found else 0 for s in strategies}}
    if not sum(len(p[0]) for p in parts):  # nothing found by any strategy
        z = np.zeros(0, np.int64)
        return PairTable(z, z, z, np.zeros(0), strategies, counts)
    key, si, a, b, J = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((np.arange(len(key)), si, key))  # by pair, first-asked strategy first
    key, si, a, b, J = key[order], si[order], a[order], b[order], J[order]
    first = np.r_[True, key[1:] != key[:-1]]
    starts = np.flatnonzero(first)
    mask = np.bitwise_or.reduceat(np.left_shift(1, si).astype(np.int64), starts)
    # keep a known Jaccard from any finder
    grp = np.cumsum(first) - 1
    Jbest = np.full(len(starts), np.nan)
    known = ~np.isnan(J)
    Jbest[grp[known][::-1]] = J[known][::-1]  # the first finder's known value wins
    ua, ub = a[starts], b[starts]
    counts["distinct"] = {s: int(((mask >> k) & 1).sum()) for k, s in enumerate(strategies)}
    counts["duplicates_merged"] = int(len(key) - len(starts))
    keep = np.ones(len(starts), bool)
    if max_pairs and max_pairs < len(starts):
        q = quotas(max_pairs, ratios or {}, strategies)
        keep[:] = False
        perms = {}
        for k, s in enumerate(strategies):
            rows = np.flatnonzero((mask >> k) & 1)
            perms[s] = rows[rng.permutation(len(rows))]
        taken = {s: 0 for s in strategies}
        total = 0
        for pass_ in range(2):  # pass 0: own quota; pass 1: leftover quota to whoever has more
            for s in strategies:
                want = q[s] if pass_ == 0 else max_pairs - total
                if want <= 0:
                    continue
                cand = perms[s][~keep[perms[s]]]
                pick = cand[:want]
                keep[pick] = True
                taken[s] += len(pick)
                total += len(pick)
        counts["quota"] = q
        counts["taken"] = taken
    ua, ub, mask, Jbest = ua[keep], ub[keep], mask[keep], Jbest[keep]
    ra, rb = decode_rank[ua], decode_rank[ub]
    order = np.lexsort((ub, ua, np.minimum(ra, rb), np.maximum(ra, rb)))
    return PairTable(ua[order], ub[order], mask[order], Jbest[order], strategies, counts)
