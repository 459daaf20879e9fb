"""The shard-set format: one folder of WebDataset pair shards, its file names, stats, manifest and samples.

A shard set (DESIGN.md "Pair shards") is a folder holding `pairs-%06d.tar` (the samples), one
`pairs-%06d.stats.json` per finished tar (written after the tar is renamed into place: its presence, with
the tar's size equal to the one it records, marks the shard complete; its "run" digest tells a shard of
these settings and this life from one left by others), `manifest.json` (written last: version, command,
life, config, summary, the shard list with counts, sizes and sha256), `mine.json` (the settings' identity,
checked on every re-run), the pair table `pairs.jsonl` + hloc-style `pairs.txt`, `preview.png`, and per
generation `visibility-%04d.npz` (the items its frames see: an append projects only the new frames) and
`locations-%04d.npz` (where its tars hold each frame: an append copies old frames without reading old tars'
headers).
One sample is one pair: `__key__` = `{life}_{pair_index:09d}`, `src.jpg` (reference view), `tgt.jpg`
(masked view), `json` (`pair_meta`: life, strategy, videos, frames, times, Jaccard, both poses, `K` of the
source view, `K_b` of the target view, `cam_a`/`cam_b`), optional `src.depth.png`/`tgt.depth.png`.

This module owns all of it, both ways: the names (`shard_name`, `stats_name`, `OUR_FILES`...), writing and
reading the stats (`shard_stats`, `write_stats`, `read_stats`) and the manifest (`write_manifest`, with the
written and lost counts gathered from the stats: frames missing vs corrupt, the loss warning, `--strict`;
`read_manifest`; `manifest_shards`: the tars a reader should read, with counts, sizes, sha256 and generations;
`frames_line`, `coverage_line` and `loss_line`: the one-line reports of its summary that the end-of-run table and `slife
inspect` print), the per-generation visibility cache (`visibility-%04d.npz`: `write_visibility`, `read_visibility`;
what its rows mean and when they are valid is `generations.grown_visibility`'s business), the per-generation
frame-location index (`locations-%04d.npz`: `write_locations`, `read_locations`; `stored_views` reads a tar's
views from its headers; what the rows mean and when they are valid is `generations.old_frames`'), the completeness and integrity checks (`shard_complete`; `incomplete_shard` and
`warn_incomplete`, the tars a reader skips; `inspect_shards`), the sample's members and json on the write side
(`TarShard`, `sample_members`, `pair_meta`, `camera_meta`) and on the read side (`REQUIRED`, `view_K` with its
fallback to `K` for both views when `K_b` is absent, `is_augmented`), and the pair-table files
(`write_pair_table`, `read_pair_table`).

Where it sits: in `pairmine`, the lowest layer that writes the format, so that the miner (pairmine), the
training stream (`train/stream.py`), the evaluations (`eval`) and `slife inspect` (cli) all import it
downward (lives <- pairmine <- train <- eval <- demo <- cli). It imports only the standard library,
numpy-free helpers and `slife.io`, so reading a set pulls in no mining code (the miner hands
`write_manifest` its `FrameTable` to name the lost frames). What goes into a manifest's summary (counts,
histograms, the spatial coverage) is `manifest.py`'s job; decoding frames and writing tars in order is
`shards.py`'s; decoding samples for training is `train/stream.py`'s.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

from slife.errors import SlifeError
from slife.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# file names

MANIFEST = "manifest.json"  # the set's summary and shard list, written last
MINE_JSON = "mine.json"  # the identity (life + settings) of the run that made the set
PAIRS_JSONL = "pairs.jsonl"  # the pair table, one JSON object per pair, in pair-index order
PAIRS_TXT = "pairs.txt"  # the same pairs as hloc-style "name_a name_b" lines
PREVIEW = "preview.png"  # contact sheet of some mined pairs
SHARD_GLOB = "pairs-*.tar"
STATS_GLOB = "pairs-*.stats.json"
SHARD_FILE = re.compile(r"^\.?pairs-(\d+)\.(tar|stats\.json)")  # a shard's tar, stats or their temporaries
VISIBILITY_GLOB = "visibility-*.npz"  # per generation: the visible items of its frames (`write_visibility`)
LOCATIONS_GLOB = "locations-*.npz"  # per generation: where its tars hold each frame (`write_locations`)
# every file `slife mine-pairs` may leave in a set (what --overwrite removes): shards, their temporaries,
# the writers' spool folders, the set files
OUR_FILES = ("pairs-*.tar", "pairs-*.stats.json", ".pairs-*", ".*.tmp*", ".frames*", MANIFEST, MINE_JSON,
             PAIRS_JSONL, PAIRS_TXT, PREVIEW, VISIBILITY_GLOB, LOCATIONS_GLOB)
SET_FILES = (MANIFEST, PREVIEW, VISIBILITY_GLOB, LOCATIONS_GLOB)  # the set-wide files (rank 0 of several nodes removes them with --overwrite)


def shard_name(s: int) -> str:
    return f"pairs-{s:06d}.tar"


def shard_range(first: int, n: int) -> str:
    """'pairs-000002.tar', 'pairs-000002.tar .. pairs-000004.tar', or 'no shards' (n = 0: a pairs-only set)."""
    if n <= 0:
        return "no shards"
    return shard_name(first) if n == 1 else f"{shard_name(first)} .. {shard_name(first + n - 1)}"


def stats_name(s: int) -> str:
    return f"pairs-{s:06d}.stats.json"


def visibility_name(g: int) -> str:
    return f"visibility-{g:04d}.npz"


def locations_name(g: int) -> str:
    return f"locations-{g:04d}.npz"


def stats_path(tar: Path) -> Path:
    """The stats file beside a tar `pairs-%06d.tar`."""
    tar = Path(tar)
    return tar.with_name(tar.name[: -len(".tar")] + ".stats.json")


def is_shard_set(path: Path) -> bool:
    """Whether `path` is a shard folder, finished or not (a manifest, a mine.json or any pairs-*.tar)."""
    path = Path(path)
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / MINE_JSON).is_file()
                              or any(path.glob(SHARD_GLOB)))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# stats and completeness


def shard_stats(s: int, tar: Path, samples: int, pairs: tuple[int, int], dropped_corrupt: int, without_depth: int,
                strategies: dict, frames_missing, run: str) -> dict:
    """The stats record of finished shard s (its tar at `tar`, already renamed into place)."""
    return {"shard": shard_name(s), "samples": samples, "pairs": [int(pairs[0]), int(pairs[1])],
            "pairs_dropped_corrupt": dropped_corrupt, "pairs_without_depth": without_depth, "strategies": strategies,
            "frames_missing": sorted(frames_missing), "bytes": Path(tar).stat().st_size, "sha256": sha256_file(tar),
            "run": run}


def write_stats(folder: Path, s: int, stats: dict) -> None:
    """Write shard s's stats (after its tar): this marks the shard complete."""
    atomic_write_json(Path(folder) / stats_name(s), stats, indent=1)


