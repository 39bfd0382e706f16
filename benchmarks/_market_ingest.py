"""An hour of 300 instruments (issue #19, section ``ingest`` of ``python -m benchmarks.market``).

``python -m benchmarks._market_ingest [--quick]`` runs this section alone.

What plays: :func:`ingest.replay.wide.wide_tape` (``n=300``, perp): 300 USD-M
instruments with real Binance symbol names, BTCUSDT and ETHUSDT being the bundled REAL
tapes and the others DERIVED from them (thinned to the instrument's activity, shifted,
rescaled; ``docs/replay.md``). Its activity mix is the one that module documents (a
heavy head, a long Zipf-like tail by rank); the table states the mix actually played:
total trades/s and the trades/s at ranks 1, 2, 3, 10, 30, 100 and 300 (tape time).
The full run plays 60 minutes of tape at ``--speed 10`` (an hour in six minutes); the
quick run 5 minutes of tape at the same speed (30 s).

Three processes, so that what is measured is the ingest alone (2 cores):

1. **the replay exchange**, a subprocess (``--replay-child`` of this module): the wide
   tape on a :class:`~ingest.replay.server.ReplayServer` with its REST (exchangeInfo,
   24 h ticker, trades), played ONCE (no loop) at the speed above. Its player is held
   until every instrument's trade stream has a subscriber (``wait_streams``), so a
   connection that subscribes a moment after the first misses nothing; it writes the
   tape's trade ids per instrument (``expected.npz``) for the loss check.
2. **the ingest process**, a subprocess (``--ingest-child``): exactly what
   ``python -m ingest`` builds (``ingest.config.parse_config`` + ``ingest.runtime.Runtime``:
   SQLite store on a temp file, engine, Ingestor, the feed pool, back-fill, book on),
   started with ``--symbols top:300`` resolved from the replay's REST, plus two probes:
   ``TradeFeed._handle_message`` entry stamps ``perf_counter_ns`` in a thread-local,
   the ring's ``append`` (class attribute) stamps its return; the difference is the
   receive-to-ring latency of every trade received on a socket (the method of
   ``benchmarks/ingest.py``; a preallocated int64 array, counted in the RSS below:
   8 bytes a trade). It writes a status file every second (feed health with its
   connections, trades received) and, on SIGTERM, stops the runtime as ``python -m
   ingest`` does (open bars flushed, store drained) and saves the latencies.
3. **this process**: samples the ingest process's ``VmRSS`` (``/proc/PID/status``) every
   0.5 s (peak; end = the last sample before the stop; the slope over the second half
   of the play, as MB per tape hour: what an hour of this mix adds while rings and bars
   fill, to be read against the data held), waits for the tape's end and for the
   ingest to have received every trade, stops the ingest, then compares the SQLite file
   with the tape per instrument (one scan of the trades table): the stored ids must be
   exactly the tape's ids (count and set; rows minus distinct ids = 0), no instrument
   stored that the tape lacks, no gap rows left unfilled.

Figures (``run`` returns them; the LAST stdout line of the standalone run is the JSON):
trades and msgs/s played, per-rank rates, p50/p99/p99.9/max receive-to-ring (ms),
lost/duplicate trades, instruments with loss, RSS peak/end/slope, connections per
market. Goals: zero loss, RSS <= 2 GB, p99 <= 5 ms (benchmarks/ingest.py's target).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_INSTRUMENTS = 300
FULL_MINUTES, QUICK_MINUTES = 60.0, 5.0
SPEED = 10.0
GOAL_RSS_MB = 2048.0
TARGET_P99_MS = 5.0
RANKS = (1, 2, 3, 10, 30, 100, 300)
RSS_EVERY_S = 0.5
STATUS_EVERY_S = 1.0


# ---------------------------------------------------------------------------------
# The replay exchange


def tape_expectation(tape) -> dict[str, np.ndarray]:
    """Per instrument key (``perp:BTCUSDT``) the tape's trade ids, in id order."""
    ids: dict[str, list[int]] = {}
    for ev in tape.events:
        if ev.kind in ("trade", "aggTrade"):
            ids.setdefault(f"{ev.market}:{ev.symbol}", []).append(ev.trade_id)
    return {k: np.sort(np.array(v, np.int64)) for k, v in ids.items()}


