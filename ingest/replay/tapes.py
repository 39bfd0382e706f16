"""Recorded Binance trades loaded into one time-ordered, multi-symbol tape.

The replay server (``ingest.replay.server``) plays a :class:`Tape` back over a real
WebSocket, so a tape keeps every event as the *exact Binance event object*
(``data``) and never re-types prices: ``"61837.63000000"`` stays that string, and
what the server sends is byte-for-byte what Binance sent.

Supported inputs (gzip, zip or plain text; the format is detected from content):

* our ws-trade captures ``*-ws-trade_*.jsonl(.gz)`` and raw hftbacktest captures
  (``*.gz``, ``*.dat.gz``): one ``<recv time> <frame>`` per line, the receive time
  in ns (19 digits) or, in the 2023 capture, µs (16 digits). Raw captures also hold
  bookTicker/depth frames and one REST snapshot line; those are skipped and counted.
* our trades CSVs (header ``symbol,trade_id,price,qty,trade_time_ms,...``), spot or
  futures variant (futures has ``order_type``).
* data.binance.vision dumps: ``<SYMBOL>-trades-<date>.csv`` and
  ``<SYMBOL>-aggTrades-<date>.csv``, spot (no header) or USD-M (header optional);
  spot times from 2025 on are µs (16 digits) and are floored to ms.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
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
_SAMPLE_TAPES = (
    "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
    "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
)
TRADE_KINDS = ("trade", "aggTrade")

_DUMP_NAME = re.compile(r"([A-Z0-9]{1,20})-(trades|aggTrades)-")


@dataclass(frozen=True, slots=True)
class TapeEvent:
    """One recorded trade or aggTrade event.

    ``data`` is the Binance event object exactly as recorded (key order kept), e.g.
    {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
     "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}
    ``recv_ns`` is the recorder's receive clock: only its *differences* matter
    (pacing); the 2024 capture host ran ~1.27 s behind Binance.
    """

    recv_ns: int
    symbol: str
    kind: str  # "trade" | "aggTrade"
    time_ms: int  # T
    trade_id: int  # t for trade, a for aggTrade
    data: dict


def _sort_key(ev: TapeEvent) -> tuple[int, int, str, int]:
    return (ev.time_ms, ev.recv_ns, ev.symbol, ev.trade_id)


class Tape:
    """Trade events of one or more symbols, interleaved by trade time ``T``.

    Sorted by ``(time_ms, recv_ns, symbol, trade_id)``: trade time first because it
    is Binance's clock (the receive clock of two capture files need not agree), the
    receive time to keep arrival order within one millisecond.
    """

    def __init__(
        self,
        events: Iterable[TapeEvent],
        *,
        source_files: Iterable[str] = (),
        skipped: Counter[str] | None = None,
        duplicates: int = 0,
    ) -> None:
        self.events: tuple[TapeEvent, ...] = tuple(sorted(events, key=_sort_key))
        self.source_files: tuple[str, ...] = tuple(source_files)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.duplicates = duplicates
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        counts: Counter[str] = Counter()
        kind_of: dict[str, str] = {}
        for ev in self.events:
            known = kind_of.setdefault(ev.symbol, ev.kind)
            if known != ev.kind:
                raise ValueError(
                    f"{ev.symbol}: tape mixes {known} and {ev.kind} events; their ids "
                    "are different sequences, load them as separate tapes"
                )
            counts[ev.symbol] += 1
            tid = ev.trade_id
            if ev.symbol not in first or tid < first[ev.symbol]:
                first[ev.symbol] = tid
            if ev.symbol not in last or tid > last[ev.symbol]:
                last[ev.symbol] = tid
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
            self.first_time_ms = self.events[0].time_ms
            self.last_time_ms = self.events[-1].time_ms
        else:
            self.first_time_ms = self.last_time_ms = 0
        self.duration_ms = self.last_time_ms - self.first_time_ms

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[TapeEvent]:
        return iter(self.events)

    def __getitem__(self, index: int) -> TapeEvent:
        return self.events[index]

    def __repr__(self) -> str:
        per = ", ".join(f"{s} {self.counts[s]}" for s in self.symbols)
        return (
            f"Tape({len(self)} events: {per}; kinds {list(self.kinds)}; "
            f"{self.duration_ms / 1000:.1f} s)"
        )


def default_sample_files() -> list[Path]:
    """The committed spot BTCUSDT + ETHUSDT 2024 tapes (10.8 min, 34,419 trades)."""
    return [SAMPLE_DIR / name for name in _SAMPLE_TAPES]


# ---------------------------------------------------------------------------
# Loading


def load_tape(paths: str | Path | Iterable[str | Path]) -> Tape:
    """Load one or more recordings (formats detected per file) into one Tape.

    Events seen twice (same symbol, kind and id, e.g. a jsonl and its CSV twin)
    are kept once and counted in ``Tape.duplicates``. A file that cannot be read
    raises ValueError naming the file and the line.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("load_tape: no files given")
    events: list[TapeEvent] = []
    seen: set[tuple[str, str, int]] = set()
    skipped: Counter[str] = Counter()
    duplicates = 0
    for path in paths:
        file_events = _load_file(path, skipped)
        for ev in file_events:
            key = (ev.symbol, ev.kind, ev.trade_id)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            events.append(ev)
        log.info("tapes: %s: %d trade events", path.name, len(file_events))
    if not events:
        raise ValueError(f"no trade events found in {[str(p) for p in paths]}")
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


def _load_file(path: Path, skipped: Counter[str]) -> list[TapeEvent]:
    try:
        with _open_binary(path) as fh:
            first = b""
            for first in fh:
                if first.strip():
                    break
        with _open_binary(path) as fh:
            if first[:1].isdigit() and b" " in first and b"{" in first:
                return _load_frames(path, fh, skipped)
            return _load_csv(path, io.TextIOWrapper(fh, encoding="utf-8", newline=""))
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
    path: Path, fh: Iterable[bytes], skipped: Counter[str]
) -> list[TapeEvent]:
    """Lines ``<recv time> <frame>``: our ws-trade jsonl files and raw captures.

    1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade",...}}
    1723161254152322667 {"lastUpdateId":35346513512,"bids":[...],"asks":[...]}
    """
    out: list[TapeEvent] = []
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
            e = data.get("e")
            if e not in TRADE_KINDS:
                skipped[_skip_reason(obj, data)] += 1
                continue
            kind, trade = _event_from_data(data)
        except (ValueError, BadFrame) as exc:  # orjson.JSONDecodeError is a ValueError
            raise ValueError(f"{path}: line {lineno}: {exc}") from exc
        out.append(
            TapeEvent(recv_ns, trade.symbol, kind, trade.time_ms, trade.trade_id, data)
        )
    return out


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


