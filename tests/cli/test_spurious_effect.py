"""The property the toolkit exists to show, with the default settings of the standard chain:
a standard small-cnn on spurious-digits is misled by the background (test worst-group accuracy far below
test accuracy), and a fresh model trained only on its pgd-l2 perturbations still classifies clean images."""

from __future__ import annotations

import pytest
import torch

import lfpcli


@pytest.mark.slow
def test_standard_chain_shows_the_spurious_effect_and_learns_from_perturbations(tmp_path):
    """About 3 minutes on 2 cores: the one test that runs the chain at full size, as a user would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # full-size convolutions do gain from the second core
    try:
        std = lfpcli.train(tmp_path / "model.pt", data="spurious-digits", arch="small-cnn", device="cpu")
        test = std["metrics"]["test"]
        assert test["worst_group_accuracy"] <= test["accuracy"] - 0.15, test
        lfpcli.perturb(tmp_path / "pgd.h5", model=tmp_path / "model.pt", method="pgd-l2", device="cpu")
        lfpcli.retrain(tmp_path / "model_pgd.pt", perturbed=tmp_path / "pgd.h5", device="cpu")
        report = lfpcli.evaluate(model=tmp_path / "model_pgd.pt", device="cpu")
        assert report["splits"]["test"]["accuracy"] >= 0.65, report["splits"]["test"]
    finally:
        torch.set_num_threads(threads)
