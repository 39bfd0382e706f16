"""Bars: batch vs a pandas groupby oracle, resampling, and the live BarBuilder.

Oracles run on the real recorded Binance tape (conftest ``sample_ticks``).
Prices, counts and ids must match exactly; float sums to 1e-12 relative when the
oracle sums in a different order (pandas' groupby sum is compensated), and
bit for bit between BarBuilder and bars_from_ticks (both sum left to right).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.bars import (
    BAR_FIELDS,
    Bar,
    BarBuilder,
    Bars,
    bars_from_ticks,
    resample_bars,
)
from analytics.timeframes import (
    SUPPORTED_UI,
    bars_per_day,
    format_timeframe,
    pandas_freq,
    parse_timeframe,
)

SUMS = ("volume", "quote_volume", "buy_volume")
EXACT = tuple(f for f in BAR_FIELDS if f not in SUMS)
TICK_COLS = ("time_ms", "trade_id", "price", "qty", "buyer_is_maker")


# -- helpers ---------------------------------------------------------------------------
def pandas_bars(cols: dict, tf_ms: int) -> pd.DataFrame:
    """The oracle: sort by (T, id), group by floor(T / tf) * tf, aggregate."""
    df = pd.DataFrame({c: np.asarray(cols[c]) for c in TICK_COLS})
    df = df.sort_values(["time_ms", "trade_id"], kind="stable")
    df["bucket"] = df["time_ms"] // tf_ms * tf_ms
    df["quote"] = df["price"] * df["qty"]
    df["buy"] = df["qty"].where(~df["buyer_is_maker"], 0.0)
    out = df.groupby("bucket", sort=True).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("qty", "sum"),
        quote_volume=("quote", "sum"),
        trades=("price", "count"),
        buy_volume=("buy", "sum"),
        first_id=("trade_id", "first"),
        last_id=("trade_id", "last"),
    )
    out["vwap"] = out["quote_volume"] / out["volume"]
    return out


def assert_bars_equal(got: Bars, want: Bars, *, exact_sums: bool = True) -> None:
    assert got.tf_ms == want.tf_ms
    assert len(got) == len(want)
    for f in EXACT:
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    for f in SUMS:
        if exact_sums:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
        else:
            np.testing.assert_allclose(
                getattr(got, f), getattr(want, f), rtol=1e-12, err_msg=f
            )


def take(cols: dict, idx) -> dict:
    return {c: np.asarray(cols[c])[idx] for c in TICK_COLS}


def rows(cols: dict):
    return zip(*(np.asarray(cols[c]).tolist() for c in TICK_COLS), strict=True)


def prefix_oracle(cols: dict, tf_ms: int) -> list[Bar]:
    """The open bar after each tick of (T, id)-ordered ticks, built with numpy.

    Within a bucket: running max/min, and np.cumsum (sequential, like the builder).
    """
    t = np.asarray(cols["time_ms"])
    px, q = np.asarray(cols["price"]), np.asarray(cols["qty"])
    ids, m = np.asarray(cols["trade_id"]), np.asarray(cols["buyer_is_maker"])
    bucket = t // tf_ms * tf_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t)]
    out: list[Bar] = []
    for s, e in zip(starts, ends, strict=True):
        p, qq = px[s:e], q[s:e]
        hi, lo = np.maximum.accumulate(p), np.minimum.accumulate(p)
        v, qv, bv = np.cumsum(qq), np.cumsum(p * qq), np.cumsum(qq * ~m[s:e])
        for k in range(e - s):
            out.append(
                Bar(
                    int(bucket[s]), float(p[0]), float(hi[k]), float(lo[k]),
                    float(p[k]), float(v[k]), float(qv[k]), k + 1, float(bv[k]),
                    int(ids[s]), int(ids[s + k]),
                )
            )
    return out


def run_builder(builder: BarBuilder, ticks, clocks=None) -> list[Bar]:
    """Feed ticks (and optional clock calls before each tick); flush; return bars."""
    bars = []
    for i, tick in enumerate(ticks):
        if clocks is not None and clocks[i] is not None:
            bar = builder.on_clock(clocks[i])
            if bar is not None:
                bars.append(bar)
        bar = builder.on_tick(*tick)
        if bar is not None:
            bars.append(bar)
    last = builder.flush()
    if last is not None:
        bars.append(last)
    return bars


# -- timeframes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ms"),
    [("1s", 1_000), ("5s", 5_000), ("1m", 60_000), ("5m", 300_000), ("15m", 900_000),
     ("1h", 3_600_000), ("4h", 14_400_000), ("1d", 86_400_000), ("1w", 604_800_000),
     ("90s", 90_000), ("2000ms", 2_000)],
)
def test_parse_timeframe(text, ms):
    assert parse_timeframe(text) == ms
    assert parse_timeframe(format_timeframe(ms)) == ms


@pytest.mark.parametrize(
    "bad",
    ["", "1", "s", "0s", "500ms", "1.5s", "1M", "1H", "1T", "1min", " 1s", "-1s", "1 s",
     0, -1000, 1500, True, 1.0],
)
def test_parse_timeframe_rejects(bad):
    named = repr(bad) if isinstance(bad, str) else str(bad)
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_timeframe(bad)


def test_format_and_helpers():
    canonical = [format_timeframe(parse_timeframe(s)) for s in SUPPORTED_UI]
    assert canonical == list(SUPPORTED_UI)
    assert format_timeframe(60_000) == "1m" and format_timeframe(90_000) == "90s"
    assert format_timeframe(3_600_000) == "1h" and format_timeframe(7_200_000) == "2h"
    freqs = [pandas_freq(parse_timeframe(s)) for s in ("1s", "1m", "5m", "1h", "1d")]
    assert freqs == ["1s", "1min", "5min", "1h", "1D"]
    assert bars_per_day(1_000) == 86_400 and bars_per_day(60_000) == 1_440
    assert bars_per_day(300_000) == 288 and bars_per_day(2 * 86_400_000) == 1
    with pytest.raises(ValueError):
        bars_per_day(1)


# -- batch vs pandas oracle ------------------------------------------------------------
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize("tf", ["1s", "1m", "5m"])
def test_bars_from_ticks_matches_pandas(sample_ticks, symbol, tf):
    cols, tf_ms = sample_ticks[symbol], parse_timeframe(tf)
    bars = bars_from_ticks(**cols, tf_ms=tf_ms)
    want = pandas_bars(cols, tf_ms)
    assert len(bars) == len(want) > 0
    np.testing.assert_array_equal(bars.ts, want.index.to_numpy())
    for f in ("open", "high", "low", "close", "trades", "first_id", "last_id"):
        np.testing.assert_array_equal(getattr(bars, f), want[f].to_numpy(), err_msg=f)
    for f in (*SUMS, "vwap"):
        np.testing.assert_allclose(getattr(bars, f), want[f].to_numpy(), rtol=1e-12)
    assert bars.trades.sum() == len(cols["time_ms"])
    assert bars.ts.dtype == np.int64 and bars.trades.dtype == np.int64
    assert bars.first_id.dtype == np.int64 and bars.open.dtype == np.float64


def test_bars_match_pandas_resample_frame(sample_ticks):
    """to_frame() against pandas' own time resample (empty buckets dropped)."""
    cols = sample_ticks["ETHUSDT"]
    when = pd.to_datetime(cols["time_ms"], unit="ms", utc=True)
    s = pd.Series(cols["price"], index=when)
    ohlc = s.resample(pandas_freq(60_000)).ohlc().dropna()
    frame = bars_from_ticks(**cols, tf_ms=60_000).to_frame()
    pd.testing.assert_frame_equal(
        frame[["open", "high", "low", "close"]],
        ohlc,
        check_names=False,
        check_freq=False,
        check_index_type=False,
    )
    np.testing.assert_array_equal(frame.index.asi8 // 1000, ohlc.index.asi8 // 1000)


def test_unsorted_input_is_sorted_by_time_then_id(sample_ticks):
    cols = sample_ticks["BTCUSDT"]
    perm = np.random.default_rng(7).permutation(len(cols["time_ms"]))
    shuffled = bars_from_ticks(**take(cols, perm), tf_ms=1_000)
    assert_bars_equal(shuffled, bars_from_ticks(**cols, tf_ms=1_000), exact_sums=False)


def test_edge_cases():
    empty = bars_from_ticks([], [], [], [], [], tf_ms=1_000)
    assert len(empty) == 0 and empty.tf_ms == 1_000 and empty.ts.dtype == np.int64
    assert empty.to_frame().empty

    one = bars_from_ticks([1_500], [7], [10.0], [2.0], [False], tf_ms=1_000)
    assert one.bar(0) == Bar(1_000, 10.0, 10.0, 10.0, 10.0, 2.0, 20.0, 1, 2.0, 7, 7)

    # Exactly on a boundary: T = 2000 starts bucket 2000; 1999 is the last ms of 1000.
    b = bars_from_ticks([1_999, 2_000, 2_999, 3_000], [1, 2, 3, 4],
                        [1.0, 2.0, 3.0, 4.0], [1.0] * 4, [True] * 4, tf_ms=1_000)
    assert b.ts.tolist() == [1_000, 2_000, 3_000]
    assert b.trades.tolist() == [1, 2, 1]
    assert b.buy_volume.tolist() == [0.0, 0.0, 0.0]

    # Same T, ids out of order in the input: (T, id) decides open/close.
    b = bars_from_ticks([5_000, 5_000, 5_000], [12, 10, 11], [3.0, 1.0, 2.0],
                        [1.0, 1.0, 1.0], [False, True, False], tf_ms=1_000)
    assert (b.open[0], b.close[0], b.first_id[0], b.last_id[0]) == (1.0, 3.0, 10, 12)
    assert (b.trades[0], b.buy_volume[0], b.volume[0]) == (3, 2.0, 3.0)

    # Before the epoch floors too (floor, not truncation).
    b = bars_from_ticks([-1, 0], [1, 2], [1.0, 2.0], [1.0, 1.0], [True, True],
                        tf_ms=1_000)
    assert b.ts.tolist() == [-1_000, 0]

    # Sparse: ticks years apart do not allocate a bin per empty bucket.
    b = bars_from_ticks([0, 10**12, 10**12 + 1], [1, 2, 3], [1.0, 2.0, 3.0],
                        [1.0, 1.0, 1.0], [True, False, True], tf_ms=1_000)
    assert b.ts.tolist() == [0, 10**12] and b.buy_volume.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_ms": [1, 2]}, "differ in length"),
        ({"time_ms": [1.5]}, "time_ms must have dtype"),
        ({"price": [float("nan")]}, "price must be finite"),
        ({"qty": [float("inf")]}, "qty must be finite"),
        ({"time_ms": [[1]]}, "1-D"),
    ],
)
def test_bars_from_ticks_validates(kwargs, match):
    cols = {"time_ms": [1], "trade_id": [1], "price": [1.0], "qty": [1.0],
            "buyer_is_maker": [True]} | kwargs
    with pytest.raises(ValueError, match=match):
        bars_from_ticks(**cols, tf_ms=1_000)
    with pytest.raises(ValueError, match="multiple of one second"):
        bars_from_ticks([1], [1], [1.0], [1.0], [True], tf_ms=500)


