"""Value types that cross module boundaries on the ingest path.

Every trade is identified by its instrument ``(venue, market, symbol)`` and ``trade_id`` and timestamped by Binance's
trade (match) time ``T``, never by the push time ``E`` nor by our receive clock:
``E`` is when Binance *sent* the event and can lag ``T`` by tens of milliseconds
under load, so bucketing by ``E`` moves trades into the wrong bar.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics.instruments import Instrument


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade (``@trade``) or aggregate trade (``@aggTrade``) event.

    ``trade_id`` is ``t`` for ``trade`` events and ``a`` for ``aggTrade`` events;
    within one symbol and one stream kind it increases by exactly one per event,
    which is what gap detection relies on.
    """

    symbol: str  # upper case, e.g. "BTCUSDT"
    trade_id: int
    time_ms: int  # T: trade time, ms since epoch (UTC)
    price: float
    qty: float  # base-asset quantity
    buyer_is_maker: bool  # m: True means the taker SOLD
    event_ms: int  # E: push time, ms; kept for lag statistics only
    market: str = "spot"  # "spot" | "perp" (analytics/instruments.py)
    venue: str = "binance"

    @property
    def instrument(self) -> Instrument:
        return Instrument(self.venue, self.market, self.symbol)


@dataclass(frozen=True, slots=True)
class BookTicker:
    """One best bid/ask update (``@bookTicker``): the top of the book after update ``u``.

    ``time_ms`` is the time the update is bucketed by. Futures frames carry the
    transaction time ``T``: that is ``time_ms`` (``time_source == "T"``). Spot frames
    carry no time at all, so ``time_ms`` is our receive time (``time_source ==
    "receive"``), read from the feed's clock when the frame arrived; ``event_ms`` is
    ``E`` where the frame has one, else the same receive time.
    """

    symbol: str  # upper case, e.g. "BTCUSDT"
    update_id: int  # u: order book update id (increases, not contiguous)
    bid: float  # b: best bid price
    bid_qty: float  # B: best bid quantity
    ask: float  # a: best ask price
    ask_qty: float  # A: best ask quantity
    time_ms: int  # T (futures) or receive time (spot), ms since epoch (UTC)
    event_ms: int  # E where present, else the receive time; for lag statistics only
    market: str = "spot"
    venue: str = "binance"
    time_source: str = "T"  # "T" | "receive"

    @property
    def instrument(self) -> Instrument:
        return Instrument(self.venue, self.market, self.symbol)


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """Binance announces a planned restart; the client should reconnect at once."""

    event_ms: int


@dataclass(frozen=True, slots=True)
class ControlReply:
    """Answer to a SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS request, or an error."""

    id: int | str | None
    result: object = None
    error_code: int | None = None
    error_msg: str | None = None


class BadFrame(ValueError):
    """A frame that is not valid JSON or not a well-formed event we understand.

    The feed counts and logs these and carries on; one bad frame never kills it.
    """
