"""Progress reporting without printing: the library calls a ``Progress``; the CLI draws it.

``progress(stage, done, total, **status)`` is called as work advances (``done`` out of ``total`` units of
``stage``, e.g. "train epoch 3/15" batches); ``status`` carries figures such as the running loss.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, **status: Any) -> None: ...


def no_progress(stage: str, done: int, total: int, **status: Any) -> None:
    """The default: report nothing."""
