"""Section ``screen`` of ``python -m benchmarks.market`` (benchmarks/_market_screen.py):
its data is derived from the real 1 m returns and deterministic, and its quick run
reports a screen that equals statsmodels on every pair it compared."""

from __future__ import annotations

import numpy as np

from benchmarks import _market_screen as bench


def test_data_is_real_returns_rotated_per_group_and_deterministic():
    r22, r20 = bench.real_returns()
    assert len(r22) == len(r20) == 1439
    a, b = bench.day_of_closes(10), bench.day_of_closes(10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1440, 10) and np.all(a > 0)
    # inside a group the log prices share the group's real trend: their returns
    # correlate far more than across groups
    r = np.diff(np.log(a), axis=0)
    c = np.corrcoef(r, rowvar=False)
    assert c[0, 1] > 0.5 and abs(c[0, 5]) < c[0, 1]


def test_quick_run_reports_exact_and_faster_figures():
    rows, figs = bench.run(quick=True)
    top = figs["tops"]["20"]
    assert top["pairs"] == 190 and top["bars"] == 1440 and top["maxlag"] == 12
    assert top["lags_equal"] == f"{top['statsmodels_pairs_run']}/{top['statsmodels_pairs_run']}"
    assert top["max_rel_diff_stat"] < 1e-9
    assert top["ratio"] > 1.0
    assert top["prefilter_candidates"] == 40  # the 4 groups' 10 pairs each
    assert any("ratio" in label for label, _ in rows)
