"""Faults a desk meets in a day, each injected for real, with its outcome checked.

Covered elsewhere: one drop + skip + 1,000 garbage frames + 40 s silence
(``test_feed.py``), drops at speed + skips + 429s + the compressed 24 h close with
``--loop`` (``test_backfill.py``), ``kill -9`` and restart (``tests/test_app.py``).
Here: drops every N messages, ``serverShutdown`` through the feed, duplicated ids,
truncated frames, the database locked by another process, and a full disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import orjson

from dashapp.status import feed_badge, feed_card
from ingest.config import parse_config
from ingest.replay import FaultPlan
from ingest.runtime import Runtime
from tests.ingest.feeds.test_backfill import Rig, assert_exactly_once, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_drop_every_n_messages_at_speed_loses_nothing(spot_tape, tmp_path):
    """Every 4,000 events the server closes the connection while its clock runs on:
    each reconnect leaves a gap, back-fill closes every one.

    Looped, like the exchange: a gap is seen when the next trade arrives, so the trades
    missed at the last drop of a tape that then ENDS could never be noticed."""
    rig = Rig(
        spot_tape,
        tmp_path / "m.db",
        speed=150.0,
        loop=True,
        faults=FaultPlan(drop_every=4_000),
    )
    first, last = spot_tape.first_id, spot_tape.last_id

    def first_pass_stored() -> bool:
        return rig.store.flush(5) and all(
            rig.feed.last_ids.get(s, 0) > last[s]
            and not rig.store.missing_ranges(s, first[s], last[s])
            for s in spot_tape.symbols
        )

    try:
        wait_for(first_pass_stored, 90, "the first pass stored, every gap back-filled")
        assert rig.feed.status().reconnects >= rig.server.drops >= 6
        assert rig.backfill.filled > 0 and rig.backfill.status().unrecoverable == ()
        for s in spot_tape.symbols:
            ids = rig.store.trade_ids(s)
            assert len(ids) == len(np.unique(ids)), "no duplicates"
            src = sorted(ev.trade_id for ev in spot_tape.events if ev.symbol == s)
            assert ids[ids <= last[s]].tolist() == src
    finally:
        rig.close()


def test_server_shutdown_reconnects_at_once_without_loss(small_tape, tmp_path, caplog):
    rig = Rig(small_tape, tmp_path / "m.db", faults=FaultPlan(shutdown_after=1_000))
    try:
        wait_for(lambda: rig.feed.status().trades == len(small_tape), 30, "all trades")
        st = rig.feed.status()
        assert st.reconnects == 1 and st.connects == 2
        assert st.gaps == 0 and st.duplicates == 0
        assert_exactly_once(rig.store, small_tape)
        # the announcement is handled by the feed, not by an exception it swallowed
        failed = [r.getMessage() for r in caplog.records if "failed to handle" in r.getMessage()]
        assert not failed, failed
    finally:
        rig.close()


def test_duplicated_ids_are_dropped_and_counted(small_tape, tmp_path):
    rig = Rig(small_tape, tmp_path / "m.db", faults=FaultPlan(duplicate=(1_500, 400)))
    try:
        wait_for(
            lambda: (
                rig.feed.status().trades == len(small_tape)
                and rig.server.duplicates_sent == 400
            ),
            30,
            "all trades",
        )
        st = rig.feed.status()
        assert st.duplicates == 400 and st.gaps == 0
        assert_exactly_once(rig.store, small_tape)
    finally:
        rig.close()


def test_truncated_frames_are_bad_frames_not_trades(small_tape, tmp_path):
    """Garbage includes truncated copies of real frames (every 12th); none may slip
    through as a trade and the stream after them is intact."""
    rig = Rig(small_tape, tmp_path / "m.db", faults=FaultPlan(garbage=(700, 240)))
    try:
        wait_for(lambda: rig.feed.status().trades == len(small_tape), 30, "all trades")
        assert rig.feed.status().bad_frames == 240
        assert_exactly_once(rig.store, small_tape)
    finally:
        rig.close()


LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")   # the write lock; WAL readers still read
print("locked", flush=True)
sys.stdin.read()                  # hold it until the parent closes our stdin
con.execute("ROLLBACK")
"""


def runtime_cfg(db: Path, *extra: str):
    return parse_config(
        [
            "--replay",
            "--market",
            "spot",
            "--replay-speed",
            "0",
            "--replay-once",
            "--db",
            str(db),
            "--port",
            "8999",
            "--rest-url",
            "off",
            *extra,
        ]
    )


