"""Ingest benchmark: sustained msgs/s end to end and receive-to-ring latency.

``python -m benchmarks.ingest [--seconds 60] [--latency-seconds 30] [--quick]``

Scenarios, each against the replay server running in its OWN process
(``python -m ingest.replay``), with the ingest side in this process wired exactly as
the app wires it (:class:`ingest.runtime.Runtime`: SqliteTradeStore on a temp DB, MarketEngine,
Ingestor with its bar clock, TradeFeed):

1. **throughput**: replay ``--speed 0 --loop`` (as fast as the client reads; looped
   passes shift ids and times, so the stream is endless and contiguous). After a
   warm-up, the feed's message counter and the store's committed-row counter are
   sampled for ``--seconds``. Then the feed is stopped, the store flushed, and loss is
   checked exactly: the ids the ring received (every accepted trade) must equal the ids
   in SQLite, each once, contiguous per symbol, with 0 feed gaps and 0 duplicates.
   This run is NOT instrumented (production code paths only).
2. **latency alone**: replay paced to ~2,000 msgs/s (speed computed from the tape's
   own pacing), ``--latency-seconds`` after a warm-up.
3. **latency with Dash**: the same, while the full Dash app (``dashapp.create_app``
   on the same Runtime, served by werkzeug's threaded server in THIS process, so it
   shares the GIL with the feed) is polled by a separate client process the way a
   browser tab on the markets page does: the markets interval callback every 500 ms,
   the navbar badge callback every 1,000 ms (POST /_dash-update-component, payloads
   built from the app's callback map and page layout by
   :class:`benchmarks._dash_client.DashPage`), plus GET /api/health every 500 ms.
   Any failed request fails the run (``meets_targets.dash_client`` false, exit 1): a
   "with Dash" latency measured while the page answers 500s means nothing.

Receive-to-ring latency (the figure with the 5 ms target) is measured without
touching production code: a TradeFeed subclass stamps ``perf_counter_ns()`` on entry
to ``_handle_message`` (the moment websocket-client hands the frame to ``on_message``)
and each ring's ``append`` is wrapped (instance attribute) to stamp its return; the
difference goes into preallocated numpy arrays through memoryviews (~0.3 us a message).

That figure cannot see time a frame waits in the kernel socket buffer while another
thread holds the GIL (the handler has not started yet). So during both latency runs
a **floor client** (a bare websocket-client in ANOTHER process, no parsing, no
pipeline) subscribes to the same replay, which sends every event to both clients back
to back. perf_counter_ns is CLOCK_MONOTONIC on Linux, so the two processes' stamps
compare directly, and per event:

* ``floor->ring`` = our ring-append time - the floor's receive time: everything this
  process adds (socket queueing behind a busy feed thread or another thread holding
  the GIL, websocket-client framing, the handler). Can be slightly negative.
* ``sched->recv`` (floor) = the floor's receive time - the replay's schedule for the
  event (reconstructed from the tape as its player computes it: capped recorded gaps
  / speed, +1/speed per loop pass), minus the smallest such value: the replay
  server's own lateness (a Python asyncio process framing the tape's bursts) + wire.
* ``sched->ring`` = the same for our ring time (same baseline): end to end.

GC pauses of this process inside the window are counted via ``gc.callbacks``.

4. **trades + book** (issue #17): the raw captures' trades AND ``@bookTicker`` frames
   (USD-M BTCUSDT + ETHUSDT, ``sample_data/hftbacktest-rawcapture-trade-book_um_*``;
   ~5 book updates per trade) replayed ``--speed 0 --loop`` to the futures feed
   subscribed to both streams, wired as the app wires it (book on). Zero loss is
   checked at both ends: every book update the replay sent reached the feed (per
   symbol the received ``u`` are consecutive positions of the looped tape's ``u``
   sequence) and every one the feed accepted is counted in a stored 1 s book bar
   (``sum(updates)`` of ``book_bars`` after the open bars are flushed); trades as in
   scenario 1. Latency in the same run: trades handler entry -> ring append returned,
   book updates handler entry -> ``Ingestor.on_book`` returned (engine bar + store
   enqueue). A thin wrapper on ``Ingestor.on_book`` records each update's ``u`` and
   stamp (~0.3 us).

Output: readable tables (one row per scenario), then as the LAST stdout line one JSON object
with every figure. Nothing is asserted: targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
TARGET_MSGS_PER_S = 10_000
TARGET_P99_MS = 5.0
LATENCY_RATE = 2_000  # msgs/s for the latency scenarios
MAX_GAP_NS = 5_000_000_000  # ingest.replay.server.MAX_GAP_S: recorded pauses are capped
DASH_POLL_S = 0.5  # dcc.Interval of the markets page
BADGE_POLL_S = 1.0  # dcc.Interval of the navbar badge (every page)

log = logging.getLogger("benchmarks.ingest")


# ---------------------------------------------------------------------------------
# Replay server subprocess


class ReplayProcess:
    """``python -m ingest.replay`` in its own process; ``ws_base`` from its first line."""

    def __init__(self, speed: float, logdir: Path, name: str,
                 files: tuple[Path, ...] = (), profile: str = "spot") -> None:
        self.log_path = logdir / f"replay-{name}.log"
        self._log = self.log_path.open("w")
        args = [
            sys.executable, "-m", "ingest.replay", "--port", "0", "--speed", str(speed),
            "--loop", "--profile", profile, "--rate-limit", "0", "--ping-interval", "0",
            "--log-level", "WARNING", *(str(f) for f in files),
        ]
        # one market: the files' own, or (no files) only that market's bundled tapes
        # (the bare default plays spot AND perp, and a spot client skips the perp half)
        args += ["--market", "perp" if profile == "futures" else "spot"]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.ws_base = self._read_base(timeout=60)

    def _read_base(self, timeout: float) -> str:
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(
            target=lambda: lines.put(self.proc.stdout.readline()), daemon=True
        ).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"replay server printed nothing in {timeout}s") from None
        if not line.startswith("ws://"):
            raise RuntimeError(
                f"replay server failed: {line!r}; log: {self.log_path.read_text()[-2000:]}"
            )
        return line.split()[0]

    def stop(self) -> None:
        _end_process(self.proc)
        self._log.close()


def _end_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


# ---------------------------------------------------------------------------------
# The ingest side, as app.py builds it


def _config(ws_base: str, db: Path, market: str = "spot"):
    from ingest.config import Config

    return Config(
        symbols=SYMBOLS, market=market, stream="trade",
        symbols_given=True, market_given=True, stream_given=True,
        feed_url=ws_base, db=str(db), replay=None, ingest=True,
    )


@contextlib.contextmanager
def running_runtime(ws_base: str, db: Path, feed_cls=None, before_start=None,
                    market: str = "spot"):
    """A started :class:`ingest.runtime.Runtime` (optionally with a TradeFeed subclass)."""
    import ingest.runtime as rt

    runtime = rt.Runtime(_config(ws_base, db, market))
    try:
        if before_start is not None:
            before_start(runtime)
        original = rt.TradeFeed
        if feed_cls is not None:
            rt.TradeFeed = feed_cls  # only the class Runtime.start() instantiates
        try:
            runtime.start()
        finally:
            rt.TradeFeed = original
        yield runtime
    finally:
        runtime.stop()


def _wait_connected(runtime, timeout: float = 20.0, market: str = "spot") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed = runtime.feeds.get(market)
        if feed is not None and feed.status().connected:
            return
        time.sleep(0.02)
    raise RuntimeError(f"feed did not connect within {timeout}s: {runtime.feeds}")


# ---------------------------------------------------------------------------------
# Scenario 1: throughput and zero loss


@dataclass
class ThroughputResult:
    seconds: float
    warmup_s: float
    msgs_per_s: float  # frames received by the feed, steady window
    stored_rows_per_s: float  # rows committed to SQLite, steady window
    min_1s_msgs_per_s: float
    max_1s_msgs_per_s: float
    messages: int
    trades: int
    rows_stored: int
    loss: int
    duplicates: int
    gaps: int
    bad_frames: int
    reconnects: int
    pending_max: int
    commits: int
    bar_closes: int
    bars_stored: int
    checks: dict = field(default_factory=dict)


def run_throughput(seconds: float, warmup: float, tmp: Path) -> ThroughputResult:
    db = tmp / "throughput.db"
    replay = ReplayProcess(0, tmp, "throughput")
    try:
        with running_runtime(replay.ws_base, db) as runtime:
            feed, store = runtime.feeds["spot"], runtime.store
            _wait_connected(runtime)
            pending_max = 0
            t_end_warm = time.monotonic() + warmup
            while time.monotonic() < t_end_warm:
                time.sleep(0.1)
            samples = []  # (t, messages, rows_written)
            t0 = time.monotonic()
            t_stop = t0 + seconds
            next_sample = t0
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now, feed.stats.messages, store.rows_written))
                    next_sample += 1.0
                pending_max = max(pending_max, store.pending)
                if now >= t_stop:
                    break
                time.sleep(min(0.05, max(0.0, min(next_sample, t_stop) - now)))
            samples.append((time.monotonic(), feed.stats.messages, store.rows_written))
            feed.stop()
            if not store.flush(timeout=60):
                raise RuntimeError("store did not flush within 60 s")
            checks = verify_store(runtime, db)
            stats = feed.stats
            bar_closes = runtime.engine.bar_closes
            result_store = (store.rows_written, store.commits, store.duplicates_ignored)
    finally:
        replay.stop()
    t = np.array([s[0] for s in samples])
    m = np.array([s[1] for s in samples], dtype=np.float64)
    r = np.array([s[2] for s in samples], dtype=np.float64)
    span = t[-1] - t[0]
    per_s = np.diff(m[:-1]) / np.diff(t[:-1]) if len(t) > 2 else np.diff(m) / np.diff(t)
    rows_written, commits, store_dups = result_store
    return ThroughputResult(
        seconds=round(span, 2),
        warmup_s=warmup,
        msgs_per_s=(m[-1] - m[0]) / span,
        stored_rows_per_s=(r[-1] - r[0]) / span,
        min_1s_msgs_per_s=float(per_s.min()),
        max_1s_msgs_per_s=float(per_s.max()),
        messages=stats.messages,
        trades=stats.trades,
        rows_stored=checks["rows_in_db"],
        loss=checks["loss"],
        duplicates=stats.duplicates + store_dups + checks["duplicate_rows"],
        gaps=stats.gaps,
        bad_frames=stats.bad_frames,
        reconnects=stats.reconnects,
        pending_max=pending_max,
        commits=commits,
        bar_closes=bar_closes,
        bars_stored=checks["bars_in_db"],
        checks=checks,
    )


def verify_store(runtime, db: Path, market: str = "spot") -> dict:
    """Compare every id the rings received with what SQLite holds, per symbol.

    The ring gets every trade the feed accepted (Ingestor.on_trade appends first), so
    its ids are "what the feed received". Exact comparison while the ring has not
    wrapped (it holds 2**21 ticks per symbol); otherwise count/min/max are compared.
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out: dict = {"symbols": {}, "loss": 0, "duplicate_rows": 0}
    try:
        total = 0
        for sym, ring in runtime.ingestor.rings.items():
            received = ring.seq
            n_db, lo, hi, n_distinct = con.execute(
                "SELECT count(*), min(trade_id), max(trade_id), count(DISTINCT trade_id) "
                "FROM trades WHERE symbol = ? AND market = ?",
                (sym, market),
            ).fetchone()
            info = {"received": received, "in_db": n_db, "first": lo, "last": hi}
            if received <= ring.capacity:
                ids = ring.since(0).trade_id
                stored = np.fromiter(
                    (row[0] for row in con.execute(
                        "SELECT trade_id FROM trades WHERE symbol = ? AND market = ? "
                        "ORDER BY trade_id",
                        (sym, market),
                    )),
                    dtype=np.int64,
                    count=n_db,
                )
                info["exact_compare"] = True
                info["ids_equal"] = bool(np.array_equal(ids, stored))
                info["received_contiguous"] = bool(len(ids) < 2 or np.all(np.diff(ids) == 1))
                missing = np.setdiff1d(ids, stored, assume_unique=True).size
            else:
                info["exact_compare"] = False
                last = runtime.feeds[market].last_ids.get(sym)
                info["ids_equal"] = bool(n_db == received and hi == last)
                info["received_contiguous"] = runtime.feeds[market].stats.gaps == 0
                missing = max(0, received - n_db)
            info["db_contiguous"] = bool(n_db == 0 or hi - lo + 1 == n_db)
            out["duplicate_rows"] += n_db - n_distinct  # impossible with the PK; checked
            out["loss"] += int(missing)
            out["symbols"][sym] = info
            total += n_db
        out["rows_in_db"] = total
        out["bars_in_db"] = con.execute("SELECT count(*) FROM bars_1s").fetchone()[0]
        out["integrity"] = con.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        con.close()
    out["loss"] += runtime.feeds[market].stats.gaps  # ids lost between the replay and the feed
    return out

