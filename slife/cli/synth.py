"""Command: `slife synth OUT` renders a synthetic life folder (thin wrapper over `slife.synth.run`)."""

from __future__ import annotations

from pathlib import Path

import typer

from slife.cli.app import app, console, progress_bar

_SCENES_HELP = ("Scene: kitchen, living_room, office, bedroom, workshop, apartment (lives), "
                "gallery (held out for depth-probe tests).")


@app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Output life folder (created; a complete folder with the same settings is left as is)."),
    kind: str = typer.Option("life", "--kind", help="life (head-worn walk over days) | static (fixed camera, "
                             "lights change) | views (independent random views) | screen (screen recording, no camera)."),
    scene: str = typer.Option("kitchen", "--scene", help=_SCENES_HELP),
    duration: float = typer.Option(60.0, "--duration", help="Seconds of video in total (split evenly over the days)."),
    fps: float = typer.Option(10.0, "--fps", help="Frames per second."),
    width: int = typer.Option(256, "--width", help="Image width in pixels (even)."),
    height: int = typer.Option(192, "--height", help="Image height in pixels (even)."),
    seed: int = typer.Option(0, "--seed", help="Seed for layout, textures, trajectory and points (same seed, same bytes)."),
    days: int = typer.Option(2, "--days", help="Days in the life; each starts at the same entrance, t jumps by --day-seconds."),
    fov: float = typer.Option(90.0, "--fov", help="Horizontal field of view in degrees."),
    texture_size: int = typer.Option(256, "--texture-size", help="Texels per side of each baked texture (power of two)."),
    texture_scale: float = typer.Option(1.0, "--texture-scale", help="Texture tiles span this many times their usual "
                                        "1.5-3 m on walls and floors. At 1 a tile repeats across a room, so structure "
                                        "from motion (slife sfm) matches views that do not overlap; 5 with "
                                        "--texture-size 1024 stops the repeats and keeps the detail."),
    points: int = typer.Option(100_000, "--points", help="Surface samples written to points.ply (0: none)."),
    shadows: bool = typer.Option(True, "--shadows/--no-shadows", help="Soft shadows and ambient occlusion (baked once per scene at mesh vertices)."),
    depth: bool = typer.Option(True, "--depth/--no-depth", help="Write depth/{i:06d}.png (uint16 mm)."),
    crf: int = typer.Option(18, "--crf", help="H.264 quality (lower: better and bigger)."),
    day_seconds: float = typer.Option(86400.0, "--day-seconds", help="Clock seconds between the starts of two days."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Render again even if OUT is already complete."),
):
    """Render a synthetic egocentric life (video.mp4, poses.npz, points.ply, depth/, life.json)."""
    from slife.synth import SynthConfig, run

    cfg = SynthConfig(kind=kind, scene=scene, duration=duration, fps=fps, width=width, height=height, seed=seed,
                      days=days, fov_deg=fov, texture_size=texture_size, texture_scale=texture_scale, points=points, shadows=shadows,
                      depth=depth, crf=crf, day_seconds=day_seconds)
    total = cfg.frames_per_day() * (cfg.days if kind == "life" else 1)
    with progress_bar(f"synth {kind} {scene if kind != 'screen' else ''}", total=total, unit="frames") as advance:
        path = run(cfg, out, progress=advance, overwrite=overwrite)
    console.print(str(path))
