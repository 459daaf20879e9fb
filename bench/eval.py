"""Evaluation benchmarks: CAS throughput (tiny, base), a 20-model x 200-pair CAS matrix (each model run once),
depth-probe time per epoch at the tiny preset. Prints a markdown table.

Run: .venv/bin/python bench/eval.py [--threads 1] [--quick]
Inputs are random tensors (timing only; no data needed).
"""

from __future__ import annotations

import argparse
import time

import torch


class Counting:
    """Wraps a model and counts its forward passes over pairs."""

    def __init__(self, model):
        self.model, self.calls, self.pairs = model, 0, 0

    def eval(self):
        return self

    def cross_attention_logits(self, tgt, src):
        self.calls += 1
        self.pairs += len(tgt)
        return self.model.cross_attention_logits(tgt, src)


def pairs_for(size: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [{"tgt": torch.randn(3, size, size, generator=g), "src": torch.randn(3, size, size, generator=g)}
            for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    ap.add_argument("--parts", default="throughput,matrix,probe", help="comma-separated parts to run")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from slife.eval.attention import summarize_model
    from slife.train.model import CROCO_PRESETS, CroCoNet

    rows = []
    parts = set(a.parts.split(","))
    # 1. throughput per model
    for preset, n in [] if "throughput" not in parts else (("tiny", 64 if a.quick else 200), ("base", 4 if a.quick else 16)):
        kw = CROCO_PRESETS[preset]
        S, p = kw["img_size"], kw["patch_size"]
        torch.manual_seed(0)
        m = CroCoNet(**kw).eval()
        pr = pairs_for(S, n)
        summarize_model("warm", m, pr[:2], 10, (S // p, S // p), batch_size=2)
        t0 = time.perf_counter()
        summarize_model(preset, m, pr, 10, (S // p, S // p), batch_size=16)
        dt = time.perf_counter() - t0
        rows.append((f"CAS maps + top-k, `{preset}` ({S}px, {S // p}x{S // p} patches), {n} pairs",
                     f"{n / dt:.1f} pairs/s", ""))
    # 2. the N x N matrix: each model runs once
    if "matrix" in parts:
        rows += matrix_rows(a)
    if "probe" in parts:
        rows += probe_rows(a)
    print(f"\n| measurement ({a.threads} thread{'s' if a.threads > 1 else ''}) | result | note |")
    print("|---|---|---|")
    for r_ in rows:
        print("| " + " | ".join(r_) + " |")


def matrix_rows(a):
    from slife.eval.attention import same_position_summary, summarize_model
    from slife.eval.cas import cas_report
    from slife.train.model import CROCO_PRESETS, CroCoNet

    rows = []
    M, P = (6, 50) if a.quick else (20, 200)
    kw = CROCO_PRESETS["tiny"]
    S, p = kw["img_size"], kw["patch_size"]
    pr = pairs_for(S, P, 1)
    models = []
    for i in range(M):
        torch.manual_seed(i)
        models.append(Counting(CroCoNet(**kw).eval()))
    t0 = time.perf_counter()
    summ = [summarize_model(f"m{i}", m, pr, 10, (S // p, S // p), batch_size=32) for i, m in enumerate(models)]
    t_models = time.perf_counter() - t0
    summ.append(same_position_summary((S // p, S // p), 10, P, 1))
    t1 = time.perf_counter()
    rep = cas_report(summ)
    t_scores = time.perf_counter() - t1
    runs = sum(m.pairs for m in models) / P
    naive_runs = M * (M - 1)  # running both models for each of the M(M-1)/2 pairs of models
    rows.append((f"{M}-model x {P}-pair CAS matrix (`tiny`), models", f"{t_models:.1f} s",
                 f"{runs:.0f} model passes over the pairs (= {M}); pairwise re-running would need {naive_runs} "
                 f"({naive_runs / runs:.0f}x)"))
    rows.append((f"{M + 1}x{M + 1} scores incl. per-block + same-position", f"{t_scores:.2f} s",
                 f"mean off-diagonal CAS of random models {rep['controls'].get('model_vs_model_mean', 0):.3f} "
                 f"(chance {rep['chance']:.3f})"))
    return rows


def probe_rows(a):
    from slife.eval.depth_probe import AttentiveReadout, ProbeConfig, train_readout
    from slife.train.model import CROCO_PRESETS, CroCoNet

    rows = []
    kw = CROCO_PRESETS["tiny"]
    S, p = kw["img_size"], kw["patch_size"]
    # 3. probe: time per epoch at the tiny preset, NYU train size
    n = 96 if a.quick else 795
    grid = (S // p, S // p)
    tokens = torch.randn(n, grid[0] * grid[1], kw["enc_embed_dim"]).to(torch.float16)
    depth = (torch.rand(n, S, S) * 5 + 0.5).numpy()
    mask = depth > 0
    r = AttentiveReadout(kw["enc_embed_dim"], grid, p)
    cfg = ProbeConfig(epochs=2, batch_size=16)
    t0 = time.perf_counter()
    train_readout(r, tokens, depth, mask, cfg, cfg.lr[0])
    dt = (time.perf_counter() - t0) / cfg.epochs
    rows.append((f"depth probe readout, `tiny` preset, {n} train images, batch 16", f"{dt:.2f} s/epoch",
                 "encoder features computed once beforehand (not included)"))
    torch.manual_seed(0)
    enc = CroCoNet(**kw).eval()
    x = torch.randn(32, 3, S, S)
    with torch.inference_mode():
        enc.encode_image(x[:2])
        t0 = time.perf_counter()
        enc.encode_image(x)
    rows.append(("frozen encoder features, `tiny`", f"{32 / (time.perf_counter() - t0):.0f} images/s", ""))
    return rows


if __name__ == "__main__":
    main()
