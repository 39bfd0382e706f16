"""Binance USDⓈ-M perpetual futures: hosts, REST endpoints and heartbeat.

Futures market data moved under ``/market`` with Binance's 2026 "Base URL split"; the
old root paths were switched off on 2026-04-23 (docs/binance-protocol.md, section 1),
so the default host carries the prefix and :attr:`ws_path_prefix` adds it to a bare
host such as the local replay server's. The top of book (``@bookTicker``) is served
only under ``/public`` (:attr:`book_path_prefix`): the feed pool opens book-only
connections there (``ingest/feeds/pool.py``). Back-fill pages ``aggTrades`` for the
documented ``aggTrade`` stream; futures ``historicalTrades`` (for the undocumented
``trade`` stream) needs an API key and costs weight 200. The server pings every 3 min.
"""

from __future__ import annotations

from ingest.feeds.binance import BinanceFeed, RestEndpoint

BINANCE_PERP = BinanceFeed(
    market="perp",
    ws_base="wss://fstream.binance.com/market",
    rest_base="https://fapi.binance.com",
    ws_path_prefix="/market",
    # high-frequency book data (@bookTicker) lives under /public, not /market
    book_ws_base="wss://fstream.binance.com/public",
    book_path_prefix="/public",
    rest_endpoints=(
        RestEndpoint("aggTrade", "/fapi/v1/aggTrades", 20),
        RestEndpoint("trade", "/fapi/v1/historicalTrades", 200),
    ),
    server_ping_interval_s=180.0,
)
