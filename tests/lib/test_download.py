"""Ctrl-C during ``lfpcli.data.download.download`` (a KeyboardInterrupt raised from the progress callback at a
chosen stage, as the signal would arrive between two reads): nothing half-fetched or half-unpacked is left where
the loader reads, archives fetched whole are kept and used by the next run, and an old copy being replaced with
``force`` is put back. Served from a local HTTP server (``tests/httpserve.py``)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import fixtures_data as F
import pytest
from httpserve import refused_url, serve

from lfpcli.artifacts.dataspec import resolve
from lfpcli.data import download as D


def _spuco_dogs_archive(tmp: Path, per_leaf: int = 1) -> bytes:
    base, _ = F.make_spuco(tmp, ("spuco_dogs",), per_leaf=per_leaf)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(base / "spuco_dogs", arcname="spuco_dogs")
    return buf.getvalue()


def _interrupt_at(prefix: str, after: int = 0):
    """A progress callback that raises KeyboardInterrupt once stage ``prefix...`` has reached ``after`` units."""

    def progress(stage, done, total, **status):
        if stage.startswith(prefix) and done >= after and total:
            raise KeyboardInterrupt

    return progress


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".lfp-")]


def test_ctrl_c_mid_transfer_leaves_nothing(tmp_path):
    root = tmp_path / "data"
    with serve({"spuco_dogs.tar.gz": _spuco_dogs_archive(tmp_path / "fab")}) as srv, pytest.raises(KeyboardInterrupt):
        D.download("spuco-dogs", root, mirror=srv.url, progress=_interrupt_at("downloading", 1))
    assert not root.exists(), "the folders made for the download are gone too"


def test_ctrl_c_mid_unpack_keeps_the_archive_and_the_next_run_uses_it(tmp_path):
    root = tmp_path / "data"
    with serve({"spuco_dogs.tar.gz": _spuco_dogs_archive(tmp_path / "fab")}) as srv, pytest.raises(KeyboardInterrupt):
        D.download("spuco-dogs", root, mirror=srv.url, progress=_interrupt_at("unpacking"))
    assert sorted(p.name for p in root.iterdir()) == ["spuco_dogs.tar.gz"], "the whole archive, nothing unpacked"
    done = D.download("spuco-dogs", root, mirror=refused_url())  # no network needed now
    assert done["parts"][0]["archives"][0]["url"] is None
    assert resolve(f"spuco-dogs:root={root}").splits["train"].y.numel() == 4
    assert not _temporaries(root)


def test_ctrl_c_while_replacing_a_copy_puts_the_old_one_back(tmp_path, monkeypatch):
    """With ``force`` the old folder is moved aside, then the new one moved in: a Ctrl-C between the two renames
    puts the old one back."""
    root = tmp_path / "data"
    with serve({"spuco_dogs.tar.gz": _spuco_dogs_archive(tmp_path / "fab")}) as srv:
        D.download("spuco-dogs", root, mirror=srv.url)
        srv.files["spuco_dogs.tar.gz"] = _spuco_dogs_archive(tmp_path / "fab2", per_leaf=2)
        rename = D.os.replace

        def interrupted(src, dst):
            if ".lfp-unpack" in str(src) and Path(dst) == root / "spuco_dogs":
                raise KeyboardInterrupt
            rename(src, dst)

        monkeypatch.setattr(D.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            D.download("spuco-dogs", root, mirror=srv.url, force=True)
        monkeypatch.undo()
    assert resolve(f"spuco-dogs:root={root}").splits["train"].y.numel() == 4, "the old copy, whole"
    assert not _temporaries(root)


def test_the_folder_a_root_names_is_where_the_data_goes(tmp_path):
    """``waterbirds:root=DIR/waterbird_complete95_forest2water2`` (as README's examples write it) installs at that
    path, not one level deeper; likewise torchvision's ``MNIST/raw``."""
    src = D.sources()
    assert D.base_folder(tmp_path / "waterbird_complete95_forest2water2", src["waterbirds"]["group_DRO"]) == tmp_path
    assert D.base_folder(tmp_path / "MNIST" / "raw", src["mnist"]["torchvision"]) == tmp_path
    assert D.base_folder(tmp_path / "MNIST", src["mnist"]["torchvision"]) == tmp_path
    assert D.base_folder(tmp_path / "data", src["mnist"]["torchvision"]) == tmp_path / "data"


def test_the_published_addresses_and_checksums_are_torchvisions_own():
    """MNIST/Fashion-MNIST/CIFAR-10 come from the installed torchvision's tables, so they follow its updates."""
    from torchvision.datasets import CIFAR10, MNIST

    part = D.sources()["mnist"]["torchvision"].parts[0]
    for a, (name, md5) in zip(part.archives, MNIST.resources):
        assert a.name == name and a.urls == tuple(m + name for m in MNIST.mirrors)
        assert D.checksums()[a.key] == f"md5:{md5}"
    assert D.checksums()[CIFAR10.filename] == f"md5:{CIFAR10.tgz_md5}"
    # sources that publish no checksum say so rather than inventing one
    assert D.checksums()["waterbird_complete95_forest2water2.tar.gz"] is None
