"""The bus on Redis Streams: ``XADD ... MAXLEN ~ N`` to publish, ``XREAD BLOCK`` to follow.

Publisher: the ingest path only puts events on a ``SimpleQueue`` (a C call, no lock
of ours, so the feed thread never waits on the network). One publisher thread drains
the queue, groups the live trades of each instrument into column batches (codec.py)
and sends each drain as ONE ``MULTI``/``EXEC`` transaction: a reader sees a drain
whole or not at all. A failed send keeps the drain and retries it (0.1 s -> 2 s)
before taking anything newer, so nothing is lost or reordered while Redis is down;
the queue grows in memory meanwhile (``pending`` in health). A send that failed
after Redis applied it is sent again: followers drop the repeated trade ids.

Follower: ``XREAD BLOCK`` over every stream in the index set, from the last id read
per stream. Streams known at the first connect are read from ``start_back_ms``
before the server's clock (the store's writer commits every <= 250 ms, so a worker
that restored from the store a moment ago misses nothing published meanwhile; the
caller drops what the restore already held); streams found later, from their start.
After an outage the next read resumes after the last ids seen; what ``MAXLEN``
trimmed or a restarted server lost shows up as a ``prev_id`` the caller has not
seen, and the caller reads those trades from the store (``ingest/bus/follow.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from analytics.instruments import Instrument
from ingest.bus import codec
from ingest.bus.interface import (
    BusError,
    BusEvent,
    BusFollower,
    BusPublisher,
    BusUnavailable,
    ClockAdvanced,
    SessionBreak,
)
from ingest.models import Trade

log = logging.getLogger(__name__)

#: ``MAXLEN ~`` of a trades stream, in entries (batches): at one entry per drain and a
#: few hundred drains a second this holds minutes to hours; the store holds the rest.
TRADES_MAXLEN = 100_000
#: ``MAXLEN ~`` of the other streams.
OTHER_MAXLEN = 10_000
HEALTH_MAXLEN = 1_000
DRAIN_MAX_ITEMS = 20_000


def _client(url: str):
    """A redis-py client for ``url`` (bytes replies, RESP2, short timeouts)."""
    try:
        import redis
    except ImportError:  # pragma: no cover - requirements.txt installs it
        raise BusUnavailable(
            "--bus needs the redis package: pip install 'redis>=8,<9'"
        ) from None
    return redis.Redis.from_url(
        url, protocol=2, socket_connect_timeout=2.0, socket_timeout=5.0,
        health_check_interval=0,
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


def probe(url: str) -> None:
    """PING the server; :class:`BusUnavailable` naming the URL and the cure if not."""
    client = _client(url)
    try:
        client.ping()
    except _transport_errors() as exc:
        raise BusUnavailable(
            f"cannot reach the bus at {url} ({exc}): start redis-server "
            f"(e.g. redis-server --port 6379) or drop --bus"
        ) from None
    finally:
        client.close()


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class RedisPublisher(BusPublisher):
    """Publishes to Redis Streams from one thread fed by a queue (module notes)."""

    def __init__(
        self,
        url: str,
        *,
        resolve: Callable[[str], Instrument],
        last_ids: dict[str, int] | None = None,
        health: Callable[[], dict] | None = None,
        health_every_s: float = 1.0,
        trades_maxlen: int = TRADES_MAXLEN,
        prefix: str = codec.PREFIX,
    ) -> None:
        self.url = url
        self._resolve = resolve
        self._health = health
        self._health_every_s = health_every_s
        self._trades_maxlen = trades_maxlen
        self._prefix = prefix
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-publisher", daemon=True)
        self._client = None
        # instrument key -> last live trade id sent (prev_id of the next batch)
        self._last_live: dict[str, int] = {}
        for name, last in (last_ids or {}).items():
            self._last_live[resolve(name).key] = int(last)
        self._inst_cache: dict[str, Instrument] = {}
        self.connected = False
        self.published_entries = 0
        self.published_trades = 0
        self.sends = 0
        self.send_errors = 0
        self.error: str | None = None
        self.failing_since_ms: int | None = None
        self.last_send_ms: int | None = None
        self._queued = 0
        self._sent_items = 0

    # ------------------------------------------------------------------ queueing
    def trade(self, trade: Trade) -> None:
        self._q.put(("t", trade))
        self._queued += 1

    def trades(self, trades: list[Trade]) -> None:
        put = self._q.put
        for t in trades:
            put(("t", t))
        self._queued += len(trades)

    def book(self, book) -> None:
        self._q.put(("q", book))
        self._queued += 1

    def backfill(self, symbol: str, trades: list[Trade]) -> None:
        self._put(("f", symbol, list(trades)))

    def bar(self, symbol: str, row: tuple) -> None:
        self._put(("b", symbol, tuple(row)))

    def clock(self, close_ms: int) -> None:
        self._put(("c", int(close_ms)))

    def gap(self, symbol: str, first_id: int, last_id: int, detected_ms: int) -> None:
        self._put(("g", symbol, int(first_id), int(last_id), int(detected_ms)))

    def session_break(self, symbol: str, ts_ms: int, reason: str) -> None:
        self._put(("k", symbol, int(ts_ms), str(reason)))

    def _put(self, item: tuple) -> None:
        self._q.put(item)
        self._queued += 1

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RedisPublisher:
        probe(self.url)
        self._client = _client(self.url)
        self.connected = True
        self._thread.start()
        return self

    def flush(self, timeout: float = 5.0) -> bool:
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._q.put(("x", done))
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        if self._stop.is_set():
            return True
        ok = self.flush(timeout)
        self._stop.set()
        self._q.put(("s",))
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()
        return ok

    def status(self) -> dict:
        return {
            "url": self.url,
            "role": "publish",
            "connected": self.connected,
            "published": self.published_trades,
            "entries": self.published_entries,
            "pending": max(0, self._queued - self._sent_items),
            "sends": self.sends,
            "send_errors": self.send_errors,
            "error": self.error,
            "failing_since_ms": self.failing_since_ms,
            "last_send_ms": self.last_send_ms,
            # how far behind the bus is: 0 while sends go through, else since they fail
            "lag_ms": 0 if self.failing_since_ms is None
            else int(time.time() * 1000) - self.failing_since_ms,
        }

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        next_health = time.monotonic()
        while True:
            wait = max(0.0, next_health - time.monotonic()) if self._health else 1.0
            try:
                first = self._q.get(timeout=wait)
            except queue.Empty:
                first = None
            items = [] if first is None else [first]
            while len(items) < DRAIN_MAX_ITEMS:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            markers = [it[1] for it in items if it[0] == "x"]
            stopping = any(it[0] == "s" for it in items)
            cmds = self._encode([it for it in items if it[0] not in ("x", "s")])
            if self._health is not None and time.monotonic() >= next_health:
                next_health = time.monotonic() + self._health_every_s
                cmds.append(self._health_cmd())
            if cmds:
                self._send_until_done(cmds)
            self._sent_items += sum(1 for it in items if it[0] not in ("x", "s"))
            for done in markers:
                done.set()
            if stopping:
                return

    def _health_cmd(self) -> tuple:
        try:
            health = self._health()
        except Exception as exc:  # a health reader must never stop publishing
            health = {"error": f"health failed: {exc}"}
        data = codec.encode_health(health, int(time.time() * 1000))
        return codec.stream_name(codec.HEALTH, None, self._prefix), data, codec.HEALTH, 0

    def _instrument(self, name: str) -> Instrument:
        inst = self._inst_cache.get(name)
        if inst is None:
            inst = self._inst_cache[name] = self._resolve(name)
        return inst

    def _encode(self, items: list[tuple]) -> list[tuple]:
        """A drain -> ``(stream, data, kind, n_trades)`` in queue order per stream;
        consecutive live trades of an instrument share an entry."""
        cmds: list[tuple] = []
        open_batch: dict[str, tuple[int, list[Trade], int | None]] = {}  # key -> (cmd idx, trades, prev)

        def close_batch(key: str) -> None:
            idx, trades, prev = open_batch.pop(key)
            stream = cmds[idx][0]
            cmds[idx] = (stream, codec.encode_trades(trades, prev, False), "trades", len(trades))

        books: dict[str, tuple[int, list]] = {}  # key -> open (cmd idx, updates) entry
        book_entries: list[tuple[int, list]] = []

        for item in items:
            kind = item[0]
            if kind == "q":  # best bid/ask updates: an entry per instrument and drain
                b = item[1]
                inst = b.instrument
                entry = books.get(inst.key)
                if entry is None or len(entry[1]) >= codec.MAX_BATCH_TRADES:
                    cmds.append((codec.stream_name("book", inst, self._prefix), None, "book", 0))
                    entry = books[inst.key] = (len(cmds) - 1, [])
                    book_entries.append(entry)
                entry[1].append(b)
            elif kind == "t":
                t: Trade = item[1]
                key = t.instrument.key
                batch = open_batch.get(key)
                if batch is None or len(batch[1]) >= codec.MAX_BATCH_TRADES:
                    if batch is not None:
                        close_batch(key)
                    stream = codec.stream_name("trades", t.instrument, self._prefix)
                    cmds.append((stream, None, "trades", 0))
                    batch = open_batch[key] = (len(cmds) - 1, [], self._last_live.get(key))
                batch[1].append(t)
                self._last_live[key] = t.trade_id
            elif kind == "c":
                cmds.append((codec.stream_name(codec.CLOCK, None, self._prefix),
                             codec.encode_clock(item[1], dict(self._last_live)), codec.CLOCK, 0))
            else:
                inst = self._instrument(item[1])
                if kind == "f":
                    if inst.key in open_batch:  # keep the stream's order: live, fill, live
                        close_batch(inst.key)
                    cmds.append((codec.stream_name("trades", inst, self._prefix),
                                 codec.encode_trades(item[2], None, True), "trades",
                                 len(item[2])))
                elif kind == "b":
                    cmds.append((codec.stream_name("bars", inst, self._prefix),
                                 codec.encode_bar(item[2]), "bars", 0))
                elif kind == "g":
                    cmds.append((codec.stream_name("gaps", inst, self._prefix),
                                 codec.encode_gap(*item[2:]), "gaps", 0))
                elif kind == "k":
                    cmds.append((codec.stream_name("breaks", inst, self._prefix),
                                 codec.encode_break(*item[2:]), "breaks", 0))
        for key in list(open_batch):
            close_batch(key)
        for idx, updates in book_entries:
            cmds[idx] = (cmds[idx][0], codec.encode_books(updates), "book", 0)
        return cmds

    def _send_until_done(self, cmds: list[tuple]) -> None:
        """Send one drain as one transaction; on failure keep it and retry (even when
        stopping: a clean stop waits for the bus up to ``close``'s timeout)."""
        errors = _transport_errors()
        backoff = 0.1
        while True:
            try:
                self._send(cmds)
            except errors as exc:
                self.send_errors += 1
                self.connected = False
                if self.error is None:
                    log.warning("bus publisher: %s; keeping %d entries, retrying", exc, len(cmds))
                self.error = f"{type(exc).__name__}: {exc}"
                if self.failing_since_ms is None:
                    self.failing_since_ms = int(time.time() * 1000)
                if self._stop.wait(backoff):  # closing, and close's flush timed out
                    log.error("bus publisher stopped with %d entries unsent", len(cmds))
                    return
                backoff = min(2.0, backoff * 2)
                continue
            if self.error is not None:
                log.info("bus publisher: connected again")
            self.connected, self.error, self.failing_since_ms = True, None, None
            return

    def _send(self, cmds: list[tuple]) -> None:
        pipe = self._client.pipeline(transaction=True)
        streams = set()
        for stream, data, kind, _n in cmds:
            maxlen = (self._trades_maxlen if kind in ("trades", "book")
                      else HEALTH_MAXLEN if kind == codec.HEALTH else OTHER_MAXLEN)
            pipe.xadd(stream, {codec.FIELD: data}, maxlen=maxlen, approximate=True)
            streams.add(stream)
        pipe.sadd(codec.index_name(self._prefix), *sorted(streams))
        pipe.execute()
        self.sends += 1
        self.published_entries += len(cmds)
        self.published_trades += sum(n for _s, _d, kind, n in cmds if kind == "trades")
        self.last_send_ms = int(time.time() * 1000)


class RedisFollower(BusFollower):
    """Reads every stream of the index with ``XREAD BLOCK`` (module notes)."""

    def __init__(
        self,
        url: str,
        *,
        start_back_ms: int = 60_000,
        count: int = 1_000,
        refresh_s: float = 0.5,
        prefix: str = codec.PREFIX,
    ) -> None:
        self.url = url
        self._prefix = prefix
        self._start_back_ms = start_back_ms
        self._count = count
        self._refresh_s = refresh_s
        self._client = None
        self._positions: dict[bytes, bytes] = {}  # stream -> last id read
        self._kinds: dict[bytes, tuple[str, Instrument | None]] = {}
        self._first_connect = True
        self._next_refresh = 0.0
        self.connected = False
        self.events = 0
        self.trades = 0
        self.bad_entries = 0
        self.reconnects = 0
        self._lag_ms: float | None = None

    def connect(self) -> None:
        errors = _transport_errors()
        try:
            if self._client is None:
                self._client = _client(self.url)
            self._client.ping()
            if self._first_connect:
                server_s, server_us = self._client.time()
                start = int(server_s) * 1000 + int(server_us) // 1000 - self._start_back_ms
                self._refresh(start_id=f"{max(0, start)}-0".encode())
                self._first_connect = False
        except errors as exc:
            self.connected = False
            raise BusError(f"{type(exc).__name__}: {exc}") from None
        if not self.connected and self.events:
            self.reconnects += 1
        self.connected = True

    def _refresh(self, start_id: bytes = b"0-0") -> None:
        names = self._client.smembers(codec.index_name(self._prefix))
        for name in names:
            if name in self._positions:
                continue
            try:
                self._kinds[name] = codec.parse_stream(name.decode(), self._prefix)
            except ValueError:
                continue
            self._positions[name] = start_id
        self._next_refresh = time.monotonic() + self._refresh_s

    def refresh_soon(self) -> None:
        """Look for new streams at the next read (an event named one we lack)."""
        self._next_refresh = 0.0

    def read(self, block_ms: int) -> list[BusEvent]:
        if self._client is None or not self.connected:
            self.connect()
        errors = _transport_errors()
        try:
            if time.monotonic() >= self._next_refresh:
                self._refresh()
            if not self._positions:
                time.sleep(block_ms / 1000)
                return []
            resp = self._client.xread(self._positions, count=self._count, block=block_ms)
        except errors as exc:
            self.connected = False
            raise BusError(f"{type(exc).__name__}: {exc}") from None
        if not resp:
            return []
        now_ms = time.time() * 1000
        breaks: list[BusEvent] = []
        clocks: list[BusEvent] = []
        rest: list[BusEvent] = []
        newest = 0
        for name, entries in resp:
            kind, inst = self._kinds[name]
            for entry_id, fields in entries:
                self._positions[name] = entry_id
                newest = max(newest, _entry_ms(entry_id))
                try:
                    ev = codec.decode(kind, inst, fields[codec.FIELD])
                except Exception as exc:  # a bad entry is counted and skipped
                    self.bad_entries += 1
                    log.warning("bus: bad entry %s in %s: %s", entry_id, name, exc)
                    continue
                self.events += 1
                if isinstance(ev, SessionBreak):
                    breaks.append(ev)
                elif isinstance(ev, ClockAdvanced):
                    clocks.append(ev)
                else:
                    if kind == "trades":
                        self.trades += len(ev.trades)
                    rest.append(ev)
        if newest:
            self._lag_ms = round(now_ms - newest, 1)
        return breaks + clocks + rest

    def lag_ms(self) -> float | None:
        return self._lag_ms

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.connected = False

    def status(self) -> dict:
        return {
            "url": self.url,
            "connected": self.connected,
            "events": self.events,
            "trades": self.trades,
            "bad_entries": self.bad_entries,
            "streams": len(self._positions),
            "reconnects": self.reconnects,
        }


__all__ = ["RedisFollower", "RedisPublisher", "probe"]
