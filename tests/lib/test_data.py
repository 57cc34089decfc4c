"""Built-in datasets: what they promise (sizes, groups, correlation, determinism, pixel range)."""

from __future__ import annotations

import zlib

import pytest
import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.data import list_datasets, parse_spec
from lfpcli.errors import ConfigError


def test_digits_is_the_real_sklearn_digits_split_60_20_20():
    ds = resolve("digits")
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["train"] == 1078
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.group_names is None
    x = ds.splits["train"].x
    assert x.min() >= 0 and x.max() <= 1


def test_spurious_digits_promises():
    ds = resolve("spurious-digits")
    tr, te = ds.splits["train"], ds.splits["test"]
    assert ds.input_shape[0] == 3 and ds.input_shape[1] >= 28 and len(tr) >= 1000
    assert ds.num_classes == 2 and len(ds.group_names) == 4
    assert (tr.group == 2 * tr.y + (tr.group % 2)).all()
    a = tr.group % 2
    for c in (0, 1):
        agree = (a[tr.y == c] == c).float().mean()
        assert abs(float(agree) - 0.95) < 0.01
    counts = te.group_counts(4)
    assert counts.min() >= 80
    # val/test: background independent of the label (balanced within each class)
    a_te = te.group % 2
    for c in (0, 1):
        assert abs(float(a_te[te.y == c].float().mean()) - 0.5) < 0.02
    assert tr.x.min() >= 0 and tr.x.max() <= 1 and tr.x.dtype == torch.float32


def test_spurious_digits_is_deterministic_and_seeded():
    a = resolve("spurious-digits:seed=3,train_copies=1", use_cache=False)
    b = resolve("spurious-digits:seed=3,train_copies=1", use_cache=False)
    c = resolve("spurious-digits:seed=4,train_copies=1", use_cache=False)
    assert torch.equal(a.splits["train"].x, b.splits["train"].x)
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)
    assert a.spec["params"]["seed"] == 3


def test_cache_returns_identical_data():
    first = resolve("spurious-digits:train_copies=1")
    again = resolve("spurious-digits:train_copies=1")
    fresh = resolve("spurious-digits:train_copies=1", use_cache=False)
    assert torch.equal(first.splits["test"].x, fresh.splits["test"].x)
    assert torch.equal(again.splits["train"].x, fresh.splits["train"].x)
    assert again.spec == fresh.spec and again.perturb_defaults == fresh.perturb_defaults


class _CountingBuiltin:
    """A stand-in built-in: a tiny dataset whose values depend on its parameters; counts its builds."""

    def __init__(self, name: str, version: int):
        self.name, self.version, self.builds = name, version, 0

    def build(self, params, progress=None):
        from lfpcli.data.dataset import Dataset, Split

        self.builds += 1
        g = torch.Generator().manual_seed(zlib.crc32(repr((self.name, self.version, sorted(params.items()))).encode()))
        splits = {
            s: Split(
                torch.rand(3, 1, 2, 2, generator=g), torch.tensor([0, 1, 0]), torch.full((3,), -1), torch.arange(3)
            )
            for s in ("train", "val", "test")
        }
        return Dataset(
            spec={"type": "builtin", "name": self.name, "version": self.version, "params": dict(params)},
            splits=splits,
            num_classes=2,
            class_names=["a", "b"],
            input_shape=(1, 2, 2),
            mean=[0.5],
            std=[0.25],
        )


def test_the_builtin_cache_key_covers_every_input(tmp_path, monkeypatch):
    """Changing the name, any parameter, the generator version, lfp's version or the cache layout gives another
    cache file (never the file of other inputs, read or overwritten); the same inputs again read their own file."""
    from lfpcli import version
    from lfpcli.artifacts import dataspec as files

    cache = tmp_path / "cache"
    params = {"seed": 0, "size": 4, "correlation": 0.5}
    entry = _CountingBuiltin("toy", 1)

    def get(name="toy", p=params, e=entry):
        return files.cached_builtin(name, p, e, cache)

    first = get()
    assert get().spec == first.spec and entry.builds == 1  # the same inputs: read back, not rebuilt
    variants = [("name", lambda: get(name="toy2", e=_CountingBuiltin("toy2", 1)))]
    for k in params:
        other = {**params, k: params[k] + 1}
        variants.append((f"params.{k}", lambda other=other: get(p=other)))
    variants += [
        ("an added parameter", lambda: get(p={**params, "extra": 1})),
        ("version", lambda: get(e=_CountingBuiltin("toy", 2))),
    ]
    for what, call in variants:
        before = set(cache.iterdir())
        ds = call()
        assert len(set(cache.iterdir()) - before) == 1, f"{what} changed, no new cache file"
        assert ds.spec["params"] != params or ds.spec["name"] != "toy" or ds.spec["version"] != 1
    for what, patch in (
        ("lfp version", lambda: monkeypatch.setattr(version, "__version__", version.__version__ + ".post1")),
        ("cache layout", lambda: monkeypatch.setattr(files, "CACHE_LAYOUT", files.CACHE_LAYOUT + 1)),
    ):
        before = set(cache.iterdir())
        patch()
        get()
        assert len(set(cache.iterdir()) - before) == 1, f"{what} changed, no new cache file"
    monkeypatch.undo()
    builds = entry.builds
    again = get()  # the first inputs' file is still theirs
    assert entry.builds == builds and again.spec == first.spec
    assert torch.equal(again.splits["train"].x, first.splits["train"].x)


@pytest.mark.parametrize(
    "bad", ["imagenet", "spurious-digits:bogus=1", "spurious-digits:correlation=2", "digits:seed=x", ""]
)
def test_bad_specs(bad):
    with pytest.raises(ConfigError):
        resolve(bad)


def test_registry_lists_builtins():
    assert {"digits", "spurious-digits"} <= set(list_datasets())
    assert parse_spec("digits:seed=2") == {"type": "builtin", "name": "digits", "params": {"seed": 2}}


@pytest.mark.parametrize(
    "spec, bad, closest",
    [
        ("spurious-digits:corelation=0.9", "corelation", "correlation"),
        ("spurious-digits:seed=1,Contrast=0.5", "Contrast", "contrast"),
        ("waterbirds:rot=/data/wb", "rot", "root"),
        ("mnist:root=/data,vall=500", "vall", "val"),
        ("folder:csv=list.csv,classs=a;b", "classs", "classes"),
        ("digits:zzz=1", "zzz", None),
    ],
)
def test_a_misspelled_spec_key_is_named_with_the_closest_valid_one(spec, bad, closest):
    """As the CLI does for a misspelled option: the key given, the one meant, then every key the data takes."""
    with pytest.raises(ConfigError) as e:
        parse_spec(spec)
    msg = str(e.value)
    assert f"has no key '{bad}'" in msg, msg
    assert (f"did you mean {closest}=" in msg) if closest else "did you mean" not in msg, msg
    assert " takes " in msg and "=..." in msg


@pytest.mark.parametrize("spec, key", [("spurious-digits:correlation", "correlation"), ("waterbirds:root", "root")])
def test_a_spec_key_without_a_value_says_so(spec, key):
    with pytest.raises(ConfigError, match=f"'{key}' has no value: write {key}=VALUE"):
        parse_spec(spec)
