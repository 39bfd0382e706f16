"""The replay exchange's WebSocket server: one shared player, many clients.

Like the exchange, there is ONE shared clock: a single player task walks the
merged tape and fans every event out to the clients subscribed to its stream. A
client that connects late sees the market from "now" on, not from the start.

* ``speed > 0``: events are paced by the recorded receive-time gaps divided by
  ``speed`` (each gap capped at 5 s). The clock starts at the first subscription
  and then keeps running with or without clients, as on Binance.
* ``speed == 0``: as fast as the clients read (per-client backpressure). There is
  no clock, so the player PAUSES whenever nobody is subscribed to a stream the
  tape can serve: a client that reconnects continues exactly where it left off.

Two markets, one server: a tape may hold spot and USD-M futures events; a connection
on ``/market/…`` or ``/public/…`` sees only the futures events, any other path only the
spot ones (a one-market tape serves every path). ``@bookTicker`` events play in tape
order with the trades. Like Binance since its 2026 "Base URL split", ``/public/…``
delivers only the book streams and ``/market/…`` only the others (a book stream
subscribed there is acknowledged but never delivered); the root paths serve both
(:func:`~ingest.replay.protocol.prefix_serves`). :meth:`ReplayServer.tape_clock_ms` is the tape's time of "now"
in Binance's frame (docs/replay.md).

The protocol's replies live in :mod:`ingest.replay.protocol`, the frames in
:mod:`ingest.replay.frames`, loop-pass shifting in :mod:`ingest.replay.loop`, fault
injection in :mod:`ingest.replay.faults` and the REST side in :mod:`ingest.replay.rest`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.replay.faults import FaultInjection, FaultPlan, copy_ranges, extend_range
from ingest.replay.frames import Item, encode_event, wrap
from ingest.replay.loop import (
    aggtrade_sub_spans,
    book_id_spans,
    id_range_spans,
    pass_time_shift_ms,
    shift_event,
    trade_id_spans,
)
from ingest.replay.protocol import (
    PROFILE_DEFAULT,
    PROFILES,
    Client,
    Profile,
    answer_control,
    canonical_stream,
    parse_path,
    prefix_serves,
)
from ingest.replay.tapes import (
    BOOK_KIND,
    MARKETS,
    Tape,
    aggregate_trades_indexed,
    load_tape,
)

log = logging.getLogger(__name__)

MAX_GAP_S = 5.0  # a recorded pause longer than this is replayed as 5 s
STOP_WAIT_S = 1.0
YIELD_EVERY = 64  # at speed 0, give the event loop a turn this often
WRITE_HIGH = 512 * 1024  # per-client buffer above which speed 0 waits for the client
SLOW_CLIENT_BYTES = 64 * 1024 * 1024  # speed > 0: drop a client this far behind


class ReplayServer(FaultInjection):
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
        default_market: str | None = None,
        wait_markets: Iterable[str] = (),
    ) -> None:
        if profile == "perp":  # the market's name for the futures profile
            profile = "futures"
        if profile not in PROFILES:
            raise ValueError(f"invalid profile {profile!r}: expected spot or futures")
        if not speed >= 0:
            raise ValueError(
                f"speed must be >= 0 (0 = as fast as clients read), got {speed}"
            )
        if isinstance(tape_or_paths, Tape):
            self.tape = tape_or_paths
        else:
            if default_market is None and profile == "futures":
                default_market = "perp"
            self.tape = load_tape(tape_or_paths, default_market=default_market)
        if len(self.tape) == 0:
            raise ValueError("cannot replay an empty tape")
        #: the markets the tape holds; a one-market tape serves it on every path
        self.markets: tuple[str, ...] = self.tape.markets
        self._only_market = self.markets[0] if len(self.markets) == 1 else None
        #: markets that must each have a subscribed client before the player runs
        #: (the app's own replay: one feed per market; none may miss the start)
        self.wait_markets = frozenset(
            "perp" if m in ("perp", "futures") else m for m in wait_markets
        ) & frozenset(self.markets) if self._only_market is None else frozenset()
        self.host, self.speed, self.profile = host, float(speed), profile
        self.loop = loop
        self.faults = faults or FaultPlan()
        defaults = PROFILES[profile]

        def pick(name: str, value: float | None | str) -> float | None:
            return defaults[name] if value == PROFILE_DEFAULT else value  # type: ignore

        self.rate_limit = pick("rate_limit", rate_limit)
        #: per market: a tape of both markets holds each connection to its own market's
        #: Binance limit (spot 5, futures 10 messages/s) unless one was given
        self.rate_limits: dict[str, float | None] = dict.fromkeys(MARKETS, self.rate_limit)
        if rate_limit == PROFILE_DEFAULT and self._only_market is None:
            self.rate_limits = {
                "spot": PROFILES["spot"]["rate_limit"],
                "perp": PROFILES["futures"]["rate_limit"],
            }
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
            from ingest.replay.rest import WEIGHT_LIMITS, RestServer

            if rest_weight_limit != PROFILE_DEFAULT:
                limits = {m: rest_weight_limit for m in MARKETS}
            elif self._only_market is not None:  # as before: the profile's limit
                limits = {m: WEIGHT_LIMITS[profile] for m in MARKETS}
            else:  # each market's own Binance limit
                limits = {"spot": WEIGHT_LIMITS["spot"], "perp": WEIGHT_LIMITS["futures"]}
            self.rest = RestServer(
                self, host=host, port=rest_port,
                weight_limit=limits["spot" if profile == "spot" else "perp"],  # type: ignore
                weight_limits=limits,  # type: ignore[arg-type]
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

        tape = self.tape
        kind_of = tape.kind_of
        servable: set[tuple[str, str]] = set()
        for name in tape.symbols:
            market, symbol = tape.instrument_of[name]
            servable.add((market, f"{symbol.lower()}@{kind_of[name]}"))
            if kind_of[name] == "trade":
                servable.add((market, f"{symbol.lower()}@aggTrade"))
        for name in tape.book_counts:
            market, symbol = tape.instrument_of[name]
            servable.add((market, f"{symbol.lower()}@{BOOK_KIND}"))
        self._servable = frozenset(servable)
        self._items: list[Item] = []
        # tape index of an aggregate's last trade -> the aggregate / its first trade
        self._aggs: dict[int, Item] | None = None
        self._agg_first: dict[int, int] = {}
        self._agg_span: dict[str, int] = {}
        if type(loop_seam_ids) is not int or loop_seam_ids < 0:
            raise ValueError(f"loop_seam_ids must be an int >= 0, got {loop_seam_ids!r}")
        self.loop_seam_ids = loop_seam_ids
        # Each pass moves ids by the tape's span plus the seam (ids nobody ever has)
        # and times by the tape's duration + 1 s (ingest/replay/loop.py).
        self._id_span = trade_id_spans(self.tape, loop_seam_ids)
        self._id_span.update(
            {f"{n}@{BOOK_KIND}": span for n, span in book_id_spans(self.tape).items()}
        )
        self._sub_span = aggtrade_sub_spans(
            self.tape.events, loop_seam_ids, self.tape.name_of
        )
        self._time_shift_ms = pass_time_shift_ms(self.tape)

        self._tasks: set[asyncio.Task] = set()
        self._clients: dict[int, Client] = {}
        self._fanout: dict[tuple[str, str], tuple[Client, ...]] = {}
        self._next_cid = 1
        #: distinct servable streams that must be subscribed before the player runs
        #: (set before :meth:`start`; 0 = any subscription starts it)
        self.wait_streams = 0
        self._active = 0
        self._listeners: asyncio.Event | None = None
        self._silence_over: asyncio.Event | None = None

        self.played = 0
        self.played_by_market: dict[str, int] = dict.fromkeys(self.markets, 0)
        self.position = 0
        self.passes = 1
        # the shared clock in tape terms (tape_clock_ms): the receive time reached,
        # the one the player is waiting for and the wall time it is due at
        first_recv = self.tape.events[0].recv_ns
        self._clock_recv_ns = first_recv
        self._clock_target_ns = first_recv
        self._clock_due = 0.0
        self._clock_pass = 0
        self._clock_last_ms = -(2**62)
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
        name_of = self.tape.name_of
        self._items = [encode_event(ev, name_of(ev)) for ev in self.tape.events]
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
        """``ws://host:port``: pass it as ``base_url`` to ``FeedProtocol.stream_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def url(
        self, kind: str = "trade", *, combined: bool = True, market: str | None = None
    ) -> str:
        """URL subscribing to ``kind`` for every symbol of the tape (of ``market``:
        needed when the tape holds two; perp URLs carry the ``/market`` prefix)."""
        if market == "futures":
            market = "perp"
        if market is None:
            if self._only_market is None:
                raise ValueError(
                    f"the tape holds markets {list(self.markets)}: pass market="
                )
            market = self._only_market
        symbols = sorted(
            {s for m, s in self.tape.instruments if m == market}
        )
        names = "/".join(f"{s.lower()}@{kind}" for s in symbols)
        prefix = "/market" if market == "perp" and self._only_market is None else ""
        if combined:
            return f"{self.ws_base}{prefix}/stream?streams={names}"
        return f"{self.ws_base}{prefix}/ws/{names}"

    @property
    def rest_base(self) -> str | None:
        """``http://host:port`` of the REST back-fill endpoints (None if off)."""
        return None if self.rest is None else self.rest.base

    @property
    def time_shift_ms(self) -> int:
        """How far each loop pass moves trade times forward."""
        return self._time_shift_ms

    def id_span(self, symbol: str, kind: str, derived: bool) -> int:
        """How far each loop pass moves ``symbol``'s ids of ``kind`` forward
        (``symbol``: the tape's name, ``perp:BTCUSDT`` when on two markets)."""
        if kind == "aggTrade" and derived:
            self._ensure_aggs()
            return self._agg_span[symbol]
        if kind == BOOK_KIND:
            return self._id_span[f"{symbol}@{BOOK_KIND}"]
        return self._id_span[symbol]

    def sub_span(self, symbol: str, derived: bool) -> int:
        """How far each loop pass moves an aggregate's ``f``/``l`` trade ids."""
        return self._id_span[symbol] if derived else self._sub_span.get(symbol, 0)

    def derived_aggregates(self) -> dict[int, Item]:
        """Tape index of an aggregate's last trade -> the aggregate (derived once)."""
        self._ensure_aggs()
        assert self._aggs is not None
        return self._aggs

    @property
    def streams(self) -> list[str]:
        """Stream names this tape can serve (aggTrade is derived from trades); with
        two markets each is prefixed by its market (``perp:btcusdt@trade``)."""
        if self._only_market is not None:
            return sorted(stream for _, stream in self._servable)
        return sorted(f"{m}:{stream}" for m, stream in self._servable)

    def tape_clock_ms(self) -> int:
        """The tape time of "now" on the shared clock, in the EXCHANGE's time frame.

        ``receive time reached by the player + tape.clock_offset_ms + pass × (duration
        + 1 s)``, where at ``speed > 0`` the receive time moves with the wall clock
        towards the next event (``× speed``, never past it): the recorded receive
        clock mapped onto Binance's by the tape's offset (median ``E − receive``; the
        2024 capture host ran ~1.27 s behind). Spot bookTicker frames carry no time,
        so the feed stamps them with this in replay. Never goes backwards; callable
        from any thread.
        """
        recv_ns = self._clock_recv_ns
        target_ns = self._clock_target_ns
        if self.speed and target_ns > recv_ns:
            left_s = self._clock_due - time.monotonic()
            ahead = target_ns - max(left_s, 0.0) * self.speed * 1e9
            recv_ns = max(recv_ns, min(int(ahead), target_ns))
        now_ms = (
            recv_ns // 1_000_000
            + self.tape.clock_offset_ms
            + self._clock_pass * self._time_shift_ms
        )
        if now_ms < self._clock_last_ms:
            return self._clock_last_ms
        self._clock_last_ms = now_ms
        return now_ms

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
            "markets": self._market_status(),
            "tape_clock_ms": self.tape_clock_ms(),
            "faults_fired": [dict(f) for f in list(self.faults_fired)],
            "skipped_ids": copy_ranges(self.skipped_ids),
            "skipped_agg_ids": copy_ranges(self.skipped_agg_ids),
            "garbage_sent": self.garbage_sent,
            "duplicates_sent": self.duplicates_sent,
            "drops": self.drops,
            "lifetime_closes": self.lifetime_closes,
            "rest": None if self.rest is None else self.rest.status(),
        }

    def _market_status(self) -> dict[str, dict]:
        tape = self.tape
        out: dict[str, dict] = {}
        for market in self.markets:
            names = [tape.names[k] for k in tape.instruments if k[0] == market]
            out[market] = {
                "symbols": sorted(tape.instrument_of[n][1] for n in names),
                "names": sorted(names),
                "events": sum(tape.counts.get(n, 0) + tape.book_counts.get(n, 0)
                              for n in names),
                "trade_events": sum(tape.counts.get(n, 0) for n in names),
                "book_events": sum(tape.book_counts.get(n, 0) for n in names),
                "played": self.played_by_market.get(market, 0),
                "ws_prefix": "" if market == "spot" or self._only_market else "/market",
                "rest": None if self.rest is None else self.rest.market_status(market),
            }
        return out

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
        market = self._only_market or route.market
        client = Client(conn, self._next_cid, route.combined, route.micro, market,
                        prefix=route.prefix)
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
                limit = self.rate_limits[client.market]
                if limit and self._over_rate_limit(client, limit):
                    log.warning(
                        "replay: client %d sent more than %s messages/s; closing 1008",
                        client.cid, limit,
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

    async def _expire(self, client: Client) -> None:
        """Binance's 24 h connection lifetime (shortened by ``max_lifetime_s``)."""
        assert self.max_lifetime_s is not None
        await asyncio.sleep(self.max_lifetime_s)
        if client.closing or client.cid not in self._clients:
            return
        self.lifetime_closes += 1
        log.info("replay: client %d reached the max connection lifetime (%.1fs)",
                 client.cid, self.max_lifetime_s)
        self._close_client(client, 1000, "max connection lifetime")

    def _over_rate_limit(self, client: Client, limit: float) -> bool:
        now = time.monotonic()
        times = client.msg_times
        times.append(now)
        while times and now - times[0] > 1.0:
            times.popleft()
        return len(times) > limit

    def _forget(self, client: Client) -> None:
        client.closing = True
        if self._clients.pop(client.cid, None) is not None:
            self._rebuild_fanout()

    def _subscribe(self, client: Client, names: Iterable[str]) -> None:
        for name in names:
            canon = canonical_stream(name)
            client.subs.setdefault(canon)
            if canon.endswith("@aggTrade") and (client.market, canon) in self._servable:
                self._ensure_aggs()
        self._rebuild_fanout()

    def _rebuild_fanout(self) -> None:
        fanout: dict[tuple[str, str], list[Client]] = {}
        active = 0
        served: set[str] = set()
        for client in self._clients.values():
            if client.closing:
                continue
            serving = False
            for name in client.subs:
                key = (client.market, name)
                if key in self._servable and prefix_serves(client.prefix, name):
                    fanout.setdefault(key, []).append(client)
                    serving = True
                    served.add(client.market)
            active += serving
        self._fanout = {k: tuple(v) for k, v in fanout.items()}
        # wait_markets: the player starts (and at speed 0 runs) only while every one
        # of those markets has a client; wait_streams: and that many streams are
        # subscribed (an app whose market's streams are split over several
        # connections, subscribed in paced batches: none may miss the start)
        ready = self.wait_markets <= served and len(fanout) >= self.wait_streams
        self._active = active if ready else 0
        if self._listeners is not None:
            if self._active:
                self._listeners.set()
            else:
                self._listeners.clear()

    def servable(self, market: str, stream: str) -> bool:
        """Whether the tape can feed ``stream`` (``btcusdt@trade``) on ``market``'s
        paths: what a client counting ``wait_streams`` may count."""
        market = "perp" if market in ("perp", "futures") else market
        return (self._only_market or market, canonical_stream(stream)) in self._servable

    def _control(self, client: Client, message: str | bytes) -> bytes:
        """Answer one control request (ingest/replay/protocol.py)."""
        return answer_control(
            client, message, subscribe=self._subscribe, unsubscribed=self._rebuild_fanout
        )

    # -- encoding --------------------------------------------------------------

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
        index_of = {(ev.market, ev.symbol, ev.trade_id): i for i, ev in trade_events}
        name_of = self.tape.name_of
        aggs: dict[int, Item] = {}
        agg_first: dict[int, int] = {}
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for sub_index, agg in pairs:
            done_at = trade_events[sub_index][0]
            name = name_of(agg)
            aggs[done_at] = encode_event(agg, name)
            agg_first[done_at] = index_of[(agg.market, agg.symbol, agg.data["f"])]
            first.setdefault(name, agg.trade_id)
            last[name] = agg.trade_id
        self._agg_span = id_range_spans(first, last, self.loop_seam_ids)
        self._agg_first = agg_first
        self._aggs = aggs
        log.info(
            "replay: derived %d synthetic aggTrade events in %.2fs",
            len(aggs), time.perf_counter() - started,
        )

    def _variant(
        self, item: Item, pass_index: int, micro: bool, derived: bool
    ) -> Item:
        """Re-encode an event for a later loop pass and/or microsecond clients."""
        data = item.event.data
        sym = item.name
        if item.event.kind == BOOK_KIND:
            span, sub = self._id_span[f"{sym}@{BOOK_KIND}"], 0
        elif data.get("e") == "aggTrade":
            span = self._agg_span[sym] if derived else self._id_span[sym]
            sub = self._id_span[sym] if derived else self._sub_span.get(sym, 0)
        else:
            span, sub = self._id_span[sym], 0
        data = shift_event(
            data, pass_index, time_shift_ms=self._time_shift_ms, id_span=span, sub_span=sub
        )
        if micro:
            for key in ("T", "E"):
                if key in data:
                    data[key] *= 1000
        bare = orjson.dumps(data)
        return Item(
            item.stream, bare, wrap(item.stream.encode(), bare), item.event, item.name,
            item.route,
        )

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
        # tape_clock_ms reads time.monotonic(); the loop's clock may be another one
        mono_minus_loop = time.monotonic() - clock0
        acc_s = 0.0
        prev_recv = items[0].event.recv_ns
        pass_index = 0
        since_yield = 0
        played_by_market = self.played_by_market
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
                    self._clock_recv_ns = prev_recv
                    prev_recv = recv
                    if speed:
                        acc_s += min(gap, cap_ns) / 1e9 / speed
                        self._clock_due = clock0 + acc_s + mono_minus_loop
                    self._clock_target_ns = recv
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
                self._clock_recv_ns = prev_recv  # this event's moment has come
                fanout = self._fanout
                clients = fanout.get(item.route)
                if clients:
                    await self._deliver(clients, item, pass_index, False)
                agg = self._aggs.get(i) if self._aggs is not None else None
                if agg is not None:
                    if pos - i + self._agg_first[i] < skip_hi and pos >= skip_lo:
                        # some of its trades were skipped: the aggregate is lost too,
                        # so aggTrade clients see an id gap just like trade clients
                        agg_id = agg.event.trade_id
                        extend_range(self.skipped_agg_ids, agg.name, agg_id)
                    else:
                        clients = fanout.get(agg.route)
                        if clients:
                            await self._deliver(clients, agg, pass_index, True)
                self.played += 1
                played_by_market[item.route[0]] += 1
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
            self._clock_recv_ns = self._clock_target_ns = prev_recv
            self._clock_pass = pass_index
            if speed:
                acc_s += 1.0 / speed
            log.info("replay: looped pass %d (data is a looped recording)", self.passes)
        self.ended = True
        log.info(
            "replay: tape ended after %d events; connections stay open and silent",
            self.played,
        )

    async def _deliver(
        self, clients: tuple[Client, ...], item: Item, pass_index: int, derived: bool
    ) -> None:
        """Send one event to its subscribers.

        Writes go straight into each connection's buffer (no await) while it is
        small; at speed 0 a full buffer makes the player await that client, which
        is the backpressure that paces "as fast as the clients read".
        """
        speed0 = not self.speed
        plain: Item | None = None if pass_index else item
        micro: Item | None = None
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

    async def _send(self, client: Client, frame: bytes, wait: bool) -> None:
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
        self, client: Client, code: int, reason: str, delay: float = 0.0
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


def _peer(conn: ServerConnection) -> str:
    try:
        host, port = conn.remote_address[:2]
    except (TypeError, ValueError):
        return "?"
    return f"{host}:{port}"
