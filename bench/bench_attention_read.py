"""How long the decoder's attention takes to read, with the target complete and masked (`attention.masked_logits`).

Run: `.venv/bin/python bench/bench_attention_read.py [--pairs 96] [--preset tiny] [--threads 1]` (under a minute on
2 cores). Times, on random images of the preset's size, in one process and interleaved (repeats alternate), the
three ways to read one batch of pairs: complete (`cross_attention_logits`, nothing masked), masked as the evaluation
does it (`masked_logits`: each pair read through the R `masked_reads`, the source encoded once per decoder pass:
twice for the tiny preset), and the same reads with the source encoded again for every read and without the
averaging (close to the first version); prints pairs per second and the ratios to the complete read.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slife.eval.attention import masked_logits, masked_reads
from slife.train.model import CROCO_PRESETS, CroCoNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16, help="pairs per forward pass (the evaluation's)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the demo's evaluation uses 1)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = CroCoNet(**CROCO_PRESETS[a.preset]).eval()
    S = m.patch_embed.img_size[0]
    tgt, src = torch.randn(a.pairs, 3, S, S), torch.randn(a.pairs, 3, S, S)
    n = m.patch_embed.num_patches
    reads = masked_reads(n, n - m.mask_generator.num_masked(n))

    def per_read(t, s):  # the source encoded again for every read (the reads' logits, not averaged)
        R = reads.shape[0]
        return m.cross_attention_logits(t.repeat(R, 1, 1, 1), s.repeat(R, 1, 1, 1),
                                        reads.repeat_interleave(len(t), dim=0))

    ways = {"complete": m.cross_attention_logits, "masked (the evaluation's)": lambda t, s: masked_logits(m, t, s),
            "masked (source every read)": per_read}
    times = {k: [] for k in ways}
    with torch.inference_mode():
        for name, f in ways.items():  # warm-up
            f(tgt[: a.batch], src[: a.batch])
        for _ in range(a.repeats):
            for name, f in ways.items():
                t0 = time.perf_counter()
                for i in range(0, a.pairs, a.batch):
                    f(tgt[i:i + a.batch], src[i:i + a.batch])
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["complete"])
    print(f"| read ({a.preset}, {a.pairs} pairs, batch {a.batch}, {a.threads} thread(s), {reads.shape[0]} reads) "
          "| pairs/s (median of {}) | time / complete |".format(a.repeats))
    print("|---|---|---|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {a.pairs / t:.1f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
