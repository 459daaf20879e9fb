"""Manifest: the one `manifest.json` of a shard set, the summary it holds, and the integrity check of a set.

Reads the shard folder (`pairs-%06d.tar`, `pairs-%06d.stats.json`) and the mined `PairTable`; writes
`manifest.json` last (slife version, command line, life source, config, strategy counts, Jaccard and
time-gap histograms, frames used / without pose / corrupt, shard list with sample counts and sha256).
Entry points: `summarize(table, pairs)` (histograms and counts), `write_manifest(...)`, and
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
    return {
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


def read_stats(folder: Path, n_shards: int) -> list[dict | None]:
    out = []
    for s in range(n_shards):
        p = Path(folder) / stats_name(s)
        out.append(json.loads(p.read_text()) if p.exists() else None)
    return out


def write_manifest(folder: Path, n_shards: int, base: dict) -> Path:
    """Gather every shard's stats into manifest.json (written last, atomically); returns its path."""
    folder = Path(folder)
    stats = read_stats(folder, n_shards)
    missing = [s for s, st in enumerate(stats) if st is None]
    if missing:
        from slife.errors import SlifeError

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
    m["summary"]["frames_corrupt"] = len(frames_missing)
    m["summary"]["pairs_without_depth"] = int(sum(st.get("pairs_without_depth", 0) for st in stats))
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
        out.update({"life": man.get("life"), "config": man.get("config"), "command": man.get("command"),
                    "slife_version": man.get("slife_version"), "summary": man.get("summary")})
    return out
