"""Fixtures for the trainer tests (the data and configurations they are made of: trainkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainkit import MICRO, write_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """Two shards of 16 pairs of 72x72 JPEGs."""
    return write_shards(tmp_path_factory.mktemp("shards") / "toy", n_shards=2, per_shard=16)


@pytest.fixture(scope="session")
def rolled_shards(tmp_path_factory) -> Path:
    """Two shards of 32 pairs whose target camera is also rolled by up to 30 degrees (egomotion)."""
    return write_shards(tmp_path_factory.mktemp("shards") / "rolled", n_shards=2, per_shard=32, seed=5, roll=30.0)


@pytest.fixture
def micro():
    return dict(MICRO)


@pytest.fixture
def one_thread():
    """torch on one intra-op thread for the test (restored after): tiny tensors on a shared 2-core machine run
    several times faster than with two threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
