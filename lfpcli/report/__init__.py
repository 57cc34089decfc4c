"""Results across runs: eval reports grouped by their provenance and reduced over seeds into the paper's tables
(:mod:`lfpcli.report.aggregate`, :mod:`lfpcli.report.tables`), and training curves from checkpoints
(:mod:`lfpcli.report.curves`). The compact chain summary an eval report carries comes from
:mod:`lfpcli.report.provenance`. Nothing here prints."""

from lfpcli.report.aggregate import (
    BY_KEYS,
    METRICS,
    Run,
    aggregate,
    load_run,
    load_runs,
    parse_where,
)
from lfpcli.report.curves import curve_panels, make_figure
from lfpcli.report.provenance import chain_summary
from lfpcli.report.tables import FORMATS, LAYOUTS, SCALES, render

__all__ = [
    "BY_KEYS",
    "FORMATS",
    "LAYOUTS",
    "METRICS",
    "SCALES",
    "Run",
    "aggregate",
    "chain_summary",
    "curve_panels",
    "load_run",
    "load_runs",
    "make_figure",
    "parse_where",
    "render",
]
