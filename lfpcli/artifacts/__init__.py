"""The on-disk formats: the only package that knows how lfp files are laid out.

- checkpoints (``.pt``): :mod:`lfpcli.artifacts.checkpoint`
- datasets and perturbed sets (``.h5``): :mod:`lfpcli.artifacts.h5`
- evaluation reports (``.json``): :mod:`lfpcli.artifacts.jsonfile`
- the provenance record they all carry: :mod:`lfpcli.artifacts.provenance`
"""

from lfpcli.artifacts.checkpoint import load_checkpoint, save_checkpoint
from lfpcli.artifacts.files import atomic_output, check_output, sha256_file
from lfpcli.artifacts.h5 import H5Writer, dataset_summary, open_h5, read_array
from lfpcli.artifacts.jsonfile import load_json_artifact, save_json_artifact
from lfpcli.artifacts.provenance import (
    KINDS,
    SCHEMA_VERSION,
    jsonable,
    make_record,
    parent_entry,
    parent_status,
    parent_warnings,
)
from lfpcli.artifacts.sniff import read_record

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "H5Writer",
    "atomic_output",
    "check_output",
    "dataset_summary",
    "jsonable",
    "load_checkpoint",
    "load_json_artifact",
    "make_record",
    "open_h5",
    "parent_entry",
    "parent_status",
    "parent_warnings",
    "read_array",
    "read_record",
    "save_checkpoint",
    "save_json_artifact",
    "sha256_file",
]
