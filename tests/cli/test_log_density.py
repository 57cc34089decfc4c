"""metrics/log_density: one evaluation estimator per data spec, the same for every method, cached, summarised."""

from __future__ import annotations

import json

import h5py
import pytest
import torch

from lfpcli.artifacts.datasets import read_perturbed_set
from lfpcli.artifacts.dataspec import resolve
from lfpcli.cli.app import main
from lfpcli.commands.log_density import ESTIMATOR, evaluation_density, pool


def lfp(capsys, *args):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_stored_log_density_is_the_evaluation_estimator_at_the_stored_inputs(digits_pgd):
    arrays, metrics, record = read_perturbed_set(digits_pgd)
    with h5py.File(digits_pgd) as f:
        assert f["metrics/log_density"].attrs["estimator"] == ESTIMATOR
    assert record["log_density_estimator"]["name"] == ESTIMATOR
    fn, desc = evaluation_density(resolve("digits"), torch.device("cpu"))
    x, t, index = (torch.from_numpy(arrays[k]) for k in ("x", "target", "index"))
    want = fn(x, t, index)  # training samples: scored leave-one-out
    torch.testing.assert_close(torch.from_numpy(metrics["log_density"]), want.float(), rtol=1e-4, atol=1e-3)
    assert desc["bandwidth_per_class"] == record["log_density_estimator"]["bandwidth_per_class"]


def test_leave_one_out_is_the_kde_of_the_other_reference_points():
    from lfpcli.commands.log_density import MAX_POINTS, _reference_index
    from lfpcli.density import GaussianKDE, fit_density

    ds = resolve("digits")
    tr = ds.split("train")
    fn, desc = evaluation_density(ds, torch.device("cpu"))
    q = fit_density("kde", tr.x.flatten(1), tr.y, 10, seed=0, max_points=MAX_POINTS)
    refs = _reference_index(ds)
    k = 3
    i = int(refs[k][5])  # a training image that is one of class 3's reference points
    row = int((tr.index == i).nonzero())
    x, t = tr.x[row : row + 1], torch.tensor([k])
    pts = q.points[q.offsets[k] : q.offsets[k + 1]]
    keep = torch.ones(len(pts), dtype=torch.bool)
    keep[5] = False
    assert torch.equal(pts[5], x.flatten(1)[0])
    loo = GaussianKDE(pts[keep], torch.tensor([0, int(keep.sum())]), q.bandwidth[k : k + 1])
    torch.testing.assert_close(
        fn(x, t, torch.tensor([i])).double(),
        loo.log_prob(x.flatten(1), torch.tensor([0])).double(),
        rtol=1e-5,
        atol=1e-4,
    )
    torch.testing.assert_close(fn(x, t).double(), q.log_prob(x.flatten(1), t).double(), rtol=1e-5, atol=1e-4)
    assert fn(x, t) > fn(x, t, torch.tensor([i])) + 10  # the own kernel's peak is what leave-one-out removes
    other = torch.tensor([int(refs[k][0]) + 10_000])  # an index that is no reference point changes nothing
    torch.testing.assert_close(fn(x, t, other), fn(x, t))


def test_every_method_is_scored_by_the_same_estimator_and_it_ranks_own_class_first(digits_model, tmp_path, capsys):
    descs = []
    for method, extra in (
        ("pgd-linf", []),
        ("cfe-l2", ["--steps", "10"]),
        ("pcfe-l0", ["--steps", "10", "--search-steps", "2"]),
    ):
        out = tmp_path / f"{method}.h5"
        code, _, err = lfp(
            capsys, "perturb", "--method", method, "--in", digits_model, "--out", out, "--limit", "8", *extra, "-q"
        )
        assert code == 0, err
        descs.append(read_perturbed_set(out)[2]["log_density_estimator"])
    assert descs[0] == descs[1] == descs[2]
    # a sanity property of the estimator itself: held-out test digits score higher under their own class
    fn, _ = evaluation_density(resolve("digits"), torch.device("cpu"))
    te = resolve("digits").split("test")
    own = fn(te.x, te.y)
    other = fn(te.x, (te.y + 1) % 10)
    assert (own > other).float().mean() > 0.9


