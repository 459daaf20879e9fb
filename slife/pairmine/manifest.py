"""Manifest summary: what a shard set's `manifest.json` says about the mined pairs.

Reads the sampled life (`FrameTable`) and the mined `PairTable`; returns the summary the manifest holds:
pairs per strategy (as written, and found by each strategy), frames sampled / in the life / used / without
pose (`frames_used`: in the pairs written), left out by the reader (`frames_left_out`), Jaccard and time-gap histograms overall and per strategy, combine's counts (found, distinct,
duplicates, quotas) and the spatial coverage (`spatial_coverage`: the posed frames with a spatial pair; for
a new generation, its new frames'); for a set of several generations, `merge_summaries` adds theirs up.
Entry points: `summarize(table, pairs)`, `spatial_coverage`, `merge_summaries`. The manifest file itself
(its shard list, the written and lost counts gathered from the stats, the loss warning and `--strict`,
reading it back, the one-line coverage and loss reports, the integrity check) belongs to `shardset.py`.
"""

from __future__ import annotations

import logging

import numpy as np

from slife.pairmine import TIME_TOL

log = logging.getLogger(__name__)

LEFT_OUT = ("frames_unreadable", "videos_skipped")  # reader counts of images / videos dropped from the life

J_EDGES = [round(x, 2) for x in np.linspace(0, 1, 11)]
DT_EDGES = [0, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400]  # seconds; last bin is open (>= 1 day)


def histogram(values: np.ndarray, edges: list[float], open_end: bool = False) -> dict:
    """{"edges", "counts"} of finite values; with open_end the last bin holds everything >= edges[-1]."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    e = np.array(edges + ([np.inf] if open_end else []), np.float64)
    c, _ = np.histogram(np.clip(v, e[0], None), bins=e)
    return {"edges": list(edges) + (["inf"] if open_end else []), "counts": c.astype(int).tolist()}


def summarize(table, pairs, new: np.ndarray | None = None, written: np.ndarray | None = None) -> dict:
    """Counts and histograms of a mined pair table; `new` (N,) bool marks the frames of a new generation's
    recordings (its spatial coverage is theirs; None: generation 0, every frame). `written` (P,) bool marks the
    pairs the shards hold (None: all of them): `frames_used` and the spatial coverage count only those, so that
    a frame that did not decode (and the frames whose only pairs it was in) is not counted as used or covered;
    the pair counts and histograms are of the mined pairs (`shardset.write_manifest` adds the written counts)."""
    life = table.life
    labels = pairs.labels()
    per_label: dict[str, int] = {}
    for lab in labels:
        per_label[lab] = per_label.get(lab, 0) + 1
    w = slice(None) if written is None else np.asarray(written, bool)
    used = np.unique(np.concatenate([pairs.a[w], pairs.b[w]])) if len(pairs) else np.zeros(0, np.int64)
    dt = np.abs(life.t[pairs.a] - life.t[pairs.b]) if len(pairs) else np.zeros(0)
    dt = np.round(dt, round(-np.log10(TIME_TOL)))  # float noise off: a 0.9999999999999998 s gap is binned as 1 s
    pv = life.pose_valid if life.pose_valid is not None else np.zeros(len(life), bool)
    by_strategy = {}
    for k, s in enumerate(pairs.strategies):
        sel = ((pairs.mask >> k) & 1).astype(bool)
        by_strategy[s] = {"pairs": int(sel.sum()),
                          "jaccard_hist": histogram(pairs.jaccard[sel], J_EDGES),
                          "dt_hist": histogram(dt[sel], DT_EDGES, open_end=True)}
    out = {
        "pairs": int(len(pairs)),
        "pairs_per_strategy": dict(sorted(per_label.items())),
        "found_by_strategy": {s: v["pairs"] for s, v in by_strategy.items()},
        "frames_sampled": int(len(life)),
        "frames_in_life": int(table.frames_total),
        "frames_used": int(len(used)),
        "frames_without_pose": int((~pv).sum()),
        # what the reader dropped from the life (not in frames_in_life; the writer's losses come later)
        "frames_left_out": {k: int(life.counts[k]) for k in LEFT_OUT if life.counts.get(k)},
        "jaccard_hist": histogram(pairs.jaccard, J_EDGES),
        "dt_hist": histogram(dt, DT_EDGES, open_end=True),
        "by_strategy": by_strategy,
        "combine": pairs.counts,
    }
    if "spatial" in pairs.strategies:
        out["spatial_coverage"] = spatial_coverage(pairs, pv, among=new, written=written)
    return out


def spatial_coverage(pairs, pose_valid: np.ndarray, among: np.ndarray | None = None,
                     before: np.ndarray | None = None, written: np.ndarray | None = None) -> dict:
    """How many posed frames have at least one spatial pair (after merging and quotas): {"posed_frames",
    "with_spatial_pair", "share"} (share None without posed frames). `among` (N,) bool counts only those
    frames (a new generation's: the record then says "new": true); `before` (N,) bool marks frames that
    already have a spatial pair in earlier generations (the coverage of a whole grown set); `written` (P,) bool
    the pairs the shards hold (None: all)."""
    k = pairs.strategies.index("spatial")
    sel = ((pairs.mask >> k) & 1).astype(bool)
    if written is not None:
        sel &= np.asarray(written, bool)
    paired = np.zeros(len(pose_valid), bool) if before is None else np.asarray(before, bool).copy()
    paired[pairs.a[sel]] = True
    paired[pairs.b[sel]] = True
    counted = pose_valid if among is None else pose_valid & among
    posed = int(counted.sum())
    hit = int((paired & counted).sum())
    out = {"posed_frames": posed, "with_spatial_pair": hit, "share": hit / posed if posed else None}
    if among is not None:
        out["new"] = True
    return out


def _add_counts(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def _add_hist(a: dict, b: dict) -> dict:
    return {"edges": a["edges"], "counts": [x + y for x, y in zip(a["counts"], b["counts"])]}


def merge_summaries(summaries: list[dict]) -> dict:
    """The summary of a set of several generations from theirs (oldest first): pairs, per-strategy counts and
    histograms summed; `frames_used` summed too (an upper bound: a frame used by two generations counts twice;
    the miner replaces it by the distinct count); frames sampled / in the life / without pose and visibility
    as the newest generation saw the life; combine's counts, and the spatial coverage (which cannot be added
    up: the miner recounts it over all generations), only in each generation's own summary. One summary is
    returned as it is."""
    if len(summaries) == 1:
        return dict(summaries[0])
    out = {k: v for k, v in summaries[-1].items() if k not in ("combine", "frames_new", "spatial_coverage")}
    for key in ("pairs", "frames_used"):
        out[key] = int(sum(s.get(key, 0) for s in summaries))
    for key in ("pairs_per_strategy", "found_by_strategy"):
        acc: dict = {}
        for s in summaries:
            acc = _add_counts(acc, s.get(key, {}))
        out[key] = acc
    for key in ("jaccard_hist", "dt_hist"):
        h = summaries[0][key]
        for s in summaries[1:]:
            h = _add_hist(h, s[key])
        out[key] = h
    by: dict = {}
    for s in summaries:
        for name, v in s.get("by_strategy", {}).items():
            if name not in by:
                by[name] = dict(v)
            else:
                by[name] = {"pairs": by[name]["pairs"] + v["pairs"],
                            "jaccard_hist": _add_hist(by[name]["jaccard_hist"], v["jaccard_hist"]),
                            "dt_hist": _add_hist(by[name]["dt_hist"], v["dt_hist"])}
    out["by_strategy"] = by
    return out
