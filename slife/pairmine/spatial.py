"""Spatial pairs: frames anywhere in the life whose visible item sets overlap with Jaccard in [j_min, j_max].

Reads the sampled `Life` and its `Visibility` (sparse frame x item incidence V from `visibility.py`).
Returns pairs (a = source frame, b = target frame, exact Jaccard). Entry points: `find_pairs(life, cfg,
rng)` (the strategy interface) and `find_pair_arrays` (numpy arrays, used by the miner; with `new`, a later
generation's pairs, section 6). `SPATIAL_RULE` names the later-generation rule in the set's manifest.

How it scales (never an all-pairs loop; 10^5-10^6 frames):
1. MinHash: `lsh_hashes` random permutations of the items; frame i's signature holds, per permutation,
   the smallest permuted id it sees (one gather + `minimum.reduceat` per permutation), computed on a fixed
   random subset of the items sized so a frame sees ~256 of them (cost independent of voxel density).
   For two frames, P(same value under one permutation) = J exactly.
2. Candidates = frames that share a signature value under at least one permutation (LSH with bands of
   one row): a pair with Jaccard J is missed with probability (1 - J)^hashes, e.g. 3e-5 at J = 0.15 with
   64 hashes. Inside a bucket (frames sharing a value) members are put in a seeded random order and each is
   joined to its next `lsh_window` members, so a place seen for hours gives O(bucket x window) candidates,
   not O(bucket^2); `lsh_window=0` joins all members (exhaustive, for small lives and tests).
3. Screening: the Jaccard of a candidate is estimated from a compact copy of the signatures, the low 8
   bits of each value (b-bit MinHash: unequal values collide with probability 1/256, which the estimate
   corrects for): one byte compare per hash, the matches added eight at a time as 64-bit words. Candidates more than 3 standard
   deviations outside [j_min, j_max] (or with set sizes that cannot reach j_min) are dropped.
4. With `per_frame` > 0 the permutations are streamed two at a time and each frame keeps only 3 x per_frame
   candidates so far (memory linear in frames), in two kinds of slots, each ranked by the number of
   matching signature bytes through a fixed table (`slot_orders`):
   - 2 x per_frame "sure" slots: the highest expected Jaccard *inside* [j_min, j_max] given the matches
     (binomial likelihood of the matches, flat prior on J). A near-duplicate whose estimate lies at or
     above j_max is likely outside the range and ranks low, so in a dense place (every frame seeing the
     same room, hundreds of near-duplicates above j_max) the slots hold partners that survive the range
     filter (earlier, 2 x per_frame slots by estimate alone filled with them: on one room walked for 3000
     frames, 46% of the frames got per_frame partners; now all do, bench/pairmine.md).
   - per_frame "top" slots for candidates estimated above that optimum: in range by estimate first,
     highest first, then the rest by distance to the range, so the partners nearest j_max (the
     highest-overlap views the range allows) are still counted exactly.
   The running set is one int64 key per (frame, slot kind, rank, partner), so keeping the best is a single
   sort and a rank within each (frame, kind).
5. The exact Jaccard is counted for the survivors (`visibility.intersection_counts`: restricted sparse
   products), pairs outside [j_min, j_max] are dropped, and each frame keeps its `per_frame`
   highest-Jaccard partners (as source view).
Threads (`cfg.workers`): signature columns, candidate groups (found and screened by `workers - 1` threads
while the calling thread merges the previous group) and the exact counts run on a thread pool; numpy and scipy release the GIL in
these array operations. The result does not depend on the number of threads.
Cost is O(nnz x hashes + N x hashes x window), linear in frames at a fixed view density.
The stored Jaccard is the exact count, so it equals a recount from the visibility sets.

6. Later generations (a shard set's generation g > 0: `find_pair_arrays(..., new=mask)`, the frames of the
   recordings it adds). Steps 1-5 are not run: the candidates are every (new frame, other frame of the grown
   life) pair that shares an item, counted exactly by one sparse product V[new] @ V[:, S].T over the items S
   the new frames see (`new_frame_pairs`), so the cost follows the new frames and the frames that revisit
   their places, not the life's length (one boolean gather over the life's incidence entries picks S's
   columns). Pairs with J in [j_min, j_max] are kept; with `per_frame` K > 0 each NEW frame keeps its K
   highest-J partners (old or new) as the source view a, ties by the lower partner index; K = 0 keeps every
   pair in range once (a = the new frame; between two new frames, a = the lower index). Old frames get no
   slots of their own: they appear only as partners of new frames, and their earlier pairs stay where they
   are. This is what --per-frame "per generation" means; generation 0 (no mask) is steps 1-5. A set whose
   later generations were mined before this rule (they ranked over the whole grown life, old frames'
   slots too) cannot have their tars rebuilt by `pipeline._repair` (refused, naming --overwrite).
Combining with other strategies and quotas is left to `combine.py`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from slife.errors import SlifeError
from slife.pairmine.visibility import Visibility, compute_visibility, jaccard_exact, sorted_unique, thread_map

log = logging.getLogger(__name__)

_COLLIDE = 1.0 / 256  # chance that two unequal MinHash values agree in their low 8 bits


def minhash_signatures(vis: Visibility, hashes: int, seed: int, target_items: int = 256,
                       threads: int = 1) -> np.ndarray:
    """(N, hashes) uint32 MinHash signatures; frames that see nothing get unique values never shared.

    The sketch uses a fixed random subset of the items (the same for every frame) so that frames see about
    `target_items` of them on average: MinHash of the subsets estimates the Jaccard of the full sets at a
    fraction of the cost (the exact Jaccard is always counted on the full sets afterwards). Permutation h
    is drawn from its own generator (seed, h), so the signatures do not depend on `threads`.
    """
    V = vis.V
    n, m = V.shape
    rng = np.random.default_rng(seed)
    mean = V.nnz / max(1, int((np.diff(V.indptr) > 0).sum()))
    frac = min(1.0, target_items / max(mean, 1.0))
    if frac < 1.0:
        keep_item = rng.random(m) < frac  # (M,) consistent item subset
        mask = keep_item[V.indices]
        rows = np.repeat(np.arange(n, dtype=np.int32), np.diff(V.indptr))[mask]
        indices = V.indices[mask]
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n))]
    else:
        indices, indptr = V.indices, V.indptr
    sizes = np.diff(indptr)
    nonempty = np.flatnonzero(sizes > 0)
    sig = np.empty((n, hashes), np.uint32)
    big = np.iinfo(np.uint32).max
    starts = indptr[:-1][nonempty]
    empty = sizes == 0
    unique_empty = big - np.arange(int(empty.sum()), dtype=np.uint32)  # never equal to each other

    def column(h: int) -> None:
        perm = np.random.default_rng([seed, h]).permutation(m).astype(np.uint32)  # (M,) random rank of each item
        col = np.zeros(n, np.uint32)
        if len(nonempty):
            col[nonempty] = np.minimum.reduceat(np.take(perm, indices), starts)
        col[empty] = unique_empty
        sig[:, h] = col

    thread_map(column, range(hashes), threads)
    return sig


def low_bytes(sig: np.ndarray) -> np.ndarray:
    """(N, K) uint32 signatures -> (N, 8 * ceil(K/8)) uint8: the low byte of each value, zero-padded."""
    n, k = sig.shape
    out = np.zeros((n, -(-k // 8) * 8), np.uint8)
    out[:, :k] = sig.astype(np.uint8)  # low 8 bits
    return out


def equal_bytes(low: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """(P,) int32 number of the first k signature bytes on which frames a[p] and b[p] agree."""
    x = np.take(low, a, axis=0)  # (P, W) uint8; np.take gathers rows ~2x faster than fancy indexing
    np.equal(x, np.take(low, b, axis=0), out=x.view(bool))  # each byte now 1 (equal) or 0
    # add the (P, W/8) words (each byte lane sums to <= W/8 < 256), then the 8 lanes with one multiply
    lanes = x.view(np.uint64).sum(axis=1, dtype=np.uint64)
    equal = (lanes * np.uint64(0x0101010101010101)) >> np.uint64(56)
    return equal.astype(np.int32) - (low.shape[1] - k)  # the zero padding always agrees


def lsh_candidates(sig: np.ndarray, window: int, rng: np.random.Generator,
                   eligible: np.ndarray | None = None) -> np.ndarray:
    """Unordered candidate pairs (P, 2) int64 (a < b) of frames sharing a signature value somewhere."""
    n, k = sig.shape
    ids = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    keys = []
    for h in range(k):
        val = sig[ids, h]
        order = np.lexsort((rng.random(len(ids)), val))  # bucket, then random order inside it
        v, f = val[order], ids[order]
        if len(v) < 2:
            continue
        same = v[1:] == v[:-1]
        if not same.any():
            continue
        # run length from each position to the end of its bucket
        starts = np.r_[True, ~same]
        grp = np.cumsum(starts) - 1
        gsize = np.bincount(grp)
        pos_in = np.arange(len(v)) - np.flatnonzero(starts)[grp]
        remaining = gsize[grp] - pos_in - 1  # members after this one in the bucket
        w = int(remaining.max()) if window == 0 else window
        for d in range(1, w + 1):
            sel = np.flatnonzero(remaining >= d)
            if len(sel) == 0:
                break
            a, b = f[sel], f[sel + d]
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            keys.append(lo * n + hi)
    if not keys:
        return np.zeros((0, 2), np.int64)
    key = sorted_unique(np.concatenate(keys))
    return np.stack([key // n, key % n], 1)


def top_per_frame(src: np.ndarray, dst: np.ndarray, score: np.ndarray, k: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows that are among their `src` frame's k highest scores (score in [-1, 1]; ties random).

    One int64 sort key per row: frame (high bits), then quantised 1 - score (20 bits), then a random tie-break.
    """
    if len(src) == 0:
        return np.zeros(0, np.int64)
    q = np.clip(np.round((1.0 - np.asarray(score, np.float64)) * (2**19)), 0, 2**20 - 1).astype(np.int64)
    key = (src.astype(np.int64) << 32) | (q << 12) | rng.integers(0, 4096, len(src))
    order = np.argsort(key)
    s = src[order]
    first = np.r_[True, s[1:] != s[:-1]]
    grp_start = np.flatnonzero(first)[np.cumsum(first) - 1]
    rank = np.arange(len(s)) - grp_start
    return np.sort(order[rank < k])


