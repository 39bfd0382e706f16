"""Symbol universes: ``--symbols top:N`` / ``all`` resolved against Binance's REST.

A desk screens the whole market, then watches a few dozen instruments. Besides
instruments (``BTCUSDT``, ``perp:BTCUSDT``), ``--symbols`` items may be SELECTORS:

* ``all``       every TRADING instrument quoted in USDT (perp: ``contractType
  PERPETUAL``) that ``exchangeInfo`` lists;
* ``top:N``     the N of those with the largest 24 h ``quoteVolume`` in the 24 h
  ticker, ties by symbol;

on ``--market`` when bare, or on one market: ``spot:top:20``, ``perp:all``. They mix
with instruments: ``perp:top:50,spot:BTCUSDT``. :func:`parse_universe_spec` reads the
items into a :class:`UniverseSpec`; :func:`resolve_universe` asks each market's REST
(``/api/v3/...`` spot, ``/fapi/v1/...`` perp) and returns the instruments: explicit
ones first, then each selector's in rank order (``all``: by symbol), de-duplicated.

:class:`UniverseRefresher` re-resolves the spec every ``interval_s`` (default a day:
Binance lists new perpetuals a few times a week) and hands instruments it has not seen
to ``on_new`` (the runtime subscribes them without a restart). A failed refresh keeps
the current universe, reports ``last_error`` and retries after a jittered backoff.
Instruments that leave a selector (delisted, or out of the top N) are kept: a run
never drops what it ingests.

Stdlib HTTP (urllib) + orjson; every failure is :class:`UniverseUnavailable` naming
the URL. docs/markets.md shows the syntax.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import orjson

from analytics.instruments import (
    DEFAULT_VENUE,
    Instrument,
    InstrumentError,
    check_symbol,
    normalize_market,
    parse_instrument,
)

log = logging.getLogger(__name__)

QUOTE_ASSET = "USDT"
#: REST paths per market: (exchangeInfo, 24 h ticker of all symbols).
REST_PATHS: dict[str, tuple[str, str]] = {
    "spot": ("/api/v3/exchangeInfo", "/api/v3/ticker/24hr"),
    "perp": ("/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr"),
}
#: Binance's public REST hosts (used when no --rest-url is given).
DEFAULT_REST = {"spot": "https://api.binance.com", "perp": "https://fapi.binance.com"}
MIN_REFRESH_S = 10.0
#: First retry after a failed refresh (doubles, full jitter, capped at the interval).
RETRY_BASE_S = 30.0


class UniverseUnavailable(RuntimeError):
    """The REST that lists the market cannot be read (the message names the URL)."""


@dataclass(frozen=True)
class Selector:
    """``top:N`` (``kind="top"``, ``n=N``) or ``all`` (``n=None``) on one market."""

    market: str  # "spot" | "perp"
    kind: str  # "top" | "all"
    n: int | None

    def __str__(self) -> str:
        return f"{self.market}:{self.kind}" + (f":{self.n}" if self.kind == "top" else "")


@dataclass(frozen=True)
class UniverseSpec:
    """What ``--symbols`` asked for: explicit instruments (keys, ``perp:BTCUSDT``, or
    bare symbols on ``default_market``) and selectors."""

    instruments: tuple[str, ...]
    selectors: tuple[Selector, ...]
    default_market: str

    @property
    def dynamic(self) -> bool:
        """Whether the run's instruments come from the exchange (any selector)."""
        return bool(self.selectors)

    @property
    def markets(self) -> tuple[str, ...]:
        """Markets the spec names (explicit instruments' and selectors'), sorted."""
        ms = {parse_instrument(t, self.default_market).market for t in self.instruments}
        ms |= {s.market for s in self.selectors}
        return tuple(sorted(ms))

    def explicit(self) -> tuple[Instrument, ...]:
        """The explicit instruments, in the order given."""
        return tuple(dict.fromkeys(
            parse_instrument(t, self.default_market) for t in self.instruments))


def _selector(parts: list[str], market: str, item: str) -> Selector | None:
    """``["top", "50"]`` / ``["all"]`` on ``market`` -> Selector; None if not one."""
    head = parts[0].strip().lower()
    if head == "all" and len(parts) == 1:
        return Selector(market, "all", None)
    if head != "top":
        return None
    if len(parts) != 2 or not parts[1].strip().isdigit():
        raise ValueError(f"{item!r}: expected top:N with N a whole number (e.g. top:50)")
    n = int(parts[1])
    if n < 1:
        raise ValueError(f"{item!r}: N must be at least 1 (top:N)")
    return Selector(market, "top", n)


