"""How much of CAS beyond position between two life models is "where to look in the source image" rather than
correspondence: their top-k sets' per-pair saliency, on a finished `slife demo` folder.

Run: `.venv/bin/python bench/bench_cas_saliency.py DEMO_DIR [--models life-kitchen life-office] [--pairs 96]`
(about a minute on 2 cores). Recomputes both models' block-averaged top-k sets (k = 10, what the demo's claim reads)
on the demo's held-out pairs, then per pair the share of each source patch among the sets of all target patches
(its saliency in that pair: a set that ignores the target patch is all saliency) and prints as markdown:
- how concentrated the sets are: the share of set slots on the pair's 10 most used source patches (10 / N when the
  sets spread evenly);
- the correlation of the two models' saliency on the same pair against the mean over other pairs. CAS beyond
  position nulls out what does not depend on the image, but not what depends on the source image alone: models whose
  saliency agrees on the same pair more than across pairs score above 0, models whose saliency is anti-correlated
  below it, whatever each target patch attends to;
- CAS beyond position itself (`cas.calibrated_score`) and CAS beyond position and saliency
  (`cas.beyond_saliency_score`, goal 3's measure since session 16), which is exactly 0 for sets that ignore the
  target patch.

`--rewrite-cas` instead writes the demo's eval/cas (and eval/cas_half) again with this code, as the demo's
evaluation does (same checkpoints in the same order, same held-out pairs, k and untrained seeds), for a demo
evaluated before CAS beyond position and saliency existed; then `bench_demo_seeds.py --rewrite-report` puts it in
summary.json and report.md. It writes the whole of cas.json again (the paper's CAS, CAS beyond position and top-1
too: recomputed here, with this machine's threads, near-ties in a top-k may move them slightly); the probe's and
match's numbers are left as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slife.demo import finished_cas
from slife.errors import SlifeError
from slife.eval.attention import membership, summarize_model
from slife.eval.cas import beyond_saliency_score, calibrated_score, load_test_pairs, run as cas_run
from slife.eval.models import image_grid, load_models, model_spec_of


def _corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of matching rows of (P, N) tensors -> (P,)."""
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demo", type=Path)
    ap.add_argument("--models", nargs=2, default=["life-kitchen", "life-office"])
    ap.add_argument("--pairs", type=int, default=None, help="held-out pairs (default: the demo's CAS's, 96)")
    ap.add_argument("--rewrite-cas", action="store_true", help="write eval/cas and eval/cas_half again (see above)")
    a = ap.parse_args()
    try:
        cas_cfg, models, ev = finished_cas(a.demo)
        if a.rewrite_cas:
            for key, field in (("cas", "checkpoint"), ("cas_half", "half")):
                if key in ev:  # the demo's CAS jobs (`demo._attention_jobs`) again with this code
                    ckpts = [Path(m[field]) for m in models.values()]
                    print(f"{key}: {cas_run(cas_cfg, ckpts, Path(ev[key]).parent)}")
            return
        unknown = [n for n in a.models if n not in models]
        if unknown:
            raise SlifeError(f"{a.demo}: no CroCo model {', '.join(unknown)} (it has {', '.join(models)})")
        loaded = load_models([Path(models[n]["checkpoint"]) for n in a.models], attention=True)
        size, _, side = image_grid(model_spec_of(loaded[0][2]).kwargs)
        pairs = load_test_pairs(cas_cfg.pairs, size, a.pairs or cas_cfg.num_pairs)
    except SlifeError as e:
        raise SystemExit(f"error: {e}") from None
    sets = [summarize_model(n, m, pairs, cas_cfg.k, (side, side), kind="model", masked=cas_cfg.masked).topk[:, -1]
            for n, m, _ in loaded]  # read as the demo's claim reads it
    n_src = side * side
    sal = [membership(s, n_src).float().mean(1) for s in sets]  # (P, N_src): each source patch's share of the sets
    conc = [float(s.sort(-1, descending=True).values[:, :10].sum(-1).mean() / sets[0].shape[-1]) for s in sal]
    same = float(_corr(sal[0], sal[1]).mean())
    other = float(torch.stack([_corr(sal[0], sal[1].roll(r, 0)) for r in range(1, len(pairs))]).mean())
    print(f"| {a.demo.name} | {conc[0]:.3f} / {conc[1]:.3f} (even: {10 / n_src:.3f}) | {same:.3f} | {other:.3f} | "
          f"{calibrated_score(sets[0], sets[1]):.3f} | {beyond_saliency_score(sets[0], sets[1], n_src):.3f} |")


if __name__ == "__main__":
    main()