def tape_mix(tape) -> dict:
    """The activity mix a tape plays (tape time = trade time ``T``, first to last trade):
    total and per-rank trades/s (rank by trades, ties by name), the top 10's share."""
    counts: dict[str, int] = {}
    lo, hi = None, None
    for ev in tape.events:
        if ev.kind in ("trade", "aggTrade"):
            key = f"{ev.market}:{ev.symbol}"
            counts[key] = counts.get(key, 0) + 1
            lo = ev.time_ms if lo is None or ev.time_ms < lo else lo
            hi = ev.time_ms if hi is None or ev.time_ms > hi else hi
    span_s = max(((hi or 0) - (lo or 0)) / 1e3, 1e-3)  # trade time T: first to last
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    books = sum(1 for ev in tape.events if ev.kind == "bookTicker")
    return {
        "instruments": len(counts),
        "tape_seconds": round(span_s, 1),
        "trades": int(sum(counts.values())),
        "book_updates": books,
        "trades_per_s": round(sum(counts.values()) / span_s, 2),
        "book_per_s": round(books / span_s, 2),
        "rank_trades_per_s": {
            str(r): {"symbol": ranked[r - 1][0], "per_s": round(ranked[r - 1][1] / span_s, 3)}
            for r in RANKS if r <= len(ranked)
        },
        "head_share_top10": round(sum(c for _, c in ranked[:10]) / max(1, sum(counts.values())), 3),
    }


def replay_child_main(a: argparse.Namespace) -> int:
    """``--replay-child``: serve the wide tape once; print ``READY ws rest``, later
    ``ENDED played``; write ``expected.npz`` and ``mix.json`` into ``--out``."""
    from ingest.config import configure_logging
    from ingest.replay.server import ReplayServer
    from ingest.replay.wide import wide_tape

    configure_logging("WARNING")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tape = wide_tape(a.universe, market=a.market, seed=a.seed, minutes=a.minutes)
    out = Path(a.out)
    expected = tape_expectation(tape)
    keys = sorted(expected)
    np.savez(out / "expected.npz", keys=np.array(keys),
             counts=np.array([len(expected[k]) for k in keys], np.int64),
             ids=np.concatenate([expected[k] for k in keys]))
    (out / "mix.json").write_text(json.dumps(tape_mix(tape)))
    server = ReplayServer(tape, port=0, speed=a.speed, loop=False, profile=a.market)
    # the player waits until every instrument's trade stream is subscribed (the feed
    # pool subscribes connection after connection: none may miss the tape's start)
    server.wait_streams = a.wait_streams if a.wait_streams >= 0 else len(keys)
    server.start()
    print(f"READY {server.ws_base} {server.rest_base} {len(tape)}", flush=True)
    playing = False
    while not stop.wait(0.05):
        if not playing and server.played:
            playing = True
            print(f"PLAYING {time.time():.3f}", flush=True)
        if server.ended:
            print(f"ENDED {server.played} {time.time():.3f}", flush=True)
            break
    stop.wait()
    server.stop()
    return 0


# ---------------------------------------------------------------------------------
# The ingest process, as ``python -m ingest`` builds it, with the latency probe


class LatencyProbe:
    """Receive-to-ring per trade: handler entry (thread-local, so several connection
    threads never mix their stamps) -> ring ``append`` returned, in a preallocated
    array (written under the GIL by whichever feed thread appends)."""

    def __init__(self, capacity: int) -> None:
        self.lat = np.zeros(capacity, np.int64)
        self.n = 0
        self.overflow = 0
        self.local = threading.local()

    def install(self) -> None:
        """Patch the classes this process instantiates (nothing else runs here)."""
        from ingest.feeds.client import TradeFeed
        from ingest.ring import TickRing

        now, local = time.perf_counter_ns, self.local
        handle = TradeFeed._handle_message

        def probed_handle(feed, ws, raw):
            local.t0 = now()
            try:
                handle(feed, ws, raw)
            finally:
                local.t0 = 0

        TradeFeed._handle_message = probed_handle
        append = TickRing.append
        mv, cap, probe = memoryview(self.lat), len(self.lat), self

        def probed_append(ring, time_ms, trade_id, price, qty, buyer_is_maker):
            seq = append(ring, time_ms, trade_id, price, qty, buyer_is_maker)
            t0 = getattr(local, "t0", 0)
            if t0:  # a socket frame (not a back-fill or a restore)
                i = probe.n
                if i < cap:
                    mv[i] = now() - t0
                    probe.n = i + 1
                else:
                    probe.overflow += 1
            return seq

        TickRing.append = probed_append


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)


