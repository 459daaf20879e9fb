"""Evaluation tests run torch on one thread: their tensors are tiny, and on a shared 2-core machine two
intra-op threads made a 20-step readout fit 13x slower (5.4 s vs 0.4 s). The setting is restored after each test."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
