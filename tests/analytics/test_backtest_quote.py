"""Backtests that pay the spread (``fills="quote"``, issue #17).

The hand-worked test writes every fill, cost and the net PnL out by hand; the others
check the identities of the module docstring (net = gross - spread - fees - slippage,
``fills="last"`` unchanged) and refuse what cannot be filled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.backtest import (
    BacktestParams,
    Quotes,
    quoted_rows,
    run_backtest,
    trades_frame,
)

TS = np.arange(10, dtype=np.int64) * 1_000
#: Decisions at the close of bar t fill at bar t + 1 (entry 2, exit 0):
#: bar 1 z=2.5 -> short, fills at 2; bar 3 z=-0.1 -> exit, fills at 4;
#: bar 5 z=-2.5 -> long, fills at 6; bar 7 z=0.5 -> exit, fills at 8.
Z = np.array([0.0, 2.5, 1.0, -0.1, 0.0, -2.5, -1.0, 0.5, 0.0, 0.0])
BETA = np.full(10, 2.0)  # raw prices: h = 2 units of B per unit of A
#                  bar:  0      1      2      3      4     5      6      7      8      9
BID_A = np.array([100.0, 100.0, 100.0, 99.5, 99.0, 98.5, 98.0, 98.6, 99.0, 99.0])
ASK_A = np.array([100.2, 100.2, 100.2, 99.7, 99.2, 98.7, 98.4, 98.8, 99.2, 99.2])
BID_B = np.array([50.0, 50.0, 50.0, 49.9, 49.9, 49.5, 49.0, 49.1, 49.1, 49.1])
ASK_B = np.array([50.1, 50.1, 50.1, 50.0, 50.0, 49.6, 49.2, 49.2, 49.2, 49.2])
MID_A = (BID_A + ASK_A) / 2
MID_B = (BID_B + ASK_B) / 2
QUOTES = Quotes(BID_A, ASK_A, BID_B, ASK_B)


def _run(fills: str, fee_bps: float = 10.0, **kw):
    return run_backtest(
        TS, kw.pop("price_a", MID_A), kw.pop("price_b", MID_B), kw.pop("beta", BETA), Z,
        params=BacktestParams(entry=2.0, exit=0.0, fee_bps=fee_bps, fills=fills),
        tf_ms=1_000, quotes=QUOTES, **kw,
    )


def test_two_round_trips_by_hand():
    res = _run("quote")
    t1, t2 = res.trades
    # Trade 1, short the spread (s = -1), h = 2.
    #   entry, bar 2: SELL 1 A at the bid 100.0 (mid 100.1); BUY 2 B at the ask 50.1
    #                 (mid 50.05)
    #   exit,  bar 4: BUY 1 A at the ask 99.2 (mid 99.1); SELL 2 B at the bid 49.9
    #                 (mid 49.95)
    #   gross on mids = -((99.1 - 100.1) - 2 * (49.95 - 50.05)) = 0.8
    #   spread cost   = (100.1 - 100.0) + 2 * (50.1 - 50.05)
    #                 + (99.2 - 99.1) + 2 * (49.95 - 49.9)  = 0.1 + 0.1 + 0.1 + 0.1 = 0.4
    #   fills' PnL    = A: 100.0 - 99.2 = 0.8;  B: 2 * (49.9 - 50.1) = -0.4;  = 0.4
    #   fees (10 bps) = 0.001 * ((100.0 + 2 * 50.1) + (99.2 + 2 * 49.9))
    #                 = 0.001 * (200.2 + 199.0) = 0.3992
    #   net           = 0.8 - 0.4 - 0.3992 = 0.0008
    assert (t1.side, t1.entry_index, t1.exit_index) == (-1, 2, 4)
    assert (t1.entry_fill_a, t1.entry_fill_b) == (100.0, 50.1)
    assert (t1.exit_fill_a, t1.exit_fill_b) == (99.2, 49.9)
    assert (t1.entry_bid_a, t1.entry_ask_a, t1.entry_bid_b, t1.entry_ask_b) == (
        100.0, 100.2, 50.0, 50.1)
    assert (t1.exit_bid_a, t1.exit_ask_a, t1.exit_bid_b, t1.exit_ask_b) == (
        99.0, 99.2, 49.9, 50.0)
    assert t1.gross == pytest.approx(0.8, abs=1e-12)
    assert t1.spread_cost == pytest.approx(0.4, abs=1e-12)
    assert t1.fees == pytest.approx(0.3992, abs=1e-12)
    assert t1.pnl == pytest.approx(0.0008, abs=1e-12)
    # Trade 2, long the spread (s = +1), h = 2.
    #   entry, bar 6: BUY 1 A at the ask 98.4 (mid 98.2); SELL 2 B at the bid 49.0
    #                 (mid 49.1)
    #   exit,  bar 8: SELL 1 A at the bid 99.0 (mid 99.1); BUY 2 B at the ask 49.2
    #                 (mid 49.15)
    #   gross on mids = (99.1 - 98.2) - 2 * (49.15 - 49.1) = 0.9 - 0.1 = 0.8
    #   spread cost   = (98.4 - 98.2) + 2 * (49.1 - 49.0)
    #                 + (99.1 - 99.0) + 2 * (49.2 - 49.15)  = 0.2 + 0.2 + 0.1 + 0.1 = 0.6
    #   fills' PnL    = A: 99.0 - 98.4 = 0.6;  B: 2 * (49.0 - 49.2) = -0.4;  = 0.2
    #   fees (10 bps) = 0.001 * ((98.4 + 2 * 49.0) + (99.0 + 2 * 49.2))
    #                 = 0.001 * (196.4 + 197.4) = 0.3938
    #   net           = 0.8 - 0.6 - 0.3938 = -0.1938
    assert (t2.side, t2.entry_index, t2.exit_index) == (1, 6, 8)
    assert (t2.entry_fill_a, t2.entry_fill_b) == (98.4, 49.0)
    assert (t2.exit_fill_a, t2.exit_fill_b) == (99.0, 49.2)
    assert t2.gross == pytest.approx(0.8, abs=1e-12)
    assert t2.spread_cost == pytest.approx(0.6, abs=1e-12)
    assert t2.fees == pytest.approx(0.3938, abs=1e-12)
    assert t2.pnl == pytest.approx(-0.1938, abs=1e-12)
    # The result: gross, spread cost, fees and net apart.
    assert res.gross_pnl == pytest.approx(1.6, abs=1e-12)
    assert res.total_spread_cost == pytest.approx(1.0, abs=1e-12)
    assert res.total_fees == pytest.approx(0.7930, abs=1e-12)
    assert res.total_pnl == pytest.approx(0.0008 - 0.1938, abs=1e-12)
    # The equity marks to the mids and books each fill's spread cost and fees at its bar.
    assert res.equity[-1] == pytest.approx(res.total_pnl, abs=1e-12)
    assert res.equity[1] == 0.0
    # bar 2: the short's entry costs, spread 0.2 and fees 0.2002
    assert res.equity[2] == pytest.approx(-0.4002, abs=1e-12)
    # capital: the largest entry notional at the fills
    assert res.capital == pytest.approx(200.2, abs=1e-12)


def test_last_fills_are_unchanged_and_the_gross_is_shared():
    quote, last = _run("quote"), _run("last")
    for tq, tl in zip(quote.trades, last.trades, strict=True):
        assert (tq.entry_index, tq.exit_index, tq.hedge) == (tl.entry_index, tl.exit_index,
                                                             tl.hedge)
        assert tq.gross == tl.gross
        assert tl.spread_cost == 0.0
        assert (tl.entry_fill_a, tl.exit_fill_b) == (tl.entry_a, tl.exit_b)
        assert tl.entry_bid_a is None
    # without quotes the default fills do not need any
    plain = run_backtest(TS, MID_A, MID_B, BETA, Z, params=BacktestParams(fee_bps=10.0),
                         tf_ms=1_000)
    assert [t.pnl for t in plain.trades] == [t.pnl for t in last.trades]
    assert plain.total_spread_cost == 0.0


def test_net_equals_the_fills_pnl_on_trade_prices():
    """On trade prices the spread cost is the distance from the last print to the quote
    crossed (it may be negative); net is still the PnL of the fills, minus fees."""
    rng = np.random.default_rng(7)
    last_a = MID_A + rng.uniform(-0.15, 0.15, 10)  # prints inside and outside the quote
    last_b = MID_B + rng.uniform(-0.08, 0.08, 10)
    res = _run("quote", price_a=last_a, price_b=last_b)
    assert len(res.trades) == 2
    for t in res.trades:
        s, h = t.side, t.hedge
        fills_pnl = s * ((t.exit_fill_a - t.entry_fill_a) - h * (t.exit_fill_b - t.entry_fill_b))
        assert t.pnl == pytest.approx(fills_pnl - t.fees, abs=1e-12)
        assert t.gross - t.spread_cost == pytest.approx(fills_pnl, abs=1e-12)


def test_negative_hedge_trades_b_the_same_way_as_a():
    """Long the spread with h < 0 is long A and long |h| B: both legs buy at entry."""
    res = _run("quote", beta=np.full(10, -0.5))
    t1 = res.trades[0]  # short: sells A at the bid, sells |h| B (-h B bought) at the bid
    assert (t1.entry_fill_a, t1.entry_fill_b) == (BID_A[2], BID_B[2])
    assert (t1.exit_fill_a, t1.exit_fill_b) == (ASK_A[4], ASK_B[4])
    half = (ASK_A - BID_A) / 2 + 0.5 * (ASK_B - BID_B) / 2
    assert t1.spread_cost == pytest.approx(half[2] + half[4], abs=1e-12)


def test_quote_fills_refuse_missing_or_crossed_quotes():
    with pytest.raises(ValueError, match="needs quotes"):
        run_backtest(TS, MID_A, MID_B, BETA, Z, params=BacktestParams(fills="quote"),
                     tf_ms=1_000)
    crossed = Quotes(ASK_A, BID_A, BID_B, ASK_B)
    with pytest.raises(ValueError, match="crossed"):
        run_backtest(TS, MID_A, MID_B, BETA, Z, params=BacktestParams(fills="quote"),
                     tf_ms=1_000, quotes=crossed)
    nan = BID_A.copy()
    nan[0] = math.nan
    with pytest.raises(ValueError, match="bid_a"):
        run_backtest(TS, MID_A, MID_B, BETA, Z, params=BacktestParams(fills="quote"),
                     tf_ms=1_000, quotes=Quotes(nan, ASK_A, BID_B, ASK_B))
    with pytest.raises(ValueError, match="fills"):
        BacktestParams(fills="mid")


def test_quoted_rows_cuts_the_rows_before_both_books():
    a = np.array([np.nan, np.nan, 1.0, 1.0])
    b = np.array([np.nan, 2.0, 2.0, 2.0])
    assert quoted_rows(a, b) == 2
    assert quoted_rows(np.full(3, np.nan)) == 3


def test_trades_frame_has_the_fills_and_quotes():
    frame = trades_frame(_run("quote"))
    for col in ("entry_fill_a", "exit_fill_b", "entry_bid_a", "exit_ask_b", "spread_cost"):
        assert col in frame
        assert frame[col].dtype == np.float64
    assert frame["spread_cost"].sum() == pytest.approx(1.0, abs=1e-12)