def read_stats(folder: Path, s: int) -> dict | None:
    """Shard s's stats, or None when the shard has none (not finished)."""
    p = Path(folder) / stats_name(s)
    return json.loads(p.read_text()) if p.exists() else None


def incomplete_shard(tar: Path) -> str | None:
    """Why a tar of this format (`pairs-%06d.tar`) is an incomplete shard, for readers: it has no stats beside it
    (they are written after the tar, so it was not finished, or they were removed since), or None. Tars of other
    names (other WebDataset tools') carry no stats and are not checked."""
    tar = Path(tar)
    if not re.fullmatch(r"pairs-\d+\.tar", tar.name) or stats_path(tar).exists():
        return None
    return f"incomplete shard (no {stats_path(tar).name} beside it)"


def warn_incomplete(where, names: list[str], total: int) -> None:
    """The reader's warning for the incomplete shards `names` it skipped of `total` tars (none: nothing said)."""
    if names:
        log.warning("%s: skipped %d of %d tars as incomplete shards (no .stats.json beside them: not finished, or "
                    "their stats removed; `slife inspect` checks a set): %s", where, len(names), total,
                    ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else ""))


def shard_complete(out_dir: Path, s: int, run: str | None = None) -> bool:
    """A shard is complete when its tar and its stats (written after the tar) both exist and the tar has
    the size its stats record.

    With `run` given, the stats must also carry that run digest (a shard left by other settings, or by
    a writer older than the digest, is not complete: it will be written again).
    """
    out_dir = Path(out_dir)
    st = out_dir / stats_name(s)
    if not (st.exists() and (out_dir / shard_name(s)).exists()):
        return False
    try:
        stats = json.loads(st.read_text())
        if (out_dir / shard_name(s)).stat().st_size != stats.get("bytes"):  # truncated or replaced since
            return False
    except (OSError, ValueError, AttributeError):
        return False
    return run is None or stats.get("run") == run


