"""``lfp info``, ``lfp verify`` and ``lfp data``: what a file or a data spec is (registered on the app by
:func:`register`)."""

from __future__ import annotations

import os
import warnings
from typing import Annotated, Optional

import typer

from lfpcli.cli import render
from lfpcli.cli.options import INSPECT_PANEL, ForceOpt, JsonOpt, QuietOpt
from lfpcli.cli.runner import run as run_command


def info(
    file: Annotated[
        str,
        typer.Argument(
            help="Any lfp artifact: checkpoint (.pt), perturbed set, dataset, density, saliency maps "
            "or synth results (.h5), eval report (.json)."
        ),
    ],
    json_: JsonOpt = False,
) -> None:
    """What an artifact is and how it was made: command, parameters, seeds, versions, parents (sha256 checked).

    Example: lfp info pgd.h5
    """
    from lfpcli.commands import info as run

    r = run(file)
    for p in r["parents"]:
        if p["status"] == "changed":
            warnings.warn(
                f"parent {p['path']} of {file} changed since (sha256 {p['sha256'][:12]} recorded, "
                f"{p['sha256_now'][:12]} now)",
                stacklevel=1,
            )
    render.emit_json(r) if json_ else render.show_info(r)


def verify(
    files: Annotated[list[str], typer.Argument(help="lfp artifacts to check, with everything they were made from.")],
    json_: JsonOpt = False,
) -> None:
    """Check a chain of artifacts: recompute each file's sha256 and walk its recorded parents recursively.

    Each ancestor is reported as ok (present, same content), changed (found, other content: its own parents are
    not followed) or missing. Exit code 0 only when every ancestor of every file holds; 1 when any does not
    (as sha256sum -c); 2 for a file that is missing or not an lfp artifact.

    Example: lfp verify model_pgd.pt eval_pgd.json
    """
    from lfpcli.commands.verify import verify as run

    r = run(files)
    render.emit_json(r) if json_ else render.show_verify(r)
    if not r["ok"]:
        raise typer.Exit(1)


def data_(
    spec: Annotated[
        str,
        typer.Argument(
            help="Data spec: a built-in (digits, spurious-digits, spurious-scenes, scenes-pretrain[:key=value,...]; lfp data --list), NAME:root=DIR for a paper dataset on your disk, folder:csv=FILE, or an lfp .h5 file."
        ),
    ] = "spurious-digits",
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            "-o",
            help="Write the dataset as an lfp .h5 file: for data read from image files, a chunked uint8 cache that every command reads batch by batch (decoded once).",
            metavar="FILE.h5",
        ),
    ] = None,
    list_: Annotated[
        bool,
        typer.Option(
            "--list",
            help="List every data spec lfp knows (built-in and on your disk) with its description, parameters and defaults; with --json, as JSON.",
        ),
    ] = False,
    force: ForceOpt = False,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Fetch the paper dataset SPEC names into its root first (waterbirds, spuco-dogs, spuco-birds, spuco-animals, mnist, fmnist, cifar10), in the layout lfp reads: checksums where the source publishes them, the loader's layout check, then renamed into place; already there: nothing is done (--force fetches again).",
        ),
    ] = False,
    source: Annotated[
        Optional[str],
        typer.Option(
            "--source",
            help="With --download, where a dataset published in several places comes from: waterbirds group_DRO (default, the paper's) or wilds; cifar10 python (default, torchvision's) or binary.",
            metavar="NAME",
        ),
    ] = None,
    mirror: Annotated[
        Optional[str],
        typer.Option(
            "--mirror",
            help="With --download, fetch each file from URL/NAME (NAME: the file's own name, e.g. train-images-idx3-ubyte.gz) instead of its source; default $LFP_MIRROR.",
            metavar="URL",
        ),
    ] = None,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="With --download, accept an archive whose checksum differs from the published one (a mirror's repackaged copy); the layout check still runs and the output says so.",
        ),
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Describe a data spec (splits, classes, class index, groups); with --out, write it as an lfp dataset file;
    with --download, fetch a paper dataset first.

    Datasets on your disk (fetched only with --download), options after the name:

    - waterbirds:root=DIR  group_DRO's waterbird_complete95_forest2water2/ or
      WILDS' waterbirds_v1.0/ (metadata.csv); groups 2*y + place
    - spuco-dogs:root=DIR  the paper's SpuCoAnimals (small vs big dogs, indoor/
      outdoor); spuco-birds; spuco-animals (4 classes). order=spuco (default):
      small_dogs = 0, big_dogs = 1 as the spuco package; order=sorted: the
      other way round, as ImageFolder and the paper-matching script
    - mnist:root=DIR, fmnist:root=DIR  MNIST/raw, FashionMNIST/raw (IDX, or
      .gz); val=N holds out N training images (seed=)
    - cifar10:root=DIR  cifar-10-batches-bin, or -py (data-only pickle reader)
    - folder:csv=FILE  columns path, label, split [, group | a]; classes.txt
      beside it or classes=a;b;c; mode=RGB|L

    Images: center crop size=224 after a square resize=256 (as the paper);
    mean/std inside the model. Every command reads splits batch by batch
    (DataLoader workers: $LFP_WORKERS); --out writes a chunked uint8 cache
    that every command reads lazily, so later runs decode no JPEG
    ($LFP_PRELOAD_MB: files up to this size are loaded whole, default 256).

    Example: lfp data --list (every data spec, its parameters and defaults)

    Example: lfp data spurious-digits:correlation=0.9 --out sd90.h5

    Example: lfp data waterbirds:root=~/data/waterbird_complete95_forest2water2 --out wb.h5

    Example: lfp data mnist:root=~/data --download
    """
    if list_:
        if out is not None or download:
            raise typer.BadParameter(
                "--list writes and fetches nothing; leave out --out and --download", param_hint="--list"
            )
        from lfpcli.commands.data import list_data

        run_command(list_data, render.show_data_list, json_)
        return
    if not download:
        given = [f for f, v in (("--source", source), ("--mirror", mirror), ("--no-verify", no_verify)) if v]
        if given:
            raise typer.BadParameter(f"{given[0]} only applies with --download", param_hint=given[0])
        from lfpcli.commands import describe_data as run

        run_command(run, render.show_data, json_, quiet, data=spec, out=out, force=force)
        return
    from lfpcli.commands import download_data

    run_command(
        download_data,
        render.show_download,
        json_,
        quiet,
        data=spec,
        out=out,
        force=force,
        source=source,
        mirror=mirror or os.environ.get("LFP_MIRROR") or None,
        verify=not no_verify,
    )


def register(app: typer.Typer) -> None:
    """Add ``info``, ``verify`` and ``data`` to the ``lfp`` app."""
    for name, fn in (("info", info), ("verify", verify), ("data", data_)):
        app.command(name, rich_help_panel=INSPECT_PANEL)(fn)
