"""Accuracy figures, worked out by hand."""

from __future__ import annotations

import pytest
import torch

from lfpcli.metrics import split_metrics


def test_group_figures_by_hand():
    # groups 0..3 with 4, 2, 2, 2 samples; correct: 4/4, 1/2, 0/2, 2/2
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 0, 0, 0, 0, 1, 0, 0, 1, 1])
    train_counts = torch.tensor([70, 10, 10, 10])
    m = split_metrics(pred, y, g, ["a", "b", "c", "d"], train_counts)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["worst_group_accuracy"] == 0.0
    assert abs(m["mean_group_accuracy"] - (1 + 0.5 + 0 + 1) / 4) < 1e-7
    assert abs(m["train_weighted_accuracy"] - (0.7 * 1 + 0.1 * 0.5 + 0.1 * 0 + 0.1 * 1)) < 1e-7
    assert m["groups"]["b"] == {"accuracy": 0.5, "n": 2}


def test_no_groups_gives_nulls_and_empty_groups_are_skipped():
    y = torch.tensor([0, 1, 1])
    m = split_metrics(torch.tensor([0, 1, 0]), y, torch.full((3,), -1))
    assert m["worst_group_accuracy"] is None and m["groups"] is None and abs(m["accuracy"] - 2 / 3) < 1e-7
    m = split_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 2]), ["a", "b", "c"])
    assert m["groups"]["b"] == {"accuracy": None, "n": 0}
    assert m["worst_group_accuracy"] == 1.0


def test_train_weighted_accuracy_renormalises_over_the_groups_in_the_split():
    # the case: train counts 3, 1; the split holds group 0 only, all correct
    m = split_metrics(
        torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([0, 0]), ["a", "b"], torch.tensor([3, 1])
    )
    assert m["train_weighted_accuracy"] == 1.0
    # train counts 6, 3, 1; the split lacks group b; a: 1 of 2 correct, c: 1 of 1: (6 * 1/2 + 1 * 1) / (6 + 1)
    y = torch.tensor([0, 0, 1])
    g = torch.tensor([0, 0, 2])
    m = split_metrics(torch.tensor([0, 1, 1]), y, g, ["a", "b", "c"], torch.tensor([6, 3, 1]))
    assert m["train_weighted_accuracy"] == pytest.approx(4 / 7, abs=1e-12)
    assert m["mean_group_accuracy"] == pytest.approx(0.75, abs=1e-12)  # (1/2 + 1) / 2: b has no samples here
    assert m["worst_group_accuracy"] == 0.5 and m["worst_group"] == "a"
    # the only groups in the split had no training samples: no weights to average with
    m = split_metrics(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), ["a", "b"], torch.tensor([5, 0]))
    assert m["train_weighted_accuracy"] is None and m["mean_group_accuracy"] == 1.0
