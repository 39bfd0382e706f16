"""Top-of-book bars (analytics/book.py) on the REAL raw captures in sample_data/.

The captures are ``<recv ns> <combined-stream frame>`` lines (hftbacktest raw capture).
Futures bookTicker frames carry ``T`` (bucketed by it); spot ones carry no time, so
they are bucketed by the receive time (the capture's receive clock, in ms).

Checked: the live builder equals the batch twin at every step (bit for bit), both equal
an independent pandas computation (a step function of the quote in force, sampled at
every update and bucket boundary), the coarse resample is exact, and a hand-worked case.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from analytics.book import (
    BOOK_FIELDS,
    BookBar,
    BookBarBuilder,
    BookBars,
    BookResampler,
    book_bar_columns,
    book_bars,
    book_columns,
    mid_closes,
    quote_spread_bps,
    resample_book,
)
from analytics.registry import BAR_COLUMNS, BOOK_COLUMNS

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CAPTURES = {
    # name: (file, bucketed by)
    "spot_ETH_first3000": ("hftbacktest-rawcapture_spot_ETHUSDT_20240809_first3000.gz", "recv"),
    "spot_BTC": ("hftbacktest-rawcapture-trade-book_spot_BTCUSDT_20240808_2354-2356.gz", "recv"),
    "perp_BTC": ("hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz", "T"),
    "perp_ETH": ("hftbacktest-rawcapture-trade-book_um_ETHUSDT_20240808_2354-2356.gz", "T"),
}
_CACHE: dict[str, dict[str, np.ndarray]] = {}


def load_book(name: str) -> dict[str, np.ndarray]:
    """bookTicker updates of a capture, in recorded (arrival) order."""
    if name not in _CACHE:
        path, by = CAPTURES[name]
        rows = []
        with gzip.open(SAMPLE / path, "rb") as fh:
            for line in fh:
                recv, frame = line.split(b" ", 1)
                msg = orjson.loads(frame)
                if not msg.get("stream", "").endswith("@bookTicker"):
                    continue
                d = msg["data"]
                t = d["T"] if by == "T" else int(recv) // 1_000_000
                rows.append((t, float(d["b"]), float(d["a"]), float(d["B"]), float(d["A"])))
        t, b, a, bq, aq = map(np.array, zip(*rows))
        _CACHE[name] = {"times": t.astype(np.int64), "bids": b, "asks": a, "bid_qtys": bq,
                        "ask_qtys": aq}  # fmt: skip
    return _CACHE[name]


def pandas_book_bars(q: dict[str, np.ndarray], tf: int) -> pd.DataFrame:
    """Independent: the quote in force as a step function, cut at every bucket edge."""
    df = pd.DataFrame({"t": np.maximum.accumulate(q["times"]), "bid": q["bids"],
                       "ask": q["asks"], "bq": q["bid_qtys"], "aq": q["ask_qtys"]})  # fmt: skip
    df["bucket"] = df["t"] // tf * tf
    last = df.groupby("bucket").last()
    counts = df.groupby("bucket").size()
    # segments: each update stands until the next update or the next bucket edge
    spread = (df["ask"] - df["bid"]) / ((df["ask"] + df["bid"]) / 2) * 10_000
    edges = np.arange(df["bucket"].iloc[0], df["bucket"].iloc[-1] + tf + 1, tf)
    points = pd.Series(spread.to_numpy(), index=df["t"].to_numpy())
    points = points[~points.index.duplicated(keep="last")]  # same ms: the last one stands
    grid = np.union1d(points.index.to_numpy(), edges)
    inforce = points.reindex(grid, method="ffill")  # NaN before the first update
    dur = np.diff(grid)
    seg = pd.DataFrame({"start": grid[:-1], "s": inforce.to_numpy()[:-1], "d": dur})
    seg = seg[np.isfinite(seg["s"])]
    seg["bucket"] = seg["start"] // tf * tf
    seg["w"] = seg["s"] * seg["d"]
    g = seg.groupby("bucket")[["w", "d"]].sum()
    twa = (g["w"] / g["d"]).reindex(last.index)
    return pd.DataFrame({"ts": last.index.to_numpy(), "bid": last["bid"].to_numpy(),
                         "ask": last["ask"].to_numpy(), "bid_qty": last["bq"].to_numpy(),
                         "ask_qty": last["aq"].to_numpy(), "spread_bps_twa": twa.to_numpy(),
                         "updates": counts.reindex(last.index).to_numpy()})  # fmt: skip


def feed(q, tf=1_000, clock_every: int | None = None):
    """Run the live builder; returns (closed bars, builder). ``clock_every``: call the
    clock before every k-th update at that update's time (never ahead of the tape)."""
    b = BookBarBuilder(tf)
    out = []
    t = np.maximum.accumulate(q["times"])
    for i in range(len(t)):
        if clock_every and i % clock_every == 0:
            c = b.on_clock(int(t[i]))
            if c is not None:
                out.append(c)
        c = b.on_quote(int(q["times"][i]), float(q["bids"][i]), float(q["asks"][i]),
                       float(q["bid_qtys"][i]), float(q["ask_qtys"][i]))  # fmt: skip
        if c is not None:
            out.append(c)
    last = b.flush()
    if last is not None:
        out.append(last)
    return out, b