def ingest_status(runtime) -> dict:
    """What the parent polls: feed health (connections per market) and trades taken."""
    rings = runtime.ingestor.rings
    return {
        "t": time.time(),
        "received": int(sum(r.seq for r in list(rings.values()))),
        "instruments": len(runtime.universe.names) if runtime.universe else 0,
        "rings": len(rings),
        "feed": runtime.feed_health(),
        "store_pending": runtime.store.pending,
    }


def ingest_child_main(a: argparse.Namespace, flags: list[str]) -> int:
    """``--ingest-child ... -- FLAGS``: ``python -m ingest FLAGS`` with the probe."""
    from ingest.config import configure_logging, parse_config

    probe = LatencyProbe(a.probe_capacity)
    probe.install()
    from ingest.runtime import Runtime

    cfg = parse_config(flags)
    configure_logging(cfg.log_level)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    runtime = Runtime(cfg)
    runtime.start()
    status_path = Path(a.status)
    print("STARTED", flush=True)
    try:
        while not done.wait(STATUS_EVERY_S):
            _write_json(status_path, ingest_status(runtime))
    finally:
        final = ingest_status(runtime)
        runtime.stop()
        final["stopped"] = True
        np.save(a.probe_out, probe.lat[:probe.n])
        final["probe_overflow"] = probe.overflow
        _write_json(status_path, final)
    return 0


# ---------------------------------------------------------------------------------
# This process: the two children, RSS, the loss check


class Child:
    """A subprocess of this module; stdout lines in a queue, stderr to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._market_ingest", *args], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # EOF

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise RuntimeError(f"no {prefix!r} line from {self.log.name} in "
                                   f"{timeout:.0f} s; log tail: {self.tail()}") from None
            if line.startswith(prefix):
                return line
            if line == "" and self.proc.poll() is not None:
                raise RuntimeError(f"{self.log.name}: exited {self.proc.returncode} "
                                   f"before {prefix!r}; log tail: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 120.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class RssSampler(threading.Thread):
    """``VmRSS`` of one process every ``every`` seconds (MB), until stopped."""

    def __init__(self, pid: int, every: float = RSS_EVERY_S) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def read(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def run(self) -> None:
        while not self._stop_event.is_set():
            mb = self.read()
            if mb is not None:
                self.samples.append((time.time(), mb))
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def summary(self, t0: float | None = None, t1: float | None = None,
                t_end: float | None = None) -> dict:
        """Peak and end (the last sample before ``t_end``, the stop signal); slope
        (MB per wall minute, least squares) over the second half of the play [t0, t1]."""
        if not self.samples:
            return {"peak_mb": None, "end_mb": None, "slope_mb_per_min": None}
        t = np.array([s[0] for s in self.samples])
        mb = np.array([s[1] for s in self.samples])
        before = np.flatnonzero(t <= (t_end if t_end is not None else t[-1]))
        end = mb[before[-1]] if before.size else mb[-1]
        out = {"peak_mb": round(float(mb.max()), 1), "end_mb": round(float(end), 1),
               "samples": len(mb)}
        if t0 is not None and t1 is not None and t1 > t0:
            sel = (t >= t0 + (t1 - t0) / 2) & (t <= t1)
            if sel.sum() >= 3:
                slope = np.polyfit((t[sel] - t[sel][0]) / 60.0, mb[sel], 1)[0]
                out["slope_mb_per_min"] = round(float(slope), 2)
            at = np.flatnonzero(t <= t1)
            if at.size:
                out["at_tape_end_mb"] = round(float(mb[at[-1]]), 1)
        out.setdefault("slope_mb_per_min", None)
        return out


def read_status(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stored_vs_tape(db: Path, expected: dict[str, np.ndarray]) -> dict:
    """Per instrument the stored trade ids against the tape's (exact sets).

    ``lost`` = tape ids not stored, ``extra`` = stored ids not on the tape,
    ``duplicates`` = rows - distinct ids (the primary key makes it 0; checked)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = {"instruments": len(expected), "tape_trades": 0, "stored": 0, "lost": 0,
           "extra": 0, "duplicates": 0, "instruments_with_loss": [], "unfilled_gaps": 0}
    try:
        # one scan in primary-key order (venue, market, symbol, trade_id), grouped here
        by_key: dict[str, list[int]] = {}
        for market, symbol, tid in con.execute(
                "SELECT market, symbol, trade_id FROM trades"):
            by_key.setdefault(f"{market}:{symbol}", []).append(tid)
        out["stored_instruments_not_on_tape"] = sorted(set(by_key) - set(expected))
        for key, tape_ids in expected.items():
            stored = np.array(by_key.get(key, ()), np.int64)
            distinct = np.unique(stored)
            lost = np.setdiff1d(tape_ids, distinct, assume_unique=True).size
            extra = np.setdiff1d(distinct, tape_ids, assume_unique=True).size
            out["tape_trades"] += int(tape_ids.size)
            out["stored"] += int(stored.size)
            out["lost"] += int(lost)
            out["extra"] += int(extra)
            out["duplicates"] += int(stored.size - distinct.size)
            if lost or extra or stored.size != distinct.size:
                out["instruments_with_loss"].append(key)
        out["unfilled_gaps"] = con.execute(
            "SELECT count(*) FROM gaps WHERE filled_ms IS NULL").fetchone()[0]
        out["gap_rows"] = con.execute("SELECT count(*) FROM gaps").fetchone()[0]
    finally:
        con.close()
    out["zero_loss"] = bool(out["lost"] == 0 and out["extra"] == 0 and out["duplicates"] == 0
                            and out["unfilled_gaps"] == 0
                            and not out["stored_instruments_not_on_tape"])
    return out


