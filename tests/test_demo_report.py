"""The demo report's objectives comparison states what the numbers say, whichever way they fall."""

import numpy as np
import pytest

from slife.demo_report import _objectives_section, claims, croco_beats


def _summary(croco_top1, dino_top1):
    arm = dict(steps=10, probe_abs_rel_aligned=0.3, probe_abs_rel_aligned_untrained=0.4, top1_method="features",
               top1_displaced_untrained=0.1, top1_displaced_features=0.2, top1_displaced_features_untrained=0.1,
               match_aepe=50.0, match_aepe_untrained=60.0, match_pck5=0.01, match_pck5_untrained=0.0)
    arms = {"croco": {**arm, "model": "life-kitchen", "top1_method": "attention", "top1_displaced": croco_top1},
            "dinov2": {**arm, "model": "objective-dinov2", "top1_displaced": dino_top1}}
    beats = None if croco_top1 is None else croco_top1 > dino_top1
    ob = {"arms": arms, "best_probe": "croco",
          "controls": dict(chance_top1=0.125, same_position_top1_displaced=0.0, displaced_patches=80, top1_pairs=4,
                           zero_flow_aepe=25.0, zero_flow_pck5=0.0, oracle_probe_abs_rel_aligned=0.05),
          "croco_beats_others": {"top1_displaced": beats, "top1_displaced_features": False, "match_aepe": False,
                                 "match_pck5": False}}
    enc = {"life-kitchen": {"group": "life", "probe_abs_rel_aligned": 0.3, "top1_displaced": croco_top1,
                            "match_aepe": 50.0, "match_pck5": 0.01},
           "untrained": {"group": "untrained", "probe_abs_rel_aligned": 0.4, "top1_displaced": 0.1},
           "oracle": {"group": "oracle", "probe_abs_rel_aligned": 0.05}}
    return {"encoders": enc, "chance_top1": 0.125, "zero_flow": {"match_aepe": 25.0, "match_pck5": 0.0},
            "alignment_beyond_shortcut": {"life_life": None, "life_control": None, "untrained_untrained": 0.0,
                                          "life_same_position": 0.0}, "objectives": ob}


def test_objectives_statement_follows_the_numbers():
    for croco, dino, word, holds in ((0.5, 0.3, "yes", True), (0.3, 0.5, "no", False),
                                     (None, 0.5, "not measured", None)):
        s = _summary(croco, dino)
        text = "\n".join(_objectives_section(s["objectives"]))
        assert f"Top-1 on displaced patches by each model's own map: **{word}" in text
        assert "| croco (`life-kitchen`) | 10 |" in text and "| dinov2 (`objective-dinov2`) | 10 |" in text
        claim = [c for c in claims(s) if c["claim"].startswith("CroCo is better at correspondence")]
        assert len(claim) == 1 and claim[0]["holds"] is holds
    s = _summary(0.5, 0.3)
    del s["objectives"]
    assert not [c for c in claims(s) if c["claim"].startswith("CroCo")]  # studies without objective arms


def test_croco_beats_is_strict_and_needs_every_number():
    rows = {"croco": {"a": 0.5, "e": 10.0}, "dinov2": {"a": 0.4, "e": 12.0}, "egomotion": {"a": 0.5, "e": 9.0}}
    assert croco_beats(rows, "a") is False  # a tie is not a win
    rows["egomotion"]["a"] = 0.45
    assert croco_beats(rows, "a") is True
    assert croco_beats(rows, "e", lower=True) is False  # egomotion's error is lower
    rows["dinov2"]["a"] = None
    assert croco_beats(rows, "a") is None
    assert croco_beats({"croco": {"a": 0.5}}, "a") is None