# ----------------------------------------------------------------------------------------------------
# manifest


def read_manifest(folder: Path) -> dict | None:
    """The set's manifest, or None when it has none (not finished); SlifeError when it is not readable JSON."""
    p = Path(folder) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SlifeError(f"{p}: not readable JSON ({e})") from None


LOSS_KEYS = ("frames_missing", "frames_corrupt", "first_missing", "first_corrupt")  # a summary's frame losses


def _first(table, ids: list[int]) -> str | None:
    """How a loss names its first frame: the image file's path where the frame has one, else its name."""
    if not ids:
        return None
    f = table.frame_file(ids[0])
    return str(f) if f is not None else table.frame_name(ids[0])


def frame_losses(failed: list[int], table, before: dict) -> dict:
    """The frames that failed in the writer (sampled-life indices, from the stats' `frames_missing`), split into
    `frames_missing` (the image file is not there) and `frames_corrupt` (the rest: pixels that do not decode),
    each with its first one named. `table` is the `FrameTable` the indices refer to (`frame_file`,
    `frame_name`); without it (an earlier generation's shards, mined from the life as it was then) the split
    its summary `before` recorded is kept when it covers as many frames, else all count as corrupt. The writers'
    counts (`shards.py`) split the same way."""
    if table is not None:
        absent = [i for i in failed if (f := table.frame_file(i)) is not None and not f.exists()]
        corrupt = sorted(set(failed) - set(absent))
        return {"frames_missing": len(absent), "frames_corrupt": len(corrupt),
                "first_missing": _first(table, absent), "first_corrupt": _first(table, corrupt)}
    if before.get("frames_missing", 0) + before.get("frames_corrupt", 0) == len(failed):
        out = {k: before.get(k, None if k.startswith("first") else 0) for k in LOSS_KEYS}
        if out["frames_corrupt"] and not out["first_corrupt"]:  # recorded before the first was named
            out["first_corrupt"] = f"frame {failed[0]}"
        return out
    return {"frames_missing": 0, "frames_corrupt": len(failed), "first_missing": None,
            "first_corrupt": f"frame {failed[0]}" if failed else None}


def _written(summary: dict, stats: list[dict], table=None, losses: dict | None = None) -> dict:
    """`summary` with what the shards `stats` hold: pairs written (per strategy) and dropped, frames missing and
    corrupt (`frame_losses` with `table`, or `losses` when given), pairs without depth."""
    written: dict[str, int] = {}
    failed: set[int] = set()
    for st in stats:
        for k, v in st["strategies"].items():
            written[k] = written.get(k, 0) + v
        failed.update(st.get("frames_missing", []))
    out = dict(summary)
    out["pairs_written"] = int(sum(st["samples"] for st in stats))
    out["written_per_strategy"] = dict(sorted(written.items()))
    out["pairs_dropped_corrupt"] = int(sum(st["pairs_dropped_corrupt"] for st in stats))
    out.update(losses if losses is not None else frame_losses(sorted(failed), table, summary))
    out["pairs_without_depth"] = int(sum(st.get("pairs_without_depth", 0) for st in stats))
    return out


def _sum_losses(summaries: list[dict]) -> dict:
    """The frame losses of a set of generations: their counts added, the first named by the oldest that has one."""
    out: dict = {}
    for k in LOSS_KEYS:
        vals = [s.get(k) for s in summaries]
        out[k] = int(sum(v or 0 for v in vals)) if k.startswith("frames") else next((v for v in vals if v), None)
    return out


