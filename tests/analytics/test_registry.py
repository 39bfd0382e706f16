"""The analytics registry: one declaration per pair and bar figure, and everything that
lists columns derives from it (records, engine buffer, frames, requirements, KPIs).

The live-vs-dataset parity runs on the real recorded tape: an engine fed the trades one
by one (registered early, so most of the day is incremental) against the batch build of
an uploaded dataset (:func:`analytics.features.pair_from_bars`), column by column for
every declared column, through the one :func:`analytics.registry.pair_table`.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from analytics.bars import Bar, Bars, bars_from_ticks
from analytics.engine import MarketEngine, PairColumns
from analytics.features import pair_from_bars
from analytics.live import PairPoint
from analytics.pair import PairSeries, pair_series, requirements
from analytics.registry import (
    BAR_COLUMNS,
    BAR_DTYPES,
    BAR_FIELDS,
    BAR_FIGURES,
    KPI_FIGURES,
    PAIR_COLUMNS,
    PAIR_DTYPES,
    PAIR_FIGURES,
    STATISTICS,
    pair_table,
)
from tests.analytics.test_engine import A, B, feed, merged


def test_each_pair_figure_is_declared_once_with_everything_it_needs():
    assert len(set(PAIR_COLUMNS)) == len(PAIR_COLUMNS)
    assert PAIR_COLUMNS[:3] == ("ts", "price_a", "price_b")  # the carried inputs first
    assert PAIR_DTYPES["ts"] is np.int64
    for fig in PAIR_FIGURES:
        assert fig.description and fig.display.label and fig.twin_kind, fig.name
        assert callable(fig.batch) and callable(fig.twin), fig.name
        format(1.5 if fig.dtype is np.float64 else 15, fig.display.fmt)  # a valid spec
    assert [f.name for f in STATISTICS] == [c for c in PAIR_COLUMNS if c not in PAIR_COLUMNS[:3]]
    slots = [f.display.kpi for f in KPI_FIGURES]
    assert slots == sorted(slots) and len(set(slots)) == len(slots)
    assert {"beta", "alpha", "corr"} <= {f.name for f in KPI_FIGURES}


@pytest.mark.parametrize("record,extra", [
    (PairSeries, ("window", "regression", "prices")),
    (PairColumns, ()),
    (PairPoint, ("n",)),
])  # fmt: skip
def test_record_types_are_generated_from_the_registry(record, extra):
    names = tuple(f.name for f in dataclasses.fields(record))
    assert names == PAIR_COLUMNS + extra
    assert record.__dataclass_params__.frozen


def test_a_pair_series_pickles_for_the_forked_jobs():
    ts = np.arange(40) * 1000
    a = 100 + np.sin(np.arange(40))
    b = 50 + np.cos(np.arange(40) / 3)
    ps = pair_series(ts, a, b, window=5)
    back = pickle.loads(pickle.dumps(ps))
    assert type(back) is PairSeries
    for c in PAIR_COLUMNS:
        np.testing.assert_array_equal(getattr(back, c), getattr(ps, c))


def test_requirements_cover_every_statistic():
    for regression in ("ols", "kalman"):
        req = requirements(30, regression)
        assert all(req[f.name] >= 1 for f in STATISTICS)


def test_bar_fields_are_the_declared_stored_ones():
    assert BAR_FIELDS == tuple(f.name for f in dataclasses.fields(Bar))
    assert BAR_FIELDS == tuple(f.name for f in BAR_FIGURES if f.stored)
    assert BAR_COLUMNS == (
        "ts", "open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap",
        "buy_volume",
        "bid", "ask", "bid_qty", "ask_qty", "mid", "spread_bps", "spread_bps_twa", "imbalance",
    )  # fmt: skip  (the /api/bars order: the trade columns, then the top of book's)
    assert not any(f.stored for f in BAR_FIGURES if f.book)  # the trade-bar row is unchanged
    empty = Bars.empty(1000)
    for f in BAR_FIELDS:
        assert getattr(empty, f).dtype == BAR_DTYPES[f], f


@pytest.mark.parametrize("regression,prices", [("ols", "raw"), ("huber", "log"),
                                               ("kalman", "log")])  # fmt: skip
def test_live_incremental_table_equals_the_dataset_table(sample_ticks, regression, prices):
    rows = merged(sample_ticks)
    eng = MarketEngine([A, B])
    sel = (A, B, 1_000, 30, regression, prices)
    feed(eng, rows, register=sel, register_at=len(rows) // 5)  # mostly incremental
    eng.on_clock(rows[-1][0] + 60_000)
    live = pair_table(eng.pair(*sel).series)
    bars = [bars_from_ticks(**sample_ticks[s], tf_ms=1_000) for s in (A, B)]
    _, series = pair_from_bars(*bars, window=30, regression=regression, prices=prices)
    dataset = pair_table(series)
    assert tuple(live.columns) == tuple(dataset.columns) == PAIR_COLUMNS
    assert len(live) == len(dataset) > 600
    scale = float(dataset["price_a"].abs().max())
    for fig in PAIR_FIGURES:
        got, want = live[fig.name].to_numpy(), dataset[fig.name].to_numpy()
        if fig.warmup is None:
            np.testing.assert_array_equal(got, want, err_msg=fig.name)
        else:
            atol = 1e-9 * scale if fig.name in ("alpha", "spread") else 1e-9
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=atol, equal_nan=True,
                                       err_msg=fig.name)  # fmt: skip
