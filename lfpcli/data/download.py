"""Fetching the paper's datasets into the layouts lfp reads (``lfp data NAME:root=DIR --download``).

Each dataset has one or more *sources* (where it is published; the first is the default), each made of *parts*:
one folder under DIR and the archives it comes from. A part is installed in five steps:

1. already there and read by the loader: nothing is done (``force`` fetches again);
2. each archive is fetched (:func:`lfpcli.fetch.fetch`) from its published addresses, or from ``mirror`` +
   ``/`` + the archive's own name, unless it is already where the source's own tool keeps it (so a file put
   there by hand is used, and a run cut short goes on from the archives it finished);
3. its checksum is compared with the published one (:func:`checksums`; MD5 for torchvision's files and CIFAR-10):
   a mismatch removes the file and stops, unless ``verify`` is off (a mirror's repackaged copy), which the result
   records; a source that publishes none (WaterBirds, SpuCo) gets its SHA-256 recorded;
4. it is unpacked into a temporary folder beside the target (tar members through tarfile's ``data`` filter: no
   absolute paths, no ``..``, no links out, no devices; macOS ``._*`` files skipped), and the dataset's own loader
   reads the result (the layout check);
5. the checked folder is renamed into place (an old one, with ``force``, is moved aside first and then removed),
   and a ``.tar.gz`` archive is removed; torchvision's ``.gz`` files stay beside the files they hold, as
   torchvision keeps them.

Nothing half-fetched or half-unpacked is ever where the loader reads: a failure or Ctrl-C leaves the folder as it
was, plus the archives fetched whole.

Where the files come from: torchvision's own tables for MNIST, Fashion-MNIST and CIFAR-10 (python version:
addresses and MD5s read from the installed torchvision's dataset classes), the CIFAR-10 page for its binary
version, group_DRO's README for WaterBirds, WILDS' ``WaterbirdsDataset`` for its copy, the spuco package's
``SpuCoDogs``/``SpuCoBirds`` for SpuCo.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lfpcli.data.real import REAL
from lfpcli.errors import ConfigError, InputError
from lfpcli.fetch import checksum, fetch, new_folders
from lfpcli.progress import Progress, no_progress

WATERBIRDS_URL = "https://nlp.stanford.edu/data/dro/waterbird_complete95_forest2water2.tar.gz"
WILDS_WATERBIRDS_URL = "https://worksheets.codalab.org/rest/bundles/0x505056d5cdea4e4eaa0e242cbfe2daa4/contents/blob/"
SPUCO_URLS = {
    "spuco_dogs": "https://ucla.box.com/shared/static/u3dkllvq7a2py4x443pqul295wwd549e",
    "spuco_birds": "https://ucla.box.com/shared/static/zrsx09ik7lqad1e389w06f1c4nbajo9z",
}
CIFAR_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"


@dataclass(frozen=True)
class Archive:
    """One published file: its own name (what a mirror serves), its addresses in order, and the folder (relative
    to DIR) the source's own tool keeps it in."""

    name: str
    urls: tuple[str, ...]
    folder: str = ""

    @property
    def key(self) -> str:
        """Its entry in :func:`checksums`: the path relative to DIR."""
        return f"{self.folder}/{self.name}" if self.folder else self.name


@dataclass(frozen=True)
class Part:
    """One folder a download makes under DIR (``target``), from ``archives``: ``tar`` (one archive holding the
    folder, found inside it by ``marker``) or ``gunzip`` (each archive is one file of the folder). ``check``: the
    data spec whose loader must read the folder."""

    target: str
    archives: tuple[Archive, ...]
    check: str
    marker: str = ""
    unpack: str = "tar"


@dataclass(frozen=True)
class Source:
    title: str
    home: str
    parts: tuple[Part, ...]


def _torchvision_idx(cls_name: str, folder: str) -> Part:
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    archives = tuple(Archive(f, tuple(m + f for m in cls.mirrors), f"{folder}/raw") for f, _ in cls.resources)
    return Part(f"{folder}/raw", archives, "mnist" if folder == "MNIST" else "fmnist", unpack="gunzip")


