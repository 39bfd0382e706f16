"""The command line of ``python app.py`` and ``python -m ingest``, declared once.

:func:`build_parser` holds every flag (each also settable as an environment variable
``PAIRS_<FLAG>``), :func:`parse_config` checks them and returns a frozen
:class:`Config`, :func:`configure_logging` sets up the log lines both commands print.
The dashboard (``app.py``) and the headless ingest process (``python -m ingest``) take
the same flags, so a DB written by one is read by the other with the same settings.

Markets are spelled as on the command line (``spot`` / ``futures``); the feed registry
(:func:`ingest.feeds.feed_protocol`) maps ``futures`` to the ``perp`` market.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
DEFAULT_DB = "data/market.db"


@dataclass(frozen=True)
class Config:
    """One run's settings (what the flags say, after :func:`parse_config`)."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    market: str = "futures"
    stream: str = "aggTrade"
    # False when the value is a default: a replay then follows its recording
    symbols_given: bool = False
    market_given: bool = False
    stream_given: bool = False
    feed_url: str | None = None  # base URL override
    rest_url: str | None = None  # REST base for gap back-fill; "off" disables it
    db: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8050
    replay: tuple[str, ...] | None = None  # None: live; () : bundled sample
    replay_speed: float = 1.0
    replay_loop: bool = True
    replay_rebase: bool = True
    ingest: bool = True
    log_level: str = "INFO"
    ring_capacity: int = 2**21
    watchdog_s: float = 30.0
    allowed_hosts: tuple[str, ...] = ()  # Host names that may POST/PUT/PATCH/DELETE
    bus: str | None = None  # live bus URL (redis://HOST:PORT/N), ingest/bus/


