"""Running lfp on several processes, GPUs and machines through ``torchrun`` (library: never prints).

``torchrun --nproc-per-node N -m lfpcli perturb|train|retrain ...`` starts N copies of the command; each finds its
place in the job from the environment torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). The process group
is ``gloo`` for CPU tensors and ``nccl`` for CUDA ones (``cpu:gloo,cuda:nccl`` where CUDA is there), and a rank on
a GPU machine uses the GPU of its ``LOCAL_RANK``.

- ``perturb``: batch ``b`` of the samples is solved by rank ``b % world_size`` with the seed it has in a single
  process (``batch_seed(seed, b)``), and kept in the run's progress folder ``OUT.resume/`` (which must therefore be
  on a filesystem every machine sees); rank 0 then writes them all, in order, into the one output file. The output
  holds the same tensors, metrics and summary as a single-process run; its record adds ``distributed`` (world size,
  backend) as provenance. ``--resume`` works across world sizes (the progress is per batch, not per rank).
- ``train`` / ``retrain``: :class:`torch.nn.parallel.DistributedDataParallel`. Each global minibatch of
  ``--batch-size`` samples (the same epoch permutation as a single process, ``epoch_seed(seed, epoch)``) is split into
  ``world_size`` disjoint contiguous shards, one per rank, and each rank's loss is weighted so that the all-reduced
  gradient is the gradient of the whole minibatch's mean loss: a run means what a single-process run with the same
  ``--batch-size`` means, with the same weights up to float rounding, except for models with batch normalization
  (batch statistics are each rank's shard's, as usual under DDP; running statistics are rank 0's). Rank 0 validates,
  selects the epoch and writes the checkpoint.

Synchronisation is by *check-ins*: every rank of a command passes the same sequence of :meth:`World.check_in`
calls, and an error on any rank before the last one is carried to all ranks there (rank 0 reports it, with the
failing rank's number; the other ranks stay quiet and exit with the same code), so no rank waits on one that has
failed. After the last check-in (training under DDP, rank 0 writing the output) an error ends its own rank, and
torchrun stops the others.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lfpcli.data.lazy import iter_batches
from lfpcli.errors import ConfigError, Interrupted, LfpError

#: The commands that run under torchrun; any other is refused there (N copies would write the same output).
COMMANDS = ("perturb", "train", "retrain")

#: Seconds a rank waits for the others at a check-in or a collective before giving up (``LFP_DIST_TIMEOUT``).
DEFAULT_TIMEOUT = 1800


class RankFailed(LfpError):
    """An error on one rank of a torchrun job, reported as ``rank K: message`` with that error's exit code."""

    def __init__(self, rank: int, message: str, exit_code: int):
        super().__init__(f"rank {rank}: {message}")
        self.exit_code = exit_code


@dataclass
class World:
    """This process's place in a torchrun job; ``size`` 1 (and nothing to synchronise) outside one."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    #: whether a check-in is still ahead in the running command (an error then waits for it, see module doc)
    pending: bool = False

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def check_in(self, payload: Any = None, *, last: bool = False) -> list[Any]:
        """Meet every other rank; returns each rank's ``payload`` (by rank). Raises the first error any rank
        brought here (see :func:`session`). ``last``: no check-in follows in this command."""
        if not self.active:
            return [payload]
        try:
            got = _gather(("ok", payload))
        except Exception:
            self.pending = False  # the group itself failed (a rank gone, a timeout): no second try
            raise
        if last:
            self.pending = False
        _raise_failures(self, got)
        return [p for _, p in got]

    def smallest(self, value: int) -> int:
        """The smallest of every rank's ``value`` (a batch size that each rank's device fits), at a check-in."""
        return min(self.check_in(value))

    def all_sum(self, *tensors: torch.Tensor) -> None:
        """Sum each tensor over the ranks, in place (on its own device: gloo on the CPU, nccl on CUDA)."""
        if self.active:
            import torch.distributed as dist

            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def provenance(self) -> dict[str, Any]:
        """What a record says about the job that made it: ``{}`` for a single process."""
        if not self.active:
            return {}
        import torch.distributed as dist

        backend = str(dist.get_backend()) if dist.is_initialized() else _backend()
        return {"distributed": {"world_size": self.size, "backend": backend, "launcher": "torchrun"}}


_current: World | None = None


def _int_env(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an integer (torchrun sets it)") from None


def from_env() -> World:
    """The job described by ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (as torchrun sets them)."""
    size = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local = _int_env("LOCAL_RANK", rank)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"inconsistent torchrun environment: WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local}")
    return World(size, rank, local)


def world() -> World:
    """The job of the running command (from the environment when no command is running)."""
    return _current if _current is not None else from_env()


def _backend() -> str:
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and torch.distributed.is_nccl_available() else "gloo"


def _timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(os.environ.get("LFP_DIST_TIMEOUT") or DEFAULT_TIMEOUT))


def _ensure_init() -> None:
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run lfp as a single process")
    if not dist.is_initialized():
        dist.init_process_group(backend=_backend(), timeout=_timeout())


def _gather(obj: Any) -> list[Any]:
    import torch.distributed as dist

    _ensure_init()
    got: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(got, obj)
    return got


def _leave_together() -> None:
    """Wait for every rank to finish its command before the process group is torn down. A rank that tore down its
    connections while another still held them (rank 0 writing the output) sometimes aborted at exit in gloo
    ("terminate called without an active exception"); a rank that failed after the last check-in never arrives,
    and then its own teardown ends the wait (rank 0's monitored barrier names it; the error is not this rank's)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=_timeout())
            else:
                dist.barrier()


