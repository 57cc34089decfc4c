"""Data specs and the datasets they name, in memory: a built-in dataset (``digits``, ``spurious-digits:seed=1``),
generated from data installed packages ship, or a paper dataset on the user's disk (``waterbirds:root=DIR``).

``parse_spec(text)`` reads a spec, ``build(spec)`` makes the dataset, ``list_datasets()`` names the built-ins,
``spec_label(spec)`` and ``data_key(spec)`` name a spec for people and for comparison. Specs that name lfp files,
and the cache of built-ins, are read by :func:`lfpcli.artifacts.dataspec.resolve`, which takes every kind of spec.
"""

from lfpcli.data.dataset import SPLITS, Dataset, Split
from lfpcli.data.registry import build, data_key, list_datasets, parse_spec, spec_label

__all__ = ["SPLITS", "Dataset", "Split", "build", "data_key", "list_datasets", "parse_spec", "spec_label"]
