"""Binance's market-data WebSocket protocol, as the replay exchange answers it.

What a connection URL asks for (:func:`parse_path`), how stream names are spelled
(:func:`canonical_stream`), one connection's session state (:class:`Client`) and the
replies to its control requests (:func:`answer_control`: ``SUBSCRIBE``,
``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``, ``GET_PROPERTY`` with
Binance's error codes). No sockets and no clock here: the server
(:mod:`ingest.replay.server`) owns those and calls in.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

Profile = Literal["spot", "futures"]
PROFILE_DEFAULT = "profile"

# Binance's limits (docs/binance-protocol.md section 2).
PROFILES: dict[str, dict[str, float]] = {
    "spot": {"ping_interval": 20.0, "ping_timeout": 60.0, "rate_limit": 5.0},
    "futures": {"ping_interval": 180.0, "ping_timeout": 600.0, "rate_limit": 10.0},
}
MAX_STREAMS = 1024

_KINDS = {"trade": "trade", "aggtrade": "aggTrade", "bookticker": "bookTicker"}
#: Path prefixes of Binance USD-M futures market data (ingest/feeds/binance_perp.py).
FUTURES_PREFIXES = ("/market", "/public")
#: Stream kinds Binance's 2026 "Base URL split" serves only under ``/public``
#: (high-frequency book data); everything else only under ``/market``.
PUBLIC_KINDS = ("bookTicker", "depth")


def prefix_serves(prefix: str, stream: str) -> bool:
    """Whether a connection under path ``prefix`` gets ``stream``'s events.

    ``/public`` carries the book streams only, ``/market`` everything but them
    (docs/binance-protocol.md, section 1); the root (``/ws``, ``/stream``: the old 2024
    layout, and spot) carries every stream. A stream a path does not carry may still
    be subscribed (acknowledged, listed): its events are simply never delivered, the
    way a live client on the wrong path sees nothing (docs/replay.md).

    >>> prefix_serves("/market", "btcusdt@bookTicker"), prefix_serves("", "btcusdt@bookTicker")
    (False, True)
    """
    if prefix not in FUTURES_PREFIXES:
        return True
    kind = stream.partition("@")[2]
    public = kind.startswith(PUBLIC_KINDS)
    return public if prefix == "/public" else not public


@dataclass(frozen=True, slots=True)
class Route:
    """What a connection URL asks for."""

    combined: bool
    streams: tuple[str, ...]
    micro: bool  # timeUnit=MICROSECOND
    market: str = "spot"  # "perp" under /market and /public (USD-M futures paths)
    prefix: str = ""  # "/market", "/public" or "" (root): what it serves, prefix_serves


def parse_path(path: str) -> Route:
    """Interpret a request path the way Binance does; ValueError if not served.

    /ws/btcusdt@trade/ethusdt@trade          bare events
    /stream?streams=btcusdt@trade/ethusdt@trade&timeUnit=MICROSECOND
    /ws/stream?streams=...                    combined
    /market/..., /public/...                  USD-M futures prefixes (market "perp")
    """
    parts = urlsplit(path)
    route = parts.path.rstrip("/") or "/"
    market = "spot"
    path_prefix = ""
    for prefix in FUTURES_PREFIXES:
        if route == prefix or route.startswith(prefix + "/"):
            route = route[len(prefix) :] or "/"
            market = "perp"
            path_prefix = prefix
            break
    query = parse_qs(parts.query, keep_blank_values=True)
    micro = False
    for key, values in query.items():
        if key.lower() == "timeunit":
            unit = values[-1].upper()
            if unit not in ("MICROSECOND", "MILLISECOND"):
                raise ValueError(f"invalid timeUnit {values[-1]!r}")
            micro = unit == "MICROSECOND"
    from_query = [s for v in query.get("streams", []) for s in v.split("/") if s]
    if route == "/stream" or route == "/ws/stream":
        combined, streams = True, from_query
    elif route == "/ws":
        combined, streams = False, from_query
    elif route.startswith("/ws/"):
        combined = False
        streams = [unquote(s) for s in route[4:].split("/") if s]
    else:
        raise LookupError(f"no such path {parts.path!r}")
    if len(streams) > MAX_STREAMS:
        raise ValueError(
            f"{len(streams)} streams: at most {MAX_STREAMS} per connection"
        )
    return Route(combined, tuple(streams), micro, market, path_prefix)


def canonical_stream(name: str) -> str:
    """``BTCUSDT@aggtrade`` -> ``btcusdt@aggTrade``, ``@bookticker`` -> ``@bookTicker``
    (Binance's spelling)."""
    symbol, sep, kind = name.partition("@")
    if not sep:
        return name.lower()
    return f"{symbol.lower()}@{_KINDS.get(kind.lower(), kind.lower())}"


@dataclass(slots=True)
class Client:
    """One connection's session: its framing, subscriptions and counters.

    ``conn`` is the server's connection object (a ``websockets`` ServerConnection);
    this module never touches it.
    """

    conn: Any
    cid: int
    combined: bool
    micro: bool
    market: str = "spot"  # whose events this connection sees (its path's market)
    prefix: str = ""  # its path prefix: which streams it is served (prefix_serves)
    subs: dict[str, None] = field(default_factory=dict)  # ordered set
    closing: bool = False
    sent: int = 0
    msg_times: collections.deque[float] = field(default_factory=collections.deque)


def answer_control(
    client: Client,
    message: str | bytes,
    *,
    subscribe: Callable[[Client, Iterable[str]], None],
    unsubscribed: Callable[[], None],
) -> bytes:
    """Answer one client request like Binance does.

    {"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}
        -> {"result":null,"id":1}
    {"method":"LIST_SUBSCRIPTIONS","id":3} -> {"result":["btcusdt@aggTrade"],"id":3}
    errors: {"code":0..3,"msg":"...","id":...}

    ``subscribe(client, names)`` adds streams (the server rebuilds its fan-out);
    ``unsubscribed()`` is called after names were removed from ``client.subs``.
    """
    try:
        req = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        return orjson.dumps({"code": 3, "msg": f"Invalid JSON: {exc}"})
    if type(req) is not dict:
        return error_reply(2, "Invalid request: expected a JSON object")
    req_id = req.get("id")
    if not valid_request_id(req_id):
        return error_reply(
            2,
            "Invalid request: request ID must be a signed 64-bit integer, an "
            "alphanumeric string of at most 36 characters, or null",
        )
    if "method" not in req:
        return error_reply(2, "Invalid request: missing field `method`", req_id)
    method = req["method"]
    params = req.get("params", [])
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if type(params) is not list or not all(type(p) is str for p in params):
            return error_reply(
                2, "Invalid request: params must be a list of stream names", req_id
            )
        if method == "SUBSCRIBE":
            new = {canonical_stream(p) for p in params} - client.subs.keys()
            if len(client.subs) + len(new) > MAX_STREAMS:
                return error_reply(
                    2,
                    f"Invalid request: at most {MAX_STREAMS} streams per "
                    "connection",
                    req_id,
                )
            subscribe(client, params)
        else:
            gone = {canonical_stream(p) for p in params}
            for name in gone:
                client.subs.pop(name, None)
            unsubscribed()
        return orjson.dumps({"result": None, "id": req_id})
    if method == "LIST_SUBSCRIPTIONS":
        return orjson.dumps({"result": list(client.subs), "id": req_id})
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        want = 2 if method == "SET_PROPERTY" else 1
        if type(params) is not list or len(params) != want:
            return error_reply(
                2, f"Invalid request: {method} takes {want} parameter(s)", req_id
            )
        if type(params[0]) is not str:
            return error_reply(
                2, "Invalid request: property name must be a string", req_id
            )
        if params[0] != "combined":
            return error_reply(0, "Unknown property", req_id)
        if method == "GET_PROPERTY":
            return orjson.dumps({"result": client.combined, "id": req_id})
        if type(params[1]) is not bool:
            return error_reply(1, "Invalid value type: expected Boolean", req_id)
        client.combined = params[1]
        return orjson.dumps({"result": None, "id": req_id})
    return error_reply(
        2,
        f"Invalid request: unknown variant {method!r}, expected one of "
        "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, "
        "`GET_PROPERTY`",
        req_id,
    )


def valid_request_id(req_id: object) -> bool:
    """Binance's rule: a signed 64-bit int, an alphanumeric string (≤ 36), or null."""
    if req_id is None:
        return True
    if type(req_id) is int:
        return -(2**63) <= req_id < 2**63
    if type(req_id) is str:
        return len(req_id) <= 36 and req_id.isascii() and req_id.isalnum()
    return False


def error_reply(code: int, msg: str, req_id: object = None) -> bytes:
    """``{"code": c, "msg": m, "id": i}`` (``id`` only when the request had one)."""
    reply: dict = {"code": code, "msg": msg}
    if req_id is not None:
        reply["id"] = req_id
    return orjson.dumps(reply)