def assert_same(a: BookBars, b: BookBars) -> None:
    for f in BOOK_FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


# ----------------------------------------------------------------------- raw data
@pytest.mark.parametrize("name", list(CAPTURES))
def test_live_builder_equals_the_batch_at_every_bar(name):
    q = load_book(name)
    assert len(q["times"]) > 2000
    batch = book_bar_columns(**q, tf_ms=1_000)
    for clock_every in (None, 7):
        closed, builder = feed(q, clock_every=clock_every)
        assert builder.reordered == 0
        live = BookBars.from_rows(closed, 1_000)
        assert_same(live, batch)  # every bar, in order, bit for bit
        assert live.first_cover_ms == batch.first_cover_ms


@pytest.mark.parametrize("name", list(CAPTURES))
@pytest.mark.parametrize("tf", [1_000, 5_000, 60_000])
def test_batch_equals_an_independent_pandas_computation(name, tf):
    q = load_book(name)
    got = book_bars(**q, tf_ms=tf)
    want = pandas_book_bars(q, tf)
    assert list(got.columns) == list(BOOK_FIELDS)
    for c in ("ts", "bid", "ask", "bid_qty", "ask_qty", "updates"):
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=c)
    np.testing.assert_allclose(got["spread_bps_twa"], want["spread_bps_twa"], rtol=1e-12)
    assert got["updates"].sum() == len(q["times"])


@pytest.mark.parametrize("name", list(CAPTURES))
@pytest.mark.parametrize("tf", [5_000, 60_000, 300_000])
def test_resampled_1s_book_bars_equal_the_direct_coarse_bars(name, tf):
    q = load_book(name)
    fine = book_bar_columns(**q, tf_ms=1_000)
    coarse = resample_book(fine, tf)
    direct = book_bar_columns(**q, tf_ms=tf)
    for f in ("ts", "bid", "ask", "bid_qty", "ask_qty", "updates"):
        np.testing.assert_array_equal(getattr(coarse, f), getattr(direct, f), err_msg=f)
    np.testing.assert_allclose(coarse.spread_bps_twa, direct.spread_bps_twa, rtol=1e-12)
    assert coarse.first_cover_ms == direct.first_cover_ms
    # the live resampler, fed the closed 1 s bars, gives exactly the batch resample
    closed, builder = feed(q)
    rs = BookResampler(tf)
    out = [c for c in map(rs.on_bar, closed) if c is not None]
    out.append(rs.on_floor(builder.floor + tf))  # the clock passes the last bucket
    assert_same(BookBars.from_rows(out, tf), coarse)


# ----------------------------------------------------------------------- by hand
def test_a_hand_worked_second():
    # quotes (t ms, bid, ask): spreads 2/100.5*1e4 etc. written out below
    b = BookBarBuilder(1_000)
    assert b.on_quote(1_000_250, 100.0, 101.0, 3.0, 1.0) is None  # first ever, mid-bucket
    assert b.on_quote(1_000_750, 100.0, 100.5, 1.0, 1.0) is None
    first = b.on_quote(1_001_500, 99.0, 101.0, 2.0, 6.0)  # opens the next second
    s1 = 1e4 * 1.0 / 100.5
    s2 = 1e4 * 0.5 / 100.25
    s3 = 1e4 * 2.0 / 100.0
    # first second: only the covered 750 ms count (no quote before 1_000_250)
    assert first == BookBar(1_000_000, 100.0, 100.5, 1.0, 1.0,
                            (s1 * 500 + s2 * 250) / 750, 2, cover_ms=750)  # fmt: skip
    assert first.mid == 100.25 and first.spread_bps == pytest.approx(s2)
    assert first.imbalance == 0.5
    # second 1_001_000: the carried quote stood 500 ms, then the new one 500 ms
    second = b.on_clock(1_002_000)
    assert second.ts == 1_001_000 and second.updates == 1 and second.cover_ms is None
    assert second.spread_bps_twa == pytest.approx((s2 * 500 + s3 * 500) / 1000, rel=1e-15)
    assert (second.bid, second.ask, second.bid_qty, second.ask_qty) == (99.0, 101.0, 2.0, 6.0)
    assert second.imbalance == 0.25
    # the clock closed 1_001_000: an update stamped inside it is taken at the floor
    assert b.on_quote(1_001_900, 99.5, 100.5, 1.0, 1.0) is None
    assert b.reordered == 1 and b.current.ts == 1_002_000
    # a 5 s resample: the empty seconds 1_003..1_004 are filled with the carried quote
    standing = b.current  # what a shutdown stores: the last quote to the second's end
    third = b.flush()
    assert standing == third
    s4 = 1e4 * 1.0 / 100.0
    assert third.spread_bps_twa == s4  # stood the whole second from its start
    coarse = resample_book(BookBars.from_rows([first, second, third], 1_000), 5_000)
    assert coarse.ts.tolist() == [1_000_000]
    assert coarse.spread_bps_twa[0] == pytest.approx(
        (s1 * 500 + s2 * 250 + s2 * 500 + s3 * 500 + s4 * 3000) / 4750, rel=1e-14)
    assert coarse.first_cover_ms == 4750 and coarse.updates.tolist() == [4]


