"""Manifest: the one `manifest.json` of a shard set, the summary it holds, and the integrity check of a set.

Reads the shard folder (`pairs-%06d.tar`, `pairs-%06d.stats.json`) and the mined `PairTable`; writes
`manifest.json` last (slife version, command line, life source, config, strategy counts, Jaccard and
time-gap histograms, frames used / without pose / missing / corrupt, pairs lost, the share of posed frames
with a spatial pair, shard list with sample counts and sha256).
Entry points: `summarize(table, pairs)` (histograms and counts), `write_manifest(...)`, the one-line
reports `coverage_line` and `loss_line` (the end-of-run table and `slife inspect` print them), and
`inspect_shards(folder) -> dict` (used by `slife inspect`: every tar readable, sample counts equal the
stats, sha256 equal the manifest). Writing the tars is `shards.py`'s job.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import numpy as np

from slife.pairmine.shards import atomic_write_bytes, sha256_file, shard_name, stats_name

log = logging.getLogger(__name__)

J_EDGES = [round(x, 2) for x in np.linspace(0, 1, 11)]
DT_EDGES = [0, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400]  # seconds; last bin is open (>= 1 day)


def histogram(values: np.ndarray, edges: list[float], open_end: bool = False) -> dict:
    """{"edges", "counts"} of finite values; with open_end the last bin holds everything >= edges[-1]."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    e = np.array(edges + ([np.inf] if open_end else []), np.float64)
    c, _ = np.histogram(np.clip(v, e[0], None), bins=e)
    return {"edges": list(edges) + (["inf"] if open_end else []), "counts": c.astype(int).tolist()}


def summarize(table, pairs) -> dict:
    """Counts and histograms of a mined pair table (before writing)."""
    life = table.life
    labels = pairs.labels()
    per_label: dict[str, int] = {}
    for lab in labels:
        per_label[lab] = per_label.get(lab, 0) + 1
    used = np.unique(np.concatenate([pairs.a, pairs.b])) if len(pairs) else np.zeros(0, np.int64)
    dt = np.abs(life.t[pairs.a] - life.t[pairs.b]) if len(pairs) else np.zeros(0)
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
        "jaccard_hist": histogram(pairs.jaccard, J_EDGES),
        "dt_hist": histogram(dt, DT_EDGES, open_end=True),
        "by_strategy": by_strategy,
        "combine": pairs.counts,
    }
    if "spatial" in pairs.strategies:
        out["spatial_coverage"] = spatial_coverage(pairs, pv)
    return out


def spatial_coverage(pairs, pose_valid: np.ndarray) -> dict:
    """How many posed frames have at least one spatial pair (after merging and quotas): {"posed_frames",
    "with_spatial_pair", "share"} (share None without posed frames)."""
    k = pairs.strategies.index("spatial")
    sel = ((pairs.mask >> k) & 1).astype(bool)
    paired = np.zeros(len(pose_valid), bool)
    paired[pairs.a[sel]] = True
    paired[pairs.b[sel]] = True
    posed = int(pose_valid.sum())
    hit = int((paired & pose_valid).sum())
    return {"posed_frames": posed, "with_spatial_pair": hit, "share": hit / posed if posed else None}


def coverage_line(summary: dict) -> str | None:
    """'spatial coverage: 2990 of 3000 posed frames (99.7%) have a spatial pair', or None without spatial."""
    c = summary.get("spatial_coverage")
    if not c or not c["posed_frames"]:  # no spatial mining, or no posed frame (warned about when mining)
        return None
    share = "-" if c["share"] is None else f"{100 * c['share']:.1f}%"
    return f"spatial coverage: {c['with_spatial_pair']} of {c['posed_frames']} posed frames ({share}) have a spatial pair"


def loss_line(summary: dict) -> str | None:
    """One line for the pairs that could not be written (frames whose image file is missing or whose pixels
    do not decode), with the counts and the first of each; None when nothing was lost."""
    dropped = summary.get("pairs_dropped_corrupt", 0)
    if not dropped:
        return None
    total = summary.get("pairs", 0)
    parts = []
    for key, what in (("missing", "image file missing"), ("corrupt", "pixels that do not decode")):
        n = summary.get(f"frames_{key}", 0)
        if n:
            parts.append(f"{n} {'frame' if n == 1 else 'frames'} with {what} (first: {summary[f'first_{key}']})")
    share = f" ({100 * dropped / total:.1f}%)" if total else ""
    return f"{dropped} of {total} pairs{share} were not written: " + "; ".join(parts)


def read_stats(folder: Path, n_shards: int) -> list[dict | None]:
    out = []
    for s in range(n_shards):
        p = Path(folder) / stats_name(s)
        out.append(json.loads(p.read_text()) if p.exists() else None)
    return out


