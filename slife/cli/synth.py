"""Command: `slife synth OUT` renders a synthetic life folder (thin wrapper over `slife.synth.run`)."""

from __future__ import annotations

from pathlib import Path

import typer

from slife.cli.app import app, console, progress_bar
from slife.errors import SlifeError, plural

_SCENES_HELP = ("Scene: kitchen, living_room, office, bedroom, workshop, apartment (lives), "
                "gallery (held out for depth-probe tests).")


# the options that set a SynthConfig field: option parameter -> field (the same name but for --fov)
_FIELDS = ("kind", "scene", "duration", "fps", "width", "height", "seed", "days", "fov", "texture_size", "photos",
           "points", "shadows", "depth", "crf", "day_seconds")


@app.command("synth")
def synth(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Output life folder (created; a complete folder with the same settings is left "
                               "as is, an interrupted render with them is rendered again; any other non-empty folder "
                               "is refused unless --overwrite)."),
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
    photos: bool = typer.Option(False, "--photos/--no-photos", help="Also texture walls, floors, prints and posters "
                                "with photographs (scikit-image's bundled sample images; nothing is downloaded)."),
    texture_scale: float = typer.Option(1.0, "--texture-scale", help="Texture tiles span this many times their usual "
                                        "1.5-3 m on walls and floors. At 1 a tile repeats across a room, so structure "
                                        "from motion (slife sfm) matches views that do not overlap; 5 with "
                                        "--texture-size 1024 stops the repeats and keeps the detail."),
    points: int = typer.Option(100_000, "--points", help="Surface samples written to points.ply (0: none)."),
    shadows: bool = typer.Option(True, "--shadows/--no-shadows", help="Soft shadows and ambient occlusion (baked once per scene at mesh vertices)."),
    depth: bool = typer.Option(True, "--depth/--no-depth", help="Write depth/{i:06d}.png (uint16 mm)."),
    crf: int = typer.Option(18, "--crf", help="H.264 quality (lower: better and bigger)."),
    day_seconds: float = typer.Option(86400.0, "--day-seconds", help="Clock seconds between the starts of two days."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Render into OUT even if it is already complete, holds a "
                                   "life made with other settings (also one grown by --append-days) or files not made "
                                   "by synth: its video.mp4, video-NNN.mp4, poses.npz, points.ply, life.json and "
                                   "depth/*.png are replaced or removed."),
    append_days: int = typer.Option(0, "--append-days", help="Grow the life already at OUT by this many days, one new "
                                    "recording (video-NNN.mp4) each, leaving its files as they are; its settings are "
                                    "read from OUT/life.json: the other options may be left out, and one given with "
                                    "another value than the life's is an error. Deterministic: "
                                    "growing by 1 twice equals growing by 2. Then `slife mine-pairs` on the same "
                                    "--out mines only the new days' pairs."),
):
    """Render a synthetic egocentric life (video.mp4, poses.npz, points.ply, depth/, life.json), or grow one."""
    from slife.synth import SynthConfig, append_days as grow, run

    if append_days:
        given = _given_options(ctx, locals())
        if overwrite:
            raise SlifeError("--overwrite and --append-days do not go together: --append-days keeps the life's files")
        _check_same_settings(out, given)
        with progress_bar(f"synth: {plural(append_days, 'more day')}", unit="frames") as advance:
            path = grow(out, append_days, progress=advance)
        console.print(str(path))
        return

    cfg = SynthConfig(kind=kind, scene=scene, duration=duration, fps=fps, width=width, height=height, seed=seed,
                      days=days, fov_deg=fov, texture_size=texture_size, photos=photos, texture_scale=texture_scale,
                      points=points, shadows=shadows,
                      depth=depth, crf=crf, day_seconds=day_seconds)
    total = cfg.frames_per_day() * (cfg.days if kind == "life" else 1)
    with progress_bar(f"synth {kind} {scene if kind != 'screen' else ''}", total=total, unit="frames") as advance:
        path = run(cfg, out, progress=advance, overwrite=overwrite)
    console.print(str(path))


def _given_options(ctx: typer.Context, values: dict) -> dict:
    """{option parameter: value} for the SynthConfig options given on the command line (or the environment)."""
    return {k: values[k] for k in _FIELDS
            if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") in ("COMMANDLINE", "ENVIRONMENT")}


def _check_same_settings(out: Path, given: dict) -> None:
    """SlifeError naming the `given` options whose values differ from the settings in out/life.json."""
    from slife.synth import read_life_json

    _, cfg = read_life_json(out)
    differ = []
    for k, v in given.items():
        have = getattr(cfg, "fov_deg" if k == "fov" else k)
        if v != have:
            differ.append(f"--{k.replace('_', '-')} {v} (the life's: {have})")
    if differ:
        raise SlifeError(f"{out / 'life.json'}: --append-days grows the life with its own settings, and "
                         f"{'these options differ' if len(differ) > 1 else 'this option differs'}: "
                         f"{', '.join(differ)}; leave them out")
