"""Build and run the ingest side of the app (shared by ``app.py`` and ``python -m ingest``).

A :class:`Runtime` owns, in start order: the SQLite store (writer thread), the market
engine, the :class:`~ingest.pipeline.Ingestor` (rings, restore, bar clock), and one
source of trades:

* live: one :class:`~ingest.feeds.pool.FeedPool` per market of the run's
  :class:`~analytics.instruments.Universe` (the protocol from the feed registry,
  ``ingest.feeds.feed_protocol``) with that market's bare symbols, on the venue's URL
  (or that market's ``--feed-url``): connections of at most
  ``--streams-per-connection`` streams, each a ``TradeFeed`` with its own reconnects,
  resume ids and gap count, one REST back-fill and status per market
  (docs/markets.md#connections);
* replay: the built-in :class:`~ingest.replay.server.ReplayServer` on a free loopback port,
  and one ``TradeFeed`` per market pointed at it (``ws_base`` + the market's path), so
  the real client code runs offline; without files it plays the bundled spot AND perp
  tapes (only ``--market``'s when given);
* follow (``--no-ingest``): a :class:`~ingest.pipeline.DbFollower` over a DB that
  another process writes, or with ``--bus`` a :class:`~ingest.bus.follow.BusFeed`
  over the live bus that process publishes to (``ingest/bus/``).

With ``--bus``, an ingesting runtime also publishes what its ingestor accepts and
closes (the ingestor's ``tap``); the bus is checked before anything is opened, so a
bus that does not answer is a clear error at start. A follower whose bus is down
serves what it restored and says so in ``/api/health`` (``bus``) until it comes.

**Universes that follow the market** (``--symbols top:N`` / ``all``, C1 in
``ingest/universe.py``): a dynamic spec is resolved at start against each market's REST
(``--rest-url``, the venue's, or the replay's); when that fails the instruments the
store already holds of those markets are used (a warning; the REST is asked again after
30 s, 60 s, ... until it answers, then they join), else the start fails naming the URL. A ``UniverseRefresher`` re-resolves it every ``--universe-refresh`` seconds and
:meth:`Runtime.add_instruments` joins new listings without a restart: the universe is
*extended* (names never change), then the store's names, the ingestor's rings, engine
series and name map, and the market's feed pool subscribes them.

Swapping the source never touches analytics or pages: they read the ingestor's rings
and the engine's snapshots only.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time

from analytics.engine import MarketEngine
from analytics.instruments import Instrument, Universe, normalize_market
from ingest.alert_service import AlertService
from ingest.feeds import FeedProtocol, feed_protocol
from ingest.feeds.client import TradeFeed
from ingest.feeds.pool import FeedPool
from ingest.pipeline import DbFollower, Ingestor
from ingest.process.memory import HeapTrimmer, tune_malloc
from ingest.process.writer_lock import WriterLock, WriterLockHeld, forget_in_child
from ingest.store import SchemaError, StoreUnavailable, backend_for, open_store
from ingest.store.postgres_lock import WriterHeld

log = logging.getLogger(__name__)
#: A bus worker calls the ingest process's feed down when its health (sent every
#: second) is older than this.
BUS_HEALTH_STALE_S = 5.0
#: First retry of the REST after a start that fell back on the store's instruments.
UNIVERSE_RETRY_S = 30.0


class Runtime:
    """Everything that ingests, stores and computes, minus the web server."""

    def __init__(self, cfg) -> None:
        tune_malloc()  # before any thread of ours exists (ingest/process/memory.py)
        self.cfg = cfg
        self.replay = None
        # one feed pool (connections) and back-fill per market, keyed "spot" / "perp"
        self.feeds: dict[str, FeedPool] = {}
        self.backfills: dict = {}
        self.follower: DbFollower | None = None
        self.publisher = None  # ingest/bus BusPublisher (--bus, ingesting)
        self.bus_feed = None  # ingest/bus/follow.BusFeed (--bus --no-ingest)
        if cfg.bus and cfg.ingest:  # before any file or lock: a clear error at start
            from ingest.bus import BusUnavailable, probe

            try:
                probe(cfg.bus)
            except BusUnavailable as exc:
                raise SystemExit(f"error: --bus: {exc}") from None
        universe, market, stream = cfg.universe, cfg.market, cfg.stream
        if cfg.ingest and cfg.replay is not None:
            universe, market, stream = self._make_replay(cfg)
        self.universe_spec = getattr(cfg, "universe_spec", None)
        self.refresher = None  # UniverseRefresher (dynamic spec, ingesting)
        self._add_lock = threading.Lock()
        self._stopping = threading.Event()  # stop(): ends the universe retry
        self._replay_started = False
        universe_error = None
        if cfg.ingest and self._dynamic:
            universe, universe_error = self._resolve_universe(universe)
        self.universe: Universe = universe
        self.market, self.stream = market, stream
        # the registry's protocol per market (fails here, naming the known feeds); the
        # default market's first: a one-market run has exactly one
        protocol = feed_protocol(market=market)  # the default venue (Binance)
        self.feed_protocols: dict[str, FeedProtocol] = {
            m: feed_protocol(market=m) for m in universe.markets
        } if cfg.ingest else {protocol.market: protocol}
        readonly = not cfg.ingest
        try:  # before any file is made: a URL this build cannot open
            db_file = backend_for(cfg.db).local_file(cfg.db)
        except StoreUnavailable as exc:
            raise SystemExit(f"error: --db: {exc}") from None
        if readonly and db_file is not None and not db_file.exists():
            raise SystemExit(f"--no-ingest: database {cfg.db} does not exist")
        self.writer_lock: WriterLock | None = None
        if not readonly and db_file is not None:
            try:
                self.writer_lock = WriterLock(db_file).acquire()
            except WriterLockHeld as exc:
                raise SystemExit(f"error: {exc}") from None
        # Trades/bars/gaps (writer thread), uploaded datasets (never mixed into the
        # live ticks) and alerts: one database, the backend picked from --db
        # (ingest/store/). Bare symbols and rows from before instruments are on the
        # run's market.
        try:
            stores = open_store(cfg.db, readonly=readonly, market=protocol.market)
            if readonly and not cfg.market_given:  # follow the market the writer writes
                held = {inst.market for inst in stores.trades.instruments()}
                if len(held) == 1 and held != {protocol.market}:
                    stores.close()
                    stores = open_store(cfg.db, readonly=True, market=held.pop())
        except (SchemaError, WriterHeld) as exc:  # WriterHeld: a server's writer lock
            raise SystemExit(f"error: {exc}") from None
        except StoreUnavailable as exc:  # e.g. a database server that does not answer
            raise SystemExit(f"error: --db: {exc}") from None
        self.store, self.datasets = stores.trades, stores.datasets
        #: the start fell back on the store's instruments (the REST did not answer)
        self.universe_fallback = universe_error
        if universe_error is not None:
            self.universe = self._stored_universe(universe_error, stores)
            self.feed_protocols = {m: feed_protocol(market=m) for m in self.universe.markets}
        if readonly:  # a follower shows what the writer stores
            held = self.store.instruments()
            if held:
                self.universe = Universe(held, self.store.default_market)
        # store names = run names (C1); before the restore reads any name
        self.store.use_universe(self.universe)
        self.symbols = self.universe.names
        self.engine = MarketEngine(list(self.symbols))
        self.ingestor = Ingestor(
            list(self.symbols),
            self.store,
            self.engine,
            ring_capacity=cfg.ring_capacity,
            write=not readonly,
            universe=self.universe,
        )
        # Alert rules and events (same DB file, own tables and connection); evaluated
        # where trades are ingested (with --no-ingest, by the ingesting process).
        self.alerts = AlertService(
            self.engine, self.ingestor, stores.alerts, evaluate=cfg.ingest
        )
        # Alert delivery (#20): the outbox worker of the ingesting process, on its own
        # thread and store connection (ingest/delivery/worker.py)
        self.delivery = None
        if cfg.ingest and not readonly:
            from ingest.delivery.worker import DeliverySettings, DeliveryWorker
            from ingest.store import open_alert_store

            self.delivery = DeliveryWorker(
                lambda: open_alert_store(cfg.db),
                DeliverySettings(
                    max_age_s=getattr(cfg, "delivery_max_age_s", 3600.0),
                    timeout_s=getattr(cfg, "delivery_timeout_s", 10.0),
                    cap_s=getattr(cfg, "delivery_backoff_cap_s", 300.0),
                ),
            )
            self.alerts.delivery = self.delivery
        self.feed_url: str | None = None
        self.started_ms = int(time.time() * 1000)
        self.memory = HeapTrimmer()
        self.memory.held = self._buffer_bytes  # /api/health process.buffers_mb
        # Dash background callbacks (ADF, backtests, screens) run in forked processes.
        # A fork copies only the forking thread: a lock another thread held at that
        # moment would stay locked forever in the child, and SQLite connections must not
        # cross a fork. So the child gets fresh locks and opens its own connections.
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _make_replay(self, cfg) -> tuple[Universe, str, str]:
        """The replay server (C2) and what it implies: the universe (the tape's
        instruments unless ``--symbols``), the default market, the stream kind."""
        from ingest.replay import APP_LOOP_SEAM_IDS, ReplayServer
        from ingest.replay.tapes import default_sample_files, load_tape, shift_times

        market = cfg.market if cfg.market_given else "spot"
        if getattr(cfg, "replay_universe", 0):  # a wide tape (C2), futures by default
            from ingest.replay.wide import wide_tape

            market = cfg.market if cfg.market_given else "futures"
            tape = wide_tape(cfg.replay_universe, market=normalize_market(market))
        else:  # no files: both markets' bundled tapes, or only --market's
            files = list(cfg.replay) or default_sample_files(
                normalize_market(cfg.market) if cfg.market_given else None)
            tape = load_tape(files, default_market=normalize_market(market))
        if cfg.replay_rebase:
            tape = shift_times(tape, int(time.time() * 1000) - tape.first_time_ms)
        held = tape.markets
        if not cfg.market_given and len(held) == 1:  # a one-market recording's own
            market = "futures" if held[0] == "perp" else held[0]
        universe = tape_universe(tape, market)
        if cfg.symbols_given:  # bare symbols on the recording's market
            universe = Universe.parse(cfg.symbols, market)
        stream = cfg.stream
        if not cfg.stream_given:
            stream = "trade" if "trade" in tape.kinds else "aggTrade"
        self.replay = ReplayServer(
            tape,
            port=0,
            speed=cfg.replay_speed,
            loop=cfg.replay_loop,
            profile=market,
            # a wide tape loops without a seam: 300 instruments back-filling a seam
            # nobody can fill would hold the REST weight limit every pass
            loop_seam_ids=APP_LOOP_SEAM_IDS if cfg.replay_loop and not getattr(
                cfg, "replay_universe", 0) else 0,
            # one feed per market: the tape starts once each has subscribed, so none
            # misses its first trades (two markets at --replay-speed 0)
            wait_markets=universe.markets,
        )
        return universe, market, stream

    # ------------------------------------------------------------------ universes (C1)
    @property
    def _dynamic(self) -> bool:
        spec = self.universe_spec
        return spec is not None and bool(getattr(spec, "dynamic", False))

    def universe_rest_bases(self) -> dict[str, str]:
        """Per market of the spec: where ``exchangeInfo`` and the 24 h ticker are asked
        (``--rest-url``, else the replay's REST, else the venue's)."""
        markets = {sel.market for sel in self.universe_spec.selectors}
        out = {}
        for market in sorted(markets):
            rest = self.cfg.rest_url_for(market) if hasattr(self.cfg, "rest_url_for") \
                else None
            if not rest or rest == "off":
                if self.replay is not None and self.replay.rest_base is not None:
                    rest = self.replay.rest_base
                else:
                    rest = feed_protocol(market=market).rest_base
            out[market] = rest
        return out

    def _resolve_universe(self, explicit: Universe) -> tuple[Universe, str | None]:
        """A dynamic spec's instruments (explicit ones first), or the error that the
        store's instruments must stand in for (:meth:`_stored_universe`)."""
        from ingest.universe import UniverseUnavailable, resolve_universe

        if self.replay is not None and not self._replay_started:
            self.replay.start()  # its REST answers exchangeInfo / the 24 h ticker
            self._replay_started = True
        bases = self.universe_rest_bases()
        try:
            insts = resolve_universe(self.universe_spec, bases)
        except UniverseUnavailable as exc:
            return explicit, str(exc)
        if not insts:  # a market listing nothing of the spec: as good as unreachable
            return explicit, "no instrument listed at " + ", ".join(bases.values())
        universe = Universe(insts, explicit.default_market)
        log.info("universe: %d instruments from %s", len(universe), ", ".join(
            f"{m}={u}" for m, u in bases.items()))
        return universe, None

    def _stored_universe(self, error: str, stores) -> Universe:
        """The REST did not answer at start: the instruments the store holds on the
        spec's markets (plus the explicit ones), with a warning; none: a clear exit."""
        markets = {sel.market for sel in self.universe_spec.selectors}
        held = [i for i in stores.trades.instruments() if i.market in markets]
        if not held:
            stores.close()
            if self.writer_lock is not None:
                self.writer_lock.release()
            if self.replay is not None and self._replay_started:
                self.replay.stop()
            raise SystemExit(
                f"error: --symbols: cannot resolve {self._spec_text()}: {error}; and the "
                f"database holds no instrument of {', '.join(sorted(markets))} to fall "
                "back on")
        log.warning("universe: %s; using the %d instruments the store holds", error,
                    len(held))
        return Universe([*self.universe, *held], self.universe.default_market)

    def _spec_text(self) -> str:
        spec = self.universe_spec
        return ",".join([*spec.instruments, *(str(s) for s in spec.selectors)])

    def add_instruments(self, insts) -> list[str]:
        """New instruments join the running app (a new listing, ``on_new`` of the
        universe refresher): the universe is extended with the names of the instruments
        already in the run unchanged (``Universe.extended``), then the store names, the
        ingestor (rings, engine series, name map) and each market's feed pool subscribes
        them (a new market gets its pool and back-fill). Returns the new names."""
        with self._add_lock:
            new = [i for i in dict.fromkeys(insts) if i not in self.universe]
            if not new:
                return []
            universe = self.universe.extended(new)
            names = [universe.name(i) for i in new]
            self.universe = universe
            self.store.use_universe(universe)
            self.symbols = universe.names
            self.ingestor.add_instruments(universe, names)
            for market in dict.fromkeys(i.market for i in new):
                pool = self.feeds.get(market)
                if pool is None:
                    protocol = feed_protocol(market=market)
                    self.feed_protocols[market] = protocol
                    self._start_feed(protocol)
                else:
                    pool.add([i.symbol for i in new if i.market == market],
                             last_ids=self._last_ids_of(market))
            self._use_probes()
            self.feed_url = " ".join(f.url for f in self.feeds.values())
        log.info("universe: %d instruments joined: %s", len(names), ",".join(names[:20]))
        return names

    def _start_refresher(self) -> None:
        from ingest.universe import UniverseRefresher

        self.refresher = UniverseRefresher(
            self.universe_spec, self.universe_rest_bases(), self.add_instruments,
            interval_s=float(getattr(self.cfg, "universe_refresh_s", 86_400.0)),
            known=tuple(self.universe),
        )
        self.refresher.start()
        if self.universe_fallback is not None:  # not a day on the stand-ins: retry soon
            threading.Thread(target=self._retry_universe, name="universe-retry",
                             daemon=True).start()

    def _retry_universe(self) -> None:
        """After a start on the store's instruments: ask the REST again after 30 s,
        60 s, ... (capped at the refresh interval) until it answers once; from then on
        the refresher's own schedule. What it lists joins (``add_instruments``)."""
        refresher, delay = self.refresher, UNIVERSE_RETRY_S
        while not self._stopping.wait(delay):
            refresher.refresh_once()
            if refresher.status()["last_ok_ms"] is not None:
                self.universe_fallback = None
                return
            delay = min(2 * delay, refresher.interval_s)

    def universe_health(self) -> dict:
        """``/api/health`` ``universe``: the spec, the instruments, the refresher."""
        return {
            "spec": None if self.universe_spec is None else self._spec_text(),
            "dynamic": self._dynamic,
            "instruments": len(self.universe),
            # why the run stands on the instruments the store held (None: resolved)
            "fallback": self.universe_fallback,
            "markets": {m: sum(1 for i in self.universe if i.market == m)
                        for m in self.universe.markets},
            "refresher": None if self.refresher is None else self.refresher.status(),
        }

    def _after_fork_in_child(self) -> None:
        forget_in_child(self.writer_lock)
        self.engine.reset_after_fork()  # its lock, and loads of deferred days in progress
        self.ingestor.reset_after_fork()
        self.store.reset_after_fork()
        self.datasets.reset_after_fork()

    def start(self) -> None:
        self.memory.start()
        if not self.store.readonly:
            self.store.start()
        self.ingestor.restore()
        self.ingestor.start_clock()
        self.alerts.start()
        if self.delivery is not None:
            self.delivery.start()
        if not self.cfg.ingest:
            if self.cfg.bus:
                self._start_bus_feed()
                return
            self.follower = DbFollower(self.ingestor)
            self.follower.start()
            return
        if self.cfg.bus:
            self._start_publisher()
        if self.replay is not None and not self._replay_started:
            self.replay.start()  # nothing subscribes before the pools start below
            self._replay_started = True
        pools = [self._make_pool(protocol) for protocol in self.feed_protocols.values()]
        if self.replay is not None:
            # the tape starts once every stream of every connection is subscribed, so
            # no instrument misses its first trades (paced SUBSCRIBEs take a while)
            self.replay.wait_streams = sum(
                self.replay.servable(p.market, name) for p in pools
                for name in self._pool_streams(p))
            log.info("replay: serving %d instruments on %s", len(self.symbols),
                     self.replay.ws_base)
        for pool in pools:
            pool.start()
        self.feed_url = " ".join(f.url for f in self.feeds.values())
        self.ingestor.quiet_probe = self._feeds_pending
        self._use_probes()
        if self._dynamic:
            self._start_refresher()

    def _start_publisher(self) -> None:
        """Publish what the ingestor accepts from now on (after the restore)."""
        from ingest.bus import BusUnavailable, open_publisher

        self.publisher = open_publisher(
            self.cfg.bus, resolve=self.store.instrument,
            last_ids=self.store.last_trade_ids(), health=self.feed_health,
        )
        try:
            self.publisher.start()
        except BusUnavailable as exc:
            raise SystemExit(f"error: --bus: {exc}") from None
        self.ingestor.tap = self.publisher

    def _start_bus_feed(self) -> None:
        """Follow the bus instead of polling the DB; bars close on the publisher's
        clock. The bus may be down: the feed retries, health says so."""
        from ingest.bus import open_follower
        from ingest.bus.follow import BusFeed, store_fetcher

        store = self.store
        self.ingestor.external_clock = True
        self.bus_feed = BusFeed(
            self.ingestor, open_follower(self.cfg.bus),
            store_fetcher(store, store.name), name_of=store.name, resolve=store.instrument,
        )
        self.bus_feed.start()

    def market_symbols(self, market: str) -> list[str]:
        """The bare symbols the run ingests on ``market`` (one feed's streams)."""
        return [i.symbol for i in self.universe if i.market == market]

    def _last_ids_of(self, market: str) -> dict[str, int]:
        """Highest stored id per bare symbol of ``market``: where that market's feed
        resumes (another market's ids of the same symbol are another sequence)."""
        out = {}
        for name, last in self.store.last_trade_ids().items():
            inst = self.store.instrument(name)
            if inst.market == market and inst.venue == protocol_venue(self.feed_protocols,
                                                                      market):
                out[inst.symbol] = last
        return out

    def _make_pool(self, protocol: FeedProtocol) -> FeedPool:
        """The feed pool of one market (its symbols over connections, resume ids) and
        its back-fill, not started."""
        market = protocol.market
        base = self.cfg.feed_url_for(market)
        if self.replay is not None:  # the replay is a bare host: add the market's path
            base = self.replay.ws_base + protocol.ws_path_prefix
        # top of book (docs/book.md): spot's book streams ride the trades' connections,
        # perp's get book-only connections on /public (FeedPool, book_control_url)
        book = getattr(self.cfg, "book", True) and protocol.book_stream is not None
        backfill = self._start_backfill(protocol)
        pool = FeedPool(
            protocol,
            self.market_symbols(market),
            self.ingestor.on_trade,
            stream=self.stream,
            base_url=base,
            streams_per_connection=getattr(self.cfg, "streams_per_connection", 1024),
            on_gap=functools.partial(self._on_gap, market),
            last_ids=self._last_ids_of(market),
            on_book=self.ingestor.on_book if book else None,
            lane_sink=self.ingestor.lane_sink,
            book_lane_sink=self.ingestor.book_lane_sink,  # perp: book-only /public lanes
            feed_cls=TradeFeed,  # looked up now: a benchmark may swap the class
            watchdog_s=self.cfg.watchdog_s,
            verify_trade=None if backfill is None else backfill.verify,
            # spot book updates carry no time: stamped at receive, in replay by the
            # replay's tape clock (the exchange's frame), else by the wall clock
            clock_ms=None if self.replay is None else self.replay.tape_clock_ms,
        )
        pool.on_connection = lambda _feed: self._use_probes()
        self.feeds[market] = pool
        if backfill is not None:
            self.backfills[market] = backfill
        return pool

    def _pool_streams(self, pool: FeedPool) -> list[str]:
        """The stream names ``pool`` subscribes (for the replay's start gate)."""
        from ingest.feeds.binance import stream_names

        return stream_names(pool.symbols, self.stream, book=pool.book)

    def _start_feed(self, protocol: FeedProtocol) -> None:
        """A market's feed pool and back-fill, started (a market that joins late)."""
        self._make_pool(protocol).start()

    def _use_probes(self) -> None:
        """The bar clock's per-connection quiet probes (one lane per connection)."""
        self.ingestor.use_quiet_probes(
            {lane: probe for pool in self.feeds.values()
             for lane, probe in pool.quiet_probes().items()})

    def _feeds_pending(self) -> bool:
        """The bar clock's quiet probe: data waiting on any feed's socket."""
        return any(feed.has_pending() for feed in self.feeds.values())

    def _start_backfill(self, protocol: FeedProtocol):
        """REST gap back-fill (``--rest-url``; ``off`` disables it). Gaps a previous run
        left unfilled are resumed, minus the ids that did get stored."""
        from ingest.feeds.backfill import Backfiller

        market = protocol.market
        rest = self.cfg.rest_url_for(market) if hasattr(self.cfg, "rest_url_for") \
            else getattr(self.cfg, "rest_url", None)
        if rest == "off":
            return None
        own_replay = self.replay is not None and self.replay.rest_base is not None and not rest
        if own_replay:
            rest = self.replay.rest_base
        backfill = Backfiller(
            protocol=protocol, stream=self.stream, base_url=rest or None,
            deliver=functools.partial(self._on_backfill, market),
            on_filled=functools.partial(self._on_filled, market),
            on_unrecoverable=functools.partial(self._on_unrecoverable, market),
            # the built-in replay's REST serves the whole tape: ids it lacks (a loop
            # seam) never come, so its first "no such ids" is final and the seam is a
            # session break within one round trip (alerts hold until then)
            **({"hole_attempts": 1} if own_replay else {}),
        )
        for gap in self.store.unfilled_gaps():
            inst = gap.instrument or self.store.instrument(gap.symbol)
            if inst.market != market or inst.venue != protocol.venue:
                continue  # another market's back-fill resumes it
            name = gap.symbol
            for first, last in self.store.missing_ranges(name, gap.first_id, gap.last_id):
                backfill.submit(inst.symbol, first, last, gap_first=gap.first_id)
            if not self.store.missing_ranges(name, gap.first_id, gap.last_id):
                self.store.mark_gap_filled(name, gap.first_id, int(time.time() * 1000))
        backfill.start()
        return backfill

    # Feeds and back-fills speak bare symbols of their market; the ingestor and the
    # store take the run's name (Ingestor.market_name), so spot and perp ids of one
    # symbol never meet.
    def _on_backfill(self, market: str, symbol: str, trades: list) -> None:
        self.ingestor.on_backfill(self.ingestor.market_name(market, symbol), trades)

    def _on_filled(self, market: str, symbol: str, first_id: int, filled_ms: int) -> None:
        name = self.ingestor.market_name(market, symbol)
        self.store.mark_gap_filled(name, first_id, filled_ms)
        self.ingestor.settle_gap(name, first_id)

    def _on_gap(self, market: str, symbol: str, first_id: int, last_id: int) -> None:
        name = self.ingestor.market_name(market, symbol)
        self.ingestor.on_gap(name, first_id, last_id)
        backfill = self.backfills.get(market)
        if backfill is not None:
            self.ingestor.hold_gap(name, first_id, last_id)  # alerts wait for it
            backfill.submit(symbol, first_id, last_id)
        else:  # nothing can fill it: the trade that revealed it starts a new session
            self.ingestor.break_at_next_trade(
                name, f"ids {first_id}..{last_id} missing, back-fill off"
            )

    def _on_unrecoverable(
        self, market: str, symbol: str, first_id: int, last_id: int, next_ms: int | None
    ) -> None:
        """Ids the exchange cannot give back (an outage beyond REST, a replay loop
        seam): a session break at the first trade after them."""
        name = self.ingestor.market_name(market, symbol)
        try:
            self._mark_unrecoverable(name, first_id, last_id, next_ms)
        finally:  # the break is in the engine: alerts may evaluate past the gap
            self.ingestor.settle_gap(name, first_id, last_id)

    def _mark_unrecoverable(
        self, symbol: str, first_id: int, last_id: int, next_ms: int | None
    ) -> None:
        if next_ms is None:
            self.store.flush(2.0)
            after = self.store.first_trade_after(symbol, last_id)
            if after is None:
                log.warning("%s: no trade after unrecoverable ids %d..%d yet; no break",
                            symbol, first_id, last_id)
                return
            next_ms = after[1]
        self.ingestor.mark_break(
            symbol, next_ms, f"ids {first_id}..{last_id} not recoverable from REST"
        )

    def stop(self) -> None:
        """Orderly stop (Ctrl-C, SIGTERM): sources first, then the open 1 s bars and
        the last batch go to the store, then the writer lock is released."""
        self.memory.stop()
        self._stopping.set()
        if self.refresher is not None:
            self.refresher.stop()
        for feed in self.feeds.values():
            feed.stop()
        for backfill in self.backfills.values():
            backfill.stop()
        if self.follower is not None:
            self.follower.stop()
        if self.bus_feed is not None:
            self.bus_feed.stop()
        self.ingestor.stop()
        flushed = self.ingestor.flush_open_bars()
        if self.publisher is not None:  # what the feeds delivered before they stopped
            self.ingestor.tap = None
            self.publisher.close(5.0)
        if self.delivery is not None:
            self.delivery.stop()
        self.alerts.stop()
        if self.replay is not None:
            self.replay.stop()
        self.store.close()
        self.datasets.close()
        if self.writer_lock is not None:
            self.writer_lock.release()
        log.info("stopped: %d open bars flushed, store closed", flushed)

    # ------------------------------------------------------------------ health
    def _buffer_bytes(self) -> int:
        """Bytes the engine's series and the tick rings hold (they grow with the data)."""
        rings = list(self.ingestor.rings.values())
        return self.engine.buffer_bytes() + sum(r.nbytes for r in rings)

    def health(self) -> dict:
        """The JSON of ``GET /api/health`` (see README, "Health")."""
        store = {"rows": self.ingestor.total_ticks(), **self.store.status()}
        symbols = {}
        # keyed by instrument ("perp:BTCUSDT") and, where the run names it by its bare
        # symbol (always in a one-market run), also by that name (the same entry), as
        # before instruments, so existing clients keep working
        for sym, ring in self.ingestor.rings.items():
            last = ring.last()
            key = self.store.instrument(sym).key
            if ":" not in sym:
                symbols[key] = symbols[sym] = {}
            else:
                symbols[key] = {}
            symbols[key].update({
                "last_price": None if last is None else last.price,
                "last_trade_id": None if last is None else last.trade_id,
                "last_trade_ms": None if last is None else last.time_ms,
                "ticks": self.ingestor.ticks_held(sym),
                "ring": len(ring),
                "msgs_per_s": self.ingestor.rate(sym),
                "late_trades": self.ingestor.late_trades.get(sym, 0),
                "session_breaks": self._breaks_of(sym),
            })
        return {
            "feed": self.feed_health(store),
            "symbols": symbols,
            "store": store,
            "replay": None if self.replay is None else self.replay.status(),
            "bus": self.bus_health(),
            "universe": self.universe_health(),
            # alert delivery worker (#20): lanes in flight, attempts, last error
            "delivery": None if getattr(self, "delivery", None) is None
            else self.delivery.status(),
            "started_ms": self.started_ms,
            "process": self.memory.status(),
            "restore": None if self.ingestor.restored is None else {
                "bars": self.ingestor.restored.bars,
                "trades_replayed": self.ingestor.restored.trades_replayed,
                "ring_ticks": self.ingestor.restored.ring_ticks,
                "seconds": round(self.ingestor.restored.seconds, 3),
                # days of 1 s bars loaded after serving began (ingest/pipeline.py):
                # history_seconds is null until all are in, then bars counts them
                "deferred": self.ingestor.restored.deferred,
                "history_seconds": None if self.ingestor.restored.history_seconds is None
                else round(self.ingestor.restored.history_seconds, 3),
            },
        }

    def _bus_feed_error(self) -> str:
        feed = self.bus_feed
        if not feed.connected:
            return f"no feed (--no-ingest): bus {self.cfg.bus} not reachable ({feed.error}); " \
                "serving what was restored"
        return f"no feed (--no-ingest): following bus {self.cfg.bus}, no publisher health yet"

    def bus_health(self) -> dict | None:
        """The ``bus`` part of :meth:`health`: url, role, connected, published or
        consumed counts and lag (None without ``--bus``)."""
        if self.publisher is not None:
            return self.publisher.status()
        if self.bus_feed is not None:
            return self.bus_feed.status()
        if self.cfg.bus:
            return {"url": self.cfg.bus, "connected": False, "error": "not started"}
        return None

    def _breaks_of(self, symbol: str) -> dict:
        n, last, reason = self.ingestor.breaks.get(symbol, (0, None, None))
        return {"count": n, "last_ms": last, "last_reason": reason}

    def feed_health(self, store: dict | None = None) -> dict:
        """The ``feed`` part of :meth:`health`, alone: what the badges poll every
        500 ms / 1 s, without reading every ring and the replay's status."""
        if store is None:
            store = self.store.status()
        if len(self.feeds) == 1:
            feed = self._market_feed_health(next(iter(self.feeds)))
        elif self.feeds:
            feed = _combined_feed_health(
                {market: self._market_feed_health(market) for market in self.feeds}
            )
        elif self.bus_feed is not None and self.bus_feed.connected \
                and self.bus_feed.publisher_feed:
            # a bus worker shows the ingest process's feed, as that process sent it
            feed = {**self.bus_feed.publisher_feed, "via": "bus " + self.cfg.bus}
            silent_s = time.time() - self.bus_feed.publisher_health_ms / 1000
            if silent_s > BUS_HEALTH_STALE_S:  # sent every second: the ingest is gone
                feed["connected"] = False
                feed["error"] = (f"no feed health from the ingest process on the bus for "
                                 f"{silent_s:.0f} s (stopped?)")
        else:
            feed = {
                "url": None,
                "connected": False,
                "messages": 0,
                "msgs_per_s": 0.0,
                "bad_frames": 0,
                "reconnects": 0,
                "gaps": 0,
                "gaps_filled": 0,
                "gap_ranges": [],
                "last_message_ms": None,
                "lag_ms": None,
                "error": "no feed (--no-ingest): following " + self.cfg.db
                if self.follower is not None
                else self._bus_feed_error() if self.bus_feed is not None
                else "not started",
            }
        # Trades older than a published bar (stored, bars rebuilt): exactness signal.
        feed["late_trades"] = sum(self.ingestor.late_trades.values())
        # The feed card and badge get only ``feed``: they must still say when ticks
        # are held in memory because the store cannot write.
        feed["store"] = {k: store[k] for k in ("writable", "last_error", "pending")}
        return feed

    def _market_feed_health(self, market: str) -> dict:
        """One market's feed status, with its back-fill's view of the gaps."""
        pool = self.feeds[market]
        feed = pool.status().as_dict()
        # one row per websocket connection (ingest/feeds/pool.py), C3
        feed["connections"] = [{**c, "market": market} for c in pool.connections()]
        if self.replay is not None:
            feed["replay_speed"] = self.cfg.replay_speed
            if self.cfg.replay_speed != 1 or not self.cfg.replay_rebase:
                # Replayed trade times advance `speed` times faster than the wall
                # clock, so now - T says nothing about the feed: no lag figure.
                feed["lag_ms"] = None
        feed["gaps_detected"] = feed["gaps"]
        feed["gaps_filled"] = 0
        backfill = self.backfills.get(market)
        if backfill is not None:
            # gaps = ids still missing; gaps_filled = ids recovered from REST
            bf = backfill.status()
            feed["gaps"] = bf.missing
            feed["gaps_filled"] = bf.filled
            feed["gap_ranges"] = [
                {"symbol": g.symbol, "first_id": g.first_id, "last_id": g.last_id}
                for g in bf.ranges[:1_000]
            ]
            feed["backfill"] = bf.as_dict()
        return feed


