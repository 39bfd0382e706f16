"""``python app.py --replay --replay-universe N`` (C2): the runtime plays a wide tape of N
instruments and stores every trade of every instrument exactly once."""

from __future__ import annotations

import sqlite3
import time

import pandas as pd
import pytest

from ingest.config import parse_config
from ingest.replay.wide import wide_tape
from ingest.runtime import Runtime

pytestmark = pytest.mark.slow  # a runtime and its replay server


def test_replay_universe_ingests_every_instrument_once(tmp_path) -> None:
    n = 24
    db = tmp_path / "wide.db"
    cfg = parse_config(["--replay", "--replay-universe", str(n), "--market", "futures",
                        "--replay-speed", "0", "--replay-once", "--replay-keep-times",
                        "--db", str(db), "--port", "8999"])
    rt = Runtime(cfg)
    assert len(rt.universe) == n and rt.universe.markets == ("perp",)
    tape = wide_tape(n, market="perp")  # the same tape, independently rebuilt
    assert sorted(rt.universe.names) == sorted(tape.symbols)
    rt.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            h = rt.health()
            if h["store"]["rows"] >= len(tape) and h["store"]["pending"] == 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more may come
        assert rt.store.flush(10.0)
        assert rt.health()["feed"]["gaps"] == 0
    finally:
        rt.stop()
    con = sqlite3.connect(db)
    try:
        stored = pd.read_sql_query("SELECT * FROM trades", con)
    finally:
        con.close()
    assert set(stored["market"]) == {"perp"}
    assert not stored.duplicated(["symbol", "trade_id"]).any()
    want = pd.DataFrame([(ev.symbol, ev.trade_id, ev.time_ms) for ev in tape.events],
                        columns=["symbol", "trade_id", "time_ms"])
    key = ["symbol", "trade_id", "time_ms"]
    pd.testing.assert_frame_equal(
        stored[key].sort_values(key).reset_index(drop=True),
        want.sort_values(key).reset_index(drop=True), check_dtype=False)


def _stored(db) -> pd.DataFrame:
    con = sqlite3.connect(db)
    try:
        return pd.read_sql_query("SELECT market, symbol, trade_id, time_ms FROM trades", con)
    finally:
        con.close()


def _top(tape, n: int) -> list[str]:
    """Independent ranking: Σ price × qty per symbol over the tape (pandas), ties by
    symbol."""
    df = pd.DataFrame([(ev.symbol, float(ev.data["p"]) * float(ev.data["q"]))
                       for ev in tape.events], columns=["symbol", "quote"])
    vol = df.groupby("symbol")["quote"].sum().reset_index()
    return vol.sort_values(["quote", "symbol"], ascending=[False, True])["symbol"].head(
        n).tolist()


@pytest.mark.parametrize("symbols, per_conn, n_conn", [("all", "256", 2),
                                                       ("top:120", "64", 2)])
def test_300_instruments_selected_by_the_replays_listings_over_several_connections(
        tmp_path, symbols, per_conn, n_conn) -> None:
    """The issue's acceptance test: 300 instruments on the replay server, the universe
    chosen by ``--symbols all`` / ``top:N`` from ITS exchangeInfo and 24 h ticker, the
    streams split over several connections (perp: ``n_conn`` trade connections on
    ``/market`` and as many book-only ones on ``/public``), and every trade of every
    selected instrument stored exactly once."""
    db = tmp_path / "wide.db"
    cfg = parse_config(["--replay", "--replay-universe", "300", "--market", "futures",
                        "--symbols", symbols, "--streams-per-connection", per_conn,
                        "--replay-speed", "0", "--replay-once", "--replay-keep-times",
                        "--db", str(db), "--port", "8999"])
    tape = wide_tape(300, market="perp")
    want_symbols = sorted(tape.symbols) if symbols == "all" else sorted(_top(tape, 120))
    want = pd.DataFrame([(ev.symbol, ev.trade_id, ev.time_ms) for ev in tape.events
                         if ev.symbol in set(want_symbols)],
                        columns=["symbol", "trade_id", "time_ms"])
    rt = Runtime(cfg)
    try:
        assert sorted(rt.universe.names) == want_symbols
        rt.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            h = rt.health()
            if h["store"]["rows"] >= len(want) and h["store"]["pending"] == 0:
                break
            time.sleep(0.5)
        time.sleep(0.5)
        assert rt.store.flush(10.0)
        feed = rt.health()["feed"]
    finally:
        rt.stop()
    for kind in ("trade", "book"):
        conns = [c for c in feed["connections"] if c.get("kind", "trade") == kind]
        assert len(conns) == n_conn, (kind, conns)
        assert sum(c["symbols"] for c in conns) == len(want_symbols)
        assert all(c["streams"] <= int(per_conn) for c in conns)
    assert feed["gaps"] == 0 and feed["duplicates"] == 0
    stored = _stored(db)
    assert not stored.duplicated(["symbol", "trade_id"]).any()
    key = ["symbol", "trade_id", "time_ms"]
    pd.testing.assert_frame_equal(
        stored[key].sort_values(key).reset_index(drop=True),
        want.sort_values(key).reset_index(drop=True), check_dtype=False)
