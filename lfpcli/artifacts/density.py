"""HDF5 layout of fitted class densities (``lfp_kind`` = ``density``).

::

    /density/<name>   the estimator's fitted tensors (``ClassDensity.state()``), e.g. points, offsets, bandwidth

The record holds, under ``density``: the estimator ``kind`` and its JSON parameters (``params``), the
``space`` it lives in (``pixel``, or ``feature``: the source model's penultimate features), what it was
fitted on (``fit_on``, ``num_points``) and the input or feature dimension.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lfpcli.artifacts.h5 import H5Writer, open_h5, read_array
from lfpcli.errors import ArtifactError


def write_density(
    path: str | os.PathLike,
    tensors: dict[str, Any],
    info: dict[str, Any],
    record: dict[str, Any],
    *,
    force: bool = False,
) -> None:
    with H5Writer(path, "density", force=force) as w:
        for name, t in tensors.items():
            w.put(f"density/{name}", t, f"fitted tensor '{name}' of the {info.get('kind')} estimator")
        w.record = {**record, "density": info}


def read_density(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """``(tensors, info, record)`` of a density file; ``info`` is the record's ``density`` entry."""
    f, record = open_h5(path, ["density"])
    with f:
        info = record.get("density")
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("params"), dict)
            or info.get("space") not in ("pixel", "feature")
        ):
            raise ArtifactError(f"{path}: density record lacks its estimator parameters or space")
        if "density" not in f:
            raise ArtifactError(f"{path} has no 'density' group of fitted tensors")
        tensors = {name: read_array(f, f"density/{name}", path=path) for name in f["density"].keys()}
    return tensors, info, record
