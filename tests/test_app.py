"""The app as a user runs it: ``python app.py`` in a subprocess, checked over HTTP.

* ``--replay --replay-speed 0 --replay-once`` into a fresh DB stores every trade of the
  bundled tape exactly once, and ``/api/health`` says so;
* forced drops and skips, ``kill -9`` mid-stream, then a restart on the same DB
  (against a separate replay process that keeps its place): the rings are refilled
  from the DB and REST back-fill recovers every missed trade: every trade of the tape
  stored exactly once, zero missing, zero duplicates.
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

from ingest.replay.tapes import default_sample_files, load_tape

ROOT = Path(__file__).resolve().parents[1]


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
    return load_tape(default_sample_files("spot"))


def source_ids(tape) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ev in tape.events:
        out.setdefault(ev.symbol, []).append(ev.trade_id)
    return {s: sorted(v) for s, v in out.items()}


def test_replay_full_speed_stores_every_trade_once(tmp_path, tape):
    port, db = free_port(), tmp_path / "m.db"
    proc = start(["app.py", "--replay", "--market", "spot", "--replay-speed", "0", "--replay-once",
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
        assert feed["gaps_filled"] == 0 and h["store"]["writable"]
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


def test_drops_skips_kill9_and_restart_store_every_trade_exactly_once(tmp_path, tape):
    """The exchange (a separate looped replay process, one shared clock) drops the
    connection, skips ids, and we ``kill -9`` the app mid-stream; a restart on the same
    DB back-fills everything missed (in flight at the kill, played while we were down,
    skipped, missed while reconnecting) from the replay's REST endpoints: at the end
    every trade of the tape is stored exactly once, zero missing, zero duplicates."""
    ws_port, rest_port, port, db = free_port(), free_port(), free_port(), tmp_path / "m.db"
    # speed 40 = ~2,100 msgs/s of real trades; looped, so however slow this machine is
    # to restart the app, the gap it left is always followed by more trades.
    replay = start(["-m", "ingest.replay", "--market", "spot", "--port", str(ws_port),
                    "--rest-port", str(rest_port), "--speed", "40", "--loop", "--rate-limit", "0",
                    "--drop-after", "2500", "--skip", "4000", "300"],
                   tmp_path / "replay.log")
    app_args = ["app.py", "--feed-url", f"ws://127.0.0.1:{ws_port}", "--market", "spot",
                "--stream", "trade", "--symbols", "BTCUSDT,ETHUSDT", "--db", str(db),
                "--port", str(port), "--rest-url", f"http://127.0.0.1:{rest_port}"]
    procs = [replay]
    try:
        app = start(app_args, tmp_path / "app1.log")
        procs.append(app)
        h1 = wait_health(port, lambda h: h["store"]["rows"] > 6_000, 90, "6,000 rows", app)
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        assert h1["feed"]["reconnects"] >= 1, "the drop happened before the kill"
        stored_at_kill = sum(len(v) for v in db_ids(db).values())
        assert stored_at_kill > 0
        app = start(app_args, tmp_path / "app2.log")
        procs.append(app)
        h = wait_health(port, lambda h: h["restore"] is not None, 60, "restore", app)
        assert h["restore"]["ring_ticks"] == stored_at_kill, "rings refilled from the DB"
        src = source_ids(tape)
        last = {s: v[-1] for s, v in src.items()}

        def done(h: dict) -> bool:
            return (
                all((h["symbols"][s]["last_trade_id"] or 0) >= last[s] for s in src)
                and h["feed"]["gaps"] == 0
                and h["feed"]["backfill"]["missing"] == 0
                and h["feed"]["gaps_filled"] > 0
                and h["store"]["pending"] == 0
            )

        h = wait_health(port, done, 120, "the tape played and every gap back-filled", app)
        assert h["feed"]["gap_ranges"] == [] and h["store"]["writable"]
        stored = db_ids(db)
        for sym, ids in src.items():
            got = stored.get(sym, [])
            assert len(got) == len(set(got)), f"{sym}: duplicate rows"
            first_pass = [i for i in got if i <= last[sym]]
            missing = sorted(set(ids) - set(first_pass))
            assert missing == [], f"{sym}: {len(missing)} ids missing, first {missing[:5]}"
            assert first_pass == ids, f"{sym}: every trade of the tape, exactly once"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            unfilled = con.execute(
                "SELECT count(*) FROM gaps WHERE filled_ms IS NULL AND last_id <= ?",
                (max(last.values()),),
            ).fetchone()[0]
        finally:
            con.close()
        assert unfilled == 0, "every gap of the tape is marked filled in the store"
        print(f"kill -9: {stored_at_kill} rows at the kill, "
              f"{h['feed']['gaps_filled']} trades back-filled after the restart")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)


# ---------------------------------------------------------------------- exposure
class _FakeServices:
    feed_url = "ws://fake"

    def __init__(self):
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True


class _FakeApp:
    def __init__(self):
        self.run_kwargs = None
        self.server = type("FakeServer", (), {"config": {}})()  # webguard config

    def run(self, **kwargs):
        self.run_kwargs = kwargs


def _run_main(monkeypatch, argv):
    import app as app_module
    import dashapp
    import dashapp.services

    services, fake = _FakeServices(), _FakeApp()
    monkeypatch.setattr(dashapp.services, "build_services", lambda cfg: services)
    monkeypatch.setattr(dashapp, "create_app", lambda s, **kw: fake)
    assert app_module.main(argv) == 0
    return services, fake


def test_binds_loopback_by_default_no_debug_no_reloader(monkeypatch, caplog):
    services, fake = _run_main(monkeypatch, ["--db", "unused.db"])
    kw = fake.run_kwargs
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8050
    assert kw["debug"] is False and kw["use_reloader"] is False
    assert services.started and services.stopped
    assert "reachable from the network" not in caplog.text


def test_other_host_warns_no_authentication(monkeypatch, caplog):
    _services, fake = _run_main(monkeypatch, ["--host", "0.0.0.0", "--db", "unused.db"])
    assert fake.run_kwargs["host"] == "0.0.0.0" and fake.run_kwargs["debug"] is False
    assert "reachable from the network" in caplog.text
    assert "no authentication" in caplog.text


def test_no_debug_flag_exists():
    from ingest.config import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--debug"])


# ---------------------------------------------------------------------- stop, lock
def _db_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM trades").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # schema not created yet


def _wait_rows(db: Path, n: int, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode} before {n} rows"
        if _db_count(db) > n:
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {n} rows in {db}")


@pytest.mark.slow
@pytest.mark.parametrize("entry", [["app.py"], ["-m", "ingest"]], ids=["app", "ingest"])
def test_sigterm_stops_cleanly_flushing_the_last_batch_and_open_bars(tmp_path, entry):
    """``docker stop`` / ``systemctl stop``: SIGTERM must stop like Ctrl-C. The process
    exits 0 and the open 1 s bar of every symbol is in the store: the bucket of the
    last stored trade has its bar, equal to the stored trades."""
    from tests.ingest.test_stall_bars import assert_bars_equal_resample, stored_trades_and_bars

    db = tmp_path / "m.db"
    args = [*entry, "--replay", "--market", "spot", "--replay-speed", "1", "--db", str(db),
            "--rest-url", "off"]
    if entry == ["app.py"]:
        args += ["--port", str(free_port())]
    proc = start(args, tmp_path / "run.log")
    try:
        _wait_rows(db, 300, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "run.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    trades, bars = stored_trades_and_bars(db)
    for sym, t in trades.groupby("symbol"):
        last_bucket = int(t["time_ms"].max()) // 1000 * 1000
        got = bars[(bars["symbol"] == sym) & (bars["ts"] == last_bucket)]
        assert len(got) == 1, f"{sym}: the open bar {last_bucket} was not flushed"
    assert_bars_equal_resample(trades, bars)
    assert "open bars flushed" in (tmp_path / "run.log").read_text()


@pytest.mark.slow
def test_second_writer_on_the_same_db_is_refused_and_told_who_holds_it(tmp_path):
    db = tmp_path / "m.db"
    args = ["-m", "ingest", "--replay", "--replay-speed", "1", "--db", str(db),
            "--rest-url", "off"]
    first = start(args, tmp_path / "first.log")
    try:
        _wait_rows(db, 50, first)
        second = start(args, tmp_path / "second.log")
        try:
            code = second.wait(30)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(10)
        out = (tmp_path / "second.log").read_text()
        assert code != 0, "a second writer ran on the same DB"
        assert "already being written" in out and f"pid {first.pid}" in out, out[-1500:]
        assert first.poll() is None, "the first writer keeps running"
        # after the holder stops, the DB can be written again
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        third = start(args, tmp_path / "third.log")
        try:
            n = _db_count(db)
            _wait_rows(db, n + 20, third)
        finally:
            third.send_signal(signal.SIGTERM)
            third.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