def _describe(e: BaseException) -> tuple[str, int]:
    msg = " ".join(str(e).split())
    if isinstance(e, LfpError):
        return msg, int(e.exit_code)
    if isinstance(e, MemoryError) or "out of memory" in msg.lower():
        return f"out of memory ({msg[:200]}); use a smaller --batch-size", 2
    if isinstance(e, OSError):
        return msg, 2
    return f"internal error in lfp: {type(e).__name__}: {msg[:300]}", 1


def _raise_failures(w: World, got: list[tuple[str, Any]]) -> None:
    failed = [(r, p) for r, (kind, p) in enumerate(got) if kind == "error"]
    if failed:
        w.pending = False
        r, (msg, code) = failed[0]
        raise RankFailed(r, msg, code)


def quiet_other_ranks() -> None:
    """Under torchrun, mute the standard output and error of every rank but 0 (they would repeat rank 0's), except
    for a line that reports an error of that rank's own. ``LFP_DEBUG=1`` keeps everything."""
    try:
        w = from_env()
    except ConfigError:
        return
    if w.main or os.environ.get("LFP_DEBUG") == "1" or isinstance(sys.stderr, _OwnErrorsOnly):
        return
    sys.stdout = _OwnErrorsOnly(sys.stdout, None)
    sys.stderr = _OwnErrorsOnly(sys.stderr, f"error: rank {w.rank}: ")


class _OwnErrorsOnly:
    """A text stream that passes on only the lines starting with ``keep`` (none for ``None``)."""

    def __init__(self, stream: Any, keep: str | None):
        self._stream, self._keep = stream, keep

    def write(self, text: str) -> int:
        if self._keep is not None and text.startswith(self._keep):
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def session(command: str, device: Any = None) -> Iterator[World]:
    """Run one command as a rank of a torchrun job (a no-op outside one).

    Refuses commands that do not run under torchrun and a ``--device cuda:N`` (each rank uses the GPU of its
    ``LOCAL_RANK``). An error before the command's last check-in is carried to every rank at the next one (rank 0
    raises it as :class:`RankFailed` naming the rank where it happened, or its own); an error after it is raised on
    its own rank as ``rank K: message``. The process group is destroyed at the end."""
    global _current
    w = from_env()
    if not w.active:
        yield w
        return
    _current = w
    w.pending = True
    try:
        if command not in COMMANDS:
            raise ConfigError(
                f"lfp {command} does not run under torchrun; only {', '.join(COMMANDS)} do: run it as one process"
            )
        if device is not None and str(device).startswith("cuda:"):
            raise ConfigError(
                f"--device {device} under torchrun: each rank uses the GPU of its LOCAL_RANK; give --device cuda or auto"
            )
        if torch.cuda.is_available() and str(device or "auto") in ("auto", "cuda"):
            if w.local_rank >= torch.cuda.device_count():
                raise ConfigError(
                    f"LOCAL_RANK {w.local_rank}, but this machine has {torch.cuda.device_count()} GPU(s): start at "
                    f"most one process per GPU (--nproc-per-node), or use --device cpu"
                )
            torch.cuda.set_device(w.local_rank)
        yield w
        _leave_together()
    except (KeyboardInterrupt, Interrupted):
        raise
    except RankFailed:
        raise
    except Exception as e:
        if w.pending:  # the other ranks are on their way to a check-in: meet them there with this error
            w.pending = False
            msg, code = _describe(e)
            got = _gather(("error", (msg, code)))
            first = next(r for r, (kind, _) in enumerate(got) if kind == "error")
            if first == w.rank:
                raise
            raise RankFailed(first, *got[first][1]) from None
        if w.main:
            raise
        msg, code = _describe(e)
        raise RankFailed(w.rank, msg, code) from e
    finally:
        _current = None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


