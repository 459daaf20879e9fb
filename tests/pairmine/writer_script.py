"""A writer that a test can kill part-way (imported by name: a `conftest` module name is shared by every
test folder, so helpers that tests import live in modules of their own)."""

from __future__ import annotations


def slow_writer_script(delay: float, workers: int = 1, part_frames: int | None = None) -> str:
    """A `python -c` script: mine the 90-frame proc life (argv[1]: its images) into argv[2], each frame's JPEG
    encoding slowed by `delay` seconds so that a test can kill the writer part-way."""
    part = f"pipeline.PART_FRAMES = {part_frames}\n" if part_frames else ""
    return (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from slife import pairmine as pm\n"
        "from slife.pairmine import pipeline, shards\n"
        "from slife.pairmine.procedural import make_life\n"
        "real = shards.encode_frame\n"
        "def slow(*a, **k):\n"
        f"    time.sleep({delay})\n"
        "    return real(*a, **k)\n"
        "shards.encode_frame = slow\n"
        f"{part}"
        "life = make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=Path(sys.argv[1]))\n"
        "cfg = pm.MineConfig(strategies=('spatial', 'temporal'), fps=0, voxel=0.3, short_side=16, pairs_per_shard=40,\n"
        f"                    workers={workers})\n"
        "pm.run(cfg, life, sys.argv[2])\n"
    )
