"""Recorded Binance trades loaded into one time-ordered, multi-symbol tape.

The replay server (``ingest.replay.server``) plays a :class:`Tape` back over a real
WebSocket, so a tape keeps every event as the *exact Binance event object*
(``data``) and never re-types prices: ``"61837.63000000"`` stays that string, and
what the server sends is byte-for-byte what Binance sent.

Supported inputs (gzip, zip or plain text; the format is detected from content):

* our ws-trade captures ``*-ws-trade_*.jsonl(.gz)`` and raw hftbacktest captures
  (``*.gz``, ``*.dat.gz``): one ``<recv time> <frame>`` per line, the receive time
  in ns (19 digits) or, in the 2023 capture, µs (16 digits). Raw captures also hold
  ``@bookTicker`` frames, kept as ``"bookTicker"`` events (best bid/ask updates),
  and depth frames and one REST snapshot line, which are skipped and counted.
* our trades CSVs (header ``symbol,trade_id,price,qty,trade_time_ms,...``), spot or
  futures variant (futures has ``order_type``).
* data.binance.vision dumps: ``<SYMBOL>-trades-<date>.csv`` and
  ``<SYMBOL>-aggTrades-<date>.csv``, spot (no header) or USD-M (header optional);
  spot times from 2025 on are µs (16 digits) and are floored to ms.

Every event knows its market (``"spot"`` or ``"perp"``, Binance USDⓈ-M): from the frame
when it shows it (a futures trade carries ``X``, a futures bookTicker ``T``), else from
the file name (``binance-spot-…``, ``…rawcapture_um…``), else from the frame's spot
marks (``M``; a bookTicker without ``T``), else from ``default_market``. One tape may
hold both markets; docs/replay.md describes the names and the clock.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import statistics
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import orjson

from ingest.feeds.binance import parse_event
from ingest.models import BadFrame, Trade

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
#: The bundled tapes per market. "spot" is the full 10.8 min spot recording (the
#: one-market default since the start); "spot-overlap" is its prefix up to 23:59:59.999,
#: the window the futures recording covers, so both markets play over the same minutes.
_SAMPLE_TAPES: dict[str, tuple[str, ...]] = {
    "spot": (
        "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
        "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
    ),
    "spot-overlap": (
        "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-08T235959Z.jsonl.gz",
        "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-08T235959Z.jsonl.gz",
    ),
    "perp": (
        "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz",
        "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz",
    ),
}
#: Raw captures of trades + best bid/ask (2 minutes), not part of the default replay.
_BOOK_SAMPLES: dict[str, tuple[str, ...]] = {
    "spot": (
        "hftbacktest-rawcapture-trade-book_spot_BTCUSDT_20240808_2354-2356.gz",
        "hftbacktest-rawcapture-trade-book_spot_ETHUSDT_20240808_2354-2356.gz",
    ),
    "perp": (
        "hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz",
        "hftbacktest-rawcapture-trade-book_um_ETHUSDT_20240808_2354-2356.gz",
    ),
}
TRADE_KINDS = ("trade", "aggTrade")
BOOK_KIND = "bookTicker"
MARKETS = ("spot", "perp")
#: Market words in file names (ours and hftbacktest's) -> market.
_NAME_MARKETS = {"spot": "spot", "um": "perp", "usdm": "perp", "futures": "perp",
                 "perp": "perp"}
_NAME_MARKET = re.compile(r"(?:^|[-_.])(spot|um|usdm|futures|perp)(?=[-_.])")

_DUMP_NAME = re.compile(r"([A-Z0-9]{1,20})-(trades|aggTrades)-")


@dataclass(frozen=True, slots=True)
class TapeEvent:
    """One recorded trade, aggTrade or bookTicker event of one market.

    ``data`` is the Binance event object exactly as recorded (key order kept), e.g.
    {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
     "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}
    or a spot best bid/ask update (no time in it at all)
    {"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000",
     "a":"61837.64000000","A":"1.54698000"}
    ``recv_ns`` is the recorder's receive clock: only its *differences* matter
    (pacing); the 2024 capture host ran ~1.27 s behind Binance. ``time_ms`` is ``T``;
    a spot bookTicker's is its receive time plus the file's clock offset (median of
    ``E − receive`` over the file's frames), i.e. the receive moment in Binance's frame.
    """

    recv_ns: int
    symbol: str
    kind: str  # "trade" | "aggTrade" | "bookTicker"
    time_ms: int  # T (spot bookTicker: receive time in the exchange's frame)
    trade_id: int  # t for trade, a for aggTrade, u for bookTicker
    data: dict
    market: str = "spot"  # "spot" | "perp"
    #: where the event sorts in a tape (ms): the running maximum of ``time_ms`` over
    #: its file in recorded order, so a capture's frames play in the order they were
    #: received (a bookTicker is not pulled ahead of the trade received before it);
    #: equal to ``time_ms`` where times never go back, -1: use ``time_ms``.
    order_ms: int = -1


def _sort_key(ev: TapeEvent) -> tuple[int, int, str, str, str, int]:
    order = ev.order_ms if ev.order_ms >= 0 else ev.time_ms
    return (order, ev.recv_ns, ev.symbol, ev.market, ev.kind, ev.trade_id)


def tape_name(symbol: str, market: str, markets_of_symbol: Iterable[str]) -> str:
    """The run's name of an instrument (contract C1): the bare symbol while it is on
    one market, else ``"spot:BTCUSDT"`` / ``"perp:BTCUSDT"``."""
    return symbol if len(set(markets_of_symbol)) <= 1 else f"{market}:{symbol}"


class Tape:
    """Events of one or more symbols and markets, interleaved by exchange time.

    Sorted by ``(time_ms, recv_ns, symbol, market, kind, id)``: trade time first
    because it is Binance's clock (the receive clock of two capture files need not
    agree), the receive time to keep arrival order within one millisecond. Within one
    capture file the recorded order is kept (``TapeEvent.order_ms``, the running
    maximum of the file's times: trades' ``T`` never go back in our recordings, so a
    trade tape sorts by ``T`` exactly; book updates stay where they were received).

    Per-name statistics (``symbols``, ``counts``, ``first_id``, ...) are of the trade
    events (trade/aggTrade) and keyed by :meth:`name_of`: the bare symbol while that
    symbol is on one market in the tape, else ``"perp:BTCUSDT"``. Book events are
    counted in ``book_counts``. ``clock_offset_ms`` = median of ``E − receive time``
    over the events that carry ``E`` (the capture host's clock error plus latency).
    """

    def __init__(
        self,
        events: Iterable[TapeEvent],
        *,
        source_files: Iterable[str] = (),
        skipped: Counter[str] | None = None,
        duplicates: int = 0,
        presorted: bool = False,
        listings: dict[tuple[str, str], dict] | None = None,
    ) -> None:
        # presorted: the caller already ordered ``events`` by _sort_key (wide tapes
        # build a million events in order; sorting them again costs seconds)
        self.events: tuple[TapeEvent, ...] = (
            tuple(events) if presorted else tuple(sorted(events, key=_sort_key)))
        #: exchangeInfo hints per (market, symbol) (ingest/replay/wide.py):
        #: {"tick": "0.01", "step": "0.001", "listed_ms": int | None}; the replay REST
        #: infers tick/step from the recorded decimals where absent, and lists an
        #: instrument with a ``listed_ms`` only once its clock reaches it.
        self.listings: dict[tuple[str, str], dict] = dict(listings or {})
        self.source_files: tuple[str, ...] = tuple(source_files)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.duplicates = duplicates
        for ev in self.events:
            if ev.market not in MARKETS:
                raise ValueError(f"{ev.symbol}: unknown market {ev.market!r}")
        markets_of: dict[str, set[str]] = {}
        for ev in self.events:
            markets_of.setdefault(ev.symbol, set()).add(ev.market)
        self.markets: tuple[str, ...] = tuple(
            sorted({m for ms in markets_of.values() for m in ms})
        )
        #: (market, symbol) -> the tape's name of that instrument
        self.names: dict[tuple[str, str], str] = {
            (m, s): tape_name(s, m, ms) for s, ms in markets_of.items() for m in ms
        }
        #: name -> (market, symbol)
        self.instrument_of: dict[str, tuple[str, str]] = {
            n: key for key, n in self.names.items()
        }
        self.instruments: tuple[tuple[str, str], ...] = tuple(sorted(self.names))
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        counts: Counter[str] = Counter()
        books: Counter[str] = Counter()
        kind_of: dict[str, str] = {}
        offsets: list[int] = []
        names = self.names
        for ev in self.events:
            name = names[(ev.market, ev.symbol)]
            e_ms = ev.data.get("E")
            if type(e_ms) is int:
                offsets.append(e_ms * 1_000_000 - ev.recv_ns)
            if ev.kind == BOOK_KIND:
                books[name] += 1
                continue
            known = kind_of.setdefault(name, ev.kind)
            if known != ev.kind:
                raise ValueError(
                    f"{name}: tape mixes {known} and {ev.kind} events; their ids "
                    "are different sequences, load them as separate tapes"
                )
            counts[name] += 1
            tid = ev.trade_id
            if name not in first or tid < first[name]:
                first[name] = tid
            if name not in last or tid > last[name]:
                last[name] = tid
        self.book_counts: dict[str, int] = dict(books)
        self.clock_offset_ms: int = (
            round(statistics.median(offsets) / 1_000_000) if offsets else 0
        )
        self.symbols: tuple[str, ...] = tuple(sorted(counts))
        self.kinds: tuple[str, ...] = tuple(sorted(set(kind_of.values())))
        self.kind_of: dict[str, str] = kind_of
        self.counts: dict[str, int] = dict(counts)
        self.first_id: dict[str, int] = first
        self.last_id: dict[str, int] = last
        # Ids the tape should hold but does not (0 for our complete recordings).
        self.missing_ids: dict[str, int] = {
            s: last[s] - first[s] + 1 - counts[s] for s in counts
        }
        if self.events:
            self.first_time_ms = min(ev.time_ms for ev in self.events)
            self.last_time_ms = max(ev.time_ms for ev in self.events)
        else:
            self.first_time_ms = self.last_time_ms = 0
        self.duration_ms = self.last_time_ms - self.first_time_ms

    def name_of(self, ev: TapeEvent) -> str:
        """The tape's name of ``ev``'s instrument (bare, or ``market:SYMBOL``)."""
        return self.names[(ev.market, ev.symbol)]

    def name(self, market: str, symbol: str) -> str | None:
        """The name of ``symbol`` on ``market``, None if the tape does not hold it."""
        return self.names.get((market, symbol))

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[TapeEvent]:
        return iter(self.events)

    def __getitem__(self, index: int) -> TapeEvent:
        return self.events[index]

    def __repr__(self) -> str:
        per = ", ".join(f"{s} {self.counts[s]}" for s in self.symbols)
        book = "".join(
            f", {n} {c} bookTicker" for n, c in sorted(self.book_counts.items())
        )
        return (
            f"Tape({len(self)} events: {per}{book}; kinds {list(self.kinds)}; "
            f"markets {list(self.markets)}; {self.duration_ms / 1000:.1f} s)"
        )


def _market_arg(market: str | None) -> str | None:
    if market is None:
        return None
    if market == "futures":
        return "perp"
    if market not in MARKETS:
        raise ValueError(f"invalid market {market!r}: expected spot or perp (futures)")
    return market


def default_sample_files(market: str | None = None) -> list[Path]:
    """The bundled 2024-08-08 BTCUSDT + ETHUSDT tapes.

    ``None``: both markets over the window both recordings cover (spot cut at
    23:59:59.999, futures 23:54:16 → 00:00:00; 15,836 spot + 35,389 futures trades).
    ``"spot"``: the full spot tapes (10.8 min, 34,419 trades), the one-market default.
    ``"perp"`` (or ``"futures"``): the futures tapes (5.7 min, 35,389 trades).
    """
    market = _market_arg(market)
    if market is None:
        names = _SAMPLE_TAPES["spot-overlap"] + _SAMPLE_TAPES["perp"]
    else:
        names = _SAMPLE_TAPES[market]
    return [SAMPLE_DIR / name for name in names]


def book_sample_files(market: str | None = None) -> list[Path]:
    """The bundled raw captures of trades + ``@bookTicker`` (2 min, 23:54:15 → 23:56:15
    receive time), per market or both; not part of the default replay."""
    market = _market_arg(market)
    markets = MARKETS if market is None else (market,)
    return [SAMPLE_DIR / name for m in markets for name in _BOOK_SAMPLES[m]]


def file_market(path: str | Path) -> str | None:
    """The market a file name shows (``binance-spot-…``, ``…rawcapture_um_…``), or None."""
    match = _NAME_MARKET.search(Path(path).name.lower())
    return None if match is None else _NAME_MARKETS[match.group(1)]


# ---------------------------------------------------------------------------
# Loading


def load_tape(
    paths: str | Path | Iterable[str | Path], *, default_market: str | None = None
) -> Tape:
    """Load one or more recordings (formats detected per file) into one Tape.

    Events seen twice (same market, symbol, kind and id, e.g. a jsonl and its CSV
    twin) are kept once and counted in ``Tape.duplicates``. A file that cannot be
    read raises ValueError naming the file and the line. ``default_market`` ("spot",
    "perp" or "futures") is the market of events whose frame and file name do not
    show theirs (None: spot).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("load_tape: no files given")
    default = _market_arg(default_market) or "spot"
    events: list[TapeEvent] = []
    seen: set[tuple[str, str, str, int]] = set()
    skipped: Counter[str] = Counter()
    duplicates = 0
    for path in paths:
        file_events = _load_file(path, skipped, default)
        for ev in file_events:
            key = (ev.market, ev.symbol, ev.kind, ev.trade_id)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            events.append(ev)
        log.info("tapes: %s: %d events", path.name, len(file_events))
    if not events:
        raise ValueError(
            f"no trade or bookTicker events found in {[str(p) for p in paths]}"
        )
    return Tape(
        events,
        source_files=[str(p) for p in paths],
        skipped=skipped,
        duplicates=duplicates,
    )


def _open_binary(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == b"PK\x03\x04":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if not n.endswith("/")]
        if len(members) != 1:
            raise ValueError(f"{path}: expected one file in the zip, got {members}")
        return archive.open(members[0])  # type: ignore[return-value]
    return open(path, "rb")


def _load_file(path: Path, skipped: Counter[str], default: str) -> list[TapeEvent]:
    try:
        with _open_binary(path) as fh:
            first = b""
            for first in fh:
                if first.strip():
                    break
        with _open_binary(path) as fh:
            named = file_market(path)
            if first[:1].isdigit() and b" " in first and b"{" in first:
                return _load_frames(path, fh, skipped, named, default)
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            return _load_csv(path, text, named or default)
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc


def _recv_to_ns(text: bytes) -> int:
    """hftbacktest writes ns (19 digits); its 2023 collector wrote µs (16)."""
    value = int(text)
    digits = len(text)
    if digits >= 18:
        return value
    if digits >= 15:
        return value * 1_000
    return value * 1_000_000


def _event_from_data(data: dict) -> tuple[str, Trade]:
    parsed = parse_event(data)
    if not isinstance(parsed, Trade):
        raise BadFrame("not a trade event")
    return data["e"], parsed


def _load_frames(
    path: Path,
    fh: Iterable[bytes],
    skipped: Counter[str],
    named: str | None,
    default: str,
) -> list[TapeEvent]:
    """Lines ``<recv time> <frame>``: our ws-trade jsonl files and raw captures.

    1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,...}}
    1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade",...}}
    1723161254152322667 {"lastUpdateId":35346513512,"bids":[...],"asks":[...]}

    Trades and bookTicker frames are kept; depth frames and the REST snapshot are
    skipped and counted. A spot bookTicker has no time: its ``time_ms`` is its receive
    time plus this file's clock offset (median ``E − receive`` of the file's frames).
    """
    rows: list[tuple[int, str, str, int | None, int, dict, str]] = []
    offsets: list[int] = []
    for lineno, line in enumerate(fh, 1):
        line = line.strip()
        if not line:
            continue
        stamp, sep, frame = line.partition(b" ")
        try:
            if not sep or not stamp.isdigit():
                raise ValueError("expected '<receive time> <json frame>'")
            recv_ns = _recv_to_ns(stamp)
            obj = orjson.loads(frame)
            if type(obj) is not dict:
                raise ValueError("frame is not a JSON object")
            data = obj.get("data", obj) if "stream" in obj else obj
            if type(data) is not dict:
                raise ValueError("'data' is not an object")
            e = data.get("E")
            if type(e) is int:
                offsets.append(e * 1_000_000 - recv_ns)
            kind = _frame_kind(obj, data)
            if kind is None:
                skipped[_skip_reason(obj, data)] += 1
                continue
            if kind == BOOK_KIND:
                symbol, event_id, t_ms = _check_book(data)
            else:
                kind, trade = _event_from_data(data)
                symbol, event_id, t_ms = trade.symbol, trade.trade_id, trade.time_ms
        except (ValueError, BadFrame) as exc:  # orjson.JSONDecodeError is a ValueError
            raise ValueError(f"{path}: line {lineno}: {exc}") from exc
        market = _event_market(kind, data, named, default)
        rows.append((recv_ns, symbol, kind, t_ms, event_id, data, market))
    offset_ns = int(statistics.median(offsets)) if offsets else 0
    out: list[TapeEvent] = []
    order_ms = -1
    for recv_ns, symbol, kind, t_ms, event_id, data, market in rows:
        if t_ms is None:  # spot bookTicker: its receive moment in Binance's frame
            t_ms = (recv_ns + offset_ns) // 1_000_000
        order_ms = max(order_ms, t_ms)
        out.append(
            TapeEvent(recv_ns, symbol, kind, t_ms, event_id, data, market, order_ms)
        )
    return out


def _frame_kind(obj: dict, data: dict) -> str | None:
    """"trade" / "aggTrade" / "bookTicker", or None for frames a tape skips.

    A spot bookTicker has no ``e``: it is told by its stream name or its keys."""
    e = data.get("e")
    if e in TRADE_KINDS:
        return e
    if e == BOOK_KIND:
        return BOOK_KIND
    if e is None:
        stream = obj.get("stream")
        if isinstance(stream, str):
            return BOOK_KIND if stream.endswith("@bookTicker") else None
        if _BOOK_KEYS <= data.keys():
            return BOOK_KIND
    return None


_BOOK_KEYS = frozenset(("u", "s", "b", "B", "a", "A"))


def _check_book(data: dict) -> tuple[str, int, int | None]:
    """Validate a bookTicker object; return (symbol, update id u, T or None)."""
    missing = sorted(_BOOK_KEYS - data.keys())
    if missing:
        raise BadFrame(f"bookTicker lacks {missing}")
    symbol, update_id = data["s"], data["u"]
    if type(symbol) is not str or not symbol:
        raise BadFrame("bookTicker 's' is not a symbol")
    if type(update_id) is not int or update_id < 0:
        raise BadFrame("bookTicker 'u' is not an update id")
    for key in ("b", "B", "a", "A"):
        value = data[key]
        try:
            number = Decimal(value) if type(value) is str else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number < 0:
            raise BadFrame(f"bookTicker {key!r} is not a decimal string: {value!r}")
    t_ms = data.get("T")
    if t_ms is not None and (type(t_ms) is not int or t_ms < 0):
        raise BadFrame("bookTicker 'T' is not a time")
    return symbol, update_id, t_ms


def _event_market(kind: str, data: dict, named: str | None, default: str) -> str:
    """The market of one event: the frame's futures marks, the file name, the frame's
    spot marks, the default (in that order; docs/replay.md)."""
    if kind == BOOK_KIND:
        if "T" in data:
            return "perp"
    elif "X" in data:
        return "perp"
    if named is not None:
        return named
    if kind == BOOK_KIND or "M" in data:
        return "spot"
    return default


def _skip_reason(obj: dict, data: dict) -> str:
    e = data.get("e")
    if isinstance(e, str):
        return e
    if "lastUpdateId" in data:
        return "snapshot"
    stream = obj.get("stream")
    if isinstance(stream, str) and "@" in stream:
        return stream.split("@", 1)[1]
    return "other"


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _to_ms(text: str) -> int:
    """Spot dumps switched to µs (16 digits) on 2025-01-01: detect by length."""
    text = text.strip()
    value = int(text)
    return value // 1000 if len(text) >= 16 else value


def _is_int(text: str) -> bool:
    return text.strip().isdigit()


def _load_csv(path: Path, fh: io.TextIOWrapper, market: str) -> list[TapeEvent]:
    reader = csv.reader(fh)
    rows = ((n, r) for n, r in enumerate(reader, 1) if r and any(f.strip() for f in r))
    try:
        lineno, first = next(rows)
    except StopIteration:
        return []
    header = [f.strip() for f in first]
    if "trade_id" in header and "symbol" in header:
        return _load_our_csv(path, header, rows, market)
    has_header = not _is_int(header[0])
    if not has_header:
        rows = _chain_first((lineno, first), rows)
    return _load_dump_csv(path, header if has_header else None, first, rows)


def _chain_first(
    head: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield head
    yield from rest


def _load_our_csv(
    path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]], market: str
) -> list[TapeEvent]:
    """Our trades CSVs (one row per trade event, values copied as text).

    symbol,trade_id,price,qty,trade_time_ms,event_time_ms,is_buyer_maker,
        is_best_match,recv_time_local_ns
    ETHUSDT,1520538925,2683.80000000,0.00200000,1723161255611,1723161255612,true,
        true,1723161254340863867
    Futures: ...,is_buyer_maker,order_type,recv_time_local_ns  (no is_best_match)
    """
    col = {name: i for i, name in enumerate(header)}
    futures = "order_type" in col
    has_order_ids = "buyer_order_id" in col and "seller_order_id" in col
    need = ["symbol", "trade_id", "price", "qty", "trade_time_ms", "event_time_ms"]
    need.append("is_buyer_maker")
    missing = [n for n in need if n not in col]
    if missing:
        raise ValueError(f"{path}: line 1: trades CSV header lacks {missing}")
    c_sym, c_id, c_p, c_q = col["symbol"], col["trade_id"], col["price"], col["qty"]
    c_t, c_e, c_m = col["trade_time_ms"], col["event_time_ms"], col["is_buyer_maker"]
    c_recv = col.get("recv_time_local_ns")
    out: list[TapeEvent] = []
    for lineno, row in rows:
        try:
            sym, tid = row[c_sym], int(row[c_id])
            t_ms, e_ms, maker = int(row[c_t]), int(row[c_e]), _parse_bool(row[c_m])
            if futures:
                data = {"e": "trade", "E": e_ms, "T": t_ms, "s": sym, "t": tid}
                data.update(p=row[c_p], q=row[c_q], X=row[col["order_type"]], m=maker)
            else:
                data = {"e": "trade", "E": e_ms, "s": sym, "t": tid}
                data.update(p=row[c_p], q=row[c_q])
                if has_order_ids:
                    data["b"] = int(row[col["buyer_order_id"]])
                    data["a"] = int(row[col["seller_order_id"]])
                best = row[col["is_best_match"]] if "is_best_match" in col else "true"
                data.update(T=t_ms, m=maker, M=_parse_bool(best))
            recv_text = row[c_recv].strip() if c_recv is not None else ""
            recv_ns = int(recv_text) if recv_text else t_ms * 1_000_000
            _event_from_data(data)
        except (ValueError, IndexError, BadFrame) as exc:
            raise ValueError(f"{path}: line {lineno}: {exc}") from exc
        out.append(
            TapeEvent(recv_ns, sym, "trade", t_ms, tid, data, "perp" if futures else market)
        )
    return out


def _load_dump_csv(
    path: Path,
    header: list[str] | None,
    first: list[str],
    rows: Iterator[tuple[int, list[str]]],
) -> list[TapeEvent]:
    """data.binance.vision trade dumps; the symbol comes from the file name.

    spot trades     id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch (no header)
        3735683259,61837.63000000,0.02000000,1237.15260000,1723161255342,True,True
    USD-M trades    id,price,qty,quote_qty,time,is_buyer_maker
    spot aggTrades  a,p,q,f,l,T,m,M (no header)
    USD-M aggTrades agg_trade_id,price,quantity,first_trade_id,last_trade_id,
                    transact_time,is_buyer_maker
    """
    match = _DUMP_NAME.search(path.name)
    if match is None:
        raise ValueError(
            f"{path}: line 1: not a recognised trade file (expected our trades CSV "
            "header or a Binance dump named like BTCUSDT-trades-2024-01-01.csv)"
        )
    symbol, name_kind = match.group(1), match.group(2)
    ncols = len(header if header is not None else first)
    agg_header = header is not None and header[0] in ("a", "agg_trade_id")
    if name_kind == "aggTrades" or agg_header:
        kind = "aggTrade"
    elif header is None and ncols == 7 and _is_int(first[5]):
        kind = "aggTrade"  # headerless USD-M aggTrades: column 6 is a time
    else:
        kind = "trade"
    if kind == "trade" and ncols not in (6, 7):
        raise ValueError(f"{path}: line 1: expected 6 or 7 trade columns, got {ncols}")
    if kind == "aggTrade" and ncols not in (7, 8):
        raise ValueError(
            f"{path}: line 1: expected 7 or 8 aggTrade columns, got {ncols}"
        )
    spot = ncols == (7 if kind == "trade" else 8)
    out: list[TapeEvent] = []
    for lineno, row in rows:
        try:
            if len(row) != ncols:
                raise ValueError(f"expected {ncols} columns, got {len(row)}")
            if kind == "trade":
                tid, t_ms = int(row[0]), _to_ms(row[4])
                maker = _parse_bool(row[5])
                if spot:
                    data = {"e": "trade", "E": t_ms, "s": symbol, "t": tid}
                    data.update(p=row[1], q=row[2], T=t_ms, m=maker)
                    data["M"] = _parse_bool(row[6])
                else:
                    data = {"e": "trade", "E": t_ms, "T": t_ms, "s": symbol, "t": tid}
                    data.update(p=row[1], q=row[2], m=maker)
            else:
                tid, t_ms = int(row[0]), _to_ms(row[5])
                data = {"e": "aggTrade", "E": t_ms, "s": symbol, "a": tid}
                data.update(p=row[1], q=row[2], f=int(row[3]), l=int(row[4]))
                data.update(T=t_ms, m=_parse_bool(row[6]))
                if spot:
                    data["M"] = _parse_bool(row[7])
            _event_from_data(data)
        except (ValueError, BadFrame) as exc:
            raise ValueError(f"{path}: line {lineno}: {exc}") from exc
        market = "spot" if spot else "perp"
        out.append(TapeEvent(t_ms * 1_000_000, symbol, kind, t_ms, tid, data, market))
    return out


# ---------------------------------------------------------------------------
# Aggregation


@dataclass(slots=True)
class _Group:
    first: TapeEvent
    last: TapeEvent
    last_index: int
    price: Decimal
    qty: Decimal


def aggregate_trades_indexed(
    events: Iterable[TapeEvent],
) -> list[tuple[int, TapeEvent]]:
    """Like :func:`aggregate_trades`, paired with the input index of each
    aggregate's last trade (the moment the aggregate is complete), so a player
    walking the trade tape knows when to emit each aggTrade."""
    result: list[tuple[int, TapeEvent]] = []
    open_groups: dict[tuple[str, str], _Group] = {}
    next_agg: dict[tuple[str, str], int] = {}

    def close(group: _Group) -> None:
        sym = group.first.symbol
        key = (group.first.market, sym)
        agg_id = next_agg.setdefault(key, group.first.trade_id)
        next_agg[key] = agg_id + 1
        first, last = group.first.data, group.last.data
        futures = "M" not in first
        data: dict = {"e": "aggTrade", "E": last["E"]}
        if futures:
            data.update(a=agg_id, s=sym)
        else:
            data.update(s=sym, a=agg_id)
        data.update(p=first["p"], q=format(group.qty, "f"))
        data.update(f=group.first.trade_id, l=group.last.trade_id, T=last["T"])
        data["m"] = first["m"]
        if not futures:
            data["M"] = True
        agg = TapeEvent(
            group.last.recv_ns, sym, "aggTrade", group.last.time_ms, agg_id, data,
            group.first.market,
        )
        result.append((group.last_index, agg))

    for index, ev in enumerate(events):
        if ev.kind != "trade":
            raise ValueError(
                f"aggregate_trades: {ev.symbol} id {ev.trade_id} is {ev.kind!r}, "
                "only 'trade' events can be aggregated"
            )
        data = ev.data
        try:
            price, qty = Decimal(data["p"]), Decimal(data["q"])
        except (KeyError, InvalidOperation) as exc:
            raise ValueError(f"aggregate_trades: {ev.symbol} {ev.trade_id}: {exc!r}") from exc
        group = open_groups.get((ev.market, ev.symbol))
        if (
            group is not None
            and ev.trade_id == group.last.trade_id + 1
            and ev.time_ms == group.last.time_ms
            and price == group.price
            and data["m"] == group.first.data["m"]
        ):
            group.last, group.last_index = ev, index
            group.qty += qty
            continue
        if group is not None:
            close(group)
        open_groups[(ev.market, ev.symbol)] = _Group(ev, ev, index, price, qty)
    for group in open_groups.values():
        close(group)
    result.sort(key=lambda pair: pair[0])
    return result


def aggregate_trades(events: Iterable[TapeEvent]) -> list[TapeEvent]:
    """Derive Binance-style ``aggTrade`` events from a trade tape.

    Binance merges the fills of one taker order at one price into an aggregate
    trade. Trades carry no taker-order id, so we approximate: consecutive trades of
    one symbol (and market) with the same ``T``, same price, same ``m`` and contiguous
    ids merge.
    The result is SYNTHETIC: aggregate ids are contiguous per symbol starting at the
    symbol's first trade id (real ids differ), ``q`` is the exact decimal sum, and
    ``E`` is the last merged trade's push time. Spot-style output::

        {"e":"aggTrade","E":1723161255619,"s":"BTCUSDT","a":3735683260,
         "p":"61837.63000000","q":"0.04809000","f":3735683260,"l":3735683261,
         "T":1723161255617,"m":true,"M":true}

    Futures-style (input without ``M``) has no ``M``, like the real stream.
    """
    return [ev for _, ev in aggregate_trades_indexed(events)]


def shift_times(tape: Tape, offset_ms: int) -> Tape:
    """The same tape with every ``T`` and ``E`` moved by ``offset_ms`` (ids unchanged;
    a spot bookTicker has neither, its ``time_ms`` moves all the same).

    Binance's protocol notes allow a replay to shift times uniformly by one offset.
    ``app.py --replay`` uses it to start a recording *now*, so lag, UTC axes and the
    clock that closes bars behave as they do live; the trades and ids are untouched.
    """
    offset_ms = int(offset_ms)
    events = []
    for ev in tape.events:
        data = dict(ev.data)
        if "T" in data:
            data["T"] = data["T"] + offset_ms
        if "E" in data:
            data["E"] = data["E"] + offset_ms
        order_ms = ev.order_ms + offset_ms if ev.order_ms >= 0 else -1
        events.append(
            TapeEvent(ev.recv_ns, ev.symbol, ev.kind, ev.time_ms + offset_ms, ev.trade_id,
                      data, ev.market, order_ms)
        )
    listings = {
        key: {**hint, "listed_ms": None if hint.get("listed_ms") is None
              else hint["listed_ms"] + offset_ms}
        for key, hint in tape.listings.items()
    }
    # a uniform shift keeps the order: no re-sort (a wide tape holds ~1 M events)
    return Tape(events, source_files=tape.source_files, skipped=tape.skipped,
                duplicates=tape.duplicates, presorted=True, listings=listings)