def protocol_venue(protocols: dict[str, FeedProtocol], market: str) -> str:
    """Venue of the run's feed of ``market`` (Binance today)."""
    protocol = protocols.get(market)
    return "binance" if protocol is None else protocol.venue


def tape_universe(tape, default_market: str) -> Universe:
    """The instruments a replay tape holds: each event's market (``TapeEvent.market``
    where the tape knows it, else ``default_market``) and symbol, in tape order."""
    default = normalize_market(default_market)
    seen: dict[tuple[str, str], None] = {}
    for ev in tape:
        if ev.kind not in ("trade", "aggTrade"):  # book events name no new instrument
            continue
        key = (ev.market or default, ev.symbol)
        if key not in seen:
            seen[key] = None
    insts = sorted(Instrument("binance", normalize_market(m), sym) for m, sym in seen)
    return Universe(insts, default)


#: Counters that add up across markets when several feeds run.
_SUMMED_FEED_KEYS = (
    "messages", "trades", "msgs_per_s", "bad_frames", "other_frames", "duplicates",
    "reconnects", "gaps", "gaps_detected", "gaps_filled", "rejected_times", "quarantined",
    "clean_closes", "book_updates", "book_per_s", "book_rejected",
)


def _combined_feed_health(per_market: dict[str, dict]) -> dict:
    """The ``feed`` health of several markets' feeds: the same keys as one feed (so the
    feed card and badges read it unchanged), summed or worst-of, and each market's own
    under ``markets``. Connected only when every feed is."""
    feeds = list(per_market.values())
    out = dict(feeds[0])
    out["url"] = " ".join(f["url"] for f in feeds)
    out["connected"] = all(f["connected"] for f in feeds)
    for key in _SUMMED_FEED_KEYS:
        if key in out:
            out[key] = sum(f[key] for f in feeds)
    out["msgs_per_s"] = round(out["msgs_per_s"], 1)
    if "book_per_s" in out:
        out["book_per_s"] = round(out["book_per_s"], 1)
    backfills = [f["backfill"] for f in feeds if "backfill" in f]
    if backfills:
        out["backfill"] = {
            **{k: sum(b[k] for b in backfills) for k in (
                "missing", "filled", "submitted", "requests", "pages", "rate_limited",
                "errors", "gaps_completed")},
            "url": " ".join(b["url"] for b in backfills),
            "error": "; ".join(b["error"] for b in backfills if b["error"]) or None,
            "retry_at_ms": max((b["retry_at_ms"] for b in backfills if b["retry_at_ms"]),
                               default=None),
            "unrecoverable": [u for b in backfills for u in b["unrecoverable"]],
        }
    for key in ("gap_ranges", "quarantine"):
        out[key] = [item for f in feeds for item in f[key]]
    if any("connections" in f for f in feeds):  # every market's, each row names it
        out["connections"] = [c for f in feeds for c in f.get("connections", ())]
    for key in ("last_message_ms", "last_trade_ms", "lag_ms", "last_book_ms"):
        values = [f[key] for f in feeds if f.get(key) is not None]
        out[key] = max(values) if values else None
    errors = [f"{m}: {f['error']}" for m, f in per_market.items() if f["error"]]
    out["error"] = "; ".join(errors) or None
    out["markets"] = per_market
    return out
