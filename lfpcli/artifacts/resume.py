"""Progress kept beside an output while a long command runs, so that a killed run can be finished with ``--resume``.

The progress of ``OUT`` lives in the folder ``OUT.resume/`` (never under the final name):

- ``run.json``: the fingerprint of the command that started it (:func:`run_fingerprint`: its resolved parameters,
  the sha256 of every input file, lfp's version, the device and CPU threads), so that a ``--resume`` of another
  command, or one that would compute the remaining units differently, is refused;
- ``<unit>.pt``: one file per finished unit of work (a batch of a perturbed set, the training state after an
  epoch), a dict of plain tensors and JSON values written under a temporary name and renamed when complete, so
  a kill at any moment leaves only whole units.

When the command completes, its output appears (atomically, as always) and the folder is removed; a command that
fails before finishing any unit removes it too. A run killed with SIGKILL also leaves the output it was writing under
a hidden temporary name (``.OUT.XXXXXXXX.part``, :func:`lfpcli.artifacts.files.partial_files`): the run that takes
the folder up (``--resume``) or discards it (``--force``) removes those files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from lfpcli import version
from lfpcli.artifacts.files import remove_partial_files
from lfpcli.artifacts.provenance import jsonable
from lfpcli.errors import ArtifactError, InputError

SUFFIX = ".resume"


def run_fingerprint(
    command: str, params: Mapping[str, Any], parents: list[Mapping[str, Any]], device: torch.device
) -> dict[str, Any]:
    """What a ``--resume`` must share with the run that kept the progress: the command, its resolved parameters
    (but ``device`` as the user gave it: ``auto`` and ``cpu`` may name the same device), the sha256 of each input
    file by role, lfp's version, the type of the device used and, on a CPU, torch's thread count (the last bits
    of CPU results depend on it, so units computed with another would not be those of one uninterrupted run)."""
    return {
        "command": command,
        "params": {k: v for k, v in params.items() if k != "device"},
        "inputs": {p["role"]: p["sha256"] for p in parents},
        "lfpcli": version.__version__,
        "device": device.type,
        "cpu_threads": torch.get_num_threads() if device.type == "cpu" else None,
    }


def resume_dir(out: str | os.PathLike) -> Path:
    """Where the progress of ``out`` is kept."""
    p = Path(out)
    return p.with_name(p.name + SUFFIX)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}." if prefix or k else "")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {json.dumps(old)[:60]} then, {json.dumps(new)[:60]} now"]
    return []


class Sidecar:
    """The progress folder of one run: created (or checked, with ``resume``) on construction."""

    def __init__(self, out: str | os.PathLike, fingerprint: Mapping[str, Any], *, resume: bool, force: bool):
        self.dir = resume_dir(out)
        self.fingerprint = jsonable(dict(fingerprint))
        state = self.dir / "run.json"
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(f"{self.dir} exists and is not a folder; move it away (lfp keeps a run's progress there)")
        if self.dir.exists():
            if not resume and not force:
                raise InputError(
                    f"{self.dir} holds the progress of an interrupted run of this output: add --resume to "
                    f"finish it, or --force to start over"
                )
            if resume:
                try:
                    old = json.loads(state.read_text())
                except (OSError, ValueError):
                    old = None  # killed before its fingerprint was written: nothing to resume
                if isinstance(old, dict):
                    diff = _differences(old, self.fingerprint)
                    if not diff:
                        remove_partial_files(out)  # the output the resumed run was writing when it was killed
                        return
                    if not force:
                        raise InputError(
                            f"{self.dir} holds the progress of another command ("
                            + "; ".join(diff[:3])
                            + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
                            + "): rerun that command to finish it, or add --force to start over"
                        )
            shutil.rmtree(self.dir)  # --force, or progress without a readable fingerprint: start over
            remove_partial_files(out)
        try:
            self.dir.mkdir(parents=True)
        except OSError as e:
            raise InputError(f"cannot create {self.dir}: {(e.strerror or str(e)).lower()}") from None
        self._write(state, json.dumps(self.fingerprint, indent=1, sort_keys=True).encode())

    #: attached to a folder another process made (see :meth:`attach`)
    attached = False

    @classmethod
    def attach(cls, out: str | os.PathLike) -> "Sidecar":
        """The progress folder of ``out`` that another process made (rank 0 of a torchrun job, for the other ranks):
        units are read and added; checking, cleaning up and removing the folder stay with the process that made it."""
        self = cls.__new__(cls)
        self.dir, self.attached = resume_dir(out), True
        try:
            self.fingerprint = json.loads((self.dir / "run.json").read_text())
        except (OSError, ValueError):
            raise InputError(
                f"{self.dir} (made by rank 0) cannot be read here: under torchrun the output must be on a "
                f"filesystem every machine sees"
            ) from None
        return self

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _unit(self, name: str) -> Path:
        return self.dir / f"{name}.pt"

    def has(self, name: str) -> bool:
        return self._unit(name).is_file()

    def save(self, name: str, value: Mapping[str, Any]) -> None:
        """Keep one finished unit (tensors are moved to the CPU), atomically."""
        import io

        buf = io.BytesIO()
        torch.save(_to_cpu(dict(value)), buf)
        self._write(self._unit(name), buf.getvalue())

    def load(self, name: str) -> dict[str, Any]:
        try:
            return torch.load(self._unit(name), map_location="cpu", weights_only=True)
        except Exception:
            raise ArtifactError(
                f"{self._unit(name)} is damaged; delete {self.dir} (or use --force) to start over"
            ) from None

    def units(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.pt"))

    def __enter__(self) -> "Sidecar":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """A run that fails before finishing any unit leaves nothing behind (bad input changes nothing on disk)."""
        if exc_type is not None and not self.attached and not self.units():
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def interrupted(self, kept: int, total: int, units: str) -> str:
        """What Ctrl-C says, the same for every command that resumes: ``kept`` of ``total`` ``units`` are kept (with
        none kept, the progress folder goes when the run ends, so the line says there is nothing to resume)."""
        if kept == 0:
            return f"interrupted; none of the {total} {units} was finished, so nothing was kept: the same command starts over"
        return f"interrupted; {kept} of {total} {units} are kept in {self.dir}: run the same command with --resume to finish"

    def finish(self) -> None:
        """The output is complete: the progress is no longer needed."""
        if not self.attached:
            shutil.rmtree(self.dir, ignore_errors=True)


def _to_cpu(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_to_cpu(x) for x in v)
    return v


__all__ = ["SUFFIX", "Sidecar", "resume_dir", "run_fingerprint"]
