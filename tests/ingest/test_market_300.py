"""300 instruments end to end (issue #19): the universe resolved from the replay's own
``exchangeInfo`` / 24 h ticker, streams over several connections, every trade stored once.

The replay exchange (a real :class:`~ingest.replay.server.ReplayServer` in this process,
no mocks) plays a wide tape (:func:`ingest.replay.wide.wide_tape`: 300 USD-M perps, the
real BTCUSDT/ETHUSDT recordings and 298 instruments derived from them) ONCE, its player
held until all 300 trade streams are subscribed (``wait_streams``). The app runs as a user
runs it, ``python app.py`` in a subprocess, with ``--symbols top:300`` or ``--symbols all``
(nothing names an instrument: the universe comes from the replay's REST) and
``--streams-per-connection 256`` (300 trade + 300 book streams: at least 3 connections).

Checked against the tape, independently of the app's code:

* ``/api/health`` shows more than one connection on the perp market, each within the cap,
  carrying together every stream;
* the SQLite file holds exactly the tape's instruments, and per instrument exactly the
  tape's trade ids (count and set; ``count(DISTINCT)`` too), no gap left unfilled;
* the stored 1 s bars of a head, a middle and a tail instrument equal a pandas
  ``resample("1s")`` of the tape's trades (open/high/low/close/trades/ids exactly,
  volumes to rounding).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.replay.server import ReplayServer
from ingest.replay.wide import wide_tape

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
N = 300
TAPE_MINUTES = 2.0
SPEED = 10.0
STREAMS_PER_CONNECTION = 256


@pytest.fixture(scope="module")
def tape():
    return wide_tape(N, market="perp", minutes=TAPE_MINUTES)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> dict | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return None


def tape_trades(tape) -> pd.DataFrame:
    """The tape's trades as a frame (independent of the app: parsed from the frames)."""
    rows = [(ev.symbol, ev.trade_id, ev.data["T"], float(ev.data["p"]), float(ev.data["q"]),
             bool(ev.data["m"])) for ev in tape.events if ev.kind == "trade"]
    return pd.DataFrame(rows, columns=["symbol", "trade_id", "T", "price", "qty", "maker"])


def connections_of(feed: dict) -> list[dict]:
    """The perp market's connections in ``/api/health`` ``feed`` (one market or several)."""
    if feed.get("markets"):
        return feed["markets"]["perp"].get("connections") or []
    return feed.get("connections") or []


def run_app(tape, tmp_path: Path, symbols: str) -> tuple[Path, dict]:
    """Play the tape once to ``python app.py --symbols SYMBOLS``; return the DB (after an
    orderly SIGTERM stop) and the last ``/api/health`` seen with every trade in."""
    trades = [ev for ev in tape.events if ev.kind == "trade"]
    last_id: dict[str, int] = {}
    for ev in trades:
        last_id[ev.symbol] = max(last_id.get(ev.symbol, 0), ev.trade_id)
    srv = ReplayServer(tape, port=0, speed=SPEED, loop=False, profile="futures")
    srv.wait_streams = len(last_id)  # the player starts once all 300 are subscribed
    srv.start()
    port, db = free_port(), tmp_path / "m.db"
    log = tmp_path / "app.log"
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--symbols", symbols, "--market", "futures",
         "--stream", "trade", "--feed-url", srv.ws_base + "/market", "--rest-url",
         srv.rest_base, "--streams-per-connection", str(STREAMS_PER_CONNECTION),
         "--db", str(db), "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 150
        h = None
        while True:
            assert proc.poll() is None, f"app exited {proc.returncode}: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"not every trade in after 150 s (replay played {srv.played} of "
                f"{len(tape)}, ended={srv.ended}); last health feed: "
                f"{(h or {}).get('feed')}; log: {log.read_text()[-2000:]}")
            h = health(port)
            if srv.ended and h is not None and h["store"]["pending"] == 0 and all(
                (h["symbols"].get(f"perp:{sym}") or {}).get("last_trade_id") == last
                for sym, last in last_id.items()
            ):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # orderly stop: open bars flushed, store drained
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        srv.stop()
    return db, h


