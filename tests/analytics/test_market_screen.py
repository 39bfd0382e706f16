"""Market-wide screen (analytics/market_screen.py) and its batched Engle-Granger
(analytics/eg_batch.py), checked against statsmodels' ``coint``/``adfuller``, pandas and
a long-double oracle, on the real recorded tapes (sample_data/: spot and USDT-M perp
BTCUSDT/ETHUSDT, 1 s bars), on wide tapes derived from them and on a seeded factor model
with cointegrated groups."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import CollinearityWarning
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller, coint

from analytics import eg_batch
from analytics.bars import Bars, bars_from_ticks
from analytics.eg_batch import eg_maxlag, engle_granger_batch
from analytics.errors import InsufficientData
from analytics.market_screen import (
    MarketScreenParams,
    close_grid,
    correlation_candidates,
    market_screen,
)
from analytics.stationarity import half_life
from tests.analytics.conftest import SAMPLE_DIR, load_trade_tape

TAPES = {
    "perp:BTCUSDT": "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz",
    "perp:ETHUSDT": "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz",
    "spot:BTCUSDT": "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-08T235959Z.jsonl.gz",
    "spot:ETHUSDT": "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-08T235959Z.jsonl.gz",
}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """statsmodels' many small pinv calls with idle BLAS threads spinning on a shared
    2-core box run 20 x slower (665 vs 35 ms per coint, measured): one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def real_bars() -> dict[str, Bars]:
    """1 s bars of the four real tapes (the same six minutes, spot and perp)."""
    return {name: bars_from_ticks(**load_trade_tape(SAMPLE_DIR / f), tf_ms=1_000)
            for name, f in TAPES.items()}