def _load_csv(path: Path, fh: io.TextIOWrapper) -> list[TapeEvent]:
    reader = csv.reader(fh)
    rows = ((n, r) for n, r in enumerate(reader, 1) if r and any(f.strip() for f in r))
    try:
        lineno, first = next(rows)
    except StopIteration:
        return []
    header = [f.strip() for f in first]
    if "trade_id" in header and "symbol" in header:
        return _load_our_csv(path, header, rows)
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
    path: Path, header: list[str], rows: Iterator[tuple[int, list[str]]]
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
        out.append(TapeEvent(recv_ns, sym, "trade", t_ms, tid, data))
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
        out.append(TapeEvent(t_ms * 1_000_000, symbol, kind, t_ms, tid, data))
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
    open_groups: dict[str, _Group] = {}
    next_agg: dict[str, int] = {}

    def close(group: _Group) -> None:
        sym = group.first.symbol
        agg_id = next_agg.setdefault(sym, group.first.trade_id)
        next_agg[sym] = agg_id + 1
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
            group.last.recv_ns, sym, "aggTrade", group.last.time_ms, agg_id, data
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
        group = open_groups.get(ev.symbol)
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
        open_groups[ev.symbol] = _Group(ev, ev, index, price, qty)
    for group in open_groups.values():
        close(group)
    result.sort(key=lambda pair: pair[0])
    return result


def aggregate_trades(events: Iterable[TapeEvent]) -> list[TapeEvent]:
    """Derive Binance-style ``aggTrade`` events from a trade tape.

    Binance merges the fills of one taker order at one price into an aggregate
    trade. Trades carry no taker-order id, so we approximate: consecutive trades of
    one symbol with the same ``T``, same price, same ``m`` and contiguous ids merge.
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
    """The same tape with every ``T`` and ``E`` moved by ``offset_ms`` (ids unchanged).

    Binance's protocol notes allow a replay to shift times uniformly by one offset.
    ``app.py --replay`` uses it to start a recording *now*, so lag, UTC axes and the
    clock that closes bars behave as they do live; the trades and ids are untouched.
    """
    offset_ms = int(offset_ms)
    events = []
    for ev in tape.events:
        data = dict(ev.data)
        data["T"] = data["T"] + offset_ms
        if "E" in data:
            data["E"] = data["E"] + offset_ms
        events.append(
            TapeEvent(ev.recv_ns, ev.symbol, ev.kind, ev.time_ms + offset_ms, ev.trade_id, data)
        )
    return Tape(events, source_files=tape.source_files, skipped=tape.skipped,
                duplicates=tape.duplicates)