def write_manifest(folder: Path, n_shards: int, base: dict, table=None, strict: bool = False) -> Path:
    """Gather the stats of shards 0..n_shards-1 into manifest.json (written last, atomically) over the fields
    of `base` (version, command, life, config, summary, generations ...); returns its path. Each generation
    record of `base["generations"]` gets its shards' written counts (`samples`, its summary's `pairs_written`
    ...), and each shard entry its generation.

    Frames that failed in the writer are split into `frames_missing` (the image file is not there) and
    `frames_corrupt` (the rest), each with its first one named, using `table` (the `FrameTable` the newest
    generation, or a set without generations, was mined from; older generations keep the split they
    recorded); the set's counts are the generations' added up. Pairs this run lost (the newest generation's)
    give a warning (logged, and in the manifest's warnings), or with `strict` an error before the manifest is
    written (the complete shards stay for a re-run)."""
    folder = Path(folder)
    stats = [read_stats(folder, s) for s in range(n_shards)]
    missing = [s for s, st in enumerate(stats) if st is None]
    if missing:
        raise SlifeError(f"{folder}: {len(missing)} of {n_shards} shards are not complete yet "
                         f"(first: {shard_name(missing[0])}); run the missing nodes, then --merge")
    m = dict(base)
    m["shards"] = [{"name": st["shard"], "samples": st["samples"], "bytes": st["bytes"], "sha256": st["sha256"],
                    "pairs": st["pairs"]} for st in stats]
    m["samples"] = int(sum(st["samples"] for st in stats))
    newest = None
    if "generations" in m:
        gens = []
        for k, g in enumerate(m["generations"]):
            r = range(g["first_shard"], g["first_shard"] + g["shards"])
            for s in r:
                m["shards"][s]["generation"] = g["generation"]
            g = dict(g, samples=int(sum(stats[s]["samples"] for s in r)))
            g["summary"] = _written(g.get("summary", {}), [stats[s] for s in r],
                                    table if k == len(m["generations"]) - 1 else None)
            gens.append(g)
        m["generations"] = gens
        m["summary"] = _written(m.get("summary", {}), stats, losses=_sum_losses([g["summary"] for g in gens]))
        newest = gens[-1] if gens else None
    else:
        m["summary"] = _written(m.get("summary", {}), stats, table)
    lost = loss_line(newest["summary"] if newest else m["summary"])
    if lost and newest and len(m["generations"]) > 1:
        lost = f"generation {newest['generation']}: {lost}"
    if lost and strict:
        raise SlifeError(f"{folder}: --strict: {lost} (the written shards are kept; fix the input or run "
                         "again without --strict to finish with these losses)")
    if lost:
        log.warning("%s", lost)
        m["warnings"] = list(m.get("warnings", [])) + [lost]
    path = folder / MANIFEST
    atomic_write_json(path, m, indent=1)
    return path


def coverage_line(summary: dict) -> str | None:
    """'spatial coverage: 2990 of 3000 posed frames (99.7%) have a spatial pair' (a generation's: 'of its 300
    new posed frames'), or None without spatial mining or without posed frames."""
    c = summary.get("spatial_coverage")
    if not c or not c["posed_frames"]:  # no spatial mining, or no posed frame (warned about when mining)
        return None
    share = "-" if c["share"] is None else f"{100 * c['share']:.1f}%"
    of = f"its {c['posed_frames']} new" if c.get("new") else str(c["posed_frames"])
    return f"spatial coverage: {c['with_spatial_pair']} of {of} posed frames ({share}) have a spatial pair"


def frames_line(summary: dict, pairs_only: bool = False) -> str:
    """'frames: 200 in life, 41 sampled, 40 used, 0 without pose, 0 missing, 1 corrupt (8 of 182 pairs not
    written)': missing / corrupt count the frames the writer could not decode plus the images the life's reader
    left out as unreadable (said in the parentheses, with the videos it skipped). A --pairs-only set writes no
    pairs into shards: the count of those not written is left out."""
    s = summary
    left = s.get("frames_left_out") or {}
    unread, videos = left.get("frames_unreadable", 0), left.get("videos_skipped", 0)
    notes = []
    if unread:
        notes.append(f"{unread} of them {'an image' if unread == 1 else 'images'} left out as unreadable when the "
                     "life was read")
    if videos:
        notes.append(f"{videos} unreadable {'video' if videos == 1 else 'videos'} skipped when the life was read")
    if not pairs_only:
        notes.append(f"{s.get('pairs_dropped_corrupt', 0)} of {s['pairs']} pairs not written")
    return (f"frames: {s['frames_in_life']} in life, {s['frames_sampled']} sampled, {s['frames_used']} used, "
            f"{s['frames_without_pose']} without pose, {s.get('frames_missing', 0)} missing, "
            f"{s.get('frames_corrupt', 0) + unread} corrupt" + (f" ({'; '.join(notes)})" if notes else ""))


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
            parts.append(f"{n} {'frame' if n == 1 else 'frames'} with {what} (first: {summary.get(f'first_{key}')})")
    share = f" ({100 * dropped / total:.1f}%)" if total else ""
    return f"{dropped} of {total} pairs{share} were not written: " + "; ".join(parts)


