"""The one door from pages and API routes to the market: a typed, read-mostly facade.

Pages and routes ask a :class:`MarketData` (held by :mod:`dashapp.services`) and
nothing else: never the runtime's rings, store, ingestor or engine. That keeps three
promises checkable in one file:

* **copies and snapshots only**: ticks come back as copies (:class:`TickBatch`), bars as
  immutable views, pairs as frozen :class:`PairSnapshot` s, so a reader can never
  disturb the feed thread (architecture: "one writer per structure");
* **one seam for another backend**: the dashboard over a remote analytics service, a
  benchmark's synthetic market or the tests' ``FakeServices`` implement this protocol,
  and no page changes (``tests/dashapp/test_facade.py`` checks every implementation
  against it, signature by signature);
* **pages never import ``ingest``**: the error types and names they need
  (:class:`DatasetError`, :data:`DATASET_RE`, :class:`AlertsReadOnly`,
  :class:`RuleNotFound`, :class:`ChannelError`, :class:`ChannelNotFound`,
  :func:`iso_utc`) are re-exported here.

Names: an instrument is named as rings, the engine, URLs and the API name it
(:class:`analytics.instruments.Universe`): the bare symbol while it is on one market.

:class:`LiveMarketData` is the implementation over :class:`ingest.runtime.Runtime`, and
the only dashapp module that knows the runtime's insides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from analytics.instruments import (
    Instrument,
    InstrumentError,
    Universe,
    normalize_market,
    parse_instrument,
)
from ingest.alert_service import RuleNotFound
from ingest.delivery import ChannelError, ChannelNotFound
from ingest.store import DATASET_RE, AlertsReadOnly, DatasetError, iso_utc

if TYPE_CHECKING:
    import numpy as np

    from analytics.alerts import AlertRule
    from analytics.bars import Bar, Bars
    from analytics.book import BookBars
    from analytics.engine import PairKey, PairSnapshot
    from analytics.upload import OhlcUpload
    from ingest.models import BookTicker
    from ingest.ring import LastTick, TickBatch
    from ingest.store import DatasetInfo, StoredEvent, StoredUpload, TradeColumns

__all__ = [
    "DATASET_RE",
    "AlertsData",
    "AlertsReadOnly",
    "ChannelError",
    "ChannelNotFound",
    "DatasetError",
    "DatasetsData",
    "LiveMarketData",
    "MarketData",
    "RuleNotFound",
    "iso_utc",
]


# ------------------------------------------------------------------------ protocols
@runtime_checkable
class AlertsData(Protocol):
    """Alert rules and their events. Rules are evaluated where trades are ingested,
    never by a page: pages only read and edit them. Edits raise :class:`AlertsReadOnly`
    on a read-only DB and :class:`RuleNotFound` for an unknown id."""

    def rules(self) -> list[AlertRule]: ...

    def rule(self, rule_id: int) -> AlertRule: ...

    def rule_json(self, rule_id: int) -> dict: ...

    def rules_json(self) -> list[dict]: ...

    def create(self, data) -> dict: ...

    def update(self, rule_id: int, data, *, partial: bool = False) -> dict: ...

    def delete(self, rule_id: int) -> dict: ...

    def restore(self, deleted: dict) -> dict: ...

    def events(
        self,
        *,
        since_ms: int | None = None,
        after_id: int | None = None,
        rule_id: int | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]: ...

    def last_event_id(self) -> int: ...

    def active_thresholds(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> list[tuple[str, float]]: ...

    # delivery channels and the delivery log (#20); dicts are the API's JSON
    def channels(self) -> list[dict]:
        """Every channel ``{"id", "kind", "name", "url" (masked), "has_secret",
        "created_ms", "updated_ms"}``: never a secret or an unmasked token."""
        ...

    def channel(self, channel_id: int) -> dict:
        """One channel (as :meth:`channels`); :class:`ChannelNotFound`."""
        ...

    def add_channel(self, data) -> dict:
        """Validate and store ``{"kind", "name", "url", "secret"?}``; returns it (with
        ``id``). :class:`ChannelError` naming every bad field."""
        ...

    def update_channel(self, channel_id: int, data) -> dict:
        """Replace a channel; an empty or missing ``secret`` keeps the stored one,
        ``null`` removes it."""
        ...

    def delete_channel(self, channel_id: int) -> dict:
        """Delete a channel (its delivery log stays; rules stop naming it)."""
        ...

    def test_channel(self, channel_id: int) -> dict:
        """Send a sample payload now (short timeout): ``{"ok", "status", "error",
        "latency_ms"}``."""
        ...

    def deliveries(
        self,
        *,
        rule_id: int | None = None,
        channel_id: int | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[dict]:
        """The delivery log, newest first: ``{"id", "event_id", "rule_id",
        "channel_id", "channel_name", "status" (pending|retrying|delivered|failed),
        "attempts", "last_error", "last_status", "created_ms", "delivered_ms",
        "latency_ms", "next_attempt_ms"}``."""
        ...


@runtime_checkable
class DatasetsData(Protocol):
    """Uploaded OHLC datasets: stored apart from the live ticks, read in batch."""

    def list(self) -> list[DatasetInfo]: ...

    def get(self, name: str) -> DatasetInfo | None: ...

    def bars(self, name: str, symbol: str) -> Bars: ...

    def store(self, name: str, upload: OhlcUpload) -> StoredUpload: ...

    def remove(self, name: str) -> bool: ...


@runtime_checkable
class MarketData(Protocol):
    """What a page or an API route may ask of the market (read-only)."""

    @property
    def alerts(self) -> AlertsData: ...

    @property
    def datasets(self) -> DatasetsData: ...

    # instruments
    def names(self) -> tuple[str, ...]:
        """Names of the ingested instruments, in the run's order."""
        ...

    def resolve(self, text: str) -> str:
        """What a user typed -> the name of one ingested instrument
        (``InstrumentError``, a ``ValueError``, saying why not)."""
        ...

    def instrument(self, name: str) -> Instrument:
        """The instrument an ingested name stands for (its market, its ``label``
        "BTCUSDT · perp"); ``KeyError`` for a name not ingested."""
        ...

    # bars and pairs
    def timeframes(self) -> tuple[int, ...]:
        """Live bar timeframes (ms), ascending."""
        ...

    def bars(self, name: str, tf_ms: int) -> Bars: ...

    def bars_of(self, names: Iterable[str], tf_ms: int) -> dict[str, Bars]:
        """Closed bars of several instruments taken at one instant (one bar clock)."""
        ...

    def recent_bars_of(self, names: Iterable[str], tf_ms: int, n: int) -> dict[str, Bars]:
        """The last ``n`` closed bars of several instruments at one instant, reading only
        those rows (the markets board: hundreds of instruments every 500 ms)."""
        ...

    def final_ms(self, tf_ms: int) -> int | None:
        """Every ``tf_ms`` bucket ending at or before this is final for EVERY instrument
        (read it BEFORE :meth:`bars_of`): a market-wide read (the market screen) ends
        its window there, so a later read of the same window finds the same bars. None
        before the first trade."""
        ...

    def open_bar(self, name: str, tf_ms: int) -> Bar | None: ...

    def book_bars(self, name: str, tf_ms: int) -> BookBars | None:
        """Closed top-of-book bars at ``tf_ms`` (complete buckets; ``final_ms`` says up
        to where the book is final), None when ``name`` has no book data."""
        ...

    def breaks(self, name: str) -> np.ndarray:
        """Session starts (ms) of ``name``: no return or window spans one."""
        ...

    def pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> PairSnapshot:
        """The pair's snapshot, built (and then tracked) when not tracked yet;
        ``source="mid"`` on the legs' mids (``InsufficientData`` while a leg has no
        quote)."""
        ...

    def tracked_pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> PairSnapshot | None:
        """The snapshot of a tracked pair, or None: never builds (the 500 ms path)."""
        ...

    def tracked_pairs(self) -> list[PairKey]: ...

    # ticks and quotes
    def last_tick(self, name: str) -> LastTick | None: ...

    def quote(self, name: str) -> BookTicker | None:
        """The latest best bid/ask update of ``name`` (None before the first, or with
        ``--no-book``): O(1), for the 500 ms widgets."""
        ...

    def ticks_since(self, name: str, seq: int) -> TickBatch: ...

    def ticks_window(self, name: str, start_ms: int) -> TickBatch: ...

    def trade_rate(self, name: str) -> float:
        """Trades per second over the last minute."""
        ...

    def exchange_now_ms(self) -> int | None:
        """The exchange's clock as the feed sees it (last trade time + time since);
        None before the first trade."""
        ...

    def stored_trades(
        self, name: str, start_ms: int, end_ms: int, limit: int
    ) -> TradeColumns:
        """Stored trades with ``start <= time < end``, by id, at most ``limit``."""
        ...

    def stored_trade_span(self, name: str) -> tuple[int, int] | None:
        """(first, last) stored trade time of ``name``, None when none is stored."""
        ...

    # health
    def health(self) -> dict:
        """The JSON of ``GET /api/health``."""
        ...

    def feed_health(self) -> dict:
        """The ``feed`` part of :meth:`health`, alone (polled by every badge)."""
        ...


