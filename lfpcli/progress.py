"""Progress reporting without printing: the library calls a ``Progress``; the CLI draws it.

``progress(stage, done, total, **status)`` is called as work advances: ``done`` out of ``total`` units of
``stage`` (e.g. "train epoch 3/15" batches, or "pcfe-l0" solver iterations). ``status`` carries figures shown
beside the bar, such as the running loss or the samples that reached their target; a value may be a 0-dim
tensor still on the device, which the drawer reads only when it redraws (a few times a second at most), so a
solver loop can report every iteration without a host-device synchronisation per iteration. The status key
``unit`` names the unit of ``done`` (default: items); a pair ``(done, of)`` is shown as ``done/of``.

A new stage should start with ``done = 0`` so that rates and time estimates count from the start of the work.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, **status: Any) -> None: ...


def no_progress(stage: str, done: int, total: int, **status: Any) -> None:
    """The default: report nothing."""


#: What a solver reports within one batch: ``tick(done, total, **status)``, iterations of this batch.
Tick = Callable[..., None]


def scaled(progress: Progress, stage: str, offset: int, total: int, **fixed: Any) -> Tick:
    """A :data:`Tick` that reports ``offset + done`` out of ``total`` units of ``stage`` to ``progress``.

    Lets a command show one bar for a whole run whose batches each report their own iterations
    (batch ``b`` of ``B`` with ``K`` iterations each: ``offset = b * K``, ``total = B * K``).
    """

    def tick(done: int, _batch_total: int, **status: Any) -> None:
        progress(stage, offset + done, total, **fixed, **status)

    return tick