def _env(name: str, default: str) -> str:
    return os.environ.get(f"PAIRS_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    """Every flag, its environment variable, default and help text."""
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="Real-time pair-trading analytics on Binance trades (Plotly Dash).",
        epilog="Every flag can also be set by an environment variable PAIRS_<FLAG> "
        "(e.g. PAIRS_SYMBOLS=BTCUSDT,ETHUSDT, PAIRS_DB=data/x.db, PAIRS_PORT=8060).",
    )
    p.add_argument(
        "--symbols",
        default=os.environ.get("PAIRS_SYMBOLS"),
        help="comma-separated symbols (default: " + ",".join(DEFAULT_SYMBOLS)
        + "; with --replay: the symbols of the recording)",
    )
    p.add_argument(
        "--market", choices=("spot", "futures"), default=os.environ.get("PAIRS_MARKET"),
        help="Binance market (default: futures; with --replay: spot, as the bundled tape)",
    )
    p.add_argument(
        "--stream", choices=("trade", "aggTrade"), default=os.environ.get("PAIRS_STREAM"),
        help="trade stream kind (default: aggTrade, the documented futures stream; "
        "with --replay: the kind the recording holds)",
    )
    p.add_argument(
        "--feed-url", default=os.environ.get("PAIRS_FEED_URL"),
        help="WebSocket base URL override, e.g. ws://127.0.0.1:9001 "
        "(default: wss://fstream.binance.com/market or wss://stream.binance.com:9443)",
    )
    p.add_argument(
        "--rest-url", default=os.environ.get("PAIRS_REST_URL"),
        help="REST base URL for gap back-fill, or 'off' (default: "
        "https://fapi.binance.com or https://api.binance.com; with --replay: the "
        "replay server's REST port)",
    )
    p.add_argument(
        "--db", default=_env("DB", DEFAULT_DB),
        help="SQLite file or postgresql://USER@HOST:PORT/DB (default: %(default)s; "
        "docs/store.md)",
    )
    p.add_argument(
        "--host", default=_env("HOST", "127.0.0.1"),
        help="address to serve the dashboard on (default: %(default)s; other addresses "
        "expose it to the network and print a warning)",
    )
    p.add_argument(
        "--allowed-hosts", default=_env("ALLOWED_HOSTS", ""),
        help="comma-separated Host names allowed to change state (uploads, alerts, "
        "callbacks) besides localhost, 127.0.0.1, ::1 and --host; '*' for any",
    )
    p.add_argument("--port", type=int, default=int(_env("PORT", "8050")), help="(default: %(default)s)")
    p.add_argument(
        "--replay", nargs="*", metavar="FILE", default=None,
        help="start the built-in Binance-protocol replay server on a free loopback port, "
        "on the bundled sample (no FILE) or the given recordings, and point the feed at it",
    )
    p.add_argument(
        "--replay-speed", type=float, default=float(_env("REPLAY_SPEED", "1")),
        help="replay pace: 1 = as recorded, 10 = ten times faster, 0 = as fast as the "
        "client reads (default: %(default)s)",
    )
    p.add_argument(
        "--replay-once", action="store_true",
        help="play the recording once instead of looping it (looped passes shift times and ids)",
    )
    p.add_argument(
        "--replay-keep-times", action="store_true",
        help="keep the recording's original trade times (default: shift them so the "
        "recording starts now; trade ids are never changed)",
    )
    p.add_argument(
        "--no-ingest", action="store_true",
        default=_env("NO_INGEST", "").lower() in ("1", "true", "yes"),
        help="no feed: show an existing DB (follows it live if another process writes it; "
        "PAIRS_NO_INGEST=1, as gunicorn workers need: docs/scaleout.md#workers)",
    )
    p.add_argument(
        "--bus", default=os.environ.get("PAIRS_BUS"), metavar="redis://HOST:PORT/N",
        help="live bus (Redis Streams): an ingesting process publishes every trade, "
        "closed bar, gap and break to it; a --no-ingest process restores from --db, "
        "then follows the bus instead of polling the database (docs/scaleout.md)",
    )
    p.add_argument(
        "--ring-capacity", type=int, default=int(_env("RING_CAPACITY", str(2**21))),
        help="ticks kept in memory per symbol (default: %(default)s, 69 MB per symbol)",
    )
    p.add_argument(
        "--watchdog", type=float, default=float(_env("WATCHDOG", "30")),
        help="seconds of silence after which the feed reconnects (default: %(default)s)",
    )
    p.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    return p


def parse_config(argv: list[str] | None = None) -> Config:
    """Parse and check the flags (``sys.argv`` when ``argv`` is None).

    A bad value exits with argparse's usage line and a message naming the flag (exit
    status 2), before anything starts.
    """
    parser = build_parser()
    ns = parser.parse_args(argv)
    raw_symbols = ns.symbols if ns.symbols is not None else ",".join(DEFAULT_SYMBOLS)
    symbols = tuple(s.strip().upper() for s in raw_symbols.split(",") if s.strip())
    stream = ns.stream or "aggTrade"
    if not symbols:
        parser.error("--symbols: give at least one symbol")
    from ingest.feeds.binance import stream_names

    try:
        stream_names(symbols, stream)
    except ValueError as exc:
        parser.error(f"--symbols: {exc}")
    if ns.rest_url not in (None, "off") and not ns.rest_url.startswith(
        ("http://", "https://")
    ):
        parser.error("--rest-url must start with http:// or https://, or be 'off'")
    if ns.replay_speed < 0:
        parser.error("--replay-speed must be >= 0")
    if not 1 <= ns.port <= 65535:
        parser.error("--port must be in 1..65535")
    if ns.ring_capacity < 1_000:
        parser.error("--ring-capacity must be at least 1000")
    if ns.bus:  # PAIRS_BUS= (empty) means no bus
        from ingest.bus import BusUnavailable, check_bus_url

        try:
            check_bus_url(ns.bus)
        except BusUnavailable as exc:
            parser.error(f"--bus: {exc}")
    return Config(
        symbols=symbols,
        market=ns.market or "futures",
        stream=stream,
        symbols_given=ns.symbols is not None,
        market_given=ns.market is not None,
        stream_given=ns.stream is not None,
        feed_url=ns.feed_url,
        rest_url=ns.rest_url,
        db=ns.db,
        host=ns.host,
        port=ns.port,
        replay=None if ns.replay is None else tuple(ns.replay),
        replay_speed=ns.replay_speed,
        replay_loop=not ns.replay_once,
        replay_rebase=not ns.replay_keep_times,
        ingest=not ns.no_ingest,
        log_level=ns.log_level,
        ring_capacity=ns.ring_capacity,
        watchdog_s=ns.watchdog,
        allowed_hosts=tuple(h.strip() for h in ns.allowed_hosts.split(",") if h.strip()),
        bus=ns.bus or None,
    )


def configure_logging(level: str) -> None:
    """Log lines to stderr at ``level``; werkzeug's and websockets' at WARNING (their
    per-request and per-frame INFO lines would drown the app's own)."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
