"""Benchmark: CroCo forward+backward time per pair, slife vs the reference naver/croco code, same weights.

Run:  CROCO_REPO=/path/to/croco .venv/bin/python bench/bench_model.py          (~3-5 min on 2 cores)
      .venv/bin/python bench/bench_model.py --presets tiny --reps 5             (no reference column)
For each preset and precision (fp32, bf16 autocast) both models get the same weights, the same batch and
the same mask; the step is forward + MaskedMSE(norm_pix_loss=True) + backward. Timings are interleaved
(slife, reference, reference, slife, ...); the ratio is the median of the per-repetition ratios (each from
two steps run back to back), with their quartiles. Time is the process CPU time (all threads; `--clock wall`
for elapsed time), because other processes' load then hardly moves it. Prints a markdown table: ms per
pair, ratio slife / reference (goal <= 0.7) and the max abs output and gradient differences.
The reference checkout is only imported from CROCO_REPO, never copied into slife.

`--floor` adds the matrix-product floor. In every repetition each model also runs one extra step in which
its matrix products (aten mm/addmm/bmm/baddbmm and the patch convolution, forward and backward) are timed
one by one as they run. Both implementations do the same products, and no implementation of the same model
can take less time than its products, so (slife's products / reference step), a median over repetitions
like the ratio, is the best ratio reachable on this machine. The reference's own product time is shown
too, as a check that the products are the same work in both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from slife.train.loss import MaskedMSE
from slife.train.model import CROCO_PRESETS, CroCoNet


CLOCK = time.process_time  # --clock wall: time.perf_counter


def load_reference():
    repo = os.environ.get("CROCO_REPO")
    if not repo or not (Path(repo) / "models" / "croco.py").exists():
        return None
    sys.path.insert(0, repo)
    try:
        from models.croco import CroCoNet as Ref  # noqa: PLC0415
    finally:
        sys.path.remove(repo)
    return Ref


def step(model, img1, img2, seed: int, bf16: bool, loss_fn) -> torch.Tensor:
    """One forward + loss + backward with the mask drawn from `seed`; returns the prediction (detached)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out, mask, target = model(img1, img2)
    loss_fn(out.float(), mask, target).backward()
    return out.detach().float()


class ProductTimer(TorchDispatchMode):
    """Time the matrix products (and the patch convolution) run under it, as they run inside a real step:
    `seconds` sums CLOCK() around each such op, forward and backward; `count` counts them."""

    OPS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward")

    def __init__(self):
        super().__init__()
        self.seconds, self.count = 0.0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in self.OPS:
            return func(*args, **(kwargs or {}))
        t0 = CLOCK()
        out = func(*args, **(kwargs or {}))
        self.seconds += CLOCK() - t0
        self.count += 1
        return out


