"""``lfp synth``: the synthetic experiment of the seed paper's Appendix A (after Kumano et al. 2024).

- :func:`synth_run`: one configuration; optionally writes a one-row results file.
- :func:`synth_sweep`: a preset or a plan of curves (``--sweep KEY=V1,V2,...``) over methods, distributions and
  seeds; writes one results file. Finished configurations are kept in ``OUT.resume/`` as they finish, so an
  interrupted sweep rerun as the same command with ``resume`` continues where it stopped and ends with the same
  results (:mod:`lfpcli.artifacts.resume`, as every command that resumes).
- :func:`synth_plot`: the summary table of a results file and, with ``out``, its figure (.png, .pdf or .svg).

Each resolves its inputs, runs the library (:mod:`lfpcli.synth`), writes through :mod:`lfpcli.artifacts.synth`
and returns a JSON-able summary; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from lfpcli import version
from lfpcli.artifacts import check_output, make_record
from lfpcli.artifacts.resume import Sidecar
from lfpcli.artifacts.synth import read_results, save_figure, write_results
from lfpcli.commands.common import check_seed, resolve_device
from lfpcli.errors import ArtifactError, ConfigError, InputError, Interrupted
from lfpcli.progress import Progress, no_progress
from lfpcli.synth.data import DISTS
from lfpcli.synth.protocol import (
    EPS_METHODS,
    METHODS,
    RATIO_METHODS,
    ROW_FIELDS,
    TIMING_FIELDS,
    VARIANTS,
    Point,
    Settings,
    run_point,
    solver_config,
)
from lfpcli.synth.sweep import PRESETS, Plan, parse_sweep, run_sweep
from lfpcli.synth.sweep import preset as preset_fields

__all__ = ["synth_plot", "synth_run", "synth_sweep"]

RESULT_SUFFIXES = (".h5", ".hdf5")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def _settings(preset_settings: dict[str, Any], overrides: dict[str, Any] | None) -> Settings:
    names = {f.name: f for f in dataclasses.fields(Settings)}
    merged = dict(preset_settings)
    for k, v in (overrides or {}).items():
        key = k.replace("-", "_")
        if key not in names:
            raise ConfigError(f"unknown setting '{k}'; settings are: {', '.join(names)}")
        if v is None:
            continue
        merged[key] = _coerce(key, str(names[key].type), v)
    return Settings(**merged)


def _coerce(name: str, ann: str, v: Any) -> Any:
    if not isinstance(v, str):
        if ann == "float" and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        return v
    try:
        if ann == "int":
            return int(v)
        if ann == "float":
            return float(v)
    except ValueError:
        raise ConfigError(f"setting {name} takes a {'whole number' if ann == 'int' else 'number'}, got '{v}'") from None
    return v


def _split(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    return tuple(s.strip() for s in items if s.strip())


def _seeds(value: str | list[int] | tuple[int, ...] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
        if not items:
            raise ConfigError("--seeds has no values; give a comma-separated list such as 0,1,2")
        try:
            return tuple(int(s) for s in items)
        except ValueError:
            raise ConfigError(f"--seeds takes whole numbers such as 0,1,2, got '{value}'") from None
    return tuple(value)


def _plan(
    preset: str,
    *,
    methods=None,
    dists=None,
    variants=None,
    seeds=None,
    dim=None,
    hidden=None,
    n_natural=None,
    n_noise=None,
    eps=None,
    ratio=None,
    sweeps=None,
    keep_preset_curves: bool = True,
) -> tuple[Plan, bool]:
    """The plan of ``preset`` with explicit values replacing the preset's; explicit ``sweeps`` replace its curves.
    Returns ``(plan, curves_explicit)``."""
    fields, _ = preset_fields(preset)
    for m in _split(methods) or ():
        if m not in METHODS:
            raise ConfigError(f"unknown method '{m}'; choose one of {', '.join(METHODS)}")
    for name, value in (
        ("methods", _split(methods)),
        ("dists", _split(dists)),
        ("variants", _split(variants)),
        ("seeds", _seeds(seeds)),
    ):
        if value is not None:
            fields[name] = value
    for name, value in (("dim", dim), ("hidden", hidden), ("n_natural", n_natural), ("n_noise", n_noise)):
        if value is not None:
            fields[name] = value
    if eps is not None:
        if not set(fields["methods"]) & set(EPS_METHODS):
            raise ConfigError(
                f"--eps is the budget of pgd-l2 and pgd-linf; --method {','.join(fields['methods'])} takes --ratio"
            )
        fields["eps"] = {m: eps for m in EPS_METHODS}
    if ratio is not None:
        if not set(fields["methods"]) & set(RATIO_METHODS):
            raise ConfigError(
                f"--ratio is the budget of pgd-l0, cfe-l2 and pcfe-l0; --method {','.join(fields['methods'])} takes --eps"
            )
        fields["ratio"] = {m: ratio for m in RATIO_METHODS}
    explicit = sweeps is not None and len(sweeps) > 0
    if explicit and any(isinstance(s, str) and s.strip().lower() == "none" for s in sweeps):
        if len(sweeps) > 1:
            raise ConfigError("--sweep none runs the base configurations only; give it alone")
        fields["curves"], explicit = (), False
    elif explicit:
        fields["curves"] = tuple(parse_sweep(s) if isinstance(s, str) else s for s in sweeps)
    elif not keep_preset_curves:
        fields["curves"] = ()
    # keep only the budgets of the selected methods, so the plan records what runs
    fields["eps"] = {m: v for m, v in fields["eps"].items() if m in fields["methods"]}
    fields["ratio"] = {m: v for m, v in fields["ratio"].items() if m in fields["methods"]}
    plan = Plan(**fields)
    if explicit:
        plan.check_curves_apply()
    return plan, explicit


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _solver_configs(plan: Plan, settings: Settings) -> dict[str, Any]:
    """Each method's solver config at the base point, per distribution (an infinite box side shows as null)."""
    out = {}
    for m in plan.methods:
        for d in plan.dists:
            cfg = solver_config(plan.base_point(m, d, plan.variants[0], plan.seeds[0]), settings)
            out[f"{m}/{d}"] = {k: _finite(v) for k, v in cfg.to_dict().items()}
    return out