def stored_ids(db: Path) -> dict[str, np.ndarray]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[str, list[int]] = {}
        for market, sym, tid in con.execute(
                "SELECT market, symbol, trade_id FROM trades ORDER BY market, symbol, trade_id"):
            out.setdefault(f"{market}:{sym}", []).append(tid)
        n, n_distinct = con.execute(
            "SELECT count(*), count(DISTINCT market || ':' || symbol || ':' || trade_id) "
            "FROM trades").fetchone()
        assert n == n_distinct, "a trade stored twice"
        unfilled = con.execute("SELECT count(*) FROM gaps WHERE filled_ms IS NULL").fetchone()[0]
        assert unfilled == 0, "gaps left unfilled"
        return {k: np.array(v, np.int64) for k, v in out.items()}
    finally:
        con.close()


def stored_bars(db: Path, symbol: str) -> pd.DataFrame:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return pd.read_sql_query(
            "SELECT ts, open, high, low, close, volume, quote_volume, trades, buy_volume, "
            "first_id, last_id FROM bars_1s WHERE market = 'perp' AND symbol = ? ORDER BY ts",
            con, params=(symbol,))
    finally:
        con.close()


def resampled_bars(df: pd.DataFrame) -> pd.DataFrame:
    """pandas' own 1 s OHLCV of one instrument's trades, ordered by (T, id)."""
    df = df.sort_values(["T", "trade_id"])
    df = df.assign(quote=df.price * df.qty, buy=np.where(df.maker, 0.0, df.qty))
    r = df.set_index(pd.to_datetime(df["T"], unit="ms")).resample("1s")
    out = pd.DataFrame({
        "open": r.price.first(), "high": r.price.max(), "low": r.price.min(),
        "close": r.price.last(), "volume": r.qty.sum(), "quote_volume": r.quote.sum(),
        "trades": r.price.count(), "buy_volume": r.buy.sum(),
        "first_id": r.trade_id.first(), "last_id": r.trade_id.last(),
    })
    out = out[out.trades > 0]
    out.index = (out.index - pd.Timestamp(0)) // pd.Timedelta(1, "ms")
    return out.rename_axis("ts").reset_index()


@pytest.mark.parametrize("symbols", ["top:300", "all"])
def test_300_instruments_over_several_connections_every_trade_stored_once(
        tape, tmp_path, symbols):
    db, h = run_app(tape, tmp_path, symbols)

    universe = h["universe"]  # resolved from the replay's REST, not named anywhere
    assert universe["dynamic"] and universe["instruments"] == N, universe
    conns = connections_of(h["feed"])
    assert len(conns) > 1, f"one connection only: {h['feed']}"
    assert all(0 < c["streams"] <= STREAMS_PER_CONNECTION for c in conns), conns
    assert sum(c["streams"] for c in conns) >= N, conns
    assert all(c["connected"] for c in conns), conns

    df = tape_trades(tape)
    expected = {f"perp:{sym}": np.sort(g.trade_id.to_numpy()) for sym, g in df.groupby("symbol")}
    assert len(expected) == N
    got = stored_ids(db)
    assert set(got) == set(expected), "the store's instruments are the tape's"
    for key, ids in expected.items():
        assert got[key].size == ids.size, f"{key}: {got[key].size} stored, tape {ids.size}"
        assert np.array_equal(got[key], ids), f"{key}: stored ids differ from the tape's"

    counts = df.symbol.value_counts()
    ranked = counts.sort_values(ascending=False, kind="stable").index
    picks = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]  # head, middle, tail
    for sym in picks:
        want = resampled_bars(df[df.symbol == sym])
        have = stored_bars(db, sym)
        assert len(have) == len(want), f"{sym}: {len(have)} bars stored, pandas {len(want)}"
        for col in ("ts", "trades", "first_id", "last_id"):
            assert np.array_equal(have[col].to_numpy(np.int64), want[col].to_numpy(np.int64)), \
                f"{sym} {col}"
        for col in ("open", "high", "low", "close"):
            assert np.array_equal(have[col].to_numpy(), want[col].to_numpy()), f"{sym} {col}"
        for col in ("volume", "quote_volume", "buy_volume"):
            np.testing.assert_allclose(have[col].to_numpy(), want[col].to_numpy(),
                                       rtol=1e-9, atol=1e-12, err_msg=f"{sym} {col}")
