"""Data specs: a built-in dataset name (``digits``, ``spurious-digits:seed=1``) or an HDF5 file written by lfp.

``resolve(spec)`` turns a spec (the string a user types, or the dict an artifact recorded) into a
:class:`Dataset`; ``list_datasets()`` names the built-ins.
"""

from lfpcli.data.dataset import SPLITS, Dataset, Split, spec_label
from lfpcli.data.registry import list_datasets, parse_spec, resolve

__all__ = ["SPLITS", "Dataset", "Split", "list_datasets", "parse_spec", "resolve", "spec_label"]
