"""Every component id, one class per page, so callbacks and layouts cannot drift apart."""

from __future__ import annotations


class Shell:
    FEED_BADGE = "shell-feed-badge"
    STATUS_INTERVAL = "shell-status-interval"


class Markets:
    TICK_INTERVAL = "markets-tick-interval"
    FEED_CARD = "markets-feed-card"
    SYMBOL_TABLE = "markets-symbol-table"