def parse_universe_spec(items: Iterable[str], default_market: str) -> UniverseSpec:
    """Read ``--symbols`` items: instruments and selectors (module docstring).

    ``ValueError`` names the offending item: ``top:0``, ``top:x``, ``bogus:all``,
    ``perp:top`` (no N), a malformed symbol. Duplicates are kept once."""
    try:
        default = normalize_market(default_market)
    except InstrumentError as exc:
        raise ValueError(str(exc)) from None
    instruments: list[str] = []
    selectors: list[Selector] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":")
        sel = _selector(parts, default, item)
        if sel is None and len(parts) >= 2:
            try:
                market = normalize_market(parts[0])
            except InstrumentError:
                market = None
            if market is not None and parts[1].strip().lower() in ("top", "all"):
                sel = _selector(parts[1:], market, item)
                if sel is None:
                    raise ValueError(f"{item!r}: expected {parts[0]}:top:N or "
                                     f"{parts[0]}:all")
        if sel is not None:
            if sel not in selectors:
                selectors.append(sel)
            continue
        try:
            inst = (check_symbol(item) if len(parts) == 1
                    else parse_instrument(item, default).key)
        except InstrumentError as exc:
            msg = str(exc)
            raise ValueError(msg if repr(item) in msg else f"{item!r}: {msg}") from None
        if inst not in instruments:
            instruments.append(inst)
    if not instruments and not selectors:
        raise ValueError("give at least one symbol or selector (top:N, all)")
    return UniverseSpec(tuple(instruments), tuple(selectors), default)


@dataclass(frozen=True)
class Listing:
    """One instrument the exchange lists: its 24 h quote volume (0 if the ticker
    lacks it) and listing time (``onboardDate``, futures only)."""

    market: str
    symbol: str
    quote_volume: float
    onboard_ms: int | None


