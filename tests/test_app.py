"""The app as a user runs it: ``python app.py`` in a subprocess, checked over HTTP.

* ``--replay --replay-speed 0 --replay-once`` into a fresh DB stores every trade of the
  bundled tape exactly once, and ``/api/health`` says so;
* ``kill -9`` mid-stream, then a restart on the same DB (against a separate replay
  process that keeps its place): no duplicate rows, the loss is reported as gaps and is
  no larger than one flush window, and the rings are refilled from the DB.
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

import pytest
import requests

from ingest.tapes import default_sample_files, load_tape

ROOT = Path(__file__).resolve().parents[1]
FLUSH_WINDOW_TRADES = 1_000  # the store commits every 1,000 trades or 250 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def health(port: int) -> dict | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).json()
    except requests.RequestException:
        return None


def wait_health(port: int, pred, timeout: float, what: str, proc=None) -> dict:
    deadline = time.monotonic() + timeout
    h = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} waiting for {what}")
        h = health(port)
        if h is not None and pred(h):
            return h
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last health: {h}")


def db_ids(db: Path) -> dict[str, list[int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT symbol, trade_id FROM trades ORDER BY symbol, trade_id")
        out: dict[str, list[int]] = {}
        for sym, tid in rows:
            out.setdefault(sym, []).append(tid)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def tape():
    return load_tape(default_sample_files())


def source_ids(tape) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ev in tape.events:
        out.setdefault(ev.symbol, []).append(ev.trade_id)
    return {s: sorted(v) for s, v in out.items()}


def test_replay_full_speed_stores_every_trade_once(tmp_path, tape):
    port, db = free_port(), tmp_path / "m.db"
    proc = start(["app.py", "--replay", "--replay-speed", "0", "--replay-once",
                  "--db", str(db), "--port", str(port)], tmp_path / "app.log")
    try:
        h = wait_health(
            port,
            lambda h: h["store"]["rows"] == len(tape) and h["store"]["pending"] == 0,
            60, "all trades stored", proc,
        )
        feed = h["feed"]
        assert feed["connected"] and feed["gaps"] == 0 and feed["gap_ranges"] == []
        assert feed["bad_frames"] == 0 and feed["reconnects"] == 0
        src = source_ids(tape)
        for sym, ids in src.items():
            assert h["symbols"][sym]["ticks"] == len(ids)
            assert h["symbols"][sym]["last_trade_id"] == ids[-1]
        assert db_ids(db) == src  # same row count and the same id set, each once
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert r.status_code == 200 and "Pairs desk" in r.text
        bad = requests.get(f"http://127.0.0.1:{port}/api/bars?symbol=BTCUSDT&timeframe=7x")
        assert bad.status_code == 400 and bad.json()["param"] == "timeframe"
    finally:
        proc.terminate()
        proc.wait(15)


def test_kill9_then_restart_loses_at_most_one_flush_window(tmp_path, tape):
    ws_port, port, db = free_port(), free_port(), tmp_path / "m.db"
    # The exchange: a separate replay process that keeps its place while we are down
    # (speed 25 = ~1,300 msgs/s of real trades).
    replay = start(["-m", "ingest.replay", "--port", str(ws_port), "--speed", "25",
                    "--rate-limit", "0"], tmp_path / "replay.log")
    app_args = ["app.py", "--feed-url", f"ws://127.0.0.1:{ws_port}", "--market", "spot",
                "--stream", "trade", "--symbols", "BTCUSDT,ETHUSDT", "--db", str(db),
                "--port", str(port)]
    procs = [replay]
    try:
        app = start(app_args, tmp_path / "app1.log")
        procs.append(app)
        wait_health(port, lambda h: h["store"]["rows"] > 6_000, 60, "6,000 rows", app)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        stored_at_kill = sum(len(v) for v in db_ids(db).values())
        assert stored_at_kill > 0
        app = start(app_args, tmp_path / "app2.log")
        procs.append(app)
        h = wait_health(port, lambda h: h["restore"] is not None, 60, "restore", app)
        assert h["restore"]["ring_ticks"] == stored_at_kill, "rings refilled from the DB"
        src = source_ids(tape)
        last = {s: v[-1] for s, v in src.items()}
        h = wait_health(
            port,
            lambda h: all(h["symbols"][s]["last_trade_id"] == last[s] for s in src)
            and h["store"]["pending"] == 0,
            90, "the end of the tape", app,
        )
        stored = db_ids(db)
        missing_total = 0
        gap_ids = {(g["symbol"], i) for g in h["feed"]["gap_ranges"]
                   for i in range(g["first_id"], g["last_id"] + 1)}
        for sym, ids in src.items():
            got = stored.get(sym, [])
            assert len(got) == len(set(got)), "no duplicate rows"
            missing = set(ids) - set(got)
            missing_total += len(missing)
            # every lost trade is reported as a gap, none is lost silently
            assert {(sym, i) for i in missing} <= gap_ids
        print(f"kill -9: {stored_at_kill} rows at the kill, {missing_total} trades lost")
        assert missing_total <= FLUSH_WINDOW_TRADES
        assert h["feed"]["gaps"] == missing_total
        ring_total = sum(s["ring"] for s in h["symbols"].values())
        assert ring_total == sum(len(v) for v in stored.values())
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
