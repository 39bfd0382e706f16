"""What the ingest service says on the live bus, and what a dashboard worker hears: the ONE
interface a bus backend implements.

One ingesting process (``python -m ingest --bus URL``) publishes what its ingestor
accepts and what its engine closes; any number of ``--no-ingest --bus URL`` workers
follow it, so their rings and engines see the same trades in the same order as the
ingest process's, seconds after restoring history from the store.

* :class:`BusPublisher`: called on the ingest path (the feed thread, the bar clock,
  the back-fill thread) under the ingestor's lock, so every call is O(1) and never
  blocks: events are queued and a publisher thread of the backend sends them in
  batches, in the order they were queued (never lost, never reordered within an
  instrument; kept and retried while the bus is down).
* :class:`BusFollower`: reads events from a resume point (the last position it saw,
  per stream) and reports its lag. A follower that finds events trimmed away
  (``MAXLEN``) or lost (a bus restart) reports the live trades it missed by their
  id range (:attr:`TradeBatch.prev_id`), so the caller can read them from the store.

Kinds of event, one stream per instrument and kind (``trades``, ``bars``, ``gaps``,
``breaks``, ``book``: the best bid/ask updates, issue #17, docs/book.md) plus the
global ``clock`` and ``health`` streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analytics.instruments import Instrument

if TYPE_CHECKING:
    from ingest.models import BookTicker, Trade

__all__ = [
    "BarClosed",
    "BookBatch",
    "BusError",
    "BusEvent",
    "BusFollower",
    "BusPublisher",
    "BusUnavailable",
    "ClockAdvanced",
    "FeedHealth",
    "FetchTrades",
    "GapSeen",
    "SessionBreak",
    "TradeBatch",
]


class BusError(RuntimeError):
    """A bus operation failed for a reason a retry may cure (connection refused, the
    server restarting). Publishers keep what they could not send."""


class BusUnavailable(ValueError):
    """The bus URL is malformed, names a backend this build lacks, or the server
    cannot be reached at start (the message says which, and what to run)."""


# ------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Trades of one instrument, in the order the publisher's ingestor accepted them.

    ``backfill``: trades recovered by REST back-fill (older than the live ones;
    the follower hands them to ``Ingestor.on_backfill``, as the ingest side did).
    ``prev_id``: for a live batch, the id of the last live trade the publisher sent
    on this instrument before this batch (None: none since it started with an empty
    store). A follower whose last live id is lower missed ``(its last, prev_id]``."""

    instrument: Instrument
    trades: tuple[Trade, ...]
    prev_id: int | None = None
    backfill: bool = False


@dataclass(frozen=True, slots=True)
class BookBatch:
    """Best bid/ask updates of one instrument, in the order the publisher's ingestor
    took them, with the times it bucketed them by (futures ``T``, spot the receive
    stamp): a follower hands them to ``Ingestor.on_book``, so its engine builds the
    same 1 s book bars, closed by the publisher's clock like the trade bars."""

    instrument: Instrument
    books: tuple[BookTicker, ...]


@dataclass(frozen=True, slots=True)
class BarClosed:
    """A 1 s bar the publisher's engine closed (a row in ``BAR_FIELDS`` order)."""

    instrument: Instrument
    row: tuple


@dataclass(frozen=True, slots=True)
class ClockAdvanced:
    """The publisher's bar clock closed every bar ending at or before ``close_ms``,
    after it had accepted the live trades up to ``watermarks`` (instrument key ->
    last live trade id). A follower applies it once it has seen those trades, so its
    bars close at the same point of the trade sequence as the publisher's."""

    close_ms: int
    watermarks: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class GapSeen:
    """Trade ids ``[first_id, last_id]`` the publisher's feed did not receive."""

    instrument: Instrument
    first_id: int
    last_id: int
    detected_ms: int


@dataclass(frozen=True, slots=True)
class SessionBreak:
    """A session break at ``ts_ms`` (the first trade after it), as ``Ingestor.mark_break``."""

    instrument: Instrument
    ts_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """The publisher's ``feed`` health (``Runtime.feed_health()``), sent every second."""

    health: dict = field(compare=False)
    sent_ms: int = 0


BusEvent = (TradeBatch | BookBatch | BarClosed | ClockAdvanced | GapSeen | SessionBreak
            | FeedHealth)


# ------------------------------------------------------------------------ roles
class BusPublisher(ABC):
    """The ingest side. Every method but :meth:`start`, :meth:`flush` and
    :meth:`close` only queues (O(1), any thread); one publisher thread sends."""

    url: str

    @abstractmethod
    def start(self) -> BusPublisher:
        """Connect (``BusUnavailable`` naming the URL when the server cannot be
        reached) and start the publisher thread. Returns self."""

    @abstractmethod
    def trade(self, trade: Trade) -> None:
        """Queue one live trade the ingestor accepted (the hot path)."""

    def trades(self, trades: list[Trade]) -> None:
        """Queue a batch of live trades, in order."""
        for t in trades:
            self.trade(t)

    def book(self, book: BookTicker) -> None:
        """Queue one best bid/ask update the ingestor took (the hot path, like
        :meth:`trade`). A backend without it publishes no top of book."""
        return None

    @abstractmethod
    def backfill(self, symbol: str, trades: list[Trade]) -> None:
        """Queue a page of back-filled trades of one instrument."""

    @abstractmethod
    def bar(self, symbol: str, row: tuple) -> None:
        """Queue a closed 1 s bar of the instrument named ``symbol``."""

    @abstractmethod
    def clock(self, close_ms: int) -> None:
        """Queue "the bar clock closed everything ending at or before close_ms"."""

    @abstractmethod
    def gap(self, symbol: str, first_id: int, last_id: int, detected_ms: int) -> None: ...

    @abstractmethod
    def session_break(self, symbol: str, ts_ms: int, reason: str) -> None: ...

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued before the call is sent; False on timeout."""

    @abstractmethod
    def close(self, timeout: float = 5.0) -> bool:
        """Flush, stop the thread, disconnect (idempotent)."""

    @abstractmethod
    def status(self) -> dict:
        """The ``bus`` part of ``/api/health``: url, role, connected, published,
        pending, error."""


class BusFollower(ABC):
    """The worker side: events from a resume point, in publish order per stream."""

    url: str

    @abstractmethod
    def connect(self) -> None:
        """Connect (``BusError`` if the server is down; the caller retries)."""

    @abstractmethod
    def read(self, block_ms: int) -> list[BusEvent]:
        """The next events, waiting up to ``block_ms`` for one. Within one call,
        session breaks come first (a break precedes the trade after it), then clock
        events, then each stream's events in publish order. Raises ``BusError`` when
        the connection fails; the next call resumes after the last event returned."""

    @abstractmethod
    def lag_ms(self) -> float | None:
        """Wall time between the publishing of the last event read and its reading."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def status(self) -> dict:
        """Transport counters: url, connected, events and trades read, streams."""


#: ``(instrument, after_id, upto_id) -> trades`` with ``after_id < id <= upto_id`` in
#: id order: how a follower reads from the store what the bus no longer holds.
FetchTrades = Callable[[Instrument, int, int], list["Trade"]]
