"""Backtest and screener benchmark on a day of 1 s bars, vs the naive pandas versions.

``python -m benchmarks.backtest``

Data: a **synthetic** day (86,400 one-second bars) of three symbols: two cointegrated
random walks (``A = 3 + 1.5 B + AR(1) noise``) and an independent walk, seed 7 (the
bundled real tape is only 10.8 minutes long). Measured (wall, median of repeats):

1. ``run_backtest`` on the OLS w=60 pair series (entry 2, exit 0, fees 1 bp) against the
   same rules written with ``DataFrame.iterrows`` (the naive way), with the ratio and a
   check that both give the same trades;
2. ``screen_pairs`` over the three symbols (3 pairs, Engle-Granger coint on 86,400
   aligned bars each, pair series, half-life);
3. ``lead_lag_matrix`` with k = 10 over the three symbols.

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pandas as pd

from analytics.backtest import BacktestParams, run_backtest
from analytics.bars import Bars
from analytics.leadlag import lead_lag_matrix
from analytics.pair import pair_series
from analytics.screener import screen_pairs

N = 86_400
START = 1_700_000_000_000


def _bars(close: np.ndarray) -> Bars:
    n = len(close)
    ts = START + np.arange(n, dtype=np.int64) * 1000
    return Bars.from_columns(dict(
        ts=ts, open=close, high=close, low=close, close=close, volume=np.ones(n),
        quote_volume=close, trades=np.full(n, 20, np.int64), buy_volume=np.ones(n) / 2,
        first_id=np.arange(n, dtype=np.int64) * 20,
        last_id=np.arange(n, dtype=np.int64) * 20 + 19), tf_ms=1000)


def _data() -> dict[str, Bars]:
    rng = np.random.default_rng(7)
    b = 2_600 + np.cumsum(rng.normal(0, 0.5, N))
    noise = np.zeros(N)
    eps = rng.normal(0, 2.0, N)
    for i in range(1, N):
        noise[i] = 0.98 * noise[i - 1] + eps[i]
    a = 3 + 1.5 * b + noise
    w = 100 + np.cumsum(rng.normal(0, 0.05, N))
    return {"AAAUSDT": _bars(a), "BBBUSDT": _bars(b), "WWWUSDT": _bars(np.abs(w) + 1)}


def naive_backtest(df: pd.DataFrame, p: BacktestParams) -> list[float]:
    """The same rules, one ``iterrows`` step per bar (what the issue calls naive)."""
    pos, pending, cur, pnls, rate = 0, None, None, [], p.fee_bps / 1e4
    beta_sig = np.nan
    for i, row in df.iterrows():
        if pending is not None:
            if pending != 0:
                cur = (pending, row.price_a, row.price_b, beta_sig)
            else:
                s, ea, eb, h = cur
                gross = s * ((row.price_a - ea) - h * (row.price_b - eb))
                pnls.append(gross - rate * (ea + abs(h) * eb + row.price_a + abs(h) * row.price_b))
            pos, pending = pending, None
        if i == len(df) - 1:
            break
        z = row.zscore
        if pos == 0 and np.isfinite(row.beta) and abs(z) > p.entry:
            pending, beta_sig = (-1 if z > p.entry else 1), row.beta
        elif (pos == -1 and z <= p.exit) or (pos == 1 and z >= -p.exit):
            pending = 0
    return pnls


def _time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    bars = _data()
    a, b = bars["AAAUSDT"], bars["BBBUSDT"]
    ps = pair_series(a.ts, a.close, b.close, window=60)
    p = BacktestParams(entry=2.0, exit=0.0, fee_bps=1.0)
    t_bt, res = _time(lambda: run_backtest(ps.ts, ps.price_a, ps.price_b, ps.beta, ps.zscore,
                                           params=p, tf_ms=1000), 7)
    df = ps.to_frame()
    t_naive, naive = _time(lambda: naive_backtest(df, p), 1)
    same = np.allclose([t.pnl for t in res.closed_trades], naive, rtol=1e-9)
    t_screen, scr = _time(lambda: screen_pairs(bars, window=60), 1)
    t_ll, _ = _time(lambda: lead_lag_matrix(bars, max_lag=10), 3)
    rows = [
        ("backtest, vectorised + loop (86,400 bars)", t_bt * 1e3),
        ("backtest, naive iterrows", t_naive * 1e3),
        ("screener, 3 symbols / 3 pairs (coint, half-life, z)", t_screen * 1e3),
        ("lead-lag matrix, 3 symbols, k=10", t_ll * 1e3),
    ]
    print(f"{'what':55s} {'ms':>10s}")
    for name, ms in rows:
        print(f"{name:55s} {ms:10.1f}")
    print(f"trades: {res.n_trades} closed, same as naive: {same}; "
          f"naive / ours = {t_naive / t_bt:,.0f}x; top pair {scr.rows[0].a}/{scr.rows[0].b} "
          f"p={scr.rows[0].coint_pvalue:.2g}")
    print(json.dumps({
        "bars": N, "backtest_ms": round(t_bt * 1e3, 2),
        "naive_backtest_ms": round(t_naive * 1e3, 1),
        "ratio": round(t_naive / t_bt, 1), "trades": res.n_trades, "same_trades": bool(same),
        "screener_3_pairs_ms": round(t_screen * 1e3, 1), "leadlag_matrix_ms": round(t_ll * 1e3, 1),
    }))


if __name__ == "__main__":
    main()
