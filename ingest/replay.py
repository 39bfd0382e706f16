"""A local WebSocket server that speaks Binance's market-data protocol and replays
recorded trades, so tests and demos never need the internet.

Clients connect exactly as they would to Binance (only the host differs)::

    ws://127.0.0.1:PORT/stream?streams=btcusdt@trade/ethusdt@trade   wrapped frames
    ws://127.0.0.1:PORT/ws/btcusdt@trade/ethusdt@trade              bare events
    ws://127.0.0.1:PORT/ws  or  /stream                              then SUBSCRIBE
    the same under /market/... (USD-M futures since 2026) and /public/...

Like the exchange, there is ONE shared clock: a single player task walks the
merged tape and fans every event out to the clients subscribed to its stream. A
client that connects late sees the market from "now" on, not from the start.

* ``speed > 0``: events are paced by the recorded receive-time gaps divided by
  ``speed`` (each gap capped at 5 s). The clock starts at the first subscription
  and then keeps running with or without clients, as on Binance.
* ``speed == 0``: as fast as the clients read (per-client backpressure). There is
  no clock, so the player PAUSES whenever nobody is subscribed to a stream the
  tape can serve: a client that reconnects continues exactly where it left off.

Fault switches (:class:`FaultPlan`) drop connections, skip ids, inject garbage,
go silent or announce a ``serverShutdown`` at chosen positions, so the ingest
path's reconnect and gap handling can be tested against a real socket.

Run ``python -m ingest.replay --help`` for the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.tapes import (
    Tape,
    TapeEvent,
    aggregate_trades_indexed,
    default_sample_files,
    load_tape,
)

log = logging.getLogger(__name__)

Profile = Literal["spot", "futures"]
PROFILE_DEFAULT = "profile"

# Binance's limits (docs/binance-protocol.md section 2).
PROFILES: dict[str, dict[str, float]] = {
    "spot": {"ping_interval": 20.0, "ping_timeout": 60.0, "rate_limit": 5.0},
    "futures": {"ping_interval": 180.0, "ping_timeout": 600.0, "rate_limit": 10.0},
}
MAX_STREAMS = 1024
MAX_GAP_S = 5.0  # a recorded pause longer than this is replayed as 5 s
SHUTDOWN_GRACE_S = 1.0
STOP_WAIT_S = 1.0
YIELD_EVERY = 64  # at speed 0, give the event loop a turn this often
WRITE_HIGH = 512 * 1024  # per-client buffer above which speed 0 waits for the client
SLOW_CLIENT_BYTES = 64 * 1024 * 1024  # speed > 0: drop a client this far behind

_KINDS = {"trade": "trade", "aggtrade": "aggTrade"}
#: Ids left out between two loop passes by ``python app.py --replay``: the seam where
#: prices snap back to the tape's start then looks like what it is, an outage that
#: cannot be back-filled (the REST side never had those ids), and the client marks a
#: session break there. 0 (the class default) keeps the passes' ids contiguous.
APP_LOOP_SEAM_IDS = 1_000


# ---------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults to inject, each fired once at a position of the shared player.

    A position N means "after N tape events have been processed" (played or
    skipped), counted across loop passes; N=0 is before the first event.

    drop_after:     close every connection (close code 1000) after event N.
    skip:           (N, K) do not play tape events N+1..N+K: clients see a gap of
                    exactly those ids (recorded in ``status()["skipped_ids"]``).
    garbage:        (N, K) after event N send K malformed frames to every client.
    silence:        (N, SECONDS) after event N send nothing and answer nothing for
                    SECONDS (connections stay open; at speed 0 the player waits).
    shutdown_after: after event N send ``serverShutdown`` to every client, stop
                    feeding them and close them 1 s later.
    drop_every:     close every connection after each N events (N, 2N, 3N, ...).
    duplicate:      (N, K) after event N send the K events before it again
                    (clients see K duplicate ids).
    bad_id:         (N, D) after event N send one copy of event N with its id + D
                    (a valid-looking frame with a poisoned id; REST never has it).
    future_time:    (N, MS) after event N send one copy of event N with id + 1 and
                    T and E moved MS ms ahead (the genuine id + 1 follows).
    """

    drop_after: int | None = None
    skip: tuple[int, int] | None = None
    garbage: tuple[int, int] | None = None
    silence: tuple[int, float] | None = None
    shutdown_after: int | None = None
    drop_every: int | None = None
    duplicate: tuple[int, int] | None = None
    bad_id: tuple[int, int] | None = None
    future_time: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("drop_after", "shutdown_after"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"FaultPlan.{name} must be an int >= 0, got {value!r}")
        every = self.drop_every
        if every is not None and (type(every) is not int or every < 1):
            raise ValueError(f"FaultPlan.drop_every must be an int >= 1, got {every!r}")
        for name in ("skip", "garbage", "silence", "duplicate", "bad_id", "future_time"):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) != 2 or type(value[0]) is not int or value[0] < 0:
                raise ValueError(f"FaultPlan.{name} must be (position >= 0, amount)")
            if not value[1] > 0:
                raise ValueError(
                    f"FaultPlan.{name}: amount must be > 0, got {value[1]}"
                )
            if name != "silence" and type(value[1]) is not int:
                raise ValueError(f"FaultPlan.{name}: count must be an int")


@dataclass(frozen=True, slots=True)
class Route:
    """What a connection URL asks for."""

    combined: bool
    streams: tuple[str, ...]
    micro: bool  # timeUnit=MICROSECOND