def bench(preset: str, batch: int, reps: int, precisions: list[str], Ref, compiled: bool = False,
          floor: bool = False) -> list[dict]:
    kw = CROCO_PRESETS[preset]
    torch.manual_seed(0)
    ours = CroCoNet(**kw)
    ours_c = None
    if compiled:  # the same module, compiled (inductor; masks drawn as in eager so outputs stay comparable)
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
        ours_c = torch.compile(ours)
    ref = None
    if Ref is not None:
        ref = Ref(**kw)
        ref.load_state_dict(ours.state_dict(), strict=True)
    size = kw["img_size"]
    img1, img2 = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)
    loss_fn = MaskedMSE(norm_pix_loss=True)
    rows = []
    for prec in precisions:
        bf16 = prec == "bf16"
        models = {"slife": ours} if ref is None else {"slife": ours, "reference": ref}
        if ours_c is not None:
            models["slife compiled"] = ours_c
        outs = {name: step(m, img1, img2, 1, bf16, loss_fn) for name, m in models.items()}  # warm-up + outputs
        times, counts = {name: [] for name in models}, {}
        runs = list(models) + ([f"{name} products" for name in models if name != "slife compiled"] if floor else [])
        for r in range(reps):  # every other repetition in reverse order (ABBA): a steady drift cancels out
            for name in (runs if r % 2 == 0 else runs[::-1]):
                if name.endswith(" products"):  # an extra step with its matrix products timed one by one
                    timer = ProductTimer()
                    with timer:
                        step(models[name.removesuffix(" products")], img1, img2, 2 + r, bf16, loss_fn)
                    times.setdefault(name, []).append(timer.seconds)
                    counts[name] = timer.count
                    continue
                m = models[name]
                t0 = CLOCK()
                step(m, img1, img2, 2 + r, bf16, loss_fn)
                times[name].append(CLOCK() - t0)
        row = {"preset": preset, "precision": prec, "batch": batch,
               "slife": statistics.median(times["slife"]) / batch * 1e3}
        if ref is not None:
            row["reference"] = statistics.median(times["reference"]) / batch * 1e3
            # median of the per-repetition ratios (each pair of steps ran back to back, so a VM that changes
            # speed between repetitions moves both), with their quartiles as the spread
            ratios = sorted(a / b for a, b in zip(times["slife"], times["reference"]))
            row["ratio"] = statistics.median(ratios)
            q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            row["ratio_q1"], row["ratio_q3"] = q[0], q[2]
            row["diff"] = (outs["slife"] - outs["reference"]).abs().max().item()
            gs = [(p.grad, q.grad) for p, q in zip(ours.parameters(), ref.parameters())]
            row["grad_diff"] = max((a - b).abs().max().item() for a, b in gs)
        if floor:  # products of the same repetition as the timed steps, so VM speed swings cancel in ratios
            row["products"] = counts["slife products"]
            row["floor"] = statistics.median(times["slife products"]) / batch * 1e3
            if ref is not None:
                row["ref_products"] = statistics.median(times["reference products"]) / batch * 1e3
                row["floor_ratio"] = statistics.median(a / b for a, b in zip(times["slife products"], times["reference"]))
        if ours_c is not None:
            row["compiled"] = statistics.median(times["slife compiled"]) / batch * 1e3
            row["compiled_diff"] = (outs["slife compiled"] - outs["slife"]).abs().max().item()
            if ref is not None:
                row["compiled_ratio"] = row["compiled"] / row["reference"]
        rows.append(row)
        print(f"# {preset} {prec}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in row.items()), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="base,tiny", help="comma-separated CROCO_PRESETS names")
    ap.add_argument("--batch", default="base=4,tiny=32", help="batch per preset, e.g. base=4,tiny=32 (default 4)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per model (after one warm-up)")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--compile", action="store_true", help="also time slife under torch.compile (inductor)")
    ap.add_argument("--floor", action="store_true",
                    help="also time each model's matrix products inside an extra step per repetition: the floor any "
                         "implementation of the same model would hit")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU time over all threads (robust to other load); wall: elapsed time "
                         "(what a user waits for; only on an otherwise idle machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = {k: int(v) for k, v in (kv.split("=") for kv in args.batch.split(",") if kv)}
    Ref = load_reference()
    rows = []
    for preset in args.presets.split(","):
        rows += bench(preset, batches.get(preset, 4), args.reps, args.precisions.split(","), Ref, args.compile,
                      args.floor)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, forward+backward, {'wall' if args.clock == 'wall' else 'CPU (all threads)'} time per pair, median of {args.reps}\n")
    if Ref is None:
        print("| preset | precision | batch | slife ms/pair |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['preset']} | {r['precision']} | {r['batch']} | {r['slife']:.1f} |")
    else:
        print("| preset | precision | batch | slife ms/pair | reference ms/pair | ratio (median of reps) | quartiles | "
              "max abs diff out | max abs diff grad |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['preset']} | {r['precision']} | {r['batch']} | {r['slife']:.1f} | {r['reference']:.1f} | "
                  f"{r['ratio']:.2f} | {r['ratio_q1']:.2f}-{r['ratio_q3']:.2f} | {r['diff']:.1e} | {r['grad_diff']:.1e} |")
    if args.floor:
        print("\n| preset | precision | products per step | slife: products ms/pair | slife: whole step | "
              "products / step | reference: products ms/pair | reference: whole step | "
              "slife products / reference step: best reachable ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ref = (f"{r['ref_products']:.1f} | {r['reference']:.1f} | **{r['floor_ratio']:.2f}**"
                   if "reference" in r else "- | - | -")
            print(f"| {r['preset']} | {r['precision']} | {r['products']} | {r['floor']:.1f} | {r['slife']:.1f} | "
                  f"{r['floor'] / r['slife']:.2f} | {ref} |")
    if args.compile:
        print("\n| preset | precision | slife eager ms/pair | slife compiled ms/pair | compiled / eager | "
              "compiled / reference | max abs diff compiled vs eager |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            ref = f"{r['compiled_ratio']:.2f}" if "compiled_ratio" in r else "-"
            print(f"| {r['preset']} | {r['precision']} | {r['slife']:.1f} | {r['compiled']:.1f} | "
                  f"{r['compiled'] / r['slife']:.2f} | {ref} | {r['compiled_diff']:.1e} |")


if __name__ == "__main__":
    main()