# ------------------------------------------------------------------ implementation
class LiveAlerts:
    """:class:`AlertsData` over the runtime's ``AlertService``."""

    def __init__(self, service) -> None:
        self._svc = service

    def rules(self) -> list[AlertRule]:
        return self._svc.rules()

    def rule(self, rule_id: int) -> AlertRule:
        return self._svc.rule(rule_id)

    def rule_json(self, rule_id: int) -> dict:
        return self._svc.rule_json(rule_id)

    def rules_json(self) -> list[dict]:
        return self._svc.rules_json()

    def create(self, data) -> dict:
        return self._svc.create(data)

    def update(self, rule_id: int, data, *, partial: bool = False) -> dict:
        return self._svc.update(rule_id, data, partial=partial)

    def delete(self, rule_id: int) -> dict:
        return self._svc.delete(rule_id)

    def restore(self, deleted: dict) -> dict:
        return self._svc.restore(deleted)

    def events(
        self,
        *,
        since_ms: int | None = None,
        after_id: int | None = None,
        rule_id: int | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        return self._svc.events(since_ms=since_ms, after_id=after_id, rule_id=rule_id,
                                limit=limit)

    def last_event_id(self) -> int:
        return self._svc.last_event_id()

    def active_thresholds(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> list[tuple[str, float]]:
        return self._svc.active_thresholds(a, b, tf_ms, window, regression, prices, source)

    def channels(self) -> list[dict]:
        return self._svc.channels()

    def channel(self, channel_id: int) -> dict:
        return self._svc.channel(channel_id)

    def add_channel(self, data) -> dict:
        return self._svc.add_channel(data)

    def update_channel(self, channel_id: int, data) -> dict:
        return self._svc.update_channel(channel_id, data)

    def delete_channel(self, channel_id: int) -> dict:
        return self._svc.delete_channel(channel_id)

    def test_channel(self, channel_id: int) -> dict:
        return self._svc.test_channel(channel_id)

    def deliveries(
        self,
        *,
        rule_id: int | None = None,
        channel_id: int | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[dict]:
        return self._svc.deliveries(rule_id=rule_id, channel_id=channel_id, status=status,
                                    limit=limit)


class LiveDatasets:
    """:class:`DatasetsData` over the runtime's dataset store."""

    def __init__(self, store) -> None:
        self._store = store

    def list(self) -> list[DatasetInfo]:
        return self._store.list()

    def get(self, name: str) -> DatasetInfo | None:
        return self._store.get(name)

    def bars(self, name: str, symbol: str) -> Bars:
        return self._store.bars(name, symbol)

    def store(self, name: str, upload: OhlcUpload) -> StoredUpload:
        return self._store.store(name, upload)

    def remove(self, name: str) -> bool:
        return self._store.remove(name)


class LiveMarketData:
    """:class:`MarketData` over an :class:`ingest.runtime.Runtime` (or anything with its
    reader surface: ``engine``, ``ingestor``, ``store``, ``datasets``, ``alerts``,
    ``market``, ``health()``, ``feed_health()``). Sub-facades are built on first use,
    so a runtime without alerts or datasets serves the pages that need neither."""

    def __init__(self, runtime) -> None:
        self._rt = runtime
        self._alerts: LiveAlerts | None = None
        self._datasets: LiveDatasets | None = None
        self._universe: Universe | None = None

    @property
    def alerts(self) -> LiveAlerts:
        if self._alerts is None:
            self._alerts = LiveAlerts(self._rt.alerts)
        return self._alerts

    @property
    def datasets(self) -> LiveDatasets:
        if self._datasets is None:
            self._datasets = LiveDatasets(self._rt.datasets)
        return self._datasets

    # instruments
    def names(self) -> tuple[str, ...]:
        return tuple(self._rt.ingestor.rings)

    def _run_universe(self) -> Universe:
        """The runtime's universe (what the run ingests, C1), never re-parsed from
        names; a runtime without one (old fakes) gets one from its ring names."""
        universe = getattr(self._rt, "universe", None)
        if universe is None:
            if self._universe is None:
                self._universe = Universe.parse(
                    self.names(), normalize_market(self._rt.market))
            universe = self._universe
        return universe

    def resolve(self, text: str) -> str:
        rings = self._rt.ingestor.rings
        if isinstance(text, str) and text.strip() in rings:
            return text.strip()
        universe = self._run_universe()
        try:
            return universe.name(universe.resolve(text))
        except InstrumentError:
            # an explicit instrument restored from the store but outside this run's
            # universe (an earlier run's): its rings are still shown
            if isinstance(text, str) and ":" in text:
                name = self._rt.store.name(parse_instrument(text, universe.default_market))
                if name in rings:
                    return name
            raise

    def instrument(self, name: str) -> Instrument:
        universe = self._run_universe()
        if name in universe.names:
            return universe.by_name(name)
        if name in self._rt.ingestor.rings and hasattr(self._rt, "store"):
            return self._rt.store.instrument(name)
        raise KeyError(name)

    # bars and pairs
    def timeframes(self) -> tuple[int, ...]:
        return tuple(self._rt.engine.timeframes_ms)

    def bars(self, name: str, tf_ms: int) -> Bars:
        return self._rt.engine.bars(name, tf_ms)

    def bars_of(self, names: Iterable[str], tf_ms: int) -> dict[str, Bars]:
        engine = self._rt.engine
        names = list(names)
        for s in names:  # stored days a restart deferred: read them outside the lock
            engine.load_deferred(s)
        with engine.lock:
            return {s: engine.bars(s, tf_ms) for s in names}

    def recent_bars_of(self, names: Iterable[str], tf_ms: int, n: int) -> dict[str, Bars]:
        engine = self._rt.engine
        names = list(names)
        for s in names:  # as bars_of: a restart's deferred days first
            engine.load_deferred(s)
        with engine.lock:
            return {s: engine.bars_tail(s, tf_ms, n) for s in names}

    def final_ms(self, tf_ms: int) -> int | None:
        return self._rt.engine.final_ms(tf_ms)

    def book_bars(self, name: str, tf_ms: int) -> BookBars | None:
        return self._rt.engine.book_bars(name, tf_ms)

    def open_bar(self, name: str, tf_ms: int) -> Bar | None:
        return self._rt.engine.open_bar(name, tf_ms)

    def breaks(self, name: str) -> np.ndarray:
        return self._rt.engine.breaks(name)

    def pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> PairSnapshot:
        return self._rt.engine.pair(a, b, tf_ms, window, regression, prices, source)

    def tracked_pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> PairSnapshot | None:
        from analytics.engine import PairKey

        return self._rt.engine.tracked_snapshot(
            PairKey(a, b, tf_ms, window, regression, prices, source))

    def tracked_pairs(self) -> list[PairKey]:
        return self._rt.engine.tracked_pairs()

    # ticks
    def last_tick(self, name: str) -> LastTick | None:
        return self._rt.ingestor.rings[name].last()

    def quote(self, name: str) -> BookTicker | None:
        quote = getattr(self._rt.ingestor, "quote", None)
        return None if quote is None else quote(name)

    def ticks_since(self, name: str, seq: int) -> TickBatch:
        return self._rt.ingestor.rings[name].since(seq)

    def ticks_window(self, name: str, start_ms: int) -> TickBatch:
        return self._rt.ingestor.rings[name].window(start_ms)

    def trade_rate(self, name: str) -> float:
        return self._rt.ingestor.rate(name)

    def exchange_now_ms(self) -> int | None:
        return self._rt.ingestor.exchange_now_ms()

    def stored_trades(
        self, name: str, start_ms: int, end_ms: int, limit: int
    ) -> TradeColumns:
        return self._rt.store.read_trades(name, start_ms, end_ms, limit=limit)

    def stored_trade_span(self, name: str) -> tuple[int, int] | None:
        store = self._rt.store
        first, last = store.read_trades(name, limit=1), store.read_recent_trades(name, 1)
        if not len(first.time_ms) or not len(last.time_ms):
            return None
        return int(first.time_ms[0]), int(last.time_ms[-1])

    # health
    def health(self) -> dict:
        return self._rt.health()

    def feed_health(self) -> dict:
        return self._rt.feed_health()
