"""Backtest: hand-worked oracle trades, signs, fills one bar after the signal, costs,
no look-ahead, and the metrics' definitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.align import align_pair
from analytics.backtest import BacktestParams, run_backtest, trades_frame
from analytics.errors import InsufficientData
from analytics.pair import pair_series

TS = np.arange(10, dtype=np.int64) * 1000


def bt(a, b, beta, z, **kw):
    prices = kw.pop("prices", "raw")
    n = len(a)
    return run_backtest(
        TS[:n], np.asarray(a, float), np.asarray(b, float),
        np.broadcast_to(np.asarray(beta, float), (n,)), np.asarray(z, float),
        params=BacktestParams(**kw), tf_ms=1000, prices=prices,
    )


# A hand-made spread: B is flat at 100, beta = 1, so spread = A - 100 (minus alpha).
A1 = [110, 112, 111, 108, 105, 103, 101, 104, 106, 107]
Z1 = [0.0, 2.5, 1.0, 0.5, -0.2, -1.0, -2.4, -1.0, 0.3, 0.1]


def test_short_the_spread_above_entry_makes_money_when_it_falls():
    r = bt(A1, [100] * 10, 1.0, Z1)
    # By hand: z_1 = 2.5 > 2 -> short decided at bar 1, filled at bar 2 (A = 111).
    # z_4 = -0.2 <= 0 closes: decided at bar 4, filled at bar 5 (A = 103).
    # pnl = -1 * ((103 - 111) - 1 * (100 - 100)) = +8: the spread fell, the short won.
    # z_6 = -2.4 < -2 -> long decided at 6, filled at 7 (A = 104); z_8 = 0.3 >= 0
    # closes, filled at 9 (A = 107): pnl = +1 * (107 - 104) = +3.
    first, second = r.trades
    assert (first.side, first.signal_ts, first.entry_ts, first.exit_ts) == (-1, 1000, 2000, 5000)
    assert (first.entry_a, first.exit_a, first.exit_reason) == (111.0, 103.0, "exit")
    assert first.pnl == pytest.approx(8.0) and first.pnl_a == pytest.approx(8.0)
    assert (second.side, second.signal_ts, second.entry_ts, second.exit_ts) == (1, 6000, 7000, 9000)
    assert second.pnl == pytest.approx(3.0)
    assert r.total_pnl == pytest.approx(11.0)
    assert r.hit_rate == 1.0 and r.n_trades == 2
    # Position held after each bar's fills: short over bars 2-4, long over 7-8.
    assert r.position.tolist() == [0, 0, -1, -1, -1, 0, 0, 1, 1, 0]
    # Mark to market: equity moves with -dA while short, +dA while long.
    assert r.equity.tolist() == pytest.approx([0, 0, 0, 3, 6, 8, 8, 8, 10, 11])
    assert r.avg_holding_bars == pytest.approx((3 + 2) / 2)
    assert r.avg_holding_seconds == pytest.approx(2.5)


def test_the_b_leg_sign_and_the_frozen_beta():
    # Short the spread = sell A, buy beta B. A flat, B rises 10 -> the B leg gains
    # beta * 10; beta changes after the signal but the trade keeps the signal bar's.
    a = [100] * 6
    b = [50, 50, 50, 55, 60, 60]
    beta = [2.0, 2.0, 2.0, 9.0, 9.0, 9.0]
    z = [0, 3.0, 1.0, 1.0, -0.5, 0]
    r = bt(a, b, beta, z)
    (tr,) = r.trades
    assert tr.beta == 2.0 and tr.hedge == 2.0
    assert (tr.entry_b, tr.exit_b) == (50.0, 60.0)
    assert tr.pnl_b == pytest.approx(2.0 * 10) and tr.pnl_a == 0.0
    assert tr.pnl == pytest.approx(-1 * ((100 - 100) - 2.0 * (60 - 50)))
    # The long side loses the same amount on the same path.
    r_long = bt(a, b, beta, [-v for v in z])
    assert r_long.trades[0].pnl == pytest.approx(-20.0)


def test_fills_at_the_next_bar_never_the_signal_bar():
    a = [100, 100, 90, 90, 90]  # a signal-bar fill at 100 would show pnl +10 short
    r = bt(a, [100] * 5, 1.0, [0, 2.1, -1, 0, 0])
    (tr,) = r.trades
    assert tr.entry_ts == 2000 and tr.entry_a == 90.0  # the bar after the signal
    assert tr.exit_ts == 3000 and tr.pnl == 0.0


def test_fees_and_slippage_reduce_pnl_by_exactly_the_modelled_amount():
    free = bt(A1, [100] * 10, 1.0, Z1)
    costly = bt(A1, [100] * 10, 1.0, Z1, fee_bps=10, slippage_bps=2.5)
    # fees = 10 / 1e4 * ((|A_in| + |beta B_in|) + (|A_out| + |beta B_out|)) per trade.
    fee1 = 10 / 1e4 * ((111 + 100) + (103 + 100))
    fee2 = 10 / 1e4 * ((104 + 100) + (107 + 100))
    slip1, slip2 = fee1 / 4, fee2 / 4
    t1, t2 = costly.trades
    assert t1.fees == pytest.approx(fee1) and t2.fees == pytest.approx(fee2)
    assert t1.slippage == pytest.approx(slip1) and t2.slippage == pytest.approx(slip2)
    assert t1.pnl == pytest.approx(free.trades[0].pnl - fee1 - slip1)
    assert costly.total_pnl == pytest.approx(free.total_pnl - fee1 - fee2 - slip1 - slip2)
    assert costly.total_fees == pytest.approx(fee1 + fee2)
    assert costly.total_slippage == pytest.approx(slip1 + slip2)
    assert costly.gross_pnl == pytest.approx(free.total_pnl)
    # Costs hit the curve on the fill bars (entry 2, exit 5, entry 7, exit 9).
    diff = free.equity - costly.equity
    expected = np.cumsum([0, 0, 1.25 * 10e-4 * 211, 0, 0, 1.25 * 10e-4 * 203, 0,
                          1.25 * 10e-4 * 204, 0, 1.25 * 10e-4 * 207])
    np.testing.assert_allclose(diff, expected, rtol=1e-12)


def test_exit_fill_and_new_entry_signal_share_a_bar():
    # Short closes on z_2 (fill at 3); at bar 3 (flat after the fill) z_3 = -2.5 enters
    # long, filled at 4.
    r = bt([100, 101, 99, 98, 97, 99, 100], [100] * 7, 1.0, [0, 2.5, -0.1, -2.5, -1, 0.5, 0])
    s, lg = r.trades
    assert (s.side, s.exit_ts) == (-1, 3000)
    assert (lg.side, lg.signal_ts, lg.entry_ts, lg.exit_ts) == (1, 3000, 4000, 6000)


def test_no_signal_while_a_decision_is_pending():
    # z stays above entry: one short, not one per bar.
    r = bt([100] * 6, [100] * 6, 1.0, [3, 3, 3, 3, 3, 3])
    assert len(r.trades) == 1 and r.trades[0].is_open


def test_stop_and_max_hold_close():
    z = [0, 2.5, 3.0, 4.5, 4.0, 3.0, 2.0, 1.0]
    a = list(range(100, 108))
    stopped = bt(a, [100] * 8, 1.0, z, stop=4.0)
    (tr, *rest) = stopped.trades
    assert tr.exit_reason == "stop" and tr.exit_ts == 4000  # |z_3| = 4.5 > 4, fill at 4
    # With the literal rules a stopped trade may re-enter while z is still beyond entry.
    assert rest and rest[0].signal_ts == 4000
    held = bt(a, [100] * 8, 1.0, z, max_hold=2)
    first = held.trades[0]
    assert first.exit_reason == "max_hold"
    assert first.exit_index - first.entry_index == 2


def test_open_trade_is_reported_and_left_out_of_the_totals():
    r = bt([100, 100, 98, 95, 93], [100] * 5, 1.0, [0, 2.5, 2.0, 1.5, 1.0], fee_bps=5)
    (tr,) = r.trades
    assert tr.exit_ts is None and tr.exit_a is None and tr.is_open
    assert r.n_trades == 0 and r.total_pnl == 0.0 and r.hit_rate is None
    # Marked to the last close, net of the entry fee only.
    entry_fee = 5e-4 * (98 + 100)
    assert tr.pnl == pytest.approx(98 - 93 - entry_fee)
    assert r.open_pnl == pytest.approx(tr.pnl)
    assert r.equity[-1] == pytest.approx(r.total_pnl + r.open_pnl)
    frame = trades_frame(r)
    assert frame["exit_ts"].isna().all()


def test_no_trade_on_the_last_bar_and_nan_z_does_nothing():
    r = bt([100] * 5, [100] * 5, 1.0, [np.nan, np.nan, 0, 0, 3.0])
    assert r.trades == () and r.sharpe is None and r.capital is None
    # An undefined beta at the signal bar blocks the entry.
    r2 = bt([100] * 5, [100] * 5, [np.nan, np.nan, 1, 1, 1], [0, 3.0, 0, 0, 0])
    assert r2.trades == ()


def test_log_prices_hedge_the_notional():
    a, b = [100, 100, 100, 110, 110], [50, 50, 40, 40, 40]
    r = bt(a, b, 0.5, [0, 2.5, 1, -1, 0], prices="log")
    (tr,) = r.trades
    assert tr.hedge == pytest.approx(0.5 * 100 / 40)  # beta * A_fill / B_fill
    assert tr.pnl == pytest.approx(-1 * ((110 - 100) - tr.hedge * (40 - 40)))


def test_metrics_definitions():
    r = bt(A1, [100] * 10, 1.0, Z1, fee_bps=1)
    d = np.diff(np.concatenate([[0.0], r.equity]))
    sharpe = d.mean() / d.std(ddof=1) * math.sqrt(365 * 86400)
    assert r.sharpe == pytest.approx(sharpe)
    dd = r.equity - np.maximum.accumulate(np.maximum(r.equity, 0))
    np.testing.assert_allclose(r.drawdown, dd)
    assert r.max_drawdown == pytest.approx(-dd.min())
    capital = max(tr.notional for tr in r.trades)
    assert capital == pytest.approx(111 + 100)
    assert r.total_return == pytest.approx(r.total_pnl / capital)
    traded = (111 + 100) + (103 + 100) + (104 + 100) + (107 + 100)
    assert r.turnover == pytest.approx(traded / capital)
    # Over every closed trade, the curve's increments add up to its pnl.
    assert r.equity[-1] == pytest.approx(sum(t.pnl for t in r.trades))


def test_no_look_ahead_on_the_real_tape(sample_bars_1s):
    """Changing bars after t changes no signal, fill or equity up to t."""
    al = align_pair(sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"])
    n, w, cut = len(al), 20, 400
    params = BacktestParams(entry=1.5, exit=0.0, fee_bps=1.0)

    def run(a, b):
        ps = pair_series(al.ts[: len(a)], a, b, window=w)
        return run_backtest(ps.ts, ps.price_a, ps.price_b, ps.beta, ps.zscore,
                            params=params, tf_ms=1000)

    base = run(al.a, al.b)
    rng = np.random.default_rng(7)
    a2, b2 = np.array(al.a), np.array(al.b)
    a2[cut + 1:] *= np.exp(rng.normal(0, 2e-3, n - cut - 1).cumsum())
    b2[cut + 1:] *= np.exp(rng.normal(0, 2e-3, n - cut - 1).cumsum())
    other = run(a2, b2)
    t_cut = int(al.ts[cut])
    assert len(base.trades) > 5
    np.testing.assert_array_equal(base.equity[: cut + 1], other.equity[: cut + 1])
    np.testing.assert_array_equal(base.position[: cut + 1], other.position[: cut + 1])
    before = [t for t in base.trades if t.entry_ts <= t_cut]
    before_other = [t for t in other.trades if t.entry_ts <= t_cut]
    assert [(t.side, t.signal_ts, t.entry_ts, t.entry_a, t.beta) for t in before] == [
        (t.side, t.signal_ts, t.entry_ts, t.entry_a, t.beta) for t in before_other
    ]
    closed = [t for t in before if t.exit_ts is not None and t.exit_ts <= t_cut]
    assert closed == [t for t in before_other if t.exit_ts is not None and t.exit_ts <= t_cut]
    # And truncating the data at t gives the same decisions up to t.
    trunc = run(al.a[: cut + 1], al.b[: cut + 1])
    np.testing.assert_array_equal(base.equity[: cut + 1], trunc.equity)
    assert [t.signal_ts for t in trunc.trades] == [t.signal_ts for t in before]


def test_against_a_naive_pandas_loop(sample_bars_1s):
    """The same rules written the slow, obvious way with iterrows."""
    al = align_pair(sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"])
    ps = pair_series(al.ts, al.a, al.b, window=15)
    p = BacktestParams(entry=1.2, exit=0.2, stop=3.5, max_hold=40, fee_bps=2, slippage_bps=1)
    r = run_backtest(ps.ts, ps.price_a, ps.price_b, ps.beta, ps.zscore, params=p, tf_ms=1000)
    df = ps.to_frame()
    pos, pending, trades, cur, beta_sig = 0, None, [], None, np.nan
    for i, row in df.iterrows():
        if pending is not None:
            if pending != 0:
                cur = dict(side=pending, ei=i, ea=row.price_a, eb=row.price_b, h=beta_sig)
            else:
                trades.append(cur["side"] * ((row.price_a - cur["ea"])
                                             - cur["h"] * (row.price_b - cur["eb"]))
                              - 3e-4 * (cur["ea"] + abs(cur["h"]) * cur["eb"]
                                        + row.price_a + abs(cur["h"]) * row.price_b))
            pos, pending = pending, None
        if i == len(df) - 1:
            break
        z = row.zscore
        if pos == 0:
            if np.isfinite(row.beta) and (z > 1.2 or z < -1.2):
                pending, beta_sig = (-1 if z > 1.2 else 1), row.beta
        elif ((pos == -1 and z <= 0.2) or (pos == 1 and z >= -0.2) or abs(z) > 3.5
              or i + 1 - cur["ei"] >= 40):
            pending = 0
    assert len(trades) > 5
    np.testing.assert_allclose([t.pnl for t in r.closed_trades], trades, rtol=1e-12)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(entry=0), "entry"), (dict(entry=-1), "entry"), (dict(exit=2.0), "exit"),
        (dict(stop=1.5), "stop"), (dict(max_hold=0), "max_hold"),
        (dict(fee_bps=-1), "fee_bps"), (dict(slippage_bps=5000), "slippage_bps"),
        (dict(entry=float("nan")), "entry"), (dict(max_hold=2.5), "max_hold"),
    ],
)
def test_bad_params_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        BacktestParams(**kw)


def test_bad_inputs():
    with pytest.raises(InsufficientData):
        bt([100], [100], 1.0, [0])
    with pytest.raises(ValueError, match="price_a"):
        bt([100, -1, 100], [100] * 3, 1.0, [0, 0, 0])
    with pytest.raises(ValueError, match="zscore"):
        run_backtest(TS[:3], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0], tf_ms=1000)
    with pytest.raises(ValueError, match="strictly increasing"):
        run_backtest(np.array([0, 0, 1]), [1, 1, 1], [1, 1, 1], [1, 1, 1], [0, 0, 0],
                     tf_ms=1000)


def test_trades_frame_columns():
    r = bt(A1, [100] * 10, 1.0, Z1)
    frame = trades_frame(r)
    assert list(frame.columns[:4]) == ["side", "signal_ts", "entry_ts", "exit_ts"]
    assert len(frame) == 2 and frame["pnl"].sum() == pytest.approx(11.0)
    assert isinstance(r.curve_frame(), pd.DataFrame)


# ---------------------------------------------------------------- session breaks
def test_position_closes_at_the_last_bar_before_a_break():
    # Short decided at bar 1 (z 2.5), filled at bar 2 (A 111). A break opens bar 6
    # (its bucket start TS[6]): L = 5, so the break exit is decided at 4 and fills at
    # bar 5 (A 103), even though z never reached the exit threshold in the session.
    z = [0.0, 2.5, 1.0, 0.5, 0.4, 0.3, 0.3, 0.5, 0.5, 0.5]
    a = [110, 112, 111, 108, 105, 103, 150, 150, 149, 148]
    r = run_backtest(TS, np.array(a, float), np.full(10, 100.0), np.ones(10), np.array(z),
                     params=BacktestParams(), tf_ms=1000, breaks=[int(TS[6])])
    (tr,) = r.trades
    assert (tr.entry_index, tr.exit_index, tr.exit_reason) == (2, 5, "break")
    assert tr.pnl == pytest.approx(111 - 103)
    assert r.position[5:].tolist() == [0] * 5
    # the jump 103 -> 150 across the break is not in the equity
    assert r.equity[-1] == pytest.approx(8.0)
    # without the break the short rides the jump
    plain = run_backtest(TS, np.array(a, float), np.full(10, 100.0), np.ones(10),
                         np.array(z), params=BacktestParams(), tf_ms=1000)
    assert plain.trades[0].exit_index is None and plain.equity[-1] < 0


def test_no_entry_whose_fill_is_at_or_across_a_break():
    # Signals at 4 (fill at 5 = L) and at 5 (fill at 6, the next session) are refused;
    # the signal at 7 (inside the new session) is taken and fills at 8.
    z = [0.0, 0.0, 0.0, 0.0, 2.5, 2.5, 0.0, 2.5, 2.5, 2.5]
    r = run_backtest(TS, np.full(10, 110.0), np.full(10, 100.0), np.ones(10), np.array(z),
                     params=BacktestParams(), tf_ms=1000, breaks=[int(TS[6])])
    assert [t.entry_index for t in r.trades] == [8]
    assert [t.signal_ts for t in r.trades] == [int(TS[7])]