def factor_closes(n: int = 16, t: int = 1440, seed: int = 7) -> np.ndarray:
    """A seeded factor model (the benchmark's, smaller): groups of 4 instruments share
    a random-walk factor and differ by stationary AR(1) noise (cointegrated inside a
    group, not across), prices around 100 in 1 m steps."""
    rng = np.random.default_rng(seed)
    groups = math.ceil(n / 4)
    factors = np.cumsum(rng.normal(0, 0.002, size=(t, groups)), axis=0)
    noise = np.zeros((t, n))
    eps = rng.normal(0, 0.001, size=(t, n))
    phi = rng.uniform(0.5, 0.98, size=n)
    for i in range(1, t):
        noise[i] = phi * noise[i - 1] + eps[i]
    load = rng.uniform(0.5, 1.5, size=n)
    logp = np.log(100.0) + factors[:, np.arange(n) // 4] * load + noise
    return np.exp(logp)


def bars_of_closes(closes: np.ndarray, tf_ms: int = 60_000, t0: int = 1_700_000_040_000,
                   names: list[str] | None = None) -> dict[str, Bars]:
    t, n = closes.shape
    ts = t0 + tf_ms * np.arange(t, dtype=np.int64)
    out = {}
    for j in range(n):
        c = closes[:, j]
        out[names[j] if names else f"S{j:02d}USDT"] = Bars.from_columns(
            {"ts": ts, "open": c, "high": c, "low": c, "close": c, "volume": np.ones(t),
             "quote_volume": c * (n - j), "trades": np.ones(t, dtype=np.int64),
             "buy_volume": np.zeros(t), "first_id": np.arange(t), "last_id": np.arange(t)},
            tf_ms)
    return out


def sm_coint(a: np.ndarray, b: np.ndarray, maxlag: int) -> tuple[float, float, int]:
    """statsmodels' coint and the lag its residual ADF chose (coint does not return it:
    the same OLS + adfuller calls coint makes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollinearityWarning)
        c = coint(a, b, trend="c", maxlag=maxlag, autolag="aic")
    resid = sm.OLS(a, sm.add_constant(b, prepend=False)).fit().resid
    lag = adfuller(resid, maxlag=maxlag, regression="n", autolag="aic",
                   result_object=True).lags
    return float(c[0]), float(c[1]), int(lag)


def assert_equals_statsmodels(x: np.ndarray, ia, ib, *, rtol: float = 1e-9,
                              maxlag: int | None = None) -> None:
    eg = engle_granger_batch(x, ia, ib, maxlag=maxlag)
    assert len(eg) == len(ia)
    for k, (i, j) in enumerate(zip(ia, ib, strict=True)):
        stat, pval, lag = sm_coint(x[:, i], x[:, j], eg.maxlag)
        assert eg.usedlag[k] == lag, (i, j)
        assert eg.stat[k] == pytest.approx(stat, rel=rtol), (i, j)
        # the p-value is MacKinnon's function of the statistic: in the tails a 1e-10
        # change of the statistic moves it by ~1e-8 relative
        assert eg.pvalue[k] == mackinnonp(eg.stat[k], regression="c", N=2)
        assert eg.pvalue[k] == pytest.approx(pval, rel=1e-6, abs=1e-300), (i, j)
        ols = sm.OLS(x[:, i], sm.add_constant(x[:, j], prepend=False)).fit()
        assert eg.beta[k] == pytest.approx(ols.params[0], rel=1e-7)


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize("prices", ["raw", "log"])
def test_eg_batch_equals_coint_on_real_tapes_every_ordered_pair(real_bars, prices):
    grid = close_grid(real_bars, top_n=4, lookback=400)
    assert len(grid) >= 300 and len(grid.names) == 4
    x = np.log(grid.closes) if prices == "log" else grid.closes
    pairs = list(itertools.permutations(range(4), 2))
    ia, ib = [p[0] for p in pairs], [p[1] for p in pairs]
    if prices == "raw":
        assert_equals_statsmodels(x, ia, ib)
    else:
        # On log prices statsmodels' own first-stage residual (pinv of the uncentred
        # [log p, 1]) carries ~1e-8 relative error (long-double oracle below); on the
        # demeaned series (the same regression: the constant absorbs the means) it is
        # exact, and we equal it to 1e-9. On the raw log prices: 1e-7.
        assert_equals_statsmodels(x - x.mean(axis=0), ia, ib)
        assert_equals_statsmodels(x, ia, ib, rtol=1e-7)


def test_eg_batch_is_closer_to_a_long_double_oracle_than_statsmodels(real_bars):
    grid = close_grid(real_bars, top_n=4, lookback=400)
    x = np.log(grid.closes)
    a, b = x[:, 0], x[:, 2]  # perp:BTCUSDT on spot:BTCUSDT
    al, bl = a.astype(np.longdouble), b.astype(np.longdouble)
    ac, bc = al - al.mean(), bl - bl.mean()
    u_true = np.asarray(ac - (bc * ac).sum() / (bc * bc).sum() * bc, dtype=np.float64)
    lag = eg_maxlag(len(a))
    oracle = adfuller(u_true, maxlag=lag, regression="n", autolag="aic",
                      result_object=True)
    ours = engle_granger_batch(x, [0], [2])
    sm_stat = sm_coint(a, b, lag)[0]
    assert ours.stat[0] == pytest.approx(oracle.statistic, rel=1e-11)
    assert ours.usedlag[0] == oracle.lags
    assert abs(ours.stat[0] - oracle.statistic) <= abs(sm_stat - oracle.statistic)


def test_eg_batch_equals_coint_on_a_factor_model_every_pair_both_orders():
    x = np.log(factor_closes(n=8, t=1440))
    pairs = list(itertools.permutations(range(8), 2))  # 56 tests
    x = x - x.mean(axis=0)
    assert_equals_statsmodels(x, [p[0] for p in pairs], [p[1] for p in pairs])


def test_eg_batch_equals_coint_on_wide_derived_tape():
    """The wide replay's derived instruments (ingest/replay/wide.py: thinned,
    time-shifted, rescaled real trades), 1 s bars, every pair of the top 8."""
    from ingest.replay.wide import wide_tape

    tape = wide_tape(8, market="perp")
    cols: dict[str, dict[str, list]] = {}
    for ev in tape.events:
        if ev.kind != "trade":
            continue
        c = cols.setdefault(ev.symbol, {"time_ms": [], "trade_id": [], "price": [],
                                        "qty": [], "buyer_is_maker": []})
        d = ev.data
        c["time_ms"].append(d["T"])
        c["trade_id"].append(d["t"])
        c["price"].append(float(d["p"]))
        c["qty"].append(float(d["q"]))
        c["buyer_is_maker"].append(bool(d["m"]))
    bars = {s: bars_from_ticks(**{k: np.array(v) for k, v in c.items()}, tf_ms=1_000)
            for s, c in cols.items()}
    res = market_screen(bars, MarketScreenParams(top_n=8, lookback=3600, min_corr=0.0,
                                                 prices="raw"))
    grid = close_grid(bars, top_n=8, lookback=3600)
    assert res.candidates == res.pairs_total == 28
    for r in res.rows:
        i, j = grid.names.index(r.a), grid.names.index(r.b)
        stat, pval, lag = sm_coint(grid.closes[:, i], grid.closes[:, j], res.maxlag)
        assert (r.coint_stat, r.usedlag) == (pytest.approx(stat, rel=1e-9), lag)
        assert r.coint_pvalue == pytest.approx(pval, rel=1e-6, abs=1e-300)


def test_vectorised_p_values_are_mackinnonp_bit_for_bit():
    stat = np.concatenate([np.linspace(-25.0, 4.0, 20_001),
                           [-np.inf, np.inf, -18.3, -4.0, 0.0, 2.5]])
    ref = np.array([mackinnonp(s, regression="c", N=2) for s in stat])
    np.testing.assert_array_equal(eg_batch.eg_pvalues(stat), ref)


def test_near_ties_are_left_to_statsmodels(monkeypatch):
    x = np.log(factor_closes(n=6, t=500))
    x = x - x.mean(axis=0)
    ia, ib = [0, 1, 2, 4], [1, 3, 5, 0]
    monkeypatch.setattr(eg_batch, "AIC_TIE_RTOL", 1.0)  # every pair counts as a tie
    eg = engle_granger_batch(x, ia, ib)
    assert eg.exact_fallbacks == 4
    for k, (i, j) in enumerate(zip(ia, ib, strict=True)):
        stat, _, lag = sm_coint(x[:, i], x[:, j], eg.maxlag)
        assert (eg.stat[k], eg.usedlag[k]) == (pytest.approx(stat, rel=1e-9), lag)


def test_collinear_legs_report_minus_inf_and_p_zero_as_coint():
    rng = np.random.default_rng(3)
    b = 100 + np.cumsum(rng.normal(size=300))
    x = np.column_stack([2.0 * b + 1.0, b, b + rng.normal(size=300)])
    with pytest.warns(CollinearityWarning):
        c = coint(x[:, 0], x[:, 1], maxlag=eg_maxlag(300), autolag="aic")
    eg = engle_granger_batch(x, [0, 2], [1, 1])
    assert (eg.stat[0], eg.pvalue[0], eg.usedlag[0], bool(eg.collinear[0])) == (
        c[0], c[1], -1, True)
    assert not eg.collinear[1]
    assert eg.critical_values == pytest.approx(tuple(c[2]))


def test_explicit_maxlag_and_zero_lags():
    x = np.log(factor_closes(n=4, t=400)) - math.log(100.0)
    for lag in (0, 3):
        assert_equals_statsmodels(x - x.mean(axis=0), [0, 1], [1, 2], maxlag=lag)


def test_eg_batch_rejects_bad_input_naming_it():
    x = np.log(factor_closes(n=3, t=100))
    with pytest.raises(ValueError, match="maxlag"):
        engle_granger_batch(x, [0], [1], maxlag=60)
    with pytest.raises(ValueError, match="different"):
        engle_granger_batch(x, [1], [1])
    flat = x.copy()
    flat[:, 2] = 4.0
    with pytest.raises(ValueError, match="constant"):
        engle_granger_batch(flat, [0], [2])
    with pytest.raises(ValueError, match="observations"):
        engle_granger_batch(x[:10], [0], [1])


def test_small_chunks_give_the_same_numbers_and_report_progress():
    x = np.log(factor_closes(n=8, t=600))
    ia, ib = np.triu_indices(8, k=1)
    seen = []
    whole = engle_granger_batch(x, ia, ib)
    parts = engle_granger_batch(x, ia, ib, chunk_bytes=1,
                                progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(whole.usedlag, parts.usedlag)
    np.testing.assert_allclose(whole.stat, parts.stat, rtol=1e-12)
    assert seen == [(k, 28) for k in range(1, 29)]


# ------------------------------------------------------------------ grid, prefilter
def test_close_grid_is_pandas_reindex_ffill_from_the_latest_leg_start(real_bars):
    grid = close_grid(real_bars, top_n=3, lookback=200)
    qv = {s: b.quote_volume[b.ts >= grid.window_start].sum() for s, b in real_bars.items()}
    assert grid.names == tuple(sorted(qv, key=lambda s: -qv[s])[:3])
    end = max(int(b.ts[-1]) for b in real_bars.values())
    assert grid.ts[-1] == end and len(grid) == 200
    for j, s in enumerate(grid.names):
        b = real_bars[s]
        ser = pd.Series(b.close, index=b.ts).reindex(grid.ts, method="ffill")
        np.testing.assert_array_equal(grid.closes[:, j], ser.to_numpy())


def test_close_grid_starts_at_the_upper_median_leg_start_and_pins_the_end(real_bars):
    brk_ms = int(real_bars["perp:ETHUSDT"].ts[100]) + 250  # inside bucket ts[100]
    grid = close_grid(real_bars, top_n=4, lookback=10_000,
                      breaks={"perp:ETHUSDT": np.array([brk_ms])})
    # leg starts: three first bars (within a second) and perp:ETHUSDT's bar 100 s
    # later, after its break; the upper median is the third-earliest start, the span
    # from it ~344 s: a start 100 s in is past its first tenth, excluded, not followed
    starts = sorted(int(b.ts[0]) for s, b in real_bars.items() if s != "perp:ETHUSDT")
    assert grid.ts[0] == starts[-1]
    assert "perp:ETHUSDT" not in grid.names and len(grid.names) == 3
    (name, why), = grid.excluded
    assert name == "perp:ETHUSDT" and "starts too late for the window" in why
    # 20 s in (within the first tenth): kept, and the grid starts there
    near = int(real_bars["perp:ETHUSDT"].ts[20]) + 250
    g20 = close_grid(real_bars, top_n=4, lookback=10_000,
                     breaks={"perp:ETHUSDT": np.array([near])})
    assert len(g20.names) == 4 and g20.ts[0] == real_bars["perp:ETHUSDT"].ts[20]
    # two legs: the later start wins (both on the grid)
    two = {s: real_bars[s] for s in ("perp:ETHUSDT", "spot:ETHUSDT")}
    g2 = close_grid(two, top_n=2, lookback=10_000,
                    breaks={"perp:ETHUSDT": np.array([brk_ms])})
    assert g2.ts[0] == real_bars["perp:ETHUSDT"].ts[100] and len(g2.names) == 2
    first = max(int(b.ts[0]) for b in real_bars.values())
    assert close_grid(real_bars, top_n=4, lookback=10_000).ts[0] == first
    end = int(real_bars["perp:BTCUSDT"].ts[250])
    pinned = close_grid(real_bars, top_n=4, lookback=100, end_ts=end)
    assert pinned.ts[-1] == end and len(pinned) == 100


def test_close_grid_excludes_constant_instruments_and_needs_two(real_bars):
    c = np.full(400, 5.0)
    flat = bars_of_closes(c[:, None], tf_ms=1000, t0=int(real_bars["perp:BTCUSDT"].ts[-300]),
                          names=["FLATUSDT"])
    grid = close_grid({**real_bars, **flat}, top_n=5, lookback=300)
    assert ("FLATUSDT", "constant price over the window") in grid.excluded
    assert "FLATUSDT" not in grid.names
    with pytest.raises(InsufficientData):
        close_grid({"perp:BTCUSDT": real_bars["perp:BTCUSDT"]}, top_n=5, lookback=300)


def test_correlation_prefilter_equals_pandas_corr_and_cuts_by_abs_corr():
    closes = factor_closes(n=12, t=800)
    ia, ib, corr, above = correlation_candidates(closes, min_corr=0.3, max_candidates=10)
    ref = pd.DataFrame(np.log(closes)).diff().corr()
    pairs = [(i, j, ref.iloc[i, j]) for i, j in itertools.combinations(range(12), 2)
             if abs(ref.iloc[i, j]) >= 0.3]
    pairs.sort(key=lambda p: (-abs(p[2]), p[0], p[1]))
    assert above == len(pairs) > 10
    assert list(zip(ia.tolist(), ib.tolist(), strict=True)) == [p[:2] for p in pairs[:10]]
    np.testing.assert_allclose(corr, [p[2] for p in pairs[:10]], rtol=1e-12)


# ------------------------------------------------------------------ the screen
def test_market_screen_rows_equal_independent_computations():
    closes = factor_closes(n=12, t=1440)
    bars = bars_of_closes(closes)
    params = MarketScreenParams(top_n=12, lookback=1440, min_corr=0.2, z_window=60)
    res = market_screen(bars, params)
    grid = close_grid(bars, top_n=12, lookback=1440)
    x = np.log(grid.closes)
    assert res.pairs_total == 66 and res.candidates == res.above_corr > 0
    assert res.n_bars == 1440 and res.maxlag == 12 and res.tf_ms == 60_000
    for r in res.rows:
        i, j = grid.names.index(r.a), grid.names.index(r.b)
        assert i < j and (r.rank_a, r.rank_b) == (i + 1, j + 1)
        stat, pval, lag = sm_coint(x[:, i] - x[:, i].mean(), x[:, j] - x[:, j].mean(), 12)
        assert (r.coint_stat, r.usedlag) == (pytest.approx(stat, rel=1e-9), lag)
        assert r.coint_pvalue == pytest.approx(pval, rel=1e-6, abs=1e-300)
        ols = sm.OLS(x[:, i], sm.add_constant(x[:, j], prepend=False)).fit()
        spread = x[:, i] - ols.params[1] - ols.params[0] * x[:, j]
        hl = half_life(spread)
        if hl.mean_reverting:
            assert r.half_life_bars == pytest.approx(hl.bars, rel=1e-7)
            assert r.half_life_seconds == pytest.approx(hl.bars * 60.0, rel=1e-7)
        else:
            assert r.half_life_bars is None
        s = pd.Series(spread)
        z = (s - s.rolling(60).mean()) / s.rolling(60).std()
        assert r.zscore == pytest.approx(z.iloc[-1], rel=1e-6, abs=1e-9)
        assert r.abs_z == abs(r.zscore)
    keys = [(r.coint_pvalue, math.inf if r.half_life_bars is None else r.half_life_bars,
             -r.abs_z) for r in res.rows]
    assert keys == sorted(keys)
    # the cointegrated groups (4 instruments each) come first
    assert all((int(r.a[1:3]) // 4 == int(r.b[1:3]) // 4) for r in res.rows[:5])


def test_market_screen_is_deterministic_and_end_pinned():
    closes = factor_closes(n=8, t=600)
    bars = bars_of_closes(closes)
    params = MarketScreenParams(top_n=8, lookback=400, min_corr=0.0)
    end = int(bars["S00USDT"].ts[499])
    first = market_screen(bars, params, end_ts=end)
    trimmed = {s: b.take(slice(0, 500)) for s, b in bars.items()}
    assert market_screen(trimmed, params) == first
    assert market_screen(bars, params, end_ts=end) == first
    assert first.end_ts == end and first.n_bars == 400


def test_both_orders_keeps_the_smaller_p_value():
    closes = factor_closes(n=6, t=800)
    bars = bars_of_closes(closes)
    base = MarketScreenParams(top_n=6, lookback=800, min_corr=0.0)
    one = {(r.a, r.b): r for r in market_screen(bars, base).rows}
    both = market_screen(bars, MarketScreenParams(top_n=6, lookback=800, min_corr=0.0,
                                                  both_orders=True))
    grid = close_grid(bars, top_n=6, lookback=800)
    x = np.log(grid.closes)
    x = x - x.mean(axis=0)
    swapped = 0
    for r in both.rows:
        i, j = grid.names.index(r.a), grid.names.index(r.b)
        p_ij, p_ji = sm_coint(x[:, i], x[:, j], both.maxlag)[1], sm_coint(
            x[:, j], x[:, i], both.maxlag)[1]
        assert r.coint_pvalue == pytest.approx(min(p_ij, p_ji), rel=1e-6, abs=1e-300)
        if (r.a, r.b) not in one:
            swapped += 1
            assert p_ij < p_ji * (1 - 1e-9)
    assert swapped > 0


def test_max_candidates_and_filtered():
    bars = bars_of_closes(factor_closes(n=10, t=600))
    res = market_screen(bars, MarketScreenParams(top_n=10, lookback=600, min_corr=0.0,
                                                 max_candidates=7))
    assert (res.above_corr, res.candidates) == (45, 7)
    sub = res.filtered(max_pvalue=0.05, min_abs_z=0.1)
    assert sub == tuple(r for r in res.rows if r.coint_pvalue <= 0.05 and r.abs_z >= 0.1)
    hl = res.filtered(max_half_life_bars=20.0)
    assert all(r.half_life_bars is not None and r.half_life_bars <= 20.0 for r in hl)


@pytest.mark.parametrize("kw, field", [
    ({"top_n": 1}, "top_n"), ({"top_n": 501}, "top_n"), ({"lookback": 5}, "lookback"),
    ({"min_corr": 1.5}, "min_corr"), ({"min_corr": True}, "min_corr"),
    ({"max_candidates": 0}, "max_candidates"), ({"prices": "pct"}, "prices"),
    ({"z_window": 2}, "z_window"), ({"maxlag": -1}, "maxlag"),
])
def test_params_name_the_bad_field(kw, field):
    with pytest.raises(ValueError, match=field):
        MarketScreenParams(**kw)


def test_too_few_bars_is_insufficient_data(real_bars):
    short = {s: b.take(slice(0, 10)) for s, b in real_bars.items()}
    with pytest.raises(InsufficientData):
        market_screen(short, MarketScreenParams(top_n=4, lookback=100, min_corr=0.0))


def test_no_candidate_gives_no_rows_but_says_so():
    bars = bars_of_closes(factor_closes(n=6, t=300))
    res = market_screen(bars, MarketScreenParams(top_n=6, lookback=300, min_corr=1.0))
    assert (res.rows, res.candidates, res.above_corr, res.pairs_total) == ((), 0, 0, 15)
