"""Loop-closure retrieval (slife/pairmine/retrieval.py): a vocabulary learned from the data, tf-idf vectors,
candidates that skip temporal neighbours and spread over a place's visits."""

import numpy as np
import pytest

from slife.pairmine.retrieval import Vocabulary, bow_vectors, kmeans, loop_candidates, train_vocabulary


def _blobs(rng, centres, n_per, noise=2.0):
    x = np.concatenate([c + rng.normal(0, noise, (n_per, centres.shape[1])) for c in centres])
    return np.clip(x, 0, 255).astype(np.float32)


def test_vocabulary_separates_clusters_and_round_trips():
    rng = np.random.default_rng(0)
    groups = rng.uniform(60, 195, (4, 128))  # 4 far-apart groups of 4 blobs each: what a two-level tree models
    centres = (groups[:, None, :] + rng.normal(0, 15, (4, 4, 128))).reshape(16, 128)
    x = _blobs(rng, centres, 200)
    voc = train_vocabulary(x, words=16, seed=0)
    assert voc.words == 16 and voc.top.shape == (4, 128) and voc.leaves.shape == (4, 4, 128)
    w = voc.quantize(x).reshape(16, 200)
    # every blob lands on one word, and different blobs on different words
    assert all(len(np.unique(row)) == 1 for row in w)
    assert len(np.unique(w[:, 0])) == 16
    again = Vocabulary.from_arrays(voc.to_arrays())
    assert np.array_equal(again.quantize(x), voc.quantize(x))
    assert voc.histogram(x[:200]).sum() == 200 and voc.histogram(x[:200]).shape == (16,)
    with pytest.raises(ValueError, match="square"):
        train_vocabulary(x, words=10)


def test_kmeans_with_fewer_rows_than_centres():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    c = kmeans(x, 5, np.random.default_rng(0))
    assert c.shape == (5, 2) and {tuple(r) for r in c} == {tuple(r) for r in x}


def test_bow_vectors_unit_rows_and_idf():
    hist = np.array([[3, 0, 1], [3, 2, 0], [3, 0, 0], [0, 0, 0]])
    v = bow_vectors(hist)
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-6)
    assert not v[3].any()  # no words: a zero row
    # word 0 is in 3 of 4 images: it weighs less than word 2, in one image only
    assert v[0, 2] > v[0, 0] * 0.5 and v[2, 0] == pytest.approx(1.0)


def test_loop_candidates_find_revisits_not_neighbours():
    """Three days walk past the same five places: each frame's candidates are the same place on other days,
    never its own temporal neighbours, and suppression spreads the picks over different days."""
    rng = np.random.default_rng(1)
    places = np.repeat(np.arange(5), 12)  # a day: 12 frames at each of 5 places
    W = 200
    words_of = rng.choice(W, (5, 30), replace=True)  # each place shows 30 words
    hist, t, day = [], [], []
    for d in range(3):
        for k, p in enumerate(places):
            h = np.bincount(words_of[p], minlength=W) + (rng.random(W) < 0.02)
            hist.append(h)
            t.append(d * 86400 + k * 0.5)
            day.append(d)
    hist, t, day = np.array(hist), np.array(t), np.array(day)
    group = np.zeros(len(t), int)  # one video
    a, b = loop_candidates(bow_vectors(hist), group, t, k=2, min_gap=30.0, nms_gap=5.0)
    assert len(a) and np.all(a < b)
    assert len(np.unique(a * len(t) + b)) == len(a)  # each pair once
    assert np.all(np.abs(t[a] - t[b]) >= 30.0)  # no temporal neighbour
    place = np.tile(places, 3)
    assert np.mean(place[a] == place[b]) > 0.95  # the same place
    assert np.all(day[a] != day[b])  # 6 s of a day is within min_gap: only other days qualify
    # with k=2 and suppression, a frame's two picks are on the two other days
    picks: dict = {}
    for i, j in zip(a, b):
        picks.setdefault(int(i), set()).add(int(day[j]))
        picks.setdefault(int(j), set()).add(int(day[i]))
    assert np.mean([len(v) == 2 for v in picks.values()]) > 0.9
    # no loop closure asked: nothing
    assert len(loop_candidates(bow_vectors(hist), group, t, k=0, min_gap=30.0, nms_gap=5.0)[0]) == 0
