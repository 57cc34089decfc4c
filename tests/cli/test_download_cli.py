"""``lfp data SPEC --download``, offline: a local HTTP server (``tests/httpserve.py``, 127.0.0.1) serves tiny
fabricated archives in each source's real layout (group_DRO's and WILDS' WaterBirds, spuco's two tarballs,
torchvision's MNIST/Fashion-MNIST ``.gz`` files and CIFAR-10 tarball, the binary CIFAR-10), always through
``--mirror`` (or ``$LFP_MIRROR``): nothing here reaches the internet.

The fabricated archives cannot match the published MD5s; the verified path is exercised by pointing the checksum
registry (:func:`lfpcli.data.download.checksums`) at the fabricated file, the mismatch path by leaving it alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import fixtures_data as F
import pytest
from clirun import lfp
from httpserve import refused_url, serve
from test_errors import err_assert_one_line, err_snapshot

from lfpcli.data import download as D


def _tar_gz(folder: Path, top: str | None, extra: dict[str, bytes] | None = None) -> bytes:
    """``folder``'s content as a .tar.gz, under the top folder ``top`` (None: at the top level), plus ``extra``
    members (name -> bytes) added as they are named."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if top is not None:
            tar.add(folder, arcname=top)
        else:
            for p in sorted(folder.iterdir()):
                tar.add(p, arcname=p.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def _idx_files(tmp: Path, sub: str) -> dict[str, bytes]:
    """torchvision's four ``.gz`` files, as its mirrors serve them (one URL per file name)."""
    F.make_mnist(tmp / "src", sub=sub, gz=True)
    return {p.name: p.read_bytes() for p in sorted((tmp / "src" / sub / "raw").iterdir())}


def _sources(tmp: Path) -> dict[str, tuple[dict[str, bytes], dict[str, int], list[str]]]:
    """case -> (files the mirror serves, the split sizes lfp data must then report, extra lfp data options)."""
    wb_src, _ = F.make_waterbirds(tmp / "wb", per_cell=1)
    wilds_src, _ = F.make_waterbirds(tmp / "wilds", per_cell=1, release="WILDS", nested=False)
    dogs, _ = F.make_spuco(tmp / "dogs", ("spuco_dogs",), per_leaf=1)
    birds, _ = F.make_spuco(tmp / "birds", ("spuco_birds",), per_leaf=1)
    cpy, _ = F.make_cifar(tmp / "cpy", fmt="py", per_batch=2)
    cbin, _ = F.make_cifar(tmp / "cbin", fmt="bin", per_batch=2)
    spuco = {"train": 4, "val": 4, "test": 4}
    return {
        # group_DRO's tarball holds its folder; WILDS' holds the files themselves (WILDS unpacks it into
        # waterbirds_v1.0/ and reads metadata.csv there)
        "waterbirds": (
            {
                "waterbird_complete95_forest2water2.tar.gz": _tar_gz(
                    wb_src / "waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2"
                )
            },
            {"train": 4, "val": 4, "test": 4},
            [],
        ),
        "waterbirds-wilds": (
            {"waterbirds_v1.0.tar.gz": _tar_gz(wilds_src, None)},
            {"train": 4, "val": 4, "test": 4},
            ["--source", "wilds"],
        ),
        "spuco-dogs": ({"spuco_dogs.tar.gz": _tar_gz(dogs / "spuco_dogs", "spuco_dogs")}, spuco, []),
        "spuco-birds": ({"spuco_birds.tar.gz": _tar_gz(birds / "spuco_birds", "spuco_birds")}, spuco, []),
        "spuco-animals": (
            {
                "spuco_dogs.tar.gz": _tar_gz(dogs / "spuco_dogs", "spuco_dogs"),
                "spuco_birds.tar.gz": _tar_gz(birds / "spuco_birds", "spuco_birds"),
            },
            {k: 2 * v for k, v in spuco.items()},
            [],
        ),
        "mnist": (_idx_files(tmp / "m", "MNIST"), {"train": 20, "test": 10}, []),
        "fmnist": (_idx_files(tmp / "f", "FashionMNIST"), {"train": 20, "test": 10}, []),
        "cifar10": (
            {"cifar-10-python.tar.gz": _tar_gz(cpy / "cifar-10-batches-py", "cifar-10-batches-py")},
            {"train": 10, "test": 2},
            [],
        ),
        "cifar10-binary": (
            {"cifar-10-binary.tar.gz": _tar_gz(cbin / "cifar-10-batches-bin", "cifar-10-batches-bin")},
            {"train": 10, "test": 2},
            ["--source", "binary"],
        ),
    }


def _trust(monkeypatch, files: dict[str, bytes], folder: str = "") -> None:
    """Point the checksum registry at the fabricated files (where the source publishes one): the verified path."""
    for name, data in files.items():
        key = f"{folder}/{name}" if folder else name
        if D.checksums().get(key) is not None:
            monkeypatch.setitem(D.checksums(), key, _md5(data))


def _run_json(argv, capsys) -> dict:
    code, out, err = lfp(*argv, "--json", capsys=capsys)
    assert code == 0, f"exit {code}\nargv {argv}\nstderr {err}"
    return json.loads(out)


def _leftovers(root: Path) -> list[Path]:
    """Temporary files and folders a download must never leave: ``*.part``, ``.lfp-*``."""
    return (
        [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".lfp-")] if root.exists() else []
    )