# --- sharing a progress folder ----------------------------------------------------------------------------------


def shared_sidecar(make: Callable[[], Any], attach: Callable[[], Any]) -> Any:
    """The progress folder of a run's output (:class:`lfpcli.artifacts.resume.Sidecar`): made (checked, created, or
    taken up with ``--resume``) by ``make`` on rank 0, and taken by the others with ``attach`` once it is there."""
    w = world()
    if not w.active:
        return make()
    sidecar = make() if w.main else None
    w.check_in()
    if not w.main:
        sidecar = attach()
    w.check_in()
    return sidecar


# --- perturb: batches shared among the ranks ---------------------------------------------------------------------


def solve_shares(
    has: Callable[[int], bool],
    total: int,
    solve: Callable[[int, torch.Tensor], Any],
    read: Callable[[Sequence[int]], Iterator[torch.Tensor]],
) -> bool:
    """Solve this rank's share of the batches ``0..total-1`` not yet done (``has``): the k-th batch to do goes to
    rank ``k % world_size`` (batch ``b`` to rank ``b % world_size`` in a fresh run); ``solve(b, x)`` solves batch
    ``b`` with its inputs ``x`` (from ``read(batch numbers)``) and keeps it. The ranks meet after every round of
    batches, so an error anywhere stops them all at the next one. Returns whether this rank writes the output
    (rank 0; every batch is kept by then). A single process does nothing here."""
    w = world()
    if not w.active:
        return True
    todo = w.check_in([b for b in range(total) if not has(b)] if w.main else None)[0]
    mine = todo[w.rank :: w.size]
    rounds = -(-len(todo) // w.size)
    inputs = read(mine)
    for r in range(rounds):
        if r < len(mine):
            solve(mine[r], next(inputs))
        w.check_in(last=r == rounds - 1)
    w.pending = False
    return w.main


# --- train: DistributedDataParallel over shards of each minibatch -----------------------------------------------


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` under torchrun (after the last check-in, with
    the parameters of rank 0); the model itself in a single process."""
    w = world()
    if not w.active:
        return model
    w.check_in(last=True)
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids)


def shard_batches(
    split: Any,
    batch_size: int,
    generator: torch.Generator,
    order: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, int]]:
    """This rank's shard of each minibatch of an epoch: ``(x, y, real, scale, count)``.

    The minibatches are those of ``split.batches(batch_size, shuffle=True, generator=generator)`` (the same draw from
    ``generator``), or of ``order`` where given (a resampled epoch); minibatch ``idx`` is split into ``world_size`` contiguous shards (sizes differ by at most one).
    ``real`` marks the shard's samples (a rank whose shard is empty gets one sample of the minibatch marked not
    real, so that every rank runs the model); the loss ``(per_sample * real).sum() * scale`` all-reduced
    (averaged) by DDP is the minibatch's mean loss. ``count``: real samples here."""
    w = world()
    if order is None:
        order = torch.randperm(len(split), generator=generator)
    n = len(order)
    shards = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        mine = idx.tensor_split(w.size)[w.rank]
        count = int(mine.numel())
        if count == 0:
            mine = idx[:1]
        shards.append((mine, count, w.size / idx.numel()))
    if split.in_memory:
        xs: Iterator[torch.Tensor] = (split.x[i] for i, _, _ in shards)
    else:
        xs = iter_batches(split.x, [i.numpy() for i, _, _ in shards])
    for (i, count, scale), x in zip(shards, xs):
        real = torch.ones(i.numel(), dtype=torch.bool) if count else torch.zeros(i.numel(), dtype=torch.bool)
        yield x, split.y[i], real, scale, count


__all__ = [
    "COMMANDS",
    "RankFailed",
    "World",
    "from_env",
    "quiet_other_ranks",
    "session",
    "shard_batches",
    "shared_sidecar",
    "solve_shares",
    "world",
    "wrap",
]