def test_updates_stamped_out_of_order_are_taken_at_the_later_time():
    q = {"times": np.array([5_100, 5_400, 5_300, 6_200]), "bids": np.array([1.0, 1.0, 1.0, 1.0]),
         "asks": np.array([1.2, 1.1, 1.3, 1.2]), "bid_qtys": np.ones(4), "ask_qtys": np.ones(4)}
    closed, builder = feed(q)
    assert builder.reordered == 1
    assert_same(BookBars.from_rows(closed, 1_000), book_bar_columns(**q, tf_ms=1_000))
    # 5_300 is taken at 5_400: the 1.1 ask stood 0 ms, the 1.3 one to the second's end
    s = quote_spread_bps(np.array([1.0, 1.0]), np.array([1.2, 1.3]))
    assert closed[0].spread_bps_twa == pytest.approx((s[0] * 300 + s[1] * 600) / 900)


# ----------------------------------------------------------------------- serving
def test_book_columns_carry_the_book_to_each_bucket_end():
    book = BookBars.from_rows([
        BookBar(2_000, 10.0, 10.2, 1.0, 3.0, 150.0, 4),
        BookBar(5_000, 10.1, 10.2, 2.0, 2.0, 90.0, 1),
    ], 1_000)  # fmt: skip
    cols = book_columns([1_000, 2_000, 3_000, 4_000, 5_000, 6_000], 1_000, book)
    assert tuple(cols) == BOOK_COLUMNS
    assert np.isnan(cols["bid"][0]) and np.isnan(cols["spread_bps_twa"][0])  # before any
    np.testing.assert_array_equal(cols["bid"][1:], [10.0, 10.0, 10.0, 10.1, 10.1])
    s0, s1 = quote_spread_bps(10.0, 10.2), quote_spread_bps(10.1, 10.2)
    # own bucket: its twa; a bucket without updates: the carried quote stood all of it
    np.testing.assert_array_equal(cols["spread_bps_twa"][1:], [150.0, s0, s0, 90.0, s1])
    np.testing.assert_array_equal(cols["imbalance"][1:], [0.25, 0.25, 0.25, 0.5, 0.5])
    np.testing.assert_array_equal(mid_closes([4_000], 1_000, book), [10.1])
    none = book_columns([1_000], 1_000, None)
    assert all(np.isnan(v).all() for v in none.values())


def test_the_served_bar_columns_end_with_the_book_columns():
    assert BAR_COLUMNS[-len(BOOK_COLUMNS):] == BOOK_COLUMNS
    assert BOOK_COLUMNS == ("bid", "ask", "bid_qty", "ask_qty", "mid", "spread_bps",
                            "spread_bps_twa", "imbalance")  # fmt: skip


def test_book_columns_equal_a_pandas_asof_join_on_real_data():
    q = load_book("perp_BTC")
    book = book_bar_columns(**q, tf_ms=1_000)
    ts = np.arange(book.ts[0] - 3_000, book.ts[-1] + 3_000, 1_000)  # every second
    cols = book_columns(ts, 1_000, book)
    left = pd.DataFrame({"ts": ts})
    right = book.to_frame()
    j = pd.merge_asof(left, right, on="ts", direction="backward")
    mid = (j["bid"] + j["ask"]) / 2
    np.testing.assert_array_equal(cols["bid"], j["bid"].to_numpy())
    np.testing.assert_array_equal(cols["mid"], mid.to_numpy())
    own = j["ts"].isin(right["ts"])
    want_twa = np.where(own, j["spread_bps_twa"], (j["ask"] - j["bid"]) / mid * 1e4)
    np.testing.assert_allclose(cols["spread_bps_twa"], want_twa, rtol=1e-13, equal_nan=True)
    assert np.isnan(cols["bid"][:3]).all() and np.isfinite(cols["bid"][3:]).all()


def test_the_open_bar_equals_the_batch_of_the_updates_so_far_at_every_update():
    q = load_book("spot_ETH_first3000")
    b = BookBarBuilder(1_000)
    n = len(q["times"])
    for i in range(n):
        b.on_quote(int(q["times"][i]), float(q["bids"][i]), float(q["asks"][i]),
                   float(q["bid_qtys"][i]), float(q["ask_qtys"][i]))  # fmt: skip
        prefix = book_bar_columns(**{k: v[: i + 1] for k, v in q.items()}, tf_ms=1_000)
        cur = b.current  # the open bar as it would close: the batch's last bar
        assert cur.as_row() == tuple(c[-1] for c in prefix.columns().values()), i