# ---------------------------------------------------------------------------------
# Scenario 4: trades + top of book (issue #17)

BOOK_FILES = tuple(
    ROOT / "sample_data" / f"hftbacktest-rawcapture-trade-book_um_{sym}_20240808_2354-2356.gz"
    for sym in SYMBOLS
)
TARGET_BOOK_PER_S = 20_000


class BookProbe:
    """``Ingestor.on_book`` wrapped (instance attribute, before the feed is built):
    per update its symbol, ``u`` and handler-entry -> return latency, preallocated."""

    def __init__(self, capacity: int, lat: LatencyProbe) -> None:
        self.cap = capacity
        self.u = np.zeros(capacity, np.int64)
        self.sym = np.zeros(capacity, np.int8)
        self.lat = np.zeros(capacity, np.int64)
        self.done = np.zeros(capacity, np.int64)
        self.n = 0
        self.overflow = 0
        self._entry = lat  # its t0: the handler entry of the frame being handled

    def wrap(self, runtime) -> None:
        on_book = runtime.ingestor.on_book
        probe, now, entry = self, time.perf_counter_ns, self._entry
        codes = {sym: k for k, sym in enumerate(SYMBOLS)}
        mv_u, mv_sym = memoryview(self.u), memoryview(self.sym)
        mv_lat, mv_done = memoryview(self.lat), memoryview(self.done)
        cap = self.cap

        def probed_on_book(b):
            on_book(b)
            t = now()
            i = probe.n
            if i < cap:
                mv_u[i] = b.update_id
                mv_sym[i] = codes.get(b.symbol, -1)
                mv_lat[i] = t - entry.t0
                mv_done[i] = t
                probe.n = i + 1
            else:
                probe.overflow += 1

        runtime.ingestor.on_book = probed_on_book