@pytest.mark.parametrize(
    "case",
    [
        "waterbirds",
        "waterbirds-wilds",
        "spuco-dogs",
        "spuco-birds",
        "spuco-animals",
        "mnist",
        "fmnist",
        "cifar10",
        "cifar10-binary",
    ],
)
def test_download_installs_each_source_and_lfp_data_reads_it(case, tmp_path, capsys, monkeypatch):
    files, sizes, opts = _sources(tmp_path / "fab")[case]
    name = case.removesuffix("-wilds").removesuffix("-binary")
    folder = {"mnist": "MNIST/raw", "fmnist": "FashionMNIST/raw"}.get(name, "")
    _trust(monkeypatch, files, folder)
    root = tmp_path / "data"
    with serve(files) as srv:
        s = _run_json(["data", f"{name}:root={root}", "--download", "--mirror", srv.url, *opts], capsys)
        assert sorted(srv.requests) == sorted(files), "each archive is fetched once, by its own name"
        assert s["sizes"] == sizes
        d = s["download"]
        assert [p["status"] for p in d["parts"]] == ["installed"] * len(d["parts"])
        statuses = {a["checksum"]["status"] for p in d["parts"] for a in p["archives"]}
        assert statuses <= {"verified", "none published"}
        if folder or name == "cifar10":
            assert statuses == {"verified"}  # torchvision's and CIFAR-10's files carry a published MD5
        for p in d["parts"]:
            for a in p["archives"]:
                assert Path(a["file"]).exists() == a["file"].endswith("-ubyte.gz"), (
                    "tarballs go, torchvision's .gz stay"
                )
        assert not _leftovers(root)
        # the spec printed next reads the same data
        again = _run_json(["data", s["next_data"]], capsys)
        assert again["sizes"] == sizes
        # a second --download finds it and does nothing
        n = len(srv.requests)
        before = err_snapshot(root)
        second = _run_json(["data", f"{name}:root={root}", "--download", "--mirror", srv.url, *opts], capsys)
        assert len(srv.requests) == n
        assert [p["status"] for p in second["download"]["parts"]] == ["present"] * len(second["download"]["parts"])
        assert err_snapshot(root) == before


