"""``--bus`` end to end: ``python -m ingest --replay ... --bus URL`` publishes, a
``--no-ingest --bus`` Runtime restores from the same DB mid-tape and follows the bus;
at the end its 1 s bars equal the ingest process's (as stored) and its rings hold
exactly the stored trades. And the two ways a bus can be missing at start."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from analytics.bars import BAR_FIELDS
from ingest.config import parse_config
from ingest.runtime import Runtime
from ingest.store import open_store
from tests.ingest.bus.helpers import wait_for
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[3]


def test_ingest_refuses_to_start_when_the_bus_does_not_answer(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(SystemExit, match=r"error: --bus: cannot reach the bus at redis://"):
        Runtime(parse_config(["--db", str(tmp_path / "m.db"), "--bus", url, "--replay"]))
    assert not (tmp_path / "m.db").exists()  # refused before anything was made


def test_worker_without_its_bus_serves_what_it_restored_and_says_so(tmp_path):
    db = tmp_path / "m.db"
    open_store(db).close()  # an (empty) DB written by some ingest process
    url = f"redis://127.0.0.1:{free_port()}/0"
    rt = Runtime(parse_config(["--db", str(db), "--no-ingest", "--bus", url]))
    rt.start()
    try:
        wait_for(lambda: rt.bus_feed.error is not None, 10, "the follower's first failure")
        h = rt.health()
        assert h["bus"]["url"] == url and h["bus"]["role"] == "follow"
        assert h["bus"]["connected"] is False and h["bus"]["error"]
        assert "not reachable" in h["feed"]["error"] and url in h["feed"]["error"]
    finally:
        rt.stop()


@pytest.mark.slow
def test_worker_following_the_bus_ends_with_the_ingest_process_bars_and_rings(
    tmp_path, redis_server
):
    h = _ingest_and_follow(tmp_path, redis_server, speed="0", worker_first=True)
    assert h["consumed"] == 34_419  # the whole bundled tape came over the bus


@pytest.mark.slow
def test_bus_restarted_mid_tape_the_worker_still_ends_equal(tmp_path, redis_server):
    """The worker stops reading, the bus dies with what it held and comes back empty:
    the worker resumes, reads what was lost from the (real SQLite) store, ends equal."""

    def outage(rt) -> None:
        go = threading.Event()
        go.set()
        read = rt.bus_feed.follower.read

        def paused_read(block_ms: int):
            go.wait()
            return read(block_ms)

        rt.bus_feed.follower.read = paused_read
        wait_for(lambda: rt.bus_feed.consumed > 3_000, 60, "3,000 trades from the bus")
        go.clear()  # the worker falls behind ...
        time.sleep(0.6)
        redis_server.kill()  # ... and what the bus held for it is gone
        time.sleep(0.5)  # the ingest keeps going, its publisher keeps what it cannot send
        redis_server.start()
        go.set()

    h = _ingest_and_follow(tmp_path, redis_server, speed="100", during=outage)
    assert h["filled_from_store"] > 0 and h["missed"] == 0


@pytest.mark.slow
def test_worker_follows_spot_and_perp_of_one_symbol_each_under_its_own_name(
    tmp_path, redis_server
):
    """Two markets (the bundled spot + perp tapes, ``--replay`` without ``--market``):
    over the bus each trade keeps its instrument and the worker (started first, on the
    writer's ``--symbols``) names them as the ingest process does (``spot:BTCUSDT``...)
    and ends with the same bars and rings per instrument."""
    names = ("perp:BTCUSDT", "perp:ETHUSDT", "spot:BTCUSDT", "spot:ETHUSDT")
    h = _ingest_and_follow(tmp_path, redis_server, speed="0", market=(), names=names,
                           worker_first=True, worker_args=("--symbols", ",".join(names)))
    assert h["consumed"] == 51_225  # both markets' bundled trades came over the bus


def _ingest_and_follow(
    tmp_path, redis_server, *, speed: str, worker_first: bool = False, during=None,
    market: tuple[str, ...] = ("--market", "spot"),
    names: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), worker_args: tuple[str, ...] = (),
) -> dict:
    """``python -m ingest`` publishing, a worker Runtime following (started before the
    ingest on its empty DB, or once it runs: restoring mid-tape); returns its bus health
    once it holds every stored trade and bar, after checking them equal."""
    db = tmp_path / "m.db"
    url = redis_server.url(0)
    log = tmp_path / "ingest.log"

    def worker() -> Runtime:
        # --market: the DB may hold no trade yet to tell the worker the writer's market
        w = Runtime(parse_config(["--db", str(db), "--no-ingest", "--bus", url,
                                  "--market", "spot", "--ring-capacity", "100000",
                                  *worker_args]))
        w.start()  # restores whatever the ingest process stored so far, then follows
        return w

    rt = None
    if worker_first:
        open_store(db).close()  # the schema, as the ingest process makes it
        rt = worker()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--replay", *market, "--replay-speed", speed, "--replay-once",
         "--db", str(db), "--bus", url, "--log-level", "WARNING"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        def ingest_started() -> bool:
            assert proc.poll() is None, f"ingest died:\n{log.read_text()[-2000:]}"
            return "ingest:" in log.read_text()

        wait_for(ingest_started, 60, "python -m ingest to start")
        if rt is None:  # mid-tape: the restore holds part of it, the bus the rest
            wait_for(lambda: _stored(db) >= 2_000, 60, "2,000 trades stored")
            rt = worker()
            assert rt.ingestor.restored.ring_ticks >= 2_000
        restored = rt.ingestor.restored
        if during is not None:
            during(rt)
        symbols = names
        if not worker_first:  # started mid-tape: the worker's universe is the store's
            assert rt.universe.names == names

        stores = open_store(db, readonly=True)
        stores.trades.use_universe(rt.universe)  # read by the run's names

        def caught_up() -> bool:
            assert proc.poll() is None, f"ingest died:\n{log.read_text()[-2000:]}"
            st = stores.trades
            if not rt.bus_feed.consumed or rt.bus_feed.publisher_feed is None:
                return False  # not a test of the restore alone
            for sym in symbols:
                stored_bars = st.read_bars(sym)
                why[0] = (f"{sym}: stored {st.count_trades(sym)} trades, "
                          f"{len(stored_bars)} bars; worker ring "
                          f"{len(rt.ingestor.rings[sym])}, "
                          f"bars {len(rt.engine.bars(sym, 1_000))}; stored bars the worker "
                          f"lacks {sorted(set(stored_bars.ts.tolist()) - set(rt.engine.bars(sym, 1_000).ts.tolist()))[:8]}, "
                          f"last worker bar {rt.engine.bars(sym, 1_000).ts[-1:]}, "
                          f"bus {rt.bus_feed.status()}")
                if len(stored_bars) == 0 or rt.ingestor.rings[sym].seq == 0:
                    return False
                if st.count_trades(sym) != len(rt.ingestor.rings[sym]):
                    return False
                if len(rt.engine.bars(sym, 1_000)) != len(stored_bars):
                    return False
            return True

        why = [""]
        try:
            try:
                wait_for(caught_up, 120, "the worker to hold every stored trade and bar")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {why[0]}") from None
            for sym in symbols:
                want = stores.trades.read_bars(sym)
                got = rt.engine.bars(sym, 1_000)
                for f in BAR_FIELDS:
                    assert np.array_equal(getattr(got, f), getattr(want, f)), (sym, f)
                ring = rt.ingestor.rings[sym].since(0)
                trades = stores.trades.read_trades(sym)
                for f in ("time_ms", "trade_id", "price", "qty", "buyer_is_maker"):
                    assert np.array_equal(getattr(ring, f), getattr(trades, f)), (sym, f)
        finally:
            stores.close()
        h = rt.health()["bus"]
        assert h["connected"] and h["role"] == "follow" and h["missed"] == 0, repr(h)
        assert h["consumed"] > 0 and h["lag_ms"] is not None
        assert rt.health()["feed"].get("via") == "bus " + url  # the publisher's feed
        print(f"restored {restored.ring_ticks} ticks, then {h['consumed']} from the bus, "
              f"{h['filled_from_store']} from the store")
    finally:
        if rt is not None:
            rt.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = log.read_text()
    assert "Traceback" not in out, out[-3000:]
    return h


def _stored(db: Path) -> int:
    try:
        stores = open_store(db, readonly=True)
    except Exception:  # not created yet
        return 0
    try:
        return stores.trades.count_trades()
    finally:
        stores.close()