def test_database_locked_by_another_process(tmp_path, spot_tape):
    """Another process holds SQLite's write lock: the feed and rings stay live,
    /api/health and the page say the store is not writing, and once the lock goes
    every trade is written exactly once."""
    db = tmp_path / "m.db"
    rt = Runtime(runtime_cfg(db))
    rt.store._busy_timeout_ms = 50  # fail fast instead of 5 s per attempt
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        rt.start()
        wait_for(
            lambda: (
                sum(len(r) for r in rt.ingestor.rings.values()) == len(spot_tape)
                and rt.store.last_error is not None
            ),
            60,
            "rings full, store failing",
        )
        h = rt.health()
        assert h["store"]["writable"] is False and "locked" in h["store"]["last_error"]
        assert h["store"]["pending"] > 0 and h["store"]["failing_since_ms"]
        assert h["feed"]["connected"] and h["feed"]["store"]["writable"] is False
        assert "NOT WRITING" in str(feed_card(h["feed"]))
        assert "STORE NOT WRITING" in str(feed_badge(h["feed"]))
    finally:
        locker.stdin.close()
        locker.wait(10)
    try:
        wait_for(lambda: rt.store.pending == 0 and rt.store.writable, 30, "resumed")
        assert rt.health()["store"]["last_error"] is None
        assert "writing" in str(feed_card(rt.health()["feed"]))
        assert_exactly_once(rt.store, spot_tape)
    finally:
        rt.stop()


FULL_DISK_CHILD = """
import json, resource, signal, sys, time
sys.path.insert(0, sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails, EFBIG
from ingest.config import parse_config
from ingest.runtime import Runtime

cfg = parse_config(["--replay", "--market", "spot", "--replay-speed", "0", "--replay-once", "--db",
                    sys.argv[1], "--port", "8999", "--rest-url", "off"])
rt = Runtime(cfg)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))   # the disk is "full"
rt.start()
total = len(rt.replay.tape)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    rings = sum(len(r) for r in rt.ingestor.rings.values())
    if rings == total and rt.store.last_error is not None:
        break
    time.sleep(0.05)
h = rt.health()
print(json.dumps({"phase": "full", "rings": rings, "total": total,
                  "store": h["store"], "feed_store": h["feed"]["store"]}), flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))          # space is back
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not (rt.store.pending == 0 and rt.store.writable):
    time.sleep(0.05)
print(json.dumps({"phase": "back", "store": rt.health()["store"]}), flush=True)
rt.stop()
"""


def test_full_disk_keeps_ring_live_and_resumes_with_nothing_lost(tmp_path, spot_tape):
    """The DB cannot grow (RLIMIT_FSIZE in a child process, SIGXFSZ ignored, so
    writes fail with EFBIG like on a full disk): ingest keeps every trade in the ring,
    health says the store is not writable and why; when space returns the kept
    batches are written, nothing lost, nothing doubled."""
    db = tmp_path / "m.db"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK_CHILD), str(db), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    full, back = lines
    assert full["rings"] == full["total"] == len(spot_tape), "the ring stayed live"
    assert (
        full["store"]["writable"] is False and full["feed_store"]["writable"] is False
    )
    err = full["store"]["last_error"].lower()
    assert "full" in err or "disk" in err or "i/o" in err, err
    assert full["store"]["pending"] > 0
    assert back["store"]["writable"] and back["store"]["pending"] == 0
    assert back["store"]["last_error"] is None
    from ingest.store.sqlite_trades import SqliteTradeStore

    store = SqliteTradeStore(db, readonly=True)
    try:
        for sym in spot_tape.symbols:
            ids = store.trade_ids(sym)
            src = sorted(ev.trade_id for ev in spot_tape.events if ev.symbol == sym)
            assert len(ids) == len(np.unique(ids)) and ids.tolist() == src
    finally:
        store.close()


def test_replay_cli_serves_rest_and_new_fault_flags(tmp_path):
    """``python -m ingest.replay`` with the REST port, drop-every and max lifetime."""
    import socket
    import urllib.request

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    ws, rest = free(), free()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest.replay",
            "--port",
            str(ws),
            "--rest-port",
            str(rest),
            "--speed",
            "0",
            "--drop-every",
            "1000",
            "--max-lifetime",
            "3600",
            "--duplicate",
            "10",
            "5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"REST http://127.0.0.1:{rest}" in line
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{rest}/api/v3/historicalTrades?symbol=BTCUSDT"
                    "&fromId=0&limit=5",
                    timeout=5,
                ).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert orjson.loads(body) == []  # nothing played yet: no history to serve
    finally:
        proc.terminate()
        proc.wait(10)
