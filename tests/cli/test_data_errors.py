"""Bad real data: one ``error:`` line, exit 2, nothing on stdout, the folders unchanged (no cache file, no
checkpoint, no temporary file, no progress folder). The contract and its helpers come from ``test_errors.py``;
the roots are fabricated in each real layout by ``tests/fixtures_data.py``, inside the work folder, so the
snapshot proves that reading them changed nothing either."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import fixtures_data as F
import numpy as np
import pytest
from PIL import Image
from test_errors import err_art, err_env, err_expect_failure, err_ws  # noqa: F401  (fixtures used by name)


def _wb(ws, **kw) -> Path:
    root, _ = F.make_waterbirds(ws.inp / "wb", per_cell=1, **kw)
    return root


def _wb_csv(ws) -> Path:
    return ws.inp / "wb" / "waterbird_complete95_forest2water2" / "metadata.csv"


def _edit_csv(path: Path, edit: Callable[[list[list[str]]], list[list[str]]]) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


def _first_image(ws) -> Path:
    rows = list(csv.reader(_wb_csv(ws).read_text().splitlines()))
    return _wb_csv(ws).parent / rows[1][1]


def _drop_column(name):
    def edit(rows):
        k = rows[0].index(name)
        return [r[:k] + r[k + 1 :] for r in rows]

    return edit


def _set_cell(line, column, value):
    def edit(rows):
        rows[line][rows[0].index(column)] = value
        return rows

    return edit


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


# id -> (prepare(ws) -> spec, words the message must contain)
def _case_root_missing(ws):
    return "waterbirds:root=in/nowhere,size=32"


def _case_metadata_missing(ws):
    (ws.inp / "empty").mkdir()
    return "waterbirds:root=in/empty"


def _case_missing_column(ws):
    _wb(ws)
    _edit_csv(_wb_csv(ws), _drop_column("place"))
    return "waterbirds:root=in/wb,size=32"


def _case_label_outside(ws):
    _wb(ws)
    _edit_csv(_wb_csv(ws), _set_cell(3, "y", "2"))
    return "waterbirds:root=in/wb,size=32"


def _case_split_bogus(ws):
    _wb(ws)
    _edit_csv(_wb_csv(ws), _set_cell(2, "split", "7"))
    return "waterbirds:root=in/wb,size=32"


def _case_image_missing(ws):
    _wb(ws)
    _first_image(ws).unlink()
    return "waterbirds:root=in/wb,size=32"


def _case_image_garbage(ws):
    _wb(ws)
    _first_image(ws).write_bytes(np.random.default_rng(0).bytes(600))
    return "waterbirds:root=in/wb,size=32"


def _case_image_empty(ws):
    _wb(ws)
    _first_image(ws).write_bytes(b"")
    return "waterbirds:root=in/wb,size=32"


def _case_image_truncated(ws):
    _wb(ws)
    _truncate(_first_image(ws))
    return "waterbirds:root=in/wb,size=32"


def _case_image_cmyk(ws):
    _wb(ws)
    F.scene((30, 30), (10, 200, 10)).convert("CMYK").save(_first_image(ws))
    return "waterbirds:root=in/wb,size=32"


def _case_folder_rgba(ws):
    p, _ = F.make_folder_csv(ws.inp / "fo", per_cell=1)
    first = next(csv.reader(p.read_text().splitlines()[1:2]))[0]
    Image.new("RGBA", (20, 20), (1, 2, 3, 100)).save(p.parent / first)
    return "folder:csv=in/fo/metadata.csv,size=16"


def _case_folder_rgb_in_grey_data(ws):
    F.make_folder_csv(ws.inp / "fo", per_cell=1)
    return "folder:csv=in/fo/metadata.csv,size=16,mode=L"


def _case_folder_csv_missing(ws):
    return "folder:csv=in/nope.csv"


def _case_folder_label_outside(ws):
    p, _ = F.make_folder_csv(ws.inp / "fo", per_cell=1)
    (p.parent / "classes.txt").write_text("cat\ndog\n")
    _edit_csv(p, _set_cell(2, "label", "horse"))
    return "folder:csv=in/fo/metadata.csv,size=16"


def _case_folder_label_index_outside(ws):
    p, _ = F.make_folder_csv(ws.inp / "fo", per_cell=1)
    _edit_csv(p, _set_cell(2, "label", "5"))
    return "folder:csv=in/fo/metadata.csv,size=16,classes=cat;dog"


def _case_folder_missing_column(ws):
    p, _ = F.make_folder_csv(ws.inp / "fo", per_cell=1)
    _edit_csv(p, _drop_column("split"))
    return "folder:csv=in/fo/metadata.csv,size=16"


def _case_spuco_missing_subset(ws):
    (ws.inp / "sp").mkdir()
    return "spuco-dogs:root=in/sp,size=16"


def _case_spuco_missing_leaf(ws):
    root, _ = F.make_spuco(ws.inp / "sp", per_leaf=1)
    import shutil

    shutil.rmtree(root / "spuco_dogs" / "val" / "big_dogs" / "outdoor")
    return "spuco-dogs:root=in/sp,size=16"


def _case_mnist_missing_file(ws):
    root, _ = F.make_mnist(ws.inp / "mn", n_train=10, n_test=10)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    return "mnist:root=in/mn"


def _case_mnist_truncated(ws):
    root, _ = F.make_mnist(ws.inp / "mn", n_train=10, n_test=10)
    _truncate(root / "MNIST" / "raw" / "train-images-idx3-ubyte")
    return "mnist:root=in/mn"


def _case_cifar_evil_pickle(ws):
    F.make_evil_cifar(ws.inp / "ci", ws.root / "SENTINEL")
    return "cifar10:root=in/ci"


def _case_cifar_truncated_bin(ws):
    root, _ = F.make_cifar(ws.inp / "ci", "bin", per_batch=2)
    p = root / "cifar-10-batches-bin" / "data_batch_2.bin"
    p.write_bytes(p.read_bytes()[:-100])
    return "cifar10:root=in/ci"


CASES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "root missing": (_case_root_missing, ("nowhere", "does not exist")),
    "metadata.csv missing": (_case_metadata_missing, ("metadata.csv",)),
    "column missing": (_case_missing_column, ("metadata.csv", "'place'")),
    "label outside the classes": (_case_label_outside, ("metadata.csv", "line 4", "'2'")),
    "split code bogus": (_case_split_bogus, ("metadata.csv", "split", "'7'")),
    "image missing": (_case_image_missing, (".jpg", "does not exist")),
    "image not an image": (_case_image_garbage, (".jpg", "cannot be read")),
    "image empty": (_case_image_empty, (".jpg", "cannot be read")),
    "image truncated": (_case_image_truncated, (".jpg", "truncated")),
    "image of the wrong mode (CMYK)": (_case_image_cmyk, (".jpg", "mode CMYK")),
    "folder: image with alpha (RGBA)": (_case_folder_rgba, (".png", "mode RGBA")),
    "folder: RGB image in grey data": (_case_folder_rgb_in_grey_data, (".png", "mode RGB")),
    "folder: csv missing": (_case_folder_csv_missing, ("nope.csv", "does not exist")),
    "folder: label outside classes.txt": (_case_folder_label_outside, ("metadata.csv", "line 3", "'horse'")),
    "folder: label index outside classes=": (_case_folder_label_index_outside, ("metadata.csv", "line 3", "'5'")),
    "folder: column missing": (_case_folder_missing_column, ("metadata.csv", "'split'")),
    "spuco: subset folder missing": (_case_spuco_missing_subset, ("spuco_dogs",)),
    "spuco: class folder missing": (_case_spuco_missing_leaf, ("outdoor", "does not exist")),
    "mnist: file missing": (_case_mnist_missing_file, ("t10k-labels-idx1-ubyte", "does not exist")),
    "mnist: file truncated": (_case_mnist_truncated, ("train-images-idx3-ubyte", "truncated")),
    "cifar10: evil pickle": (_case_cifar_evil_pickle, ("data_batch_1", "refused")),
    "cifar10: binary batch truncated": (_case_cifar_truncated_bin, ("data_batch_2.bin", "truncated")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_real_data_lfp_data(err_ws, capsys, case):
    prepare, words = CASES[case]
    spec = prepare(err_ws)
    err_expect_failure(err_ws, ["data", spec, "--out", err_ws.out / "cache.h5"], capsys, expect=words)
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


# the same data given to the commands that train on it: nothing written either (no checkpoint, no OUT.resume/)
TRAIN_CASES = [
    "label outside the classes",
    "image not an image",
    "image truncated",
    "image of the wrong mode (CMYK)",
    "folder: image with alpha (RGBA)",
    "cifar10: evil pickle",
]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_bad_real_data_lfp_train(err_ws, capsys, case):
    prepare, words = CASES[case]
    spec = prepare(err_ws)
    argv = ["train", "--data", spec, "--arch", "mlp", "--epochs", "1", "--out", err_ws.out / "t.pt"]
    err_expect_failure(err_ws, argv, capsys, expect=words)
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


BAD_SPECS = {
    "no root": ("waterbirds", ("root=",)),
    "unknown parameter": ("waterbirds:root=in,bogus=1", ("bogus",)),
    "size not a number": ("waterbirds:root=in,size=big", ("size",)),
    "size too small": ("waterbirds:root=in,size=4", ("size",)),
    "resize below size": ("spuco-dogs:root=in,size=64,resize=32", ("resize",)),
    "spuco order bogus": ("spuco-dogs:root=in,order=reverse", ("order",)),
    "folder mode bogus": ("folder:csv=in/x.csv,mode=CMYK", ("mode",)),
    "root is a file": ("mnist:root=in/file.txt", ("file.txt", "not a folder")),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_real_data_spec(err_ws, capsys, case):
    spec, words = BAD_SPECS[case]
    (err_ws.inp / "file.txt").write_text("x")
    (err_ws.inp / "x.csv").write_text("path,label,split\n")
    err_expect_failure(err_ws, ["data", spec, "--out", err_ws.out / "cache.h5"], capsys, expect=words)
