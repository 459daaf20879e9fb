"""Combine: duplicates written once with every strategy recorded; quotas hold the pair count fixed."""

import numpy as np

from slife.pairmine.combine import combine


def _arr(pairs, J=None):
    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    return a, b, np.full(len(a), np.nan) if J is None else np.array(J, float)


def test_duplicates_merged_and_labelled():
    found = {"spatial": _arr([(0, 5), (1, 2)], [0.3, 0.4]), "temporal": _arr([(5, 0), (3, 4)])}
    t = combine(found, ("spatial", "temporal"), np.arange(6), np.random.default_rng(0))
    got = {(int(a), int(b)): (lab, j) for a, b, lab, j in zip(t.a, t.b, t.labels(), t.jaccard)}
    assert got[(0, 5)][0] == "spatial+temporal" and got[(0, 5)][1] == 0.3  # spatial's orientation and J
    assert got[(1, 2)][0] == "spatial" and got[(3, 4)][0] == "temporal"
    assert len(t) == 3 and t.counts["duplicates_merged"] == 1
    # write order: by the later-decoded frame
    assert (np.maximum(t.a, t.b)[1:] >= np.maximum(t.a, t.b)[:-1]).all()


def test_quotas_fix_the_count():
    rng = np.random.default_rng(0)
    sp = _arr([(i, i + 1) for i in range(0, 200, 2)])  # 100 pairs
    te = _arr([(i, i + 2) for i in range(0, 30)])  # 30 pairs
    for ratios, want in (({}, {"spatial": 30, "temporal": 30}),
                         ({"spatial": 3, "temporal": 1}, {"spatial": 45, "temporal": 15})):
        t = combine({"spatial": sp, "temporal": te}, ("spatial", "temporal"), np.arange(300), rng, 60, ratios)
        assert len(t) == 60
        assert t.counts["taken"] == want
    # a strategy that cannot fill its quota leaves it to the others: the total still holds
    t = combine({"spatial": sp, "temporal": te}, ("spatial", "temporal"), np.arange(300), rng, 100,
                {"spatial": 1, "temporal": 1})
    assert len(t) == 100 and t.counts["taken"] == {"spatial": 70, "temporal": 30}
