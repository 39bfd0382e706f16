"""What the app asks a store: the ONE interface a storage backend implements.

Three stores share one database (a SQLite file today, PostgreSQL later):

* :class:`TradeStore`: trades, closed 1 s bars, feed gaps and session breaks of the
  ingested instruments. Writes are QUEUED and committed in batches by one writer
  thread (the feed thread enqueues up to ~20k trades a second and must never wait on
  disk); reads run on the caller's thread, on a connection of its own.
* :class:`DatasetStore`: uploaded OHLC datasets (never mixed into the live ticks).
* :class:`AlertStore`: alert rules, their evaluation state and fired events.

A :class:`Backend` opens the three for a location (``ingest.store.open_store`` picks
the backend from the URL). The value types below are what every backend returns, so
callers never see a backend's rows; ``tests/ingest/store/contract.py`` is the suite a
backend must pass.

Instruments: trades, bars, gaps and breaks are keyed by ``(venue, market, symbol)``
(:class:`analytics.instruments.Instrument`). Every method taking an instrument takes an
``Instrument`` or a NAME: the bare symbol means that symbol on the store's default
venue and market (``default_market``, the run's ``--market``), ``perp:BTCUSDT`` names
one explicitly. What a store returns keyed by text uses the same names
(:meth:`TradeStore.name`), so a one-market run says ``"BTCUSDT"`` everywhere, as before,
and a name a store returned always resolves back to the same instrument. A run calls
:meth:`TradeStore.use_universe` so the store names its instruments as the run does
(``spot:BTCUSDT`` and ``perp:BTCUSDT`` when both are ingested; docs/markets.md).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from analytics.instruments import DEFAULT_VENUE, Instrument, normalize_market, parse_instrument

if TYPE_CHECKING:
    import pandas as pd

    from analytics.alerts import RuleState
    from analytics.bars import Bars
    from analytics.upload import OhlcUpload
    from ingest.models import Trade

__all__ = [
    "DATASET_RE",
    "AlertStore",
    "AlertsReadOnly",
    "Backend",
    "Break",
    "DatasetError",
    "DatasetInfo",
    "DatasetStore",
    "Gap",
    "InstrumentRef",
    "NewEvent",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "Stores",
    "StoredEvent",
    "StoredRule",
    "StoredUpload",
    "TradeColumns",
    "TradeStore",
]

#: An instrument, or its name in a store (``"BTCUSDT"``, ``"perp:BTCUSDT"``).
InstrumentRef = Instrument | str

#: Valid dataset names (the API, the upload page and the store all check this one).
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ------------------------------------------------------------------------ errors
class StoreUnavailable(ValueError):
    """The location names a backend this build cannot open (e.g. ``postgresql://``)."""


class SchemaError(RuntimeError):
    """The database's schema is not the one this build reads: older and opened
    read-only (the writer must open it first, to migrate it), or newer."""


class DatasetError(ValueError):
    """An upload or removal refused; :attr:`problems` as in ``UploadError``."""

    def __init__(self, problems: list[str], *, status: int = 400) -> None:
        self.problems = list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


class StoreError(RuntimeError):
    """A write failed for a reason a retry may cure (database locked, I/O error); the
    message is the backend's. What was to be written is not written."""


class AlertsReadOnly(RuntimeError):
    """The DB cannot be written (e.g. a read-only mount): rules cannot change."""


# ------------------------------------------------------------------------ values
@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Trades of one instrument as numpy columns, ordered by trade_id."""

    time_ms: np.ndarray  # int64
    trade_id: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_is_maker: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of trade ids the feed never received (both ends inclusive).

    ``symbol`` is the store's name of the instrument (see the module docstring);
    ``instrument`` spells it out (not part of equality: the name already is)."""

    symbol: str
    first_id: int
    last_id: int
    detected_ms: int
    filled_ms: int | None
    instrument: Instrument | None = field(default=None, compare=False)

    @property
    def missing(self) -> int:
        return self.last_id - self.first_id + 1

    @property
    def market(self) -> str | None:
        return None if self.instrument is None else self.instrument.market


class Break(NamedTuple):
    """A stored session break: ``ts_ms`` is the trade time of the first trade after it
    (a replay loop seam, ids REST could not give back). ``symbol`` is the store name."""

    symbol: str
    ts_ms: int
    reason: str
    created_at: int


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One dataset: name, timeframe, and per-symbol row counts and UTC ranges."""

    name: str
    tf_ms: int
    created_ms: int
    symbols: tuple[str, ...]
    rows: dict[str, int]
    start_ms: int | None
    end_ms: int | None
    files: tuple[str, ...]

    def as_dict(self) -> dict:
        from analytics.timeframes import format_timeframe
        from ingest.store.dataset_rules import iso_utc

        return {
            "dataset": self.name,
            "timeframe": format_timeframe(self.tf_ms),
            "symbols": list(self.symbols),
            "rows": dict(self.rows),
            "start": iso_utc(self.start_ms),
            "end": iso_utc(self.end_ms),
            "created": iso_utc(self.created_ms),
            "files": list(self.files),
        }


@dataclass(frozen=True, slots=True)
class StoredUpload:
    """What :meth:`DatasetStore.store` did: the dataset after it, and per symbol of the
    file the bars ``inserted`` (new times) and ``identical`` (times stored already with
    the same bar, merged)."""

    info: DatasetInfo
    inserted: dict[str, int]
    identical: dict[str, int]


@dataclass(frozen=True, slots=True)
class StoredRule:
    id: int
    spec: dict
    enabled: bool
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    rule_id: int
    data_ts: int
    fired_ms: int
    value: float
    threshold: float
    description: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    rule_id: int
    data_ts: int
    value: float
    threshold: float
    description: str


# ------------------------------------------------------------------------ trade store
class TradeStore(ABC):
    """Trades, 1 s bars, 1 s top-of-book bars (docs/book.md), gaps and session breaks
    of the ingested instruments.

    Writes (``add_*``, ``mark_gap_filled``, ``rebuild_bars``) are queued, O(1), callable
    from any thread, and committed by ONE writer thread in batches, in the order they
    were queued; a batch is one transaction. Duplicated trades (same instrument and
    trade id) are ignored, so replays and back-fills are idempotent. Failing commits
    (locked, disk full) keep the batch and retry; ``last_error`` says why meanwhile.
    A readonly store has no writer and refuses writes with ``RuntimeError``.

    Reads return copies (numpy columns, frozen values), consistent per call.

    Counters a backend keeps for ``/api/health`` and the tests (written by the writer
    thread only): ``rows_written`` (trades inserted), ``duplicates_ignored``,
    ``rows_rejected`` (rows that could not be stored at all), ``commits``,
    ``last_error`` / ``last_error_ms`` / ``failing_since_ms``, ``last_commit_ms``.
    """

    #: Market of a bare symbol (and of rows migrated from before instruments).
    default_market: str = "spot"
    rows_written: int = 0
    duplicates_ignored: int = 0
    rows_rejected: int = 0
    commits: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    failing_since_ms: int | None = None
    last_commit_ms: int | None = None

    # -- names (shared by every backend) --------------------------------------------
    def instrument(self, ref: InstrumentRef) -> Instrument:
        """``Instrument`` or name -> ``Instrument``. A bare symbol is taken as it is
        (not validated: the store is no gate, a symbol never stored just reads empty)
        on the default venue and market; ``market:SYMBOL`` and ``venue:market:SYMBOL``
        are parsed by :func:`analytics.instruments.parse_instrument`."""
        if isinstance(ref, Instrument):
            return ref
        cache = self.__dict__.setdefault("_instrument_cache", {})
        inst = cache.get(ref)
        if inst is None:
            universe = self.__dict__.get("_universe")
            if universe is not None and ref in self.__dict__["_universe_names"]:
                inst = universe.by_name(ref)
            elif ":" in ref:
                inst = parse_instrument(ref, self.default_market)
            else:
                inst = Instrument(DEFAULT_VENUE, self.default_market, ref)
            if len(cache) < 10_000:
                cache[ref] = inst
        return inst

    def name(self, inst: Instrument) -> str:
        """The store's name of ``inst``: the bare symbol on the default venue and
        market, else ``inst.key`` (``perp:BTCUSDT``). After :meth:`use_universe`, the
        run's name (:meth:`analytics.instruments.Universe.name`) for its instruments;
        other stored instruments keep the rule above unless their bare symbol is a
        universe name of another instrument (then ``inst.key``: names never collide)."""
        universe = self.__dict__.get("_universe")
        if universe is not None:
            if inst in universe:
                return universe.name(inst)
            if inst.symbol in self.__dict__["_universe_names"]:
                return inst.key
        if inst.venue == DEFAULT_VENUE and inst.market == self.default_market:
            return inst.symbol
        return inst.key

    def use_universe(self, universe) -> None:
        """Name instruments as the run does (``Universe``): ``name()`` and
        ``instrument()`` then agree with it, so ``spot:BTCUSDT`` read from the store,
        a ring and a URL are one instrument; a one-market run's names are unchanged.
        Called by the runtime before the restore (no reader has cached a name yet)."""
        self.__dict__["_universe_names"] = frozenset(universe.names)
        self.__dict__["_universe"] = universe
        self.__dict__["_instrument_cache"] = {}

    # -- lifecycle ------------------------------------------------------------------
    @property
    @abstractmethod
    def readonly(self) -> bool:
        """Opened for reading only (``--no-ingest``): no writer, writes refused."""

    @property
    @abstractmethod
    def writable(self) -> bool:
        """False while commits fail (items queue up) and for a readonly store."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Items queued but not committed yet (approximate while the writer runs)."""

    @abstractmethod
    def start(self) -> TradeStore:
        """Start the writer (a readonly store has none). Returns self."""

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything queued before the call is committed; False on
        timeout or when items are pending and no writer runs."""

    @abstractmethod
    def close(self, timeout: float = 5.0) -> bool:
        """Flush, stop the writer, close every connection (idempotent). False if the
        writer did not finish in time. Later writes raise ``RuntimeError``."""

    @abstractmethod
    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections and writer (never used
        across a fork); the child only reads, through connections of its own."""

    @abstractmethod
    def status(self) -> dict:
        """The ``store`` part of ``/api/health``: path, pending, writable, last_error,
        last_error_ms, failing_since_ms, last_commit_ms, rows_written, readonly."""

    def __enter__(self) -> TradeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queued writes --------------------------------------------------------------
    @abstractmethod
    def add_trade(self, trade: Trade) -> None:
        """Queue one trade; its instrument is ``trade.instrument`` (venue, market)."""

    @abstractmethod
    def add_bar(self, instrument: InstrumentRef, bar_row: tuple) -> None:
        """Queue a closed 1 s bar, a tuple in ``analytics.bars.BAR_FIELDS`` order
        (``ValueError`` if it has another width). A later row for the same instrument
        and ``ts`` replaces it (a bucket re-closed after late trades)."""

    @abstractmethod
    def add_book_bar(self, instrument: InstrumentRef, book_row: tuple) -> None:
        """Queue a closed 1 s top-of-book bar, a tuple in ``analytics.book.BOOK_FIELDS``
        order (``ValueError`` if it has another width). A later row for the same
        instrument and ``ts`` replaces it (the open bar flushed at shutdown)."""

    @abstractmethod
    def add_gap(
        self, instrument: InstrumentRef, first_id: int, last_id: int, detected_ms: int
    ) -> None:
        """Queue a gap of missing trade ids ``[first_id, last_id]``. The same gap
        detected again keeps its detection time and fill state; only a wider
        ``last_id`` is taken over."""

    @abstractmethod
    def mark_gap_filled(self, instrument: InstrumentRef, first_id: int, filled_ms: int) -> None:
        """Queue "the gap starting at ``first_id`` was back-filled" (unknown: no-op)."""

    @abstractmethod
    def rebuild_bars(self, instrument: InstrumentRef, start_ms: int, end_ms: int) -> None:
        """Queue "recompute the stored 1 s bars of ``[start_ms, end_ms)`` from the
        stored trades" (open/close by (time, id), as ``BarBuilder``); runs after, and
        in the same transaction as, everything queued before it."""

    @abstractmethod
    def add_break(self, instrument: InstrumentRef, ts_ms: int, reason: str) -> None:
        """Queue a session break at ``ts_ms`` (trade time of the first trade after
        it); the same (instrument, ts_ms) twice is stored once."""

    # -- reads ----------------------------------------------------------------------
    @abstractmethod
    def count_trades(self, instrument: InstrumentRef | None = None) -> int:
        """Stored trades of one instrument, or of all."""

    @abstractmethod
    def symbols(self) -> list[str]:
        """Names of the instruments with at least one stored trade, sorted by
        (venue, market, symbol)."""

    @abstractmethod
    def instruments(self) -> list[Instrument]:
        """The instruments with at least one stored trade, by (venue, market, symbol)."""

    @abstractmethod
    def last_trade_ids(self) -> dict[str, int]:
        """Highest stored trade id per instrument name (where a feed resumes)."""

    @abstractmethod
    def trade_ids(self, instrument: InstrumentRef) -> np.ndarray:
        """All stored trade ids of the instrument, ascending (int64)."""

    @abstractmethod
    def read_trades(
        self,
        instrument: InstrumentRef,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> TradeColumns:
        """Trades with ``start_ms <= time_ms < end_ms`` by trade id; ``limit`` keeps
        the first ones. May assume trade time non-decreasing in trade id."""

    @abstractmethod
    def read_trades_after_id(
        self, instrument: InstrumentRef, after_id: int, limit: int | None = None
    ) -> TradeColumns:
        """Trades with ``trade_id > after_id``, ascending (how ``--no-ingest`` follows
        a database another process writes)."""

    @abstractmethod
    def read_recent_trades(self, instrument: InstrumentRef, n: int) -> TradeColumns:
        """The last ``n`` trades by id, ascending (refills a ring on restart)."""

    @abstractmethod
    def first_trade_after(self, instrument: InstrumentRef, trade_id: int) -> tuple[int, int] | None:
        """``(id, time_ms)`` of the first stored trade with id > ``trade_id``."""

    @abstractmethod
    def read_bars(
        self, instrument: InstrumentRef, start_ms: int | None = None, end_ms: int | None = None
    ) -> Bars:
        """Stored 1 s bars with ``start_ms <= ts < end_ms`` (``analytics.bars.Bars``,
        ``tf_ms=1000``); bars without trades report ids of -1."""

    @abstractmethod
    def read_book_bars(
        self, instrument: InstrumentRef, start_ms: int | None = None, end_ms: int | None = None
    ) -> pd.DataFrame:
        """Stored 1 s book bars with ``start_ms <= ts < end_ms``, ordered by ``ts``: a
        frame with the ``analytics.book.BOOK_FIELDS`` columns (their ``BOOK_DTYPES``),
        empty (same columns) for an instrument without book data."""

    @abstractmethod
    def read_gaps(self, instrument: InstrumentRef | None = None) -> list[Gap]:
        """Stored gaps, by (instrument, first_id)."""

    def unfilled_gaps(self) -> list[Gap]:
        """Gaps not marked filled (a restart hands them to the back-fill again)."""
        return [g for g in self.read_gaps() if g.filled_ms is None]

    @abstractmethod
    def missing_ranges(
        self, instrument: InstrumentRef, first_id: int, last_id: int
    ) -> list[tuple[int, int]]:
        """Sub-ranges of ``[first_id, last_id]`` with no stored trade, ascending."""

    @abstractmethod
    def read_breaks(self, instrument: InstrumentRef | None = None) -> list[Break]:
        """Stored session breaks, by time."""


# ------------------------------------------------------------------------ datasets
class DatasetStore(ABC):
    """Named sets of uploaded OHLC bars (see ``ingest/store/dataset_rules.py`` for the
    rules every backend applies: names, limits, appends, identical overlaps)."""

    readonly: bool = False

    @abstractmethod
    def list(self) -> list[DatasetInfo]:
        """Every dataset, by name."""

    @abstractmethod
    def get(self, name: str) -> DatasetInfo | None:
        """One dataset, or None."""

    @abstractmethod
    def bars(self, name: str, symbol: str) -> Bars:
        """All bars of ``symbol`` in dataset ``name`` (read-only columns, ids 0);
        ``KeyError`` if the dataset or the symbol does not exist."""

    def add(self, name: str, upload: OhlcUpload) -> DatasetInfo:
        """:meth:`store`, returning the dataset after it."""
        return self.store(name, upload).info

    @abstractmethod
    def store(self, name: str, upload: OhlcUpload) -> StoredUpload:
        """Store an accepted upload under ``name`` (new, more symbols, or appended
        to a held symbol; identical overlapping bars merge), atomically: a
        :class:`DatasetError` (read-only, invalid name, other timeframe, a bar that
        differs from the stored one, a limit) changes nothing."""

    @abstractmethod
    def remove(self, name: str) -> bool:
        """Delete a dataset and its bars atomically; False if there is none;
        :class:`DatasetError` when read-only."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def reset_after_fork(self) -> None:
        """In a forked child: never use the parent's connection or lock."""


# ------------------------------------------------------------------------ alerts
class AlertStore(ABC):
    """Alert rules, their evaluation state and fired events. An event and the state
    after it are saved in ONE transaction; ``(rule_id, data_ts)`` is unique, so a point
    evaluated twice stores one event. Deleting a rule keeps its events. Writes raise
    :class:`AlertsReadOnly` when the database cannot be written."""

    readonly: bool = False

    @abstractmethod
    def insert_rule(self, spec: dict, enabled: bool) -> StoredRule:
        """A new rule under a fresh id (ids are never reused)."""

    @abstractmethod
    def restore_rule(self, rule: StoredRule, state: RuleState | None) -> StoredRule | None:
        """Put a deleted rule back under its own id with its state (undo); None if
        that id is taken."""

    @abstractmethod
    def update_rule(
        self, rule_id: int, spec: dict, enabled: bool, *, keep_state: bool = False
    ) -> StoredRule | None:
        """Replace a rule's spec; its state is dropped unless ``keep_state``; None if
        there is no such rule."""

    @abstractmethod
    def delete_rule(self, rule_id: int) -> bool: ...

    @abstractmethod
    def rules(self) -> list[StoredRule]:
        """Every rule, by id (a rule whose spec cannot be read is skipped, logged)."""

    @abstractmethod
    def rules_version(self) -> tuple[int, int, int]:
        """Changes whenever a rule is added, edited or deleted (by any process)."""

    @abstractmethod
    def states(self) -> dict[int, RuleState]: ...

    @abstractmethod
    def save(self, states: dict[int, RuleState], events: list[NewEvent]) -> list[StoredEvent]:
        """Events and states in one transaction; returns the events inserted. Events
        and states of rules deleted meanwhile are not written. :class:`StoreError`
        when the write fails (nothing written: the caller keeps and retries them)."""

    @abstractmethod
    def events(
        self,
        *,
        since_ms: int | None = None,
        after_id: int | None = None,
        rule_id: int | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Events oldest first: ``fired_ms > since_ms``, ``id > after_id``; with
        neither, the most recent ``limit`` (capped) events."""

    @abstractmethod
    def last_event_id(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and connection."""


# ------------------------------------------------------------------------ backends
@dataclass(frozen=True)
class Stores:
    """The three stores of one database, opened together by :class:`Backend`."""

    trades: TradeStore
    datasets: DatasetStore
    alerts: AlertStore

    def reset_after_fork(self) -> None:
        for store in (self.trades, self.datasets, self.alerts):
            store.reset_after_fork()

    def close(self) -> None:
        self.trades.close()
        self.datasets.close()
        self.alerts.close()


class Backend(ABC):
    """A kind of database. ``ingest.store.BACKENDS`` maps a URL scheme to one."""

    @abstractmethod
    def local_file(self, location: str) -> Path | None:
        """The database's file on this machine (the one-writer lock sits next to it),
        or None for a database server (which serialises writers itself)."""

    @abstractmethod
    def open_trades(self, location: str, *, readonly: bool, market: str) -> TradeStore:
        """The trade store. A writable open creates or MIGRATES the schema (rows from
        before instruments get venue ``binance`` and market ``market``); a readonly
        open never migrates and raises :class:`SchemaError` on an old schema."""

    @abstractmethod
    def open_datasets(self, location: str, *, readonly: bool) -> DatasetStore: ...

    @abstractmethod
    def open_alerts(self, location: str) -> AlertStore:
        """Alerts open read-write even next to a readonly trade store: rules are
        edited from a ``--no-ingest`` dashboard and evaluated by the ingesting
        process. A database that cannot be written gives a readonly alert store."""

    def open(self, location: str, *, readonly: bool = False, market: str = "spot") -> Stores:
        """All three; the trade store first (it creates or migrates the schema)."""
        market = normalize_market(market)
        trades = self.open_trades(location, readonly=readonly, market=market)
        try:
            datasets = self.open_datasets(location, readonly=readonly)
            alerts = self.open_alerts(location)
        except BaseException:
            trades.close()
            raise
        return Stores(trades, datasets, alerts)
