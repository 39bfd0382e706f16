"""Ingest exactness, each fault injected for real through the replay server:

* bars close on the feed's data clock: a stall with data pending never closes a bar,
  a verifiably quiet connection does;
* a trade older than a published bar is counted (``late_trades`` in ``/api/health``)
  and the store's bar of its bucket is rebuilt from the stored trades;
* a frame with a poisoned id is quarantined (REST disagrees), a frame with a trade
  time years ahead is rejected: every genuine trade is still delivered;
* a clean close (1000) is not a failure: the reconnect backoff does not climb;
* ``lag_ms`` against a recording that keeps its old times is not a 10-digit number;
* session breaks: marked, stored, re-applied at restore before the bars.
"""

from __future__ import annotations

import time

import numpy as np

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from ingest.feeds.backfill import Backfiller
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed
from ingest.models import Trade
from ingest.pipeline import Ingestor
from ingest.replay import FaultPlan
from ingest.store.sqlite_trades import SqliteTradeStore

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TEN_YEARS_MS = 10 * 365 * 86_400_000


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def trade(i: int, t_ms: int, price: float = 100.0, sym: str = "BTCUSDT") -> Trade:
    return Trade(sym, i, t_ms, price, 1.0 + i / 1000, i % 2 == 0, t_ms + 5)


# ------------------------------------------------------------------ data clock
def test_stall_with_data_pending_never_closes_a_bar_quiet_connection_does(tmp_path):
    """The close rule: while the source has data pending (a stopped process finds its
    socket full), no time passes on the data clock; only verified quiet time does."""
    store = SqliteTradeStore(tmp_path / "m.db").start()
    try:
        ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
        pending = [True]
        ing.quiet_probe = lambda: pending[0]
        ing.start_clock()
        ing.on_trade(trade(1, 10_000))
        ing.on_trade(trade(2, 10_400))
        time.sleep(1.6)  # a "stall": 1.6 s of local time, the socket full meanwhile
        assert len(ing.engine.bars("BTCUSDT", 1_000)) == 0, "a local stall closed a bar"
        ing.on_trade(trade(3, 10_900))  # the queued trade of the same bucket arrives
        pending[0] = False
        # quiet now: ~0.35 s of verified quiet closes bucket 10 s (ends 11 s + 250 ms)
        wait_for(lambda: len(ing.engine.bars("BTCUSDT", 1_000)) == 1, 3, "quiet close")
        bar = ing.engine.bars("BTCUSDT", 1_000).bar(0)
        assert (bar.ts, bar.trades, bar.first_id, bar.last_id) == (10_000, 3, 1, 3)
        assert ing.late_trades == {}
        ing.stop()
    finally:
        store.close()


def test_quiet_time_counts_at_most_one_step_per_tick(tmp_path):
    """A tick that comes 1.5 s late (the process was stopped) adds 0.2 s, not 1.5 s."""
    store = SqliteTradeStore(tmp_path / "m.db").start()
    try:
        ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
        ing.quiet_probe = lambda: False
        ing.on_trade(trade(1, 10_000))
        assert ing.clock_tick(0.1) == []  # first tick after the trade: not yet quiet
        assert ing.close_clock_ms() == 10_000 - ing.bar_close_delay_ms
        assert ing.clock_tick(1.5) == []  # a stall: counted as 0.2 s only
        assert ing.close_clock_ms() == 10_000 - ing.bar_close_delay_ms + 200
        closed = []
        for _ in range(10):  # 9,950 ms: bucket 10 s (ends at 11 s) still open
            closed += ing.clock_tick(0.1)
        assert closed == []
        for _ in range(2):  # 11,050 ms
            closed += ing.clock_tick(0.1)
        assert [(s, b.ts) for s, b in closed] == [("BTCUSDT", 10_000)]
    finally:
        store.close()


def test_late_trade_after_a_published_bar_is_counted_and_the_stored_bar_rebuilt(tmp_path):
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    db = tmp_path / "m.db"
    # --market spot: the hand-made trades are spot trades (Trade.market), and the store
    # keys rows by instrument
    rt = Runtime(parse_config(["--db", str(db), "--symbols", "BTCUSDT,ETHUSDT",
                               "--market", "spot", "--rest-url", "off"]))
    try:
        rt.store.start()
        ing = rt.ingestor
        ticks = [trade(1, 10_100, 100.0), trade(2, 10_600, 101.0), trade(3, 11_200, 99.0)]
        for t in ticks:
            ing.on_trade(t)  # the trade at 11.2 s closes and stores bucket 10 s
        late = trade(4, 10_800, 105.0)  # after a reconnect: older than the published bar
        ing.on_trade(late)
        h = rt.health()
        assert h["symbols"]["BTCUSDT"]["late_trades"] == 1
        assert h["feed"]["late_trades"] == 1
        assert rt.store.flush(5)
        got = rt.store.read_bars("BTCUSDT", start_ms=10_000, end_ms=11_000)
        cols = rt.store.read_trades("BTCUSDT", start_ms=10_000, end_ms=11_000)
        want = bars_from_ticks(cols.time_ms, cols.trade_id, cols.price, cols.qty,
                               cols.buyer_is_maker, tf_ms=1_000)
        assert int(got.trades[0]) == 3 and float(got.high[0]) == 105.0
        for f in ("open", "high", "low", "close", "trades", "first_id", "last_id"):
            assert getattr(got, f)[0] == getattr(want, f)[0], f
    finally:
        rt.store.close()
        rt.datasets.close()
        rt.writer_lock.release()