def parse_path(path: str) -> Route:
    """Interpret a request path the way Binance does; ValueError if not served.

    /ws/btcusdt@trade/ethusdt@trade          bare events
    /stream?streams=btcusdt@trade/ethusdt@trade&timeUnit=MICROSECOND
    /ws/stream?streams=...                    combined
    /market/..., /public/...                  USD-M futures prefixes
    """
    parts = urlsplit(path)
    route = parts.path.rstrip("/") or "/"
    for prefix in ("/market", "/public"):
        if route == prefix or route.startswith(prefix + "/"):
            route = route[len(prefix) :] or "/"
            break
    query = parse_qs(parts.query, keep_blank_values=True)
    micro = False
    for key, values in query.items():
        if key.lower() == "timeunit":
            unit = values[-1].upper()
            if unit not in ("MICROSECOND", "MILLISECOND"):
                raise ValueError(f"invalid timeUnit {values[-1]!r}")
            micro = unit == "MICROSECOND"
    from_query = [s for v in query.get("streams", []) for s in v.split("/") if s]
    if route == "/stream" or route == "/ws/stream":
        combined, streams = True, from_query
    elif route == "/ws":
        combined, streams = False, from_query
    elif route.startswith("/ws/"):
        combined = False
        streams = [unquote(s) for s in route[4:].split("/") if s]
    else:
        raise LookupError(f"no such path {parts.path!r}")
    if len(streams) > MAX_STREAMS:
        raise ValueError(
            f"{len(streams)} streams: at most {MAX_STREAMS} per connection"
        )
    return Route(combined, tuple(streams), micro)


def canonical_stream(name: str) -> str:
    """``BTCUSDT@aggtrade`` -> ``btcusdt@aggTrade`` (Binance's spelling)."""
    symbol, sep, kind = name.partition("@")
    if not sep:
        return name.lower()
    return f"{symbol.lower()}@{_KINDS.get(kind.lower(), kind.lower())}"


def garbage_frames(
    data: dict, stream: str, count: int, *, combined: bool
) -> list[bytes]:
    """``count`` malformed frames modelled on a real event; none parses as a trade.

    A mix of invalid JSON, truncated JSON and valid JSON with missing or
    wrong-typed fields (price "abc", id as a string, negative qty, ...), which a
    robust feed must count and skip.
    """
    id_key = "a" if data.get("e") == "aggTrade" else "t"

    def variant(i: int) -> bytes | dict:
        ev = dict(data)
        match i % 12:
            case 0:
                return _frame(data, stream, combined)[: 40 + i % 7]
            case 1:
                return b"this is not json: " + str(i).encode()
            case 2:
                ev["p"] = "abc"
            case 3:
                ev[id_key] = str(ev[id_key])
            case 4:
                del ev["p"]
            case 5:
                ev["q"] = "-1.5"
            case 6:
                ev["m"] = "yes"
            case 7:
                return b"[1,2,3]"
            case 8:
                ev["T"] = ev["T"] + 0.5
            case 9:
                ev["p"] = "NaN"
            case 10:
                ev["s"] = ""
            case _:
                if combined:
                    return orjson.dumps({"stream": stream, "data": None})
                return b'{"e":"trade","E":1}'
        return ev

    out: list[bytes] = []
    for i in range(count):
        item = variant(i)
        out.append(item if isinstance(item, bytes) else _frame(item, stream, combined))
    return out


def _frame(data: dict, stream: str, combined: bool) -> bytes:
    bare = orjson.dumps(data)
    return _wrap(stream.encode(), bare) if combined else bare


def exact_bytes(data: bytes) -> bytes:
    """A copy of ``data`` in an allocation of its own size.

    orjson (3.13) returns bytes that keep its ~4 KB write buffer: harmless for a frame
    sent and dropped, but the player keeps every event of the tape pre-encoded (34,419
    events of the bundled tape: 134 MB of buffers for 5 MB of JSON). Measured with
    ``tracemalloc``; ``tests/ingest/test_replay.py`` holds it to its size.
    """
    return bytes(memoryview(data))


def _wrap(stream: bytes, bare: bytes) -> bytes:
    return b'{"stream":"' + stream + b'","data":' + bare + b"}"


# ---------------------------------------------------------------------------
# Internal state


@dataclass(slots=True)
class _Client:
    conn: ServerConnection
    cid: int
    combined: bool
    micro: bool
    subs: dict[str, None] = field(default_factory=dict)  # ordered set
    closing: bool = False
    sent: int = 0
    msg_times: collections.deque[float] = field(default_factory=collections.deque)


@dataclass(slots=True)
class _Item:
    """One pre-encoded event: what the player sends for it."""

    stream: str
    bare: bytes
    wrapped: bytes
    event: TapeEvent