def test_mnist_from_a_mirror_with_no_verify_then_train(tmp_path, capsys):
    """The issue's "done when": a mirror's copy whose MD5 differs is accepted with --no-verify (and the output says
    so); lfp train then reads the root."""
    files = _idx_files(tmp_path / "fab", "MNIST")
    root = tmp_path / "data"
    with serve(files) as srv:
        code, out, err = lfp(
            "data", f"mnist:root={root}", "--download", "--mirror", srv.url, "--no-verify", capsys=capsys
        )
    assert code == 0, err
    assert out.count("accepted with --no-verify") == 4
    assert f"next: --data mnist:root={root}" in out
    for f in files:
        assert (root / "MNIST" / "raw" / f.removesuffix(".gz")).is_file()
    code, out, err = lfp(
        "train",
        "--data",
        f"mnist:root={root}",
        "--arch",
        "small-cnn",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        tmp_path / "m.pt",
        capsys=capsys,
    )
    assert code == 0, err


def test_lfp_mirror_environment_variable_is_the_default_mirror(tmp_path, capsys, monkeypatch):
    files = _idx_files(tmp_path / "fab", "FashionMNIST")
    with serve(files) as srv:
        monkeypatch.setenv("LFP_MIRROR", srv.url + "/")
        s = _run_json(["data", f"fmnist:root={tmp_path / 'data'}", "--download", "--no-verify"], capsys)
    assert sorted(srv.requests) == sorted(files)
    assert {a["checksum"]["status"] for a in s["download"]["parts"][0]["archives"]} == {
        "differs (accepted: --no-verify)"
    }


def test_a_checksum_mismatch_is_refused_and_the_file_removed(tmp_path, capsys):
    """Without --no-verify a file whose MD5 is not the published one: one line naming it, expected and found,
    exit 2, the file removed, no folder left behind."""
    files = _idx_files(tmp_path / "fab", "MNIST")
    root = tmp_path / "data"
    with serve(files) as srv:
        code, out, err = lfp("data", f"mnist:root={root}", "--download", "--mirror", srv.url, capsys=capsys)
    line = err_assert_one_line(
        code, out, err, expect=("train-images-idx3-ubyte.gz", "md5 expected", "found", "removed", "--no-verify")
    )
    published = D.checksums()["MNIST/raw/train-images-idx3-ubyte.gz"].split(":")[1]
    assert published in line and hashlib.md5(files["train-images-idx3-ubyte.gz"]).hexdigest() in line
    assert not root.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no-metadata", "unsafe-member"])