# ------------------------------------------------------------------ poisoned frames
class _Collector:
    def __init__(self):
        self.trades: list[Trade] = []

    def __call__(self, t: Trade) -> None:
        self.trades.append(t)


def _feed(server, on_trade, **kwargs) -> TradeFeed:
    url = BINANCE_SPOT.stream_url(SYMBOLS, "trade", server.ws_base)
    feed = TradeFeed(url, on_trade, protocol=BINANCE_SPOT, **kwargs)
    feed.start()
    return feed


def _genuine(tape) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s: [] for s in tape.symbols}
    for ev in tape.events:
        out[ev.symbol].append(ev.trade_id)
    return out


def test_bad_id_frame_is_quarantined_and_every_genuine_trade_delivered(
    make_server, small_tape
):
    srv = make_server(small_tape, speed=0, faults=FaultPlan(bad_id=(1_000, 10**9)))
    verifier = Backfiller(protocol=BINANCE_SPOT, stream="trade", base_url=srv.rest_base,
                          deliver=lambda s, t: None)
    got = _Collector()
    feed = _feed(srv, got, verify_trade=verifier.verify)
    try:
        wait_for(lambda: len(got.trades) >= len(small_tape), 30, "the whole tape")
        time.sleep(0.2)
        st = feed.status()
        assert st.quarantined == 1 and st.quarantine[0]["rest"] == "disagrees"
        assert st.gaps == 0 and st.duplicates == 0
        ids = {s: [t.trade_id for t in got.trades if t.symbol == s] for s in SYMBOLS}
        assert ids == _genuine(small_tape)
        assert feed.last_ids == {s: v[-1] for s, v in _genuine(small_tape).items()}
    finally:
        feed.stop()


def test_far_future_frame_is_rejected_and_counted(make_server, small_tape):
    srv = make_server(small_tape, speed=0,
                      faults=FaultPlan(future_time=(1_500, TEN_YEARS_MS)))
    got = _Collector()
    feed = _feed(srv, got)
    try:
        wait_for(lambda: len(got.trades) >= len(small_tape), 30, "the whole tape")
        time.sleep(0.2)
        st = feed.status()
        assert st.rejected_times == 1 and st.duplicates == 0 and st.gaps == 0
        assert max(t.time_ms for t in got.trades) == small_tape.events[-1].time_ms
        ids = {s: [t.trade_id for t in got.trades if t.symbol == s] for s in SYMBOLS}
        assert ids == _genuine(small_tape)
        assert st.as_dict()["rejected_times"] == 1
    finally:
        feed.stop()


def test_lag_against_a_recording_on_its_own_clock_is_not_reported(make_server, small_tape):
    """The tape keeps its 2024 times: now - T is ~2 years, not a lag."""
    srv = make_server(small_tape, speed=0)
    got = _Collector()
    feed = _feed(srv, got)
    try:
        wait_for(lambda: len(got.trades) >= 100, 30, "trades")
        assert feed.status().lag_ms is None
    finally:
        feed.stop()


# ------------------------------------------------------------------ reconnects
def test_clean_closes_of_short_connections_do_not_climb_the_backoff(make_server, small_tape):
    """The server closes cleanly (1000) every 100 events: six reconnects take six first
    backoff steps (<= 0.2 s each), not 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + ... s."""
    srv = make_server(small_tape, speed=0, faults=FaultPlan(drop_every=100))
    got = _Collector()
    feed = _feed(srv, got, backoff_base_s=0.2, backoff_cap_s=30.0, stable_after_s=60.0)
    try:
        wait_for(lambda: feed.status().reconnects >= 6, 4.0, "six quick reconnects")
        st = feed.status()
        assert st.clean_closes >= 6 and st.last_backoff_s <= 0.2
    finally:
        feed.stop()


# ------------------------------------------------------------------ session breaks
def test_session_break_marked_stored_and_reapplied_before_bars_at_restore(tmp_path):
    db = tmp_path / "m.db"
    store = SqliteTradeStore(db).start()
    ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
    for i, t_ms in enumerate((10_000, 10_500, 11_000, 12_000)):
        ing.on_trade(trade(i + 1, t_ms))
    ing.break_at_next_trade("BTCUSDT", "ids 5..9 missing, back-fill off")
    ing.on_trade(trade(10, 15_300))
    ing.on_trade(trade(11, 16_100))
    assert list(ing.engine.breaks("BTCUSDT")) == [15_300]
    assert ing.breaks["BTCUSDT"][:2] == (1, 15_300)
    store.close()

    store = SqliteTradeStore(db).start()
    try:
        assert [b[:2] for b in store.read_breaks()] == [("BTCUSDT", 15_300)]
        engine = MarketEngine(SYMBOLS)
        calls = []
        mark, load = engine.mark_break, engine.load_bars
        engine.mark_break = lambda *a, **k: (calls.append("break"), mark(*a, **k))[1]
        engine.load_bars = lambda *a, **k: (calls.append("bars"), load(*a, **k))[1]
        again = Ingestor(SYMBOLS, store, engine)
        again.restore()
        assert list(engine.breaks("BTCUSDT")) == [15_300]
        assert calls.index("break") < calls.index("bars")
        assert again.breaks["BTCUSDT"][:2] == (1, 15_300)
    finally:
        store.close()


