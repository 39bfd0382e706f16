"""The engine's top of book (MarketEngine.on_book / book_bars / restore_book) on the
REAL futures captures (trades and bookTicker of BTCUSDT and ETHUSDT, sample_data/),
fed in recorded order with the ingest path's bar clock (``max T - 250 ms``).

Checked against the batch twins (analytics/book.py) and an independent pandas
computation of the served columns: the book as of each bar bucket's end and its
time-weighted spread, from the raw frames."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from analytics.book import BOOK_FIELDS, BookBars, book_bar_columns, book_columns, resample_book
from analytics.engine import MarketEngine

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
FILES = {
    "BTCUSDT": "hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz",
    "ETHUSDT": "hftbacktest-rawcapture-trade-book_um_ETHUSDT_20240808_2354-2356.gz",
}
DELAY_MS = 250  # the Ingestor's bar_close_delay_ms


def events() -> list[tuple]:
    """(recv ns, kind, name, fields...) of both captures, in receive order."""
    out = []
    for name, path in FILES.items():
        with gzip.open(SAMPLE / path, "rb") as fh:
            for line in fh:
                recv, frame = line.split(b" ", 1)
                msg = orjson.loads(frame)
                d = msg["data"]
                if msg["stream"].endswith("@bookTicker"):
                    out.append((int(recv), "book", name, d["T"], float(d["b"]), float(d["a"]),
                                float(d["B"]), float(d["A"])))  # fmt: skip
                elif msg["stream"].endswith("@trade"):
                    out.append((int(recv), "trade", name, d["T"], d["t"], float(d["p"]),
                                float(d["q"]), d["m"]))  # fmt: skip
    out.sort(key=lambda e: e[0])
    return out


@pytest.fixture(scope="module")
def tape():
    return events()


def run(tape, engine=None, *, start=0, stop=None, clock_every=40):
    """Feed events[start:stop]; returns (engine, every 1 s book bar handed out for the
    store: on_book's returns and the clock's)."""
    eng = engine or MarketEngine(list(FILES))
    stored = {n: [] for n in FILES}
    data_ms = None
    for k, e in enumerate(tape[start:stop]):
        if e[1] == "trade":
            eng.on_trade(e[2], e[3], e[4], e[5], e[6], e[7])
            data_ms = e[3] if data_ms is None else max(data_ms, e[3])
        else:
            closed = eng.on_book(e[2], e[3], e[4], e[5], e[6], e[7])
            if closed is not None:
                stored[e[2]].append(closed)
        if k % clock_every == 0 and data_ms is not None:
            eng.on_clock(data_ms - DELAY_MS)
            for name, bar in eng.clock_closed_book:
                stored[name].append(bar)
    return eng, stored


def quotes(tape, name, stop=None):
    q = [e for e in tape[:stop] if e[1] == "book" and e[2] == name]
    t, b, a, bq, aq = (np.array(c) for c in zip(*(e[3:] for e in q)))
    return {"times": t, "bids": b, "asks": a, "bid_qtys": bq, "ask_qtys": aq}


def test_live_book_bars_equal_the_batch_twins_at_every_timeframe(tape):
    eng, stored = run(tape)
    last_ms = max(e[3] for e in tape)
    eng.on_clock(last_ms + 600_000)  # the clock passes every bucket
    for name in FILES:
        stored[name] += [b for n, b in eng.clock_closed_book if n == name]
        q = quotes(tape, name)
        batch = book_bar_columns(**q, tf_ms=1_000)
        live = eng.book_bars(name, 1_000)
        assert eng.book_reordered(name) == 0
        for f in BOOK_FIELDS:  # bit for bit
            np.testing.assert_array_equal(getattr(live, f), getattr(batch, f), err_msg=f)
        # every 1 s bar was handed out for the store once, in order
        assert [b.as_row() for b in stored[name]] == [tuple(r) for r in
                                                       batch.to_frame().itertuples(index=False)]
        for tf in (60_000, 300_000, 5_000):  # tracked (live resamplers) and resampled on read
            got, want = eng.book_bars(name, tf), resample_book(batch, tf)
            for f in BOOK_FIELDS:
                np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


def pandas_served(q: dict, ts: np.ndarray, tf: int) -> pd.DataFrame:
    """Independent: per bar bucket [ts, ts + tf), the last quote stamped before its end
    and the time-weighted spread of the quote in force across it (a step function)."""
    quotes_ = pd.DataFrame({"t": q["times"], "bid": q["bids"], "ask": q["asks"],
                            "bid_qty": q["bid_qtys"], "ask_qty": q["ask_qtys"]})  # fmt: skip
    ends = pd.DataFrame({"t": ts + tf - 1})
    last = pd.merge_asof(ends, quotes_.drop_duplicates("t", keep="last"), on="t")
    spread = 1e4 * (quotes_["ask"] - quotes_["bid"]) / ((quotes_["ask"] + quotes_["bid"]) / 2)
    step = pd.Series(spread.to_numpy(), index=quotes_["t"].to_numpy())
    step = step[~step.index.duplicated(keep="last")]
    grid = np.union1d(step.index.to_numpy(), np.append(ts, ts[-1] + tf))
    val = step.reindex(grid, method="ffill").to_numpy()[:-1]
    seg = pd.DataFrame({"b": grid[:-1] // tf * tf, "w": val * np.diff(grid), "d": np.diff(grid),
                        "ok": np.isfinite(val)})  # fmt: skip
    seg = seg[seg["ok"]]
    g = seg.groupby("b")[["w", "d"]].sum()
    twa = (g["w"] / g["d"]).reindex(ts).to_numpy()
    mid = (last["bid"] + last["ask"]) / 2
    return pd.DataFrame({"bid": last["bid"], "ask": last["ask"], "bid_qty": last["bid_qty"],
                         "ask_qty": last["ask_qty"], "mid": mid,
                         "spread_bps": 1e4 * (last["ask"] - last["bid"]) / mid,
                         "spread_bps_twa": twa,
                         "imbalance": last["bid_qty"] / (last["bid_qty"] + last["ask_qty"])})


@pytest.mark.parametrize("tf", [1_000, 60_000])
def test_served_book_columns_equal_pandas_from_the_raw_frames(tape, tf):
    t0 = min(e[3] for e in tape)
    tape = [e for e in tape if e[1] == "trade" or e[3] >= t0 + 70_000]  # book from 70 s in
    eng, _ = run(tape)
    eng.on_clock(max(e[3] for e in tape) + 600_000)
    for name in FILES:
        bars = eng.bars(name, tf)
        assert len(bars) > (100 if tf == 1_000 else 1)
        cols = book_columns(bars.ts, tf, eng.book_bars(name, tf))
        want = pandas_served(quotes(tape, name), bars.ts, tf)
        for c, v in cols.items():
            np.testing.assert_allclose(v, want[c].to_numpy(), rtol=1e-12, equal_nan=True,
                                       err_msg=f"{name} {c}")
        # the capture's trades start before its first quote: those rows are NaN
        first_quote = quotes(tape, name)["times"][0]
        before = bars.ts + tf <= first_quote
        assert before.sum() >= (60 if tf == 1_000 else 1)
        assert np.isnan(cols["bid"][before]).all()
        assert np.isfinite(cols["bid"][~before]).all()


def test_final_ms_covers_only_closed_book_seconds(tape):
    eng, _ = run(tape, stop=len(tape) // 2)
    for name in FILES:
        book = eng.book_bars(name, 1_000)
        assert book.final_ms is not None and book.ts[-1] + 1_000 <= book.final_ms
        assert eng.open_book_bar(name) is None or eng.open_book_bar(name).ts >= book.final_ms
        coarse = eng.book_bars(name, 60_000)
        assert not len(coarse) or coarse.ts[-1] + 60_000 <= coarse.final_ms


def test_restore_then_live_equals_an_uninterrupted_run(tape):
    whole, _ = run(tape)
    cut = len(tape) // 2
    first, _ = run(tape, stop=cut)
    t_cut = max(e[3] for e in tape[:cut])
    boundary = t_cut - t_cut % 1_000 + 1_000
    first.on_clock(boundary)  # shut down on a closed second (nothing open)
    restored = MarketEngine(list(FILES))
    for name in FILES:
        frame = first.book_bars(name, 1_000).to_frame()
        restored.restore_book(name, frame.sample(frac=1.0, random_state=1))  # any row order
    rest = [e for e in tape[cut:] if e[3] >= boundary or e[1] == "trade"]
    run(rest, restored)
    end = max(e[3] for e in tape) + 600_000
    whole.on_clock(end)
    restored.on_clock(end)
    for name in FILES:
        for tf in (1_000, 60_000, 300_000):
            a, b = whole.book_bars(name, tf), restored.book_bars(name, tf)
            assert a.ts.tolist() == b.ts.tolist()
            # Not comparable: the buckets from the cut to the first quote after it
            # (quotes of the cut's second that came after the cut are in the
            # uninterrupted run only, and the quote in force until the next one), and
            # a coarse bucket holding the first quote ever (its covered part is known
            # live only: a stored second does not say it).
            t_next = min(e[3] for e in rest if e[1] == "book" and e[2] == name)
            same = ~((a.ts <= t_next) & (a.ts + tf > t_cut))
            if tf > 1_000:
                same[0] = False
            assert same.sum() >= len(a) - 3 and (same.any() or tf == 300_000)
            for f in BOOK_FIELDS:
                np.testing.assert_array_equal(getattr(a, f)[same], getattr(b, f)[same],
                                              err_msg=f"{name} {tf} {f}")


def test_a_first_quote_in_a_published_second_starts_at_the_trade_floor():
    eng = MarketEngine(["X"])
    eng.on_trade("X", 10_100, 1, 100.0, 1.0, False)
    eng.on_clock(11_000)  # the 10 s trade bar is published (no book yet: NaN)
    assert eng.bars("X", 1_000).ts.tolist() == [10_000]
    assert eng.on_book("X", 10_500, 99.0, 101.0, 1.0, 1.0) is None  # stamped inside it
    assert eng.book_reordered("X") == 1
    eng.on_clock(12_000)
    book = eng.book_bars("X", 1_000)
    assert book.ts.tolist() == [11_000] and book.first_cover_ms is None
    cols = book_columns(eng.bars("X", 1_000).ts, 1_000, book)
    assert np.isnan(cols["bid"]).all()  # the served row stays as it was


def test_book_memory_grows_with_the_data():
    eng = MarketEngine(["X"])
    for s in range(30):
        eng.on_book("X", 1_000 * s + 5, 99.0, 101.0, 1.0, 1.0)
    st = eng._book["X"]
    held = {tf: len(next(iter(buf._cols.values()))) for tf, buf in st.buffers.items()}
    assert max(held.values()) <= 128  # not 2 days of rows per timeframe
    assert len(eng.book_bars("X", 1_000)) == 29
    assert eng.book_bars("Y", 1_000) is None and "Y" not in eng._book
    assert isinstance(eng.book_bars("X", 60_000), BookBars)
