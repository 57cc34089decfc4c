"""Minibatch training with per-epoch validation and best-epoch selection."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from lfpcli import distributed
from lfpcli.data.dataset import Split
from lfpcli.metrics import predict, split_metrics
from lfpcli.models.outputs import class_logits
from lfpcli.precision import Execution
from lfpcli.progress import Progress, no_progress
from lfpcli.solvers.losses import get_loss
from lfpcli.training.config import TrainConfig


@dataclass
class TrainResult:
    """``state_dict``: the kept model's weights (CPU); ``history``: one dict per epoch; ``selected_epoch``:
    1-based epoch the weights come from."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    selected_epoch: int = 0


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _score(metrics: dict[str, Any], select: str) -> float:
    key = "accuracy" if select == "val-accuracy" else "worst_group_accuracy"
    v = metrics.get(key)
    return -math.inf if v is None else float(v)


def train_model(
    model: torch.nn.Module,
    train: Split,
    cfg: TrainConfig,
    *,
    device: torch.device,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    val: Split | None = None,
    group_names: list[str] | None = None,
    progress: Progress = no_progress,
    sidecar: Any = None,
    save_every: float = 0.0,
    execution: Execution | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train`` (``cfg.loss``), minibatches drawn with ``generator``, or, given
    ``seed``, with one generator per epoch made from ``(seed, epoch)`` alone (what makes a run resumable).

    After each epoch the model is scored on ``val`` (accuracy, and worst-group accuracy where groups exist);
    the returned weights are the last epoch's or the best epoch's by ``cfg.select``. Loss sums stay on the
    device and are read once per epoch, so CUDA runs without a host sync per batch.

    ``sidecar`` (an :class:`lfpcli.artifacts.resume.Sidecar`): the training state (weights, optimizer, schedule,
    history, the best epoch so far) is kept there after an epoch once ``save_every`` seconds have passed since
    the last save (0: every epoch), and a run whose sidecar holds a state continues after its epoch, with the
    same result as a run never stopped (given ``seed``).

    ``execution`` (:mod:`lfpcli.precision`): the forward runs under its autocast (loss and optimizer in float32,
    a gradient scaler for fp16 on CUDA), weights and inputs channels-last and the forward compiled if it says so.
    """
    if generator is None and seed is None:
        raise ValueError("train_model needs a generator or a seed")
    if cfg.select != "last" and (val is None or len(val) == 0):
        from lfpcli.errors import ConfigError

        raise ConfigError(f"--select {cfg.select} needs a validation split, and this data has none")
    if cfg.balance == "groups" and not bool((train.group >= 0).all()):
        from lfpcli.errors import ConfigError

        raise ConfigError(
            "--balance groups needs every training sample's group, and this data has none; use --balance none"
        )
    if cfg.select == "val-worst-group" and not group_names:
        from lfpcli.errors import ConfigError

        raise ConfigError("--select val-worst-group needs data with groups; use --select val-accuracy")
    loss_fn = get_loss(cfg.loss)
    model.to(device)
    ex = execution or Execution(str(device))
    if ex.channels_last:
        model.to(memory_format=torch.channels_last)
    # under torchrun: DistributedDataParallel, each rank a shard of every minibatch (lfpcli.distributed)
    job = distributed.world()
    net = distributed.wrap(model, device)
    forward = torch.compile(net) if ex.compile else net
    scaler = ex.grad_scaler()
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs) if cfg.schedule == "cosine" else None
    train_counts = train.group_counts(len(group_names)) if group_names else None
    n_batches = math.ceil(len(train) / cfg.batch_size)
    result = TrainResult(state_dict={})
    best = -math.inf
    first = 1
    if sidecar is not None and sidecar.has("train-state"):
        state = sidecar.load("train-state")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        result.history = list(state["history"])
        result.selected_epoch = int(state["selected_epoch"])
        result.state_dict = state["best_state"]
        best = float(state["best"])
        first = int(state["epoch"]) + 1
    saved_at = time.monotonic()
    # one bar for the whole run, in batches, so its time estimate covers every epoch; the running loss is a
    # device tensor that the drawer reads only when it redraws
    stage = f"training {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    total = cfg.epochs * n_batches
    last: dict[str, Any] = {}
    progress(stage, (first - 1) * n_batches, total, unit="batch", epoch=f"{first}/{cfg.epochs}")
    for epoch in range(first, cfg.epochs + 1):
        if seed is not None:
            generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        order = epoch_order(train, cfg.balance, generator)
        if job.active:
            batches = distributed.shard_batches(train, cfg.batch_size, generator, order)
        else:
            batches = ((x, y, None, 1.0, y.shape[0]) for x, y, _, _ in train.batches(cfg.batch_size, order=order))
        for b, (x, y, real, scale, count) in enumerate(batches):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if ex.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with ex.autocast():
                out = forward(x)
            logits = class_logits(out.float())
            if real is None:
                loss = loss_fn(logits, y).mean()
            else:  # this rank's share of the minibatch's mean loss, so that DDP's average is that mean
                real = real.to(device, non_blocking=True)
                per = loss_fn(logits, y) * real
                loss = per.sum() * scale
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            if real is None:
                loss_sum += loss.detach() * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
            else:
                loss_sum += per.detach().sum()
                correct += ((logits.detach().argmax(1) == y) & real).sum()
            seen += count
            progress(
                stage,
                (epoch - 1) * n_batches + b + 1,
                total,
                unit="batch",
                epoch=f"{epoch}/{cfg.epochs}",
                loss=loss_sum / seen,
                **last,
            )
        if sched is not None:
            sched.step()
        job.all_sum(loss_sum, correct)  # under torchrun: the whole epoch's, over every rank's shards
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / max(len(train), 1),
            "train_accuracy": float(correct) / max(len(train), 1),
        }
        if val is not None and len(val) and job.main:  # under torchrun rank 0 validates and selects
            m = split_metrics(predict(model, val, device), val.y, val.group, group_names, train_counts)
            row["val_accuracy"] = m["accuracy"]
            row["val_worst_group_accuracy"] = m["worst_group_accuracy"]
            score = _score(m, cfg.select) if cfg.select != "last" else None
        else:
            score = None
        if not math.isfinite(row["train_loss"]):
            from lfpcli.errors import ConfigError

            raise ConfigError(
                f"training diverged: the loss was {row['train_loss']} in epoch {epoch}, so no checkpoint is "
                f"written; lower the learning rate (--lr, now {cfg.lr:g}) or use --schedule cosine"
            )
        result.history.append(row)
        last = {"val_acc": row.get("val_accuracy"), "val_wga": row.get("val_worst_group_accuracy")}
        progress(
            stage, epoch * n_batches, total, unit="batch", epoch=f"{epoch}/{cfg.epochs}", loss=row["train_loss"], **last
        )
        if (cfg.select == "last" and epoch == cfg.epochs) or (score is not None and score > best):
            best = score if score is not None else best
            result.selected_epoch = epoch
            result.state_dict = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if sidecar is not None and job.main and epoch < cfg.epochs and time.monotonic() - saved_at >= save_every:
            sidecar.save(
                "train-state",
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else {},
                    "history": result.history,
                    "selected_epoch": result.selected_epoch,
                    "best_state": result.state_dict,
                    "best": best,
                },
            )
            saved_at = time.monotonic()
    if job.main:
        model.load_state_dict(result.state_dict)
    return result


def epoch_order(train: Split, balance: str, generator: torch.Generator) -> torch.Tensor:
    """The rows of one epoch, in order, drawn from ``generator``: a permutation of every row (``balance="none"``),
    or ``len(train)`` rows drawn with replacement, each from group g with probability ``1 / (G * n_g)`` so that the
    G groups present are equally likely (``"groups"``)."""
    n = len(train)
    if balance == "none":
        return torch.randperm(n, generator=generator)
    counts = torch.bincount(train.group)
    weight = 1.0 / counts[train.group].double()
    return torch.multinomial(weight, n, replacement=True, generator=generator)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s minibatch order."""
    return (seed * 1_000_003 + epoch) % (2**63)