def _estimate(count: np.ndarray, k: int) -> np.ndarray:
    """Jaccard estimate from the number of equal low bytes among k (corrected for 1/256 chance collisions)."""
    return (count / k - _COLLIDE) / (1.0 - _COLLIDE)


def _screen(cand: np.ndarray, low: np.ndarray, sizes: np.ndarray, cfg):
    """Candidate pairs (P, 2) -> (a, b, equal-byte count) of those that may have J in [j_min, j_max]."""
    a, b = cand[:, 0], cand[:, 1]
    k = cfg.lsh_hashes
    cnt = np.empty(len(a), np.int32)  # (P,) equal signature bytes
    step = 1 << 20
    for s in range(0, len(a), step):
        cnt[s:s + step] = equal_bytes(low, a[s:s + step], b[s:s + step], k)
    est = _estimate(cnt, k)
    # sizes bound Jaccard (J <= min/max), and the estimate is kept within 3 standard deviations of the range
    keep = np.minimum(sizes[a], sizes[b]) >= cfg.j_min * np.maximum(sizes[a], sizes[b])
    sd_lo = np.sqrt(max(cfg.j_min * (1 - cfg.j_min), 0.01) / k) / (1 - _COLLIDE)
    sd_hi = np.sqrt(max(cfg.j_max * (1 - cfg.j_max), 0.01) / k) / (1 - _COLLIDE)
    keep &= (est <= cfg.j_max + 3 * sd_hi) & (est >= cfg.j_min - 3 * sd_lo)
    return a[keep], b[keep], cnt[keep]


