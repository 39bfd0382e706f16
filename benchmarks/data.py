"""Data page benchmark: the features table of a day of 1 s bars, paging, downloads, uploads.

``python -m benchmarks.data``

Data: a **synthetic** day (86,400 one-second buckets) of two cointegrated legs (log
random walk factor, OU residual; seed 7): leg A has a bar every second, leg B in ~85 %
of the seconds (so the pair grid carries B forward, as real data does). The bundled real
tape covers only 10.8 minutes; the question here is what a day costs.

Measured (wall time, median of repeats):

1. the features table (``pair_from_bars`` + ``pair_features``, OLS w=60, ADF every
   300 bars on 240 spreads at lag 12), and its ADF part alone; the fixed-lag ADF per call
   against ``statsmodels.adfuller`` with the same lag;
2. one grid page (``rows_response``, 100 rows): unfiltered, and with a filter + sort
   (``zscore > 1`` sorted by ``|corr|``), and the page's JSON size;
3. the CSV download of the whole filtered table (``export_frame`` + ``frame_bytes``);
4. uploads: ``parse_ohlc_csv`` of a day of 1 s bars exported by the app
   (generic CSV) and of a 12-column Binance file of the same size, and storing /
   reading it back (``SqliteDatasetStore.add`` / ``.bars``).

Prints a table, then the figures as one JSON object on the last line.
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from analytics.bars import Bars
from analytics.features import adf_fixed_lag, pair_features, pair_from_bars, rolling_adf
from analytics.upload import parse_ohlc_csv
from dashapp.api import downloads
from dashapp.components import data_table as dt
from dashapp.selection import Selection
from ingest.store.sqlite_datasets import SqliteDatasetStore

DAY_START_MS = 1_723_161_600_000
N = 86_400
SEED = 7


def synthetic_day() -> tuple[Bars, Bars]:
    rng = np.random.default_rng(SEED)
    f = np.cumsum(rng.normal(0, 1.2e-4, N))
    u = np.zeros(N)
    phi = 0.5 ** (1 / 1800)
    eps = rng.normal(0, 0.002 * np.sqrt(1 - phi**2), N)
    for i in range(1, N):
        u[i] = phi * u[i - 1] + eps[i]
    close_b = np.round(2600 * np.exp(f), 2)
    close_a = np.round(61000 * np.exp(0.8 * f + u), 2)
    ts = DAY_START_MS + np.arange(N, dtype=np.int64) * 1000

    def bars(close, keep):
        c = close[keep]
        t = ts[keep]
        o = np.r_[c[0], c[:-1]]
        spread = np.abs(rng.normal(0, 2e-5, len(c))) * c
        hi = np.round(np.maximum(o, c) + spread, 2)
        lo = np.round(np.minimum(o, c) - spread, 2)
        vol = np.round(rng.lognormal(-1, 1, len(c)), 4)
        n = len(c)
        return Bars(
            ts=t,
            open=o,
            high=hi,
            low=lo,
            close=c,
            volume=vol,
            quote_volume=vol * c,
            trades=rng.integers(1, 80, n),
            buy_volume=vol / 2,
            first_id=np.zeros(n, np.int64),
            last_id=np.zeros(n, np.int64),
            tf_ms=1000,
        )

    return bars(close_a, np.ones(N, bool)), bars(close_b, rng.random(N) < 0.85)


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, out


def bars_csv(b: Bars) -> bytes:
    frame = pd.DataFrame(
        {
            c: getattr(b, c)
            for c in (
                "ts",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "quote_volume",
                "trades",
            )
        }
    )
    frame["vwap"] = b.vwap
    frame["buy_volume"] = b.buy_volume
    return downloads.frame_bytes(frame, "csv")


def binance_csv(b: Bars) -> bytes:
    frame = pd.DataFrame(
        {
            0: b.ts,
            1: b.open,
            2: b.high,
            3: b.low,
            4: b.close,
            5: b.volume,
            6: b.ts + 999,
            7: b.quote_volume,
            8: b.trades,
            9: b.buy_volume,
            10: b.buy_volume * b.close,
            11: 0,
        }
    )
    buf = io.StringIO()
    frame.to_csv(buf, header=False, index=False, float_format="%.8f")
    return buf.getvalue().encode()


def main() -> int:
    a, b = synthetic_day()
    res: dict[str, float] = {}
    rows = []

    ms, (_, series) = timed(lambda: pair_from_bars(a, b, window=60), 3)
    res["pair_series_ms"] = ms
    ms, feats = timed(lambda: pair_features(a, b, series, window=60), 3)
    res["features_ms"] = ms
    res["rows"] = len(feats)
    ms, _ = timed(
        lambda: rolling_adf(series.spread, series.ts, every=300, lookback=240, lag=12),
        3,
    )
    res["adf_part_ms"] = ms
    win = series.spread[-240:]
    res["adf_fixed_lag_us"] = timed(lambda: adf_fixed_lag(win, 12), 200)[0] * 1000
    from statsmodels.tsa.stattools import adfuller

    res["adfuller_same_lag_us"] = (
        timed(lambda: adfuller(win, maxlag=12, autolag=None, result_object=True), 50)[0]
        * 1000
    )
    rows += [
        ("pair series, day of 1 s bars (OLS w=60)", f"{res['pair_series_ms']:.0f} ms"),
        (f"features table ({res['rows']:,} rows)", f"{res['features_ms']:.0f} ms"),
        (
            "  of which ADF (288 tests, 240 spreads, lag 12)",
            f"{res['adf_part_ms']:.0f} ms",
        ),
        ("fixed-lag ADF, one call", f"{res['adf_fixed_lag_us']:.0f} µs"),
        ("statsmodels adfuller, same lag", f"{res['adfuller_same_lag_us']:.0f} µs"),
    ]

    plain = {"startRow": 0, "endRow": 100, "sortModel": [], "filterModel": {}}
    filt = {
        "startRow": 200,
        "endRow": 300,
        "sortModel": [{"colId": "corr", "sort": "desc"}],
        "filterModel": {
            "zscore": {"filterType": "number", "type": "greaterThan", "filter": 1}
        },
    }
    ms, page = timed(lambda: dt.rows_response(feats, plain), 9)
    res["page_ms"] = ms
    res["page_kb"] = len(orjson.dumps(page)) / 1024
    ms, fpage = timed(lambda: dt.rows_response(feats, filt), 9)
    res["page_filtered_sorted_ms"] = ms
    res["filtered_rows"] = fpage["rowCount"]
    rows += [
        ("grid page, 100 rows", f"{res['page_ms']:.1f} ms, {res['page_kb']:.0f} KB"),
        (
            f"grid page, z > 1 sorted by corr ({res['filtered_rows']:,} rows)",
            f"{res['page_filtered_sorted_ms']:.1f} ms",
        ),
    ]

    sel = Selection("AAAUSDT", "BBBUSDT", "1s", 60, "ols", "raw", entry=2.0)
    ms, data = timed(
        lambda: downloads.frame_bytes(dt.export_frame(feats, sel, plain), "csv"), 3
    )
    res["csv_day_ms"] = ms
    res["csv_day_mb"] = len(data) / 1e6
    ms, _ = timed(
        lambda: downloads.frame_bytes(dt.export_frame(feats, sel, filt), "csv"), 3
    )
    res["csv_filtered_ms"] = ms
    rows += [
        (
            "CSV of the whole day's table",
            f"{res['csv_day_ms']:.0f} ms, {res['csv_day_mb']:.1f} MB",
        ),
        ("CSV of the filtered table", f"{res['csv_filtered_ms']:.0f} ms"),
    ]

    gen = bars_csv(a)
    bin_ = binance_csv(a)
    ms, up = timed(lambda: parse_ohlc_csv(gen, symbol="AAAUSDT"), 3)
    res["parse_generic_day_ms"] = ms
    res["generic_mb"] = len(gen) / 1e6
    ms, upb = timed(lambda: parse_ohlc_csv(bin_, symbol="AAAUSDT"), 3)
    res["parse_binance_day_ms"] = ms
    res["binance_mb"] = len(bin_) / 1e6
    assert up.rows == upb.rows == N
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteDatasetStore(Path(tmp) / "bench.db")
        t = time.perf_counter()
        store.add("day", up)
        res["store_add_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        store.bars("day", "AAAUSDT")
        res["store_read_cold_ms"] = (time.perf_counter() - t) * 1000
        store.close()
    rows += [
        (
            f"parse generic CSV, day of 1 s bars ({res['generic_mb']:.1f} MB)",
            f"{res['parse_generic_day_ms']:.0f} ms",
        ),
        (
            f"parse Binance CSV, 86,400 rows ({res['binance_mb']:.1f} MB)",
            f"{res['parse_binance_day_ms']:.0f} ms",
        ),
        ("store 86,400 bars (one transaction)", f"{res['store_add_ms']:.0f} ms"),
        ("read them back (cold)", f"{res['store_read_cold_ms']:.0f} ms"),
    ]

    width = max(len(r[0]) for r in rows)
    print("Data page benchmark (synthetic day of 1 s bars, 2-core machine)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>18}")
    print(
        json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()},
            separators=(",", ":"),
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