# -- resample --------------------------------------------------------------------------
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize(("fine", "coarse"), [("1s", "1m"), ("1s", "5m"), ("5s", "1m"),
                                              ("1s", "15s"), ("1m", "5m")])
def test_resample_equals_batch_at_coarse_tf(sample_ticks, symbol, fine, coarse):
    cols = sample_ticks[symbol]
    fine_bars = bars_from_ticks(**cols, tf_ms=parse_timeframe(fine))
    got = resample_bars(fine_bars, tf_ms=parse_timeframe(coarse))
    assert_bars_equal(got, bars_from_ticks(**cols, tf_ms=parse_timeframe(coarse)),
                      exact_sums=False)


def test_resample_validates_and_edges(sample_bars_1s):
    bars = sample_bars_1s["BTCUSDT"]
    assert resample_bars(bars, tf_ms=1_000) is bars
    assert len(resample_bars(Bars.empty(1_000), tf_ms=60_000)) == 0
    with pytest.raises(ValueError, match="multiple"):
        resample_bars(resample_bars(bars, tf_ms=60_000), tf_ms=90_000)
    with pytest.raises(ValueError, match="multiple"):
        resample_bars(bars, tf_ms=1_500)


# -- Bar / Bars API --------------------------------------------------------------------
def test_bar_row_and_vwap():
    bar = Bar(60_000, 1.0, 3.0, 0.5, 2.0, 4.0, 8.0, 5, 1.0, 10, 14)
    assert bar.as_row() == (60_000, 1.0, 3.0, 0.5, 2.0, 4.0, 8.0, 5, 1.0, 10, 14)
    assert tuple(BAR_FIELDS) == tuple(f for f in Bar.__dataclass_fields__)
    assert bar.vwap == 2.0
    assert math.isnan(Bar(0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1, 0.0, 1, 1).vwap)
    with pytest.raises(AttributeError):
        bar.close = 3.0  # frozen


