"""File plumbing shared by every artifact: content hashes, output checks and atomic replacement."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from lfpcli.errors import InputError, OutputExistsError
from lfpcli.hashing import sha256_file

__all__ = ["atomic_output", "check_output", "partial_files", "remove_partial_files", "sha256_file"]


def check_output(path: str | os.PathLike, force: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Validate an output path before any work starts, so a bad ``--out`` costs nothing.

    Refuses an existing file without ``force``, a missing or unwritable folder, a folder as the output,
    and (when ``suffixes`` is given) a name without one of the expected extensions.
    """
    if not str(path).strip():
        raise InputError(
            f"the output file name is empty; give one{' ending in ' + ' or '.join(suffixes) if suffixes else ''}"
        )
    p = Path(path)
    if str(path).endswith(("/", os.sep)) and not p.is_dir():
        raise InputError(f"output {path} names a folder; give a file name")
    if suffixes and not p.name.lower().endswith(tuple(suffixes)):
        raise InputError(f"output {p} should end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise InputError(f"output {p} is a folder; give a file name")
    if p.exists() and not force:
        raise OutputExistsError(f"output {p} already exists; use --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {p}: folder {parent} is not writable")
    # os.access can say yes where writing fails (ACLs, read-only mounts, root squash): try it for real, now,
    # before any work is done, and leave nothing behind
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=parent)
    except OSError as e:
        raise InputError(f"cannot write {p}: {_reason(e)} in folder {parent}; choose another --out") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return p


def partial_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_output` writes beside ``path`` (``.NAME.XXXXXXXX.part``, the middle part
    from :func:`tempfile.mkstemp`); one still there after its run ended was left by a run that was killed."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    pattern = re.compile(re.escape(f".{p.name}.") + r"[a-z0-9_]{8}\.part")
    try:
        return sorted(c for c in folder.iterdir() if pattern.fullmatch(c.name) and c.is_file())
    except OSError:
        return []


def remove_partial_files(path: str | os.PathLike) -> None:
    """Remove the temporary files earlier runs writing ``path`` left (only for a run that takes that output over:
    ``--force``, or ``--resume`` of the run that left them; a concurrent run's file would go too)."""
    for c in partial_files(path):
        with contextlib.suppress(OSError):
            c.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A reader never sees a half-written file under the final name, and a failure leaves nothing behind (a kill -9
    leaves the temporary file: ``force`` removes those of earlier runs before it starts).
    """
    final = check_output(path, force)
    folder = final.parent if str(final.parent) else Path(".")
    if force:
        remove_partial_files(final)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=folder)
    except OSError as e:  # the up-front check can be fooled: ACLs, a read-only mount, a race
        raise InputError(f"cannot write {final}: {_reason(e)} in folder {folder}; choose another --out") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        yield tmp_path
        # re-check: another process may have created the output while we worked
        if final.exists() and not force:
            raise OutputExistsError(f"output {final} appeared while lfp was writing it; use --force to overwrite it")
        try:
            os.replace(tmp_path, final)
        except OSError as e:
            raise InputError(f"cannot write {final}: {_reason(e)}") from None
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        # a failure writing the temporary file is reported against the output the user named
        if getattr(e, "filename", None) in (tmp, str(tmp_path)):
            raise InputError(f"cannot write {final}: {_reason(e)}") from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _reason(e: OSError) -> str:
    return (e.strerror or type(e).__name__).lower()
