"""``lfp verify``: check a chain of artifacts found on disk, file by file, down to its first ancestors.

Every lfp artifact records its parents by path and sha256. ``verify`` reads each given file's record, finds
each parent (the file of its name beside the artifact, else at its recorded absolute path or recorded path; when
both exist, both are checked: :func:`lfpcli.artifacts.provenance.parent_status`), recomputes its sha256 and
compares; a parent that is itself an lfp artifact and unchanged is checked the same way, recursively.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfpcli.artifacts import parent_status, read_record, sha256_file
from lfpcli.errors import InputError, LfpError

#: Parent roles whose files are not lfp artifacts (they carry no record of their own): checked by hash only.
#: ``foreign-model``: a user's own model file (TorchScript, torch.export, state dict) an artifact was made with.
LEAF_KINDS = ("weights", "mask", "foreign-model")


def _node(path: Path, visiting: set[str]) -> dict[str, Any]:
    """The verification tree below one artifact that is present: its kind, sha256 and each parent's status."""
    record, _ = read_record(path)
    node: dict[str, Any] = {"path": str(path), "kind": record.get("kind"), "sha256": sha256_file(path), "parents": []}
    key = str(path.resolve())
    if key in visiting:  # a record that names itself as an ancestor: report, never loop
        node["cycle"] = True
        return node
    visiting = visiting | {key}
    for p in parent_status(record, path):
        entry: dict[str, Any] = {
            "role": p.get("role"),
            "path": p.get("path"),
            "abspath": p.get("abspath"),
            "kind": p.get("kind"),
            "sha256_recorded": p.get("sha256"),
            "found": p.get("found"),
            "status": p["status"],
            "sha256_now": p.get("sha256_now"),
            "parents": [],
        }
        if p.get("elsewhere"):
            entry["elsewhere"] = p["elsewhere"]
        if p["status"] == "ok" and p.get("kind") not in LEAF_KINDS:
            try:
                sub = _node(Path(p["found"]), visiting)
                entry["parents"] = sub["parents"]
                entry["cycle"] = sub.get("cycle", False)
            except LfpError as e:
                # the file has the recorded hash, so it is what was used, but its own record cannot be read
                entry.update(status="unreadable", error=str(e))
        node["parents"].append(entry)
    return node


def _walk(node: dict[str, Any]):
    for p in node["parents"]:
        yield p
        yield from _walk(p)


def verify(files: list[str | Path], *, argv: list[str] | None = None) -> dict[str, Any]:
    """Verify each of ``files`` and its recorded ancestors.

    Returns ``{"ok": bool, "files": [tree, ...], "counts": {"ok", "changed", "missing", "unreadable"}}`` where a
    tree is ``{"path", "kind", "sha256", "parents": [{"role", "path", "status", "found" (the file checked),
    "sha256_recorded", "sha256_now", "elsewhere" (when present: the other file checked), "parents": [...]}, ...]}``. ``ok`` holds only when every ancestor of every file is present and
    unchanged. A given file that is missing or not an lfp artifact is an input error.
    """
    del argv
    if not files:
        raise InputError("give at least one lfp file to verify")
    trees = []
    for f in files:
        p = Path(f)
        if not p.exists():
            raise InputError(f"file {p} does not exist")
        trees.append(_node(p, set()))
    counts = {"ok": 0, "changed": 0, "missing": 0, "unreadable": 0}
    for t in trees:
        for entry in _walk(t):
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    ok = counts["changed"] == counts["missing"] == counts["unreadable"] == 0 and not any(
        e.get("cycle") for t in trees for e in _walk(t)
    )
    return {"ok": ok, "files": trees, "counts": counts}


__all__ = ["verify"]