def _labels() -> dict[str, tuple[str, ...]]:
    return {"method": METHODS, "dist": DISTS, "variant": VARIANTS}


def _record(
    plan: Plan,
    settings: Settings,
    *,
    preset: str,
    device: torch.device,
    device_arg: str,
    argv,
    n_points: int,
    resumed: int,
    command: str,
) -> dict[str, Any]:
    return make_record(
        "synth-results",
        {
            "command": command,
            "preset": preset,
            "plan": plan.to_dict(),
            "settings": settings.to_dict(),
            "device": device_arg,
            "cpu_threads": torch.get_num_threads() if device.type == "cpu" else None,
        },
        seeds={
            "seeds": list(plan.seeds),
            "per_configuration": "derived from (seed, what each draw depends on) by sha256",
        },
        device=device,
        argv=argv,
        plan=plan.to_dict(),
        settings=settings.to_dict(),
        preset=preset,
        n_points=n_points,
        resumed_points=resumed,
        solver_configs=_solver_configs(plan, settings),
        columns={
            "points": ["method", "dist", "variant", "dim", "hidden", "n_natural", "n_noise", "seed", "eps", "ratio"],
            "results": list(ROW_FIELDS),
            "timing": list(TIMING_FIELDS),
        },
        protocol="lfp synth v1: natural network on n random-label samples; baseline and perturbation-trained networks "
        "from the same initial weights on m noise samples with random targets; accuracies on the n natural samples",
    )


def _write(out, rows, record, force) -> None:
    write_results(
        out, rows, record=record, result_fields=ROW_FIELDS, timing_fields=TIMING_FIELDS, labels=_labels(), force=force
    )


