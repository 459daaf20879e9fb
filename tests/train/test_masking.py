"""Tests for slife/train/masking.py: exact masked counts, convention True = masked, visible indices."""

import pytest
import torch

from slife.train.masking import RandomMask, visible_index


@pytest.mark.parametrize("n, expected", [(64, 57), (196, 176), (10, 9), (7, 6)])
def test_exact_count_per_image(n, expected):
    mask = RandomMask(0.9)(5, n)  # (5, n)
    assert mask.dtype == torch.bool and mask.shape == (5, n)
    assert mask.sum(dim=1).tolist() == [expected] * 5  # int(0.9 * n) masked in every image


def test_random_and_seeded():
    gen = RandomMask(0.5)
    a = gen(4, 16, generator=torch.Generator().manual_seed(3))
    b = gen(4, 16, generator=torch.Generator().manual_seed(3))
    c = gen(4, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # images of a batch get different masks


def test_ratio_zero_and_bad_ratio():
    assert RandomMask(0.0)(2, 9).sum() == 0
    with pytest.raises(ValueError):
        RandomMask(1.0)
    with pytest.raises(ValueError):
        RandomMask(-0.1)


def test_visible_index():
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    assert visible_index(mask).tolist() == [[1, 3], [0, 3]]
    with pytest.raises(ValueError):
        visible_index(torch.tensor([[True, False], [False, False]]))
