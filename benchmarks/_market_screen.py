"""Section ``screen`` of ``python -m benchmarks.market``: the market-wide screen
(:mod:`analytics.market_screen`) on a day of 1 m bars of the top 50 and the top 100,
against a per-pair statsmodels ``coint`` loop over the same candidates.

Data (deterministic): a day of 1 m log prices for 100 instruments **derived from real
recorded returns**: the 1,439 one-minute log returns of two real days of BTCUSDT 1 m
klines in ``sample_data/`` (USDT-M futures 2022-09-05, spot 2020-01-01). 20 groups of 5:

    G_g(t)  = sum_{s <= t} [ 0.6 r_2022(s) + r_2020(s + 71 g mod 1439) ]   (group
              trend: the real 2022 day as the market, the real 2020 day rotated per group)
    ln P_i  = ln P0_i + lambda_i G_g(i) + u_i ,   lambda_i ~ U(0.6, 1.4)
    u_i     = AR(1), phi_i ~ U(0.80, 0.99), innovations N(0, 0.3 sd(r_2022))  (seed 19)

so the 10 pairs inside each group are cointegrated (beta = lambda_i / lambda_j) and the
other pairs are not; quote volume falls with the instrument number (rank = number).

Figures, each best of ``repeat`` runs, BLAS and OpenMP pools at ONE thread for both
sides (idle BLAS threads spin on a shared 2-core box: statsmodels' small pinv calls
run 20 x slower with them, 665 vs 35 ms per ``coint``):

* ``screen_s``: the whole screen from bars (grid, prefilter, batched Engle-Granger,
  half-life, z, ranking), every pair a candidate (``min_corr = 0``): 1,225 pairs
  (top 50), 4,950 (top 100); ``screen_prefilter_s`` the same with ``min_corr = 0.5``
  (the page's default) and how many candidates that leaves;
* ``statsmodels_s``: ``coint(a, b, trend="c", maxlag=12, autolag="aic")`` per candidate,
  in a loop: the full loop for the top 50 (a sample of pairs, extrapolated, in quick
  mode and for the top 100: ``statsmodels_extrapolated`` says which);
* ``ratio``: ``statsmodels_s / screen_s``; ``max_rel_diff_stat`` and ``lags_equal``
  over the pairs statsmodels ran (on demeaned log prices, where statsmodels' own
  first-stage residual is exact; see :mod:`analytics.eg_batch`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
DAY_MS = 86_400_000
T0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC
SEED = 19
GROUP = 5
#: the full run: both tops; quick: a smaller top (pairs sampled for statsmodels)
FULL = {"tops": (50, 100), "instruments": 100, "sample": 300, "full_loop_max": 1225,
        "repeat": 3}
QUICK = {"tops": (20,), "instruments": 20, "sample": 40, "full_loop_max": 0, "repeat": 1}


def real_returns() -> tuple[np.ndarray, np.ndarray]:
    """1 m log returns of the two real BTCUSDT days (1,439 each)."""
    def closes(name: str, header: bool) -> np.ndarray:
        data = np.loadtxt(SAMPLE / name, delimiter=",", skiprows=1 if header else 0,
                          usecols=4)
        return np.diff(np.log(data))

    return (closes("BTCUSDT-1m-2022-09-05.csv", True),
            closes("BTCUSDT-1m-2020-01-01.csv", False))


def day_of_closes(n: int) -> np.ndarray:
    """(1440, n) closes of the module docstring's model."""
    r22, r20 = real_returns()
    t = len(r22) + 1
    rng = np.random.default_rng(SEED)
    groups = math.ceil(n / GROUP)
    trends = np.empty((t, groups))
    for g in range(groups):
        steps = 0.6 * r22 + np.roll(r20, -71 * g)
        trends[:, g] = np.concatenate(([0.0], np.cumsum(steps)))
    lam = rng.uniform(0.6, 1.4, n)
    phi = rng.uniform(0.80, 0.99, n)
    eps = rng.normal(0.0, 0.3 * r22.std(), size=(t, n))
    u = np.zeros((t, n))
    for i in range(1, t):
        u[i] = phi * u[i - 1] + eps[i]
    p0 = np.exp(rng.uniform(np.log(0.05), np.log(60_000.0), n))
    return p0 * np.exp(trends[:, np.arange(n) // GROUP] * lam + u)


def bars_of(closes: np.ndarray) -> dict:
    from analytics.bars import Bars

    t, n = closes.shape
    ts = T0 + 60_000 * np.arange(t, dtype=np.int64)
    out = {}
    for j in range(n):
        c = closes[:, j]
        out[f"I{j + 1:03d}USDT"] = Bars.from_columns(
            {"ts": ts, "open": c, "high": c, "low": c, "close": c, "volume": np.ones(t),
             "quote_volume": np.full(t, 1e9 / (j + 1)), "trades": np.ones(t, dtype=np.int64),
             "buy_volume": np.zeros(t), "first_id": np.arange(t), "last_id": np.arange(t)},
            60_000)
    return out


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _statsmodels_loop(closes, names, rows, sample: int, full_max: int) -> dict:
    """Time ``coint`` over the candidates (all of them up to ``full_max``, else an even
    sample of ``sample``) and compare its statistic and lag with the screen's."""
    import warnings

    import statsmodels.api as sm
    from statsmodels.tsa.stattools import adfuller, coint

    x = np.log(closes)
    x = x - x.mean(axis=0)
    col = {s: i for i, s in enumerate(names)}
    full = len(rows) <= full_max
    pick = rows if full else [rows[k] for k in np.linspace(0, len(rows) - 1, sample,
                                                           dtype=int)]
    t0 = time.perf_counter()
    stats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in pick:
            stats.append(coint(x[:, col[r.a]], x[:, col[r.b]], trend="c", maxlag=12,
                               autolag="aic")[0])
    per_pair = (time.perf_counter() - t0) / len(pick)
    worst, lags_equal = 0.0, 0
    for r, s in zip(pick, stats, strict=True):
        if math.isfinite(s):
            worst = max(worst, abs(r.coint_stat - s) / abs(s))
        a, b = x[:, col[r.a]], x[:, col[r.b]]
        resid = sm.OLS(a, sm.add_constant(b, prepend=False)).fit().resid
        lag = adfuller(resid, maxlag=12, regression="n", autolag="aic",
                       result_object=True).lags
        lags_equal += int(lag == r.usedlag)
    return {"statsmodels_s": per_pair * len(rows), "statsmodels_ms_per_pair": per_pair * 1e3,
            "statsmodels_pairs_run": len(pick), "statsmodels_extrapolated": not full,
            "max_rel_diff_stat": worst, "lags_equal": f"{lags_equal}/{len(pick)}"}


def _one_top(bars, closes, top: int, cfg: dict) -> dict:
    from analytics.market_screen import MarketScreenParams, market_screen

    names = list(bars)[:top]
    sub = {s: bars[s] for s in names}
    every = MarketScreenParams(top_n=top, lookback=1440, min_corr=0.0, max_candidates=20_000)
    t_all, res = _best(lambda: market_screen(sub, every), cfg["repeat"])
    pref = MarketScreenParams(top_n=top, lookback=1440, min_corr=0.5, max_candidates=20_000)
    t_pref, res_pref = _best(lambda: market_screen(sub, pref), cfg["repeat"])
    loop = _statsmodels_loop(closes[:, :top], res.names, list(res.rows), cfg["sample"],
                             cfg["full_loop_max"])
    in_group = sum(int(r.a[1:4]) // GROUP == int(r.b[1:4]) // GROUP
                   for r in res.rows[: (top // GROUP) * 10])
    return {
        "instruments": top, "bars": res.n_bars, "pairs": res.pairs_total,
        "screen_s": t_all, "screen_prefilter_s": t_pref,
        "prefilter_candidates": res_pref.candidates, "maxlag": res.maxlag,
        "exact_fallbacks": res.exact_fallbacks,
        "cointegrated_pairs_in_top_ranks": f"{in_group}/{(top // GROUP) * 10}",
        **loop, "ratio": loop["statsmodels_s"] / t_all,
    }


def run(quick: bool = False) -> tuple[list[tuple[str, str]], dict]:
    """The section: table rows and the figures for the JSON line."""
    import statsmodels.tsa.stattools  # noqa: F401  (load every BLAS before limiting)
    from threadpoolctl import threadpool_limits

    cfg = QUICK if quick else FULL
    closes = day_of_closes(cfg["instruments"])
    bars = bars_of(closes)
    figures: dict = {"data": "a day of 1 m bars derived from real BTCUSDT 1 m returns "
                             "(20 cointegrated groups of 5)", "threads": 1, "tops": {}}
    rows: list[tuple[str, str]] = []
    with threadpool_limits(limits=1):
        for top in cfg["tops"]:
            f = _one_top(bars, closes, top, cfg)
            figures["tops"][str(top)] = f
            how = "extrapolated from" if f["statsmodels_extrapolated"] else "all"
            rows += [
                (f"top {top}: pairs x bars", f"{f['pairs']:,} x {f['bars']:,}"),
                (f"top {top}: screen, every pair (s)", f"{f['screen_s']:.2f}"),
                (f"top {top}: screen, |corr| >= 0.5 (s)",
                 f"{f['screen_prefilter_s']:.2f} ({f['prefilter_candidates']:,} candidates)"),
                (f"top {top}: statsmodels coint loop (s)",
                 f"{f['statsmodels_s']:.1f} ({how} {f['statsmodels_pairs_run']:,} pairs, "
                 f"{f['statsmodels_ms_per_pair']:.1f} ms each)"),
                (f"top {top}: ratio", f"{f['ratio']:.0f} x"),
                (f"top {top}: max rel diff of stat / lags equal",
                 f"{f['max_rel_diff_stat']:.1e} / {f['lags_equal']}"),
                (f"top {top}: cointegrated pairs ranked first",
                 f["cointegrated_pairs_in_top_ranks"]),
            ]
    if "50" in figures["tops"]:
        figures["goal_top50_s"] = 10.0
        figures["top50_within_goal"] = figures["tops"]["50"]["screen_s"] <= 10.0
    return rows, figures


if __name__ == "__main__":
    import json

    table, figs = run(quick=True)
    for label, value in table:
        print(f"{label:<48} {value}")
    print(json.dumps(figs))
