"""1 s bars under local stalls: closed on the feed's data clock, they stay exact.

The exchange is a separate ``python -m ingest.replay`` process at speed 1 (its clock
runs on while we are stopped, the trades queue in our socket, as on Binance); the app
is ``python app.py`` against it, polled by 40 concurrent API clients, and stopped six
times for 1.5 s with SIGSTOP/SIGCONT. Afterwards every stored 1 s bar must equal a
pandas resample of the stored trades, and every bucket with trades must have its bar.
With bars closed by the local clock, the clock thread ran first after each SIGCONT and
closed buckets whose trades were still queued in the socket (late, missing from bars).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests

from tests.test_app import free_port, start, wait_health

PAUSES = 6
PAUSE_S = 1.5
CLIENTS = 40


def _poll(port: int, stop: threading.Event, counts: list[int], i: int) -> None:
    paths = ("/api/health", "/api/bars?symbol=BTCUSDT&timeframe=1s&limit=300",
             "/api/bars?symbol=ETHUSDT&timeframe=1s&limit=300")
    session = requests.Session()
    k = i
    while not stop.is_set():
        try:
            session.get(f"http://127.0.0.1:{port}{paths[k % len(paths)]}", timeout=5)
            counts[i] += 1
        except requests.RequestException:
            pass
        k += 1


def stored_trades_and_bars(db) -> tuple[pd.DataFrame, pd.DataFrame]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        trades = pd.read_sql_query(
            "SELECT symbol, trade_id, time_ms, price, qty, buyer_is_maker FROM trades "
            "ORDER BY symbol, time_ms, trade_id", con)
        bars = pd.read_sql_query("SELECT * FROM bars_1s ORDER BY symbol, ts", con)
    finally:
        con.close()
    return trades, bars


def resample_1s(trades: pd.DataFrame) -> pd.DataFrame:
    """The oracle: pandas resample of one symbol's stored trades into 1 s bars."""
    df = trades.set_index(pd.to_datetime(trades["time_ms"], unit="ms"))
    df["quote"] = df["price"] * df["qty"]
    df["buy"] = np.where(df["buyer_is_maker"] == 0, df["qty"], 0.0)
    r = df.resample("1s")
    out = pd.DataFrame({
        "open": r["price"].first(), "high": r["price"].max(), "low": r["price"].min(),
        "close": r["price"].last(), "volume": r["qty"].sum(), "quote_volume": r["quote"].sum(),
        "trades": r["price"].count(), "buy_volume": r["buy"].sum(),
        "first_id": r["trade_id"].first(), "last_id": r["trade_id"].last(),
    })
    out = out[out["trades"] > 0]
    out.index = out.index.as_unit("ms").asi8
    out.index.name = "ts"
    return out


def assert_bars_equal_resample(trades: pd.DataFrame, bars: pd.DataFrame) -> int:
    """Every stored bar equals the resample; every bucket up to the last bar has one."""
    checked = 0
    for sym, t in trades.groupby("symbol"):
        want = resample_1s(t)
        got = bars[bars["symbol"] == sym].set_index("ts")
        assert len(got), f"{sym}: no bars stored"
        want = want[want.index <= got.index.max()]
        missing = sorted(set(want.index) - set(got.index))
        assert missing == [], f"{sym}: buckets with trades but no bar: {missing[:5]}"
        got = got.loc[want.index]
        for col in ("open", "high", "low", "close", "trades", "first_id", "last_id"):
            bad = got[col].to_numpy() != want[col].to_numpy()
            assert not bad.any(), (
                f"{sym}: {col} differs in {int(bad.sum())} bars, e.g. bucket "
                f"{want.index[bad][0]}: bar {got[col][bad].iloc[0]} vs trades "
                f"{want[col][bad].iloc[0]} (bar trades {got['trades'][bad].iloc[0]}, "
                f"stored {want['trades'][bad].iloc[0]})"
            )
        for col in ("volume", "quote_volume", "buy_volume"):
            np.testing.assert_allclose(got[col], want[col], rtol=1e-9, err_msg=f"{sym} {col}")
        checked += len(want)
    return checked


@pytest.mark.slow
def test_stalls_and_40_clients_leave_every_stored_bar_equal_to_the_trades(tmp_path):
    ws_port, rest_port, port, db = free_port(), free_port(), free_port(), tmp_path / "m.db"
    replay = start(["-m", "ingest.replay", "--market", "spot", "--port", str(ws_port),
                    "--rest-port", str(rest_port), "--speed", "1", "--rate-limit", "0"],
                   tmp_path / "replay.log")
    app = start(["app.py", "--feed-url", f"ws://127.0.0.1:{ws_port}", "--market", "spot",
                 "--stream", "trade", "--symbols", "BTCUSDT,ETHUSDT", "--db", str(db),
                 "--port", str(port), "--rest-url", f"http://127.0.0.1:{rest_port}"],
                tmp_path / "app.log")
    stop = threading.Event()
    counts = [0] * CLIENTS
    pollers = [threading.Thread(target=_poll, args=(port, stop, counts, i), daemon=True)
               for i in range(CLIENTS)]
    try:
        wait_health(port, lambda h: h["store"]["rows"] > 200, 60, "200 rows", app)
        for p in pollers:
            p.start()
        for _ in range(PAUSES):
            time.sleep(3.0)
            app.send_signal(signal.SIGSTOP)
            time.sleep(PAUSE_S)
            app.send_signal(signal.SIGCONT)
        time.sleep(3.0)
        stop.set()
        for p in pollers:
            p.join(10)
        h = wait_health(port, lambda h: True, 20, "health after the stalls", app)
        app.send_signal(signal.SIGTERM)
        app.wait(30)
        trades, bars = stored_trades_and_bars(db)
        assert sum(counts) > CLIENTS, "the clients were polling"
        assert len(trades) > 1_000
        checked = assert_bars_equal_resample(trades, bars)
        assert checked > 60
        print(f"{len(trades)} trades, {checked} bars checked, {sum(counts)} API calls, "
              f"late trades {h['feed'].get('late_trades')}")
    finally:
        stop.set()
        for proc in (app, replay):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                proc.wait(15)