@cache
def sources() -> dict[str, dict[str, Source]]:
    """dataset spec name -> {source name: Source}; the first source is the default."""
    from torchvision.datasets import CIFAR10

    wb = Part(
        "waterbird_complete95_forest2water2",
        (Archive("waterbird_complete95_forest2water2.tar.gz", (WATERBIRDS_URL,)),),
        "waterbirds",
        "metadata.csv",
    )
    wilds = Part(
        "waterbirds_v1.0", (Archive("waterbirds_v1.0.tar.gz", (WILDS_WATERBIRDS_URL,)),), "waterbirds", "metadata.csv"
    )
    spuco = {s: Part(s, (Archive(f"{s}.tar.gz", (u,)),), s.replace("_", "-"), "train") for s, u in SPUCO_URLS.items()}
    spuco_home = "the spuco package (BigML-CS-UCLA/SpuCo)"
    return {
        "waterbirds": {
            "group_DRO": Source(
                "WaterBirds, group_DRO's release (the paper's)", "https://nlp.stanford.edu/data/dro/", (wb,)
            ),
            "wilds": Source(
                "WaterBirds, WILDS' copy (waterbirds_v1.0)", "https://wilds.stanford.edu/downloads", (wilds,)
            ),
        },
        "spuco-dogs": {"spuco": Source("SpuCo dogs", spuco_home, (spuco["spuco_dogs"],))},
        "spuco-birds": {"spuco": Source("SpuCo birds", spuco_home, (spuco["spuco_birds"],))},
        "spuco-animals": {
            "spuco": Source("SpuCo animals (birds and dogs)", spuco_home, (spuco["spuco_birds"], spuco["spuco_dogs"]))
        },
        "mnist": {
            "torchvision": Source(
                "MNIST (torchvision's files)", "torchvision.datasets.MNIST", (_torchvision_idx("MNIST", "MNIST"),)
            )
        },
        "fmnist": {
            "torchvision": Source(
                "Fashion-MNIST (torchvision's files)",
                "torchvision.datasets.FashionMNIST",
                (_torchvision_idx("FashionMNIST", "FashionMNIST"),),
            )
        },
        "cifar10": {
            "python": Source(
                "CIFAR-10, python version (torchvision's file)",
                "torchvision.datasets.CIFAR10",
                (Part(CIFAR10.base_folder, (Archive(CIFAR10.filename, (CIFAR10.url,)),), "cifar10", "data_batch_1"),),
            ),
            "binary": Source(
                "CIFAR-10, binary version",
                "https://www.cs.toronto.edu/~kriz/cifar.html",
                (
                    Part(
                        "cifar-10-batches-bin",
                        (Archive("cifar-10-binary.tar.gz", (CIFAR_BINARY_URL,)),),
                        "cifar10",
                        "data_batch_1.bin",
                    ),
                ),
            ),
        },
    }