def _get_json(url: str, timeout: float) -> object:
    req = urllib.request.Request(url, headers={"User-Agent": "pairs-universe/1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace")
        raise UniverseUnavailable(f"{url}: HTTP {exc.code} {detail}".strip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UniverseUnavailable(f"{url}: unreachable ({reason})") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UniverseUnavailable(f"{url}: not JSON ({exc})") from None


def fetch_listings(rest_base: str, market: str, *, timeout: float = 10.0) -> list[Listing]:
    """Every TRADING USDT instrument of ``market`` (perp: PERPETUAL contracts) from
    ``exchangeInfo``, with its ``quoteVolume`` from the 24 h ticker; by symbol.

    Two requests (Binance weights: futures 1 + 40, spot 20 + 80).
    :class:`UniverseUnavailable` names the URL that failed or answered nonsense."""
    market = normalize_market(market)
    info_path, ticker_path = REST_PATHS[market]
    base = rest_base.rstrip("/")
    info_url, ticker_url = base + info_path, base + ticker_path
    info = _get_json(info_url, timeout)
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise UniverseUnavailable(f"{info_url}: no 'symbols' list in the answer")
    ticker = _get_json(ticker_url, timeout)
    if not isinstance(ticker, list):
        raise UniverseUnavailable(f"{ticker_url}: expected a list of tickers")
    volumes: dict[str, float] = {}
    for row in ticker:
        try:
            volumes[row["symbol"]] = float(row["quoteVolume"])
        except (KeyError, TypeError, ValueError):
            raise UniverseUnavailable(
                f"{ticker_url}: a ticker without symbol/quoteVolume: {row!r:.120}") from None
    out: list[Listing] = []
    for entry in info["symbols"]:
        try:
            symbol, status = entry["symbol"], entry["status"]
            quote = entry["quoteAsset"]
        except (KeyError, TypeError):
            raise UniverseUnavailable(
                f"{info_url}: a symbol entry without symbol/status/quoteAsset: "
                f"{entry!r:.120}") from None
        if status != "TRADING" or quote != QUOTE_ASSET:
            continue
        if market == "perp" and entry.get("contractType") != "PERPETUAL":
            continue
        try:
            symbol = check_symbol(symbol)
        except InstrumentError:
            continue  # a name our symbol syntax cannot hold: not ingestable
        onboard = entry.get("onboardDate")
        out.append(Listing(market, symbol, volumes.get(symbol, 0.0),
                           onboard if type(onboard) is int else None))
    out.sort(key=lambda x: x.symbol)
    return out


def rank_listings(listings: Iterable[Listing], selector: Selector) -> list[Listing]:
    """A selector's instruments in rank order: ``all`` by symbol, ``top:N`` by 24 h
    quote volume descending (ties by symbol), the first N."""
    rows = [x for x in listings if x.market == selector.market]
    if selector.kind == "all":
        return sorted(rows, key=lambda x: x.symbol)
    rows.sort(key=lambda x: (-x.quote_volume, x.symbol))
    return rows[: selector.n]


def rest_base_for(rest_bases: Mapping[str, str], market: str) -> str:
    """The REST base of ``market`` (``rest_bases`` keyed by market, ``futures`` or
    ``perp``), else Binance's public host."""
    for key, url in rest_bases.items():
        if url and url != "off" and normalize_market(key) == market:
            return url
    return DEFAULT_REST[market]


def resolve_universe(
    spec: UniverseSpec, rest_bases: Mapping[str, str], *, timeout: float = 10.0
) -> tuple[Instrument, ...]:
    """The spec's instruments: explicit ones first, then each selector's in rank
    order, de-duplicated. One ``fetch_listings`` per market that has a selector;
    :class:`UniverseUnavailable` (naming the URL) if one cannot be read."""
    out: dict[Instrument, None] = dict.fromkeys(spec.explicit())
    listings: dict[str, list[Listing]] = {}
    for sel in spec.selectors:
        if sel.market not in listings:
            listings[sel.market] = fetch_listings(
                rest_base_for(rest_bases, sel.market), sel.market, timeout=timeout)
        for row in rank_listings(listings[sel.market], sel):
            out.setdefault(Instrument(DEFAULT_VENUE, sel.market, row.symbol), None)
    return tuple(out)


class UniverseRefresher(threading.Thread):
    """Re-resolves a dynamic spec every ``interval_s`` and calls ``on_new`` with the
    instruments not seen before (``known`` = the run's instruments at start).

    A failure keeps the current universe, records ``last_error`` and retries after
    ``RETRY_BASE_S × 2^k`` seconds with full jitter (capped at ``interval_s``); an
    exception in ``on_new`` is logged and its instruments are offered again next
    time. ``status()`` is safe from any thread."""

    def __init__(
        self,
        spec: UniverseSpec,
        rest_bases: Mapping[str, str],
        on_new: Callable[[list[Instrument]], None],
        *,
        interval_s: float = 86_400.0,
        known: Iterable[Instrument] = (),
        timeout: float = 10.0,
        retry_base_s: float = RETRY_BASE_S,
    ) -> None:
        super().__init__(name="universe-refresher", daemon=True)
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.spec, self.rest_bases, self.on_new = spec, dict(rest_bases), on_new
        self.interval_s, self.timeout = float(interval_s), timeout
        self.retry_base_s = float(retry_base_s)
        self._known: dict[Instrument, None] = dict.fromkeys(known)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._last_ok_ms: int | None = None
        self._last_error: str | None = None
        self._added = 0
        self._failures = 0
        self._next_ms = int(time.time() * 1000 + self.interval_s * 1000)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def status(self) -> dict:
        with self._lock:
            return {
                "last_ok_ms": self._last_ok_ms,
                "last_error": self._last_error,
                "instruments": len(self._known),
                "added": self._added,
                "next_ms": self._next_ms,
            }

    def refresh_once(self) -> list[Instrument]:
        """One refresh now (the thread's step; tests call it directly): the new
        instruments handed to ``on_new``. Raises nothing: failures go to status."""
        try:
            insts = resolve_universe(self.spec, self.rest_bases, timeout=self.timeout)
        except UniverseUnavailable as exc:
            with self._lock:
                self._last_error = str(exc)
                self._failures += 1
            log.warning("universe: refresh failed, keeping %d instruments: %s",
                        len(self._known), exc)
            return []
        new = [i for i in insts if i not in self._known]
        if new:
            try:
                self.on_new(new)
            except Exception as exc:  # the runtime's problem; offer them again later
                log.exception("universe: adding %d instruments failed", len(new))
                with self._lock:
                    self._last_error = f"on_new: {exc!r}"
                    self._failures += 1
                return []
            log.info("universe: %d new instruments: %s", len(new),
                     ", ".join(i.key for i in new[:20]) + (" ..." if len(new) > 20 else ""))
        with self._lock:
            self._known.update(dict.fromkeys(new))
            self._added += len(new)
            self._last_ok_ms = int(time.time() * 1000)
            self._last_error = None
            self._failures = 0
        return new

    def _delay_s(self) -> float:
        if self._failures == 0:
            return self.interval_s
        cap = min(self.interval_s, self.retry_base_s * 2 ** (self._failures - 1))
        return random.uniform(min(1.0, cap), cap)

    def run(self) -> None:
        while True:
            delay = self._delay_s()
            with self._lock:
                self._next_ms = int(time.time() * 1000 + delay * 1000)
            if self._stop_event.wait(delay):
                return
            self.refresh_once()
