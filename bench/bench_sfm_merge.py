"""`slife sfm`'s merge (stage 8) side by side: an earlier commit's `sfm_merge.py` against this tree's, on one run.

Takes a finished or stopped `slife sfm` output folder (its `database.db` and chunk models `work/map-*/`; never
modified: the database is copied) and the life it was made from. Each merge runs in its own child process,
one after the other, on the same models, and reports CPU seconds (every thread), wall seconds, its own peak
memory (VmHWM), the share of frames registered, 3D points, and the ATE against the life's own poses after
the least-squares similarity alignment (`slife.pairmine.sfm.pose_error`, as `slife sfm` reports it). With
`--revisits` also the cross-day spatial pairs of `bench_sfm.py` (recovered / linked / SfM pairs true).

    nice -n 10 .venv/bin/python bench/bench_sfm_merge.py RUN LIFE --baseline b2a6bf8 [--revisits]

The merged models are written to bench/out/sfm-merge-<variant>/ (sparse/0 and a link to RUN/images); one JSON
line per variant is appended to bench/out/bench_sfm_merge.jsonl; the table is in bench/lives.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def merge_module(commit: str | None):
    """This tree's `slife.pairmine.sfm_merge`, or the file as it was at `commit` (loaded from git)."""
    if commit is None:
        from slife.pairmine import sfm_merge
        return sfm_merge
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:slife/pairmine/sfm_merge.py"], check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"sfm_merge_{commit}")
    exec(compile(src, f"sfm_merge.py@{commit}", "exec"), mod.__dict__)
    return mod


def child(run: Path, life: Path, out: Path, commit: str | None) -> dict:
    """One merge of `run`'s chunk models -> its figures (runs in the child process)."""
    import inspect
    import logging

    import pycolmap

    from slife.lives import read_life
    from slife.lives.colmap import colmap_log
    from slife.pairmine.sfm import pose_error

    mod = merge_module(commit)
    dirs = sorted(d for d in (run / "work").glob("map-*") if d.is_dir())
    models = [pycolmap.Reconstruction(str(m)) for d in dirs for m in sorted(d.iterdir(), key=lambda p: int(p.name))]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "database.db"
        shutil.copy(run / "database.db", db)
        params = inspect.signature(mod.merge_models).parameters
        extra = [run / "images", Path(tmp) / "scratch"] if "scratch" in params else []  # the old signature
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        with colmap_log(logging.getLogger("bench")):
            rec, report = mod.merge_models(models, db, *extra, num_threads=2, seed=0)
        wall = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    if out.exists():
        shutil.rmtree(out)
    (out / "sparse" / "0").mkdir(parents=True)
    rec.write(out / "sparse" / "0")
    (out / "images").symlink_to((run / "images").resolve())
    gt = read_life(life)
    logging.getLogger("slife").setLevel(logging.ERROR)
    frames = len(list((run / "images").rglob("*.jpg")))
    with open("/proc/self/status") as f:
        peak = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 2 ** 20
    return {"cpu_s": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, "wall_s": wall, "peak_gib": peak,
            "frames": frames, "registered": rec.num_reg_images() / max(frames, 1), "points": rec.num_points3D(),
            "ground_truth": pose_error(gt, read_life(out)), "report": report}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a `slife sfm` output folder with database.db and work/map-*/")
    p.add_argument("life", type=Path, help="the life it was made from (with poses)")
    p.add_argument("--baseline", default="b2a6bf8", help="commit whose sfm_merge.py is the baseline")
    p.add_argument("--revisits", action="store_true", help="also the cross-day pair figures (bench_sfm.py)")
    p.add_argument("--child", choices=("baseline", "tree"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        res = child(a.run, a.life, a.out, a.baseline if a.child == "baseline" else None)
        print(json.dumps(res, default=str))
        return
    import os

    OUT.mkdir(parents=True, exist_ok=True)
    print("| merge | CPU s | wall s | load | peak GiB | registered | points | ATE RMS / median m (% of extent) | "
          "recovered | linked | SfM pairs true |\n|" + "---|" * 11, flush=True)
    for variant in ("baseline", "tree"):
        name = f"{a.baseline}" if variant == "baseline" else "this tree"
        out = OUT / f"sfm-merge-{a.run.name}-{variant}"
        proc = subprocess.run([sys.executable, __file__, str(a.run), str(a.life), "--baseline", a.baseline,
                               "--child", variant, "--out", str(out)], capture_output=True, text=True)
        if proc.returncode:
            print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update(variant=name, run=str(a.run), load=os.getloadavg()[0])
        if a.revisits:
            sys.path.insert(0, str(ROOT / "bench"))
            from bench_sfm import revisits

            res["revisits"] = revisits(a.life, out)
        with open(OUT / "bench_sfm_merge.jsonl", "a") as f:
            f.write(json.dumps(res) + "\n")
        g, v = res["ground_truth"], res.get("revisits") or {}
        f2 = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"| {name} | {res['cpu_s']:.0f} | {res['wall_s']:.0f} | {res['load']:.1f} | {res['peak_gib']:.2f} | "
              f"{100 * res['registered']:.1f}% | {res['points']} | {g['ate_rmse']:.4f} / {g['ate_median']:.4f} "
              f"({100 * g['ate_rel']:.2f}%) | {f2(v.get('recovered'))} | {f2(v.get('linked'))} | "
              f"{f2(v.get('sfm_pairs_true'))} |", flush=True)


if __name__ == "__main__":
    main()
