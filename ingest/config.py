"""The command line of ``python app.py`` and ``python -m ingest``, declared once.

:func:`build_parser` holds every flag (each also settable as an environment variable
``PAIRS_<FLAG>``), :func:`parse_config` checks them and returns a frozen
:class:`Config`, :func:`configure_logging` sets up the log lines both commands print.
The dashboard (``app.py``) and the headless ingest process (``python -m ingest``) take
the same flags, so a DB written by one is read by the other with the same settings.

Markets are spelled as on the command line (``spot`` / ``futures``); the feed registry
(:func:`ingest.feeds.feed_protocol`) maps ``futures`` to the ``perp`` market.

Instruments (docs/markets.md): ``--symbols`` takes bare symbols (on ``--market``) and
``spot:BTCUSDT`` / ``perp:BTCUSDT`` in any mix; :attr:`Config.universe` is the run's
:class:`~analytics.instruments.Universe`. ``--feed-url`` / ``--rest-url`` take one URL
(the only market's) or ``spot=URL,perp=URL`` (:func:`market_urls`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass

from analytics.instruments import InstrumentError, Universe, normalize_market

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
    streams_per_connection: int = 1024  # ingest/feeds/pool.py: Binance's cap
    # --replay-universe N: play a wide tape of N instruments (ingest/replay/wide.py)
    replay_universe: int = 0
    # --symbols selectors (top:N, all; ingest/universe.py) and how often they refresh
    selectors: tuple = ()
    universe_refresh_s: float = 86_400.0
    allowed_hosts: tuple[str, ...] = ()  # Host names that may POST/PUT/PATCH/DELETE
    bus: str | None = None  # live bus URL (redis://HOST:PORT/N), ingest/bus/
    book: bool = True  # also ingest the top of book (@bookTicker); --no-book: trades only
    # alert delivery (#20, ingest/delivery/): give up after max age; per-request timeout;
    # longest backoff between two attempts (a receiver's Retry-After wins)
    delivery_max_age_s: float = 3600.0
    delivery_timeout_s: float = 10.0
    delivery_backoff_cap_s: float = 300.0

    @property
    def universe(self) -> Universe:
        """The EXPLICIT instruments ``--symbols`` names (bare symbols on ``--market``);
        selectors are in :attr:`universe_spec`."""
        return Universe.parse(self.symbols, self.market)

    @property
    def universe_spec(self):
        """``--symbols`` as an :class:`ingest.universe.UniverseSpec`: the explicit
        instruments and the selectors (``top:N`` / ``all``); ``.dynamic`` when any."""
        from ingest.universe import UniverseSpec

        return UniverseSpec(tuple(self.symbols), tuple(self.selectors),
                            normalize_market(self.market))

    def feed_url_for(self, market: str) -> str | None:
        """``--feed-url`` of one market (None: the venue's default)."""
        return market_urls(self.feed_url, (market,), "--feed-url").get(
            normalize_market(market))

    def rest_url_for(self, market: str) -> str | None:
        """``--rest-url`` of one market (None: the venue's default; ``"off"``)."""
        return market_urls(self.rest_url, (market,), "--rest-url").get(
            normalize_market(market))


def market_urls(value: str | None, markets, flag: str) -> dict[str, str]:
    """``--feed-url`` / ``--rest-url`` per market: ``"URL"`` (one market: that one's;
    with several an error, since one URL cannot serve two protocols' paths) or
    ``"spot=URL,perp=URL"`` (markets not named keep their default). ``ValueError``
    names the flag."""
    markets = tuple(normalize_market(m) for m in markets)
    if not value:
        return {}
    if "=" not in value.split("://", 1)[0]:
        if len(markets) > 1:
            raise ValueError(
                f"{flag}: {len(markets)} markets ({', '.join(markets)}) are ingested: "
                f"give one URL per market as spot=URL,perp=URL"
            )
        return dict.fromkeys(markets, value)
    out: dict[str, str] = {}
    for part in value.split(","):
        market, sep, url = part.partition("=")
        if not sep or not url.strip():
            raise ValueError(f"{flag}: {part!r} is not MARKET=URL (spot=URL,perp=URL)")
        try:
            out[normalize_market(market)] = url.strip()
        except InstrumentError as exc:
            raise ValueError(f"{flag}: {exc}") from None
    return out


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
        help="comma-separated instruments: SYMBOL (on --market), spot:SYMBOL or "
        "perp:SYMBOL, and selectors: top:N (the N most traded by 24 h quote volume) "
        "and all (every trading USDT instrument), on --market or as spot:top:N, "
        "perp:all; in any mix, e.g. perp:top:50,spot:BTCUSDT (default: "
        + ",".join(DEFAULT_SYMBOLS) + "; with --replay: the instruments of the "
        "recording; docs/markets.md)",
    )
    p.add_argument(
        "--universe-refresh", type=float, default=float(_env("UNIVERSE_REFRESH", "86400")),
        metavar="SECONDS",
        help="with top:N / all in --symbols: re-read the exchange's listings this often "
        "and subscribe new instruments without a restart (>= 10; default: %(default)s)",
    )
    p.add_argument(
        "--market", choices=("spot", "futures"), default=os.environ.get("PAIRS_MARKET"),
        help="Binance market of bare symbols (default: futures; with --replay: the "
        "recording's; --replay without files: only this market's bundled tapes)",
    )
    p.add_argument(
        "--stream", choices=("trade", "aggTrade"), default=os.environ.get("PAIRS_STREAM"),
        help="trade stream kind (default: aggTrade, the documented futures stream; "
        "with --replay: the kind the recording holds)",
    )
    p.add_argument(
        "--feed-url", default=os.environ.get("PAIRS_FEED_URL"),
        help="WebSocket base URL override, e.g. ws://127.0.0.1:9001, or one per "
        "market: spot=URL,perp=URL (default: wss://fstream.binance.com/market or "
        "wss://stream.binance.com:9443)",
    )
    p.add_argument(
        "--rest-url", default=os.environ.get("PAIRS_REST_URL"),
        help="REST base URL for gap back-fill, or 'off', or one per market: "
        "spot=URL,perp=URL (default: https://fapi.binance.com or https://api.binance.com;"
        " with --replay: the replay server's REST port)",
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
        "--replay-universe", type=int, default=int(_env("REPLAY_UNIVERSE", "0")),
        metavar="N",
        help="with --replay (no FILE): play a wide tape of N instruments of --market "
        "(default futures): the real BTCUSDT/ETHUSDT recordings plus N-2 instruments "
        "derived from them, a heavy head and a long tail (0 = off; docs/replay.md)",
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
        "--no-book", action="store_true",
        default=_env("NO_BOOK", "").lower() in ("1", "true", "yes"),
        help="trades only: do not subscribe to the best bid/ask (@bookTicker); the bars' "
        "bid/ask/mid/spread columns stay empty (PAIRS_NO_BOOK=1; docs/book.md)",
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
        "--streams-per-connection", type=int,
        default=int(_env("STREAMS_PER_CONNECTION", "1024")), metavar="N",
        help="most streams on one websocket connection; a market's streams (trades and "
        "book: 2 per instrument) are split over as many connections as needed "
        "(1..1024, Binance's cap; default: %(default)s; docs/markets.md#connections)",
    )
    p.add_argument(
        "--delivery-max-age", type=float, default=float(_env("DELIVERY_MAX_AGE", "3600")),
        metavar="SECONDS",
        help="alert deliveries not through after this long are given up "
        "(default: %(default)s s; docs/alerts.md#delivery)",
    )
    p.add_argument(
        "--delivery-timeout", type=float, default=float(_env("DELIVERY_TIMEOUT", "10")),
        metavar="SECONDS", help="timeout of one delivery request (default: %(default)s s)",
    )
    p.add_argument(
        "--delivery-backoff-cap", type=float,
        default=float(_env("DELIVERY_BACKOFF_CAP", "300")), metavar="SECONDS",
        help="longest wait between two attempts of a delivery; the wait doubles from 1 s "
        "with full jitter, a receiver's Retry-After wins (default: %(default)s s)",
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
    stream = ns.stream or "aggTrade"
    market = ns.market or "futures"
    from ingest.universe import parse_universe_spec

    try:  # instruments and selectors (top:N, all; ingest/universe.py)
        spec = parse_universe_spec(raw_symbols.split(","), market)
        symbols = tuple(_instrument_text(s) for s in spec.instruments)
        universe = Universe.parse(symbols, market)
    except ValueError as exc:  # InstrumentError too
        parser.error(f"--symbols: {exc}")
    if not 10 <= ns.universe_refresh <= 30 * 86_400:
        parser.error("--universe-refresh must be between 10 and 2592000 seconds")
    from ingest.feeds.binance import stream_names

    if not 1 <= ns.streams_per_connection <= 1024:
        parser.error("--streams-per-connection must be in 1..1024 (Binance's cap)")
    if not ns.no_book and ns.streams_per_connection < 2:
        parser.error("--streams-per-connection must be >= 2 with the book (an "
                     "instrument's trade and book streams share a connection); or --no-book")
    for m in universe.markets:  # the streams are valid (split over connections later)
        try:
            stream_names([i.symbol for i in universe if i.market == m][:1], stream,
                         book=not ns.no_book)
        except ValueError as exc:
            parser.error(f"--symbols: {exc}")
    # With --replay and no --symbols, the recording says which markets run.
    url_markets = spec.markets if ns.symbols is not None or ns.replay is None else (
        (normalize_market(market),) if ns.market is not None else ("spot", "perp"))
    for flag, value in (("--feed-url", ns.feed_url), ("--rest-url", ns.rest_url)):
        if flag == "--rest-url" and value == "off":
            continue
        try:
            urls = market_urls(value, url_markets, flag)
        except ValueError as exc:
            parser.error(str(exc))
        if flag == "--rest-url":
            for url in urls.values():
                if url != "off" and not url.startswith(("http://", "https://")):
                    parser.error(
                        "--rest-url must start with http:// or https://, or be 'off'")
    if ns.replay_speed < 0:
        parser.error("--replay-speed must be >= 0")
    if ns.replay_universe:
        from ingest.replay.wide import MAX_INSTRUMENTS

        if not 2 <= ns.replay_universe <= MAX_INSTRUMENTS:
            parser.error(f"--replay-universe must be 0 (off) or 2..{MAX_INSTRUMENTS}")
        if ns.replay is None:
            parser.error("--replay-universe needs --replay (it plays a generated tape)")
        if ns.replay:
            parser.error("--replay-universe plays a generated tape: give --replay no FILE")
    if not 1 <= ns.port <= 65535:
        parser.error("--port must be in 1..65535")
    if ns.ring_capacity < 1_000:
        parser.error("--ring-capacity must be at least 1000")
    for flag, value, lo in (("--delivery-max-age", ns.delivery_max_age, 1.0),
                            ("--delivery-timeout", ns.delivery_timeout, 0.1),
                            ("--delivery-backoff-cap", ns.delivery_backoff_cap, 0.1)):
        if not lo <= value <= 30 * 86_400:
            parser.error(f"{flag} must be between {lo:g} and 2592000 seconds")
    if ns.bus:  # PAIRS_BUS= (empty) means no bus
        from ingest.bus import BusUnavailable, check_bus_url

        try:
            check_bus_url(ns.bus)
        except BusUnavailable as exc:
            parser.error(f"--bus: {exc}")
    return Config(
        symbols=symbols,
        market=market,
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
        streams_per_connection=ns.streams_per_connection,
        replay_universe=ns.replay_universe,
        selectors=spec.selectors,
        universe_refresh_s=ns.universe_refresh,
        allowed_hosts=tuple(h.strip() for h in ns.allowed_hosts.split(",") if h.strip()),
        bus=ns.bus or None,
        book=not ns.no_book,
        delivery_max_age_s=ns.delivery_max_age,
        delivery_timeout_s=ns.delivery_timeout,
        delivery_backoff_cap_s=ns.delivery_backoff_cap,
    )


def _instrument_text(text: str) -> str:
    """One ``--symbols`` item as the run keeps it: ``BTCUSDT`` (bare, upper case) or
    ``perp:BTCUSDT`` (the instrument's key); ``InstrumentError`` if malformed."""
    from analytics.instruments import check_symbol, parse_instrument

    text = text.strip()
    if ":" not in text:
        return check_symbol(text)
    return parse_instrument(text).key


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
