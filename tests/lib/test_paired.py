"""Paired differences and the Student-t quantile behind ``lfp report --baseline``, against SciPy."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from lfpcli.report.paired import incomplete_beta, paired_difference, t_cdf, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 19, 60, 1000])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.975, 0.995, 0.9999, 0.025])
def test_t_quantile_matches_scipy(df, p):
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-12)
    assert t_cdf(stats.t.ppf(p, df), df) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.3), (2.0, 0.5, 0.9), (10.0, 0.5, 0.99), (1.5, 3.0, 0.01)])
def test_incomplete_beta_matches_scipy(a, b, x):
    from scipy.special import betainc

    assert incomplete_beta(a, b, x) == pytest.approx(betainc(a, b, x), rel=1e-10)


def test_paired_difference_by_hand():
    a = {"0": 0.70, "1": 0.60, "2": 0.65, "3": 0.9}
    base = {"0": 0.50, "1": 0.55, "2": 0.52, "4": 0.1}
    d = paired_difference(a, base)
    diffs = [0.20, 0.05, 0.13]
    assert d["n"] == 3 and d["seeds"] == ["0", "1", "2"] and d["unpaired"] == ["3", "4"]
    assert d["mean"] == pytest.approx(statistics.mean(diffs))
    half = stats.t.ppf(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3)
    assert d["ci"] == pytest.approx([statistics.mean(diffs) - half, statistics.mean(diffs) + half])


def test_one_pair_has_no_interval_and_none_has_no_mean():
    assert paired_difference({"0": 0.5}, {"0": 0.25})["ci"] is None
    assert paired_difference({"0": 0.5}, {"0": 0.25})["mean"] == 0.25
    assert paired_difference({"0": 0.5}, {"1": 0.25})["mean"] is None