@cache
def checksums() -> dict[str, str | None]:
    """Archive key (:attr:`Archive.key`) -> the checksum its source publishes (``"md5:..."``), None where it
    publishes none. torchvision's MD5s are read from its dataset classes; the binary CIFAR-10's is the one on the
    CIFAR-10 page. group_DRO, WILDS (``compressed_size: None``, no hash) and spuco publish none."""
    from torchvision.datasets import CIFAR10, MNIST, FashionMNIST

    table: dict[str, str | None] = {
        "waterbird_complete95_forest2water2.tar.gz": None,
        "waterbirds_v1.0.tar.gz": None,
        "spuco_dogs.tar.gz": None,
        "spuco_birds.tar.gz": None,
        CIFAR10.filename: f"md5:{CIFAR10.tgz_md5}",
        "cifar-10-binary.tar.gz": "md5:c32a1d4ab5d03f1284b67883e8d87530",
    }
    for cls, folder in ((MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")):
        for name, md5 in cls.resources:
            table[f"{folder}/raw/{name}"] = f"md5:{md5}"
    return table


def downloadable() -> list[str]:
    """The data specs ``--download`` fetches."""
    return ["waterbirds", "spuco-dogs", "spuco-birds", "spuco-animals", "mnist", "fmnist", "cifar10"]


def choose(name: str, source: str | None) -> tuple[str, Source]:
    if name not in downloadable():
        raise ConfigError(
            f"--download fetches {', '.join(downloadable())} (NAME:root=DIR); '{name}' is not one of them"
        )
    table = sources()[name]
    if source is None:
        key = next(iter(table))
        return key, table[key]
    if source not in table:
        raise ConfigError(
            f"--source for {name} is one of {', '.join(table)} (default {next(iter(table))}), got '{source}'"
        )
    return source, table[source]


def base_folder(root: Path, src: Source) -> Path:
    """The folder the parts go under: ``root``, or its parent(s) when ``root`` already names a part's folder
    (``waterbirds:root=DIR/waterbird_complete95_forest2water2`` puts it at that path)."""
    for part in src.parts:
        want = Path(part.target).parts
        for k in range(len(want), 0, -1):
            if len(root.parts) > k and root.parts[-k:] == want[:k]:
                return root.parents[k - 1]
    return root


def _reads(check: str, folder: Path, progress: Progress) -> str | None:
    """None when the loader of ``check`` reads ``folder``, else the loader's reason."""
    try:
        REAL[check].builder(root=str(folder), progress=progress)
    except InputError as e:
        return str(e)
    return None


def _mismatch(path: Path, expected: str, found: str, mirror: str | None) -> InputError:
    alg = expected.split(":")[0]
    hint = (
        "; a mirror's repackaged copy is accepted with --no-verify"
        if mirror
        else "; run the same command again to fetch it anew"
    )
    return InputError(
        f"{path}: {alg} expected {expected.split(':', 1)[1]}, found {found.split(':', 1)[1]}; "
        f"the file was removed{hint}"
    )


def _archive(
    a: Archive, base: Path, *, mirror: str | None, verify: bool, force: bool, progress: Progress
) -> dict[str, Any]:
    """Fetch (unless there) and check one archive; returns what was done."""
    path = base / a.key
    urls = (mirror.rstrip("/") + "/" + a.name,) if mirror else a.urls
    if force:
        path.unlink(missing_ok=True)
    url, restarts = (None, 0)
    if not path.is_file():
        url, restarts = fetch(
            urls,
            path,
            progress=progress,
            by_hand="" if mirror else ", or give --mirror URL to fetch it from URL/" + a.name,
        )
    expected = checksums().get(a.key)
    progress(f"checking {a.name}", 0, 1, unit="file")
    found = checksum(path, expected.split(":")[0] if expected else "sha256")
    progress(f"checking {a.name}", 1, 1, unit="file")
    if expected is None:
        status = "none published"
    elif found == expected:
        status = "verified"
    elif verify:
        path.unlink(missing_ok=True)
        raise _mismatch(path, expected, found, mirror)
    else:
        status = "differs (accepted: --no-verify)"
    return {
        "file": str(path),
        "url": url,
        "bytes": path.stat().st_size,
        "restarts": restarts,
        "checksum": {"published": expected, "found": found, "status": status},
    }


def _skipped(name: str) -> bool:
    """macOS resource forks that a tar made on a Mac carries: never data."""
    parts = Path(name).parts
    return "__MACOSX" in parts or any(p.startswith("._") for p in parts)


def _untar(path: Path, into: Path, progress: Progress) -> None:
    """Unpack ``path`` into ``into`` member by member (streamed, any compression), through tarfile's ``data``
    filter; progress in compressed bytes read."""
    size = path.stat().st_size
    stage = f"unpacking {path.name}"
    progress(stage, 0, size, unit="B")
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for i, member in enumerate(tar):
                if not _skipped(member.name):
                    tar.extract(member, into, filter="data")
                if i % 64 == 0:
                    progress(stage, raw.tell(), size, unit="B")
    except tarfile.FilterError as e:
        raise InputError(f"{path} holds an unsafe member ({e}); nothing of it was used") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise InputError(f"{path} is not a complete archive ({type(e).__name__}: {e})") from None
    progress(stage, size, size, unit="B")


def _gunzip(path: Path, dest: Path) -> None:
    try:
        with gzip.open(path, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path} is not a complete gzip file ({type(e).__name__}: {e})") from None


def _content(tmp: Path, part: Part) -> Path:
    """The folder inside what an archive unpacked that holds ``part.marker``: its top folder, or the unpacked
    files themselves; a folder named as the target is preferred."""
    name = Path(part.target).name
    levels = [[tmp]]
    levels.append(sorted(p for p in tmp.iterdir() if p.is_dir()))
    levels.append(sorted(q for p in levels[1] for q in p.iterdir() if q.is_dir()))
    found = [d for level in levels for d in level if (d / part.marker).exists()]
    if not found:
        raise InputError(f"the archive for {part.target} holds no {part.marker} (looked in its top two folder levels)")
    return next((d for d in found if d.name == name), found[0])


def _install(part: Part, base: Path, progress: Progress) -> list[str]:
    """Unpack the part's (checked) archives beside the target, check the layout, rename into place; returns the
    archives removed."""
    target = base / part.target
    tmp = Path(tempfile.mkdtemp(prefix=f".lfp-unpack-{target.name}-", dir=base))
    old: Path | None = None
    try:
        if part.unpack == "gunzip":
            for a in part.archives:
                _gunzip(base / a.key, tmp / a.name.removesuffix(".gz"))
            content = tmp
        else:
            for a in part.archives:
                _untar(base / a.key, tmp, progress)
            content = _content(tmp, part)
        reason = _reads(part.check, content, progress)
        if reason is not None:
            raise InputError(
                f"what {', '.join(a.name for a in part.archives)} unpacked is not the layout lfp reads ({reason})"
            )
        if part.unpack == "gunzip":
            for f in sorted(content.iterdir()):
                os.replace(f, target / f.name)  # each file whole; its .gz beside it already was
            return []
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".lfp-old-{target.name}-", dir=base))
            os.replace(target, old / target.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(content, target)
        removed = []
        for a in part.archives:
            (base / a.key).unlink(missing_ok=True)
            removed.append(str(base / a.key))
        return removed
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)  # put the old folder back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _blocking(part: Part, base: Path) -> Path | None:
    """What installing ``part`` would replace: the target folder (tar), or a file it would overwrite (gunzip)."""
    target = base / part.target
    if part.unpack == "tar":
        return target if target.exists() else None
    return next(
        (target / a.name.removesuffix(".gz") for a in part.archives if (target / a.name.removesuffix(".gz")).exists()),
        None,
    )


