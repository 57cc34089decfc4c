"""``lfp verify``: a chain of artifacts checked down to its first ancestors, against sha256 computed here."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from clirun import lfp


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def chain(tmp_path):
    """model.pt -> pgd.h5 -> retrained.pt -> eval.json, in one folder."""
    from lfpcli.commands import evaluate, perturb, retrain, train

    d = tmp_path / "chain"
    d.mkdir()
    train(d / "model.pt", data="digits", arch="mlp", epochs=1, seed=0, device="cpu")
    perturb(
        d / "pgd.h5", model=d / "model.pt", method="pgd-l2", limit=16, params={"eps": 1.0, "steps": 2}, device="cpu"
    )
    retrain(d / "retrained.pt", perturbed=d / "pgd.h5", epochs=1, device="cpu")
    evaluate(model=d / "retrained.pt", splits=("test",), device="cpu", out=d / "eval.json")
    return d


def _flat(tree):
    for p in tree["parents"]:
        yield p
        yield from _flat(p)


def test_an_intact_chain_holds_with_every_hash_as_hashlib_computes_it(chain, capsys):
    code, out, err = lfp("verify", chain / "eval.json", "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["ok"] and r["counts"] == {"ok": 3, "changed": 0, "missing": 0, "unreadable": 0}
    (tree,) = r["files"]
    assert tree["sha256"] == sha(chain / "eval.json")
    names = [Path(p["path"]).name for p in _flat(tree)]
    assert names == ["retrained.pt", "pgd.h5", "model.pt"]
    for p in _flat(tree):
        assert p["status"] == "ok" and p["sha256_now"] == p["sha256_recorded"] == sha(chain / Path(p["path"]).name)


def test_an_edited_ancestor_is_changed_and_the_exit_code_says_so(chain, capsys):
    from lfpcli.commands import train

    train(chain / "model.pt", data="digits", arch="mlp", epochs=1, seed=5, device="cpu", force=True)
    code, out, _ = lfp("verify", chain / "eval.json", "--json", capsys=capsys)
    assert code == 1
    r = json.loads(out)
    bad = [p for p in _flat(r["files"][0]) if p["status"] != "ok"]
    assert [(Path(p["path"]).name, p["status"]) for p in bad] == [("model.pt", "changed")]
    assert bad[0]["sha256_now"] == sha(chain / "model.pt") != bad[0]["sha256_recorded"]
    code, out, _ = lfp("verify", chain / "eval.json", capsys=capsys)
    assert code == 1 and "CHANGED" in out and "does not hold" in out


def test_a_removed_ancestor_is_missing(chain, capsys):
    (chain / "pgd.h5").unlink()
    code, out, _ = lfp("verify", chain / "retrained.pt", chain / "eval.json", "--json", capsys=capsys)
    assert code == 1
    r = json.loads(out)
    assert r["counts"]["missing"] == 2 and not r["ok"]  # once below each of the two files given


def test_a_chain_moved_as_a_whole_still_holds(chain, tmp_path, capsys):
    moved = tmp_path / "elsewhere"
    shutil.copytree(chain, moved)
    shutil.rmtree(chain)
    code, out, err = lfp("verify", moved / "eval.json", capsys=capsys)
    assert code == 0, out + err


def test_a_copied_folder_is_checked_in_the_copy_and_says_which_files_it_read(chain, tmp_path, capsys):
    """A copy keeps the original's absolute paths in its records: verify reads the file of the same name beside each
    artifact (the copy's own), says which file it read, and what the recorded path holds."""
    from lfpcli.commands import train

    copy = tmp_path / "copy"
    shutil.copytree(chain, copy)
    code, out, err = lfp("verify", copy / "pgd.h5", capsys=capsys)
    assert code == 0, out + err
    assert f"ok model: {chain / 'model.pt'} (checked {copy / 'model.pt'};" in out  # the copy's, not the original's
    train(
        copy / "model.pt", data="digits", arch="mlp", epochs=1, seed=5, device="cpu", force=True
    )  # replaced in the copy
    code, out, _ = lfp("verify", copy / "pgd.h5", "--json", capsys=capsys)
    assert code == 1
    (p,) = json.loads(out)["files"][0]["parents"]
    assert (p["status"], p["found"], p["sha256_now"]) == ("changed", str(copy / "model.pt"), sha(copy / "model.pt"))
    assert p["elsewhere"] == {
        "path": str((chain / "model.pt").resolve()),
        "status": "ok",
        "sha256_now": sha(chain / "model.pt"),
    }
    code, out, _ = lfp("verify", copy / "pgd.h5", capsys=capsys)
    flat = " ".join(out.split())
    assert code == 1 and f"CHANGED model: {chain / 'model.pt'} (checked {copy / 'model.pt'};" in flat
    assert f"the recorded {(chain / 'model.pt').resolve()} is unchanged" in flat


def test_a_file_that_is_not_there_or_not_lfp_is_bad_input(tmp_path, capsys):
    code, out, err = lfp("verify", tmp_path / "nope.h5", capsys=capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "notes.txt").write_text("hello")
    code, out, err = lfp("verify", tmp_path / "notes.txt", capsys=capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
