"""Must show (#17): the recorded top of book, replayed through the app's runtime, gives
1 s book bars equal to an independent computation from the raw frames.

The committed raw captures (``sample_data/hftbacktest-rawcapture-trade-book_*``: the
Binance frames exactly as received, with their receive time in ns) of spot BTCUSDT and
USD-M futures BTCUSDT are played by the app's own ``--replay RAW…`` path: the replay
exchange serves both markets, one feed per market subscribes ``@trade`` and
``@bookTicker``, the Ingestor feeds the engine and the store. Then:

* futures are bucketed by ``T``: the bars computed here with pandas from the raw
  FILE's ``T`` (nothing the app produced) equal the stored and the served bars;
* spot frames carry no time: the feed stamps each with the replay's tape clock at
  receive. A tap on ``Ingestor.on_book`` records the stamps; each must be the frame's
  recorded receive time moved into Binance's frame by the tape's clock offset
  (median ``E`` − receive over the captures, computed here) within a small delivery bound, and the bars
  computed here from those stamps equal the stored and the served bars.

The definitions (docs/book.md, analytics/book.py): per second ``[s, s+1000)``, bid/ask/
quantities of the last update; ``spread_bps_twa`` = each quote's spread
``1e4·(ask−bid)/mid`` weighted by the ms it stood in the second, the quote in force at
``s`` included (the first second ever: only the covered part); an update stamped before
the one before it is taken at that later time (running maximum).
"""

from __future__ import annotations

import gzip
import time

import numpy as np
import orjson
import pandas as pd
import pytest

from analytics.book import BOOK_FIELDS
from ingest.config import parse_config
from ingest.runtime import Runtime
from ingest.store import open_store
from tests.analytics.conftest import SAMPLE_DIR

RAW = {
    "spot": SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_spot_BTCUSDT_20240808_2354-2356.gz",
    "perp": SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz",
}
SPEED = 2.0
#: How far a spot stamp may run ahead of the frame's receive time (+ offset): the
#: delivery delay x SPEED (a few ms at rest; 500 ms = 250 ms of wall delay on a loaded
#: machine), well under the capture's 1.27 s clock offset a wrong clock would show.
STAMP_BOUND_MS = 500


def raw_book_frames(path) -> pd.DataFrame:
    """Every @bookTicker frame of a raw capture, in recorded order: receive ms, u,
    prices and quantities as floats, T (NaN on spot)."""
    rows = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            stamp, frame = line.split(b" ", 1)
            if b"@bookTicker" not in frame:
                continue
            d = orjson.loads(frame)["data"]
            rows.append((int(stamp) // 1_000_000, d["u"], float(d["b"]), float(d["B"]),
                         float(d["a"]), float(d["A"]), d.get("T", np.nan)))
    return pd.DataFrame(rows, columns=["recv_ms", "u", "bid", "bid_qty", "ask", "ask_qty",
                                       "T"])