def test_beyond_position_claim_needs_twice_the_standard_error_of_the_difference():
    """Every life model above the untrained encoder beyond position by more than twice the jackknife standard
    error of the paired difference."""
    def holds(kitchen, office, se=0.02):
        s = _summary(0.2, 0.1)
        del s["objectives"]
        s["encoders"]["life-kitchen"].update(top1_displaced_beyond_position=kitchen,
                                             top1_displaced_beyond_position_vs_untrained={"diff": kitchen, "se": se})
        s["encoders"]["life-office"] = {**s["encoders"]["life-kitchen"], "top1_displaced_beyond_position": office,
                                        "top1_displaced_beyond_position_vs_untrained": {"diff": office, "se": se}}
        s["encoders"]["untrained"].update(top1_displaced_beyond_position=0.0)
        c = [c for c in claims(s) if "beyond position: top-1" in c["claim"]]
        assert len(c) == 1 and "± 0.020" in c[0]["numbers"]
        return c[0]["holds"]

    assert holds(0.05, 0.07) is True  # the paired difference's error: 2 x 0.02
    assert holds(0.05, 0.03) is False  # one life model within the error
    assert holds(0.05, None) is None  # a number missing: not measured


def test_alignment_errors_of_group_means_and_paired_differences_come_from_the_pair_replicates():
    """Three lives (three life-life pairs): the error of their mean and of its difference from each control group
    are the jackknife of those means, from the replicates cas.json stores per pair of models."""
    from slife.demo_report import _alignment, _alignment_se
    from slife.eval.cas import replicate_se

    rng = np.random.default_rng(0)
    names = ["life-a", "life-b", "life-c", "control-x", "untrained-s0", "untrained-s1", "untrained-s2",
             "same-position"]
    kinds = ["model"] * 4 + ["untrained"] * 3 + ["same-position"]
    reps = {}
    rows = []
    for i, x in enumerate(names[:7]):
        for y in names[i + 1:7]:
            reps[x, y] = rng.normal(0.1, 0.01, size=20)
            rows.append({"a": x, "b": y, "cas_calibrated": reps[x, y].mean(),
                         "cas_beyond_saliency": 2 * reps[x, y].mean(), "cas_calibrated_jackknife": reps[x, y].tolist(),
                         "cas_calibrated_displaced_jackknife": None,
                         "cas_beyond_saliency_jackknife": (2 * reps[x, y]).tolist()})
    mat = np.zeros((8, 8))
    for (x, y), r in reps.items():
        mat[names.index(x), names.index(y)] = mat[names.index(y), names.index(x)] = r.mean()
    un = [reps[p].mean() for p in (("untrained-s0", "untrained-s1"), ("untrained-s0", "untrained-s2"),
                                   ("untrained-s1", "untrained-s2"))]
    cas = {"names": names, "kinds": kinds, "pair_table": rows,
           "calibrated": {"matrix": mat.tolist(), "untrained_pairs": 3,
                          "untrained_vs_untrained_sd": np.std(un, ddof=1)},
           "beyond_saliency": {"matrix": (2 * mat).tolist(), "untrained_pairs": 3,
                               "untrained_vs_untrained_sd": 2 * np.std(un, ddof=1)}}
    label = {n: n for n in names[:4]}
    means = _alignment(cas, label, "calibrated")
    err = _alignment_se(cas, label, means)
    ll = (reps["life-a", "life-b"] + reps["life-a", "life-c"] + reps["life-b", "life-c"]) / 3
    lc = (reps["life-a", "control-x"] + reps["life-b", "control-x"] + reps["life-c", "control-x"]) / 3
    assert err["life_life"] == pytest.approx(replicate_se(ll)) and err["life_life_displaced"] is None
    # beyond position and saliency: its own replicates, no displaced variant; absent from an older cas.json
    sal = _alignment(cas, label, "beyond_saliency")
    assert sal["life_life"] == pytest.approx(2 * means["life_life"])
    err2 = _alignment_se(cas, label, sal, "cas_beyond_saliency")
    assert set(err2) == {"life_life", "life_life_minus", "untrained_pairs", "untrained_pairs_sd"}
    assert err2["life_life"] == pytest.approx(2 * err["life_life"])
    # the spread between pairs of untrained models, each score's own (cas.json's)
    assert err["untrained_pairs"] == 3 and err["untrained_pairs_sd"] == pytest.approx(np.std(un, ddof=1))
    assert err2["untrained_pairs_sd"] == pytest.approx(2 * np.std(un, ddof=1))
    before = dict(cas, calibrated={"matrix": mat.tolist()})  # a cas.json from before session 19: no spread
    assert _alignment_se(before, label, means)["untrained_pairs_sd"] is None
    old = {k: v for k, v in cas.items() if k != "beyond_saliency"}
    assert _alignment(old, label, "beyond_saliency") is None and _alignment_se(old, label, None) is None
    d = err["life_life_minus"]
    assert d["life_control"]["se"] == pytest.approx(replicate_se(ll - lc))
    assert d["life_control"]["diff"] == pytest.approx(means["life_life"] - means["life_control"])
    uu = (reps["untrained-s0", "untrained-s1"] + reps["untrained-s0", "untrained-s2"]
          + reps["untrained-s1", "untrained-s2"]) / 3
    assert d["untrained_untrained"]["se"] == pytest.approx(replicate_se(ll - uu))
    # one life: no life-life pair, no errors
    one = _alignment_se(cas, {"life-a": "life-a", "control-x": "control-x"}, _alignment(cas, {"life-a": "life-a"},
                                                                                          "calibrated"))
    assert one["life_life"] is None and one["life_life_minus"]["life_control"] == {"diff": None, "se": None}