def test_bars_containers(sample_bars_1s):
    bars = sample_bars_1s["ETHUSDT"]
    n = len(bars)
    as_rows = [bars.bar(i).as_row() for i in range(n)]
    assert Bars.from_rows(as_rows, 1_000).ts.tolist() == bars.ts.tolist()
    assert_bars_equal(Bars.from_rows([bars.bar(i) for i in range(n)], 1_000), bars)
    with_extra = bars.columns() | {"vwap": bars.vwap}  # extra keys are ignored
    assert_bars_equal(Bars.from_columns(with_extra, 1_000), bars)
    assert_bars_equal(Bars.from_rows([], 1_000), Bars.empty(1_000))
    with pytest.raises(ValueError, match="missing columns"):
        Bars.from_columns({"ts": bars.ts}, 1_000)
    with pytest.raises(ValueError, match="11 fields"):
        Bars.from_rows([(1, 2, 3)], 1_000)

    last10 = [bars.bar(i) for i in range(n - 10, n)]
    assert_bars_equal(bars.tail(10), Bars.from_rows(last10, 1_000))
    assert len(bars.tail(0)) == 0 and len(bars.tail(10 * n)) == n
    cut = int(bars.ts[100])
    assert bars.since(cut).ts[0] == cut and len(bars.since(cut)) == n - 100
    assert len(bars.since(cut + 1)) == n - 101
    assert_bars_equal(bars.tail(n - 100).concat(Bars.empty(1_000)), bars.since(cut))
    assert_bars_equal(bars.since(cut).tail(0).concat(bars.since(cut)), bars.since(cut))
    assert_bars_equal(bars.tail(n).take(slice(0, 100)).concat(bars.since(cut)), bars)
    with pytest.raises(ValueError, match="not after"):
        bars.concat(bars.tail(1))
    with pytest.raises(ValueError, match="tf_ms differ"):
        bars.concat(Bars.empty(60_000))

    with pytest.raises(ValueError, match="read-only"):
        bars.close[0] = 1.0
    with pytest.raises(ValueError, match="strictly increasing"):
        Bars.from_columns(bars.columns() | {"ts": bars.ts[::-1]}, 1_000)
    with pytest.raises(ValueError, match="multiples of tf_ms"):
        Bars.from_columns(bars.columns(), 60_000)
    with pytest.raises(ValueError, match="differ in length"):
        Bars.from_columns(bars.columns() | {"close": bars.close[:-1]}, 1_000)
    as_float = Bars.from_columns(bars.columns() | {"trades": bars.trades * 1.0}, 1_000)
    assert as_float.trades.dtype == np.int64
    np.testing.assert_array_equal(as_float.trades, bars.trades)
    with pytest.raises(ValueError, match="whole numbers"):
        Bars.from_columns(bars.columns() | {"trades": bars.trades + 0.5}, 1_000)


