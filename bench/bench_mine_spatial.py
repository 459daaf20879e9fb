"""Spatial mining scale and exactness: procedural posed lives of growing size, and brute force at 2k frames.

Each size runs in a fresh subprocess (time, peak RSS of that process alone): visibility (points projected
with the z-buffer) + spatial mining (MinHash candidates, exact Jaccard, per-frame best partners).
The lives are procedural (slife.pairmine.procedural): a fixed house of rooms x rooms rooms walked for
`frames` frames at 2 fps over days, so larger lives revisit the same places more (the hard case).

    .venv/bin/python bench/bench_mine_spatial.py --frames 10000 30000 100000 [270000] --brute 2000

Prints a markdown table; results go into bench/pairmine.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np
from slife.pairmine import MineConfig
from slife.pairmine.procedural import make_life
from slife.pairmine.visibility import compute_visibility
from slife.pairmine.spatial import find_pair_arrays, brute_force_pairs
a = json.loads(sys.argv[1])
life = make_life(a["frames"], rooms=(a["rooms"], a["rooms"]), videos=max(1, a["frames"] // 7200), seed=0,
                 density=a["density"])
cfg = MineConfig(voxel=a["voxel"], per_frame=a["per_frame"], lsh_window=a["window"], workers=a["threads"])
c0 = time.process_time()
t0 = time.perf_counter()
vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells, threads=a["threads"])
t1 = time.perf_counter()
c1 = time.process_time()
pa, pb, J = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
t2 = time.perf_counter()
c2 = time.process_time()
out = {"cpu_s": c2 - c0, "frames": len(life), "items_per_frame": float(vis.sizes.mean()), "vis_s": t1 - t0, "pairs_s": t2 - t1,
       "pairs": int(len(pa))}
if a.get("brute"):
    t3 = time.perf_counter()
    c3 = time.process_time()
    ref = brute_force_pairs(vis, cfg.j_min, cfg.j_max)
    out["brute_s"] = time.perf_counter() - t3
    out["brute_cpu_s"] = time.process_time() - c3
    out["ours_cpu_s"] = c2 - c0 - 0  # includes visibility; pairs-only cpu below
    out["pairs_cpu_s"] = c2 - c1
    got = set(zip(np.minimum(pa, pb).tolist(), np.maximum(pa, pb).tolist()))
    refs = set(map(tuple, ref.tolist()))
    out["brute_pairs"] = len(refs)
    out["recall"] = len(got & refs) / max(1, len(refs))
    out["extra"] = len(got - refs)
out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(out))
"""


def run_child(args: dict) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="*", default=[10000, 30000, 100000])
    p.add_argument("--brute", type=int, nargs="*", default=[2000], help="frames of the brute-force comparisons")
    p.add_argument("--rooms", type=int, default=6, help="house of rooms x rooms rooms (5 x 5 m each)")
    p.add_argument("--density", type=float, default=10.0, help="world points per square metre of surface")
    p.add_argument("--voxel", type=float, default=0.2)
    p.add_argument("--per-frame", type=int, default=5)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="threads for visibility and spatial mining (like --workers)")
    a = p.parse_args()
    common = {"rooms": a.rooms, "density": a.density, "voxel": a.voxel, "threads": a.threads}
    print(f"procedural house {a.rooms}x{a.rooms} rooms, {a.density:g} points/m^2, voxel {a.voxel} m, "
          f"max_depth 10 m, 64 MinHashes, per_frame {a.per_frame}, window {a.window}, threads {a.threads}\n")
    if a.brute:
        print("Brute force: dense all-pairs V V^T (per_frame 0, lsh_window 0 for ours; same visibility).\n")
        print("| frames | pairs (ours) | pairs (brute force) | recall | extra | ours: mining CPU s | "
              "brute force CPU s | brute / ours time |")
        print("|---|---|---|---|---|---|---|---|")
    for nb in a.brute:
        r = run_child({**common, "frames": nb, "per_frame": 0, "window": 0, "brute": True})
        print(f"| {r['frames']} | {r['pairs']} | {r['brute_pairs']} | {r['recall']:.4f} | {r['extra']} | "
              f"{r['pairs_cpu_s']:.2f} | {r['brute_cpu_s']:.2f} | {r['brute_cpu_s'] / r['pairs_cpu_s']:.2f}x |",
              flush=True)
    print()
    print("Wall times are on a shared 2-core machine; CPU time (one process, numpy single-threaded) is the "
          "uncontended cost.\n")
    print("| frames | items/frame | visibility wall s | spatial wall s | total wall s | total CPU s | CPU us/frame | "
          "pairs | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in a.frames:
        r = run_child({**common, "frames": n, "per_frame": a.per_frame, "window": a.window})
        tot = r["vis_s"] + r["pairs_s"]
        print(f"| {r['frames']} | {r['items_per_frame']:.0f} | {r['vis_s']:.1f} | {r['pairs_s']:.1f} | {tot:.1f} | "
              f"{r['cpu_s']:.1f} | {1e6 * r['cpu_s'] / r['frames']:.0f} | {r['pairs']} | {r['peak_rss_gib']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
