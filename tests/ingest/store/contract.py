"""The store contract: what every backend must do, whatever it is built on.

Backend-agnostic tests over a ``store_factory`` fixture: ``store_factory(readonly=False,
market="spot")`` opens :class:`ingest.store.Stores` on ONE fresh database per test
(call it again to reopen the same database). A backend's test module imports these
tests and defines the fixture (``tests/ingest/store/test_sqlite.py``); a new backend
adds one parameter there. Nothing here names SQL, files or a backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.alerts import RuleState
from analytics.bars import BAR_FIELDS, Bars, bars_from_ticks
from analytics.instruments import Instrument
from analytics.upload import parse_ohlc_csv
from ingest.models import Trade
from ingest.store import DatasetError, Gap, NewEvent
from tests.analytics.conftest import SAMPLE_DIR

T0 = 1_700_000_000_000
SPOT = Instrument("binance", "spot", "BTCUSDT")
PERP = Instrument("binance", "perp", "BTCUSDT")
BTC_1H = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"
ETH_1H = SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv"


def trades(symbol: str, n: int, *, first_id: int = 1, market: str = "spot",
           seed: int = 0, price: float = 37_000.0) -> list[Trade]:
    rng = np.random.default_rng(seed)
    prices = price * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    qtys = rng.exponential(0.01, n)
    times = T0 + np.cumsum(rng.integers(0, 40, n))
    makers = rng.random(n) < 0.5
    return [
        Trade(symbol, first_id + k, int(times[k]), float(prices[k]), float(qtys[k]),
              bool(makers[k]), int(times[k]) + 3, market)
        for k in range(n)
    ]


def bar(ts: int, close: float, *, first_id=1, last_id=5) -> tuple:
    return (ts, close - 1, close + 1, close - 2, close, 3.5, 3.5 * close, 5, 1.25,
            first_id, last_id)


def write(store, items) -> None:
    for t in items:
        store.add_trade(t)
    assert store.flush()


@pytest.fixture
def stores(store_factory):
    s = store_factory()
    s.trades.start()
    yield s
    s.close()


# ---------------------------------------------------------------------- trades
def test_trade_round_trip_is_exact_and_duplicates_are_ignored(stores):
    st = stores.trades
    btc, eth = trades("BTCUSDT", 1500, seed=1), trades("ETHUSDT", 300, first_id=10**9, seed=2)
    write(st, btc[:700] + eth + btc[700:] + btc[:50])  # duplicates in one batch
    write(st, btc[1400:])  # and across batches
    assert (st.rows_written, st.duplicates_ignored) == (1800, 150)
    changed = Trade("BTCUSDT", 5, T0, 1.0, 1.0, True, T0)  # same key, other values
    write(st, [changed])
    cols = st.read_trades("BTCUSDT")
    assert len(cols) == 1500 and cols.price[4] == btc[4].price  # first one kept
    for name in ("time_ms", "trade_id", "price", "qty", "buyer_is_maker"):
        np.testing.assert_array_equal(getattr(cols, name), [getattr(t, name) for t in btc])
    assert cols.time_ms.dtype == np.int64 and cols.buyer_is_maker.dtype == np.bool_
    assert st.count_trades() == 1800 and st.count_trades("ETHUSDT") == 300
    assert st.count_trades("NOPE") == 0 and len(st.read_trades("NOPE")) == 0
    assert st.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert st.last_trade_ids() == {"BTCUSDT": 1500, "ETHUSDT": 10**9 + 299}
    np.testing.assert_array_equal(st.trade_ids("ETHUSDT"), [t.trade_id for t in eth])
    np.testing.assert_array_equal(st.read_recent_trades("BTCUSDT", 5).trade_id,
                                  np.arange(1496, 1501))
    after = st.read_trades_after_id("BTCUSDT", 1490, limit=3)
    np.testing.assert_array_equal(after.trade_id, [1491, 1492, 1493])
    assert st.first_trade_after("BTCUSDT", 1490) == (1491, btc[1490].time_ms)
    assert st.first_trade_after("BTCUSDT", 1500) is None


def test_time_ranges_match_a_mask(stores):
    st = stores.trades
    rng = np.random.default_rng(5)
    ids = np.cumsum(rng.integers(1, 4, 800)) + 500  # holes, as after gaps
    times = T0 + np.cumsum(rng.integers(0, 3, 800))  # runs of equal times
    write(st, [Trade("SOLUSDT", i, t, 1.0, 1.0, False, t)
               for i, t in zip(ids.tolist(), times.tolist(), strict=True)])
    bounds = [None, T0 - 5, int(times[0]), int(times[-1]), int(times[-1]) + 1]
    bounds += rng.integers(times[0] - 3, times[-1] + 3, 12).tolist()
    for start in bounds:
        for end in bounds:
            mask = np.ones(len(ids), bool)
            if start is not None:
                mask &= times >= start
            if end is not None:
                mask &= times < end
            np.testing.assert_array_equal(st.read_trades("SOLUSDT", start, end).trade_id,
                                          ids[mask])
    got = st.read_trades("SOLUSDT", int(times[100]), None, limit=7)
    np.testing.assert_array_equal(got.trade_id, ids[times >= times[100]][:7])


def test_two_markets_of_one_symbol_with_overlapping_ids_never_mix(stores, store_factory):
    st = stores.trades
    spot = trades("BTCUSDT", 200, seed=3, price=37_000.0)
    perp = trades("BTCUSDT", 200, first_id=101, market="perp", seed=4, price=36_990.0)
    write(st, spot + perp)  # ids 101..200 exist on both markets
    assert st.rows_written == 400 and st.duplicates_ignored == 0
    by_name = st.read_trades("BTCUSDT")  # a bare name: the default market (spot)
    np.testing.assert_array_equal(by_name.price, [t.price for t in spot])
    for ref in ("perp:BTCUSDT", "futures:BTCUSDT", PERP):
        np.testing.assert_array_equal(st.read_trades(ref).price, [t.price for t in perp])
        assert st.count_trades(ref) == 200
    np.testing.assert_array_equal(st.trade_ids(PERP), np.arange(101, 301))
    assert st.last_trade_ids() == {"BTCUSDT": 200, "perp:BTCUSDT": 300}
    assert st.symbols() == ["perp:BTCUSDT", "BTCUSDT"]  # (venue, market, symbol) order
    assert st.instruments() == [PERP, SPOT]
    assert st.missing_ranges(SPOT, 150, 260) == [(201, 260)]
    assert st.missing_ranges(PERP, 50, 150) == [(50, 100)]
    for name, last in st.last_trade_ids().items():  # names resolve back
        assert st.read_recent_trades(name, 1).trade_id[0] == last

    st.add_bar(SPOT, bar(T0, 1.0))
    st.add_bar("perp:BTCUSDT", bar(T0, 2.0))
    st.add_gap(SPOT, 500, 510, T0)
    st.add_gap(PERP, 500, 520, T0 + 1)
    st.mark_gap_filled(PERP, 500, T0 + 9)
    st.add_break(SPOT, T0 + 5, "spot seam")
    st.add_break(PERP, T0 + 5, "perp seam")
    assert st.flush()
    assert st.read_bars(SPOT).close.tolist() == [1.0]
    assert st.read_bars(PERP).close.tolist() == [2.0]
    assert st.read_gaps("BTCUSDT") == [Gap("BTCUSDT", 500, 510, T0, None)]
    assert st.read_gaps(PERP) == [Gap("perp:BTCUSDT", 500, 520, T0 + 1, T0 + 9)]
    assert [g.instrument for g in st.read_gaps()] == [PERP, SPOT]
    assert [g.market for g in st.unfilled_gaps()] == ["spot"]
    assert [b.reason for b in st.read_breaks(PERP)] == ["perp seam"]
    assert {b.symbol for b in st.read_breaks()} == {"BTCUSDT", "perp:BTCUSDT"}

    # the same data, seen by a run whose default market is perp: the names swap
    ro = store_factory(readonly=True, market="perp")
    try:
        assert ro.trades.last_trade_ids() == {"spot:BTCUSDT": 200, "BTCUSDT": 300}
        np.testing.assert_array_equal(ro.trades.read_trades("BTCUSDT").price,
                                      [t.price for t in perp])
    finally:
        ro.close()


def test_names_follow_the_run_universe(stores):
    """``use_universe`` (#16, C1): the run's names for its instruments, other stored
    instruments by key where their bare symbol is a run name, reads by those names."""
    from analytics.instruments import Universe

    st = stores.trades
    write(st, trades("BTCUSDT", 20, seed=5) + trades("BTCUSDT", 20, market="perp", seed=6)
          + trades("ETHUSDT", 5, first_id=7, seed=7))  # spot ETHUSDT: an earlier run's
    write(st, trades("ETHUSDT", 3, first_id=40, market="perp", seed=8))
    st.use_universe(Universe.parse(["spot:BTCUSDT", "perp:BTCUSDT", "perp:ETHUSDT"]))
    assert st.last_trade_ids() == {"perp:BTCUSDT": 20, "ETHUSDT": 42, "spot:BTCUSDT": 20,
                                   "spot:ETHUSDT": 11}
    assert st.read_trades("ETHUSDT").trade_id.tolist() == [40, 41, 42]  # the run's perp
    assert st.read_trades("spot:ETHUSDT").trade_id.tolist() == list(range(7, 12))
    assert st.read_trades("spot:BTCUSDT").trade_id.tolist() == list(range(1, 21))
    for name in st.last_trade_ids():
        assert st.name(st.instrument(name)) == name


def test_malformed_row_is_rejected_alone(stores):
    st = stores.trades
    good = trades("BTCUSDT", 20)
    bad = Trade("BTCUSDT", 999, T0, {"not": "a number"}, 1.0, True, T0)  # cannot bind
    write(st, good[:10] + [bad] + good[10:])
    assert (st.rows_written, st.rows_rejected, st.duplicates_ignored) == (20, 1, 0)
    assert st.count_trades() == 20 and st.last_error is None


# ---------------------------------------------------------------------- bars
def test_bars_round_trip_replace_and_window(stores):
    st = stores.trades
    for k in range(30):
        st.add_bar("BTCUSDT", bar(T0 + 1000 * k, 100.0 + k))
    st.add_bar("BTCUSDT", bar(T0 + 5000, 999.0, last_id=9))  # re-closed, late data
    st.add_bar("BTCUSDT", (T0 + 100_000, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0, 0.0, None, None))
    st.add_bar("BTCUSDT", tuple(np.float64(v) if isinstance(v, float) else np.int64(v)
                                for v in bar(T0 + 101_000, 5.0)))  # numpy scalars
    assert st.flush()
    bars = st.read_bars("BTCUSDT")
    assert isinstance(bars, Bars) and bars.tf_ms == 1000 and len(bars) == 32
    expected = 100.0 + np.arange(30)
    expected[5] = 999.0
    np.testing.assert_array_equal(bars.close[:30], expected)
    assert bars.last_id[5] == 9 and bars.high[5] == 1000.0
    assert (bars.trades[30], bars.first_id[30], bars.last_id[30]) == (0, -1, -1)
    assert bars.quote_volume[31] == 17.5
    for f in BAR_FIELDS:
        assert getattr(bars, f).dtype == getattr(Bars.empty(1000), f).dtype
    window = st.read_bars("BTCUSDT", T0 + 10_000, T0 + 20_000)  # end exclusive
    np.testing.assert_array_equal(window.ts, T0 + 1000 * np.arange(10, 20))
    assert len(st.read_bars("ETHUSDT")) == 0
    with pytest.raises(ValueError, match="11 fields"):
        st.add_bar("BTCUSDT", (T0, 1.0))


# ---------------------------------------------------------------------- book bars
RAW_BOOK = SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_spot_ETHUSDT_20240808_2354-2356.gz"


def real_book_rows() -> list[tuple]:
    """1 s book bars of the real spot ETHUSDT capture (stamped by receive time), as
    the engine would store them: ``analytics.book.book_bars`` rows, BOOK_FIELDS order."""
    import gzip

    import orjson

    from analytics.book import book_bars

    cols: list[list] = [[], [], [], [], []]
    with gzip.open(RAW_BOOK, "rb") as fh:
        for line in fh:
            stamp, frame = line.split(b" ", 1)
            if b"@bookTicker" not in frame:
                continue
            d = orjson.loads(frame)["data"]
            for col, v in zip(cols, (int(stamp) // 1_000_000, d["b"], d["a"], d["B"],
                                     d["A"]), strict=True):
                col.append(v)
    frame = book_bars(*(np.array(c, dtype=float if k else np.int64)
                        for k, c in enumerate(cols)), 1_000)
    return list(frame.itertuples(index=False, name=None))


def test_book_bars_round_trip_replace_window_and_markets(stores):
    from analytics.book import BOOK_DTYPES, BOOK_FIELDS

    st = stores.trades
    rows = real_book_rows()
    assert len(rows) > 100
    for row in rows:
        st.add_book_bar("ETHUSDT", row)
    perp_rows = [(ts, bid + 1, ask + 1, bq, aq, twa, n) for ts, bid, ask, bq, aq, twa, n
                 in rows[:5]]
    for row in perp_rows:  # the same symbol and seconds on the other market
        st.add_book_bar("perp:ETHUSDT", row)
    replaced = (rows[3][0], 1.0, 2.0, 3.0, 4.0, 5.0, np.int64(6))  # numpy scalar too
    st.add_book_bar("ETHUSDT", replaced)
    assert st.flush() and st.last_error is None
    got = st.read_book_bars("ETHUSDT")
    assert list(got.columns) == list(BOOK_FIELDS)
    assert {c: got[c].dtype for c in got} == {c: np.dtype(t) for c, t in BOOK_DTYPES.items()}
    expected = [*rows[:3], replaced, *rows[4:]]
    assert [tuple(r) for r in got.itertuples(index=False, name=None)] == [
        tuple(r) for r in expected]  # exact: every float bit for bit
    assert list(st.read_book_bars("perp:ETHUSDT").itertuples(index=False, name=None)) == \
        perp_rows
    lo, hi = rows[5][0], rows[10][0]
    window = st.read_book_bars("ETHUSDT", lo, hi)  # end exclusive
    assert window["ts"].tolist() == [r[0] for r in rows[5:10]]
    assert st.read_book_bars("ETHUSDT", start_ms=hi)["ts"].tolist() == [
        r[0] for r in rows[10:]]
    empty = st.read_book_bars("BTCUSDT")
    assert len(empty) == 0 and list(empty.columns) == list(BOOK_FIELDS)
    assert len(st.read_book_bars(Instrument("binance", "perp", "XRPUSDT"))) == 0
    with pytest.raises(ValueError, match="7 fields"):
        st.add_book_bar("ETHUSDT", (T0, 1.0))


def test_book_bars_survive_a_reopen_and_readers_see_them(store_factory):
    rows = real_book_rows()[:8]
    first = store_factory()
    first.trades.start()
    for row in rows:
        first.trades.add_book_bar("perp:BTCUSDT", row)
    assert first.trades.flush()
    ro = store_factory(readonly=True)
    try:
        got = ro.trades.read_book_bars("perp:BTCUSDT")
        assert list(got.itertuples(index=False, name=None)) == rows
        with pytest.raises(RuntimeError, match="readonly"):
            ro.trades.add_book_bar("perp:BTCUSDT", rows[0])
    finally:
        ro.close()
    first.close()
    again = store_factory()
    try:
        got = again.trades.read_book_bars(PERP)
        assert list(got.itertuples(index=False, name=None)) == rows
    finally:
        again.close()


def test_rebuilt_bars_equal_bars_from_the_stored_ticks(stores):
    st = stores.trades
    ticks = trades("BTCUSDT", 3000, seed=7)
    write(st, ticks + trades("BTCUSDT", 100, market="perp", seed=8))
    st.rebuild_bars("BTCUSDT", T0, T0 + 10**9)
    assert st.flush()
    cols = st.read_trades("BTCUSDT")
    want = bars_from_ticks(cols.time_ms, cols.trade_id, cols.price, cols.qty,
                           cols.buyer_is_maker, tf_ms=1000)
    got = st.read_bars("BTCUSDT")
    for f in BAR_FIELDS:
        np.testing.assert_allclose(getattr(got, f), getattr(want, f), rtol=1e-12)
    np.testing.assert_array_equal(got.open, want.open)  # prices exact
    np.testing.assert_array_equal(got.close, want.close)
    assert len(st.read_bars(PERP)) == 0  # the other market untouched


# ---------------------------------------------------------------------- gaps, breaks
def test_gaps_fills_and_missing_ranges(stores):
    st = stores.trades
    write(st, trades("BTCUSDT", 100) + trades("BTCUSDT", 50, first_id=151))
    st.add_gap("BTCUSDT", 101, 150, T0)
    st.add_gap("ETHUSDT", 7, 7, T0 + 1)
    st.mark_gap_filled("BTCUSDT", 101, T0 + 500)  # same batch as the insert
    st.add_gap("BTCUSDT", 300, 310, T0 + 2)
    assert st.flush()
    assert st.read_gaps() == [
        Gap("BTCUSDT", 101, 150, T0, T0 + 500),
        Gap("BTCUSDT", 300, 310, T0 + 2, None),
        Gap("ETHUSDT", 7, 7, T0 + 1, None),
    ]
    assert [g.missing for g in st.read_gaps()] == [50, 11, 1]
    st.add_gap("BTCUSDT", 300, 320, T0 + 9)  # detected again, wider: first time kept
    st.mark_gap_filled("ETHUSDT", 12345, T0)  # unknown gap: no-op
    assert st.flush()
    assert st.read_gaps("BTCUSDT")[1] == Gap("BTCUSDT", 300, 320, T0 + 2, None)
    assert [(g.symbol, g.first_id) for g in st.unfilled_gaps()] == [
        ("BTCUSDT", 300), ("ETHUSDT", 7)]
    assert st.missing_ranges("BTCUSDT", 95, 205) == [(101, 150), (201, 205)]
    assert st.missing_ranges("BTCUSDT", 1, 100) == []


def test_breaks_are_stored_once_and_read_by_time(stores):
    st = stores.trades
    st.add_break("ETHUSDT", T0 + 50, "loop seam")
    st.add_break("BTCUSDT", T0 + 10, "ids 5..9 not recoverable")
    st.add_break("BTCUSDT", T0 + 10, "again")  # same (instrument, ts): stored once
    assert st.flush()
    got = st.read_breaks()
    assert [(b.symbol, b.ts_ms, b.reason) for b in got] == [
        ("BTCUSDT", T0 + 10, "ids 5..9 not recoverable"), ("ETHUSDT", T0 + 50, "loop seam")]
    sym, ts, reason, created = got[0]  # unpacks as the 4-tuple restore reads
    assert created > 0
    assert [b.symbol for b in st.read_breaks("ETHUSDT")] == ["ETHUSDT"]


# ---------------------------------------------------------------------- readonly, reopen
def test_readonly_refuses_writes_and_reads_what_the_writer_wrote(stores, store_factory):
    write(stores.trades, trades("BTCUSDT", 10))
    ro = store_factory(readonly=True)
    try:
        assert ro.trades.readonly and not ro.trades.writable
        assert ro.trades.start() is ro.trades  # no writer
        with pytest.raises(RuntimeError, match="readonly"):
            ro.trades.add_trade(trades("BTCUSDT", 1)[0])
        with pytest.raises(RuntimeError, match="readonly"):
            ro.trades.add_bar("BTCUSDT", bar(T0, 1.0))
        assert ro.trades.count_trades() == 10
        write(stores.trades, trades("BTCUSDT", 5, first_id=11))
        assert ro.trades.count_trades() == 10 + 5  # follows the writer
        with pytest.raises(DatasetError, match="read-only"):
            ro.datasets.add("x", parse_ohlc_csv(BTC_1H.read_bytes(), filename=BTC_1H.name))
        with pytest.raises(DatasetError, match="read-only"):
            ro.datasets.remove("x")
        assert ro.datasets.list() == []
    finally:
        ro.close()


def test_everything_survives_a_reopen(store_factory):
    first = store_factory()
    first.trades.start()
    spot, perp = trades("ETHUSDT", 300, seed=9), trades("ETHUSDT", 30, market="perp")
    write(first.trades, spot + perp)
    first.trades.add_bar("ETHUSDT", bar(T0, 7.0))
    first.trades.add_gap("perp:ETHUSDT", 31, 40, T0)
    first.trades.add_break("ETHUSDT", T0 + 1, "seam")
    first.datasets.add("m21", parse_ohlc_csv(BTC_1H.read_bytes(), filename=BTC_1H.name))
    rule = first.alerts.insert_rule({"metric": "price", "symbol": "ETHUSDT"}, True)
    assert first.trades.close()
    first.close()

    again = store_factory()
    try:
        t = again.trades
        np.testing.assert_array_equal(t.read_trades("ETHUSDT").price, [x.price for x in spot])
        np.testing.assert_array_equal(t.read_trades("perp:ETHUSDT").qty, [x.qty for x in perp])
        assert t.read_bars("ETHUSDT").close.tolist() == [7.0]
        assert t.read_gaps() == [Gap("perp:ETHUSDT", 31, 40, T0, None)]
        assert [b.reason for b in t.read_breaks()] == ["seam"]
        assert again.datasets.get("m21").rows == {"BTCUSDT": 744}
        assert [r.id for r in again.alerts.rules()] == [rule.id]
    finally:
        again.close()


# ---------------------------------------------------------------------- alerts
def test_alert_rules_crud(stores):
    al = stores.alerts
    v0 = al.rules_version()
    a = al.insert_rule({"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT"}, True)
    b = al.insert_rule({"metric": "price", "symbol": "BTCUSDT"}, False)
    assert b.id > a.id and al.rules_version() != v0
    assert [(r.id, r.enabled, r.spec) for r in al.rules()] == [
        (a.id, True, a.spec), (b.id, False, b.spec)]
    al.save({a.id: RuleState(False, 2.5, T0, T0)}, [])
    kept = al.update_rule(a.id, {**a.spec, "note": "x"}, False, keep_state=True)
    assert kept.spec["note"] == "x" and kept.created_ms == a.created_ms
    assert al.states()[a.id] == RuleState(False, 2.5, T0, T0)
    al.update_rule(a.id, a.spec, True)  # an edit drops the state
    assert a.id not in al.states()
    assert al.update_rule(999_999, {}, True) is None
    state = RuleState(True, math.nan, T0, None)
    al.save({b.id: state}, [])
    v1 = al.rules_version()
    assert al.delete_rule(b.id) is True and al.delete_rule(b.id) is False
    assert al.rules_version() != v1 and [r.id for r in al.rules()] == [a.id]
    back = al.restore_rule(b, state)  # undo: same id, same state
    assert back.id == b.id and al.states()[b.id].frontier_ts == T0
    assert al.restore_rule(b, None) is None  # the id is taken again
    c = al.insert_rule({"metric": "price", "symbol": "ETHUSDT"}, True)
    assert c.id > b.id  # ids are never reused


def test_alert_events_are_unique_and_paged(stores):
    al = stores.alerts
    r = al.insert_rule({"metric": "price", "symbol": "BTCUSDT"}, True)
    gone = al.insert_rule({"metric": "price", "symbol": "ETHUSDT"}, True)
    al.delete_rule(gone.id)
    assert al.last_event_id() == 0 and al.events() == []
    evs = [NewEvent(r.id, T0 + k, 1.0 + k, 2.0, f"e{k}") for k in range(5)]
    stored = al.save({r.id: RuleState(False, 5.0, T0 + 4, T0 + 4)},
                     evs + [NewEvent(gone.id, T0, 1.0, 2.0, "deleted rule")])
    assert [e.data_ts for e in stored] == [T0 + k for k in range(5)]
    assert al.save({}, evs[:2]) == []  # the same (rule, data_ts): not stored twice
    again = al.save({}, [NewEvent(r.id, T0 + 9, math.nan, 2.0, "nan")])
    assert math.isnan(again[0].value)
    events = al.events()
    assert [e.description for e in events] == ["e0", "e1", "e2", "e3", "e4", "nan"]
    assert math.isnan(events[-1].value) and al.last_event_id() == events[-1].id
    assert [e.description for e in al.events(limit=2)] == ["e4", "nan"]  # most recent
    assert [e.description for e in al.events(after_id=events[3].id)] == ["e4", "nan"]
    assert [e.data_ts for e in al.events(since_ms=0, limit=2)] == [T0, T0 + 1]
    assert al.events(rule_id=gone.id) == []
    assert al.states()[r.id] == RuleState(False, 5.0, T0 + 4, T0 + 4)


# ---------------------------------------------------------------------- alert delivery
def test_channels_crud_and_deliveries_enqueued_with_their_event(stores, store_factory):
    """#20: one outbox row per (event, existing channel of its rule), written in the
    save that stores the event, with the payload; attempts recorded; a deleted channel
    fails its open rows; everything survives a reopen."""
    import json as _json

    al = stores.alerts
    assert al.channels() == []
    c1 = al.insert_channel("webhook", "desk", "http://127.0.0.1:9/hook", "s3cr3t")
    c2 = al.insert_channel("slack", "team", "slack://T1/B2/C3", None)
    assert c2.id > c1.id and al.channel(c1.id) == c1 and al.channel(999_999) is None
    moved = al.update_channel(c2.id, "slack", "team2", "slack://T1/B2/C4", None)
    assert moved.name == "team2" and moved.created_ms == c2.created_ms
    assert al.update_channel(999_999, "webhook", "x", "http://h", None) is None
    r = al.insert_rule({"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT",
                        "timeframe": "1s", "window": 60,
                        "channels": [c1.id, c2.id, 999_999]}, True)
    quiet = al.insert_rule({"metric": "price", "symbol": "BTCUSDT"}, True)
    stored = al.save({}, [NewEvent(r.id, T0 + k, 2.0 + k, 2.0, f"e{k}") for k in range(3)]
                     + [NewEvent(quiet.id, T0, 1.0, 2.0, "no channels")])
    rows = al.open_deliveries()
    # 3 events x 2 existing channels (999_999 does not exist), in event order
    assert [(d.event_id, d.channel_id) for d in rows] == [
        (e.id, c) for e in stored[:3] for c in (c1.id, c2.id)]
    assert {d.status for d in rows} == {"pending"} and {d.attempts for d in rows} == {0}
    body = _json.loads(rows[0].payload)
    assert body == {
        "event_id": stored[0].id, "rule_id": r.id, "description": "e0",
        "metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT", "timeframe": "1s",
        "window": 60, "value": 2.0, "threshold": 2.0,
        "data_ts": "2023-11-14T22:13:20.000Z",
        "fired_at": body["fired_at"]}
    assert body["fired_at"].endswith("Z") and rows[0].created_ms == stored[0].fired_ms
    al.record_attempt(rows[0].id, status="retrying", attempts=1, last_error="HTTP 503",
                      last_status=503, next_attempt_ms=T0 + 5)
    al.record_attempt(rows[1].id, status="delivered", attempts=1, last_error=None,
                      last_status=200, next_attempt_ms=T0, delivered_ms=T0 + 7,
                      latency_ms=7.0)
    with pytest.raises(ValueError):
        al.record_attempt(rows[2].id, status="sent", attempts=1, last_error=None,
                          last_status=None, next_attempt_ms=T0)
    log = {d.id: d for d in al.deliveries()}
    assert list(log) == sorted(log, reverse=True)  # newest first
    assert (log[rows[0].id].status, log[rows[0].id].last_status,
            log[rows[0].id].next_attempt_ms) == ("retrying", 503, T0 + 5)
    assert log[rows[1].id].as_json()["latency_ms"] == 7.0
    assert log[rows[1].id].as_json()["next_attempt_ms"] is None  # done: not due
    assert log[rows[0].id].channel_name == "desk"
    assert [d.id for d in al.deliveries(status="delivered")] == [rows[1].id]
    assert {d.channel_id for d in al.deliveries(channel_id=c2.id)} == {c2.id}
    assert al.deliveries(rule_id=quiet.id) == [] and len(al.deliveries(limit=2)) == 2
    assert len(al.open_deliveries()) == 5
    # at most per_lane rows of each (rule, channel): the heads of the two lanes
    assert [d.id for d in al.open_deliveries(per_lane=1)] == [rows[0].id, rows[3].id]
    assert al.delete_channel(c2.id) is True and al.delete_channel(c2.id) is False
    gone = al.deliveries(channel_id=c2.id)
    assert {d.status for d in gone if d.id != rows[1].id} == {"failed"}
    assert {d.last_error for d in gone if d.id != rows[1].id} == {"channel deleted"}
    assert {d.channel_name for d in gone} == {None}  # the log stays, nameless
    assert [c.id for c in al.channels()] == [c1.id]
    stores.close()
    again = store_factory()
    assert [c.secret for c in again.alerts.channels()] == ["s3cr3t"]
    assert [d.id for d in again.alerts.open_deliveries()] == [rows[0].id, rows[2].id,
                                                              rows[4].id]
    again.close()


# ---------------------------------------------------------------------- datasets
def part(path, lo, hi):
    """Lines ``lo..hi-1`` of a real kline file, as an upload (no invented prices)."""
    lines = path.read_text().splitlines()[lo:hi]
    return parse_ohlc_csv(("\n".join(lines) + "\n").encode(), filename=f"{path.stem}-{lo}.csv")


def test_datasets_add_append_overlap_and_remove(stores):
    ds = stores.datasets
    full = parse_ohlc_csv(BTC_1H.read_bytes(), filename=BTC_1H.name)
    ds.add("m21", part(BTC_1H, 0, 400))
    res = ds.store("m21", part(BTC_1H, 350, 744))  # 50 identical bars merge
    assert res.inserted == {"BTCUSDT": 344} and res.identical == {"BTCUSDT": 50}
    info = ds.add("m21", parse_ohlc_csv(ETH_1H.read_bytes(), filename=ETH_1H.name))
    assert info.symbols == ("BTCUSDT", "ETHUSDT") and info.tf_ms == 3_600_000
    assert info.rows == {"BTCUSDT": 744, "ETHUSDT": 744} and len(info.files) == 3
    got = ds.bars("m21", "BTCUSDT")
    for col in ("ts", "open", "high", "low", "close", "volume", "quote_volume", "trades",
                "buy_volume"):
        np.testing.assert_array_equal(getattr(got, col), getattr(full.bars["BTCUSDT"], col))
    assert [d.name for d in ds.list()] == ["m21"] and ds.get("nope") is None
    with pytest.raises(KeyError):
        ds.bars("m21", "SOLUSDT")

    lines = BTC_1H.read_text().splitlines()[390:744]
    cells = lines[5].split(",")
    cells[5] = "1234.50000000"  # another volume than the stored bar's
    lines[5] = ",".join(cells)
    bad = parse_ohlc_csv(("\n".join(lines) + "\n").encode(), filename="BTCUSDT-1h-b.csv")
    with pytest.raises(DatasetError, match="line 6"):
        ds.add("m21", bad)
    with pytest.raises(DatasetError, match="holds 1h bars"):
        ds.add("m21", parse_ohlc_csv((SAMPLE_DIR / "BTCUSDT-1m-2022-09-05.csv").read_bytes(),
                                     filename="BTCUSDT-1m-2022-09-05.csv"))
    with pytest.raises(DatasetError, match="dataset name"):
        ds.add("bad name; DROP TABLE datasets", full)
    assert ds.get("m21").rows == {"BTCUSDT": 744, "ETHUSDT": 744}  # refusals changed nothing

    assert ds.remove("m21") is True and ds.remove("m21") is False
    assert ds.list() == [] and ds.get("m21") is None
    with pytest.raises(KeyError):
        ds.bars("m21", "BTCUSDT")
    assert stores.trades.count_trades() == 0  # datasets never touch the ticks