def synth_run(
    out: str | Path | None = None,
    *,
    preset: str = "quick",
    method: str = "pgd-l2",
    dist: str = "uniform",
    variant: str = "noise",
    dim: int | None = None,
    hidden: int | None = None,
    n_natural: int | None = None,
    n_noise: int | None = None,
    eps: float | None = None,
    ratio: float | None = None,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    device: str = "auto",
    force: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run one configuration: ``preset``'s base values, with every given argument replacing the preset's.

    Returns ``{"row": ..., "point": ..., "solver_config": ..., "settings": ..., "device", "out"}``; with ``out``,
    also writes a one-row results file (the same kind ``synth_sweep`` writes).
    """
    if out is not None:
        check_output(out, force, RESULT_SUFFIXES)
    check_seed(seed)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    plan, _ = _plan(
        preset,
        methods=[method],
        dists=[dist],
        variants=[variant],
        seeds=[seed],
        dim=dim,
        hidden=hidden,
        n_natural=n_natural,
        n_noise=n_noise,
        eps=eps,
        ratio=ratio,
        keep_preset_curves=False,
    )
    s = _settings(preset_fields(preset)[1], settings)
    dev = resolve_device(device)
    point = plan.base_point(method, dist, variant, seed)
    cfg = solver_config(point, s)
    started = time.perf_counter()
    row = run_point(point, s, device=dev, progress=progress)
    if out is not None:
        record = _record(
            plan, s, preset=preset, device=dev, device_arg=device, argv=argv, n_points=1, resumed=0, command="run"
        )
        _write(out, [row], record, force)
    return {
        "out": str(out) if out is not None else None,
        "kind": "synth-results" if out is not None else None,
        "preset": preset,
        "point": point.to_dict(),
        "row": row,
        "solver_config": {k: _finite(v) for k, v in cfg.to_dict().items()},
        "settings": s.to_dict(),
        "device": str(dev),
        "seconds": time.perf_counter() - started,
    }


def synth_sweep(
    out: str | Path,
    *,
    preset: str = "quick",
    methods: str | list[str] | None = None,
    dists: str | list[str] | None = None,
    variants: str | list[str] | None = None,
    seeds: str | list[int] | None = None,
    dim: int | None = None,
    hidden: int | None = None,
    n_natural: int | None = None,
    n_noise: int | None = None,
    eps: float | None = None,
    ratio: float | None = None,
    sweeps: list[str] | None = None,
    settings: dict[str, Any] | None = None,
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run a sweep and write its results file ``out``.

    The plan is ``preset``'s, with every given value replacing the preset's: ``methods``, ``dists``,
    ``variants``, ``seeds`` (comma-separated text or lists), the base values, and ``sweeps`` (``"KEY=V1,V2"`` or
    ``"METHOD:KEY=V1,V2"``), which replace the preset's curves (``["none"]``: no curve, the base configurations only). ``settings`` replaces fields of
    :class:`lfpcli.synth.Settings`. Finished configurations go to ``OUT.resume/`` as they finish; ``resume`` continues
    from there a sweep of the same plan, settings and device (another plan is refused, naming what differs); without
    it leftover progress is an error unless ``force`` starts over; the folder is removed once ``out`` is written. Ctrl-C
    raises :class:`lfpcli.errors.Interrupted` saying what was kept, as every command that resumes.
    """
    check_output(out, force, RESULT_SUFFIXES)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    plan, _ = _plan(
        preset,
        methods=methods,
        dists=dists,
        variants=variants,
        seeds=seeds,
        dim=dim,
        hidden=hidden,
        n_natural=n_natural,
        n_noise=n_noise,
        eps=eps,
        ratio=ratio,
        sweeps=sweeps,
    )
    s = _settings(preset_fields(preset)[1], settings)
    dev = resolve_device(device)
    points = plan.points()
    for p in points:  # every solver config is valid before any work starts
        solver_config(p, s)
    identity = {
        "plan": {**plan.to_dict(), "curves": [c.text() if len(c.methods) <= 1 else c.to_dict() for c in plan.curves]},
        "settings": s.to_dict(),
        "preset": preset,
        "device": dev.type,
        # the last bits of CPU results depend on the thread count: a resume must use the same
        "cpu_threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "versions": {"lfpcli": version.__version__, "torch": torch.__version__},
        "n_points": len(points),
    }
    store = Sidecar(out, identity, resume=resume, force=force)
    done = {}
    for unit in store.units():
        if unit.startswith("row-"):
            i = int(unit.split("-", 1)[1])
            if 0 <= i < len(points):
                row = store.load(unit)
                if isinstance(row, dict) and _matches(row, points[i]):
                    done[i] = row
    resumed = len(done)
    saved = [resumed]

    def keep(i: int, row: dict[str, Any]) -> None:
        store.save(f"row-{i:06d}", row)
        saved[0] += 1

    started = time.perf_counter()
    try:
        with store:
            rows = run_sweep(points, s, device=dev, done=done, on_row=keep, progress=progress)
    except KeyboardInterrupt:
        raise Interrupted(store.interrupted(saved[0], len(points), "configurations")) from None
    record = _record(
        plan,
        s,
        preset=preset,
        device=dev,
        device_arg=device,
        argv=argv,
        n_points=len(points),
        resumed=resumed,
        command="sweep",
    )
    _write(out, rows, record, force)
    store.finish()
    from lfpcli.synth.plot import summarize

    return {
        "out": str(out),
        "kind": "synth-results",
        "preset": preset,
        "n_points": len(points),
        "resumed_points": resumed,
        "device": str(dev),
        "seconds": time.perf_counter() - started,
        "plan": plan.to_dict(),
        "settings": s.to_dict(),
        "summary": summarize(rows, plan),
    }


def _matches(row: dict[str, Any], point: Point) -> bool:
    try:
        return all(row[k] == v for k, v in point.to_dict().items())
    except (KeyError, TypeError):
        return False


def synth_plot(
    results: str | Path,
    out: str | Path | None = None,
    *,
    methods: str | list[str] | None = None,
    dists: str | list[str] | None = None,
    force: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """The summary of a results file (mean, std, min, max over seeds per curve point) and, with ``out``, its
    figure: accuracy against each swept key, perturbation-trained against baseline, one panel per method and
    distribution; ``methods`` / ``dists`` keep only those panels."""
    del progress, argv
    if out is not None:
        check_output(out, force, FIGURE_SUFFIXES)
    rows, record = read_results(results)
    try:
        plan = Plan.from_dict(record.get("plan") or {})
    except InputError as e:
        raise ArtifactError(f"{results}: its record holds no usable plan ({e}); the file is damaged") from None
    keep_m, keep_d = _split(methods), _split(dists)
    for name, kept, allowed in (("method", keep_m, METHODS), ("distribution", keep_d, DISTS)):
        for k in kept or ():
            if k not in allowed:
                raise ConfigError(f"unknown {name} '{k}'; choose one of {', '.join(allowed)}")
    if keep_m or keep_d:
        sel_m = tuple(m for m in plan.methods if not keep_m or m in keep_m)
        sel_d = tuple(d for d in plan.dists if not keep_d or d in keep_d)
        if not sel_m or not sel_d:
            raise InputError(
                f"{results} has no results for --method {','.join(keep_m or plan.methods)} "
                f"--dist {','.join(keep_d or plan.dists)} (it has {', '.join(plan.methods)} on {', '.join(plan.dists)})"
            )
        plan = dataclasses.replace(plan, methods=sel_m, dists=sel_d)
        rows = [r for r in rows if r["method"] in sel_m and r["dist"] in sel_d]
    from lfpcli.synth.plot import make_figure, summarize

    summary = summarize(rows, plan)
    if out is not None:
        if not summary["curves"]:
            raise InputError(
                f"{results} holds single configurations, no swept key to plot against; "
                f"make one with lfp synth sweep --sweep KEY=V1,V2,..."
            )
        symbols = {"dim": "d", "hidden": "h", "n_natural": "n", "n_noise": "m"}
        fixed = ", ".join(
            f"{symbols[k]} = {getattr(plan, k)}" for k in symbols if not any(c.key == k for c in plan.curves)
        )
        fig = make_figure(summary, title=f"{Path(results).name}: {fixed}" if fixed else Path(results).name)
        save_figure(fig, out, force=force)
    return {
        "results": str(results),
        "out": str(out) if out is not None else None,
        "rows": len(rows),
        "preset": record.get("preset"),
        "plan": plan.to_dict(),
        "settings": record.get("settings"),
        "device": record.get("device"),
        "created": record.get("created"),
        "summary": summary,
    }