def test_eval_and_info_summarise_the_stored_quality(digits_model, digits_pgd, capsys):
    code, out, err = lfp(capsys, "eval", "--in", digits_model, "--data", digits_pgd, "--json")
    assert code == 0, err
    p = json.loads(out)["perturbed"]
    assert p["log_density_estimator"] == ESTIMATOR
    assert set(p["stored_metrics"]) >= {"l0", "l2", "linf", "loss", "iterations", "grad_evals", "log_density"}
    assert p["stored_metrics"]["log_density"]["median"] is not None
    code, out, err = lfp(capsys, "info", digits_pgd, "--json")
    s = json.loads(out)["summary"]
    assert {"success_rate", "l0", "log_density"} <= set(s) and set(s["log_density"]) >= {"mean", "median"}
    code, out, err = lfp(capsys, "eval", "--in", digits_model, "--data", digits_pgd)
    assert code == 0 and "log_density (kde-pixel-v1)" in out


def test_the_estimator_is_fitted_once_and_read_back_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path))
    ds = resolve("digits")
    fn1, d1 = evaluation_density(ds, torch.device("cpu"))
    files = list((tmp_path / "log-density").iterdir())
    assert len(files) == 1
    import lfpcli.commands.log_density as mod

    def refit(*a, **k):
        raise AssertionError("refitted although cached")

    monkeypatch.setattr(mod, "fit_density", refit)
    fn2, d2 = evaluation_density(ds, torch.device("cpu"))
    x, t = ds.split("val").x[:20], ds.split("val").y[:20]
    torch.testing.assert_close(fn1(x, t), fn2(x, t))
    assert d1 == d2


def test_large_images_are_pooled_to_32_pixels_a_side():
    x = torch.rand(2, 3, 224, 200)
    assert pool(x).shape == (2, 3, 32, 32)
    small = torch.rand(2, 1, 28, 28)
    assert pool(small) is small


def _tiny(spec: dict, seed: int):
    from lfpcli.data.dataset import Dataset, Split

    g = torch.Generator().manual_seed(seed)
    splits = {
        s: Split(torch.rand(12, 1, 2, 2, generator=g), torch.arange(12) % 2, torch.full((12,), -1), torch.arange(12))
        for s in ("train", "val", "test")
    }
    return Dataset(
        spec=spec, splits=splits, num_classes=2, class_names=["a", "b"], input_shape=(1, 2, 2), mean=[0.5], std=[0.25]
    )


def test_the_cached_fit_is_keyed_by_every_part_of_the_data_spec_and_the_estimator(tmp_path, monkeypatch):
    """Another name, version, parameter, file content or estimator gets a fit of its own in a file of its own;
    the first data then still reads its own fit back."""
    import lfpcli.commands.log_density as mod

    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "log-density"
    cpu = torch.device("cpu")
    base = {"type": "builtin", "name": "toy", "version": 1, "params": {"seed": 0, "size": 4}}
    first = _tiny(base, 0)
    x, t = first.split("val").x, first.split("val").y
    want = evaluation_density(first, cpu)[0](x, t)
    data_file = tmp_path / "d.h5"
    data_file.write_bytes(b"one")
    others = [
        {**base, "name": "toy2"},
        {**base, "version": 2},
        {**base, "params": {"seed": 1, "size": 4}},
        {**base, "params": {"seed": 0, "size": 5}},
        {**base, "params": {**base["params"], "extra": 0}},
        {"type": "file", "path": str(data_file)},
        {"type": "file", "path": str(data_file), "sha256": "0" * 64},
    ]
    for i, spec in enumerate(others, start=1):
        before = set(folder.iterdir())
        ds = _tiny(spec, i)
        got = evaluation_density(ds, cpu)[0](x, t)
        assert len(set(folder.iterdir()) - before) == 1, f"{spec}: no fit of its own"
        assert not torch.equal(got, want)
    data_file.write_bytes(b"two")  # the same path, other content
    before = set(folder.iterdir())
    evaluation_density(_tiny({"type": "file", "path": str(data_file)}, 9), cpu)
    assert len(set(folder.iterdir()) - before) == 1, "a data file's content is not in the key"
    monkeypatch.setattr(mod, "ESTIMATOR", "kde-pixel-v0")
    before = set(folder.iterdir())
    evaluation_density(first, cpu)
    assert len(set(folder.iterdir()) - before) == 1, "the estimator is not in the key"
    monkeypatch.undo()
    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path / "cache"))

    def refit(*a, **k):
        raise AssertionError("refitted although cached")

    monkeypatch.setattr(mod, "fit_density", refit)
    assert torch.equal(evaluation_density(first, cpu)[0](x, t), want)
