"""Loop-closure candidates for `slife sfm`: a bag of visual words learned from the video's own SIFT features.

Reads SIFT descriptors, (n, 128) per image, uint8 as COLMAP stores them (any non-negative vectors work).
Nothing is downloaded: the vocabulary is learned from the life being reconstructed.
- `train_vocabulary(sample, words, seed)`: a two-level vocabulary tree (k-means with sqrt(words) centres,
  then k-means with sqrt(words) centres inside each of them) -> `Vocabulary`. A descriptor's word costs
  2 sqrt(words) distances instead of `words` (1024 words: 64 instead of 1024).
- `Vocabulary.histogram(desc)`: each descriptor's word, counted -> (words,) int32.
- `bow_vectors(hist)`: per-image vectors sqrt(count) x idf, L2-normalised (N, words) float32; the square
  root damps bursts (a repeated texture), idf mutes words seen in most images.
- `loop_candidates(vectors, group, t, k, min_gap, nms_gap)`: every image scored against every other by
  the cosine of their vectors (dense row blocks: O(N^2 words) multiply-adds, O(N words) memory; 7200
  images x 1024 words is 30 MB), keeping each image's best `k` partners that are not its temporal
  neighbours (same video, closer than `min_gap` seconds: sequential matching covers those), with
  non-maximum suppression in time so the k picks fall on k different visits of a place rather than on
  neighbouring frames of one visit. Returns image-index pairs (a < b), each once.
Matching the candidates and verifying them geometrically is left to pycolmap in `sfm.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def _nearest(x: np.ndarray, centres: np.ndarray, c2: np.ndarray | None = None, block: int = 8192) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for each row of x (n, d) float32 -> (n,) int64."""
    c2 = (centres ** 2).sum(1) if c2 is None else c2
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), block):
        d = c2[None, :] - 2.0 * (x[s:s + block] @ centres.T)  # (b, k); |x|^2 is the same for every centre
        out[s:s + block] = d.argmin(1)
    return out


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 10) -> np.ndarray:
    """Lloyd's k-means on rows of x (n, d) float32 -> centres (k, d) float32. Starts from greedy k-means++
    seeds (each next seed the best of a few rows drawn with probability ~ their squared distance to the seeds
    so far, by `rng`); a
    centre that loses all its rows restarts at a random row. With n <= k the rows themselves (repeated to k)
    are the centres."""
    x = np.asarray(x, np.float32)
    n = len(x)
    if n <= k:
        return x[np.arange(k) % max(n, 1)].copy() if n else np.zeros((k, x.shape[1]), np.float32)
    centres = np.empty((k, x.shape[1]), np.float32)
    centres[0] = x[rng.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(1).astype(np.float64)
    trials = 2 + int(np.log(k))
    for c in range(1, k):
        total = d2.sum()
        cand = rng.choice(n, trials, p=d2 / total) if total > 0 else rng.integers(n, size=trials)
        new = np.stack([np.minimum(d2, ((x - x[j]) ** 2).sum(1)) for j in cand])  # (trials, n)
        best = int(new.sum(1).argmin())  # greedy: the draw that lowers the potential most
        centres[c], d2 = x[cand[best]], new[best]
    for _ in range(iterations):
        lab = _nearest(x, centres)
        sums = np.zeros_like(centres)
        np.add.at(sums, lab, x)
        cnt = np.bincount(lab, minlength=k)
        empty = cnt == 0
        centres[~empty] = sums[~empty] / cnt[~empty, None]
        if empty.any():
            centres[empty] = x[rng.choice(n, int(empty.sum()), replace=False)]
    return centres


@dataclass
class Vocabulary:
    """A two-level vocabulary tree: word = top * branching + leaf."""

    top: np.ndarray  # (b, d) float32 first-level centres
    leaves: np.ndarray  # (b, b, d) float32 second-level centres inside each first-level one

    @property
    def words(self) -> int:
        return self.leaves.shape[0] * self.leaves.shape[1]

    def quantize(self, desc: np.ndarray) -> np.ndarray:
        """Word id of each descriptor (n, d) -> (n,) int64."""
        x = np.asarray(desc, np.float32)
        top = _nearest(x, self.top)
        words = np.empty(len(x), np.int64)
        b = self.leaves.shape[1]
        for c in np.unique(top):
            sel = np.flatnonzero(top == c)
            words[sel] = c * b + _nearest(x[sel], self.leaves[c])
        return words

    def histogram(self, desc: np.ndarray) -> np.ndarray:
        """Word counts of one image's descriptors -> (words,) int32."""
        return np.bincount(self.quantize(desc), minlength=self.words).astype(np.int32)

    def to_arrays(self) -> dict:
        return {"top": self.top, "leaves": self.leaves}

    @classmethod
    def from_arrays(cls, arrays) -> "Vocabulary":
        return cls(top=np.asarray(arrays["top"], np.float32), leaves=np.asarray(arrays["leaves"], np.float32))


def train_vocabulary(sample: np.ndarray, words: int, seed: int = 0, iterations: int = 10) -> Vocabulary:
    """Learn a `words`-word two-level vocabulary (words must be a square: 256, 1024, 4096) from
    descriptors `sample` (n, d)."""
    b = int(round(np.sqrt(words)))
    if b * b != words or b < 2:
        raise ValueError(f"vocabulary size must be a square >= 4 (e.g. 256, 1024, 4096), got {words}")
    rng = np.random.default_rng(seed)
    x = np.asarray(sample, np.float32)
    top = kmeans(x, b, rng, iterations)
    lab = _nearest(x, top)
    leaves = np.stack([kmeans(x[lab == c], b, rng, iterations) for c in range(b)])  # (b, b, d)
    return Vocabulary(top=top, leaves=leaves)


def bow_vectors(hist: np.ndarray) -> np.ndarray:
    """Word counts (N, W) -> retrieval vectors (N, W) float32: sqrt(count) x idf, rows L2-normalised
    (an image with no words gets a zero row and scores 0 against every other)."""
    hist = np.asarray(hist)
    n = len(hist)
    df = (hist > 0).sum(0)  # (W,) images holding each word
    idf = np.log((n + 1) / (df + 1)).astype(np.float32)
    v = np.sqrt(hist.astype(np.float32)) * idf[None, :]
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def loop_candidates(vectors: np.ndarray, group: np.ndarray, t: np.ndarray, k: int, min_gap: float,
                    nms_gap: float, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each image's `k` best retrieval partners (see the module docstring) -> pairs (a, b) int64 with a < b.

    vectors (N, W) from `bow_vectors`; group (N,) the video of each image; t (N,) its time in seconds.
    Partners in the same video closer than `min_gap` seconds are left out; after a pick, partners of the
    same video within `nms_gap` seconds of it are too. Partners scoring 0 (no shared word) are never kept.
    """
    n = len(vectors)
    group, t = np.asarray(group), np.asarray(t, np.float64)
    if k <= 0 or n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pool = min(n - 1, k * 8)  # best-scoring partners looked at per image before suppression
    out_a, out_b = [], []
    for s in range(0, n, block):
        rows = np.arange(s, min(n, s + block))
        S = vectors[rows] @ vectors.T  # (b, N) cosine scores
        near = (group[rows, None] == group[None, :]) & (np.abs(t[rows, None] - t[None, :]) < min_gap)
        S[near] = -1.0
        S[np.arange(len(rows)), rows] = -1.0
        top = np.argpartition(-S, pool - 1, axis=1)[:, :pool] if pool < n else np.argsort(-S, axis=1)
        for r, i in enumerate(rows):
            cand = top[r][np.argsort(-S[r, top[r]], kind="stable")]
            picked: list[int] = []
            for j in cand:
                if S[r, j] <= 0 or len(picked) == k:
                    break
                if any(group[j] == group[p] and abs(t[j] - t[p]) < nms_gap for p in picked):
                    continue
                picked.append(int(j))
            out_a += [min(i, j) for j in picked]
            out_b += [max(i, j) for j in picked]
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.unique(np.asarray(out_a, np.int64) * n + np.asarray(out_b, np.int64))
    return key // n, key % n
