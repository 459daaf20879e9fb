"""Shared session fixtures: tiny synthetic lives rendered once per test run (seconds, not minutes).

- `tiny_life`: kitchen, 2 days x 16 frames at 64x48, 8 fps, with video.mp4, poses.npz, points.ply, depth/.
- `tiny_life_b`: a different scene (office), 1 day x 24 frames at 64x48, seed 1.
- `tiny_static`, `tiny_screen`: the two non-life controls (static camera; screen recording without poses).
Each returns the life folder's Path; treat it as read-only (copy it before changing anything).
"""

from __future__ import annotations

import pytest

TINY = dict(width=64, height=48, fps=8.0, texture_size=64, points=4000, crf=20)


def _make(tmp_path_factory, name: str, **kw):
    from slife.synth import SynthConfig, run

    return run(SynthConfig(**{**TINY, **kw}), tmp_path_factory.mktemp("lives") / name)


@pytest.fixture(scope="session")
def tiny_life(tmp_path_factory):
    """A 32-frame kitchen life over 2 days (64x48) with video, poses, points and depth."""
    return _make(tmp_path_factory, "tiny-kitchen", kind="life", scene="kitchen", duration=4.0, days=2, seed=0)


@pytest.fixture(scope="session")
def tiny_life_b(tmp_path_factory):
    """A 24-frame office life over 1 day (64x48), seed 1: a second, different scene."""
    return _make(tmp_path_factory, "tiny-office", kind="life", scene="office", duration=3.0, days=1, seed=1)


@pytest.fixture(scope="session")
def tiny_static(tmp_path_factory):
    """A 16-frame fixed-camera control (64x48) with poses (all equal), points and depth."""
    return _make(tmp_path_factory, "tiny-static", kind="static", scene="living_room", duration=2.0, seed=2)


@pytest.fixture(scope="session")
def tiny_screen(tmp_path_factory):
    """A 16-frame screen-recording control (64x48): video.mp4 and life.json only (no poses, points, depth)."""
    return _make(tmp_path_factory, "tiny-screen", kind="screen", duration=2.0, seed=3)
