"""Target rules keep the label statistics they promise."""

from __future__ import annotations

import pytest
import torch

from lfpcli.errors import ConfigError
from lfpcli.solvers import choose_targets


@pytest.mark.parametrize("k", [2, 3, 10])
def test_random_other_never_keeps_the_label_and_is_uniform(k):
    y = torch.randint(0, k, (60000,), generator=torch.Generator().manual_seed(0))
    t = choose_targets(y, k, "random-other", torch.Generator().manual_seed(1))
    assert (t != y).all() and t.min() >= 0 and t.max() < k
    # for each label, the K-1 other classes are equally likely
    for c in range(k):
        counts = torch.bincount(t[y == c], minlength=k).float()
        others = counts[torch.arange(k) != c]
        assert counts[c] == 0
        assert (others / others.sum() - 1 / (k - 1)).abs().max() < 0.03


@pytest.mark.parametrize("k", [2, 10])
def test_random_is_uniform_over_all_classes_and_independent_of_the_label(k):
    y = torch.randint(0, k, (60000,), generator=torch.Generator().manual_seed(0))
    t = choose_targets(y, k, "random", torch.Generator().manual_seed(1))
    assert abs((t == y).float().mean() - 1 / k) < 0.01
    for c in range(k):
        p = torch.bincount(t[y == c], minlength=k).float()
        assert (p / p.sum() - 1 / k).abs().max() < 0.03


def test_deterministic_is_next_class():
    y = torch.tensor([0, 1, 2, 9])
    assert choose_targets(y, 10, "deterministic").tolist() == [1, 2, 3, 0]


def test_seeded_and_unknown_rule():
    y = torch.zeros(100, dtype=torch.long)
    a = choose_targets(y, 5, "random", torch.Generator().manual_seed(3))
    b = choose_targets(y, 5, "random", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError):
        choose_targets(y, 5, "nearest")
