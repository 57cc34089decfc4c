"""``lfp data``: describe a data spec, or write it to an lfp dataset file; ``--download`` fetches a paper dataset first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfpcli.artifacts import check_output, make_record
from lfpcli.artifacts.datasets import write_dataset
from lfpcli.artifacts.dataspec import resolve
from lfpcli.commands.common import data_parent
from lfpcli.data import parse_spec
from lfpcli.data.download import download, downloadable, next_spec
from lfpcli.data.registry import catalogue
from lfpcli.errors import ConfigError, Interrupted
from lfpcli.progress import Progress, no_progress


def describe_data(
    data: str,
    *,
    out: str | Path | None = None,
    force: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Summary of the dataset ``data`` names (splits, sizes, classes, the class-to-index map, group counts); with
    ``out``, also write it as an lfp dataset file that any ``--data`` option accepts.

    Data read on demand (a real dataset's images, a large file) is written batch by batch in its stored type:
    ``lfp data waterbirds:root=DIR --out wb.h5`` decodes every image once (DataLoader workers, with progress) into
    a uint8 cache that every command then reads lazily, so later runs decode no JPEG."""
    if out is not None:
        check_output(out, force, (".h5", ".hdf5"))
    ds = resolve(data, progress=progress)
    summary: dict[str, Any] = {
        **ds.info(),
        "description": ds.description,
        "perturb_defaults": ds.perturb_defaults,
        "train_defaults": ds.train_defaults,
    }
    summary["group_counts"] = (
        {k: s.group_counts(ds.num_groups).tolist() for k, s in ds.splits.items()} if ds.group_names else None
    )
    summary["class_counts"] = {k: s.y.bincount(minlength=ds.num_classes).tolist() for k, s in ds.splits.items()}
    summary["masks"] = {k: s.mask is not None for k, s in ds.splits.items()}
    summary["read"] = {
        k: ("in memory" if s.in_memory else f"on demand ({type(s.x).__name__})") for k, s in ds.splits.items()
    }
    if out is not None:
        record = make_record(
            "dataset",
            {"data": ds.spec},
            seeds={"seed": (ds.spec.get("params") or {}).get("seed")},
            parents=data_parent(ds.spec),
            argv=argv,
        )
        write_dataset(out, ds, record, force=force, progress=progress)
        summary["out"] = str(out)
    return summary


def list_data(argv: list[str] | None = None) -> dict[str, Any]:
    """Every data spec lfp knows (:func:`lfpcli.data.registry.catalogue`): ``{"datasets": [...]}``."""
    return {"datasets": catalogue()}


def download_data(
    data: str,
    *,
    source: str | None = None,
    mirror: str | None = None,
    verify: bool = True,
    out: str | Path | None = None,
    force: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """``lfp data NAME:root=DIR --download``: fetch the dataset into DIR in the layout its loader reads
    (:func:`lfpcli.data.download.download`), then describe it as :func:`describe_data` does; ``next_data`` is the
    ``--data`` spec to use next. ``force`` fetches again (and, with ``out``, overwrites it)."""
    spec = parse_spec(data)
    if spec.get("type") != "real" or spec.get("name") not in downloadable():
        what = spec.get("name") if spec.get("type") == "builtin" else spec.get("path") or data
        kind = (
            "is built in (made from scikit-learn's digits)"
            if spec.get("type") == "builtin"
            else "is a file already on disk"
        )
        raise ConfigError(
            f"'{what}' {kind}: nothing to download. --download fetches {', '.join(downloadable())} (give NAME:root=DIR)"
        )
    if out is not None:
        check_output(out, force, (".h5", ".hdf5"))
    params = spec.get("params") or {}
    try:
        fetched = download(
            spec["name"], params["root"], source=source, mirror=mirror, verify=verify, force=force, progress=progress
        )
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted; nothing half-fetched or half-unpacked was kept where lfp reads. Archives fetched "
            "whole stay beside the data: the same command goes on from them"
        ) from None
    following = next_spec(spec["name"], params, fetched)
    summary = describe_data(following, out=out, force=force, progress=progress, argv=argv)
    return {**summary, "download": fetched, "next_data": following}