def test_to_frame(sample_bars_1s):
    bars = sample_bars_1s["BTCUSDT"]
    frame = bars.to_frame()
    assert list(frame.columns) == ["open", "high", "low", "close", "volume",
                                   "quote_volume", "trades", "buy_volume", "vwap"]
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "ts"
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp(int(bars.ts[0]), unit="ms", tz="UTC")
    np.testing.assert_array_equal(frame["close"].to_numpy(), bars.close)
    assert frame["trades"].dtype == np.int64
    np.testing.assert_allclose(frame["vwap"], frame["quote_volume"] / frame["volume"],
                               rtol=1e-15)
    frame.loc[frame.index[0], "close"] = -1.0  # writable copy; the Bars is untouched
    assert bars.close[0] != -1.0


# -- BarBuilder ------------------------------------------------------------------------
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize("tf", ["1s", "5s", "1m"])
def test_builder_equals_batch_at_every_step(sample_ticks, symbol, tf):
    cols, tf_ms = sample_ticks[symbol], parse_timeframe(tf)
    batch = bars_from_ticks(**cols, tf_ms=tf_ms)
    want_closed = [batch.bar(i) for i in range(len(batch))]
    want_open = prefix_oracle(cols, tf_ms)
    builder = BarBuilder(tf_ms)
    closed: list[Bar] = []
    for i, tick in enumerate(rows(cols)):
        bar = builder.on_tick(*tick)
        if bar is not None:
            assert bar == want_closed[len(closed)]  # bit-identical, all fields
            closed.append(bar)
            assert builder.last_closed is bar
        assert builder.current == want_open[i]
    assert builder.flush() == want_closed[-1]
    assert len(closed) == len(want_closed) - 1 and builder.late_ticks == 0
    assert builder.current is None


