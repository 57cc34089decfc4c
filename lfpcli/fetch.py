"""Fetching one file over HTTP(S) into place, for ``lfp data --download`` and named pretrained weights.

pooch's :class:`~pooch.HTTPDownloader` (requests underneath) streams the file into a temporary ``NAME.*.part``
beside the target and reports bytes to a :class:`~lfpcli.progress.Progress`; the transfer is checked against the
server's Content-Length, and the file is renamed into place only when complete. A transfer cut short is restarted
from the beginning (``attempts`` in all); a refused connection, a failed name lookup or an HTTP error moves on to
the next address. Whatever fails or is interrupted (Ctrl-C), the ``.part`` file is removed: the target either is
the whole file or does not exist.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from lfpcli.errors import InputError
from lfpcli.progress import Progress, no_progress

#: seconds to wait for a connection, and for each read
TIMEOUT = (30, 60)
#: bytes per read (and per progress report)
CHUNK = 1 << 16


class CutShort(Exception):
    """The server closed the connection before the whole file came."""


class _Bytes:
    """The progress-bar object pooch's downloader drives (``total``, ``update``, ``reset``, ``close``), relaying
    bytes received to a :class:`Progress` and keeping the expected length."""

    def __init__(self, progress: Progress, stage: str):
        self.progress, self.stage = progress, stage
        self.total, self.done = 0, 0

    def update(self, n: int) -> None:
        self.done += n
        shown = min(self.done, self.total) if self.total else self.done
        self.progress(self.stage, shown, self.total or shown, unit="B")

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs every download on stderr through its own handler; the library never prints."""
    import pooch

    log = pooch.get_logger()
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _transfer(url: str, part: Path, progress: Progress, stage: str) -> None:
    import pooch

    bar = _Bytes(progress, stage)
    progress(stage, 0, 0, unit="B")
    pooch.HTTPDownloader(progressbar=bar, chunk_size=CHUNK, timeout=TIMEOUT)(url, str(part), None)
    got = part.stat().st_size
    if bar.total and got != bar.total:  # urllib3 < 2 ends a cut stream silently
        raise CutShort(f"{got} of {bar.total} bytes")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(e: BaseException) -> str:
    """A short, one-line cause of a failed request."""
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        return f"HTTP {e.response.status_code} {e.response.reason or ''}".strip()
    if isinstance(e, requests.Timeout):
        return "timed out"
    text = str(e)
    for key, short in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("Temporary failure in name resolution", "no name resolution (offline?)"),
        ("Network is unreachable", "network unreachable"),
        ("No route to host", "no route to host"),
    ):
        if key in text:
            return short
    return type(e).__name__ + (f": {text[:120]}" if text else "")


@contextmanager
def new_folders(*folders: Path) -> Iterator[None]:
    """Folders (and their parents) that do not exist yet are removed again, when still empty, if the block fails:
    a failed download leaves no trace."""
    made = {f for d in folders for f in (Path(d), *Path(d).parents) if not f.exists()}
    try:
        yield
    except BaseException:
        for d in sorted(made, key=lambda f: len(f.parts), reverse=True):
            with suppress(OSError):  # not empty: something else lives there now
                d.rmdir()
        raise


def fetch(
    urls: Sequence[str], dest: str | Path, *, progress: Progress = no_progress, attempts: int = 3, by_hand: str = ""
) -> tuple[str, int]:
    """Download the first of ``urls`` that answers into ``dest``; returns ``(url used, restarts)``.

    A transfer cut short restarts from the beginning, up to ``attempts`` tries in all; then, or when no address
    answers, one :class:`InputError` line names every address tried, why it failed, and where to put the file by
    hand (``by_hand`` is added to that line)."""
    dest = Path(dest)
    with new_folders(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        return _fetch(urls, dest, progress, attempts, by_hand)


def _fetch(urls: Sequence[str], dest: Path, progress: Progress, attempts: int, by_hand: str) -> tuple[str, int]:
    import requests

    tried: list[str] = []
    stage = f"downloading {dest.name}"
    for url in urls:
        restarts = 0
        while True:
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            os.close(fd)
            part = Path(tmp)
            try:
                with _quiet_pooch():
                    _transfer(url, part, progress, stage)
                os.chmod(part, 0o666 & ~_umask())  # mkstemp makes it private; the file gets the usual permissions
                os.replace(part, dest)
                return url, restarts
            except (
                CutShort,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
            ) as e:
                cut = isinstance(e, (CutShort, requests.exceptions.ChunkedEncodingError)) or part.stat().st_size > 0
                if cut and restarts + 1 < attempts:
                    restarts += 1
                    continue
                tried.append(
                    f"{url} ({'cut short: ' + str(e) if isinstance(e, CutShort) else _reason(e)}"
                    f"{f', {restarts + 1} tries' if cut else ''})"
                )
                break
            except requests.exceptions.RequestException as e:
                tried.append(f"{url} ({_reason(e)})")
                break
            finally:
                part.unlink(missing_ok=True)
    raise InputError(
        f"cannot fetch {dest.name} from {' nor '.join(tried)}; nothing was kept. Without network access, "
        f"fetch it elsewhere and put it at {dest}, then run the same command again{by_hand}"
    )


def checksum(path: str | Path, algorithm: str) -> str:
    """``"ALG:hexdigest"`` of a file (pooch's hashing; md5, sha1, sha256, ...)."""
    import pooch

    return f"{algorithm}:{pooch.file_hash(str(path), alg=algorithm)}"
