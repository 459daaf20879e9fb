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

`--floor` adds the matrix-product floor: every matrix product of one slife step (forward and backward:
aten mm/addmm/bmm, recorded with their shapes, strides and dtype) is re-run on its own, in the same
process and threads, and their summed CPU time is the time the step cannot go under while it does the
same products. Both implementations do the same products, so floor / reference is the best ratio any
implementation of the same model could reach on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from collections import Counter

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


class MatmulRecorder(TorchDispatchMode):
    """Record the matrix products run under it: (op, shapes, strides, dtype, has bias) -> count."""

    OPS = ("mm", "addmm", "bmm")

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.OPS:
            mats = args[1:3] if name == "addmm" else args[:2]
            self.calls[(name, tuple((tuple(m.shape), tuple(m.stride())) for m in mats), mats[0].dtype,
                        tuple(args[0].shape) if name == "addmm" else None)] += 1
        return func(*args, **(kwargs or {}))


def matmul_floor(calls: Counter, reps: int = 3) -> float:
    """CPU seconds to run the recorded products once each as often as recorded (median of `reps`)."""
    total = 0.0
    for (name, mats, dtype, bias), n in calls.items():
        a, b = (torch.empty_strided(shape, stride, dtype=dtype).normal_() for shape, stride in mats)
        c = torch.randn(bias, dtype=dtype) if bias is not None else None
        run = {"mm": lambda: torch.mm(a, b), "bmm": lambda: torch.bmm(a, b), "addmm": lambda: torch.addmm(c, a, b)}[name]
        run()
        ts = []
        for _ in range(reps):
            t0 = time.process_time()
            run()
            ts.append(time.process_time() - t0)
        total += n * statistics.median(ts)
    return total


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
        times = {name: [] for name in models}
        for r in range(reps):  # every other repetition in reverse order (ABBA): a steady drift cancels out
            for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
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
        if floor:
            rec = MatmulRecorder()
            with rec:
                step(ours, img1, img2, 2, bf16, loss_fn)
            row["floor"] = matmul_floor(rec.calls) / batch * 1e3
            row["products"] = sum(rec.calls.values())
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
                    help="also time the step's matrix products alone (the floor any implementation would hit)")
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
        print("\n| preset | precision | matrix products per step | their time alone, ms/pair | slife ms/pair | "
              "floor / slife | reference ms/pair | floor / reference: best reachable ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            ref = (f"{r['reference']:.1f} | **{r['floor'] / r['reference']:.2f}**" if "reference" in r else "- | -")
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