@pytest.mark.parametrize("delay", [0, 250, 2_000])
@pytest.mark.parametrize("tf", ["1s", "5s", "1m"])
def test_builder_with_clock_gives_same_bars_earlier(sample_ticks, tf, delay):
    """Clock calls anywhere between ticks (never ahead of the next tick's T)."""
    cols, tf_ms = sample_ticks["BTCUSDT"], parse_timeframe(tf)
    t = cols["time_ms"]
    rng = np.random.default_rng(11)
    # Before tick i, a clock at a random time in [T[i-1], T[i]] for ~half the ticks.
    clocks = [None] + [
        int(rng.integers(t[i - 1], t[i] + 1)) if rng.random() < 0.5 else None
        for i in range(1, len(t))
    ]
    builder = BarBuilder(tf_ms, close_delay_ms=delay)
    got = run_builder(builder, rows(cols), clocks)
    batch = bars_from_ticks(**cols, tf_ms=tf_ms)
    assert got == [batch.bar(i) for i in range(len(batch))]
    assert builder.late_ticks == 0


def test_builder_clock_rules():
    b = BarBuilder(1_000, close_delay_ms=200)
    assert b.floor is None
    assert b.current is None and b.on_clock(10_000) is None  # nothing open
    assert b.floor == 9_000  # bucket 8_000's deadline 9_200 has passed
    assert b.on_tick(10_100, 1, 5.0, 1.0, True) is None
    assert b.on_clock(11_199) is None  # deadline is 10_000 + 1_000 + 200
    assert b.current.ts == 10_000
    bar = b.on_clock(11_200)
    assert bar is not None and bar.ts == 10_000
    assert b.current is None and b.last_closed is bar
    # The closed bucket does not reopen: a tick for it is late.
    assert b.on_tick(10_999, 2, 6.0, 1.0, True) is None and b.late_ticks == 1
    assert b.current is None
    # The clock at 13_500 passed the deadline of bucket 12_000 (13_200) too,
    # though it never had a tick: a tick for it is late; 13_000 is still open.
    assert b.floor == 11_000
    assert b.on_clock(13_500) is None and b.floor == 13_000
    b.on_tick(12_500, 3, 6.0, 1.0, True)
    assert b.late_ticks == 2
    b.on_tick(13_001, 4, 7.0, 1.0, True)
    assert b.current.ts == 13_000 and b.late_ticks == 2
    b.on_clock(1)  # a clock going backwards changes nothing
    assert b.current.ts == 13_000
    # A tick before the open bucket is late; one in a later bucket closes it.
    b.on_tick(12_999, 5, 1.0, 1.0, True)
    assert b.late_ticks == 3 and b.current.trades == 1
    bar = b.on_tick(15_000, 6, 8.0, 1.0, False)
    assert bar.ts == 13_000 and bar.trades == 1 and b.current.ts == 15_000
    assert b.current.buy_volume == 1.0


def test_builder_orders_within_bucket_by_time_then_id():
    b = BarBuilder(1_000)
    for t, i, p in [(500, 10, 1.0), (400, 12, 2.0), (400, 11, 3.0), (900, 9, 4.0),
                    (900, 13, 5.0), (900, 8, 6.0), (100, 20, 7.0)]:
        b.on_tick(t, i, p, 1.0, True)
    cur = b.current
    assert (cur.open, cur.first_id, cur.close, cur.last_id) == (7.0, 20, 5.0, 13)
    assert (cur.high, cur.low, cur.trades) == (7.0, 1.0, 7)


