"""Commands: `slife inspect PATH`, what a life (any supported format) or a pair-shard folder holds.

Reads a life with `slife.lives.read_life` (format auto-detected) and prints its summary as a rich table:
format, videos, frames, duration, fps, share of valid poses, points, depth, cameras, dropped/bad data counts
and warnings. A folder with `manifest.json` is a shard set: its summary comes from
`slife.pairmine.shardset.inspect_shards`. Reading is left to `slife/lives`, shard checks to `slife/pairmine`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from slife.cli.app import app, console

READER_OPTION_HELP = ("An option of the life reader as KEY=VALUE (repeatable): upright=true (aria_mps: the MP4's "
                      "frames were turned 90 degrees clockwise, as HD-EPIC's are; cameras and poses turn with "
                      "them), images_dir=PATH and fps=30 (colmap: where the images are; frame rate that turns "
                      "image numbers into times), max_dt=0.02 (tum: largest rgb-to-pose time gap in seconds), "
                      "skip_unreadable=true (video: leave out videos that cannot be read, counted as "
                      "videos_skipped, instead of stopping with the list of them; frames: likewise subfolders none "
                      "of whose images can be read, counted as frames_unreadable), fps=N (frames: the rate the "
                      "image frames were taken at, when their names are frame numbers, not timestamps).")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _life_table(s: dict, meta_videos: dict | None = None):
    from rich.table import Table

    tab = Table(title=f"life {s['name']} ({s['format']})", show_header=False, title_justify="left")
    tab.add_column("field", style="bold")
    tab.add_column("value")
    srcs = s["sources"]
    tab.add_row("path", s["root"])
    tab.add_row("format", s["format"])
    tab.add_row("sources", f"{len(srcs)}: " + ", ".join(srcs[:8]) + (" ..." if len(srcs) > 8 else "") if srcs
                else "0 (no pixels: trajectory only)")
    tab.add_row("frames", str(s["frames"]))
    tab.add_row("duration", f"{s['duration_s']:.2f} s")
    tab.add_row("fps", _fmt(s["fps"]))
    for name, v in (meta_videos or {}).items():
        tab.add_row(f"video {name}", f"{v['frames']} frames, {v['width']}x{v['height']} {v['codec']}, {_fmt(v['fps'])} fps")
    tab.add_row("valid poses", f"{s['posed_frames']} ({100 * s['pose_share']:.1f}%)")
    tab.add_row("points", f"{s['points']}" + (" (+ per-frame tracks)" if s["tracks"] else ""))
    tab.add_row("depth", f"{s['depth_frames']} frames" + (f" ({s['depth_scale']:g} units/m)" if s.get("depth_scale") else ""))
    cams = s["cameras"]
    tab.add_row("cameras", ", ".join(f"{c['model']} {c['width']}x{c['height']}" for c in cams[:4])
                + (f" (+{len(cams) - 4})" if len(cams) > 4 else "") if cams else "unknown intrinsics")
    for k, v in s["counts"].items():
        tab.add_row(f"dropped: {k}", str(v))
    for w in s["warnings"]:
        tab.add_row("[yellow]warning[/]", w)
    return tab


def _counts(d: dict | None) -> str:
    """{"spatial": 106, "temporal": 53} -> 'spatial 106, temporal 53'."""
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "-"


def _option(v) -> str:
    """A config value as the command line gives it: pairs as k=v, lists joined by '+', empty ones as '-'."""
    if isinstance(v, (list, tuple)):
        return "+".join(f"{x[0]}={x[1]}" if isinstance(x, (list, tuple)) else str(x) for x in v) or "-"
    return _fmt(v)


def _shard_table(r: dict, path: Path):
    """The rows of `inspect_shards`'s report, each a readable line (no raw JSON)."""
    from rich.table import Table

    from slife.pairmine.shardset import frames_line

    tab = Table(title=f"shards {path}", show_header=False, title_justify="left")
    tab.add_column("field", style="bold")
    tab.add_column("value", overflow="fold")
    tab.add_row("integrity", "ok" if r["ok"] else f"[red]{len(r['problems'])} problem(s)[/red]")
    for prob in r["problems"]:
        tab.add_row("[red]problem[/red]", prob)
    tab.add_row("shards", f"{r['shards']} tars, {r['samples']} samples ({_counts(r['samples_per_strategy'])})")
    life = r.get("life")
    if life:
        tab.add_row("life", f"{life.get('name')} ({life.get('format')}) at {life.get('path')}: {life.get('frames')} "
                            f"frames, {life.get('sampled_frames')} sampled")
        dropped = {k: v for k, v in (life.get("reader_counts") or {}).items() if v}
        if dropped:
            tab.add_row("reader counts", _counts(dropped))
    cfg = r.get("config")
    if cfg:
        tab.add_row("strategies", "+".join(cfg.get("strategies") or []))
        tab.add_row("config", ", ".join(f"{k}={_option(v)}" for k, v in cfg.items() if k != "strategies"))
    for key in ("command", "slife_version"):
        if r.get(key):
            tab.add_row(key.replace("_", " "), str(r[key]))
    s = r.get("summary")
    if s:
        tab.add_row("pairs", f"{s.get('pairs')} mined ({_counts(s.get('pairs_per_strategy'))}), "
                             f"{s.get('pairs_written', '-')} written")
        if "frames_used" in s:
            tab.add_row("frames", frames_line(s, bool(cfg and cfg.get("pairs_only")))[len("frames: "):])
    if r.get("spatial_coverage"):
        tab.add_row("spatial coverage", r["spatial_coverage"].removeprefix("spatial coverage: "))
    if r.get("pairs_lost"):
        tab.add_row("pairs lost", r["pairs_lost"])
    for g in r.get("generations") or []:
        held = "(pairs only, no shards)" if g["shards"] == "no shards" else \
            f"{g['samples'] if g['samples'] is not None else '-'} samples in {g['shards']}"
        line = f"added {g['added'] or 'before generations'}: {', '.join(g['recordings'])}; {g['pairs']} pairs {held}"
        tab.add_row(f"generation {g['generation']}", "; ".join(x for x in (line, g.get("spatial_coverage"),
                                                                            g.get("pairs_lost")) if x))
    return tab


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A life (video(s), image frames, COLMAP model, EPIC-Fields JSON, Aria MPS, "
                                          "ScanNet, TUM RGB-D or slife life folder) or a pair-shard folder made "
                                          "by `slife mine-pairs` (or its manifest.json)."),
    format: str = typer.Option(None, "--format", "-f", help="Reader to use instead of auto-detection "
                                                            "(folder, aria_mps, epic_fields, scannet, tum, colmap, video, frames)."),
    reader_option: list[str] = typer.Option(None, "--reader-option", "-O", help=READER_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
    check: bool = typer.Option(False, "--check", help="Also decode every frame and count the ones that fail "
                                                      "(slow: reads all pixels)."),
):
    """Show what a life holds (format, videos, frames, duration, fps, poses, points, depth, dropped data).

    For a shard folder, show its manifest summary and integrity check (exit 1 if a problem is found).
    """
    from slife.pairmine.shardset import MANIFEST, inspect_shards, is_shard_set

    if path.name == MANIFEST and path.is_file():  # a set's manifest.json: the set
        path = path.parent
    if is_shard_set(path):  # a shard set, finished or not
        summary = inspect_shards(path)
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
        else:
            console.print(_shard_table(summary, path))
            for w in summary.get("warnings") or []:
                console.print(f"[yellow]warning:[/yellow] {w}")
        if summary.get("ok") is False:  # integrity problems: listed above, exit 1 so scripts notice
            raise typer.Exit(1)
        return
    from slife.lives import parse_options, read_life

    life = read_life(path, format=format, **parse_options(reader_option))
    summary = life.summary()
    if check and life.has_pixels:
        from slife.cli.app import progress_bar

        with progress_bar("decoding", total=int((life.source >= 0).sum()), unit="frames") as advance:
            res = life.check_pixels(progress=advance)
        summary["counts"]["frames_undecodable"] = res["frames_undecodable"]
        if res["frames_undecodable"]:
            summary["warnings"].append(f"{res['frames_undecodable']} of {res['frames_checked']} frames cannot be "
                                       f"decoded (first: frame {res['first_undecodable']})")
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        console.print(_life_table(summary, life.meta.get("videos")))