def tape_book_ids() -> dict[str, np.ndarray]:
    """Per symbol the book update ids ``u`` of the tape, in play order (the replay's)."""
    from ingest.replay.tapes import load_tape

    tape = load_tape(list(BOOK_FILES), default_market="perp")
    out: dict[str, list[int]] = {sym: [] for sym in SYMBOLS}
    for ev in tape.events:
        if ev.kind == "bookTicker":
            out[ev.symbol].append(ev.trade_id)
    return {sym: np.array(ids, np.int64) for sym, ids in out.items()}


def book_positions(received: np.ndarray, tape_u: np.ndarray) -> np.ndarray:
    """Each received ``u`` as its position in the endless looped tape (pass k moves u
    by k x (last - first + 1), ``ingest/replay/loop.py``); -1 where it is no tape id."""
    span = int(tape_u[-1] - tape_u[0] + 1)
    k = (received - tape_u[0]) // span
    base = received - k * span
    idx = np.clip(np.searchsorted(tape_u, base), 0, len(tape_u) - 1)
    return np.where(tape_u[idx] == base, k * len(tape_u) + idx, -1)


def run_trades_book(seconds: float, warmup: float, tmp: Path) -> dict:
    db = tmp / "trades-book.db"
    expected = tape_book_ids()
    cap = int(60_000 * (seconds + warmup + 10))
    lat = LatencyProbe(cap // 20)
    book = BookProbe(cap, lat)
    replay = ReplayProcess(0, tmp, "trades-book", files=BOOK_FILES, profile="futures")

    def before_start(runtime) -> None:
        lat.wrap_rings(runtime)
        book.wrap(runtime)

    try:
        with running_runtime(replay.ws_base, db, feed_cls=lat.feed_class(),
                             before_start=before_start, market="perp") as runtime:
            feed, store = runtime.feeds["perp"], runtime.store
            _wait_connected(runtime, market="perp")
            time.sleep(warmup)
            samples = []  # (t, book updates, trades, messages)
            t0 = time.monotonic()
            while True:
                now = time.monotonic()
                st = feed.stats
                samples.append((now, st.book_updates, st.trades, st.messages))
                if now - t0 >= seconds:
                    break
                time.sleep(1.0)
            t_end_ns = time.perf_counter_ns()
            feed.stop()
            runtime.ingestor.flush_open_bars()
            if not store.flush(timeout=60):
                raise RuntimeError("store did not flush within 60 s")
            checks = verify_store(runtime, db, "perp")
            stats = feed.status()
            taken = runtime.ingestor.book_updates
            stored_updates = {
                sym: int(store.read_book_bars(sym)["updates"].sum()) for sym in SYMBOLS}
    finally:
        replay.stop()
    t = np.array([x[0] for x in samples])
    b = np.array([x[1] for x in samples], np.float64)
    tr = np.array([x[2] for x in samples], np.float64)
    msg = np.array([x[3] for x in samples], np.float64)
    span = t[-1] - t[0]
    per_s = np.diff(b) / np.diff(t) if len(t) > 1 else np.zeros(1)
    n = book.n
    sym_codes = book.sym[:n]
    book_check = {}
    lost_book = 0
    for code, sym in enumerate(SYMBOLS):
        got = book.u[:n][sym_codes == code]
        pos = book_positions(got, expected[sym])
        consecutive = bool(len(pos) and (pos >= 0).all() and (np.diff(pos) == 1).all())
        missing = int(pos[-1] - pos[0] + 1 - len(pos)) if len(pos) else 0
        lost_book += max(missing, 0) + (len(got) - stored_updates[sym])
        book_check[sym] = {"received": int(len(got)), "stored_updates": stored_updates[sym],
                           "consecutive": consecutive, "missing_in_sequence": missing}
    in_window = book.done[:n] <= t_end_ns
    return {
        "scenario": "trades + book",
        "seconds": round(float(span), 2),
        "warmup_s": warmup,
        "book_per_s": round(float((b[-1] - b[0]) / span), 1),
        "trades_per_s": round(float((tr[-1] - tr[0]) / span), 1),
        "msgs_per_s": round(float((msg[-1] - msg[0]) / span), 1),
        "min_1s_book_per_s": round(float(per_s.min()), 1),
        "book_updates": int(stats.book_updates),
        "book_taken_by_ingestor": int(taken),
        "trades": int(stats.trades),
        "lost_trades": int(checks["loss"]),
        "lost_book_updates": int(lost_book + (stats.book_updates - taken)),
        "bad_frames": int(stats.bad_frames),
        "book_rejected": int(stats.book_rejected),
        "reconnects": int(stats.reconnects),
        "book_checks": book_check,
        "trade_checks": checks,
        "receive_to_ring_ms": _pct_ms(lat.lat[: lat.n]),
        "receive_to_book_ms": _pct_ms(book.lat[:n][in_window]),
        "probe_overflow": lat.overflow + book.overflow,
    }


def print_book_table(r: dict) -> None:
    print()
    print(f"Trades + book (raw captures um BTCUSDT+ETHUSDT, replay --speed 0 --loop; "
          f"{r['seconds']:.0f} s steady after {r['warmup_s']:.0f} s warm-up)")
    _table(
        ("book/s", "min 1s", "trades/s", "msgs/s", "lost trades", "lost book", "bad",
         "ring p50", "p99", "book p50", "p99", "p99.9"),
        [(_fmt(r["book_per_s"], 0), _fmt(r["min_1s_book_per_s"], 0),
          _fmt(r["trades_per_s"], 0), _fmt(r["msgs_per_s"], 0), _fmt(r["lost_trades"]),
          _fmt(r["lost_book_updates"]), _fmt(r["bad_frames"]),
          _fmt(r["receive_to_ring_ms"]["p50"], 3), _fmt(r["receive_to_ring_ms"]["p99"], 3),
          _fmt(r["receive_to_book_ms"]["p50"], 3), _fmt(r["receive_to_book_ms"]["p99"], 3),
          _fmt(r["receive_to_book_ms"]["p99_9"], 3))],
    )
    print("  ring = trade handler entry -> TickRing.append returned; book = book handler "
          "entry -> Ingestor.on_book returned (ms)")


def book_targets(r: dict) -> dict:
    zero = (r["lost_trades"] == 0 and r["lost_book_updates"] == 0
            and all(c["consecutive"] for c in r["book_checks"].values())
            and all(s["ids_equal"] and s["db_contiguous"]
                    for s in r["trade_checks"]["symbols"].values()))
    return {"book_per_s": bool(r["book_per_s"] >= TARGET_BOOK_PER_S),
            "book_zero_loss": bool(zero)}


# ---------------------------------------------------------------------------------
# Scenarios 2 and 3: latency at ~2,000 msgs/s


@dataclass(frozen=True)
class Pacing:
    """The replay player's schedule for the sample tape (see ReplayServer._run_player)."""

    offsets_s1: np.ndarray  # scheduled send time of tape event i at speed 1, seconds
    pass_s1: float  # one loop pass at speed 1 (last offset + the 1/speed loop step)
    count: int
    first_id: dict[str, int]
    id_span: dict[str, int]
    index_of: dict[str, np.ndarray]  # symbol -> tape index by (trade_id - first_id)

    def speed_for(self, rate: float) -> float:
        return rate * self.pass_s1 / self.count

    def scheduled_ns(self, sym_codes: np.ndarray, tids: np.ndarray, speed: float) -> np.ndarray:
        out = np.empty(len(tids), np.float64)
        for code, sym in enumerate(SYMBOLS):
            sel = sym_codes == code
            rel = tids[sel] - self.first_id[sym]
            passes = rel // self.id_span[sym]
            idx = self.index_of[sym][rel - passes * self.id_span[sym]]
            out[sel] = (self.offsets_s1[idx] + passes * self.pass_s1) / speed * 1e9
        return out


def tape_pacing() -> Pacing:
    from ingest.replay.tapes import default_sample_files, load_tape

    tape = load_tape(default_sample_files("spot"))
    if set(tape.symbols) != set(SYMBOLS) or any(tape.missing_ids.values()):
        raise RuntimeError(f"unexpected sample tape: {tape.symbols} {tape.missing_ids}")
    offsets = np.empty(len(tape), np.float64)
    acc = 0  # integer ns, as the player sums capped gaps (it divides per gap)
    prev = tape.events[0].recv_ns
    for i, ev in enumerate(tape.events):
        if ev.recv_ns > prev:
            acc += min(ev.recv_ns - prev, MAX_GAP_NS)
            prev = ev.recv_ns
        offsets[i] = acc / 1e9
    first = dict(tape.first_id)
    span = {s: tape.last_id[s] - tape.first_id[s] + 1 for s in tape.symbols}
    index_of = {s: np.full(span[s], -1, np.int64) for s in tape.symbols}
    for i, ev in enumerate(tape.events):
        index_of[ev.symbol][ev.trade_id - first[ev.symbol]] = i
    return Pacing(offsets, offsets[-1] + 1.0, len(tape), first, span, index_of)


class LatencyProbe:
    """Per-message stamps in preallocated arrays, written by the feed thread only."""

    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.lat = np.zeros(capacity, np.int64)  # ring append returned - handler entry
        self.done = np.zeros(capacity, np.int64)  # perf_counter_ns at ring append return
        self.tid = np.zeros(capacity, np.int64)
        self.sym = np.zeros(capacity, np.int8)
        self.n = 0
        self.overflow = 0
        self.t0 = 0

    def feed_class(self):
        from ingest.feeds.client import TradeFeed

        probe = self
        now = time.perf_counter_ns
        handle = TradeFeed._handle_message

        class ProbedTradeFeed(TradeFeed):
            def _handle_message(self, ws, raw):  # noqa: D102
                probe.t0 = now()
                handle(self, ws, raw)

        return ProbedTradeFeed

    def wrap_rings(self, runtime) -> None:
        for code, sym in enumerate(SYMBOLS):
            ring = runtime.ingestor.rings[sym]
            ring.append = self._wrapped(ring.append, code)

    def _wrapped(self, append, code: int):
        probe = self
        now = time.perf_counter_ns
        mv_lat, mv_done = memoryview(self.lat), memoryview(self.done)
        mv_tid, mv_sym = memoryview(self.tid), memoryview(self.sym)
        cap = self.cap

        def probed_append(time_ms, trade_id, price, qty, buyer_is_maker):
            seq = append(time_ms, trade_id, price, qty, buyer_is_maker)
            t = now()
            i = probe.n
            if i < cap:
                mv_lat[i] = t - probe.t0
                mv_done[i] = t
                mv_tid[i] = trade_id
                mv_sym[i] = code
                probe.n = i + 1
            else:
                probe.overflow += 1
            return seq

        return probed_append


def _pct_ms(values_ns: np.ndarray, signed: bool = False) -> dict:
    if values_ns.size == 0:
        return {"p50": None, "p90": None, "p99": None, "p99_9": None, "max": None}
    q = np.percentile(values_ns, [50, 90, 99, 99.9]) / 1e6
    extra = {"min": round(float(values_ns.min()) / 1e6, 3)} if signed else {}
    return {
        **extra,
        "p50": round(float(q[0]), 3),
        "p90": round(float(q[1]), 3),
        "p99": round(float(q[2]), 3),
        "p99_9": round(float(q[3]), 3),
        "max": round(float(values_ns.max()) / 1e6, 3),
    }


def run_latency(
    seconds: float, warmup: float, tmp: Path, pacing: Pacing, speed: float, with_dash: bool
) -> dict:
    name = "dash" if with_dash else "alone"
    db = tmp / f"latency-{name}.db"
    probe = LatencyProbe(int(LATENCY_RATE * (seconds + warmup) * 3) + 200_000)
    replay = ReplayProcess(speed, tmp, name)
    http = client = floor = None
    client_summary: dict | None = None
    gc_pauses: list[tuple[int, int, int]] = []  # (generation, start ns, duration ns)

    gc_start = [0]  # start of the running collection (ns); the callback's only state

    def on_gc(phase: str, info: dict) -> None:
        _start = gc_start
        if phase == "start":
            _start[0] = time.perf_counter_ns()
        else:
            gc_pauses.append((info["generation"], _start[0], time.perf_counter_ns() - _start[0]))

    def before_start(runtime) -> None:
        # The app and its client are up before the feed connects (the replay clock
        # starts then), so both latency runs play the same stretch of the tape.
        nonlocal http, client
        probe.wrap_rings(runtime)
        if with_dash:
            http = DashServer(runtime)
            client = start_dash_client(http.url, tmp)

    gc.callbacks.append(on_gc)
    try:
        with running_runtime(
            replay.ws_base, db, feed_cls=probe.feed_class(), before_start=before_start
        ) as runtime:
            _wait_connected(runtime)
            # the same streams on a URL of their own (the app subscribes by message)
            floor = FloorClient(runtime.feeds["spot"].stream_urls()[0], tmp / f"floor-{name}")
            time.sleep(warmup)
            t_start_ns = time.perf_counter_ns()
            m0 = runtime.feeds["spot"].stats.messages
            time.sleep(seconds)
            t_end_ns = time.perf_counter_ns()
            m1 = runtime.feeds["spot"].stats.messages
            if client is not None:
                client_summary = stop_dash_client(client)
                client = None
            floor_cols = floor.collect()
            floor = None
            feed_stats = runtime.feeds["spot"].status()
            n = probe.n
    finally:
        gc.callbacks.remove(on_gc)
        for proc in (client, floor.proc if floor is not None else None):
            _end_process(proc)
        if http is not None:
            http.stop()
        replay.stop()

    done = probe.done[:n]
    sym, tid = probe.sym[:n], probe.tid[:n]
    window = (done >= t_start_ns) & (done < t_end_ns)
    # One clock for both processes (perf_counter_ns is CLOCK_MONOTONIC on Linux) and
    # one baseline: the floor client's smallest delay after the replay's schedule.
    f_sym, f_tid, f_done = floor_cols
    f_excess = f_done - pacing.scheduled_ns(f_sym, f_tid, speed)
    base = f_excess.min()
    excess = done - pacing.scheduled_ns(sym, tid, speed) - base
    f_excess -= base
    # Per event: ring time in this process - receive time in the floor process.
    key = sym.astype(np.int64) << 56 | tid
    f_key = f_sym.astype(np.int64) << 56 | f_tid
    order = np.argsort(f_key)
    pos = np.clip(np.searchsorted(f_key[order], key), 0, len(f_key) - 1)
    matched = f_key[order][pos] == key
    wire = (done - f_done[order][pos])[window & matched]
    f_window = (f_done >= t_start_ns) & (f_done < t_end_ns)
    span_s = (t_end_ns - t_start_ns) / 1e9
    per_s = np.bincount(((done[window] - t_start_ns) // 1_000_000_000).astype(np.int64))
    pauses = [(g, d) for g, s, d in gc_pauses if t_start_ns <= s < t_end_ns]
    out = {
        "scenario": f"latency {name}",
        "seconds": round(span_s, 2),
        "msgs_per_s": round(int(window.sum()) / span_s, 1),
        "frames_per_s": round((m1 - m0) / span_s, 1),
        "max_1s_msgs": int(per_s.max()) if per_s.size else 0,
        "samples": int(window.sum()),
        "receive_to_ring_ms": _pct_ms(probe.lat[:n][window]),
        "sched_to_ring_ms": _pct_ms(excess[window]),
        "floor_sched_to_recv_ms": _pct_ms(f_excess[f_window]),
        "floor_recv_to_ring_ms": _pct_ms(wire, signed=True),
        "floor_matched": int((window & matched).sum()),
        "gc_in_window": {
            "collections": len(pauses),
            "gen2": sum(1 for g, _ in pauses if g == 2),
            "max_ms": round(max((d for _, d in pauses), default=0) / 1e6, 3),
        },
        "gaps": feed_stats.gaps,
        "duplicates": feed_stats.duplicates,
        "probe_overflow": probe.overflow,
    }
    if with_dash:
        out["dash_client"] = client_summary
    return out


class FloorClient:
    """A bare websocket-client in ANOTHER process on the same stream (no parsing, no
    pipeline, no other threads): when each frame reached a client that does nothing.

    The replay sends every event to both subscribers back to back, so per event the
    floor's receive time is when the frame was on the wire for us too; ring time minus
    it is the delay our process adds (socket queueing, GIL waits, handler).
    """

    def __init__(self, url: str, out: Path) -> None:
        self.out = out.with_suffix(".npz")
        self.log = out.with_suffix(".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ingest", "--floor-client", url,
             "--floor-out", str(self.out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" after the first frame
        if line.strip() != "ready":
            _end_process(self.proc)
            raise RuntimeError(f"floor client failed: {line!r} {self.log.read_text()[-2000:]}")

    def collect(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"floor client exited {self.proc.returncode}: "
                               f"{self.log.read_text()[-2000:]}")
        with np.load(self.out) as z:
            return z["sym"], z["tid"], z["done"]


def floor_client_main(url: str, out: str) -> int:
    import orjson
    import websocket

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cap = 5_000_000
    stamps = np.zeros(cap, np.int64)
    mv = memoryview(stamps)
    frames: list = []
    now = time.perf_counter_ns
    append = frames.append
    first = threading.Event()

    def on_message(_ws, raw) -> None:
        i = len(frames)
        if i < cap:
            mv[i] = now()
            append(raw)
            if i == 0:
                first.set()

    ws = websocket.WebSocketApp(url, on_message=on_message)
    thread = threading.Thread(
        target=lambda: ws.run_forever(skip_utf8_validation=True, ping_interval=0),
        name="floor-client", daemon=True,
    )
    thread.start()
    if not first.wait(30):
        print("no frame in 30 s", flush=True)
        return 1
    print("ready", flush=True)
    stop.wait()
    ws.close()
    thread.join(5)
    n = len(frames)
    data = [orjson.loads(f)["data"] for f in frames[:n]]
    np.savez(
        out,
        sym=np.array([SYMBOLS.index(d["s"]) for d in data], np.int8),
        tid=np.array([d["t"] for d in data], np.int64),
        done=stamps[:n],
    )
    print("saved", flush=True)
    return 0


# ---------------------------------------------------------------------------------
# The Dash app in this process, and a client process polling it like a browser tab


class DashServer:
    """``dashapp.create_app(LiveMarketData(runtime))`` on werkzeug's threaded server (what app.run uses)."""

    def __init__(self, runtime) -> None:
        from werkzeug.serving import make_server

        from dashapp import create_app
        from dashapp.facade import LiveMarketData

        self.app = create_app(LiveMarketData(runtime))
        self.server = make_server("127.0.0.1", 0, self.app.server, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="dash-http", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


def start_dash_client(url: str, tmp: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ingest", "--dash-client", url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=(tmp / "dash-client.log").open("w"),
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" once the page is loaded and polling starts
    if line.strip() != "ready":
        _end_process(proc)
        raise RuntimeError(
            f"dash client failed: {line!r} {(tmp / 'dash-client.log').read_text()[-2000:]}"
        )
    return proc


def stop_dash_client(proc: subprocess.Popen) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def dash_client_main(url: str) -> int:
    """Poll the app like a browser tab on ``/`` until SIGTERM; print a JSON summary.

    Requests are built from the app's own callback map and page layout
    (:class:`benchmarks._dash_client.DashPage`); any answer but a 200 with a response
    is an error, and any error fails the benchmark (``meets_targets.dash_client``)."""
    import requests

    from benchmarks._dash_client import DashPage, http_fetch
    from dashapp.ids import Markets, Shell

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    s = requests.Session()
    s.get(url + "/", timeout=30).raise_for_status()  # page load, as the browser does it
    page = DashPage(http_fetch(s, url), "/")
    times: dict[str, list[float]] = {"markets_callback": [], "badge_callback": [], "health": []}
    sizes: dict[str, int] = {k: 0 for k in times}
    errors: list[str] = []

    def hit(kind: str, fn) -> None:
        t = time.perf_counter()
        try:
            n = fn()
            times[kind].append(time.perf_counter() - t)
            sizes[kind] = n
        except Exception as exc:  # counted, polling continues like a browser would
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")

    def health() -> int:
        r = s.get(url + "/api/health", timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}")
        r.json()
        return len(r.content)

    print("ready", flush=True)
    tick, next_t = 0, time.monotonic()
    while not stop.is_set():
        tick += 1
        hit("markets_callback", lambda: page.tick(Markets.TICK_INTERVAL))
        if tick % round(BADGE_POLL_S / DASH_POLL_S) == 0:
            hit("badge_callback", lambda: page.tick(Shell.STATUS_INTERVAL))
        hit("health", health)
        next_t += DASH_POLL_S
        delay = next_t - time.monotonic()
        if delay < 0:  # a tab's interval does not queue missed ticks
            next_t = time.monotonic()
        else:
            stop.wait(delay)
    summary = {
        kind: {
            "requests": len(v),
            "p50_ms": round(float(np.percentile(v, 50)) * 1e3, 2) if v else None,
            "p99_ms": round(float(np.percentile(v, 99)) * 1e3, 2) if v else None,
            "max_ms": round(max(v) * 1e3, 2) if v else None,
            "bytes": sizes[kind],
        }
        for kind, v in times.items()
    }
    summary["errors"] = len(errors)
    summary["first_errors"] = errors[:3]
    print(json.dumps(summary), flush=True)
    return 0


# ---------------------------------------------------------------------------------
# Output


def _cpu_seconds() -> tuple[float, float, float]:
    """(wall, CPU busy on the whole machine, CPU of this process + reaped children)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    busy = (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def _cpu_used_since(start: tuple[float, float, float]) -> tuple[float, float, float]:
    """(wall s, our CPU s, CPU s used by other processes) since ``start``: a check
    that nothing else ran on this 2-core machine during the benchmark."""
    end = _cpu_seconds()
    own = end[2] - start[2]
    return end[0] - start[0], own, max(0.0, (end[1] - start[1]) - own)


def _fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def _table(head: tuple, rows: list[tuple]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))


def print_table(tp: ThroughputResult, lat: list[dict], speed: float) -> None:
    print()
    print(f"Throughput (replay --speed 0 --loop, own process; {tp.seconds:.0f} s steady "
          f"after {tp.warmup_s:.0f} s warm-up)")
    head = ("msgs/s", "rows/s", "min 1s", "max 1s", "rows", "loss", "dups", "gaps",
            "pend max", "commits", "bars")
    row = (_fmt(tp.msgs_per_s, 0), _fmt(tp.stored_rows_per_s, 0),
           _fmt(tp.min_1s_msgs_per_s, 0), _fmt(tp.max_1s_msgs_per_s, 0), _fmt(tp.rows_stored),
           _fmt(tp.loss), _fmt(tp.duplicates), _fmt(tp.gaps), _fmt(tp.pending_max),
           _fmt(tp.commits), _fmt(tp.bar_closes))
    _table(head, [row])
    print()
    print(f"Receive-to-ring latency at ~{LATENCY_RATE:,} msgs/s (replay --speed "
          f"{speed:.2f}): on_message entry -> TickRing.append returned, ms")
    _table(
        ("scenario", "msgs/s", "max 1s", "p50", "p90", "p99", "p99.9", "max"),
        [(r["scenario"], _fmt(r["msgs_per_s"], 0), _fmt(r["max_1s_msgs"]),
          *(_fmt(r["receive_to_ring_ms"][k], 3) for k in ("p50", "p90", "p99", "p99_9", "max")))
         for r in lat],
    )
    print()
    print("Supplementary, same events, ms: floor = bare client in another process on the "
          "same replay;")
    print("  sched->recv = floor's delay after the replay schedule (replay + wire); "
          "floor->ring = our ring time - floor's receive time")
    _table(
        ("scenario", "floor sched->recv p50", "p99", "max", "| floor->ring p50", "p99",
         "p99.9", "max", "| sched->ring p99", "max", "| gc n", "gc max"),
        [(r["scenario"],
          *(_fmt(r["floor_sched_to_recv_ms"][k], 3) for k in ("p50", "p99", "max")),
          "| " + _fmt(r["floor_recv_to_ring_ms"]["p50"], 3),
          *(_fmt(r["floor_recv_to_ring_ms"][k], 3) for k in ("p99", "p99_9", "max")),
          "| " + _fmt(r["sched_to_ring_ms"]["p99"], 3), _fmt(r["sched_to_ring_ms"]["max"], 3),
          "| " + _fmt(r["gc_in_window"]["collections"]), _fmt(r["gc_in_window"]["max_ms"], 3))
         for r in lat],
    )
    for r in lat:
        dc = r.get("dash_client")
        if dc:
            parts = [
                f"{k} n={v['requests']} p50={v['p50_ms']} ms p99={v['p99_ms']} ms "
                f"({v['bytes']:,} B)"
                for k, v in dc.items() if isinstance(v, dict)
            ]
            print(f"  dash client: {'; '.join(parts)}; errors={dc['errors']}")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seconds", type=float, default=60.0, help="throughput window (s)")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="each latency window (s)")
    p.add_argument("--book-seconds", type=float, default=30.0,
                   help="trades + book window (s)")
    p.add_argument("--book-only", action="store_true",
                   help="run only the trades + book scenario")
    p.add_argument("--quick", action="store_true", help="smoke run: 10 s / 8 s windows")
    p.add_argument("--dash-client", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--floor-client", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--floor-out", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dash_client:
        return dash_client_main(args.dash_client)
    if args.floor_client:
        return floor_client_main(args.floor_client, args.floor_out)
    if args.quick:
        args.seconds, args.latency_seconds, args.book_seconds = 10.0, 8.0, 8.0
    tp_warmup = 3.0 if args.quick else 5.0
    lat_warmup = 2.0
    from ingest.config import configure_logging

    configure_logging("WARNING")  # as app.py (werkzeug/websockets at WARNING too)
    cpu_start = _cpu_seconds()
    if args.book_only:
        return _main_book_only(args.book_seconds, tp_warmup, cpu_start)
    pacing = tape_pacing()
    speed = pacing.speed_for(LATENCY_RATE)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
        tmp = Path(tmpdir)
        print(f"throughput: {args.seconds:.0f} s (+{tp_warmup:.0f} s warm-up) ...",
              file=sys.stderr, flush=True)
        tp = run_throughput(args.seconds, tp_warmup, tmp)
        print(f"trades + book: {args.book_seconds:.0f} s (+{tp_warmup:.0f} s warm-up) ...",
              file=sys.stderr, flush=True)
        tb = run_trades_book(args.book_seconds, tp_warmup, tmp)
        lat = []
        for with_dash in (False, True):
            print(f"latency {'with Dash' if with_dash else 'alone'}: "
                  f"{args.latency_seconds:.0f} s at speed {speed:.2f} ...",
                  file=sys.stderr, flush=True)
            lat.append(
                run_latency(args.latency_seconds, lat_warmup, tmp, pacing, speed, with_dash)
            )
    print_table(tp, lat, speed)
    print_book_table(tb)
    wall, own, foreign = _cpu_used_since(cpu_start)
    if foreign > 0.05 * wall:
        print(f"warning: other processes used {foreign:.0f} CPU-seconds during this "
              f"{wall:.0f} s run; the figures are skewed", flush=True)
    alone, dash = lat
    zero_loss = tp.loss == 0 and tp.duplicates == 0 and tp.gaps == 0 and all(
        s["ids_equal"] and s["db_contiguous"] and s["received_contiguous"]
        for s in tp.checks["symbols"].values()
    )
    result = {
        "throughput_msgs_per_s": round(tp.msgs_per_s, 1),
        "throughput_stored_rows_per_s": round(tp.stored_rows_per_s, 1),
        "throughput_min_1s_msgs_per_s": round(tp.min_1s_msgs_per_s, 1),
        "throughput_seconds": tp.seconds,
        "throughput_warmup_seconds": tp.warmup_s,
        "messages": tp.messages,
        "rows_stored": tp.rows_stored,
        "loss": tp.loss,
        "duplicates": tp.duplicates,
        "gaps": tp.gaps,
        "bad_frames": tp.bad_frames,
        "reconnects": tp.reconnects,
        "store_pending_max": tp.pending_max,
        "store_commits": tp.commits,
        "engine_bar_closes": tp.bar_closes,
        "bars_stored": tp.bars_stored,
        "store_checks": tp.checks,
        "latency_rate_target": LATENCY_RATE,
        "replay_speed": round(speed, 3),
        "latency_seconds": alone["seconds"],
        "latency_alone_ms": {**alone["receive_to_ring_ms"], "msgs_per_s": alone["msgs_per_s"]},
        "latency_with_dash_ms": {**dash["receive_to_ring_ms"], "msgs_per_s": dash["msgs_per_s"]},
        "sched_to_ring_alone_ms": alone["sched_to_ring_ms"],
        "sched_to_ring_with_dash_ms": dash["sched_to_ring_ms"],
        "floor_recv_to_ring_alone_ms": alone["floor_recv_to_ring_ms"],
        "floor_recv_to_ring_with_dash_ms": dash["floor_recv_to_ring_ms"],
        "latency_runs": lat,
        "trades_book": tb,
        "env": {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own, 1),
            "foreign_cpu_s": round(foreign, 1),
        },
        "targets": {"throughput_msgs_per_s": TARGET_MSGS_PER_S, "p99_ms": TARGET_P99_MS,
                    "book_per_s": TARGET_BOOK_PER_S},
        "meets_targets": {
            **book_targets(tb),
            "throughput": bool(tp.msgs_per_s >= TARGET_MSGS_PER_S
                               and tp.stored_rows_per_s >= TARGET_MSGS_PER_S),
            "zero_loss": bool(zero_loss),
            "p99_alone": bool((alone["receive_to_ring_ms"]["p99"] or 1e9) <= TARGET_P99_MS),
            "p99_with_dash": bool((dash["receive_to_ring_ms"]["p99"] or 1e9) <= TARGET_P99_MS),
            # the "with Dash" figures mean something only if the page was being served
            "dash_client": dash_client_ok(dash.get("dash_client")),
        },
    }
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if not result["meets_targets"]["dash_client"]:
        print("FAILED: the Dash client's requests failed: "
              f"{(dash.get('dash_client') or {}).get('first_errors')}", file=sys.stderr)
        return 1
    return 0


def _main_book_only(seconds: float, warmup: float, cpu_start) -> int:
    """``--book-only``: the trades + book scenario alone (table, then the JSON line)."""
    print(f"trades + book: {seconds:.0f} s (+{warmup:.0f} s warm-up) ...",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
        tb = run_trades_book(seconds, warmup, Path(tmpdir))
    print_book_table(tb)
    wall, own, foreign = _cpu_used_since(cpu_start)
    if foreign > 0.05 * wall:
        print(f"warning: other processes used {foreign:.0f} CPU-seconds during this "
              f"{wall:.0f} s run; the figures are skewed", flush=True)
    result = {
        "trades_book": tb,
        "book_per_s": tb["book_per_s"],
        "lost_trades": tb["lost_trades"],
        "lost_book_updates": tb["lost_book_updates"],
        "receive_to_ring_p99_ms": tb["receive_to_ring_ms"]["p99"],
        "receive_to_book_p99_ms": tb["receive_to_book_ms"]["p99"],
        "env": {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                "wall_s": round(wall, 1), "own_cpu_s": round(own, 1),
                "foreign_cpu_s": round(foreign, 1)},
        "targets": {"book_per_s": TARGET_BOOK_PER_S},
        "meets_targets": book_targets(tb),
    }
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0


def dash_client_ok(summary: dict | None) -> bool:
    """Every request of the Dash client answered, and it made some of each kind."""
    if not summary:
        return False
    return summary.get("errors") == 0 and all(
        (summary.get(k) or {}).get("requests", 0) > 0
        for k in ("markets_callback", "badge_callback", "health")
    )


if __name__ == "__main__":
    raise SystemExit(main())