def test_builder_validates():
    with pytest.raises(ValueError):
        BarBuilder(1_500)
    with pytest.raises(ValueError, match=">= 0"):
        BarBuilder(1_000, close_delay_ms=-1)
    with pytest.raises(ValueError, match="integer"):
        BarBuilder(1_000, close_delay_ms=0.5)


# -- hypothesis: builder vs batch on random tapes --------------------------------------
@st.composite
def tapes(draw):
    """Random ticks in (T, id) order: ties in T, gaps of several buckets, few prices."""
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.sampled_from([0, 0, 1, 7, 250, 999, 1_000, 1_001, 4_321]),
                         min_size=n, max_size=n))
    t0 = draw(st.integers(-5_000, 5_000))
    t = (t0 + np.cumsum(gaps)).astype(np.int64)
    # id steps of 0 make exact (T, id) duplicates: input order must break the tie.
    ids = 100 + np.cumsum(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    prices = draw(st.lists(st.sampled_from([99.5, 100.0, 100.25, 101.0, 0.1, 3e4]),
                           min_size=n, max_size=n))
    qty = draw(st.lists(st.floats(1e-8, 50.0, allow_nan=False), min_size=n, max_size=n))
    maker = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return {"time_ms": t, "trade_id": ids.astype(np.int64), "price": np.array(prices),
            "qty": np.array(qty), "buyer_is_maker": np.array(maker)}


@settings(max_examples=150, deadline=None)
@given(tape=tapes(), tf=st.sampled_from([1_000, 2_000, 5_000]),
       delay=st.sampled_from([0, 1, 500]), data=st.data())
def test_builder_equals_batch_in_order(tape, tf, delay, data):
    """In-order ticks + truthful clocks: bit-identical bars, no late ticks."""
    t = tape["time_ms"]
    clocks = [
        data.draw(st.one_of(st.none(), st.integers(int(t[i - 1]), int(t[i]))))
        if i else None
        for i in range(len(t))
    ]
    builder = BarBuilder(tf, close_delay_ms=delay)
    got = run_builder(builder, rows(tape), clocks)
    batch = bars_from_ticks(**tape, tf_ms=tf)
    assert got == [batch.bar(i) for i in range(len(batch))]
    assert builder.late_ticks == 0
    # ...and the open bar at every step equals the prefix oracle.
    builder, want = BarBuilder(tf), prefix_oracle(tape, tf)
    for i, tick in enumerate(rows(tape)):
        builder.on_tick(*tick)
        assert builder.current == want[i]


@settings(max_examples=150, deadline=None)
@given(tape=tapes(), tf=st.sampled_from([1_000, 5_000]),
       delay=st.sampled_from([0, 300]), data=st.data())
def test_builder_out_of_order_equals_batch_without_late_ticks(tape, tf, delay, data):
    """Any arrival order, any monotone clock: the bars are the batch bars of exactly
    the ticks that were not reported late, emitted in time order."""
    n = len(tape["time_ms"])
    order = data.draw(st.permutations(range(n)))
    arrived = take(tape, np.array(order, dtype=np.intp))
    clock_steps = data.draw(st.lists(st.one_of(st.none(), st.integers(0, 3_000)),
                                     min_size=n, max_size=n))
    now = int(tape["time_ms"].min()) - 10_000
    builder = BarBuilder(tf, close_delay_ms=delay)
    got, kept = [], []
    for i, tick in enumerate(rows(arrived)):
        if clock_steps[i] is not None:
            now += clock_steps[i]
            bar = builder.on_clock(now)
            if bar is not None:
                got.append(bar)
        late = builder.late_ticks
        bar = builder.on_tick(*tick)
        if bar is not None:
            got.append(bar)
        if builder.late_ticks == late:
            kept.append(i)
    if (bar := builder.flush()) is not None:
        got.append(bar)
    assert builder.late_ticks == n - len(kept)
    assert [b.ts for b in got] == sorted({b.ts for b in got})  # time order, no repeats
    want = bars_from_ticks(**take(arrived, np.array(kept, dtype=np.intp)), tf_ms=tf)
    assert_bars_equal(Bars.from_rows(got, tf), want, exact_sums=False)
