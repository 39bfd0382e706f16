"""Instruments: what a trade, a bar, a ring, a stored row and an API parameter name.

An instrument is ``(venue, market, symbol)``: Binance spot ``BTCUSDT`` and the Binance
USDⓈ-M perpetual ``BTCUSDT`` are two instruments with the same symbol, separate trade
ids, separate bars. This module is the one declaration of the instrument syntax:

* ``BTCUSDT``            a bare symbol: the one instrument of that symbol in the run
  (its market is the run's default market, ``--market``);
* ``spot:BTCUSDT``       Binance spot;  ``perp:BTCUSDT``  Binance USDⓈ-M perpetual;
* ``binance:perp:BTCUSDT`` with the venue spelled out (reserved for later venues).

``futures`` is accepted as another name of ``perp`` (the ``--market futures`` flag).

A :class:`Universe` is the set of instruments one run ingests. It names each one for
rings, the engine, URLs and the API: the bare symbol while that symbol is on one
market only (so today's URLs and API calls keep working), ``market:SYMBOL`` otherwise;
and it resolves what a user typed, with a message listing the choices when a bare
symbol is ambiguous.

Pure values: no I/O, no Dash, no sockets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The one declaration of what a symbol may look like (Binance: upper case A-Z, 0-9).
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")

DEFAULT_VENUE = "binance"
#: Markets per venue, in display order.
VENUE_MARKETS: dict[str, tuple[str, ...]] = {"binance": ("spot", "perp")}
#: Other names users and flags use for a market.
MARKET_ALIASES = {"futures": "perp", "usdm": "perp", "um": "perp", "perpetual": "perp"}
#: Venues whose trade ids increase by exactly one per trade within an instrument, so a
#: jump is a gap that REST can back-fill.
CONTIGUOUS_ID_VENUES = frozenset({"binance"})


class InstrumentError(ValueError):
    """What the user typed does not name an instrument (the message says why)."""


def check_symbol(value: object) -> str:
    """Upper-case, validated symbol, or :class:`InstrumentError` saying what is wrong."""
    if not isinstance(value, str):
        raise InstrumentError(f"symbol must be text, got {type(value).__name__}")
    sym = value.strip().upper()
    if not SYMBOL_RE.match(sym):
        raise InstrumentError(
            f"invalid symbol {value!r}: expected 2-20 characters A-Z/0-9 such as 'BTCUSDT'"
        )
    return sym


def normalize_market(value: object, venue: str = DEFAULT_VENUE) -> str:
    """``"futures"`` -> ``"perp"``; unknown markets raise :class:`InstrumentError`."""
    if not isinstance(value, str):
        raise InstrumentError(f"market must be text, got {type(value).__name__}")
    m = value.strip().lower()
    m = MARKET_ALIASES.get(m, m)
    markets = VENUE_MARKETS.get(venue)
    if markets is None:
        raise InstrumentError(f"unknown venue {venue!r}: known {', '.join(VENUE_MARKETS)}")
    if m not in markets:
        raise InstrumentError(
            f"unknown market {value!r} for {venue}: use one of {', '.join(markets)}"
        )
    return m


@dataclass(frozen=True, slots=True, order=True)
class Instrument:
    """One tradable thing on one venue and market."""

    venue: str
    market: str
    symbol: str

    @property
    def key(self) -> str:
        """Canonical text: ``perp:BTCUSDT`` (``venue:market:SYMBOL`` off Binance)."""
        if self.venue == DEFAULT_VENUE:
            return f"{self.market}:{self.symbol}"
        return f"{self.venue}:{self.market}:{self.symbol}"

    @property
    def label(self) -> str:
        """What a page shows: ``BTCUSDT · perp``."""
        return f"{self.symbol} · {self.market}"

    @property
    def ids_contiguous(self) -> bool:
        """Whether a jump in trade ids is a gap (and back-fill can ask for it)."""
        return self.venue in CONTIGUOUS_ID_VENUES

    def __str__(self) -> str:
        return self.key


def parse_instrument(text: object, default_market: str = "spot") -> Instrument:
    """``"BTCUSDT"`` / ``"perp:BTCUSDT"`` / ``"binance:perp:BTCUSDT"`` -> :class:`Instrument`.

    A bare symbol takes ``default_market`` (on the default venue).
    """
    if isinstance(text, Instrument):
        return text
    if not isinstance(text, str):
        raise InstrumentError(f"instrument must be text, got {type(text).__name__}")
    parts = text.strip().split(":")
    if len(parts) == 1:
        venue, market, symbol = DEFAULT_VENUE, default_market, parts[0]
    elif len(parts) == 2:
        venue, (market, symbol) = DEFAULT_VENUE, parts
    elif len(parts) == 3:
        venue, market, symbol = parts
        venue = venue.strip().lower()
    else:
        raise InstrumentError(
            f"invalid instrument {text!r}: use SYMBOL, market:SYMBOL or venue:market:SYMBOL"
        )
    return Instrument(venue, normalize_market(market, venue), check_symbol(symbol))


class Universe:
    """The instruments of one run, and the names rings, engine, URLs and API use."""

    def __init__(self, instruments: Iterable[Instrument], default_market: str = "spot") -> None:
        self.instruments: tuple[Instrument, ...] = tuple(dict.fromkeys(instruments))
        self.default_market = normalize_market(default_market)
        counts: dict[str, int] = {}
        for inst in self.instruments:
            counts[inst.symbol] = counts.get(inst.symbol, 0) + 1
        self._names = {
            inst: inst.symbol if counts[inst.symbol] == 1 and inst.venue == DEFAULT_VENUE
            else inst.key
            for inst in self.instruments
        }
        self._by_name = {name: inst for inst, name in self._names.items()}

    @classmethod
    def parse(cls, texts: Iterable[str], default_market: str = "spot") -> Universe:
        market = normalize_market(default_market)
        return cls((parse_instrument(t, market) for t in texts), market)

    def __iter__(self):
        return iter(self.instruments)

    def __len__(self) -> int:
        return len(self.instruments)

    def __contains__(self, inst: object) -> bool:
        return inst in self._names

    def extended(self, instruments: Iterable[Instrument]) -> Universe:
        """This universe plus ``instruments`` (a new listing joining a running app),
        with every name it already gives UNCHANGED: a URL, a ring, a stored alert keep
        meaning the same instrument. A new instrument takes its bare symbol only when
        no instrument of the run (old or new) shares that symbol and it is on the
        default venue; otherwise its key (``spot:BTCUSDT``). So ``extended`` may name
        differently from ``Universe(all instruments)`` (which would rename the old
        one): names are stable, not recomputed. Returns ``self`` when nothing is new.
        """
        new = [i for i in dict.fromkeys(instruments) if i not in self._names]
        if not new:
            return self
        symbols = [i.symbol for i in self.instruments] + [i.symbol for i in new]
        counts: dict[str, int] = {}
        for sym in symbols:
            counts[sym] = counts.get(sym, 0) + 1
        out = Universe.__new__(Universe)
        out.instruments = self.instruments + tuple(new)
        out.default_market = self.default_market
        out._names = dict(self._names)
        for inst in new:
            bare = counts[inst.symbol] == 1 and inst.venue == DEFAULT_VENUE
            out._names[inst] = inst.symbol if bare else inst.key
        out._by_name = {name: inst for inst, name in out._names.items()}
        return out

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names[i] for i in self.instruments)

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.market for i in self.instruments))

    def name(self, inst: Instrument) -> str:
        """Ring / engine / URL name of ``inst``: bare symbol unless ambiguous."""
        return self._names[inst]

    def by_name(self, name: str) -> Instrument:
        return self._by_name[name]

    def resolve(self, text: object) -> Instrument:
        """What a user typed -> one of this run's instruments, or an error that lists
        the choices (a bare symbol on two markets is ambiguous)."""
        if isinstance(text, str) and text.strip().upper() in self._by_name:
            return self._by_name[text.strip().upper()]
        if isinstance(text, str) and ":" not in text:
            sym = check_symbol(text)
            hits = [i for i in self.instruments if i.symbol == sym]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise InstrumentError(
                    f"{sym} is on {len(hits)} markets here: use one of "
                    + ", ".join(h.key for h in hits)
                )
        inst = parse_instrument(text, self.default_market)
        if inst not in self._names:
            raise InstrumentError(
                f"{inst.key} is not ingested here: choose from "
                + ", ".join(i.key for i in self.instruments)
            )
        return inst