def test_alignment_claim_needs_twice_the_paired_error_against_each_control():
    def holds(uu_diff, lc_diff, se=0.01, sd=None):
        s = _summary(0.2, 0.1)
        del s["objectives"]
        s["encoders"]["life-office"] = dict(s["encoders"]["life-kitchen"])
        s["alignment_beyond_shortcut"] = {"life_life": 0.1, "life_control": 0.1 - lc_diff,
                                          "untrained_untrained": 0.1 - uu_diff, "life_same_position": 0.0}
        s["alignment_beyond_shortcut_se"] = {"life_life": se, "life_life_minus": {
            "untrained_untrained": {"diff": uu_diff, "se": se}, "life_control": {"diff": lc_diff, "se": se}},
            "untrained_pairs": 15 if sd is not None else 1, "untrained_pairs_sd": sd}
        c = [c for c in claims(s) if c["claim"].startswith("life models align beyond the positional shortcut")]
        assert len(c) == 1
        assert ("15 untrained pairs spread" in c[0]["numbers"]) == (sd is not None)
        sal = [c for c in claims(s) if c["claim"].startswith("life models align beyond position and saliency")]
        assert len(sal) == 1 and sal[0]["holds"] is None  # a summary without the score: not measured
        assert sal[0]["numbers"].startswith("not measured")
        s["alignment_beyond_saliency"], s["alignment_beyond_saliency_se"] = (s["alignment_beyond_shortcut"],
                                                                             s["alignment_beyond_shortcut_se"])
        sal = [c for c in claims(s) if c["claim"].startswith("life models align beyond position and saliency")]
        assert sal[0]["holds"] == c[0]["holds"]  # the same rule on its own numbers
        assert "disagree" not in sal[0]["numbers"] + c[0]["numbers"]
        if c[0]["holds"] is not None:  # the two scores disagree: both claims say so
            s["alignment_beyond_saliency"] = dict(s["alignment_beyond_saliency"], life_life=-1.0)
            s["alignment_beyond_saliency_se"] = None
            both = [c for c in claims(s) if c["claim"].startswith("life models align beyond")]
            assert both[0]["holds"] is False and both[1]["holds"] == c[0]["holds"]
            assert ("disagree" in both[0]["numbers"]) == c[0]["holds"] == ("disagree" in both[1]["numbers"])
        return c[0]["holds"]

    assert holds(0.05, 0.03) is True
    assert holds(0.05, 0.015) is False  # above life-control, but within twice the paired error
    assert holds(0.05, 0.03, se=None) is True  # no errors at all: the plain order
    # the untrained pairs' spread is the floor of each paired error (bench/study.md, session 19)
    assert holds(0.05, 0.03, sd=0.005) is True  # below the jackknife error: that decides
    assert holds(0.05, 0.022) is True and holds(0.05, 0.022, sd=0.012) is False  # above it: the spread decides
    assert holds(0.05, 0.03, sd=0.02) is False  # 0.03 is within twice the spread between pairs of models
    assert holds(0.05, 0.045, sd=0.02) is True


