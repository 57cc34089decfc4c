"""How much of pcfe-l0's work could a per-sample convergence test save? An upper bound, measured.

    python benchmarks/pcfe_convergence.py [--n 256] [--threads 1] [--tols 1e-3,1e-4,1e-5]

S-CFE runs ``search_steps x steps`` FISTA iterations on every sample. A solver that stopped each sample once its
iterates stop moving would do less. This script records, for every sample, search step and iteration, the largest
change of any value ``max |w_k - w_{k-1}|``, and for each tolerance counts the iterations after which a sample's
changes stay at or below it *for the rest of that search step*: an oracle stop rule (it knows the future), so what
it saves bounds any real test from above.

Setup, as issue 20's comparison with the S-CFE authors' batched code: the digits ``mlp`` (trained by ``lfp train
--data digits --arch mlp``, defaults), the first N training images, random wrong-class targets, lfp's pcfe-l0
defaults, without a density term and with a 10-component full-covariance GMM per class (tau = its
``plausibility_weight``). It wraps the FISTA call of ``lfpcli.solvers.scfe`` to read the iterates; the solver
itself is unchanged.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import lfpcli.solvers.scfe as scfe_module
from lfpcli.artifacts.dataspec import resolve
from lfpcli.commands.common import load_model
from lfpcli.commands.train import train
from lfpcli.density import fit_density
from lfpcli.solvers import choose_targets
from lfpcli.solvers.scfe import SCFEConfig, scfe


def recording_fista(changes: list[torch.Tensor]):
    """``fista`` that appends each call's (steps, N) largest per-sample change per iteration to ``changes``."""
    inner = scfe_module.fista

    def wrapped(smooth, prox, w0, **kw):
        prev = [w0]
        per_iter: list[torch.Tensor] = []
        user = kw.get("callback")

        def cb(k, w, running):
            per_iter.append((w - prev[0]).flatten(1).abs().amax(1))
            prev[0] = w
            if user is not None:
                user(k, w, running)

        res = inner(smooth, prox, w0, **{**kw, "callback": cb})
        changes.append(torch.stack(per_iter))
        return res

    return wrapped


def needed(change: torch.Tensor, tol: float) -> torch.Tensor:
    """(N,) iterations until every later change is <= tol (``change`` is (steps, N))."""
    steps = change.shape[0]
    above = change > tol
    # index of the last iteration above tol, + 1 (0 where none is)
    idx = torch.arange(1, steps + 1)[:, None].expand_as(change)
    return torch.where(above, idx, torch.zeros_like(idx)).amax(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tols", default="1e-3,1e-4,1e-5")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tols = [float(t) for t in a.tols.split(",")]
    ds = resolve("digits")
    tr = ds.split("train")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.pt"
        train(path, data="digits", arch="mlp", seed=0, device="cpu")
        model, _ = load_model(path, torch.device("cpu"))
    model.eval()
    x = tr.x[: a.n]
    t = choose_targets(tr.y[: a.n], ds.num_classes, "random-other", torch.Generator().manual_seed(0))
    gmm = fit_density("gmm", tr.x.flatten(1), tr.y, ds.num_classes, seed=0, components=10, covariance="full")
    changes: list[torch.Tensor] = []
    scfe_module.fista = recording_fista(changes)
    print(f"digits mlp, {a.n} wrong-class targets, pcfe-l0 defaults (5 x 100 iterations), {a.threads} thread(s)")
    print(
        "| density | validity | changed values (mean) | s | "
        + " | ".join(f"share of iterations needed, tol {t:g}" for t in tols)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(tols))
    for name, q in (("none", None), ("gmm, 10 full components", gmm)):
        changes.clear()
        cfg = SCFEConfig(tau=None if q is None else q.plausibility_weight())
        t0 = time.perf_counter()
        r = scfe(
            model, x, t, cfg, plausibility=None if q is None else (lambda xp, tt, q=q: q.log_prob(xp.flatten(1), tt))
        )
        took = time.perf_counter() - t0
        total = sum(c.numel() for c in changes)
        shares = [sum(int(needed(c, tol).sum()) for c in changes) / total for tol in tols]
        print(
            f"| {name} | {r.success.float().mean():.3f} | {r.extras['l0'].float().mean():.1f} | {took:.2f} | "
            + " | ".join(f"{s:.3f}" for s in shares)
            + " |"
        )
        per_step = [[f"{float(needed(c, tol).float().mean()):.0f}" for c in changes] for tol in tols]
        for tol, row in zip(tols, per_step):
            print(
                f"  {name}, tol {tol:g}: mean iterations needed per search step: {', '.join(row)} (of {changes[0].shape[0]})"
            )


if __name__ == "__main__":
    main()
