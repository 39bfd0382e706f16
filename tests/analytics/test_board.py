"""Board rows and board diffs on the real recorded tapes, against pandas."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analytics.bars import bars_from_ticks
from analytics.board import (
    CELL_FIELDS,
    apply_diff,
    board_row,
    diff_boards,
    row_cells,
    sig,
    spark_update,
    top_by_volume,
)


def _cut(cols: dict, end_ms: int) -> dict:
    keep = cols["time_ms"] < end_ms
    return {k: v[keep] for k, v in cols.items()}


def _board_inputs(cols: dict, end_ms: int):
    """Closed bars at ``end_ms`` (every trade before it is in a closed 1 s bar; 1 m bars
    only for whole minutes) and the frame of those trades."""
    ticks = _cut(cols, end_ms // 1000 * 1000)
    b1s = bars_from_ticks(**ticks, tf_ms=1_000)
    b1m = bars_from_ticks(**ticks, tf_ms=60_000)
    b1m = b1m.take(slice(0, int(np.searchsorted(b1m.ts, end_ms - 60_000, side="right"))))
    frame = pd.DataFrame({"t": ticks["time_ms"], "p": ticks["price"], "q": ticks["qty"]})
    return b1m, b1s, frame


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_row_numbers_equal_pandas_on_the_trades(sample_ticks, symbol):
    cols = sample_ticks[symbol]
    end = int(cols["time_ms"][0]) + 250_500  # mid-minute: 1 m bars + recent 1 s bars
    b1m, b1s, df = _board_inputs(cols, end)
    assert len(b1m) >= 3 and b1s.ts[-1] > b1m.ts[-1] + 60_000  # both parts are used
    last = float(df.p.iloc[-1])
    row = board_row(symbol, symbol, "spot", b1m, b1s, last, end, bid=last - 0.01,
                    ask=last + 0.01)
    assert row.last == last
    assert row.change_pct == pytest.approx((last / df.p.iloc[0] - 1) * 100, rel=1e-12)
    assert row.volume == pytest.approx(float((df.p * df.q).sum()), rel=1e-10)
    recent = df[(df.t // 1000 * 1000) >= end - 60_000]
    assert row.trades_per_min == len(recent)
    assert row.volume_per_min == pytest.approx(float((recent.p * recent.q).sum()), rel=1e-10)
    assert row.spread_bps == pytest.approx(1e4 * 0.02 / last, rel=1e-9)


def test_row_without_bars_or_quote_is_blank_not_zero(sample_ticks):
    empty = bars_from_ticks(**_cut(sample_ticks["BTCUSDT"], 0), tf_ms=1_000)
    row = board_row("X", "X", "perp", empty, empty, None, None)
    cells = row_cells(row)
    assert cells["last"] is None and cells["change_pct"] is None
    assert cells["spread_bps"] is None and cells["volume"] == 0.0
    assert cells["trades_per_min"] == 0


def test_cells_carry_the_precision_shown():
    for x in (61_234_567.89, 0.000123456, 999.5, 1.0, -42.42):
        assert sig(x) == float(f"{x:.3g}")
    assert sig(float("nan")) is None and sig(0.0) == 0.0


def _board(sample_ticks, end_ms: int) -> dict:
    rows = {}
    for s, cols in sample_ticks.items():
        b1m, b1s, df = _board_inputs(cols, end_ms)
        rows[s] = row_cells(board_row(s, s, "spot", b1m, b1s, float(df.p.iloc[-1]), end_ms))
    return rows


def test_diff_of_two_real_boards_rebuilds_the_new_one(sample_ticks):
    t0 = int(min(c["time_ms"][0] for c in sample_ticks.values()))
    old, new = _board(sample_ticks, t0 + 200_000), _board(sample_ticks, t0 + 201_000)
    diff = diff_boards(old, new)
    # independent count: pandas compares the two boards cell by cell
    a = pd.DataFrame(old).T[list(CELL_FIELDS)]
    b = pd.DataFrame(new).T[list(CELL_FIELDS)]
    differs = ~((a == b) | (a.isna() & b.isna()))
    assert diff.cells == int(differs.to_numpy().sum()) > 0
    assert json.loads(json.dumps(apply_diff(old, diff))) == new
    assert diff_boards(new, new).cells == 0 and not diff_boards(new, new).added


def test_diff_adds_and_removes_rows(sample_ticks):
    t0 = int(min(c["time_ms"][0] for c in sample_ticks.values()))
    board = _board(sample_ticks, t0 + 120_000)
    one = {"BTCUSDT": board["BTCUSDT"]}
    grown = diff_boards(one, board)
    assert [r["name"] for r in grown.added] == ["ETHUSDT"] and grown.cells == 0
    assert apply_diff(one, grown) == board
    shrunk = diff_boards(board, one)
    assert shrunk.removed == ["ETHUSDT"] and apply_diff(board, shrunk) == one


def test_spark_update_appends_only_new_closes(sample_bars_1s):
    bars = sample_bars_1s["ETHUSDT"]
    ts, close = bars.ts, bars.close
    first = spark_update(ts[:100], close[:100], None, 60)
    assert first.full and first.ts == ts[99]
    assert first.closes == [float(f"{c:.6g}") for c in close[40:100]]
    more = spark_update(ts[:103], close[:103], int(ts[99]), 60)
    assert not more.full and more.closes == [float(f"{c:.6g}") for c in close[100:103]]
    assert spark_update(ts[:103], close[:103], int(ts[102]), 60) is None
    # a ts the bars do not hold (another timeframe) or too far behind: the whole line
    assert spark_update(ts[:103], close[:103], int(ts[0]) + 1, 60).full
    assert spark_update(ts[:300], close[:300], int(ts[99]), 60).full


def test_top_by_volume_ranks_ties_by_name():
    rows = {n: {"name": n, "volume": v} for n, v in
            [("B", 5.0), ("A", 5.0), ("C", 9.0), ("D", None)]}
    assert top_by_volume(rows, 3) == ["C", "A", "B"]
