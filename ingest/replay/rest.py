"""Binance's REST trade endpoints, served by the replay server from what it has played.

The WebSocket replay (:mod:`ingest.replay.server`) plays one shared tape. A client that was
disconnected, killed or skipped over some ids needs them back exactly as from Binance,
so the replay also answers, on its own HTTP port (``ReplayServer.rest_base``)::

    GET /api/v3/historicalTrades?symbol=BTCUSDT&fromId=42&limit=1000   spot trades
    GET /api/v3/trades?symbol=BTCUSDT&limit=500                        latest spot trades
    GET /api/v3/aggTrades?symbol=BTCUSDT&fromId=42&limit=1000          spot aggTrades
    GET /fapi/v1/aggTrades?symbol=BTCUSDT&fromId=42&limit=1000         futures aggTrades
    GET /fapi/v1/historicalTrades, /fapi/v1/trades                      futures trades

Spot paths (``/api/v3``) serve the tape's spot trades, futures paths (``/fapi/v1``) its
perp trades, each metered with its market's weight limit; a tape holding one market
answers on both, as it always did. Only events the player has already reached are served (the skip fault withholds
events from the sockets, not from the exchange's history, so those are served), with
loop passes shifted exactly as on the socket. Rows are Binance's
(``id, price, qty, quoteQty, time, isBuyerMaker, isBestMatch`` for trades,
``a, p, q, f, l, T, m`` (+ ``M`` on spot) for aggTrades), ``limit`` <= 1000.

It also lists what it trades (:mod:`ingest.replay.listings`), Binance's weights::

    GET /api/v3/exchangeInfo  (20)        GET /fapi/v1/exchangeInfo  (1)
    GET /api/v3/ticker/24hr   (80; 2 with symbol=)
    GET /fapi/v1/ticker/24hr  (40; 1 with symbol=)

strictly per market (a spot path lists the tape's spot instruments only, none on a
futures-only tape).

Bad parameters get HTTP 400 with Binance's JSON error (``-1102`` missing mandatory
parameter, ``-1100`` illegal characters, ``-1130`` invalid value, ``-1121`` invalid
symbol). Request weight is metered per IP in fixed windows (Binance: 6,000 a minute
spot, 2,400 futures): over budget answers 429 with ``Retry-After``; a client that
keeps hammering while limited gets 418 (a ban) with a longer ``Retry-After``. Every
answer carries ``X-MBX-USED-WEIGHT-1M``. ``weight_limit=None`` switches metering off.
"""

from __future__ import annotations

import http
import logging
import math
import re
import threading
import time
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson

if TYPE_CHECKING:
    from ingest.replay.server import ReplayServer

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
BAN_AFTER = 5  # requests while rate limited before a 418
WEIGHT_LIMITS = {"spot": 6000, "futures": 2400}

#: The market each endpoint family serves (when the tape holds both).
ENDPOINT_MARKETS = {"/api/v3/": "spot", "/fapi/v1/": "perp"}

# path -> (kind served, request weight, fromId allowed)
ENDPOINTS: dict[str, tuple[str, int, bool]] = {
    "/api/v3/historicalTrades": ("trade", 25, True),
    "/api/v3/trades": ("trade", 25, False),
    "/api/v3/aggTrades": ("aggTrade", 4, True),
    "/fapi/v1/historicalTrades": ("trade", 200, True),
    "/fapi/v1/trades": ("trade", 5, False),
    "/fapi/v1/aggTrades": ("aggTrade", 20, True),
}
#: Listing endpoints (ingest/replay/listings.py): path -> (market, document).
LISTING_ENDPOINTS: dict[str, tuple[str, str]] = {
    "/api/v3/exchangeInfo": ("spot", "exchangeInfo"),
    "/fapi/v1/exchangeInfo": ("perp", "exchangeInfo"),
    "/api/v3/ticker/24hr": ("spot", "ticker"),
    "/fapi/v1/ticker/24hr": ("perp", "ticker"),
}
#: Binance's weights: (market, document, one symbol) -> weight.
LISTING_WEIGHTS: dict[tuple[str, str, bool], int] = {
    ("spot", "exchangeInfo", False): 20, ("spot", "exchangeInfo", True): 20,
    ("perp", "exchangeInfo", False): 1, ("perp", "exchangeInfo", True): 1,
    ("spot", "ticker", False): 80, ("spot", "ticker", True): 2,
    ("perp", "ticker", False): 40, ("perp", "ticker", True): 1,
}
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_SYMBOL = re.compile(r"^[A-Z0-9-_.]{1,20}$")


