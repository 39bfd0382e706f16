"""The single-writer thread every trade store backend shares (cryptofeed's pattern).

Callers enqueue from any thread (O(1): the feed calls ``add_trade`` up to ~20k times a
second and must never wait for a disk or a server); ONE writer thread owns the only
write connection, gathers what was queued into a :class:`Batch` and hands it to the
backend's ``_write(batch)``, one transaction per batch. A batch closes when
``batch_size`` items are waiting or ``flush_interval_s`` has passed since the first of
them, whichever comes first. A commit that fails with an error the backend calls
retryable keeps the batch and is retried with backoff (0.1 s doubling to 5 s) while new
items keep queueing; ``last_error`` says what is wrong until a write succeeds again.

What is the same in every backend lives here, once: the queue and its item tags, the
batching loop, flush/close, the readonly and closed refusals, the write statistics and
the health fields they feed. What differs stays in the backend: its connection, its SQL
(``_write``), which errors are worth a retry (``_retryable``) and what a failure
invalidates (``_after_failure``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from analytics.bars import BAR_FIELDS
from analytics.book import BOOK_FIELDS
from ingest.models import Trade
from ingest.store.interface import InstrumentRef, TradeStore

__all__ = ["Batch", "WriterStore", "now_ms", "plain"]

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0

# Queue tags for everything that is not a Trade (trades go in as they are: no tuple to
# build on the feed thread). Items: (tag, (venue, market, symbol), *values).
BAR, GAP, FILL, FLUSH, REBUILD, BREAK = "bar", "gap", "fill", "flush", "rebuild", "break"
BOOK = "book"
_STOP = object()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def plain(value):
    """numpy scalars -> Python numbers (no driver binds np.int64 as an integer)."""
    return value.item() if isinstance(value, np.generic) else value


class Batch:
    """What one transaction writes, as queued. Trades stay ``Trade`` objects until the
    backend binds them: no tuple is built per trade on the hot path twice.

    ``bars``: ``(key, bar_row)``; ``book_bars``: ``(key, book_row)``; ``gaps``: ``(key, first_id, last_id, detected_ms)``;
    ``fills``: ``(key, filled_ms, first_id)``; ``steps``: rebuilds
    ``(REBUILD, key, start_ms, end_ms)`` and breaks
    ``(BREAK, key, ts_ms, reason, created_at)`` in queue order (a rebuild must see the
    trades queued before it, so steps run last, in the same transaction).
    """

    __slots__ = ("trades", "bars", "book_bars", "gaps", "fills", "steps")

    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.bars: list = []
        self.book_bars: list = []
        self.gaps: list = []
        self.fills: list = []
        self.steps: list = []

    def __bool__(self) -> bool:
        return bool(self.trades or self.bars or self.book_bars or self.gaps or self.fills
                    or self.steps)

    def __len__(self) -> int:
        return (len(self.trades) + len(self.bars) + len(self.book_bars) + len(self.gaps)
                + len(self.fills) + len(self.steps))

    def keys(self) -> set[tuple[str, str, str]]:
        """Every instrument the batch touches."""
        keys = {(t.venue, t.market, t.symbol) for t in self.trades}
        keys.update(k for k, _ in self.bars)
        keys.update(k for k, _ in self.book_bars)
        keys.update(g[0] for g in self.gaps)
        keys.update(f[0] for f in self.fills)
        keys.update(s[1] for s in self.steps)
        return keys


class WriterStore(TradeStore):
    """A :class:`TradeStore` whose writes go through one writer thread.

    A backend calls :meth:`_init_writer` in its ``__init__`` and provides:

    - ``_write(batch) -> (trades inserted, rows rejected)``: one transaction;
    - ``_retryable(exc)``: keep the batch and retry (True), or let the writer die;
    - optionally ``_writer_begin()`` / ``_writer_end()`` (run in the writer thread,
      around its loop), ``_after_failure()`` (after a failed attempt) and
      ``_close_backend()`` (the last step of :meth:`close`);
    - ``path`` (where the data lives, for messages and health).
    """

    _kind = "TradeStore"  # the backend's class name, in messages

    def _init_writer(self, where, *, batch_size: int, flush_interval_s: float,
                     readonly: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self._where = where
        self._flush_interval_s = float(flush_interval_s)
        self._batch_size = int(batch_size)
        self._readonly = readonly
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._put = self._refuse_readonly if readonly else self._q.put
        self._thread: threading.Thread | None = None
        self._closed = False
        self._held = 0  # items the writer has taken off the queue but not committed

        # Stats: written by the writer thread only, read anywhere.
        self.rows_written = 0  # trades actually inserted
        # Trades skipped as already stored (an existing (instrument, trade_id)).
        self.duplicates_ignored = 0
        self.rows_rejected = 0  # rows of any table that could not be stored at all
        self.commits = 0
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self.last_commit_ms: int | None = None
        self.failing_since_ms: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Start the writer thread (a readonly store has none). Returns self."""
        if self._readonly:
            return self
        if self._closed:
            raise RuntimeError(f"{self._kind}: start() after close()")
        if self._thread is not None:
            raise RuntimeError(f"{self._kind}: already started")
        self._thread = threading.Thread(target=self._run, name=self._thread_name(),
                                        daemon=True)
        self._thread.start()
        return self

    def _thread_name(self) -> str:
        return "tickstore"

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything enqueued before this call is committed.

        Returns False on timeout (e.g. the database is locked and the writer is still
        retrying) or when there is no running writer and items are pending.
        """
        if self._thread is None or not self._thread.is_alive():
            return self.pending == 0
        done = threading.Event()
        self._q.put((FLUSH, done))
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, stop the writer and close all connections. Returns False if the
        writer did not finish in time (its items are then still pending and lost when
        the process exits)."""
        if self._closed:
            return True
        self._closed = True
        self._put = self._refuse_closed
        ok = True
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                ok = False
                log.error("%s: writer did not stop within %.1fs; %d items not written (%s)",
                          self._where, timeout, self.pending, self.last_error)
        elif not self._readonly and self.pending:
            ok = False
            log.warning("%s: closed before start(); %d items dropped", self._where,
                        self.pending)
        self._close_backend()
        return ok

    def _close_backend(self) -> None:
        """The backend's connections, after the writer stopped (or gave up)."""

    def _forget_writer(self) -> None:
        """In a forked child: the parent's writer is not ours; this copy only reads."""
        self._thread = None
        self._put = self._refuse_readonly

    # ------------------------------------------------------------------ enqueue API
    def add_trade(self, trade: Trade) -> None:
        """Queue one trade (duplicates by (instrument, trade_id) are ignored on write)."""
        self._put(trade)

    def _key(self, instrument: InstrumentRef) -> tuple[str, str, str]:
        inst = self.instrument(instrument)
        return inst.venue, inst.market, inst.symbol

    def add_bar(self, instrument: InstrumentRef, bar_row: tuple) -> None:
        """Queue a closed 1 s bar: a tuple in ``BAR_FIELDS`` order (ts, open, high,
        low, close, volume, quote_volume, trades, buy_volume, first_id, last_id). A
        later row for the same (instrument, ts) replaces the earlier one."""
        if len(bar_row) != len(BAR_FIELDS):
            raise ValueError(f"bar_row needs {len(BAR_FIELDS)} fields, got {len(bar_row)}")
        self._put((BAR, self._key(instrument), tuple(plain(v) for v in bar_row)))

    def add_book_bar(self, instrument: InstrumentRef, book_row: tuple) -> None:
        """Queue a closed 1 s book bar: a tuple in ``analytics.book.BOOK_FIELDS`` order
        (ts, bid, ask, bid_qty, ask_qty, spread_bps_twa, updates). A later row for the
        same (instrument, ts) replaces the earlier one."""
        if len(book_row) != len(BOOK_FIELDS):
            raise ValueError(
                f"book_row needs {len(BOOK_FIELDS)} fields, got {len(book_row)}")
        self._put((BOOK, self._key(instrument), tuple(plain(v) for v in book_row)))

    def add_gap(self, instrument: InstrumentRef, first_id: int, last_id: int,
                detected_ms: int) -> None:
        """Queue a detected gap of missing trade ids [first_id, last_id]."""
        self._put((GAP, self._key(instrument), int(first_id), int(last_id),
                   int(detected_ms)))

    def mark_gap_filled(self, instrument: InstrumentRef, first_id: int, filled_ms: int) -> None:
        """Queue "the gap starting at first_id was backfilled at filled_ms"."""
        self._put((FILL, self._key(instrument), int(filled_ms), int(first_id)))

    def rebuild_bars(self, instrument: InstrumentRef, start_ms: int, end_ms: int) -> None:
        """Queue "recompute the stored 1 s bars of [start_ms, end_ms) from the stored
        trades", run in the same transaction as, and after, everything queued before
        it (so the trades of a back-filled page are in)."""
        self._put((REBUILD, self._key(instrument), int(start_ms), int(end_ms)))

    def add_break(self, instrument: InstrumentRef, ts_ms: int, reason: str) -> None:
        """Queue a session break at ``ts_ms`` (first trade after it)."""
        self._put((BREAK, self._key(instrument), int(ts_ms), str(reason)[:200], now_ms()))

    def _refuse_readonly(self, _item) -> None:
        raise RuntimeError(f"{self._kind}: {self._where} was opened readonly")

    def _refuse_closed(self, _item) -> None:
        raise RuntimeError(f"{self._kind}: {self._where} is closed")

    # ------------------------------------------------------------------ status
    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def writable(self) -> bool:
        """False while commits fail (locked, disk full, I/O error): items queue up."""
        return not self._readonly and self.last_error is None

    @property
    def pending(self) -> int:
        """Items enqueued but not committed yet (approximate while the writer runs)."""
        return self._q.qsize() + self._held

    def status(self) -> dict:
        """The ``store`` part of ``/api/health`` minus what the caller adds."""
        return {
            "path": str(self._where),
            "pending": self.pending,
            "writable": self.writable,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "failing_since_ms": self.failing_since_ms,
            "last_commit_ms": self.last_commit_ms,
            "rows_written": self.rows_written,
            "readonly": self._readonly,
        }

    # ------------------------------------------------------------------ writer
    def _writer_begin(self) -> None:
        """In the writer thread, before its loop (e.g. open the write connection)."""

    def _writer_end(self) -> None:
        """In the writer thread, after its loop, whatever ended it."""

    def _run(self) -> None:
        try:
            self._writer_begin()
            self._loop()
        except Exception as exc:  # nothing else would ever report it: make it visible
            log.exception("%s: writer thread died", self._where)
            self.last_error = f"writer died: {exc!r}"
            self.last_error_ms = now_ms()
        finally:
            self._writer_end()

    def _loop(self) -> None:
        q = self._q
        batch = Batch()
        trades = batch.trades
        waiters: list[threading.Event] = []
        n = 0
        deadline = 0.0
        while True:
            commit = stop = False
            try:
                if n == 0:
                    item = q.get()
                else:
                    wait = deadline - time.monotonic()
                    item = q.get(timeout=wait) if wait > 0 else q.get_nowait()
            except queue.Empty:
                item, commit = None, True  # the oldest pending item is 250 ms old
            if item is None:
                pass
            elif type(item) is Trade:
                trades.append(item)
            elif item is _STOP:
                commit = stop = True
            else:
                tag = item[0]
                if tag is BAR:
                    batch.bars.append(item[1:])
                elif tag is BOOK:
                    batch.book_bars.append(item[1:])
                elif tag is GAP:
                    batch.gaps.append(item[1:])
                elif tag is FILL:
                    batch.fills.append(item[1:])
                elif tag is REBUILD or tag is BREAK:
                    batch.steps.append(item)
                elif tag is FLUSH:
                    waiters.append(item[1])
                    commit = True
                else:
                    log.error("%s: unknown queue item %r dropped", self._where, item)
            if item is not None and not commit:
                n += 1
                if n == 1:
                    deadline = time.monotonic() + self._flush_interval_s
                self._held = n
                if n >= self._batch_size:
                    commit = True
            if commit:
                if batch:
                    self._commit(batch)
                    batch = Batch()
                    trades = batch.trades
                n = self._held = 0
                for event in waiters:
                    event.set()
                waiters.clear()
            if stop:
                return

    def _retryable(self, exc: Exception) -> bool:
        """Keep the batch and retry after ``exc`` (True), or let the writer die."""
        return True

    def _after_failure(self) -> None:
        """After a failed attempt, before the backoff (e.g. drop a broken connection)."""

    def _commit(self, batch: Batch) -> None:
        """Write one batch in one transaction; on a retryable error keep it and retry
        with backoff until it succeeds (nothing enqueued is ever dropped for that)."""
        delay = RETRY_FIRST_S
        while True:
            try:
                inserted, rejected = self._write(batch)
                break
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                if self.last_error is None:
                    log.warning("%s: commit of %d items failed (%s); keeping them, retrying",
                                self._where, len(batch), exc)
                else:
                    log.debug("%s: retry failed (%s); next in %.1fs", self._where, exc, delay)
                self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                self.last_error_ms = now_ms()
                if self.failing_since_ms is None:
                    self.failing_since_ms = self.last_error_ms
                self._after_failure()
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        if self.last_error is not None:
            log.warning("%s: writes recovered after: %s (%d items pending)",
                        self._where, self.last_error, self.pending)
            self.last_error = None
            self.failing_since_ms = None
        self.rows_written += inserted
        self.duplicates_ignored += len(batch.trades) - inserted - rejected
        self.rows_rejected += rejected
        self.commits += 1
        self.last_commit_ms = now_ms()

    def _write(self, batch: Batch) -> tuple[int, int]:
        """One transaction: (trades inserted, rows rejected as malformed)."""
        raise NotImplementedError