def generation_record(number: int, recordings: list[dict], first_pair: int, pairs: int, first_shard: int,
                      shards: int, run: str, command: str, summary: dict, geometry: str,
                      added: str | None = None, spatial_rule: str | None = None) -> dict:
    """One entry of the manifest's `generations`: the recordings it added (name, path, sampled frames,
    fingerprint), its pairs (indices first_pair .. first_pair + pairs - 1, the sample keys) and shards
    (numbers first_shard .. first_shard + shards - 1), the run digest its stats carry, the command, its
    summary, a digest of the life's geometry when it was mined, the UTC time it was added (None for
    a set made before generations existed) and, for a later generation, the rule its spatial pairs were
    mined by (`spatial.SPATIAL_RULE`; absent: mined before that rule existed, or generation 0)."""
    rec = {"generation": number, "added": added, "recordings": recordings, "first_pair": first_pair,
           "pairs": pairs, "first_shard": first_shard, "shards": shards, "run": run, "command": command,
           "geometry": geometry, "summary": summary}
    if spatial_rule is not None:
        rec["spatial_rule"] = spatial_rule
    return rec


def shard_of_pair(manifest: dict, pair: int) -> int:
    """The shard number that holds pair index `pair` (through the generations' ranges when the set has them)."""
    pps = manifest["config"]["pairs_per_shard"]
    for g in reversed(manifest.get("generations") or []):
        if pair >= g["first_pair"]:
            return g["first_shard"] + (pair - g["first_pair"]) // pps
    return pair // pps


class ListedShard(NamedTuple):
    """A tar a reader should read, with what the set's manifest says of it (None: not said)."""

    path: Path
    samples: int | None  # sample count
    bytes: int | None  # file size
    sha256: str | None = None  # content digest
    generation: int | None = None  # the generation that added it (sets with generations)


def _entry(entry) -> tuple[str | None, int | None, int | None, str | None, int | None]:
    """A manifest shard entry (a name, or a dict like {"name","samples","bytes","sha256","generation"}, also the
    field names other WebDataset tools use) -> (file name, sample count, size in bytes, sha256, generation),
    None where not given."""
    if isinstance(entry, str):
        return entry, None, None, None, None
    if isinstance(entry, dict):
        name = next((entry[k] for k in ("name", "file", "path", "tar", "url") if k in entry), None)
        n = next((entry[k] for k in ("samples", "pairs", "count", "num_samples", "n") if k in entry), None)
        size, digest, gen = entry.get("bytes"), entry.get("sha256"), entry.get("generation")
        return (name, (int(n) if n is not None else None), (int(size) if size is not None else None),
                (str(digest) if digest else None), (int(gen) if gen is not None else None))
    return None, None, None, None, None


def manifest_shards(folder: Path) -> list[ListedShard]:
    """The tars a reader should read from a shard folder -> [ListedShard(tar path, sample count, bytes, sha256,
    generation)], each None where the manifest does not say it.

    From manifest.json when there is one; without it (a run not finished, or nodes not merged) the tars that
    have their stats (finished), with a warning; SlifeError when there is nothing to read."""
    folder = Path(folder)
    man = folder / MANIFEST
    if not man.exists():
        tars = sorted(folder.glob(SHARD_GLOB))
        if not tars:
            raise SlifeError(f"{folder}: not a shard folder (no {MANIFEST} and no {SHARD_GLOB})")
        done = [t for t in tars if stats_path(t).exists()]
        if not done:
            raise SlifeError(f"{folder}: no {MANIFEST} and none of its {len(tars)} {SHARD_GLOB} is finished "
                             "(no .stats.json beside it)")
        log.warning("%s: no %s; reading the %d of %d %s that have a .stats.json (finished)",
                    folder, MANIFEST, len(done), len(tars), SHARD_GLOB)
        warn_incomplete(folder, [t.name for t in tars if t not in done], len(tars))
        return [ListedShard(t, None, None) for t in done]
    manifest = read_manifest(folder)
    entries = manifest.get("shards") if isinstance(manifest, dict) else None
    if entries is None:
        return [ListedShard(t, None, None) for t in sorted(folder.glob(SHARD_GLOB))]
    out = []
    for e in entries:
        name, n, size, digest, gen = _entry(e)
        if name is None:
            raise SlifeError(f"{man}: shard entry without a file name: {e!r}")
        out.append(ListedShard(folder / Path(name).name if not Path(name).is_absolute() else Path(name), n, size,
                               digest, gen))
    return out


