"""Evaluation of trained encoders: CAS between models, depth probe, zero-shot correspondence.

`BENCHMARKS` is the one registry: name -> (module path, config class name); each module's entry point is
`run(cfg, checkpoints, out_dir) -> Path` (the JSON report it wrote). Modules are imported on first use so
that `slife --help` stays fast. Shared pieces: `attention.py` (top-k sets from cross-attention),
`groundtruth.py` (true patch matches, displaced mask), `models.py` (checkpoints, untrained controls),
`plots.py` (figures), `datasets/` (official dataset formats).
"""

from __future__ import annotations

import importlib

from slife.errors import SlifeError

BENCHMARKS: dict[str, tuple[str, str]] = {
    "cas": ("slife.eval.cas", "CasConfig"),  # CAS / mknn / CKA matrix with controls on test pair shards
    "top1": ("slife.eval.pair_top1", "Top1Config"),  # top-1 patch correspondence of any encoder on test pair shards
    "probe": ("slife.eval.depth_probe", "ProbeConfig"),  # depth probe on NYU-Depth-v2, ScanNet or a life
    "match": ("slife.eval.correspondence", "MatchConfig"),  # attention flow on HPatches-style homography pairs
}


def benchmark(name: str):
    """(module, config class) of benchmark `name`; call `module.run(cfg, checkpoints, out_dir)`."""
    if name not in BENCHMARKS:
        raise SlifeError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    mod, cls = BENCHMARKS[name]
    m = importlib.import_module(mod)
    return m, getattr(m, cls)


__all__ = ["BENCHMARKS", "benchmark"]