def slot_orders(k: int, j_min: float, j_max: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Preference ranks (rank 0 = kept first) of an equal-byte count c in 0..k for the two kinds of slots.

    Returns (sure (k+1,) int64, top (k+1,) int64, peak): `sure` orders c by the expected Jaccard inside
    [j_min, j_max] given c (c ~ Binomial(k, J + (1 - J) / 256), flat prior on J, on a 0.0005 grid); `top`
    puts estimates inside the range first (highest first), then the others by their distance to the range;
    `peak` is the count with the highest expected in-range Jaccard (top slots take counts above it).
    """
    from math import lgamma

    c = np.arange(k + 1)
    est = _estimate(c, k)  # (k+1,)
    grid = (np.arange(2000) + 0.5) / 2000  # (G,) Jaccard values, midpoints of a 0.0005 grid (never 0 or 1)
    p = grid + (1.0 - grid) * _COLLIDE  # (G,) chance that one signature byte matches, in (0, 1)
    log_choose = np.array([lgamma(k + 1) - lgamma(x + 1) - lgamma(k - x + 1) for x in range(k + 1)])
    log_like = log_choose[:, None] + c[:, None] * np.log(p) + (k - c)[:, None] * np.log1p(-p)  # (k+1, G)
    like = np.exp(log_like - log_like.max(axis=1, keepdims=True))  # (k+1, G) binomial likelihood, scaled per c
    inside = np.where((grid >= j_min) & (grid <= j_max), grid, 0.0)
    expected = (like * inside).sum(1) / like.sum(1)  # (k+1,) E[J 1{J in range} | c]
    outside = np.maximum(est - j_max, j_min - est)  # <= 0 inside the range
    top_key = np.where(outside <= 0, -est, 2.0 + outside)

    def ranks(key):
        r = np.empty(k + 1, np.int64)
        r[np.argsort(key, kind="stable")] = np.arange(k + 1)
        return r

    return ranks(-expected), ranks(top_key), int(np.argmax(expected))


class _BestPartners:
    """Each frame's best candidates so far in two kinds of slots (see the module docstring, step 4), as sorted
    int64 keys: frame | kind (0 sure, 1 top) | rank of the match count in that kind's order | shuffled partner.

    Sorting the keys orders rows by frame and kind, then by preference, then by a fixed random permutation of
    the partners (the tie-break, so that equal counts do not favour early frames); a repeated pair has the
    same key (its count does not depend on where it was found), so duplicates are adjacent. A frame keeps
    its `sure` best keys of kind 0 and `top` best of kind 1; a pair may sit in both (counted exactly once).
    """

    def __init__(self, n: int, k: int, sure: int, top: int, j_min: float, j_max: float, rng: np.random.Generator):
        self.bits = max(1, int(n - 1).bit_length())
        self.qbits = int(k).bit_length()
        if 2 * self.bits + self.qbits + 1 > 63:
            raise SlifeError(f"spatial: {n} frames with {k} hashes do not fit the 64-bit pair keys")
        self.sure_rank, self.top_rank, self.peak = slot_orders(k, j_min, j_max)
        self.limit = np.array([sure, top], np.int64)  # slots per frame of kind 0, 1
        self.kind_shift = self.bits + self.qbits  # keys >> kind_shift = frame << 1 | kind
        self.frame_shift = self.kind_shift + 1
        self.shuffle = rng.permutation(n).astype(np.int64)  # (N,) partner -> tie-break rank
        self.unshuffle = np.argsort(self.shuffle)
        self.keys = np.zeros(0, np.int64)

    def _keys(self, a: np.ndarray, b: np.ndarray, kind: int, q: np.ndarray) -> list[np.ndarray]:
        tag = (np.int64(kind) << self.kind_shift) | (q << self.bits)
        return [(a << self.frame_shift) | tag | self.shuffle[b], (b << self.frame_shift) | tag | self.shuffle[a]]

    def add(self, a: np.ndarray, b: np.ndarray, cnt: np.ndarray) -> None:
        new = self._keys(a, b, 0, self.sure_rank[cnt])
        hi = cnt > self.peak  # only these can rank above the sure order's choice in the top order
        if hi.any():
            new += self._keys(a[hi], b[hi], 1, self.top_rank[cnt[hi]])
        keys = np.sort(np.concatenate([self.keys, *new]))
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
        grp = keys >> self.kind_shift  # frame << 1 | kind
        first = np.r_[True, grp[1:] != grp[:-1]]
        rank = np.arange(len(grp)) - np.flatnonzero(first)[np.cumsum(first) - 1]
        self.keys = keys[rank < self.limit[grp & 1]]

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        src = self.keys >> self.frame_shift
        dst = self.unshuffle[self.keys & ((1 << self.bits) - 1)]
        return src, dst


def find_pair_arrays(life, cfg, rng: np.random.Generator, vis: Visibility | None = None,
                     new: np.ndarray | None = None):
    """Spatial pairs as arrays (a (P,), b (P,), jaccard (P,)) with a = source frame.

    `new` (N,) bool: a later generation's frames; its pairs are `new_frame_pairs` (module docstring, section 6:
    every pair has a new frame as a; `rng` is not used)."""
    if not life.has_poses and life.tracks is None:
        raise SlifeError(
            f"{life.root}: this life has no camera poses, so spatial pairs cannot be mined; "
            "run `slife sfm` on it first (or choose temporal/random/augmented)")
    threads = max(1, int(getattr(cfg, "workers", 1)))
    if vis is None:
        vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells, threads=threads)
    if vis.V.shape[1] == 0 or vis.V.nnz == 0:
        raise SlifeError(f"{life.root}: no frame sees any 3D point (no points, tracks or depth to compute "
                         "visibility from); run `slife sfm` or give the life a point cloud")
    if new is not None:
        return new_frame_pairs(vis, new, cfg.j_min, cfg.j_max, cfg.per_frame)
    sizes = vis.sizes
    n = len(life)
    t0 = time.perf_counter()
    sig = minhash_signatures(vis, cfg.lsh_hashes, int(rng.integers(2**31)), threads=threads)
    low = low_bytes(sig)
    eligible = sizes > 0
    t1 = time.perf_counter()
    if cfg.per_frame == 0:
        cand = lsh_candidates(sig, cfg.lsh_window, rng, eligible=eligible)
        n_cand = len(cand)
        a, b, _ = _screen(cand, low, sizes, cfg)
    else:
        # stream over groups of permutations, keeping each frame's 3 x per_frame best candidates (step 4):
        # memory O(frames x (per_frame + group x window)), whatever the number of permutations. Workers find
        # and screen the candidates of the next groups while this thread merges the previous one.
        group = 2
        starts = list(range(0, cfg.lsh_hashes, group))
        seeds = rng.integers(2**63, size=len(starts))
        best = _BestPartners(n, cfg.lsh_hashes, 2 * cfg.per_frame, cfg.per_frame, cfg.j_min, cfg.j_max, rng)

        def screened(i: int):
            g0 = starts[i]
            cand = lsh_candidates(sig[:, g0:g0 + group], cfg.lsh_window, np.random.default_rng(seeds[i]),
                                  eligible=eligible)
            return len(cand), _screen(cand, low, sizes, cfg)

        n_cand = 0
        with ThreadPoolExecutor(max(1, threads - 1)) as ex:
            ahead = [ex.submit(screened, i) for i in range(min(threads - 1, len(starts)))]
            for i in range(len(starts)):
                nc, (a, b, cnt) = ahead.pop(0).result() if ahead else screened(i)
                if threads > 1 and i + threads - 1 < len(starts):
                    ahead.append(ex.submit(screened, i + threads - 1))
                n_cand += nc
                best.add(a, b, cnt)
                del a, b, cnt
        bs, bd = best.pairs()
        key = sorted_unique(np.minimum(bs, bd) * n + np.maximum(bs, bd))
        a, b = key // n, key % n
    t2 = time.perf_counter()
    J = jaccard_exact(vis, a, b, threads=threads)
    t3 = time.perf_counter()
    inr = (J >= cfg.j_min) & (J <= cfg.j_max)
    a, b, J = a[inr], b[inr], J[inr]
    if cfg.per_frame > 0:
        src = np.concatenate([a, b])
        dst = np.concatenate([b, a])
        JJ = np.concatenate([J, J])
        top = top_per_frame(src, dst, JJ, cfg.per_frame, rng)
        a, b, J = src[top], dst[top], JJ[top]
    else:
        flip = rng.random(len(a)) < 0.5  # random source/target roles
        a, b = np.where(flip, b, a), np.where(flip, a, b)
    log.info("spatial: %d candidates, %d exact counts, %d pairs in J [%.2f, %.2f]; signatures %.1f s, "
             "candidates %.1f s, exact counts %.1f s", n_cand, len(inr), len(a), cfg.j_min, cfg.j_max,
             t1 - t0, t2 - t1, t3 - t2)
    return a.astype(np.int64), b.astype(np.int64), J


SPATIAL_RULE = "new-frames"  # a later generation's spatial rule (section 6), recorded in its manifest entry


def new_frame_pairs(vis: Visibility, new: np.ndarray, j_min: float, j_max: float, per_frame: int,
                    rows_per_chunk: int = 1024):
    """A later generation's spatial pairs (module docstring, section 6) -> (a (P,), b (P,), jaccard (P,)), a new.

    Exact for every (new frame, other frame) pair: the intersection counts come from V[new] @ V[:, S].T, S the
    items the new frames see, in chunks of `rows_per_chunk` new frames (memory: their partners). The Jaccard
    is computed as `visibility.jaccard_exact` computes it (the same float64 values). With `per_frame` K > 0 each
    new frame keeps its K highest-J partners in [j_min, j_max] (ties: lower partner index first); K = 0 keeps
    every pair in range once.
    """
    t0 = time.perf_counter()
    V = vis.V
    n, m = V.shape
    sizes = vis.sizes
    new = np.asarray(new, bool)
    ids = np.flatnonzero(new & (sizes > 0))  # (F,) new frames that see something
    empty = np.zeros(0, np.int64)
    if len(ids) == 0:
        return empty, empty, np.zeros(0)
    seen = np.zeros(m, bool)
    seen[V[ids].indices] = True
    S = np.flatnonzero(seen)  # (|S|,) items some new frame sees
    VS = V[:, S]  # (N, |S|): only the entries of frames that see one of S
    VST = VS.T.tocsr()  # (|S|, N)
    out_a, out_b, out_J = [], [], []
    n_cand = 0
    for c0 in range(0, len(ids), rows_per_chunk):
        q = ids[c0:c0 + rows_per_chunk]
        P = (VS[q] @ VST).tocoo()  # (|q|, N) intersection counts of every pair sharing an item
        i, j = q[P.row].astype(np.int64), P.col.astype(np.int64)
        inter = P.data.astype(np.float64)
        n_cand += len(i)
        keep = (j != i) & ((per_frame > 0) | ~new[j] | (i < j))  # K = 0: a pair of two new frames once
        i, j, inter = i[keep], j[keep], inter[keep]
        union = sizes[i] + sizes[j] - inter
        J = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        inr = (J >= j_min) & (J <= j_max)
        i, j, J = i[inr], j[inr], J[inr]
        if per_frame > 0:
            order = np.lexsort((j, -J, i))  # by new frame, highest J first, then lower partner
            i, j, J = i[order], j[order], J[order]
            first = np.r_[True, i[1:] != i[:-1]] if len(i) else np.zeros(0, bool)
            rank = np.arange(len(i)) - np.flatnonzero(first)[np.cumsum(first) - 1]
            top = rank < per_frame
            i, j, J = i[top], j[top], J[top]
        out_a.append(i)
        out_b.append(j)
        out_J.append(J)
    a, b, J = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_J)
    log.info("spatial (later generation): %d new frames, %d items they see, %d exact candidate counts, %d pairs in "
             "J [%.2f, %.2f] (%.2f s)", len(ids), len(S), n_cand, len(a), j_min, j_max, time.perf_counter() - t0)
    return a, b, J


def brute_force_pairs(vis: Visibility, j_min: float, j_max: float) -> np.ndarray:
    """All unordered pairs (a < b) with Jaccard in [j_min, j_max] by a dense all-pairs product (small lives only)."""
    V = vis.V.astype(np.float32)
    inter = (V @ V.T).toarray()  # (N, N)
    s = vis.sizes.astype(np.float64)
    union = s[:, None] + s[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        J = np.where(union > 0, inter / union, 0.0)
    a, b = np.nonzero(np.triu((J >= j_min) & (J <= j_max) & (inter > 0), 1))
    return np.stack([a, b], 1)


def find_pairs(life, cfg, rng: np.random.Generator, vis: Visibility | None = None) -> Iterator:
    """Strategy interface: yield `Pair`s (a = source, b = target, exact Jaccard)."""
    from slife.pairmine import Pair

    a, b, J = find_pair_arrays(life, cfg, rng, vis)
    for x, y, j in zip(a.tolist(), b.tolist(), J.tolist()):
        yield Pair(x, y, "spatial", j)