class ReplayServer:
    """Binance-protocol WebSocket server replaying a :class:`Tape`.

    >>> with ReplayServer(default_sample_files(), speed=0) as srv:   # doctest: +SKIP
    ...     url = f"{srv.ws_base}/stream?streams=btcusdt@trade/ethusdt@trade"

    ``rate_limit`` (client messages per second before close 1008), ``ping_interval``
    and ``ping_timeout`` default to the profile's Binance values; pass None to
    disable. The asyncio server runs in a background thread.
    """

    def __init__(
        self,
        tape_or_paths: Tape | str | Path | Iterable[str | Path],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        loop: bool = False,
        profile: Profile = "spot",
        faults: FaultPlan | None = None,
        rate_limit: float | None | str = PROFILE_DEFAULT,
        ping_interval: float | None | str = PROFILE_DEFAULT,
        ping_timeout: float | None | str = PROFILE_DEFAULT,
        close_timeout: float = 10.0,
        rest: bool = True,
        rest_port: int = 0,
        rest_weight_limit: int | None | str = PROFILE_DEFAULT,
        rest_window_s: float = 60.0,
        max_lifetime_s: float | None = None,
        rest_port_fallback: bool = False,
        loop_seam_ids: int = 0,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"invalid profile {profile!r}: expected spot or futures")
        if not speed >= 0:
            raise ValueError(
                f"speed must be >= 0 (0 = as fast as clients read), got {speed}"
            )
        if isinstance(tape_or_paths, Tape):
            self.tape = tape_or_paths
        else:
            self.tape = load_tape(tape_or_paths)
        if len(self.tape) == 0:
            raise ValueError("cannot replay an empty tape")
        self.host, self.speed, self.profile = host, float(speed), profile
        self.loop = loop
        self.faults = faults or FaultPlan()
        defaults = PROFILES[profile]

        def pick(name: str, value: float | None | str) -> float | None:
            return defaults[name] if value == PROFILE_DEFAULT else value  # type: ignore

        self.rate_limit = pick("rate_limit", rate_limit)
        self.ping_interval = pick("ping_interval", ping_interval)
        self.ping_timeout = pick("ping_timeout", ping_timeout)
        self.close_timeout = close_timeout
        if max_lifetime_s is not None and not max_lifetime_s > 0:
            raise ValueError(f"max_lifetime_s must be > 0, got {max_lifetime_s}")
        # Binance closes every connection after 24 h; tests shorten that to seconds.
        self.max_lifetime_s = max_lifetime_s
        self.lifetime_closes = 0
        self.rest = None
        if rest:
            from ingest.replay_rest import WEIGHT_LIMITS, RestServer

            limit = (
                WEIGHT_LIMITS[profile]
                if rest_weight_limit == PROFILE_DEFAULT
                else rest_weight_limit
            )
            self.rest = RestServer(
                self, host=host, port=rest_port, weight_limit=limit,  # type: ignore
                window_s=rest_window_s, port_fallback=rest_port_fallback,
            )
        self._aggs_lock = threading.Lock()
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._stop_async: asyncio.Event | None = None

        kind_of = self.tape.kind_of
        servable = {f"{s.lower()}@{kind_of[s]}" for s in self.tape.symbols}
        servable |= {
            f"{s.lower()}@aggTrade" for s in self.tape.symbols if kind_of[s] == "trade"
        }
        self._servable = frozenset(servable)
        self._items: list[_Item] = []
        # tape index of an aggregate's last trade -> the aggregate / its first trade
        self._aggs: dict[int, _Item] | None = None
        self._agg_first: dict[int, int] = {}
        self._agg_span: dict[str, int] = {}
        if type(loop_seam_ids) is not int or loop_seam_ids < 0:
            raise ValueError(f"loop_seam_ids must be an int >= 0, got {loop_seam_ids!r}")
        self.loop_seam_ids = loop_seam_ids
        first, last = self.tape.first_id, self.tape.last_id
        # Each pass moves ids by the tape's span plus the seam (ids nobody ever has).
        self._id_span = {
            s: last[s] - first[s] + 1 + loop_seam_ids for s in self.tape.symbols
        }
        self._sub_span = self._aggtrade_sub_spans()
        self._time_shift_ms = self.tape.duration_ms + 1000

        self._tasks: set[asyncio.Task] = set()
        self._clients: dict[int, _Client] = {}
        self._fanout: dict[str, tuple[_Client, ...]] = {}
        self._next_cid = 1
        self._active = 0
        self._listeners: asyncio.Event | None = None
        self._silence_over: asyncio.Event | None = None

        self.played = 0
        self.position = 0
        self.passes = 1
        self.ended = False
        self.faults_fired: list[dict] = []
        self.skipped_ids: dict[str, list[int]] = {}
        self.skipped_agg_ids: dict[str, list[int]] = {}
        self.garbage_sent = 0
        self.duplicates_sent = 0
        self.drops = 0  # drop-every closes
        self.connections_total = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ReplayServer:
        """Start listening in a background thread; return once it accepts clients."""
        if self._thread is not None or self._port is not None:
            raise RuntimeError("a ReplayServer can be started once")
        self._items = [self._encode(ev) for ev in self.tape.events]
        self._thread = threading.Thread(
            target=self._thread_main, name="replay-server", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        if self.rest is not None:
            try:
                self.rest.start()
            except OSError:
                self.stop()
                raise
        log.info(
            "replay: listening on %s (%d events, speed %s, loop %s, profile %s)",
            self.ws_base, len(self.tape), self.speed or "max", self.loop, self.profile,
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close all connections and the listening socket; join the thread."""
        if self.rest is not None:
            self.rest.stop()
        if self._thread is None:
            return
        if self._aloop is not None and self._stop_async is not None:
            try:
                self._aloop.call_soon_threadsafe(self._stop_async.set)
            except RuntimeError:
                log.debug("replay: event loop already closed")
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("replay: server thread did not stop within %.1fs", timeout)
        self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ReplayServer not started")
        return self._port

    @property
    def ws_base(self) -> str:
        """``ws://host:port``: pass it as ``base_url`` to ``binance.stream_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def url(self, kind: str = "trade", *, combined: bool = True) -> str:
        """URL subscribing to ``kind`` for every symbol of the tape."""
        names = "/".join(f"{s.lower()}@{kind}" for s in self.tape.symbols)
        if combined:
            return f"{self.ws_base}/stream?streams={names}"
        return f"{self.ws_base}/ws/{names}"

    @property
    def rest_base(self) -> str | None:
        """``http://host:port`` of the REST back-fill endpoints (None if off)."""
        return None if self.rest is None else self.rest.base

    @property
    def time_shift_ms(self) -> int:
        """How far each loop pass moves trade times forward."""
        return self._time_shift_ms

    def id_span(self, symbol: str, kind: str, derived: bool) -> int:
        """How far each loop pass moves ``symbol``'s ids of ``kind`` forward."""
        if kind == "aggTrade" and derived:
            self._ensure_aggs()
            return self._agg_span[symbol]
        return self._id_span[symbol]

    def sub_span(self, symbol: str, derived: bool) -> int:
        """How far each loop pass moves an aggregate's ``f``/``l`` trade ids."""
        return self._id_span[symbol] if derived else self._sub_span.get(symbol, 0)

    def derived_aggregates(self) -> dict[int, _Item]:
        """Tape index of an aggregate's last trade -> the aggregate (derived once)."""
        self._ensure_aggs()
        assert self._aggs is not None
        return self._aggs

    @property
    def streams(self) -> list[str]:
        """Stream names this tape can serve (aggTrade is derived from trades)."""
        return sorted(self._servable)

    def status(self) -> dict:
        """Snapshot of the player and connections (safe to call from any thread)."""
        return {
            "played": self.played,
            "position": self.position,
            "total": len(self.tape),
            "passes": self.passes,
            "looped": self.passes > 1,
            "loop_seam_ids": self.loop_seam_ids,
            "ended": self.ended,
            "clients": len(self._clients),
            "subscribed_clients": self._active,
            "connections_total": self.connections_total,
            "speed": self.speed,
            "profile": self.profile,
            "faults_fired": [dict(f) for f in list(self.faults_fired)],
            "skipped_ids": _copy_ranges(self.skipped_ids),
            "skipped_agg_ids": _copy_ranges(self.skipped_agg_ids),
            "garbage_sent": self.garbage_sent,
            "duplicates_sent": self.duplicates_sent,
            "drops": self.drops,
            "lifetime_closes": self.lifetime_closes,
            "rest": None if self.rest is None else self.rest.status(),
        }

    # -- thread / event loop -------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # surface start-up errors to start()'s caller
            log.exception("replay: server thread crashed")
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()

    async def _main(self) -> None:
        self._aloop = asyncio.get_running_loop()
        self._stop_async = asyncio.Event()
        self._listeners = asyncio.Event()
        self._silence_over = asyncio.Event()
        self._silence_over.set()
        try:
            server: Server = await serve(
                self._handle,
                self.host,
                self._requested_port,
                process_request=self._process_request,
                compression=None,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=self.close_timeout,
                write_limit=WRITE_HIGH,
                max_size=2**20,
            )
        except OSError as exc:
            self._start_error = OSError(
                exc.errno,
                f"replay: cannot listen on {self.host}:{self._requested_port}: {exc}",
            )
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        player = asyncio.create_task(self._run_player(), name="replay-player")
        player.add_done_callback(self._player_done)
        self._ready.set()
        await self._stop_async.wait()
        player.cancel()
        server.close()
        try:
            # A peer that never answers our close frame would hold this for
            # close_timeout per connection; stopping should not wait for it.
            await asyncio.wait_for(server.wait_closed(), STOP_WAIT_S)
        except TimeoutError:
            log.info("replay: stopped without waiting for close handshakes")

    @staticmethod
    def _player_done(task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("replay: player crashed", exc_info=exc)

    # -- connections ----------------------------------------------------------

    def _process_request(
        self, conn: ServerConnection, request: Request
    ) -> Response | None:
        try:
            parse_path(request.path)
        except LookupError as exc:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"{exc}\n")
        except ValueError as exc:
            return conn.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        route = parse_path(conn.request.path if conn.request else "/ws")
        client = _Client(conn, self._next_cid, route.combined, route.micro)
        self._next_cid += 1
        self._clients[client.cid] = client
        self.connections_total += 1
        log.info(
            "replay: client %d connected from %s path %s",
            client.cid, _peer(conn), conn.request.path if conn.request else "?",
        )
        if route.streams:
            self._subscribe(client, route.streams)
        if self.max_lifetime_s is not None:
            self._spawn(self._expire(client))
        try:
            async for message in conn:
                if self.rate_limit and self._over_rate_limit(client):
                    log.warning(
                        "replay: client %d sent more than %s messages/s; closing 1008",
                        client.cid, self.rate_limit,
                    )
                    await conn.close(1008, "Too many requests")
                    break
                if client.closing:
                    continue
                if not self._silence_over.is_set():
                    await self._silence_over.wait()
                reply = self._control(client, message)
                await conn.send(reply, text=True)
        except ConnectionClosed as exc:
            log.debug("replay: client %d: %s", client.cid, exc)
        finally:
            self._forget(client)
            log.info(
                "replay: client %d disconnected (code %s, %d events sent)",
                client.cid, conn.close_code, client.sent,
            )

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, client: _Client) -> None:
        """Binance's 24 h connection lifetime (shortened by ``max_lifetime_s``)."""
        assert self.max_lifetime_s is not None
        await asyncio.sleep(self.max_lifetime_s)
        if client.closing or client.cid not in self._clients:
            return
        self.lifetime_closes += 1
        log.info("replay: client %d reached the max connection lifetime (%.1fs)",
                 client.cid, self.max_lifetime_s)
        self._close_client(client, 1000, "max connection lifetime")

    def _over_rate_limit(self, client: _Client) -> bool:
        now = time.monotonic()
        times = client.msg_times
        times.append(now)
        while times and now - times[0] > 1.0:
            times.popleft()
        return len(times) > self.rate_limit

    def _forget(self, client: _Client) -> None:
        client.closing = True
        if self._clients.pop(client.cid, None) is not None:
            self._rebuild_fanout()

    def _subscribe(self, client: _Client, names: Iterable[str]) -> None:
        for name in names:
            canon = canonical_stream(name)
            client.subs.setdefault(canon)
            if canon.endswith("@aggTrade") and canon in self._servable:
                self._ensure_aggs()
        self._rebuild_fanout()

    def _rebuild_fanout(self) -> None:
        fanout: dict[str, list[_Client]] = {}
        active = 0
        for client in self._clients.values():
            if client.closing:
                continue
            serving = False
            for name in client.subs:
                if name in self._servable:
                    fanout.setdefault(name, []).append(client)
                    serving = True
            active += serving
        self._fanout = {k: tuple(v) for k, v in fanout.items()}
        self._active = active
        if self._listeners is not None:
            if active:
                self._listeners.set()
            else:
                self._listeners.clear()

    def _control(self, client: _Client, message: str | bytes) -> bytes:
        """Answer one client request like Binance does.

        {"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}
            -> {"result":null,"id":1}
        {"method":"LIST_SUBSCRIPTIONS","id":3} -> {"result":["btcusdt@aggTrade"],"id":3}
        errors: {"code":0..3,"msg":"...","id":...}
        """
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return orjson.dumps({"code": 3, "msg": f"Invalid JSON: {exc}"})
        if type(req) is not dict:
            return _error(2, "Invalid request: expected a JSON object")
        req_id = req.get("id")
        if not _valid_id(req_id):
            return _error(
                2,
                "Invalid request: request ID must be a signed 64-bit integer, an "
                "alphanumeric string of at most 36 characters, or null",
            )
        if "method" not in req:
            return _error(2, "Invalid request: missing field `method`", req_id)
        method = req["method"]
        params = req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if type(params) is not list or not all(type(p) is str for p in params):
                return _error(
                    2, "Invalid request: params must be a list of stream names", req_id
                )
            if method == "SUBSCRIBE":
                new = {canonical_stream(p) for p in params} - client.subs.keys()
                if len(client.subs) + len(new) > MAX_STREAMS:
                    return _error(
                        2,
                        f"Invalid request: at most {MAX_STREAMS} streams per "
                        "connection",
                        req_id,
                    )
                self._subscribe(client, params)
            else:
                gone = {canonical_stream(p) for p in params}
                for name in gone:
                    client.subs.pop(name, None)
                self._rebuild_fanout()
            return orjson.dumps({"result": None, "id": req_id})
        if method == "LIST_SUBSCRIPTIONS":
            return orjson.dumps({"result": list(client.subs), "id": req_id})
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            want = 2 if method == "SET_PROPERTY" else 1
            if type(params) is not list or len(params) != want:
                return _error(
                    2, f"Invalid request: {method} takes {want} parameter(s)", req_id
                )
            if type(params[0]) is not str:
                return _error(
                    2, "Invalid request: property name must be a string", req_id
                )
            if params[0] != "combined":
                return _error(0, "Unknown property", req_id)
            if method == "GET_PROPERTY":
                return orjson.dumps({"result": client.combined, "id": req_id})
            if type(params[1]) is not bool:
                return _error(1, "Invalid value type: expected Boolean", req_id)
            client.combined = params[1]
            return orjson.dumps({"result": None, "id": req_id})
        return _error(
            2,
            f"Invalid request: unknown variant {method!r}, expected one of "
            "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, "
            "`GET_PROPERTY`",
            req_id,
        )

    # -- encoding --------------------------------------------------------------

    def _encode(self, ev: TapeEvent) -> _Item:
        stream = f"{ev.symbol.lower()}@{ev.kind}"
        bare = exact_bytes(orjson.dumps(ev.data))
        return _Item(stream, bare, _wrap(stream.encode(), bare), ev)

    def _ensure_aggs(self) -> None:
        """Derive @aggTrade from the trade tape the first time someone asks."""
        if self._aggs is not None:
            return
        with self._aggs_lock:  # the REST thread may ask at the same time
            if self._aggs is None:
                self._derive_aggs()

    def _derive_aggs(self) -> None:
        started = time.perf_counter()
        trade_events = [
            (i, ev) for i, ev in enumerate(self.tape.events) if ev.kind == "trade"
        ]
        pairs = aggregate_trades_indexed(ev for _, ev in trade_events)
        index_of = {(ev.symbol, ev.trade_id): i for i, ev in trade_events}
        aggs: dict[int, _Item] = {}
        agg_first: dict[int, int] = {}
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for sub_index, agg in pairs:
            done_at = trade_events[sub_index][0]
            aggs[done_at] = self._encode(agg)
            agg_first[done_at] = index_of[(agg.symbol, agg.data["f"])]
            first.setdefault(agg.symbol, agg.trade_id)
            last[agg.symbol] = agg.trade_id
        self._agg_span = {s: last[s] - first[s] + 1 + self.loop_seam_ids for s in first}
        self._agg_first = agg_first
        self._aggs = aggs
        log.info(
            "replay: derived %d synthetic aggTrade events in %.2fs",
            len(aggs), time.perf_counter() - started,
        )

    def _aggtrade_sub_spans(self) -> dict[str, int]:
        """For aggTrade tapes: how far to shift f/l per loop pass."""
        spans: dict[str, int] = {}
        lo: dict[str, int] = {}
        hi: dict[str, int] = {}
        for ev in self.tape.events:
            if ev.kind == "aggTrade":
                first, last = ev.data.get("f"), ev.data.get("l")
                if isinstance(first, int) and isinstance(last, int):
                    lo[ev.symbol] = min(lo.get(ev.symbol, first), first)
                    hi[ev.symbol] = max(hi.get(ev.symbol, last), last)
        for sym in lo:
            spans[sym] = hi[sym] - lo[sym] + 1 + self.loop_seam_ids
        return spans

    def _variant(
        self, item: _Item, pass_index: int, micro: bool, derived: bool
    ) -> _Item:
        """Re-encode an event for a later loop pass and/or microsecond clients."""
        data = dict(item.event.data)
        if pass_index:
            sym = item.event.symbol
            shift_ms = pass_index * self._time_shift_ms
            data["T"] += shift_ms
            data["E"] += shift_ms
            if data.get("e") == "aggTrade":
                span = self._agg_span[sym] if derived else self._id_span[sym]
                data["a"] += pass_index * span
                sub = self._id_span[sym] if derived else self._sub_span.get(sym, 0)
                if "f" in data and "l" in data:
                    data["f"] += pass_index * sub
                    data["l"] += pass_index * sub
            else:
                data["t"] += pass_index * self._id_span[sym]
        if micro:
            data["T"] *= 1000
            data["E"] *= 1000
        bare = orjson.dumps(data)
        return _Item(item.stream, bare, _wrap(item.stream.encode(), bare), item.event)

    # -- the player --------------------------------------------------------------

    async def _run_player(self) -> None:
        """Walk the tape once per pass on the shared clock and fan events out."""
        aloop = asyncio.get_running_loop()
        listeners = self._listeners
        assert listeners is not None
        items = self._items
        n = len(items)
        speed = self.speed
        cap_ns = int(MAX_GAP_S * 1e9)
        skip = self.faults.skip
        skip_lo, skip_hi = (skip[0], skip[0] + skip[1]) if skip else (-1, -1)
        fault_positions = self._fault_positions()
        drop_every = self.faults.drop_every

        await listeners.wait()  # the clock starts at the first subscription
        clock0 = aloop.time()
        acc_s = 0.0
        prev_recv = items[0].event.recv_ns
        pass_index = 0
        since_yield = 0
        while True:
            for i in range(n):
                pos = self.position
                if not speed and not self._active:
                    await listeners.wait()  # faults, too, wait for someone to see them
                if pos in fault_positions:
                    shift = await self._fire_faults(pos)
                    clock0 += shift
                if drop_every and pos and pos % drop_every == 0:
                    self._drop_every(pos)
                item = items[i]
                recv = item.event.recv_ns
                if recv > prev_recv:
                    gap = recv - prev_recv
                    prev_recv = recv
                    if speed:
                        acc_s += min(gap, cap_ns) / 1e9 / speed
                if skip_lo <= pos < skip_hi:
                    self._record_skip(item, i)
                    self.position = pos + 1
                    continue
                if speed:
                    delay = clock0 + acc_s - aloop.time()
                    if delay > 0.0005:
                        await asyncio.sleep(delay)
                        since_yield = 0
                elif not self._active:
                    await listeners.wait()
                fanout = self._fanout
                clients = fanout.get(item.stream)
                if clients:
                    await self._deliver(clients, item, pass_index, False)
                agg = self._aggs.get(i) if self._aggs is not None else None
                if agg is not None:
                    if pos - i + self._agg_first[i] < skip_hi and pos >= skip_lo:
                        # some of its trades were skipped: the aggregate is lost too,
                        # so aggTrade clients see an id gap just like trade clients
                        agg_id = agg.event.trade_id
                        _extend_range(self.skipped_agg_ids, agg.event.symbol, agg_id)
                    else:
                        clients = fanout.get(agg.stream)
                        if clients:
                            await self._deliver(clients, agg, pass_index, True)
                self.played += 1
                self.position = pos + 1
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    await asyncio.sleep(0)
            if self.position in fault_positions:
                await self._fire_faults(self.position)
            if not self.loop:
                break
            pass_index += 1
            self.passes = pass_index + 1
            prev_recv = items[0].event.recv_ns
            if speed:
                acc_s += 1.0 / speed
            log.info("replay: looped pass %d (data is a looped recording)", self.passes)
        self.ended = True
        log.info(
            "replay: tape ended after %d events; connections stay open and silent",
            self.played,
        )

    async def _deliver(
        self, clients: tuple[_Client, ...], item: _Item, pass_index: int, derived: bool
    ) -> None:
        """Send one event to its subscribers.

        Writes go straight into each connection's buffer (no await) while it is
        small; at speed 0 a full buffer makes the player await that client, which
        is the backpressure that paces "as fast as the clients read".
        """
        speed0 = not self.speed
        plain: _Item | None = None if pass_index else item
        micro: _Item | None = None
        for client in clients:
            # The subscription may have changed while we awaited another client.
            if client.closing or item.stream not in client.subs:
                continue
            if client.micro:
                if micro is None:
                    micro = self._variant(item, pass_index, True, derived)
                chosen = micro
            else:
                if plain is None:
                    plain = self._variant(item, pass_index, False, derived)
                chosen = plain
            frame = chosen.wrapped if client.combined else chosen.bare
            await self._send(client, frame, speed0)

    async def _send(self, client: _Client, frame: bytes, wait: bool) -> None:
        conn = client.conn
        try:
            buffered = conn.transport.get_write_buffer_size()
            if buffered < WRITE_HIGH:
                broadcast((conn,), frame, text=True)
            elif wait:
                await conn.send(frame, text=True)
            elif buffered > SLOW_CLIENT_BYTES:
                log.warning(
                    "replay: client %d is %d bytes behind; closing",
                    client.cid,
                    buffered,
                )
                self._close_client(client, 1008, "Client too slow")
                return
            else:
                broadcast((conn,), frame, text=True)
            client.sent += 1
        except ConnectionClosed:
            self._forget(client)

    def _close_client(
        self, client: _Client, code: int, reason: str, delay: float = 0.0
    ) -> None:
        client.closing = True
        self._rebuild_fanout()

        async def close() -> None:
            try:
                if delay:
                    await asyncio.sleep(delay)
                await client.conn.close(code, reason)
            except asyncio.CancelledError:
                # Server stopping: do not sit out close_timeout waiting for a peer
                # that never answers the close frame.
                client.conn.transport.abort()
                raise

        task = asyncio.get_running_loop().create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- faults --------------------------------------------------------------------

    def _fault_positions(self) -> set[int]:
        plan = self.faults
        positions = {plan.drop_after, plan.shutdown_after}
        for pair in (plan.garbage, plan.silence, plan.duplicate, plan.bad_id,
                     plan.future_time):
            if pair is not None:
                positions.add(pair[0])
        positions.discard(None)
        return positions  # type: ignore[return-value]

    async def _fire_faults(self, pos: int) -> float:
        """Fire every fault planned at ``pos``; return seconds to shift the clock."""
        plan = self.faults
        fired = {f["fault"] for f in self.faults_fired}
        shift = 0.0
        if plan.garbage and plan.garbage[0] == pos and "garbage" not in fired:
            await self._fault_garbage(pos, plan.garbage[1])
        if plan.silence and plan.silence[0] == pos and "silence" not in fired:
            seconds = float(plan.silence[1])
            self._note_fault("silence", pos, seconds=seconds)
            log.warning("replay: fault silence for %.1fs after event %d", seconds, pos)
            assert self._silence_over is not None
            self._silence_over.clear()
            try:
                await asyncio.sleep(seconds)
            finally:
                self._silence_over.set()
            shift = seconds
        if plan.duplicate and plan.duplicate[0] == pos and "duplicate" not in fired:
            await self._fault_duplicate(pos, plan.duplicate[1])
        if plan.bad_id and plan.bad_id[0] == pos and "bad_id" not in fired:
            await self._fault_forged(pos, "bad_id", id_add=plan.bad_id[1], ms_add=0)
        if plan.future_time and plan.future_time[0] == pos and "future_time" not in fired:
            await self._fault_forged(pos, "future_time", id_add=1,
                                     ms_add=plan.future_time[1])
        if plan.shutdown_after == pos and "shutdown" not in fired:
            self._fault_shutdown(pos)
        if plan.drop_after == pos and "drop" not in fired:
            clients = [c for c in self._clients.values() if not c.closing]
            self._note_fault("drop", pos, clients=len(clients))
            log.warning("replay: fault drop: closing %d connection(s) after event %d",
                        len(clients), pos)
            for client in clients:
                self._close_client(client, 1000, "replay fault: drop")
        return shift

    async def _fault_duplicate(self, pos: int, count: int) -> None:
        n = len(self._items)
        lo = max(0, pos - count)
        self._note_fault("duplicate", pos, count=pos - lo)
        log.warning("replay: fault duplicate: resending events %d..%d", lo + 1, pos)
        for j in range(lo, pos):
            item = self._items[j % n]
            clients = self._fanout.get(item.stream)
            if clients:
                await self._deliver(clients, item, j // n, False)
                self.duplicates_sent += 1

    async def _fault_forged(self, pos: int, name: str, *, id_add: int, ms_add: int) -> None:
        """Send one forged copy of event ``pos`` (the last one played): id + id_add,
        T and E + ms_add. Trade tapes only (the ``@trade`` stream)."""
        n = len(self._items)
        j = max(pos - 1, 0)
        item = self._items[j % n]
        data = dict(item.event.data)
        key = "a" if data.get("e") == "aggTrade" else "t"
        data[key] += id_add + (j // n) * self._id_span[item.event.symbol]
        data["T"] += ms_add + (j // n) * self._time_shift_ms
        data["E"] += ms_add + (j // n) * self._time_shift_ms
        bare = orjson.dumps(data)
        forged = _Item(item.stream, bare, _wrap(item.stream.encode(), bare), item.event)
        clients = self._fanout.get(item.stream, ())
        self._note_fault(name, pos, symbol=item.event.symbol, trade_id=data[key],
                         time_ms=data["T"], clients=len(clients))
        log.warning("replay: fault %s: %s id %d T %d", name, item.event.symbol,
                    data[key], data["T"])
        for client in clients:
            if not client.closing and item.stream in client.subs:
                await self._send(client, forged.wrapped if client.combined else forged.bare,
                                 True)

    def _drop_every(self, pos: int) -> None:
        clients = [c for c in self._clients.values() if not c.closing]
        if not clients:
            return  # nobody connected (the client is reconnecting): nothing to drop
        self.drops += 1
        log.info("replay: fault drop-every: closing %d connection(s) after event %d",
                 len(clients), pos)
        for client in clients:
            self._close_client(client, 1000, "replay fault: drop every")

    def _note_fault(self, name: str, pos: int, **details: object) -> None:
        self.faults_fired.append({"fault": name, "position": pos, **details})

    async def _fault_garbage(self, pos: int, count: int) -> None:
        item = self._items[pos % len(self._items)]
        clients = [c for c in self._clients.values() if not c.closing]
        self._note_fault("garbage", pos, count=count, clients=len(clients))
        log.warning(
            "replay: fault garbage: %d bad frames to %d client(s)", count, len(clients)
        )
        for client in clients:
            for frame in garbage_frames(
                item.event.data, item.stream, count, combined=client.combined
            ):
                await self._send(client, frame, True)
                self.garbage_sent += 1

    def _fault_shutdown(self, pos: int) -> None:
        clients = [c for c in self._clients.values() if not c.closing]
        self._note_fault("shutdown", pos, clients=len(clients))
        log.warning("replay: fault serverShutdown to %d client(s)", len(clients))
        now_ms = int(time.time() * 1000)
        for client in clients:
            ev = {"e": "serverShutdown", "E": now_ms * 1000 if client.micro else now_ms}
            if client.combined:
                frame = orjson.dumps({"stream": "!serverShutdown", "data": ev})
            else:
                frame = orjson.dumps(ev)
            conn = client.conn
            broadcast((conn,), frame, text=True)
            self._close_client(client, 1001, "server shutdown", delay=SHUTDOWN_GRACE_S)

    def _record_skip(self, item: _Item, index: int) -> None:
        ev = item.event
        _extend_range(self.skipped_ids, ev.symbol, ev.trade_id)
        if self._aggs is not None and index in self._aggs:
            agg_id = self._aggs[index].event.trade_id
            _extend_range(self.skipped_agg_ids, ev.symbol, agg_id)
        if not any(f["fault"] == "skip" for f in self.faults_fired):
            skip = self.faults.skip
            assert skip is not None
            self._note_fault("skip", skip[0], count=skip[1])
            log.warning(
                "replay: fault skip: %d events after event %d", skip[1], skip[0]
            )


def _extend_range(ranges: dict[str, list[int]], symbol: str, trade_id: int) -> None:
    span = ranges.get(symbol)
    if span is None:
        ranges[symbol] = [trade_id, trade_id]
    else:
        span[0] = min(span[0], trade_id)
        span[1] = max(span[1], trade_id)


def _copy_ranges(ranges: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: list(v) for k, v in list(ranges.items())}


def _valid_id(req_id: object) -> bool:
    if req_id is None:
        return True
    if type(req_id) is int:
        return -(2**63) <= req_id < 2**63
    if type(req_id) is str:
        return len(req_id) <= 36 and req_id.isascii() and req_id.isalnum()
    return False


def _error(code: int, msg: str, req_id: object = None) -> bytes:
    reply: dict = {"code": code, "msg": msg}
    if req_id is not None:
        reply["id"] = req_id
    return orjson.dumps(reply)


def _peer(conn: ServerConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"


# ---------------------------------------------------------------------------
# Command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.replay",
        description="Replay recorded Binance trades over a local Binance-compatible "
        "WebSocket server.",
    )
    parser.add_argument(
        "files", nargs="*", type=Path,
        help="recordings (jsonl, raw capture, trades CSV, Binance dump); "
        "default: the sample_data spot BTCUSDT+ETHUSDT tapes",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--speed", type=float, default=1.0,
        help="1 = real time, 10 = ten times faster, 0 = as fast as clients read",
    )
    parser.add_argument(
        "--loop", action="store_true", help="restart at the end (ids/times shifted)"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="spot")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="client messages/s before close 1008 (default: profile; 0 = off)",
    )
    parser.add_argument("--ping-interval", type=float, default=None)
    parser.add_argument("--ping-timeout", type=float, default=None)
    faults = parser.add_argument_group("faults (each fires once)")
    faults.add_argument("--drop-after", type=int, metavar="N")
    faults.add_argument("--skip", type=int, nargs=2, metavar=("N", "K"))
    faults.add_argument("--garbage", type=int, nargs=2, metavar=("N", "K"))
    faults.add_argument("--silence", type=float, nargs=2, metavar=("N", "SECONDS"))
    faults.add_argument("--shutdown-after", type=int, metavar="N")
    faults.add_argument("--drop-every", type=int, metavar="N",
                        help="close every connection after each N events")
    faults.add_argument("--duplicate", type=int, nargs=2, metavar=("N", "K"),
                        help="after event N resend the K events before it")
    faults.add_argument("--bad-id", type=int, nargs=2, metavar=("N", "D"),
                        help="after event N send a copy of it with its id + D")
    faults.add_argument("--future-time", type=int, nargs=2, metavar=("N", "MS"),
                        help="after event N send a copy with id + 1 and times + MS")
    parser.add_argument(
        "--rest-port", type=int, default=None,
        help="HTTP port of the REST back-fill endpoints (default: --port + 1, or a free "
        "port printed at start if that one is taken; 0 picks a free port)",
    )
    parser.add_argument("--no-rest", action="store_true", help="no REST endpoints")
    parser.add_argument(
        "--rest-weight-limit", type=int, default=None,
        help="REST request weight per minute before 429 (default: Binance's, "
        "6000 spot / 2400 futures; 0 = unlimited)",
    )
    parser.add_argument(
        "--max-lifetime", type=float, default=None, metavar="SECONDS",
        help="close every connection after this long (Binance: 24 h)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: serve until Ctrl-C or SIGTERM."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    plan = FaultPlan(
        drop_after=args.drop_after,
        skip=tuple(args.skip) if args.skip else None,
        garbage=tuple(args.garbage) if args.garbage else None,
        silence=(int(args.silence[0]), args.silence[1]) if args.silence else None,
        shutdown_after=args.shutdown_after,
        drop_every=args.drop_every,
        duplicate=tuple(args.duplicate) if args.duplicate else None,
        bad_id=tuple(args.bad_id) if args.bad_id else None,
        future_time=tuple(args.future_time) if args.future_time else None,
    )
    optional: dict[str, float | None] = {}
    if args.rate_limit is not None:
        optional["rate_limit"] = args.rate_limit or None
    if args.ping_interval is not None:
        optional["ping_interval"] = args.ping_interval or None
    if args.ping_timeout is not None:
        optional["ping_timeout"] = args.ping_timeout or None
    if args.rest_weight_limit is not None:
        optional["rest_weight_limit"] = args.rest_weight_limit or None
    rest_port = args.rest_port
    if rest_port is None:  # default --port + 1, or any free port if that one is taken
        rest_port = args.port + 1 if args.port else 0
    files = args.files or default_sample_files()
    server = ReplayServer(
        files, host=args.host, port=args.port, speed=args.speed, loop=args.loop,
        profile=args.profile, faults=plan, rest=not args.no_rest, rest_port=rest_port,
        max_lifetime_s=args.max_lifetime, rest_port_fallback=args.rest_port is None,
        **optional,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("replay: signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    tape = server.tape
    kinds = "+".join(sorted({name.split("@", 1)[1] for name in server.streams}))
    prefix = "/market" if args.profile == "futures" else ""
    example = f"{server.ws_base}{prefix}/stream?streams=" + "/".join(
        f"{s.lower()}@{tape.kind_of[s]}" for s in tape.symbols
    )
    print(
        f"{server.ws_base} replaying {len(tape)} events of {','.join(tape.symbols)} "
        f"({kinds}) speed={'max' if not args.speed else args.speed} "
        f"loop={'on' if args.loop else 'off'} profile={args.profile}; try {example}"
        + (f"; REST {server.rest_base}" if server.rest_base else ""),
        flush=True,
    )
    if server.rest is not None and server.rest.fell_back_from is not None:
        print(f"REST port {server.rest.fell_back_from} is taken: REST listens on "
              f"{server.rest_base} instead", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
