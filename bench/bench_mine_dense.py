"""Spatial coverage in dense places: does every posed frame get `--per-frame` partners inside [j_min, j_max]?

Procedural posed lives (slife.pairmine.procedural) walked in one room (every frame sees the same room, the
dense case) and in a 3 x 3 house (the usual case), each in a fresh subprocess. An exact all-pairs count
(dense V V^T on the same visibility) gives each frame's partners in range; the spatial miner's pairs are
compared with it:

- `>= 1`: share of frames with partners in range that get at least one spatial pair;
- `>= min(K, avail)`: share that get at least min(per_frame, partners in range) distinct partners;
- `J / best J`: the Jaccard summed over each frame's partners (as source view), over the sum of its
  per_frame best Jaccards in range (1.0: the exact top per_frame).

    .venv/bin/python bench/bench_mine_dense.py --frames 1000 3000 8000

To compare two versions of the miner, run it once with each on PYTHONPATH. Results go into bench/pairmine.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
from slife.pairmine import MineConfig
from slife.pairmine.procedural import make_life
from slife.pairmine.visibility import compute_visibility
from slife.pairmine.spatial import find_pair_arrays
a = json.loads(sys.argv[1])
life = make_life(a["frames"], rooms=(a["rooms"], a["rooms"]), videos=1, seed=0, density=10.0)
cfg = MineConfig(voxel=0.3, per_frame=a["per_frame"])
vis = compute_visibility(life, cfg.max_depth, cfg.voxel, cfg.zbuffer_cells)
V = vis.V.astype(np.float32)
inter = (V @ V.T).toarray()  # (N, N)
s = vis.sizes.astype(np.float32)
J = inter / np.maximum(s[:, None] + s[None, :] - inter, 1)
del inter
np.fill_diagonal(J, 0)
inr = (J >= cfg.j_min) & (J <= cfg.j_max)
avail = inr.sum(1)
K = cfg.per_frame
best = -np.sort(-np.where(inr, J, 0), axis=1)[:, :K].sum(1)
above = float((J > cfg.j_max).sum(1).mean())
del J, inr
t = time.perf_counter()
pa, pb, Jp = find_pair_arrays(life, cfg, np.random.default_rng(0), vis)
dt = time.perf_counter() - t
n = len(life)
partners = np.zeros(n, np.int64)
key = np.unique(np.minimum(pa, pb) * n + np.maximum(pa, pb))
np.add.at(partners, key // n, 1)
np.add.at(partners, key % n, 1)
has = avail > 0
got = np.bincount(pa, weights=Jp, minlength=n)
print(json.dumps({"frames": n, "with_partners": int(has.sum()), "median_avail": float(np.median(avail)),
                  "above_jmax": above, "pairs": int(len(pa)), "spatial_s": dt,
                  "one": float((partners[has] > 0).mean()), "k": float((partners[has] >= np.minimum(K, avail[has])).mean()),
                  "quality": float(got[has].sum() / best[has].sum())}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="*", default=[1000, 3000, 8000])
    p.add_argument("--rooms", type=int, nargs="*", default=[1, 3], help="house sizes (rooms x rooms) to walk")
    p.add_argument("--per-frame", type=int, default=5)
    a = p.parse_args()
    print("| rooms | frames | frames with partners in range | median partners in range | partners above j_max "
          "(mean) | pairs | >= 1 | >= min(K, avail) | J / best J | spatial s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rooms in a.rooms:
        for n in a.frames:
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"frames": n, "rooms": rooms,
                                                                         "per_frame": a.per_frame})],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(r.stderr)
            o = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"| {rooms}x{rooms} | {o['frames']} | {o['with_partners']} | {o['median_avail']:.0f} | "
                  f"{o['above_jmax']:.1f} | {o['pairs']} | {o['one']:.4f} | {o['k']:.4f} | {o['quality']:.3f} | "
                  f"{o['spatial_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