def write_manifest(folder: Path, n_shards: int, base: dict, table=None, strict: bool = False) -> Path:
    """Gather every shard's stats into manifest.json (written last, atomically); returns its path.

    Frames that failed in the writer are split into `frames_missing` (the image file is not there; needs
    `table`, the `FrameTable`, to find the files) and `frames_corrupt` (the rest), each with its first
    one named; lost pairs give a warning (logged and in the manifest's warnings), or with `strict` an
    error before the manifest is written (the complete shards stay for a re-run).
    """
    from slife.errors import SlifeError

    folder = Path(folder)
    stats = read_stats(folder, n_shards)
    missing = [s for s, st in enumerate(stats) if st is None]
    if missing:
        raise SlifeError(f"{folder}: {len(missing)} of {n_shards} shards are not complete yet "
                         f"(first: {shard_name(missing[0])}); run the missing nodes, then --merge")
    written: dict[str, int] = {}
    frames_missing: set[int] = set()
    for st in stats:
        for k, v in st["strategies"].items():
            written[k] = written.get(k, 0) + v
        frames_missing.update(st.get("frames_missing", []))
    m = dict(base)
    m["shards"] = [{"name": st["shard"], "samples": st["samples"], "bytes": st["bytes"], "sha256": st["sha256"],
                    "pairs": st["pairs"]} for st in stats]
    m["samples"] = int(sum(st["samples"] for st in stats))
    m["summary"] = dict(m.get("summary", {}))
    m["summary"]["pairs_written"] = m["samples"]
    m["summary"]["written_per_strategy"] = dict(sorted(written.items()))
    m["summary"]["pairs_dropped_corrupt"] = int(sum(st["pairs_dropped_corrupt"] for st in stats))
    failed = sorted(frames_missing)
    absent = [i for i in failed if table is not None and (f := table.frame_file(i)) is not None and not f.exists()]
    corrupt = sorted(set(failed) - set(absent))
    m["summary"]["frames_missing"] = len(absent)
    m["summary"]["frames_corrupt"] = len(corrupt)
    m["summary"]["first_missing"] = str(table.frame_file(absent[0])) if absent else None
    m["summary"]["first_corrupt"] = (table.frame_name(corrupt[0]) if table is not None else f"frame {corrupt[0]}") \
        if corrupt else None
    m["summary"]["pairs_without_depth"] = int(sum(st.get("pairs_without_depth", 0) for st in stats))
    lost = loss_line(m["summary"])
    if lost and strict:
        raise SlifeError(f"{folder}: --strict: {lost} (the written shards are kept; fix the input or run "
                         "again without --strict to finish with these losses)")
    if lost:
        log.warning("%s", lost)
        m["warnings"] = list(m.get("warnings", [])) + [lost]
    path = folder / "manifest.json"
    atomic_write_bytes(path, json.dumps(m, indent=1).encode())
    return path


def inspect_shards(folder: Path | str) -> dict:
    """Summarise a shard folder and check every tar; `ok` is False with `problems` listed when anything is off."""
    folder = Path(folder)
    problems: list[str] = []
    man = None
    if (folder / "manifest.json").exists():
        try:
            man = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            problems.append(f"manifest.json unreadable: {e}")
    else:
        problems.append("manifest.json missing (run not finished, or nodes not merged)")
    tars = sorted(folder.glob("pairs-*.tar"))
    listed = {s["name"]: s for s in (man or {}).get("shards", [])}
    for name in listed:
        if not (folder / name).exists():
            problems.append(f"{name}: listed in the manifest but missing")
    total = 0
    per_strategy: dict[str, int] = {}
    for tp in tars:
        st_path = tp.with_name(tp.name[:-4] + ".stats.json")
        st = None
        if not st_path.exists():
            problems.append(f"{tp.name}: no stats file (incomplete shard)")
        else:
            try:
                st = json.loads(st_path.read_text())
            except (OSError, ValueError) as e:
                st = f"{type(e).__name__}: {e}"
            if not isinstance(st, dict) or "samples" not in st:
                problems.append(f"{st_path.name}: unreadable ({st if isinstance(st, str) else 'no sample count'})")
                st = None
        digest = sha256_file(tp)
        if st is not None and st.get("sha256") != digest:
            problems.append(f"{tp.name}: sha256 differs from its stats")
        if man is not None:
            if tp.name not in listed:
                problems.append(f"{tp.name}: not in the manifest")
            elif listed[tp.name]["sha256"] != digest:
                problems.append(f"{tp.name}: sha256 differs from the manifest")
        keys = set()
        try:
            with tarfile.open(tp) as tf:
                for mem in tf:
                    keys.add(mem.name.split(".", 1)[0])
                    if mem.name.endswith(".json"):
                        js = json.loads(tf.extractfile(mem).read())
                        per_strategy[js["strategy"]] = per_strategy.get(js["strategy"], 0) + 1
        except (tarfile.TarError, OSError, ValueError, KeyError) as e:
            problems.append(f"{tp.name}: unreadable ({e})")
            continue
        total += len(keys)
        if st is not None and st["samples"] != len(keys):
            problems.append(f"{tp.name}: {len(keys)} samples, stats say {st['samples']}")
        if man is not None and tp.name in listed and listed[tp.name]["samples"] != len(keys):
            problems.append(f"{tp.name}: {len(keys)} samples, manifest says {listed[tp.name]['samples']}")
    out = {
        "folder": str(folder), "ok": not problems, "problems": problems, "shards": len(tars),
        "samples": total, "samples_per_strategy": dict(sorted(per_strategy.items())),
    }
    if man is not None:
        summary = man.get("summary") or {}
        out.update({"life": man.get("life"), "config": man.get("config"), "command": man.get("command"),
                    "slife_version": man.get("slife_version"), "summary": summary,
                    "spatial_coverage": coverage_line(summary), "pairs_lost": loss_line(summary),
                    "warnings": man.get("warnings", [])})
    return out