def inspect_shards(folder: Path | str) -> dict:
    """Summarise a shard folder and check every tar; `ok` is False with `problems` listed when anything is off:
    a tar unreadable, without stats, with a sample count or sha256 other than its stats and the manifest say,
    listed in the manifest but missing, or not listed."""
    folder = Path(folder)
    problems: list[str] = []
    man = None
    if (folder / MANIFEST).exists():
        try:
            man = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            problems.append(f"{MANIFEST} unreadable: {e}")
    else:
        problems.append(f"{MANIFEST} missing (run not finished, or nodes not merged)")
    tars = sorted(folder.glob(SHARD_GLOB))
    listed = {s["name"]: s for s in (man or {}).get("shards", [])}
    gens = (man or {}).get("generations") or []
    run_of = {shard_name(s): g["run"] for g in gens for s in range(g["first_shard"], g["first_shard"] + g["shards"])}
    for name in listed:
        if not (folder / name).exists():
            problems.append(f"{name}: listed in the manifest but missing")
    total = 0
    per_strategy: dict[str, int] = {}
    for tp in tars:
        st_path = stats_path(tp)
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
        if st is not None and tp.name in run_of and st.get("run") != run_of[tp.name]:
            problems.append(f"{tp.name}: its stats are of another run than its generation's")
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
    if gens:
        out["generations"] = [{"generation": g["generation"], "added": g["added"],
                               "recordings": [r["name"] for r in g["recordings"]], "pairs": g["pairs"],
                               "samples": g.get("samples"),
                               "shards": shard_range(g["first_shard"], g["shards"]),
                               "spatial_coverage": coverage_line(g.get("summary") or {}),
                               "pairs_lost": loss_line(g.get("summary") or {})}
                              for g in gens]
    return out


# ----------------------------------------------------------------------------------------------------
# samples: write side


