"""Fixtures of the pair-mining tests: small procedural posed lives (in memory) with tiny PNG frames."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "../shared/data"


@pytest.fixture(scope="session")
def proc_images(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("proc_images")


@pytest.fixture()
def proc_life(proc_images):
    """90 posed frames over 3 'days' in a 2 x 2 room house, 32 x 24 PNG frames."""
    from slife.pairmine.procedural import make_life

    return make_life(90, rooms=(2, 2), videos=3, seed=3, image_dir=proc_images)


@pytest.fixture()
def small_cfg():
    """MineConfig factory with small, fast settings (every frame, 16 px short side, 40 pairs a shard)."""
    from slife.pairmine import MineConfig

    def make(**kw):
        return MineConfig(**{**dict(fps=0, voxel=0.3, short_side=16, pairs_per_shard=40), **kw})

    return make