class RestError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class _Index:
    """One symbol's events of one kind: ids ascending and the tape position at
    which each becomes public (the index of its last trade for an aggregate)."""

    __slots__ = ("data", "derived", "done_at", "ids")

    def __init__(self, ids, done_at, data, derived: bool) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.done_at = np.asarray(done_at, dtype=np.int64)
        self.data = data
        self.derived = derived


class RestServer:
    """The HTTP side of a :class:`~ingest.replay.server.ReplayServer` (thread per request)."""

    def __init__(
        self,
        replay: ReplayServer,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int | None = None,
        window_s: float = 60.0,
        port_fallback: bool = False,
        weight_limits: dict[str, int | None] | None = None,
    ) -> None:
        self.replay = replay
        #: When the requested port is taken, listen on a free one instead of failing
        #: (the CLI's default ``--port + 1``; an explicit ``--rest-port`` must hold).
        self.port_fallback = port_fallback
        self.fell_back_from: int | None = None
        self.host = host
        self._requested_port = port
        self.weight_limit = weight_limit
        #: per market ("spot", "perp"): Binance meters its spot and futures hosts apart
        self.weight_limits: dict[str, int | None] = (
            dict(weight_limits)
            if weight_limits is not None
            else {"spot": weight_limit, "perp": weight_limit}
        )
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str, str], _Index | None] = {}
        self._stats: dict | None = None  # listings.tape_stats, at the first listing
        # (ip, market) -> [window start, used weight, strikes]
        self._meter: dict[tuple[str, str], list] = {}
        self.requests_by_market: dict[str, int] = {"spot": 0, "perp": 0}
        self.rows_by_market: dict[str, int] = {"spot": 0, "perp": 0}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0
        self.rows_served = 0
        self.rate_limited = 0
        self.banned = 0
        self.bad_requests = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RestServer:
        handler = type("Handler", (_Handler,), {"rest": self})
        try:
            self._httpd = ThreadingHTTPServer((self.host, self._requested_port), handler)
        except OSError as exc:
            if not (self.port_fallback and self._requested_port):
                raise
            self._httpd = ThreadingHTTPServer((self.host, 0), handler)
            self.fell_back_from = self._requested_port
            log.warning("replay REST: port %d unavailable (%s); listening on %d instead",
                        self._requested_port, exc, self._httpd.server_address[1])
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="replay-rest", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("RestServer not started")
        return self._httpd.server_address[1]

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def status(self) -> dict:
        return {
            "url": None if self._httpd is None else self.base,
            "requests": self.requests,
            "rows": self.rows_served,
            "rate_limited": self.rate_limited,
            "banned": self.banned,
            "bad_requests": self.bad_requests,
            "weight_limit": self.weight_limit,
            "weight_limits": dict(self.weight_limits),
        }

    def market_status(self, market: str) -> dict:
        """One market's share: its endpoints, weight limit, requests and rows."""
        prefix = next(p for p, m in ENDPOINT_MARKETS.items() if m == market)
        return {
            "paths": sorted(p for p in ENDPOINTS if p.startswith(prefix)),
            "listing_paths": sorted(p for p in LISTING_ENDPOINTS if p.startswith(prefix)),
            "weight_limit": self.weight_limits.get(market),
            "requests": self.requests_by_market.get(market, 0),
            "rows": self.rows_by_market.get(market, 0),
        }

    def market_of(self, path: str) -> str:
        """The market a path serves: its family's, or the tape's only market."""
        only = self.replay.markets
        if len(only) == 1:
            return only[0]
        return next(m for p, m in ENDPOINT_MARKETS.items() if path.startswith(p))

    # ------------------------------------------------------------------ metering
    def charge(
        self, ip: str, weight: int, market: str = "spot"
    ) -> tuple[int, int | None, int]:
        """Account ``weight`` for ``ip`` on ``market``'s meter; return (status,
        retry_after_s, used)."""
        limit = self.weight_limits.get(market, self.weight_limit)
        if limit is None:
            return 200, None, 0
        now = time.monotonic()
        with self._lock:
            start = now - now % self.window_s
            meter = self._meter.get((ip, market))
            if meter is None or meter[0] != start:
                meter = self._meter[(ip, market)] = [start, 0, 0]
            retry = max(1, math.ceil(start + self.window_s - now))
            if meter[1] + weight > limit:
                meter[2] += 1
                if meter[2] > BAN_AFTER:
                    return 418, retry + math.ceil(self.window_s), meter[1]
                return 429, retry, meter[1]
            meter[1] += weight
            return 200, None, meter[1]

    # ------------------------------------------------------------------ data
    def _index(self, market: str, symbol: str, kind: str) -> _Index | None:
        key = (market, symbol, kind)
        if key in self._indexes:
            return self._indexes[key]
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = self._build_index(market, symbol, kind)
        return self._indexes[key]

    def _build_index(self, market: str, symbol: str, kind: str) -> _Index | None:
        replay = self.replay
        name = replay.tape.name(market, symbol)
        tape_kind = None if name is None else replay.tape.kind_of.get(name)
        if tape_kind is None:
            return None
        if tape_kind == kind:
            groups = self._rows_by_instrument(
                (ev, i) for i, ev in enumerate(replay.tape.events) if ev.kind == kind)
            derived = False
        elif kind == "aggTrade" and tape_kind == "trade":
            aggs = replay.derived_aggregates()
            groups = self._rows_by_instrument(
                (item.event, done_at) for done_at, item in sorted(aggs.items()))
            derived = True
        else:
            return None  # aggregates cannot be split back into trades
        # one pass indexes every instrument of the kind (a wide tape: 300 of them over
        # a million events; one scan per instrument would take minutes under the lock)
        for (m, sym), rows in groups.items():
            if (m, sym, kind) in self._indexes:
                continue
            if replay.tape.kind_of.get(replay.tape.name(m, sym) or "") != tape_kind:
                continue
            rows.sort(key=lambda r: r[0])
            self._indexes[(m, sym, kind)] = _Index(
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], derived
            )
        return self._indexes.get((market, symbol, kind))

    @staticmethod
    def _rows_by_instrument(pairs) -> dict[tuple[str, str], list]:
        """(event, public-at index) pairs -> per (market, symbol) rows (id, at, data)."""
        groups: dict[tuple[str, str], list] = {}
        for ev, at in pairs:
            key = (ev.market, ev.symbol)
            rows = groups.get(key)
            if rows is None:
                rows = groups[key] = []
            rows.append((ev.trade_id, at, ev.data))
        return groups

    def tape_stats(self) -> dict:
        """Whole-tape figures per instrument (computed once; listings.tape_stats)."""
        if self._stats is None:
            from ingest.replay.listings import tape_stats

            with self._lock:
                if self._stats is None:
                    self._stats = tape_stats(self.replay.tape)
        return self._stats

    def listing(self, path: str, query: dict[str, list[str]]) -> object:
        """exchangeInfo or ticker/24hr of the path's market at the replay's clock;
        raises :class:`RestError` (-1100 illegal symbol, -1121 not listed)."""
        from ingest.replay.listings import exchange_info, listed, ticker_24hr

        market, doc = LISTING_ENDPOINTS[path]
        symbol = _one(query, "symbol")
        if symbol is not None and not _SYMBOL.match(symbol):
            raise RestError(
                400, -1100,
                "Illegal characters found in parameter 'symbol'; legal range is "
                "'^[A-Z0-9-_.]{1,20}$'.",
            )
        stats = self.tape_stats()
        now_ms = self.replay.tape_clock_ms()
        if symbol is not None:
            one = stats.get((market, symbol))
            if one is None or not listed(one, now_ms):
                raise RestError(400, -1121, "Invalid symbol.")
            if doc == "ticker":
                return ticker_24hr(one)
        if doc == "exchangeInfo":
            return exchange_info(self.replay.tape, stats, market, now_ms, symbol)
        return [ticker_24hr(s) for (m, _), s in sorted(stats.items())
                if m == market and listed(s, now_ms)]

    def rows(self, path: str, query: dict[str, list[str]]) -> tuple[list[dict], int]:
        """Answer one request: (rows, weight); raises :class:`RestError`."""
        kind, weight, from_id_ok = ENDPOINTS[path]
        symbol = _one(query, "symbol")
        if not symbol:
            raise RestError(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        if not _SYMBOL.match(symbol):
            raise RestError(
                400,
                -1100,
                "Illegal characters found in parameter 'symbol'; legal range is "
                "'^[A-Z0-9-_.]{1,20}$'.",
            )
        limit = DEFAULT_LIMIT
        raw_limit = _one(query, "limit")
        if raw_limit is not None:
            if not _DIGITS.match(raw_limit):
                raise RestError(
                    400,
                    -1100,
                    "Illegal characters found in parameter 'limit'; legal range is "
                    "'^[0-9]{1,20}$'.",
                )
            limit = int(raw_limit)
            if not 1 <= limit <= MAX_LIMIT:
                raise RestError(
                    400,
                    -1130,
                    f"Invalid data sent for a parameter: 'limit' must be 1..{MAX_LIMIT}.",
                )
        from_id = None
        raw_from = _one(query, "fromId")
        if raw_from is not None:
            if not from_id_ok:
                raise RestError(
                    400,
                    -1104,
                    "Not all sent parameters were read; read "
                    "'symbol,limit' parameter(s) but was sent 'fromId'.",
                )
            if not _DIGITS.match(raw_from) or int(raw_from) > 2**63 - 1:
                raise RestError(
                    400,
                    -1100,
                    "Illegal characters found in parameter 'fromId'; legal range is "
                    "'^[0-9]{1,20}$'.",
                )
            from_id = int(raw_from)
        market = self.market_of(path)
        index = self._index(market, symbol, kind)
        if index is None:
            raise RestError(400, -1121, "Invalid symbol.")
        name = self.replay.tape.name(market, symbol)
        assert name is not None
        return self._page(name, kind, index, from_id, limit), weight

    def _page(
        self, symbol: str, kind: str, index: _Index, from_id: int | None, limit: int
    ) -> list[dict]:
        """One page of ``symbol``'s rows (``symbol``: the tape's name of it)."""
        replay = self.replay
        n_tape = len(replay.tape)
        played = replay.position  # events [0, played) of the global sequence are public
        n = len(index.ids)
        if n == 0:
            return []
        span = replay.id_span(symbol, kind, index.derived)
        first = int(index.ids[0])
        cur_pass, cur_i = divmod(played, n_tape)
        if not replay.loop:
            cur_pass, cur_i = (0, n_tape) if played >= n_tape else (0, cur_i)
        if from_id is None:
            # The latest `limit` public events (Binance: most recent trades).
            k_end = int(np.searchsorted(index.done_at, cur_i))
            p = cur_pass
            if k_end == 0 and p > 0:
                p, k_end = p - 1, n
            k0 = max(0, k_end - limit)
            return [self._row(symbol, kind, index, k, p) for k in range(k0, k_end)]
        p, k = 0, 0
        if from_id > first:
            p = (from_id - first) // span if replay.loop else 0
            k = int(np.searchsorted(index.ids, from_id - p * span))
        out: list[dict] = []
        while len(out) < limit:
            if k >= n:
                if not replay.loop:
                    break
                p, k = p + 1, 0
                continue
            if p * n_tape + int(index.done_at[k]) >= played:
                break  # not played yet
            out.append(self._row(symbol, kind, index, k, p))
            k += 1
        return out

    def _row(self, symbol: str, kind: str, index: _Index, k: int, p: int) -> dict:
        d = index.data[k]
        replay = self.replay
        t_shift = p * replay.time_shift_ms
        if kind == "trade":
            tid = d["t"] + p * replay.id_span(symbol, "trade", False)
            return {
                "id": tid,
                "price": d["p"],
                "qty": d["q"],
                "quoteQty": _quote(d["p"], d["q"]),
                "time": d["T"] + t_shift,
                "isBuyerMaker": d["m"],
                "isBestMatch": d.get("M", True),
            }
        a = d["a"] + p * replay.id_span(symbol, "aggTrade", index.derived)
        sub = replay.sub_span(symbol, index.derived)
        row = {
            "a": a,
            "p": d["p"],
            "q": d["q"],
            "f": d.get("f", a) + p * sub,
            "l": d.get("l", a) + p * sub,
            "T": d["T"] + t_shift,
            "m": d["m"],
        }
        if "M" in d:
            row["M"] = d["M"]
        return row


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return None if not values else values[-1]


def _quote(p: str, q: str) -> str:
    try:
        return format(Decimal(p) * Decimal(q), "f")
    except (InvalidOperation, TypeError):
        return "0"


class _Handler(BaseHTTPRequestHandler):
    rest: RestServer
    protocol_version = "HTTP/1.1"
    server_version = "replay-rest"

    def do_GET(self) -> None:
        rest = self.rest
        rest.requests += 1
        parts = urlsplit(self.path)
        if parts.path in LISTING_ENDPOINTS:
            self._listing(parts.path, parse_qs(parts.query, keep_blank_values=True))
            return
        if parts.path not in ENDPOINTS:
            self._send(404, {"code": -1, "msg": f"no such endpoint {parts.path!r}"})
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        weight = ENDPOINTS[parts.path][1]
        market = rest.market_of(parts.path)
        rest.requests_by_market[market] += 1
        status, retry, used = rest.charge(self.client_address[0], weight, market)
        if status != 200:
            if status == 418:
                rest.banned += 1
                msg = "Way too many requests; IP banned until retry-after."
            else:
                rest.rate_limited += 1
                msg = "Too many requests; current limit of IP is exceeded."
            self._send(status, {"code": -1003, "msg": msg}, used, retry)
            return
        try:
            rows, _ = rest.rows(parts.path, query)
        except RestError as exc:
            rest.bad_requests += 1
            self._send(exc.status, {"code": exc.code, "msg": exc.msg}, used)
            return
        rest.rows_served += len(rows)
        rest.rows_by_market[market] += len(rows)
        self._send(200, rows, used)

    def _listing(self, path: str, query: dict[str, list[str]]) -> None:
        rest = self.rest
        market, doc = LISTING_ENDPOINTS[path]
        weight = LISTING_WEIGHTS[(market, doc, bool(_one(query, "symbol")))]
        rest.requests_by_market[market] += 1
        status, retry, used = rest.charge(self.client_address[0], weight, market)
        if status != 200:
            self._send(status, {"code": -1003, "msg": "Too many requests; current "
                                "limit of IP is exceeded."}, used, retry)
            return
        try:
            body = rest.listing(path, query)
        except RestError as exc:
            rest.bad_requests += 1
            self._send(exc.status, {"code": exc.code, "msg": exc.msg}, used)
            return
        self._send(200, body, used)

    def _send(
        self, status: int, body: object, used: int = 0, retry_after: int | None = None
    ) -> None:
        data = orjson.dumps(body)
        self.send_response(status, http.HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-MBX-USED-WEIGHT-1M", str(used))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("replay rest: " + fmt, *args)
