"""Trade feeds: the registry of venue-market protocols, and the machinery they share.

* :mod:`ingest.feeds.base` declares :class:`FeedProtocol` (URLs, frames, heartbeat,
  REST back-fill of one venue-market);
* :mod:`ingest.feeds.binance` is Binance's wire format, :mod:`~ingest.feeds.binance_spot`
  and :mod:`~ingest.feeds.binance_perp` its two markets;
* :mod:`ingest.feeds.client` is the websocket thread (reconnects, de-duplication, gaps,
  watchdog) and :mod:`ingest.feeds.backfill` the REST gap back-fill, both generic
  over a protocol.

:data:`FEEDS` maps ``(venue, market)`` to the one protocol object; the runtime asks
:func:`feed_protocol` with the configured market. docs/feeds.md: adding a feed.
"""

from __future__ import annotations

from analytics.instruments import DEFAULT_VENUE, InstrumentError, normalize_market
from ingest.feeds.base import FeedProtocol, check_protocol
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT

#: Every feed protocol the app can run, by ``(venue, market)``.
FEEDS: dict[tuple[str, str], FeedProtocol] = {
    p.key: check_protocol(p) for p in (BINANCE_SPOT, BINANCE_PERP)
}


def feed_protocol(venue: str = DEFAULT_VENUE, market: str = "spot") -> FeedProtocol:
    """The registered protocol of ``venue`` and ``market`` (``"futures"`` = ``"perp"``).

    Raises ``ValueError`` listing the known feeds when there is none.
    """
    known = ", ".join(f"{v}:{m}" for v, m in FEEDS)
    v = venue.strip().lower() if isinstance(venue, str) else venue
    try:
        m = normalize_market(market, v)
    except InstrumentError as exc:
        raise ValueError(f"no feed for {venue}:{market} ({exc}); known feeds: {known}") from None
    try:
        return FEEDS[(v, m)]
    except KeyError:
        raise ValueError(f"no feed for {venue}:{market}; known feeds: {known}") from None


__all__ = ["FEEDS", "FeedProtocol", "feed_protocol"]