def clock_offset_ms(paths) -> float:
    """The tape's clock offset: median of E − receive time over the frames carrying E
    of every capture played (the host's clock behind Binance's)."""
    diffs = []
    for path in paths:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                stamp, frame = line.split(b" ", 1)
                d = orjson.loads(frame)
                d = d.get("data", d)
                if isinstance(d, dict) and "E" in d:
                    diffs.append(d["E"] - int(stamp) // 1_000_000)
    return float(np.median(diffs))


def independent_book_bars(t, quotes: pd.DataFrame) -> pd.DataFrame:
    """1 s book bars from updates in arrival order (module notes), with pandas."""
    q = quotes.reset_index(drop=True).copy()
    q["t"] = pd.Series(np.asarray(t, dtype=np.int64)).cummax()
    q["s"] = q["t"] - q["t"] % 1000
    q["spread"] = 1e4 * (q["ask"] - q["bid"]) / ((q["ask"] + q["bid"]) / 2)
    same_next = q["s"].shift(-1) == q["s"]
    until = q["t"].shift(-1).where(same_next, q["s"] + 1000)
    g = q.groupby("s", sort=True)
    within = (q["spread"] * (until - q["t"])).groupby(q["s"]).sum()
    first = g.head(1)
    carried = np.array((q["spread"].shift(1) * (q["t"] - q["s"])).loc[first.index])
    cover = np.full(len(first), 1000.0)
    carried[0] = 0.0  # no quote before the first update ever: weigh what it covers
    cover[0] = first["s"].iloc[0] + 1000 - first["t"].iloc[0]
    last = g.tail(1)
    return pd.DataFrame({
        "ts": last["s"].to_numpy(), "bid": last["bid"].to_numpy(),
        "ask": last["ask"].to_numpy(), "bid_qty": last["bid_qty"].to_numpy(),
        "ask_qty": last["ask_qty"].to_numpy(),
        "spread_bps_twa": (within.to_numpy() + carried) / cover,
        "updates": g.size().to_numpy(),
    })


def assert_bars_equal(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    got = got.reset_index(drop=True)
    want = want.reset_index(drop=True)
    assert got["ts"].tolist() == want["ts"].tolist(), what
    for col in ("bid", "ask", "bid_qty", "ask_qty", "updates"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(),
                                      err_msg=f"{what}: {col}")
    # the same sums in another order: equal to rounding
    np.testing.assert_allclose(got["spread_bps_twa"], want["spread_bps_twa"], rtol=1e-12,
                               atol=1e-12, err_msg=f"{what}: spread_bps_twa")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Both captures through the runtime (--replay RAW…), the book tap's updates, the
    served book bars at the end, the stored ones after an orderly stop."""
    db = tmp_path_factory.mktemp("book") / "book.db"
    cfg = parse_config(["--replay", str(RAW["spot"]), str(RAW["perp"]), "--db", str(db),
                        "--replay-speed", str(SPEED), "--replay-once",
                        "--replay-keep-times", "--rest-url", "off"])
    rt = Runtime(cfg)
    # The bar clock closes seconds on the trades' data clock; a book update reaching the
    # engine after its second closed would be taken at the next one (counted in
    # book_reordered). Two feeds on a loaded 2-core machine can drift apart by more
    # than the 250 ms default, so the test gives the clock room and asserts none was.
    rt.ingestor.bar_close_delay_ms = 5_000
    tapped = []
    on_book = rt.ingestor.on_book

    def tap(b):
        tapped.append(b)
        on_book(b)

    rt.ingestor.on_book = tap  # before start(): the feeds are built with it
    want = {m: len(raw_book_frames(p)) for m, p in RAW.items()}
    from dashapp import create_app
    from dashapp.facade import LiveMarketData

    app = create_app(LiveMarketData(rt), cache_dir=tmp_path_factory.mktemp("cache"))
    rt.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = rt.replay.status()
            if status["ended"] or status["played"] >= status["total"]:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # the last frames through the sockets
        market = LiveMarketData(rt)
        names = {inst.market: rt.universe.name(inst) for inst in rt.universe}
        served = {m: market.book_bars(n, 1_000) for m, n in names.items()}
        quotes = {m: market.quote(n) for m, n in names.items()}
        reordered = {m: rt.engine.book_reordered(n) for m, n in names.items()}
        health = rt.health()
        client = app.server.test_client()
        api = {}
        for m, n in names.items():
            resp = client.get(f"/api/bars?symbol={n}&timeframe=1s&format=json")
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
            api[m] = pd.DataFrame(resp.get_json())
    finally:
        rt.stop()
    stores = open_store(db, readonly=True)
    try:
        stored = {m: stores.trades.read_book_bars(n) for m, n in names.items()}
    finally:
        stores.close()
    return {"tapped": tapped, "want": want, "names": names, "served": served,
            "stored": stored, "quotes": quotes, "reordered": reordered,
            "health": health, "offset": rt.replay.tape.clock_offset_ms, "api": api}


def _updates(replayed, market: str) -> list:
    return [b for b in replayed["tapped"] if b.market == market]


@pytest.mark.slow
def test_runtime_names_both_markets_and_takes_every_book_update(replayed):
    assert replayed["names"] == {"spot": "spot:BTCUSDT", "perp": "perp:BTCUSDT"}
    assert replayed["reordered"] == {"spot": 0, "perp": 0}
    feed = replayed["health"]["feed"]
    assert feed["bad_frames"] == 0 and feed["book_rejected"] == 0
    for market in ("spot", "perp"):
        got = _updates(replayed, market)
        # the later of the two feeds may connect after the player's first frames
        assert replayed["want"][market] - 50 <= len(got) <= replayed["want"][market]
        assert replayed["quotes"][market] == got[-1]  # the live quote: the latest update
    assert feed["book_updates"] == len(replayed["tapped"])


@pytest.mark.slow
def test_futures_book_bars_are_bucketed_by_T_of_the_raw_frames(replayed):
    raw = raw_book_frames(RAW["perp"])
    got = _updates(replayed, "perp")
    # exactly the recorded frames, in recorded order, from the first one received
    first = int(np.flatnonzero(raw["u"].to_numpy() == got[0].update_id)[0])
    raw = raw.iloc[first:]
    assert [b.update_id for b in got] == raw["u"].tolist()
    assert {b.time_source for b in got} == {"T"}
    want = independent_book_bars(raw["T"].astype(np.int64), raw)
    assert len(want) > 100
    stored = replayed["stored"]["perp"]
    assert list(stored.columns) == list(BOOK_FIELDS)
    assert_bars_equal(stored, want, "stored perp")  # the open last second: flushed at stop
    served = replayed["served"]["perp"].to_frame()
    assert len(served) >= len(want) - 2
    assert_bars_equal(served, want.iloc[: len(served)], "served perp")
    b = replayed["served"]["perp"]
    w = want.iloc[: len(served)]
    np.testing.assert_array_equal(b.mid, (w["bid"] + w["ask"]).to_numpy() / 2)
    np.testing.assert_allclose(b.spread_bps, 1e4 * (w["ask"] - w["bid"]) / (
        (w["bid"] + w["ask"]) / 2), rtol=1e-12)
    np.testing.assert_allclose(b.imbalance, w["bid_qty"] / (w["bid_qty"] + w["ask_qty"]),
                               rtol=1e-12)


@pytest.mark.slow
def test_spot_book_bars_are_bucketed_by_receive_time_on_the_tape_clock(replayed):
    raw = raw_book_frames(RAW["spot"])
    got = _updates(replayed, "spot")
    first = int(np.flatnonzero(raw["u"].to_numpy() == got[0].update_id)[0])
    raw = raw.iloc[first:].reset_index(drop=True)
    assert [b.update_id for b in got] == raw["u"].tolist()
    assert {b.time_source for b in got} == {"receive"}
    stamps = np.array([b.time_ms for b in got], dtype=np.int64)
    # the stamps: the recorded receive time in Binance's frame, plus delivery
    offset = clock_offset_ms(RAW.values())
    assert abs(offset - replayed["offset"]) <= 1 and 1_200 < offset < 1_350
    ahead = stamps - (raw["recv_ms"].to_numpy() + offset)
    assert ahead.min() >= -2, ahead.min()
    assert ahead.max() <= STAMP_BOUND_MS, ahead.max()
    assert np.median(ahead) <= 50, np.median(ahead)
    # the bars: what the feed stamped, bucketed as documented
    quotes = raw[["bid", "bid_qty", "ask", "ask_qty"]]
    assert (np.array([[b.bid, b.bid_qty, b.ask, b.ask_qty] for b in got])
            == quotes.to_numpy()).all()
    want = independent_book_bars(stamps, quotes)
    assert len(want) > 100
    assert_bars_equal(replayed["stored"]["spot"], want, "stored spot")
    served = replayed["served"]["spot"].to_frame()
    assert len(served) >= len(want) - 2
    assert_bars_equal(served, want.iloc[: len(served)], "served spot")


def expected_served(want: pd.DataFrame, ts: np.ndarray) -> pd.DataFrame:
    """The book columns of trade-bar rows ``ts`` from independent 1 s book bars: the
    book as of each second's end (the last bar at or before it, carried), the
    second's own ``spread_bps_twa`` or, without an update in it, the carried quote's
    spread; NaN before the first quote."""
    idx = np.searchsorted(want["ts"].to_numpy(), ts, side="right") - 1
    have = idx >= 0
    pick = np.where(have, idx, 0)
    out = {}
    for col in ("bid", "ask", "bid_qty", "ask_qty", "spread_bps_twa"):
        out[col] = np.where(have, want[col].to_numpy()[pick], np.nan)
    mid = (out["bid"] + out["ask"]) / 2
    spread = 1e4 * (out["ask"] - out["bid"]) / mid
    own = have & (want["ts"].to_numpy()[pick] == ts)
    out["spread_bps_twa"] = np.where(own, out["spread_bps_twa"], spread)
    out.update(mid=mid, spread_bps=spread,
               imbalance=out["bid_qty"] / (out["bid_qty"] + out["ask_qty"]))
    return pd.DataFrame(out)


@pytest.mark.slow
@pytest.mark.parametrize("market", ["perp", "spot"])
def test_api_bars_serve_the_book_columns_of_the_independent_bars(replayed, market):
    """``/api/bars`` (1 s): every served trade bar carries the book as of its second's
    end, computed here from the raw frames (perp: T) or the feed's stamps (spot)."""
    raw = raw_book_frames(RAW[market])
    got = _updates(replayed, market)
    first = int(np.flatnonzero(raw["u"].to_numpy() == got[0].update_id)[0])
    raw = raw.iloc[first:].reset_index(drop=True)
    times = raw["T"].astype(np.int64) if market == "perp" else np.array(
        [b.time_ms for b in got], dtype=np.int64)
    want = independent_book_bars(times, raw)
    api = replayed["api"][market]
    assert len(api) > 100
    ts = pd.to_datetime(api["ts"], utc=True, format="ISO8601").dt.as_unit("ms").astype(
        "int64").to_numpy()  # ISO-8601 ms in the JSON
    exp = expected_served(want, ts)
    for col in ("bid", "ask", "bid_qty", "ask_qty", "mid", "spread_bps", "spread_bps_twa",
                "imbalance"):
        served = api[col].to_numpy(dtype=float)  # JSON null -> NaN
        np.testing.assert_array_equal(np.isnan(served), np.isnan(exp[col].to_numpy()),
                                      err_msg=f"{market} {col}: NaN where no quote yet")
        np.testing.assert_allclose(served, exp[col].to_numpy(), rtol=1e-12, atol=1e-12,
                                   equal_nan=True, err_msg=f"{market} {col}")
    assert np.isfinite(api["bid"].to_numpy(dtype=float)).sum() > 100
