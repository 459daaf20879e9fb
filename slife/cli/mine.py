"""Commands: `slife mine-pairs` (a life -> pair shards) and `slife sfm` (poses for a plain video folder).

Thin wrappers: build a `MineConfig` / call `slife.pairmine.run` or `slife.pairmine.sfm.run`, draw the
progress bar, print the summary table and the path written. Mining itself is in `slife/pairmine/`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from slife.cli.app import app, console, progress_bar
from slife.cli.lives import READER_OPTION_HELP
from slife.errors import SlifeError


def _summary_table(manifest: dict) -> None:
    """The summary of what the run mined: the whole set, or for a set of several generations the newest one
    (what this run added), then a line on the whole set."""
    from rich.table import Table

    from slife.pairmine.shardset import coverage_line, frames_line, shard_range

    s = manifest["summary"]
    gens = manifest.get("generations") or []
    title = f"pairs mined from {manifest['life']['name']}"
    if len(gens) > 1:
        g = gens[-1]
        s = g["summary"]
        names = ", ".join(r["name"] for r in g["recordings"][:4]) + (" ..." if len(g["recordings"]) > 4 else "")
        title += f", generation {g['generation']} (added {g['added']}: {names})"
    pairs_only = bool(manifest.get("pairs_only"))
    t = Table(title=title)
    t.add_column("strategy")
    t.add_column("pairs", justify="right")
    if not pairs_only:  # no shards: nothing is written but the pair table
        t.add_column("written", justify="right")
    written = s.get("written_per_strategy", {})
    for k, v in s["pairs_per_strategy"].items():
        t.add_row(k, str(v), *([] if pairs_only else [str(written.get(k, "-"))]))
    t.add_row("total", str(s["pairs"]), *([] if pairs_only else [str(s.get("pairs_written", "-"))]))
    console.print(t)
    console.print(frames_line(s, pairs_only))
    cov = coverage_line(s)
    if cov:
        console.print(cov)
    if s.get("pairs_without_depth"):
        console.print(f"{s['pairs_without_depth']} pairs written without depth (a depth map missing or unreadable)")
    for name, key in (("Jaccard", "jaccard_hist"), ("time gap (s)", "dt_hist")):
        h = s[key]
        cells = [f"{h['edges'][i]}-{h['edges'][i + 1]}: {c}" for i, c in enumerate(h["counts"]) if c]
        console.print(f"{name}: " + (", ".join(cells) if cells else "none"))
    if len(gens) > 1:
        g = gens[-1]
        if pairs_only:
            where = (f"{sum(x['pairs'] for x in gens)} pairs in pairs.jsonl (generation {g['generation']}: its "
                     f"lines {g['first_pair'] + 1}-{g['first_pair'] + g['pairs']})")
        else:
            where = (f"{manifest['samples']} pairs in {len(manifest['shards'])} shards (generation {g['generation']}: "
                     f"{g['samples']} pairs in {shard_range(g['first_shard'], g['shards'])})")
        console.print(f"the set holds {len(gens)} generations: {where}")
        cov = coverage_line(manifest["summary"])
        if cov:
            console.print(f"the whole set's {cov}")
    for w in manifest.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


_MINE_HELP = (
    "Mine view pairs from a life and write them as WebDataset shards.\n\n"
    "Run again on the same --out after the life has grown (new videos or recordings in its folder, e.g. "
    "`slife synth LIFE --append-days 1`), it mines only the pairs that involve the new recordings' frames "
    "(temporal within them, spatial new x new and new x old, random and augmented for the new frames) and "
    "writes them as a new generation of tars after the existing ones, which stay byte-identical; "
    "manifest.json lists the generations (recordings, counts, time added). With nothing new it writes "
    "nothing; a recording that changed or went away is refused unless --overwrite. Every per-frame option "
    "and quota applies per generation. Each generation keeps the items its frames see (visibility-NNNN.npz "
    "in --out), so an append projects only the new frames into the cloud, and its spatial search counts "
    "the new frames' overlaps with every frame exactly (see --per-frame): its cost follows the new day and "
    "the places it revisits, not the life's length. Each generation also indexes where its tars hold each "
    "frame (locations-NNNN.npz), so the old frames the new pairs use are copied from the old tars without "
    "reading the earlier pairs or the old tars' headers. A missing or damaged visibility or location file only "
    "makes the append slower (it is computed and written again).\n\n"
    "Data that cannot be read is skipped, counted and reported as a warning (at the end: how many pairs were "
    "not written and why, and the share of posed frames with a spatial pair); --strict turns any such loss "
    "into an error."
)


@app.command("mine-pairs", help=_MINE_HELP)
def mine_pairs(
    life: Path = typer.Argument(..., help="Life folder or video folder (any layout `slife inspect` knows)."),
    strategy: str = typer.Option("spatial+temporal", "--strategy", "-s",
                                 help="Strategies joined with '+': temporal, spatial, random, augmented."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default shards/<life>_<strategies>)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Life reader to use instead of "
                                                                     "auto-detection (see `slife inspect --help`)."),
    reader_option: list[str] = typer.Option(None, "--reader-option", "-O", help=READER_OPTION_HELP),
    fps: float = typer.Option(2.0, help="Frames sampled per second of video (0: every frame)."),
    min_gap: float = typer.Option(1.0, help="Temporal: smallest time gap in seconds."),
    max_gap: float = typer.Option(5.0, help="Temporal: largest time gap in seconds."),
    temporal_per_frame: int = typer.Option(2, help="Temporal: partners drawn per frame (0: all in the window). "
                                           "Temporal pairs never cross recordings, so a new generation's are all "
                                           "within its new recordings."),
    j_min: float = typer.Option(0.15, help="Spatial: smallest Jaccard of visible point sets."),
    j_max: float = typer.Option(0.75, help="Spatial: largest Jaccard (above: near-duplicates)."),
    per_frame: int = typer.Option(5, help="Spatial: partners kept per frame, the best inside [--j-min, --j-max] "
                                  "(0: all pairs in range). Per generation: the first mining gives every frame "
                                  "up to this many; a later generation (a re-run on a grown life) gives each NEW "
                                  "frame up to this many, its highest-Jaccard partners among all frames, old or "
                                  "new (the new frame is the source view; ties: the earlier frame), counted "
                                  "exactly; old frames get no partners of their own (they appear only as a new "
                                  "frame's partner; their earlier pairs stay). With 0 a later generation keeps "
                                  "every in-range pair that has a new frame."),
    max_depth: float = typer.Option(10.0, help="Visibility: farthest visible point in metres."),
    voxel: float = typer.Option(0.2, help="Visibility: voxel size in metres for points/depth (0: raw points)."),
    random_per_frame: int = typer.Option(1, help="Random: partners per frame (drawn over the whole grown life; a "
                                         "new generation keeps the draws made by or landing on a new frame)."),
    augmented_per_frame: float = typer.Option(1.0, help="Augmented: self-pairs per frame (fractions allowed); a new "
                                              "generation's are its new frames'."),
    max_pairs: int = typer.Option(0, help="Total pairs kept after merging strategies (0: all), per generation: a "
                                  "re-run on a grown life keeps at most this many new pairs, the old ones stay."),
    ratios: Optional[str] = typer.Option(None, help="Quota shares of --max-pairs, e.g. 'spatial=0.5,temporal=0.5' "
                                         "(per generation, like --max-pairs)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    short_side: int = typer.Option(256, help="Stored frames: short side in pixels."),
    pairs_per_shard: int = typer.Option(1000, help="Pairs per tar shard."),
    pairs_only: bool = typer.Option(False, "--pairs-only", help="Write pairs.jsonl + pairs.txt only; decode no pixels. "
                                    "Run again on a grown life, it appends the new pairs as a generation: the "
                                    "earlier lines stay as they are, the new ones follow."),
    preview: int = typer.Option(0, help="Write preview.png with this many random pairs per strategy."),
    workers: int = typer.Option(1, help="Parallel workers: threads for visibility and spatial mining, "
                                                  "processes for writing shards."),
    num_nodes: Optional[int] = typer.Option(None, help="Machines sharing the job (default: SLURM/torchrun env, else 1)."),
    node_rank: Optional[int] = typer.Option(None, help="This machine's rank (default: SLURM/torchrun env, else 0)."),
    merge: bool = typer.Option(False, "--merge", help="Only gather the nodes' finished shards into manifest.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an output folder mined with other settings, "
                                   "or whose life changed (not just grew): mine the whole life again as generation 0."),
    strict: bool = typer.Option(False, "--strict", help="Make any loss an error instead of a warning: an image file "
                                "missing or unreadable, a video skipped (-O skip_unreadable=true), a pair not "
                                "written because a frame does not decode (in a re-run on a grown life: a pair of "
                                "the new generation). Shards already written are kept."),
):
    """Mine view pairs from a life and write them as WebDataset shards (see _MINE_HELP)."""
    import json

    from slife import pairmine as pm
    from slife.lives import parse_options
    from slife.lives.life import life_name

    strategies = pm.parse_strategies(strategy)
    cfg = pm.MineConfig(
        strategies=strategies, reader=format, reader_options=tuple(parse_options(reader_option).items()), fps=fps,
        min_gap=min_gap, max_gap=max_gap, temporal_per_frame=temporal_per_frame,
        j_min=j_min, j_max=j_max, per_frame=per_frame, max_depth=max_depth, voxel=voxel,
        random_per_frame=random_per_frame, augmented_per_frame=augmented_per_frame, max_pairs=max_pairs,
        ratios=pm.parse_ratios(ratios), seed=seed, short_side=short_side, pairs_per_shard=pairs_per_shard,
        pairs_only=pairs_only, preview=preview, workers=workers,
        num_nodes=pm.default_num_nodes() if num_nodes is None else num_nodes,
        node_rank=pm.default_node_rank() if node_rank is None else node_rank, overwrite=overwrite,
        strict=strict)
    out = out or Path("shards") / f"{life_name(life)}_{'+'.join(strategies)}"
    command = "slife " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with progress_bar("writing pairs", unit="pairs") as advance:
        path = pm.run(cfg, life, out, merge=merge, command=command, progress=advance)
    if path.exists():
        _summary_table(json.loads(path.read_text()))
    console.print(str(path if path.exists() else out))


@app.command("sfm")
def sfm(
    video_dir: Path = typer.Argument(..., help="Folder of videos (or any life with pixels) to give poses to."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default <video_dir>_sfm)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Life reader to use instead of "
                                                                     "auto-detection."),
    reader_option: list[str] = typer.Option(None, "--reader-option", "-O", help=READER_OPTION_HELP),
    fps: float = typer.Option(2.0, min=0, help="Frames sampled per second for reconstruction (0: every frame)."),
    max_side: int = typer.Option(640, min=16, help="Longest image side used for features."),
    max_features: int = typer.Option(2048, min=16, help="SIFT features kept per image (matching time grows "
                                     "with their square)."),
    overlap: int = typer.Option(10, min=1, help="Sequential matching: each frame is matched with its next "
                                "OVERLAP frames of the same video."),
    loop_candidates: int = typer.Option(5, min=0, help="Loop closure: each frame is also matched with its LOOP "
                                        "best look-alikes elsewhere in the life (revisits minutes or days later), "
                                        "found by a bag of visual words learned from the video itself (0: off)."),
    loop_min_gap: float = typer.Option(30.0, min=0, help="Loop closure: look-alikes in the same video nearer in "
                                       "time than this many seconds are not candidates (sequential matching "
                                       "covers them)."),
    vocab_words: int = typer.Option(1024, help="Loop closure: size of the visual vocabulary (a square: 256, "
                                    "1024, 4096)."),
    mapper: str = typer.Option("incremental", help="incremental or global (COLMAP's incremental or GLOMAP "
                               "mapper on each chunk, chunks then merged into one model), or hierarchical "
                               "(COLMAP's hierarchical mapper on all frames at once; that step does not resume)."),
    chunk: int = typer.Option(400, min=8, help="Frames per chunk: the unit that a killed run resumes from, "
                              "and that the incremental and global mappers reconstruct on its own."),
    chunk_overlap: int = typer.Option(40, min=0, help="Frames each chunk's mapping shares with the previous "
                                      "chunk (they tie the chunks together when merging)."),
    threads: int = typer.Option(2, "--threads", min=1, help="Threads for feature extraction, matching and mapping. "
                                "With 1 the reconstruction is the same on every run (more threads change the "
                                "order of bundle-adjustment sums)."),
    map_workers: int = typer.Option(0, "--map-workers", min=0, help="Chunks mapped at once (incremental and "
                                    "global mappers), each in a worker process of its own with max(1, THREADS // "
                                    "MAP_WORKERS) threads; a chunk's model depends on its threads (see --threads), "
                                    "not on how many chunks run at once. "
                                    "0: one per thread, at most the chunks left to map. More workers than THREADS run one thread each (more threads than asked: a warning says so). Memory: each worker holds "
                                    "its chunk's features, matches and model (0.27 GiB measured for 440 frames "
                                    "of 2048 features), so mapping takes about MAP_WORKERS times that."),
    seed: int = typer.Option(0, help="Seed of RANSAC, the vocabulary and the mappers."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again from scratch (by default a run resumes "
                                   "an unfinished reconstruction with the same settings, or reuses a finished one)."),
):
    """Structure from motion (pycolmap): write a COLMAP model that `slife mine-pairs` reads.

    Works in chunks of frames: frames, features, matching and mapping are stored chunk by chunk, so a run
    that is killed resumes where it stopped when started again with the same command. Revisits are linked
    by loop closure (matching each frame with its look-alikes anywhere in the life). The result is OUT/sparse/0;
    OUT/sfm.json holds the counts and each stage's time.
    """
    import json

    from slife.lives import parse_options
    from slife.pairmine import sfm as sfm_mod

    try:
        cfg = sfm_mod.SfmConfig(fps=fps, max_side=max_side, max_features=max_features, overlap=overlap,
                                loop_candidates=loop_candidates, loop_min_gap=loop_min_gap, vocab_words=vocab_words,
                                mapper=mapper, chunk=chunk, chunk_overlap=chunk_overlap, num_threads=threads,
                                map_workers=map_workers, seed=seed, overwrite=overwrite, reader=format,
                                reader_options=tuple(parse_options(reader_option).items()))
    except ValueError as e:
        raise SlifeError(f"sfm: {e}") from None
    out = out or video_dir.parent / f"{video_dir.name}_sfm"
    with progress_bar("sfm", unit="frames") as advance:
        path = sfm_mod.run(cfg, video_dir, out, progress=advance)
    if (out / "sfm.json").exists():  # a model made before sfm.json existed is reused without one
        _sfm_summary(json.loads((out / "sfm.json").read_text()))
    console.print(str(path))


def _sfm_summary(info: dict) -> None:
    from rich.table import Table

    t = Table(title=f"sfm: {info.get('registered', 0)} of {info.get('frames', 0)} frames registered")
    for c in ("stage", "wall s", "CPU s"):
        t.add_column(c, justify="right" if c != "stage" else "left")
    for name, s in (info.get("stages") or {}).items():
        t.add_row(name, f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}")
    console.print(t)
    p, v = info.get("pairs") or {}, info.get("verified_pairs") or {}
    console.print(f"pairs matched: {p.get('sequential', 0)} sequential ({v.get('sequential', 0)} verified) + "
                  f"{p.get('loop', 0)} loop-closure candidates ({v.get('loop', 0)} verified); "
                  f"{info.get('models', 0)} models, {info.get('models_merged', 0)} merged into one; "
                  f"{info.get('points', 0)} points")
    g = info.get("ground_truth")
    if g:
        rel = "" if g.get("ate_rel") is None else f" ({100 * g['ate_rel']:.2g}% of the extent)"
        ate = "-" if g["ate_rmse"] is None else f"{g['ate_rmse']:.3g}{rel}"
        console.print(f"against the life's own poses: {100 * g['registered']:.1f}% registered, ATE {ate}")
