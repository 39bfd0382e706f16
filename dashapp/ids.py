"""Every component id, one class per page, so callbacks and layouts cannot drift apart."""

from __future__ import annotations


class Shell:
    FEED_BADGE = "shell-feed-badge"
    STATUS_INTERVAL = "shell-status-interval"
    #: Any page writes a partial alert rule here (dict in the JSON rule format of
    #: ``POST /api/alerts``) to open the shell's alert modal pre-filled.
    ALERT_PREFILL = "shell-alert-prefill"


class Markets:
    TICK_INTERVAL = "markets-tick-interval"
    FEED_CARD = "markets-feed-card"
    SYMBOL_TABLE = "markets-symbol-table"
