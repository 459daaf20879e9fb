"""`slife sfm`'s chunk mapping (stage 7): 1 worker x 2 threads against 2 workers x 1 thread, on one finished run.

Takes a finished `slife sfm` output folder RUN (never modified) and, for each setting, copies it to
bench/out/sfm-mapping-<W>x<T>/ without its chunk models (`work/map-*`), merge marker and `sparse/`, and with
its sfm.json back to an unfinished run of the same settings, so that `slife sfm` resumes there: stages 1-6 are
skipped (their markers), mapping and merge are redone, with `--threads W*T --map-workers W` (so the merge
has W*T threads). Each `slife sfm` runs in its own child process (`nice` is inherited), the settings one
after the other (`--repeat` alternates them). Reported per run: mapping wall
and CPU seconds (from sfm.json: CPU of this process and of the worker processes; wall the time the chunks'
spans cover), each chunk's wall / CPU / peak memory, the load average at the start and end, the registered
share and the ATE after the merge (sfm.json's `ground_truth`), and whether `database.db` holds the same bytes
afterwards apart from SQLite's file change counter (COLMAP writes the schema version each time it opens the
database, which bumps the counter; nothing else may change).

    nice -n 10 .venv/bin/python bench/bench_sfm_mapping.py RUN --settings 1x2 2x1 [--repeat 2]

RUN must have been made from a life with poses (a synthetic one: `bench_sfm.py`); its sfm.json names it. One
JSON line per run is appended to bench/out/bench_sfm_mapping.jsonl; the table is in bench/lives.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def content(path: Path) -> bytes:
    """The database file without the two header fields that every write transaction bumps (SQLite file format:
    bytes 24-27 the file change counter, 92-95 the version-valid-for number)."""
    b = bytearray(path.read_bytes())
    b[24:28] = b[92:96] = bytes(4)
    return bytes(b)


def copy_for_mapping(run: Path, dst: Path) -> dict:
    """RUN -> dst without the mapping and merge results; returns the identity (config, life) of RUN."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("images", "work", "database.db"):
        src = run / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    for p in list((dst / "work").iterdir()):
        if p.name.startswith(("map-", ".map-", "merge")):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    made = json.loads((run / "sfm.json").read_text())
    ident = {"config": made["config"], "life": made["life"], "complete": False}
    (dst / "sfm.json").write_text(json.dumps(ident, indent=1))
    return ident


def one(run: Path, workers: int, threads: int) -> dict:
    dst = OUT / f"sfm-mapping-{workers}x{threads}"
    ident = copy_for_mapping(run, dst)
    cfg = ident["config"]
    before = content(dst / "database.db")
    args = [sys.executable, "-m", "slife", "sfm", ident["life"], "--out", str(dst), "--max-side", str(cfg["max_side"]),
            "--fps", str(cfg["fps"]), "--max-features", str(cfg["max_features"]), "--overlap", str(cfg["overlap"]),
            "--loop-candidates", str(cfg["loop_candidates"]), "--loop-min-gap", str(cfg["loop_min_gap"]),
            "--vocab-words", str(cfg["vocab_words"]), "--mapper", cfg["mapper"], "--chunk", str(cfg["chunk"]),
            "--chunk-overlap", str(cfg["chunk_overlap"]), "--seed", str(cfg["seed"]),
            "--threads", str(workers * threads), "--map-workers", str(workers)]
    load0, t = os.getloadavg(), time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode:
        raise SystemExit(f"slife sfm failed ({res.returncode}): {res.stderr[-2000:]}")
    info = json.loads((dst / "sfm.json").read_text())
    chunks = [json.loads(p.read_text()) for p in sorted((dst / "work").glob("map-*.json"))]
    g = info.get("ground_truth") or {}
    return {"workers": workers, "threads": threads, "run": str(run), "wall_s": round(time.perf_counter() - t, 1),
            "mapping": info["stages"]["mapping"], "merge": info["stages"]["merge"],
            "chunks": [{k: c.get(k) for k in ("images", "models", "wall_s", "cpu_s", "peak_rss_mib")} for c in chunks],
            "load_start": round(load0[0], 2), "load_end": round(os.getloadavg()[0], 2),
            "registered": g.get("registered"), "ate_rmse": g.get("ate_rmse"), "ate_median": g.get("ate_median"),
            "ate_rel": g.get("ate_rel"), "database_unchanged": content(dst / "database.db") == before}


def row(r: dict) -> str:
    m, g = r["mapping"], r["merge"]
    return (f"| {r['workers']} x {r['threads']} | {m['wall_s']:.0f} | {m['cpu_s']:.0f} | {m['cpu_s'] / m['wall_s']:.2f} | "
            + " / ".join(f"{c['wall_s']:.0f}/{c['cpu_s']:.0f}" for c in r["chunks"]) + " | "
            + f"{g['wall_s']:.0f} / {g['cpu_s']:.0f} | {r['load_start']}-{r['load_end']} | "
            + f"{100 * r['registered']:.1f}% | {r['ate_rmse']:.4f} / {r['ate_median']:.4f} ({100 * r['ate_rel']:.2f}%) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished slife sfm output folder (of a life with poses)")
    ap.add_argument("--settings", nargs="+", default=["1x2", "2x1"], help="WORKERSxTHREADS, run in this order")
    ap.add_argument("--repeat", type=int, default=1, help="run the settings this many times, alternating")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for _ in range(a.repeat):
        for s in a.settings:
            w, t = (int(v) for v in s.split("x"))
            r = one(a.run.resolve(), w, t)
            with open(OUT / "bench_sfm_mapping.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
            print(row(r), flush=True)


if __name__ == "__main__":
    main()
