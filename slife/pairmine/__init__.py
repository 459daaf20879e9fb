"""Pair mining: from a life to WebDataset pair shards (`slife mine-pairs`).

Reads a life (any format `slife.lives.read_life` knows), samples frames (`ingest.py`), finds pairs with
the strategies in `STRATEGIES` (one module each: `temporal.py`, `spatial.py`, `random_pairs.py`,
`augmented.py`; each `find_pairs(life, cfg, rng) -> Iterator[Pair]`), merges and cuts them to quotas
(`combine.py`), and writes `pairs-%06d.tar` + `.stats.json` shards (`shards.py`) and `manifest.json`
(its summary: `manifest.py`); `--pairs-only` writes only the pair table (`pairs.jsonl`, hloc-style
`pairs.txt`). The shard-set format itself (file names, stats, manifest, completeness, the sample schema
on the write and the read side) is owned by `shardset.py`, which the training stream and the
evaluations import to read sets. Run again on a grown life, the miner appends a generation (`generations.py`
says what is new; see `pipeline.py`).
Entry point: `run(cfg, life_path, out_dir) -> Path` (the manifest, or `pairs.jsonl` with pairs_only).
Visibility for spatial pairs is computed in `visibility.py`; SfM for pose-less videos is `sfm.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from slife.errors import SlifeError

# strategy name -> module path (imported on use); a new strategy is one file and one line here
STRATEGIES: dict[str, str] = {
    "temporal": "slife.pairmine.temporal",
    "spatial": "slife.pairmine.spatial",
    "random": "slife.pairmine.random_pairs",
    "augmented": "slife.pairmine.augmented",
}

# seconds: times closer than this are the same time (frame times are frame numbers / fps, so a 1 s gap can come
# out as 0.9999999999999998); the temporal gap window and the time-gap histograms both use it
TIME_TOL = 1e-6


@dataclass(frozen=True)
class Pair:
    """One mined pair: life frame indices (of the sampled life) a = source view, b = target view."""

    a: int  # source (reference) frame
    b: int  # target (masked) frame
    strategy: str  # the strategy that found it
    jaccard: float | None = None  # visible-set Jaccard when known


def _env_int(*names: str) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                continue
    return None


def default_num_nodes() -> int:
    """Node count from SLURM array / SLURM job / torchrun environment, else 1."""
    return _env_int("SLURM_ARRAY_TASK_COUNT", "SLURM_NNODES", "WORLD_SIZE") or 1


def default_node_rank() -> int:
    """This node's rank from SLURM array / SLURM job / torchrun environment, else 0.

    A SLURM array's task ids may start at SLURM_ARRAY_TASK_MIN; the rank is taken relative to it.
    """
    if os.environ.get("SLURM_ARRAY_TASK_ID") not in (None, ""):
        return int(os.environ["SLURM_ARRAY_TASK_ID"]) - (_env_int("SLURM_ARRAY_TASK_MIN") or 0)
    return _env_int("SLURM_NODEID", "RANK") or 0


@dataclass(frozen=True)
class MineConfig:
    """Everything `slife mine-pairs` decides; `asdict` goes into manifest.json."""

    strategies: tuple[str, ...] = ("spatial", "temporal")  # strategies to run, in quota order
    reader: str | None = None  # life format to read the input with (None: auto-detect; see slife.lives.READERS)
    reader_options: tuple[tuple[str, str], ...] = ()  # reader options as (key, text), e.g. (("upright", "true"),)
    fps: float = 2.0  # frames sampled per second of each video (0: every frame)
    # temporal: 1-5 s at 2 fps is 2-10 sampled frames apart: views change (head turns, steps) but
    # still overlap, the regime CroCo pairs need; below 1 s pairs are near-duplicates.
    min_gap: float = 1.0  # temporal: smallest |t_a - t_b| in seconds
    max_gap: float = 5.0  # temporal: largest |t_a - t_b| in seconds
    temporal_per_frame: int = 2  # temporal partners drawn per frame (0: every frame in the gap window)
    j_min: float = 0.15  # spatial: smallest Jaccard of visible sets
    j_max: float = 0.75  # spatial: largest Jaccard (above: near-duplicate views)
    per_frame: int = 5  # spatial: partners kept per frame, its best inside [j_min, j_max] (0: all pairs in range)
    max_depth: float = 10.0  # visibility: farthest visible point in metres
    voxel: float = 0.2  # visibility: voxel size in metres for points / back-projected depth (0: raw points)
    zbuffer_cells: int = 32  # visibility: z-buffer grid cells across the image width (0: no occlusion test)
    lsh_hashes: int = 64  # spatial: MinHash permutations (candidate recall at J: 1-(1-J)^hashes)
    lsh_window: int = 16  # spatial: partners per frame inside a MinHash bucket (0: all bucket pairs)
    random_per_frame: int = 1  # random: partners drawn per frame
    augmented_per_frame: float = 1.0  # augmented: self-pairs per frame (fraction allowed, e.g. 0.2)
    max_pairs: int = 0  # total pairs kept after merging (0: all found)
    ratios: tuple[tuple[str, float], ...] = ()  # share of max_pairs per strategy (empty: equal shares)
    seed: int = 0  # every random choice derives from it
    short_side: int = 256  # stored frames: short side in pixels
    jpeg_quality: int = 90  # stored frames: JPEG quality
    pairs_per_shard: int = 1000  # samples per tar
    pairs_only: bool = False  # write the pair table only, decode no pixels
    preview: int = 0  # pairs per strategy on the contact sheet preview.png (0: none)
    workers: int = 1  # threads for visibility and spatial mining, writer processes (run-time only: not part of the output's identity)
    num_nodes: int = 1  # machines sharing the job (run-time only)
    node_rank: int = 0  # this machine's rank in [0, num_nodes) (run-time only)
    overwrite: bool = False  # replace an output folder made with other settings (run-time only)
    strict: bool = False  # any loss (a frame missing or unreadable, a video skipped, a pair not written) is an error (run-time only)

    RUNTIME_FIELDS = ("workers", "num_nodes", "node_rank", "overwrite", "preview", "strict")

    def __post_init__(self):
        if not self.strategies:
            raise SlifeError("no strategy given; choose from " + ", ".join(STRATEGIES))
        for s in self.strategies:
            if s not in STRATEGIES:
                raise SlifeError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)} (join with '+')")
        if len(set(self.strategies)) != len(self.strategies):
            raise SlifeError(f"strategy given twice: {'+'.join(self.strategies)}")
        def need(ok: bool, what: str) -> None:  # option names as on the command line (the fields, dashed)
            if not ok:
                raise SlifeError(f"bad option: {what}")

        need(self.fps >= 0, f"--fps must be >= 0, got {self.fps}")
        need(0 <= self.min_gap <= self.max_gap,
             f"need 0 <= --min-gap <= --max-gap, got {self.min_gap}, {self.max_gap}")
        need(0 <= self.j_min <= self.j_max <= 1, f"need 0 <= --j-min <= --j-max <= 1, got {self.j_min}, {self.j_max}")
        for name in ("temporal_per_frame", "per_frame", "random_per_frame", "max_pairs", "lsh_window",
                     "zbuffer_cells", "voxel", "augmented_per_frame", "preview"):
            opt = name if name in ("lsh_window", "zbuffer_cells") else "--" + name.replace("_", "-")  # config only
            need(getattr(self, name) >= 0, f"{opt} must be >= 0, got {getattr(self, name)}")
        need(self.max_depth > 0, f"--max-depth must be > 0, got {self.max_depth}")
        need(self.lsh_hashes >= 1, f"lsh_hashes must be >= 1, got {self.lsh_hashes}")
        need(self.short_side >= 8, f"--short-side must be >= 8, got {self.short_side}")
        need(1 <= self.jpeg_quality <= 100, f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        need(self.pairs_per_shard >= 1, f"--pairs-per-shard must be >= 1, got {self.pairs_per_shard}")
        need(self.workers >= 1, f"--workers must be >= 1, got {self.workers}")
        need(self.num_nodes >= 1 and 0 <= self.node_rank < self.num_nodes,
             f"need --num-nodes >= 1 and 0 <= --node-rank < --num-nodes, got {self.node_rank} of {self.num_nodes}")
        for name, r in self.ratios:
            if name not in self.strategies:
                raise SlifeError(f"ratio given for {name!r}, which is not among the strategies {'+'.join(self.strategies)}")
            need(r >= 0, f"--ratios: the share of {name} must be >= 0, got {r}")

    def identity(self) -> dict:
        """The fields that define the output (everything but run-time fields)."""
        from dataclasses import asdict

        d = asdict(self)
        for k in self.RUNTIME_FIELDS:
            d.pop(k, None)
        d["strategies"] = list(d["strategies"])
        d["ratios"] = [list(r) for r in d["ratios"]]
        d["reader_options"] = [list(r) for r in d["reader_options"]]
        return d


def parse_strategies(text: str) -> tuple[str, ...]:
    """'spatial+temporal' -> ('spatial', 'temporal')."""
    return tuple(s.strip() for s in text.split("+") if s.strip())


def parse_ratios(text: str | None) -> tuple[tuple[str, float], ...]:
    """'spatial=0.5,temporal=0.5' -> (('spatial', 0.5), ('temporal', 0.5))."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        if "=" not in part:
            raise SlifeError(f"--ratios: expected name=value, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out.append((k.strip(), float(v)))
        except ValueError:
            raise SlifeError(f"--ratios: {v!r} is not a number") from None
    return tuple(out)


def run(cfg: MineConfig, life_path: Path | str, out_dir: Path | str, *, merge: bool = False,
        command: str = "", progress: Callable[..., None] | None = None) -> Path:
    """Mine pairs from the life at `life_path` into `out_dir`; returns manifest.json (pairs.jsonl if pairs_only).

    With several nodes each writes its share of shards; the node that finds every shard complete (or a
    later call with `merge=True`) writes the manifest. `command` is recorded in the manifest.
    """
    from slife.pairmine.pipeline import mine

    from slife.lives.life import Life

    life = life_path if isinstance(life_path, Life) else Path(life_path)  # an in-memory Life is accepted too
    return mine(cfg, life, Path(out_dir), merge=merge, command=command, progress=progress)


__all__ = ["STRATEGIES", "MineConfig", "Pair", "parse_ratios", "parse_strategies", "run",
           "default_num_nodes", "default_node_rank"]
