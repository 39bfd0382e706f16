"""The JSON an event is delivered as, built once when it is enqueued.

The keys of ``GET /api/alerts/events`` plus the rule's subject::

    {"event_id", "rule_id", "description", "metric", "a", "b", "timeframe", "window",
     "value", "threshold", "data_ts", "fired_at"}

``a``/``b`` are the pair's legs; a single-instrument rule gives its ``symbol`` as ``a``
and ``b: null`` (and ``symbol``). Times are ISO-8601 UTC with milliseconds
(``2024-08-08T23:54:15.000Z``, as the events API); a non-finite value is ``null``.
The payload is stored in the outbox row, so the rule may be edited or deleted before
the delivery goes out and the receiver still gets what fired.
"""

from __future__ import annotations

import datetime as dt
import json
import math

__all__ = ["SAMPLE_EVENT_ID", "event_payload", "iso_ms", "sample_payload"]

#: ``event_id`` of the sample a channel Test sends (never a stored event's id).
SAMPLE_EVENT_ID = 0


def iso_ms(ms: int | None) -> str | None:
    """Epoch ms -> ``2024-08-08T23:54:15.000Z``."""
    if ms is None:
        return None
    t = dt.datetime.fromtimestamp(int(ms) // 1000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def event_payload(event_id: int, rule_id: int, spec: dict, *, description: str,
                  value: float | None, threshold: float, data_ts: int,
                  fired_ms: int) -> dict:
    """The delivered JSON of one stored event of the rule whose JSON spec is ``spec``."""
    symbol = spec.get("symbol")
    return {
        "event_id": int(event_id),
        "rule_id": int(rule_id),
        "description": description,
        "metric": spec.get("metric"),
        "a": spec.get("a", symbol),
        "b": spec.get("b"),
        **({"symbol": symbol} if symbol else {}),
        "timeframe": spec.get("timeframe"),
        "window": spec.get("window"),
        "value": None if value is None or not math.isfinite(value) else float(value),
        "threshold": float(threshold),
        "data_ts": iso_ms(data_ts),
        "fired_at": iso_ms(fired_ms),
    }


def sample_payload(now_ms: int) -> dict:
    """What a channel's Test button sends: a well-formed event marked as a test."""
    out = event_payload(
        SAMPLE_EVENT_ID, 0, {"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT",
                             "timeframe": "1s", "window": 60},
        description="TEST: BTCUSDT/ETHUSDT 1s w60 ols z-score crosses above 2",
        value=2.1, threshold=2.0, data_ts=now_ms, fired_ms=now_ms)
    out["test"] = True
    return out


def dumps(payload: dict) -> bytes:
    """The exact body bytes (the HMAC signs these)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=False).encode()
