"""Binance spot: hosts, REST endpoints and heartbeat (docs/binance-protocol.md).

Spot streams live at the host's root (``/ws/...``, ``/stream?...``). Back-fill pages
``historicalTrades`` for the ``trade`` stream (no API key needed since 2023-07-11;
the only endpoint that refills ``t`` ids exactly) and ``aggTrades`` for ``aggTrade``.
The server pings every 20 s and drops a client that does not pong within a minute.
"""

from __future__ import annotations

from ingest.feeds.binance import BinanceFeed, RestEndpoint

BINANCE_SPOT = BinanceFeed(
    market="spot",
    ws_base="wss://stream.binance.com:9443",
    rest_base="https://api.binance.com",
    ws_path_prefix="",
    rest_endpoints=(
        RestEndpoint("trade", "/api/v3/historicalTrades", 25),
        RestEndpoint("aggTrade", "/api/v3/aggTrades", 4),
    ),
    server_ping_interval_s=20.0,
)