def download(
    name: str,
    root: str | Path,
    *,
    source: str | None = None,
    mirror: str | None = None,
    verify: bool = True,
    force: bool = False,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Fetch dataset ``name`` (a data spec name) into ``root`` in the layout its loader reads; see the module
    docstring. Returns what was done: per part its folder, ``status`` (``present`` or ``installed``) and per
    archive the address used, bytes, restarts and the checksum (published, found, status)."""
    key, src = choose(name, source)
    if any(p.unpack == "tar" for p in src.parts) and not hasattr(tarfile, "data_filter"):
        raise InputError("unpacking needs Python >= 3.10.12 (tarfile's data filter, which refuses unsafe members)")
    root = Path(root).expanduser().resolve()
    base = base_folder(root, src)
    result = {
        "dataset": name,
        "source": key,
        "title": src.title,
        "home": src.home,
        "base": str(base),
        "mirror": mirror,
        "verify": verify,
    }
    if source is None and not force and root.is_dir() and _reads(name, root, progress) is None:
        # the spec already reads a copy (another release, or the user's own): nothing to fetch
        return {**result, "parts": [{"folder": str(root), "status": "present", "archives": [], "removed": []}]}
    with new_folders(base, *(base / a.folder for p in src.parts for a in p.archives)):
        return {**result, "parts": _parts(src, base, mirror=mirror, verify=verify, force=force, progress=progress)}


def _parts(
    src: Source, base: Path, *, mirror: str | None, verify: bool, force: bool, progress: Progress
) -> list[dict[str, Any]]:
    base.mkdir(parents=True, exist_ok=True)
    parts = []
    for part in src.parts:
        target = base / part.target
        reason = _reads(part.check, target, progress) if target.exists() else "not found"
        if reason is None and not force:
            parts.append({"folder": str(target), "status": "present", "archives": [], "removed": []})
            continue
        blocking = _blocking(part, base)
        if blocking is not None and not force:
            raise InputError(
                f"{blocking} exists but is not a copy lfp reads ({reason}); move it away, or give --force "
                f"to fetch the data again and replace it"
            )
        fetched = [
            _archive(a, base, mirror=mirror, verify=verify, force=force, progress=progress) for a in part.archives
        ]
        try:
            removed = _install(part, base, progress)
        except InputError:
            for a in part.archives:  # a bad archive is removed (torchvision's .gz files too: they read as the data)
                (base / a.key).unlink(missing_ok=True)
            raise
        parts.append({"folder": str(target), "status": "installed", "archives": fetched, "removed": removed})
    return parts


def next_spec(name: str, params: dict[str, Any], result: dict[str, Any]) -> str:
    """The ``--data`` spec that reads what :func:`download` installed: the spec as given; for WaterBirds the release
    folder itself (so that another copy beside it is never read instead), for SpuCo animals the folder holding
    both subsets."""
    params = dict(params)
    if name == "waterbirds":
        params["root"] = result["parts"][0]["folder"]
    elif len(result["parts"]) > 1:
        params["root"] = result["base"]
    return name + ":" + ",".join(f"{k}={v}" for k, v in params.items())