def test_a_bad_archive_is_refused_with_nothing_left(damage, tmp_path, capsys):
    """An archive that is not complete, not the layout, or holds a path out of its folder: one line, exit 2, the
    archive removed, nothing unpacked anywhere (no target folder, no temporary folder, no file outside)."""
    wb, _ = F.make_waterbirds(tmp_path / "fab", per_cell=1)
    good = _tar_gz(wb / "waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2")
    bad = {
        "garbage": b"this is not a tarball" * 50,
        "truncated": good[: len(good) // 2],
        "no-metadata": _tar_gz(
            tmp_path / "fab" / "waterbird_complete95_forest2water2" / "001.Black_footed_Albatross",
            "waterbird_complete95_forest2water2",
        ),
        "unsafe-member": _tar_gz(
            wb / "waterbird_complete95_forest2water2",
            "waterbird_complete95_forest2water2",
            extra={"../../escaped.txt": b"outside"},
        ),
    }[damage]
    root = tmp_path / "work" / "data"
    root.mkdir(parents=True)
    before = err_snapshot(tmp_path / "work")
    with serve({"waterbird_complete95_forest2water2.tar.gz": bad}) as srv:
        code, out, err = lfp("data", f"waterbirds:root={root}", "--download", "--mirror", srv.url, capsys=capsys)
    expect = {
        "garbage": "not a complete archive",
        "truncated": "not a complete archive",
        "no-metadata": "metadata.csv",
        "unsafe-member": "unsafe member",
    }[damage]
    err_assert_one_line(code, out, err, expect=(expect,))
    assert err_snapshot(tmp_path / "work") == before
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_transfer_cut_short_restarts_and_completes(tmp_path, capsys):
    wb, _ = F.make_waterbirds(tmp_path / "fab", per_cell=1)
    files = {
        "waterbird_complete95_forest2water2.tar.gz": _tar_gz(
            wb / "waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2"
        )
    }
    with serve(files) as srv:
        srv.cut["waterbird_complete95_forest2water2.tar.gz"] = (100, 1)  # the first transfer drops after 100 bytes
        s = _run_json(["data", f"waterbirds:root={tmp_path / 'data'}", "--download", "--mirror", srv.url], capsys)
    assert len(srv.requests) == 2
    assert s["download"]["parts"][0]["archives"][0]["restarts"] == 1
    assert s["sizes"] == {"train": 4, "val": 4, "test": 4}


def test_a_transfer_that_keeps_dropping_leaves_nothing(tmp_path, capsys):
    wb, _ = F.make_waterbirds(tmp_path / "fab", per_cell=1)
    files = {
        "waterbird_complete95_forest2water2.tar.gz": _tar_gz(
            wb / "waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2"
        )
    }
    root = tmp_path / "data"
    root.mkdir()
    with serve(files) as srv:
        srv.cut["waterbird_complete95_forest2water2.tar.gz"] = (100, 99)
        code, out, err = lfp("data", f"waterbirds:root={root}", "--download", "--mirror", srv.url, capsys=capsys)
    err_assert_one_line(code, out, err, expect=("cut short", srv.url, "3 tries"))
    assert list(root.iterdir()) == [], "no partial file, no folder"


def test_a_refused_connection_is_one_line_naming_the_address_and_where_to_put_the_file(tmp_path, capsys):
    url = refused_url()
    root = tmp_path / "data"
    code, out, err = lfp("data", f"cifar10:root={root}", "--download", "--mirror", url, capsys=capsys)
    err_assert_one_line(
        code,
        out,
        err,
        expect=(f"{url}/cifar-10-python.tar.gz", "refused", f"put it at {root / 'cifar-10-python.tar.gz'}"),
    )
    assert not root.exists(), "no folder is made for a download that did not happen"


def test_an_archive_put_there_by_hand_is_used_without_network(tmp_path, capsys, monkeypatch):
    """The offline route the error names: the archive at its place, then the same command (the mirror refuses)."""
    cpy, _ = F.make_cifar(tmp_path / "fab", fmt="py", per_batch=2)
    data = _tar_gz(cpy / "cifar-10-batches-py", "cifar-10-batches-py")
    monkeypatch.setitem(D.checksums(), "cifar-10-python.tar.gz", _md5(data))
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(data)
    s = _run_json(["data", f"cifar10:root={root}", "--download", "--mirror", refused_url()], capsys)
    a = s["download"]["parts"][0]["archives"][0]
    assert a["url"] is None and a["checksum"]["status"] == "verified"
    assert s["sizes"] == {"train": 10, "test": 2}


def test_an_existing_copy_that_does_not_read_is_kept_unless_force(tmp_path, capsys):
    dogs, _ = F.make_spuco(tmp_path / "fab", ("spuco_dogs",), per_leaf=1)
    files = {"spuco_dogs.tar.gz": _tar_gz(dogs / "spuco_dogs", "spuco_dogs")}
    root = tmp_path / "data"
    (root / "spuco_dogs" / "train").mkdir(parents=True)  # someone's half copy
    with serve(files) as srv:
        before = err_snapshot(root)
        code, out, err = lfp("data", f"spuco-dogs:root={root}", "--download", "--mirror", srv.url, capsys=capsys)
        err_assert_one_line(code, out, err, expect=("spuco_dogs", "--force"))
        assert srv.requests == [] and err_snapshot(root) == before, "refused before fetching anything"
        s = _run_json(["data", f"spuco-dogs:root={root}", "--download", "--mirror", srv.url, "--force"], capsys)
        assert s["sizes"] == {"train": 4, "val": 4, "test": 4}
        # --force fetches again even when the copy reads
        s = _run_json(["data", f"spuco-dogs:root={root}", "--download", "--mirror", srv.url, "--force"], capsys)
        assert srv.requests == ["spuco_dogs.tar.gz"] * 2 and s["download"]["parts"][0]["status"] == "installed"
    assert not _leftovers(root)


def test_download_flags_need_download_and_a_paper_dataset(tmp_path, capsys):
    code, out, err = lfp("data", f"mnist:root={tmp_path}", "--mirror", "http://127.0.0.1:9/", capsys=capsys)
    err_assert_one_line(code, out, err, expect=("--mirror", "--download"))
    code, out, err = lfp("data", "spurious-digits", "--download", capsys=capsys)
    err_assert_one_line(code, out, err, expect=("built in", "nothing to download", "mnist"))
    code, out, err = lfp("data", f"waterbirds:root={tmp_path}", "--download", "--source", "kaggle", capsys=capsys)
    err_assert_one_line(code, out, err, expect=("group_DRO", "wilds"))


def test_the_progress_bar_shows_bytes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LFP_PROGRESS", "1")
    files = _idx_files(tmp_path / "fab", "MNIST")
    with serve(files) as srv:
        code, _, err = lfp(
            "data", f"mnist:root={tmp_path / 'd'}", "--download", "--mirror", srv.url, "--no-verify", capsys=capsys
        )
    assert code == 0, err
    assert "downloading train-images-idx3-ubyte.gz" in err
    n = len(files["train-images-idx3-ubyte.gz"])
    assert f"{n}/{n}" in err and "B/s" in err, "size and rate"


def test_macos_resource_forks_in_a_tarball_are_skipped(tmp_path, capsys):
    """A tarball made on a Mac carries ``._NAME`` files (and ``__MACOSX/``) beside the images: junk that would stop
    the loader (``._0.jpg`` is no JPEG), so it is never unpacked."""
    dogs, _ = F.make_spuco(tmp_path / "fab", ("spuco_dogs",), per_leaf=1)
    junk = {
        "spuco_dogs/train/small_dogs/indoor/._0.jpg": b"\x00\x05\x16\x07 AppleDouble",
        "__MACOSX/spuco_dogs/._train": b"\x00\x05\x16\x07",
    }
    files = {"spuco_dogs.tar.gz": _tar_gz(dogs / "spuco_dogs", "spuco_dogs", extra=junk)}
    root = tmp_path / "data"
    with serve(files) as srv:
        s = _run_json(["data", f"spuco-dogs:root={root}", "--download", "--mirror", srv.url], capsys)
    assert s["sizes"] == {"train": 4, "val": 4, "test": 4}
    assert not list(root.rglob("._*")) and not (root / "__MACOSX").exists()


def test_an_existing_out_file_is_refused_before_anything_is_fetched(tmp_path, capsys):
    files = _idx_files(tmp_path / "fab", "MNIST")
    (tmp_path / "mnist.h5").write_bytes(b"mine")
    with serve(files) as srv:
        code, out, err = lfp(
            "data",
            f"mnist:root={tmp_path / 'data'}",
            "--download",
            "--mirror",
            srv.url,
            "--no-verify",
            "--out",
            tmp_path / "mnist.h5",
            capsys=capsys,
        )
        err_assert_one_line(code, out, err, expect=("mnist.h5", "--force"))
        assert srv.requests == [] and not (tmp_path / "data").exists()
        s = _run_json(
            [
                "data",
                f"mnist:root={tmp_path / 'data'}",
                "--download",
                "--mirror",
                srv.url,
                "--no-verify",
                "--out",
                tmp_path / "fresh.h5",
            ],
            capsys,
        )
    assert s["out"] == str(tmp_path / "fresh.h5") and (tmp_path / "fresh.h5").is_file()


def test_ctrl_c_says_what_was_kept(tmp_path, capsys, monkeypatch):
    import lfpcli.commands.data as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "download", interrupted)
    code, out, err = lfp("data", f"mnist:root={tmp_path}", "--download", capsys=capsys)
    assert code == 130 and out == ""
    assert err.startswith("error: interrupted; nothing half-fetched") and "same command goes on" in err