def test_unrecoverable_ids_mark_a_break_at_the_first_trade_after_them(make_server, small_tape):
    """A looped replay leaves ids out at its seam: REST never had them, the back-fill
    gives up on them and reports the time of the first trade after them."""
    srv = make_server(small_tape, speed=0, loop=True, loop_seam_ids=50)
    seen: list[tuple] = []
    got = _Collector()
    backfill = Backfiller(protocol=BINANCE_SPOT, stream="trade", base_url=srv.rest_base,
                          deliver=lambda s, t: None, backoff_base_s=0.01,
                          backoff_cap_s=0.05,
                          on_unrecoverable=lambda *a: seen.append(a))
    backfill.start()
    feed = _feed(srv, got, on_gap=backfill.submit)
    try:
        wait_for(lambda: len({s for s, *_ in seen}) == 2, 20, "both seams unrecoverable")
        first = {}
        for ev in small_tape.events:
            first.setdefault(ev.symbol, ev)
        for sym, lo, hi, next_ms in seen[:2]:
            assert lo == small_tape.last_id[sym] + 1 and hi == lo + 49
            assert next_ms == first[sym].time_ms + srv.time_shift_ms
        assert np.all(np.diff([t.time_ms for t in got.trades if t.symbol == "BTCUSDT"]) >= 0)
    finally:
        feed.stop()
        backfill.stop()


# ------------------------------------------------------------------ replay CLI
def test_replay_rest_port_falls_back_to_a_free_port_when_port_plus_one_is_taken(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import requests

    root = Path(__file__).resolve().parents[2]
    for _ in range(20):  # a free port P whose P + 1 we can take
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.1", port + 1))
            blocker.listen()
            break
        except OSError:
            blocker.close()
    else:
        raise AssertionError("no free port pair found")
    log = tmp_path / "replay.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.replay", "--port", str(port), "--speed", "0"],
        cwd=root, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "REST port" not in log.read_text():
            assert proc.poll() is None, f"replay died:\n{log.read_text()[-1500:]}"
            assert time.monotonic() < deadline, log.read_text()[-1500:]
            time.sleep(0.1)
        text = log.read_text()
        assert f"REST port {port + 1} is taken" in text
        rest = text.split("REST listens on ")[1].split()[0]
        assert rest != f"http://127.0.0.1:{port + 1}"
        r = requests.get(f"{rest}/api/v3/historicalTrades?symbol=BTCUSDT&limit=1", timeout=5)
        assert r.status_code == 200
    finally:
        blocker.close()
        proc.terminate()
        proc.wait(15)


def test_feed_card_shows_late_rejected_and_quarantined_counts():
    from dashapp.status import feed_card

    card = feed_card({"connected": True, "msgs_per_s": 10.0, "late_trades": 3,
                      "rejected_times": 1, "quarantined": 2})
    text = str(card.to_plotly_json())
    assert "Late trades" in text and "'3'" in text
    assert "Rejected · quarantined" in text and "1 · 2" in text


def test_a_poisoned_high_water_mark_seeded_at_restart_does_not_wedge_the_symbol(
    make_server, small_tape
):
    """An older version stored ``t + 10**9``; the restart seeds the duplicate check with
    it. After a run of consecutive genuine ids far below it the mark is abandoned, and
    the run's first ids are reported as a gap for the back-fill: nothing is lost."""
    srv = make_server(small_tape, speed=0)
    genuine = _genuine(small_tape)
    poisoned = {"BTCUSDT": genuine["BTCUSDT"][0] - 1 + 10**9}
    got, gaps = _Collector(), []
    feed = _feed(srv, got, last_ids=poisoned, on_gap=lambda *g: gaps.append(g))
    try:
        wait_for(lambda: feed.last_ids.get("ETHUSDT") == genuine["ETHUSDT"][-1]
                 and feed.last_ids.get("BTCUSDT") == genuine["BTCUSDT"][-1], 30,
                 "both symbols to the end of the tape")
        btc = [t.trade_id for t in got.trades if t.symbol == "BTCUSDT"]
        refilled = [i for _, lo, hi in gaps for i in range(lo, hi + 1)]
        assert sorted(btc + refilled) == genuine["BTCUSDT"]
        st = feed.status()
        assert st.quarantined == 1 and st.duplicates == 0
    finally:
        feed.stop()
