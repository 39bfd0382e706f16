"""Mid bars (``analytics.midprice``): batch :func:`mid_bars` against pandas from the raw
``@bookTicker`` frames of a real capture (futures BTCUSDT, bucketed by ``T``), and the
incremental :class:`MidCloser` against the batch at every timeframe."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from analytics.book import book_bars
from analytics.midprice import MidCloser, mid_bars
from tests.analytics.conftest import SAMPLE_DIR

RAW = SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz"


@pytest.fixture(scope="module")
def quotes() -> pd.DataFrame:
    rows = []
    with gzip.open(RAW, "rt") as fh:
        for line in fh:
            d = json.loads(line.split(" ", 1)[1])["data"]
            if d.get("e") == "bookTicker":
                rows.append((d["T"], float(d["b"]), float(d["a"]), float(d["B"]),
                             float(d["A"])))
    return pd.DataFrame(rows, columns=["T", "bid", "ask", "bid_qty", "ask_qty"])


@pytest.fixture(scope="module")
def fine(quotes) -> pd.DataFrame:
    """The 1 s book bars of the capture (analytics.book's batch)."""
    q = quotes
    return book_bars(q["T"], q["bid"], q["ask"], q["bid_qty"], q["ask_qty"], 1_000)


@pytest.mark.parametrize("tf", [1_000, 5_000, 60_000])
def test_mid_bars_are_the_last_mid_of_each_bucket_with_a_quote(quotes, fine, tf):
    got = mid_bars(fine["ts"], fine["bid"], fine["ask"], fine["updates"], tf)
    q = quotes.assign(ts=quotes["T"] // tf * tf, mid=(quotes["bid"] + quotes["ask"]) / 2)
    want = q.groupby("ts").agg(close=("mid", "last"), n=("mid", "size"))
    np.testing.assert_array_equal(got.ts, want.index.to_numpy(np.int64))
    np.testing.assert_array_equal(got.close, want["close"].to_numpy())
    np.testing.assert_array_equal(got.trades, want["n"].to_numpy())
    # high/low: of the 1 s mids inside the bucket (the last quote of each second)
    sec = q.assign(sec=q["T"] // 1000 * 1000).groupby("sec")["mid"].last()
    hi = sec.groupby(sec.index // tf * tf).max()
    np.testing.assert_array_equal(got.high, hi.to_numpy())


@pytest.mark.parametrize("tf", [1_000, 10_000, 60_000])
def test_closer_emits_exactly_the_batch_rows(fine, tf):
    closer, got = MidCloser(tf), []
    for r in fine.itertuples():
        got += closer.on_clock(int(r.ts))  # the clock reaches each second's start first
        got += closer.on_book_bar(int(r.ts), r.bid, r.ask, int(r.updates))
        if tf > 1_000 and got:
            assert closer.open_ts is None or closer.open_ts > got[-1].ts
    got += closer.on_clock(int(fine["ts"].iloc[-1]) + tf)
    want = mid_bars(fine["ts"], fine["bid"], fine["ask"], fine["updates"], tf)
    assert [b.ts for b in got] == want.ts.tolist()
    assert [b.close for b in got] == want.close.tolist()
    assert [b.open for b in got] == want.open.tolist()
    assert [b.trades for b in got] == want.trades.tolist()
    assert closer.open_ts is None


def test_seconds_without_a_quote_make_no_bar():
    bars = mid_bars([0, 1_000, 2_000], [1.0, np.nan, 3.0], [2.0, np.nan, 5.0], [2, 0, 1],
                    1_000)
    assert bars.ts.tolist() == [0, 2_000] and bars.close.tolist() == [1.5, 4.0]
    closer = MidCloser(1_000)
    assert closer.on_book_bar(1_000, 1.0, 2.0, 0) == []  # a carried second: nothing
