"""What a file is, from its first bytes and (for a zip) its member names: for messages about a file given in the
wrong place, and to tell lfp's checkpoints from the model files lfp did not write
(:mod:`lfpcli.artifacts.foreign_model`) before anything is unpickled."""

from __future__ import annotations

import os
import zipfile

from lfpcli.artifacts.integrity import is_hdf5


def zip_names(path: str | os.PathLike) -> list[str] | None:
    """The member names of a zip archive; None when the file is not one (or cannot be read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def zip_root(names: list[str]) -> str:
    """The folder every member of a torch archive sits in (torch.save and torch.jit.save name it after the file)."""
    return names[0].split("/", 1)[0] if names and "/" in names[0] else ""


def archive_kind(path: str | os.PathLike) -> str | None:
    """``torchscript`` or ``torch-export`` for such an archive, from its member names alone; else None."""
    names = zip_names(path)
    if not names:
        return None
    root = zip_root(names)
    if f"{root}/archive_format" in names:
        return "torch-export"
    if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
        return "torchscript"
    return None


#: Which command reads each kind of lfp file, for messages about a file given in the wrong place.
READ_BY = {
    "perturbed-set": "a perturbed set is read by lfp retrain --in, lfp eval --data and lfp saliency --data",
    "dataset": "a dataset file is given as --data",
    "density": "a density file is given to lfp perturb --density",
    "eval": "an eval report is read by lfp info",
    "saliency-maps": "saliency maps are read by lfp info",
    "synth-results": "synth results are read by lfp synth plot and lfp info",
}


def describe_non_checkpoint(path: str | os.PathLike) -> str | None:
    """What a file that is plainly not a PyTorch checkpoint is (an lfp HDF5 or JSON artifact, some other HDF5, a
    text file), in words; None when it may be a checkpoint (a zip or legacy pickle) and torch must decide."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if is_hdf5(head):
        kind = None
        try:
            import h5py

            with h5py.File(path, "r") as h:
                kind = h.attrs.get("lfp_kind")
                kind = kind.decode() if isinstance(kind, bytes) else kind
        except Exception:
            pass
        if kind:
            return f"an lfp {kind} file (HDF5; {READ_BY.get(str(kind), 'see lfp info')})"
        return "an HDF5 file"
    if head.startswith(b"PK"):
        kind = archive_kind(path)
        if kind in ("torchscript", "torch-export"):
            what = "a TorchScript model" if kind == "torchscript" else "a torch.export program"
            return (
                f"{what} (a model file lfp did not write: lfp perturb, eval, density and saliency read it as --in with "
                f"--data and --normalize)"
            )
    if head.startswith(b"PK") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return None  # a zip (torch.save's format) or a pickle: torch.load with weights_only decides
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        try:
            import json

            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
            kind = obj.get("kind") if isinstance(obj, dict) else None
            if kind:
                return f"an lfp {kind} file (JSON; {READ_BY.get(str(kind), 'see lfp info')})"
            return "a JSON file"
        except (ValueError, UnicodeDecodeError, OSError):
            pass
    try:
        head.decode("utf-8")
        return "a text file" if head.strip() else "a file of blank text"
    except UnicodeDecodeError:
        return "a file in no format lfp knows (neither a zip archive, as torch.save writes, nor a pickle)"
