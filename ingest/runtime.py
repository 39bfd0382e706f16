"""Build and run the ingest side of the app (shared by ``app.py`` and ``python -m ingest``).

A :class:`Runtime` owns, in start order: the SQLite store (writer thread), the market
engine, the :class:`~ingest.pipeline.Ingestor` (rings, restore, bar clock), and one
source of trades:

* live: a :class:`~ingest.feed.TradeFeed` on Binance's URL (or ``--feed-url``);
* replay: the built-in :class:`~ingest.replay.ReplayServer` on a free loopback port,
  and a ``TradeFeed`` pointed at it, so the real client code runs offline;
* follow (``--no-ingest``): a :class:`~ingest.pipeline.DbFollower` over a DB that
  another process writes.

Swapping the source never touches analytics or pages: they read the ingestor's rings
and the engine's snapshots only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from analytics.engine import MarketEngine
from ingest.alert_service import AlertService
from ingest.binance import stream_url
from ingest.datasets import DatasetStore
from ingest.feed import TradeFeed
from ingest.memory import HeapTrimmer, tune_malloc
from ingest.pipeline import DbFollower, Ingestor
from ingest.store import TickStore
from ingest.writer_lock import WriterLock, WriterLockHeld, forget_in_child

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedSource:
    symbols: tuple[str, ...]
    market: str
    stream: str
    url: str | None


class Runtime:
    """Everything that ingests, stores and computes, minus the web server."""

    def __init__(self, cfg) -> None:
        tune_malloc()  # before any thread of ours exists (ingest/memory.py)
        self.cfg = cfg
        self.replay = None
        self.feed: TradeFeed | None = None
        self.follower: DbFollower | None = None
        self.backfill = None
        symbols, market, stream = cfg.symbols, cfg.market, cfg.stream
        if cfg.ingest and cfg.replay is not None:
            from ingest.replay import APP_LOOP_SEAM_IDS, ReplayServer
            from ingest.tapes import default_sample_files, load_tape, shift_times

            files = list(cfg.replay) or default_sample_files()
            tape = load_tape(files)
            if cfg.replay_rebase:
                tape = shift_times(tape, int(time.time() * 1000) - tape.first_time_ms)
            if not cfg.symbols_given:
                symbols = tuple(tape.symbols)
            if not cfg.market_given:
                market = "spot"
            if not cfg.stream_given:
                stream = "trade" if "trade" in tape.kinds else "aggTrade"
            self.replay = ReplayServer(
                tape,
                port=0,
                speed=cfg.replay_speed,
                loop=cfg.replay_loop,
                profile=market,
                loop_seam_ids=APP_LOOP_SEAM_IDS if cfg.replay_loop else 0,
            )
        self.symbols = tuple(symbols)
        self.market, self.stream = market, stream
        readonly = not cfg.ingest
        if readonly and not Path(cfg.db).exists():
            raise SystemExit(f"--no-ingest: database {cfg.db} does not exist")
        self.writer_lock: WriterLock | None = None
        if not readonly:
            try:
                self.writer_lock = WriterLock(cfg.db).acquire()
            except WriterLockHeld as exc:
                raise SystemExit(f"error: {exc}") from None
        self.store = TickStore(cfg.db, readonly=readonly)
        # Uploaded OHLC datasets: own tables and connection in the same file, never
        # mixed into the live ticks (ingest/datasets.py).
        self.datasets = DatasetStore(cfg.db, readonly=readonly)
        self.engine = MarketEngine(list(self.symbols))
        self.ingestor = Ingestor(
            list(self.symbols),
            self.store,
            self.engine,
            ring_capacity=cfg.ring_capacity,
            write=not readonly,
        )
        # Alert rules and events (same DB file, own tables and connection); evaluated
        # where trades are ingested (with --no-ingest, by the ingesting process).
        self.alerts = AlertService(self.engine, self.ingestor, cfg.db, evaluate=cfg.ingest)
        self.feed_url: str | None = None
        self.started_ms = int(time.time() * 1000)
        self.memory = HeapTrimmer()
        # Dash background callbacks (ADF, backtests, screens) run in forked processes.
        # A fork copies only the forking thread: a lock another thread held at that
        # moment would stay locked forever in the child, and SQLite connections must not
        # cross a fork. So the child gets fresh locks and opens its own connections.
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        forget_in_child(self.writer_lock)
        self.engine.lock = threading.RLock()
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
        if not self.cfg.ingest:
            self.follower = DbFollower(self.ingestor)
            self.follower.start()
            return
        base = self.cfg.feed_url
        if self.replay is not None:
            self.replay.start()
            base = self.replay.ws_base + ("/market" if self.market == "futures" else "")
            log.info("replay: serving %s on %s", ",".join(self.symbols), self.replay.ws_base)
        self.feed_url = stream_url(
            self.symbols, market=self.market, stream=self.stream, base_url=base
        )
        self.backfill = self._start_backfill()
        self.feed = TradeFeed(
            self.feed_url,
            self.ingestor.on_trade,
            on_gap=self._on_gap,
            last_ids=self.store.last_trade_ids(),
            watchdog_s=self.cfg.watchdog_s,
            verify_trade=None if self.backfill is None else self.backfill.verify,
        )
        self.ingestor.quiet_probe = self.feed.has_pending
        self.feed.start()

    def _start_backfill(self):
        """REST gap back-fill (``--rest-url``; ``off`` disables it). Gaps a previous run
        left unfilled are resumed, minus the ids that did get stored."""
        from ingest.backfill import Backfiller

        rest = getattr(self.cfg, "rest_url", None)
        if rest == "off":
            return None
        own_replay = self.replay is not None and self.replay.rest_base is not None and not rest
        if own_replay:
            rest = self.replay.rest_base
        backfill = Backfiller(
            market=self.market, stream=self.stream, base_url=rest or None,
            deliver=self.ingestor.on_backfill, on_filled=self._on_filled,
            on_unrecoverable=self._on_unrecoverable,
            # the built-in replay's REST serves the whole tape: ids it lacks (a loop
            # seam) never come, so its first "no such ids" is final and the seam is a
            # session break within one round trip (alerts hold until then)
            **({"hole_attempts": 1} if own_replay else {}),
        )
        for gap in self.store.unfilled_gaps():
            for first, last in self.store.missing_ranges(
                gap.symbol, gap.first_id, gap.last_id
            ):
                backfill.submit(gap.symbol, first, last, gap_first=gap.first_id)
            if not self.store.missing_ranges(gap.symbol, gap.first_id, gap.last_id):
                self.store.mark_gap_filled(gap.symbol, gap.first_id, int(time.time() * 1000))
        backfill.start()
        return backfill

    def _on_filled(self, symbol: str, first_id: int, filled_ms: int) -> None:
        self.store.mark_gap_filled(symbol, first_id, filled_ms)
        self.ingestor.settle_gap(symbol, first_id)

    def _on_gap(self, symbol: str, first_id: int, last_id: int) -> None:
        self.ingestor.on_gap(symbol, first_id, last_id)
        if self.backfill is not None:
            self.ingestor.hold_gap(symbol, first_id, last_id)  # alerts wait for it
            self.backfill.submit(symbol, first_id, last_id)
        else:  # nothing can fill it: the trade that revealed it starts a new session
            self.ingestor.break_at_next_trade(
                symbol, f"ids {first_id}..{last_id} missing, back-fill off"
            )

    def _on_unrecoverable(
        self, symbol: str, first_id: int, last_id: int, next_ms: int | None
    ) -> None:
        """Ids the exchange cannot give back (an outage beyond REST, a replay loop
        seam): a session break at the first trade after them."""
        try:
            self._mark_unrecoverable(symbol, first_id, last_id, next_ms)
        finally:  # the break is in the engine: alerts may evaluate past the gap
            self.ingestor.settle_gap(symbol, first_id, last_id)

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
        if self.feed is not None:
            self.feed.stop()
        if self.backfill is not None:
            self.backfill.stop()
        if self.follower is not None:
            self.follower.stop()
        self.ingestor.stop()
        flushed = self.ingestor.flush_open_bars()
        self.alerts.stop()
        if self.replay is not None:
            self.replay.stop()
        self.store.close()
        self.datasets.close()
        if self.writer_lock is not None:
            self.writer_lock.release()
        log.info("stopped: %d open bars flushed, store closed", flushed)

    # ------------------------------------------------------------------ health
    def health(self) -> dict:
        """The JSON of ``GET /api/health`` (see README, "Health")."""
        store = {"rows": self.ingestor.total_ticks(), **self.store.status()}
        symbols = {}
        for sym, ring in self.ingestor.rings.items():
            last = ring.last()
            symbols[sym] = {
                "last_price": None if last is None else last.price,
                "last_trade_id": None if last is None else last.trade_id,
                "last_trade_ms": None if last is None else last.time_ms,
                "ticks": self.ingestor.ticks_held(sym),
                "ring": len(ring),
                "msgs_per_s": self.ingestor.rate(sym),
                "late_trades": self.ingestor.late_trades.get(sym, 0),
                "session_breaks": self._breaks_of(sym),
            }
        return {
            "feed": self.feed_health(store),
            "symbols": symbols,
            "store": store,
            "replay": None if self.replay is None else self.replay.status(),
            "started_ms": self.started_ms,
            "process": self.memory.status(),
            "restore": None if self.ingestor.restored is None else {
                "bars": self.ingestor.restored.bars,
                "trades_replayed": self.ingestor.restored.trades_replayed,
                "ring_ticks": self.ingestor.restored.ring_ticks,
                "seconds": round(self.ingestor.restored.seconds, 3),
            },
        }

    def _breaks_of(self, symbol: str) -> dict:
        n, last, reason = self.ingestor.breaks.get(symbol, (0, None, None))
        return {"count": n, "last_ms": last, "last_reason": reason}

    def feed_health(self, store: dict | None = None) -> dict:
        """The ``feed`` part of :meth:`health`, alone: what the badges poll every
        500 ms / 1 s, without reading every ring and the replay's status."""
        if store is None:
            store = self.store.status()
        if self.feed is not None:
            feed = self.feed.status().as_dict()
            if self.replay is not None:
                feed["replay_speed"] = self.cfg.replay_speed
                if self.cfg.replay_speed != 1 or not self.cfg.replay_rebase:
                    # Replayed trade times advance `speed` times faster than the wall
                    # clock, so now - T says nothing about the feed: no lag figure.
                    feed["lag_ms"] = None
            feed["gaps_detected"] = feed["gaps"]
            feed["gaps_filled"] = 0
            if self.backfill is not None:
                # gaps = ids still missing; gaps_filled = ids recovered from REST
                bf = self.backfill.status()
                feed["gaps"] = bf.missing
                feed["gaps_filled"] = bf.filled
                feed["gap_ranges"] = [
                    {"symbol": g.symbol, "first_id": g.first_id, "last_id": g.last_id}
                    for g in bf.ranges[:1_000]
                ]
                feed["backfill"] = bf.as_dict()
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
                else "not started",
            }
        # Trades older than a published bar (stored, bars rebuilt): exactness signal.
        feed["late_trades"] = sum(self.ingestor.late_trades.values())
        # The feed card and badge get only ``feed``: they must still say when ticks
        # are held in memory because the store cannot write.
        feed["store"] = {k: store[k] for k in ("writable", "last_error", "pending")}
        return feed