class TarShard:
    """Writes samples ({"__key__": str, ext: bytes}) as webdataset's TarWriter does (USTAR, a sample's members
    contiguous and sorted, `<key>.<ext>` names), with fixed mtimes, modes and owners: same samples, same bytes."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT)

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        for ext in sorted(k for k in sample if not k.startswith("_")):
            data = sample[ext]
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 0, 0o444, "bigdata", "bigdata"
            self.tar.addfile(ti, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


def tar_members(path: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (offset of its data, size) in a tar as `TarShard` writes it (USTAR), from the headers only:
    one 512-byte read per member, so that a writer can take a few members out of a large tar cheaply. Stops at
    the end-of-archive block or a header it cannot read (what follows is left out)."""
    out: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as f:
        off = 0
        while True:
            f.seek(off)
            h = f.read(512)
            if len(h) < 512 or not h.strip(b"\0"):
                break
            try:
                name = h[:100].split(b"\0", 1)[0].decode()
                prefix = h[345:500].split(b"\0", 1)[0].decode()
                size = int(h[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            except (UnicodeDecodeError, ValueError):
                break
            if h[156:157] in (b"0", b"\0"):
                out[f"{prefix}/{name}" if prefix else name] = (off + 512, size)
            off += 512 + -(-size // 512) * 512
    return out


def stored_views(path: Path):
    """Where a tar of this format holds each view's encoded frame, from its headers (`tar_members`): (V, 6) int64
    rows (pair index, view 0 "src" | 1 "tgt", JPEG offset, length, depth PNG offset, length; 0, 0 without a
    depth member), in the tar's order. The pair index is the sample key's (`sample_key`), so the life's name in
    the key (the one it had when the tar was written) does not matter."""
    import numpy as np

    jpg: dict[tuple[int, int], tuple[int, int]] = {}
    dep: dict[tuple[int, int], tuple[int, int]] = {}
    for name, v in tar_members(path).items():
        key, _, ext = name.partition(".")
        view, _, kind = ext.partition(".")
        if view not in ("src", "tgt") or kind not in ("jpg", "depth.png"):
            continue
        try:
            k = (int(key.rsplit("_", 1)[-1]), 0 if view == "src" else 1)
        except ValueError:
            continue
        (jpg if kind == "jpg" else dep)[k] = v
    rows = [(*k, *v, *dep.get(k, (0, 0))) for k, v in jpg.items()]
    return np.array(rows, np.int64).reshape(-1, 6)


def sample_key(life: str, pair_index: int) -> str:
    """A sample's `__key__`: the life's name and the pair's place in the set's pair order."""
    return f"{life}_{pair_index:09d}"


def sample_members(key: str, src_jpg: bytes, tgt_jpg: bytes, meta: dict, src_depth: bytes | None = None,
                   tgt_depth: bytes | None = None) -> dict:
    """One pair as a sample for `TarShard.write`; the depth members only when both views have depth."""
    sample = {"__key__": key, "src.jpg": src_jpg, "tgt.jpg": tgt_jpg, "json": json.dumps(meta).encode()}
    if src_depth is not None and tgt_depth is not None:
        sample["src.depth.png"] = src_depth
        sample["tgt.depth.png"] = tgt_depth
    return sample


def camera_meta(cam) -> dict | None:
    """A `geometry.Camera` (at the stored size) as the sample json's `cam_a`/`cam_b`, or None."""
    if cam is None:
        return None
    return {"model": cam.model, "width": cam.width, "height": cam.height, "params": list(cam.params)}


def pair_meta(life: str, strategy: str, video_a: str, video_b: str, frame_a: int, frame_b: int, t_a: float,
              t_b: float, jaccard: float | None, T_a, T_b, cam_a, cam_b) -> dict:
    """The `json` member of a sample: DESIGN.md's fields (`K` is the source view's intrinsics) plus `K_b` (the
    target view's, null if unknown) and `cam_a`/`cam_b` (camera model, size, parameters at the stored size).
    `T_a`/`T_b` are 4x4 camera-to-world lists or None; `cam_a`/`cam_b` Cameras at the stored size or None."""
    return {
        "life": life, "strategy": strategy, "video_a": video_a, "video_b": video_b,
        "frame_a": int(frame_a), "frame_b": int(frame_b), "t_a": float(t_a), "t_b": float(t_b),
        "jaccard": jaccard, "T_a": T_a, "T_b": T_b,
        "K": None if cam_a is None else cam_a.K.tolist(),
        "K_b": None if cam_b is None else cam_b.K.tolist(),
        "cam_a": camera_meta(cam_a), "cam_b": camera_meta(cam_b),
    }


# ----------------------------------------------------------------------------------------------------
# samples: read side

REQUIRED = ("src.jpg", "tgt.jpg", "json")  # members every sample has (depth PNGs are optional)


def view_K(meta: dict, view: str):
    """The 3x3 intrinsics (nested lists) of view "src" or "tgt" from a sample's json, or None.

    Sets written to DESIGN.md's fields alone have one `K` for both views; slife's add `K_b` for the target
    (null: unknown), so the target falls back to `K` only when `K_b` is absent."""
    if view == "src" or "K_b" not in meta:
        return meta.get("K")
    return meta["K_b"]


def is_augmented(meta) -> bool:
    """Whether a pair's json marks an `augmented` pair (one frame stored as both views)."""
    if not isinstance(meta, dict):
        return False
    if "augmented" in str(meta.get("strategy") or "").split("+"):
        return True
    return (meta.get("frame_a") is not None and meta.get("frame_a") == meta.get("frame_b")
            and meta.get("video_a") == meta.get("video_b"))


# ----------------------------------------------------------------------------------------------------
# the pair table


def write_pair_table(folder: Path, rows: list[dict], names: list[tuple[str, str]], keep: int = 0) -> Path:
    """Write `pairs.txt` (hloc-style "name_a name_b", one per pair) and then `pairs.jsonl` (one JSON object per
    pair, in pair order), each atomically, after the first `keep` lines already there (the pairs of earlier
    generations); returns the pairs.jsonl path."""
    folder = Path(folder)
    for name, lines in ((PAIRS_TXT, [f"{a} {b}" for a, b in names]), (PAIRS_JSONL, [json.dumps(r) for r in rows])):
        if keep:
            try:
                old = (folder / name).read_text().splitlines()[:keep]
            except OSError:
                old = []
            if len(old) < keep:
                log.warning("%s: holds %d of the %d pairs of the earlier generations; they are missing from it",
                            folder / name, len(old), keep)
            lines = old + lines
        atomic_write_bytes(folder / name, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return folder / PAIRS_JSONL


def read_pair_table(folder: Path) -> list[dict]:
    """The rows of a set's pairs.jsonl."""
    return [json.loads(line) for line in (Path(folder) / PAIRS_JSONL).read_text().splitlines() if line]


# ----------------------------------------------------------------------------------------------------
# the per-generation npz files (visibility cache, frame-location index): a JSON `meta` beside named arrays


def _write_npz(path: Path, meta: dict, arrays: dict) -> None:
    """Write `meta` (as JSON bytes) and `arrays` into one npz file at `path`, atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_npz(path: Path, names: tuple[str, ...], consistent) -> tuple[dict | None, dict | None, str]:
    """`path`'s (meta, {name: array}, "") or (None, None, why) when the file is missing, unreadable, lacks one
    of `names`, or `consistent(meta, arrays)` is false (the callers then compute what it caches again)."""
    import numpy as np

    if not path.exists():
        return None, None, f"{path.name} is missing"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            arrays = {k: z[k] for k in names}
        if not isinstance(meta, dict) or not consistent(meta, arrays):
            raise ValueError("inconsistent rows")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:  # TypeError: a 0-d array
        return None, None, f"{path.name} is damaged ({type(e).__name__}: {e})"
    return meta, arrays, ""


# ----------------------------------------------------------------------------------------------------
# the visibility cache: per generation, the visible items of its frames (so that an append projects only
# the new frames)


def write_visibility(folder: Path, g: int, meta: dict, indptr, indices) -> None:
    """Write generation g's `visibility-%04d.npz` atomically: `meta` (JSON: what the rows are valid for and the
    recordings whose frames they are, in order) and the CSR rows of those frames (indptr (F + 1,) int64,
    indices int32 item ids)."""
    import numpy as np

    _write_npz(Path(folder) / visibility_name(g), meta,
               {"indptr": np.asarray(indptr, np.int64), "indices": np.asarray(indices, np.int32)})


def _csr_rows(meta: dict, a: dict) -> bool:
    import numpy as np

    indptr = a["indptr"]
    return (indptr.ndim == 1 and len(indptr) >= 1 and indptr[0] == 0 and int(indptr[-1]) == len(a["indices"])
            and not (np.diff(indptr) < 0).any())


def read_visibility(folder: Path, g: int) -> tuple[dict | None, object, object, str]:
    """Generation g's cached rows -> (meta, indptr, indices, "") or (None, None, None, why) when the file is
    missing or damaged (the caller computes the visibility again)."""
    meta, a, why = _read_npz(Path(folder) / visibility_name(g), ("indptr", "indices"), _csr_rows)
    return (meta, a["indptr"], a["indices"], "") if a is not None else (None, None, None, why)


# ----------------------------------------------------------------------------------------------------
# the frame-location index: per generation, where its tars hold each frame (so that an append finds the old
# frames its pairs use without reading the earlier pairs and every old tar's headers)

LOCATION_ARRAYS = ("recording", "frame", "shard", "loc", "spatial")  # what a locations file holds besides meta


def write_locations(folder: Path, g: int, meta: dict, recording, frame, shard, loc, spatial) -> None:
    """Write generation g's `locations-%04d.npz` atomically: `meta` (JSON: the generation's pair and shard ranges,
    run digest, its tars' sizes, and `names`, the recordings the rows name) and one row per frame its tars hold
    (its first view in pair order): `recording` (F,) int32 index into names, `frame` (F,) int64 frame number in
    the recording, `shard` (F,) int32 shard number (-1: a --pairs-only generation, no tar), `loc` (F, 4) int64
    JPEG offset, length, depth PNG offset, length (0, 0: no depth member), `spatial` (F,) bool: in a spatial
    pair of that generation."""
    import numpy as np

    _write_npz(Path(folder) / locations_name(g), meta,
               {"recording": np.asarray(recording, np.int32), "frame": np.asarray(frame, np.int64),
                "shard": np.asarray(shard, np.int32), "loc": np.asarray(loc, np.int64).reshape(-1, 4),
                "spatial": np.asarray(spatial, bool)})


def _location_rows(meta: dict, a: dict) -> bool:
    n, names = len(a["frame"]), meta.get("names")
    return (isinstance(names, list) and all(a[k].shape[:1] == (n,) for k in LOCATION_ARRAYS)
            and a["loc"].shape == (n, 4)
            and not (n and (int(a["recording"].min()) < 0 or int(a["recording"].max()) >= len(names))))


def read_locations(folder: Path, g: int) -> tuple[dict | None, dict | None, str]:
    """Generation g's frame locations -> (meta, {name: array} of `LOCATION_ARRAYS`, "") or (None, None, why) when
    the file is missing or damaged (the caller reads the pairs and tar headers again)."""
    return _read_npz(Path(folder) / locations_name(g), LOCATION_ARRAYS, _location_rows)