def test_alignment_claim_says_which_error_it_used():
    def claim(se, sd, n_un, paired=True):
        s = _summary(0.2, 0.1)
        del s["objectives"]
        s["encoders"]["life-office"] = dict(s["encoders"]["life-kitchen"])
        s["alignment_beyond_shortcut"] = {"life_life": 0.1, "life_control": 0.05, "untrained_untrained": 0.04,
                                          "life_same_position": 0.0}
        d = {"diff": 0.05 if paired else None, "se": se if paired else None}
        s["alignment_beyond_shortcut_se"] = {"life_life": se, "untrained_pairs": n_un, "untrained_pairs_sd": sd,
                                             "life_life_minus": {"untrained_untrained": d, "life_control": d}}
        return next(c for c in claims(s) if c["claim"].startswith("life models align beyond the positional"))

    c = claim(0.01, None, 1)
    assert "no spread of untrained pairs (this run scored one pair): checked against the jackknife error alone" in (
        c["numbers"]) and c["holds"] is True
    c = claim(0.01, None, 15)
    assert "no spread of untrained pairs (their scores are not finite)" in c["numbers"]
    # no paired errors (a summary from before session 12): life-life's own error, floored by the spread
    c = claim(0.01, 0.03, 15, paired=False)  # 0.1 - 0.05 = 0.05 is within 2 x 0.03
    assert c["holds"] is False and "checked against twice the larger of life-life's error and that spread" in (
        c["numbers"]) and "15 untrained pairs spread with standard deviation 0.030" in c["numbers"]
    c = claim(None, None, 1, paired=False)  # no error of any kind: the plain order, said once
    assert c["holds"] is True and "checked on the plain order" in c["numbers"] and "jackknife" not in c["numbers"]


def test_top1_claim_compares_with_the_untrained_encoders_mean_when_there_are_several():
    def top1(s):
        return next(c for c in claims(s) if c["claim"].startswith("life models find displaced correspondences: top-1"))

    s = _summary(0.3, 0.1)  # 0.3: 2x chance (0.125), above the demo's own untrained encoder (0.1)
    del s["objectives"]
    assert top1(s)["holds"] is True and "untrained 0.100" in top1(s)["numbers"]  # a summary from before session 19
    # six untrained encoders whose mean is above the life model: the claim follows the mean, not the first one
    s["top1_displaced_untrained"] = {"n": 6, "mean": 0.32, "sd": 0.05, "min": 0.1, "max": 0.4}
    c = top1(s)
    assert c["holds"] is False and c["claim"].endswith("above the untrained encoders' mean")
    assert "untrained mean 0.320 (sd 0.050, range 0.100-0.400 over 6 untrained encoders)" in c["numbers"]
    s["top1_displaced_untrained"]["mean"] = 0.2
    assert top1(s)["holds"] is True


def test_claims_on_the_attention_are_read_both_ways_and_say_where_the_readings_disagree():
    s = _summary(0.3, 0.1)  # top-1 displaced 0.3: 2x chance (0.125) and above the untrained encoder's 0.1
    del s["objectives"]
    s["attention_read"] = "masked"
    s["other_read"] = {"attention_read": "complete", "chance_top1": 0.125, "zero_flow": s["zero_flow"],
                       "encoders": {"life-kitchen": {"top1_displaced": 0.2}, "untrained": {"top1_displaced": 0.1}}}
    cl = claims(s)
    top = next(c for c in cl if c["claim"].startswith("life models find displaced correspondences: top-1"))
    assert top["holds"] is True and top["other_read"] == {"attention_read": "complete", "holds": False,
                                                          "numbers": top["other_read"]["numbers"]}
    assert "life-kitchen 0.200" in top["other_read"]["numbers"]
    assert "The two readings of the decoder's attention disagree in this run: with the target complete it does " \
           "not hold" in top["numbers"]
    probe = next(c for c in cl if c["claim"].startswith("every life model probes depth"))
    assert "other_read" not in probe  # the probe reads encoder tokens: the same either way
    s["other_read"]["encoders"]["life-kitchen"]["top1_displaced"] = 0.4  # both readings hold: nothing to flag
    top = next(c for c in claims(s) if c["claim"].startswith("life models find displaced correspondences: top-1"))
    assert top["other_read"]["holds"] is True and "disagree" not in top["numbers"]