def load_expected(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        keys, counts, ids = z["keys"], z["counts"], z["ids"]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {str(k): ids[bounds[i]:bounds[i + 1]] for i, k in enumerate(keys)}


def connections_of(feed: dict) -> dict[str, list[dict]]:
    """Per market the ``connections`` list of a feed health (C3), one- or multi-market."""
    markets = feed.get("markets")
    if markets:
        return {m: f.get("connections") or [] for m, f in markets.items()}
    url = feed.get("url") or ""
    market = "spot" if "/market" not in url and "fstream" not in url else "perp"
    return {market: feed.get("connections") or []}


def pct_ms(ns: np.ndarray) -> dict:
    if ns.size == 0:
        return {"p50": None, "p90": None, "p99": None, "p99_9": None, "max": None}
    q = np.percentile(ns, [50, 90, 99, 99.9]) / 1e6
    return {"p50": round(float(q[0]), 3), "p90": round(float(q[1]), 3),
            "p99": round(float(q[2]), 3), "p99_9": round(float(q[3]), 3),
            "max": round(float(ns.max()) / 1e6, 3)}


def play(*, minutes: float, speed: float = SPEED, n: int = N_INSTRUMENTS,
         symbols: str | None = None, market: str = "perp", streams_per_connection: int | None = None,
         book: bool = True, tmp: Path, seed: int = 0, extra_flags: tuple[str, ...] = ()) -> dict:
    """One play of the wide tape to an ingest process; every figure of the section."""
    t_begin = time.time()
    load_start = os.getloadavg()[0]
    symbols = symbols or f"top:{n}"
    replay = Child(["--replay-child", "--universe", str(n), "--minutes", str(minutes),
                    "--speed", str(speed), "--market", market, "--seed", str(seed),
                    "--out", str(tmp)], tmp / "replay.log")
    ingest: Child | None = None
    rss: RssSampler | None = None
    try:
        ready = replay.expect("READY", timeout=300).split()
        ws_base, rest_base, events = ready[1], ready[2], int(ready[3])
        t_tape = time.time() - t_begin
        expected = load_expected(tmp / "expected.npz")
        mix = json.loads((tmp / "mix.json").read_text())
        total = int(sum(v.size for v in expected.values()))
        db = tmp / "market.db"
        flags = ["--symbols", symbols, "--market", "futures" if market == "perp" else "spot",
                 "--stream", "trade", "--feed-url", ws_base + ("/market" if market == "perp" else ""),
                 "--rest-url", rest_base, "--db", str(db), "--log-level", "WARNING",
                 *(["--streams-per-connection", str(streams_per_connection)]
                   if streams_per_connection else []),
                 *([] if book else ["--no-book"]), *extra_flags]
        status_path = tmp / "ingest-status.json"
        ingest = Child(["--ingest-child", "--status", str(status_path),
                        "--probe-out", str(tmp / "latency.npy"),
                        "--probe-capacity", str(total + 1000), "--", *flags],
                       tmp / "ingest.log")
        rss = RssSampler(ingest.proc.pid)
        rss.start()
        ingest.expect("STARTED", timeout=180)
        t_started = time.time()
        playing = replay.expect("PLAYING", timeout=120)
        t_play0 = float(playing.split()[1])
        play_s = mix["tape_seconds"] / speed
        ended = replay.expect("ENDED", timeout=play_s * 3 + 120).split()
        t_play1 = float(ended[2])
        # every trade received (or nothing more coming for 20 s)
        last, last_change = -1, time.monotonic()
        status = None
        while True:
            status = read_status(status_path) or status
            got = status["received"] if status else 0
            if got >= total:
                break
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > 20:
                break
            time.sleep(0.5)
        t_received = time.time()
        live_status = status
        ingest.stop()
        t_stopped = time.time()
        rss.stop()
        final = read_status(status_path) or {}
        lat = np.load(tmp / "latency.npy")
        check = stored_vs_tape(db, expected)
        t_checked = time.time()
    finally:
        if rss is not None:
            rss.stop()
        if ingest is not None:
            ingest.stop()
        replay.stop()
    feed = (live_status or {}).get("feed") or {}
    conns = connections_of(feed)
    rss_fig = rss.summary(t_play0, t_play1, t_received) if rss is not None else {}
    if rss_fig.get("slope_mb_per_min") is not None:  # wall minutes -> tape hours
        rss_fig["slope_mb_per_tape_hour"] = round(rss_fig["slope_mb_per_min"] * 60 / speed, 1)
    wall_play = t_play1 - t_play0
    return {
        "instruments": len(expected),
        "symbols_flag": symbols,
        "tape_minutes": minutes,
        "speed": speed,
        "mix": mix,
        "events": events,
        "trades": total,
        "played_msgs_per_s": round(events / wall_play, 1) if wall_play > 0 else None,
        "play_wall_s": round(wall_play, 1),
        "received": (live_status or {}).get("received"),
        "catch_up_s": round(t_received - t_play1, 2),
        "receive_to_ring_ms": pct_ms(lat),
        "latency_samples": int(lat.size),
        "probe_overflow": final.get("probe_overflow"),
        "loss": check,
        "rss": rss_fig,
        "connections": {m: len(c) for m, c in conns.items()},
        "streams_per_connection": {m: [c.get("streams") for c in cs] for m, cs in conns.items()},
        "reconnects": feed.get("reconnects"),
        "feed_gaps": feed.get("gaps"),
        "start_s": round(t_started - t_begin - t_tape, 1),
        "subscribe_s": round(t_play0 - t_started, 1),
        "tape_build_s": round(t_tape, 1),
        "stop_s": round(t_stopped - t_received, 1),
        "check_s": round(t_checked - t_stopped, 1),
        "wall_s": round(time.time() - t_begin, 1),
        # a shared 2-core machine: the load others put on it skews the latency tail
        "load_avg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
    }


# ---------------------------------------------------------------------------------
# Section interface (benchmarks/market.py)


def run(quick: bool = False) -> tuple[list[tuple[str, str]], dict]:
    """The section: (table rows, figures). quick = 5 minutes of tape (< 60 s)."""
    minutes = QUICK_MINUTES if quick else FULL_MINUTES
    with tempfile.TemporaryDirectory(prefix="bench-market-ingest-") as d:
        r = play(minutes=minutes, tmp=Path(d))
    return rows_of(r), figures_of(r)


def figures_of(r: dict) -> dict:
    lat, loss, rss = r["receive_to_ring_ms"], r["loss"], r["rss"]
    return {
        **r,
        "targets": {"rss_mb": GOAL_RSS_MB, "p99_ms": TARGET_P99_MS, "loss": 0},
        "meets_targets": {
            "zero_loss": loss["zero_loss"],
            "rss": bool(rss.get("peak_mb") is not None and rss["peak_mb"] <= GOAL_RSS_MB),
            "p99": bool(lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS),
        },
    }


def rows_of(r: dict) -> list[tuple[str, str]]:
    mix, lat, loss, rss = r["mix"], r["receive_to_ring_ms"], r["loss"], r["rss"]
    ranks = ", ".join(f"#{k} {v['symbol'].split(':')[-1]} {v['per_s']:g}"
                      for k, v in mix["rank_trades_per_s"].items())
    rows = [
        ("tape", f"{r['instruments']} instruments (--symbols {_short(r['symbols_flag'])}), "
                 f"{r['tape_minutes']:g} min "
                 f"of wide tape played once at speed {r['speed']:g} "
                 f"({r['play_wall_s']:.0f} s wall)"),
        ("activity mix (tape time)", f"{mix['trades_per_s']:,.1f} trades/s total"
         + (f" + {mix['book_per_s']:,.1f} book/s" if mix["book_updates"] else "")
         + f"; top 10 = {mix['head_share_top10']:.0%} of trades"),
        ("trades/s by rank", ranks),
        ("played", f"{r['trades']:,} trades, {r['events']:,} events, "
                   f"{r['played_msgs_per_s'] or 0:,.0f} msgs/s wall"),
        ("receive-to-ring ms", f"p50 {lat['p50']}  p99 {lat['p99']}  p99.9 {lat['p99_9']}  "
                               f"max {lat['max']}  (goal p99 <= {TARGET_P99_MS:g})"),
        ("stored vs tape", f"{loss['stored']:,} of {loss['tape_trades']:,}: lost {loss['lost']}, "
                           f"extra {loss['extra']}, dup {loss['duplicates']}, unfilled gaps "
                           f"{loss['unfilled_gaps']}, instruments with loss "
                           f"{len(loss['instruments_with_loss'])}"),
        ("ingest RSS MB", f"peak {rss.get('peak_mb')}  end {rss.get('end_mb')}  (goal <= "
                          f"{GOAL_RSS_MB:g}); 2nd half of the play grows "
                          f"{rss.get('slope_mb_per_tape_hour')} MB per tape hour"),
        ("connections", ", ".join(f"{m}: {n} ({r['streams_per_connection'][m]} streams)"
                                  for m, n in r["connections"].items()) or "-"),
        ("wall s", f"tape build {r['tape_build_s']}, ingest start {r['start_s']}, subscribe "
                   f"{r['subscribe_s']}, play {r['play_wall_s']}, catch-up {r['catch_up_s']}, "
                   f"stop {r['stop_s']}, check {r['check_s']}; total {r['wall_s']} "
                   f"(load average {r['load_avg_1m']['start']} -> {r['load_avg_1m']['end']})"),
    ]
    return rows


def _short(text: str, width: int = 32) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._market_ingest",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5 minutes of tape instead of 60")
    p.add_argument("--minutes", type=float, default=None, help="tape minutes (overrides)")
    p.add_argument("--speed", type=float, default=SPEED)
    p.add_argument("--universe", type=int, default=N_INSTRUMENTS)
    p.add_argument("--symbols", default=None, help="ingest --symbols (default top:N)")
    p.add_argument("--streams-per-connection", type=int, default=None)
    p.add_argument("--market", choices=("perp", "spot"), default="perp")
    p.add_argument("--seed", type=int, default=0)
    # children
    p.add_argument("--replay-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--wait-streams", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--ingest-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--status", help=argparse.SUPPRESS)
    p.add_argument("--probe-out", help=argparse.SUPPRESS)
    p.add_argument("--probe-capacity", type=int, default=1_000_000, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    flags: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, flags = argv[:k], argv[k + 1:]
    a = p.parse_args(argv)
    if a.replay_child:
        return replay_child_main(a)
    if a.ingest_child:
        return ingest_child_main(a, flags)
    minutes = a.minutes or (QUICK_MINUTES if a.quick else FULL_MINUTES)
    with tempfile.TemporaryDirectory(prefix="bench-market-ingest-") as d:
        r = play(minutes=minutes, speed=a.speed, n=a.universe, symbols=a.symbols,
                 market=a.market, streams_per_connection=a.streams_per_connection,
                 tmp=Path(d), seed=a.seed)
    for label, value in rows_of(r):
        print(f"  {label:<26}  {value}")
    print(json.dumps(figures_of(r), separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
