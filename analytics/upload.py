"""Parse and validate an uploaded OHLC CSV into bars, or refuse it with every problem found.

Accepted formats
----------------
* **Binance klines** (data.binance.vision and the REST ``/klines`` dump): the 12 columns
  ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore``, with or without a header row.
  Times in milliseconds (13 digits) or microseconds (16 digits, spot files since 2025),
  detected by digit count. The per-row interval is ``close_time - open_time + 1`` (in the
  file's unit), so a file that mixes intervals is caught exactly.
* **Generic**: a header row naming ``timestamp`` (or ``ts``, ``time``, ``open_time``,
  ``date``, ``datetime``), ``open, high, low, close, volume``; optional ``symbol``,
  ``quote_volume``, ``trades`` (or ``count``), ``buy_volume`` (or ``taker_buy_volume``);
  other columns (``vwap``...) are ignored. Without a header, exactly those six columns
  in that order. The timestamp is the bar **start**, as epoch seconds (10 digits),
  milliseconds (13), microseconds (16), or ISO-8601 (``2024-08-08T23:54:15.000Z``;
  without an offset it is read as UTC). This is the format ``GET /api/bars?format=csv``
  writes, so the app's own exports upload again unchanged.

One symbol per file (from the ``symbol`` argument, else a Binance-style file name
``BTCUSDT-1m-2024-01-01.csv``) or several in a ``symbol`` column.

Validation (every problem is collected, each naming the first offending lines)
------------------------------------------------------------------------------
size cap; not empty; UTF-8 text; required columns; numbers where numbers belong (finite);
``high >= max(open, close)``, ``low <= min(open, close)``, ``high >= low``; prices > 0;
``volume >= 0``; times strictly increasing per symbol (unsorted and duplicate times are
reported separately); whole seconds, on the UTC-epoch grid of the timeframe; **one
timeframe per file**:

* the timeframe of a symbol's rows is the smallest spacing between consecutive bars;
  larger spacings must be whole multiples of it (missing bars, e.g. an exchange
  maintenance hour, are allowed: a pair carries the last close forward);
* for Binance files every row's own interval (from ``close_time``) must be the same;
* for generic files, a run of at least :data:`MIXED_RUN` consecutive bars at one spacing
  next to a run of as many at a wider spacing is a second timeframe (a file of 1 m bars
  followed by 5 m bars), whereas isolated wider spacings are gaps;
* all symbols of a file share the timeframe, and a Binance-style file name's interval
  must agree with the rows.

Line numbers in messages are 1-based lines of the file (the header is line 1 when there
is one). Nothing here touches storage: :func:`parse_ohlc_csv` either returns a complete
:class:`OhlcUpload` or raises :class:`UploadError`, so a refused file changes nothing.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from analytics.bars import Bars
from analytics.instruments import SYMBOL_RE
from analytics.timeframes import format_timeframe, parse_timeframe

__all__ = [
    "BINANCE_COLUMNS",
    "MAX_UPLOAD_BYTES",
    "MIXED_RUN",
    "OhlcUpload",
    "UploadError",
    "parse_ohlc_csv",
]

log = logging.getLogger(__name__)

#: Largest file accepted: 32 MiB holds ~300k kline rows (a day of 1 s bars is ~9 MB).
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: Consecutive bars at one spacing that make a timeframe (see module docstring).
MIXED_RUN = 20
#: Offending lines named per problem.
SHOW_LINES = 5
BINANCE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
GENERIC_POSITIONAL = ("timestamp", "open", "high", "low", "close", "volume")
_TIME_ALIASES = ("timestamp", "ts", "time", "open_time", "date", "datetime")
_OPTIONAL_ALIASES = {
    "quote_volume": ("quote_volume", "quote_asset_volume"),
    "trades": ("trades", "count", "number_of_trades"),
    "buy_volume": ("buy_volume", "taker_buy_volume", "taker_buy_base_asset_volume"),
}
_PRICE_COLS = ("open", "high", "low", "close")
# Binance-style name: SYMBOL-INTERVAL-... e.g. BTCUSDT-1m-2024-01-01.csv, ETHUSDT-1h-2021-01.csv
_NAME_RE = re.compile(r"^([A-Za-z0-9]{2,20})-(\d+[smhdw])(?:-|\.|$)")
_UNIT_MS = {"s": 1_000.0, "ms": 1.0, "us": 0.001}
_DIGITS_UNIT = {10: "s", 13: "ms", 16: "us"}


class UploadError(ValueError):
    """A refused file; :attr:`problems` lists every problem found, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("file refused: " + "; ".join(self.problems))


@dataclass(frozen=True)
class OhlcUpload:
    """A validated upload: bars per symbol, all at one timeframe.

    Attributes
    ----------
    bars : Mapping[str, Bars]
        Per symbol (read-only mapping of read-only columns). ``quote_volume`` and
        ``buy_volume`` are NaN and ``trades`` 0 when the file does not carry them;
        ``first_id``/``last_id`` are 0 (klines carry no trade ids).
    symbols : tuple of str
        Symbols in file order.
    tf_ms : int
        Bar timeframe.
    start_ms, end_ms : int
        First and last bar start over all symbols (epoch ms, UTC).
    rows : int
        Bars in the file.
    kind : {"binance", "generic"}
    time_unit : {"ms", "us", "s", "iso"}
    filename : str or None
    """

    bars: Mapping[str, Bars]
    symbols: tuple[str, ...]
    tf_ms: int
    start_ms: int
    end_ms: int
    rows: int
    kind: str
    time_unit: str
    filename: str | None = None
    notes: tuple[str, ...] = field(default=())
    #: Per symbol, the 1-based file line of each bar (messages about a stored dataset
    #: name the line, e.g. an appended row that conflicts with a stored bar).
    lines: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bars", MappingProxyType(dict(self.bars)))
        object.__setattr__(self, "lines", MappingProxyType(dict(self.lines)))

    @property
    def timeframe(self) -> str:
        return format_timeframe(self.tf_ms)


# -- small helpers ------------------------------------------------------------------------
def _lines(lines: np.ndarray | list[int], values: list | None = None) -> str:
    """``"lines 5, 9 ("abc") and 3 more"``: the first offending lines of a problem."""
    lines = [int(x) for x in lines]
    shown = []
    for i, ln in enumerate(lines[:SHOW_LINES]):
        if values is not None:
            v = str(values[i])
            v = v if len(v) <= 24 else v[:21] + "..."
            shown.append(f"{ln} ({v!r})")
        else:
            shown.append(str(ln))
    word = "line" if len(lines) == 1 else "lines"
    more = f" and {len(lines) - SHOW_LINES} more" if len(lines) > SHOW_LINES else ""
    return f"{word} {', '.join(shown)}{more}"


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(
            [f"not UTF-8 text (invalid byte at offset {exc.start}): upload a CSV file"]
        ) from None


def _read_cells(text: str) -> pd.DataFrame:
    """All cells as stripped strings; index = 0-based file line; blank lines dropped."""
    try:
        cells = pd.read_csv(
            io.StringIO(text),
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise UploadError(["the file is empty (no rows)"]) from None
    except pd.errors.ParserError as exc:
        # pandas says e.g. "Expected 12 fields in line 5, saw 13"
        msg = str(exc).strip().splitlines()[-1]
        raise UploadError(
            [f"malformed CSV: {msg}; every row needs the same columns"]
        ) from None
    cells = cells.apply(lambda s: s.str.strip())
    blank = (cells == "").all(axis=1)
    return cells[~blank]


@dataclass
class _Table:
    cells: pd.DataFrame  # columns renamed to canonical names
    kind: str
    line_offset: int  # file line = index + 1


def _identify(cells: pd.DataFrame, problems: list[str]) -> _Table | None:
    first = [str(v) for v in cells.iloc[0].tolist()]
    has_header = not _is_number(first[0]) and pd.isna(
        pd.to_datetime(first[0], errors="coerce", utc=True, format="ISO8601")
    )
    if has_header:
        names = [re.sub(r"\s+", "_", c.strip().lower()) for c in first]
        body = cells.iloc[1:]
        if not len(body):
            problems.append("the file is empty: a header row but no data rows")
            return None
        body = body.set_axis(names, axis=1)
        if "open_time" in names and "close_time" in names and len(names) == 12:
            return _Table(body.set_axis(list(BINANCE_COLUMNS), axis=1), "binance", 1)
        time_col = next((c for c in _TIME_ALIASES if c in names), None)
        missing = [
            c for c in ("open", "high", "low", "close", "volume") if c not in names
        ]
        if time_col is None:
            missing.insert(0, "timestamp")
        if missing:
            problems.append(
                f"wrong columns: missing {', '.join(missing)} (found: "
                f"{', '.join(names)[:200]}); expected the 12 Binance kline columns or a "
                "header with timestamp, open, high, low, close, volume"
            )
            return None
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            problems.append(f"wrong columns: duplicate column names {', '.join(dup)}")
            return None
        keep = {time_col: "timestamp"}
        for c in ("open", "high", "low", "close", "volume", "symbol"):
            if c in names:
                keep[c] = c
        for canon, aliases in _OPTIONAL_ALIASES.items():
            found = next((a for a in aliases if a in names), None)
            if found is not None and found not in keep:
                keep[found] = canon
        return _Table(body[list(keep)].rename(columns=keep), "generic", 1)
    n = cells.shape[1]
    if n == 12:
        return _Table(cells.set_axis(list(BINANCE_COLUMNS), axis=1), "binance", 0)
    if n == 6:
        return _Table(cells.set_axis(list(GENERIC_POSITIONAL), axis=1), "generic", 0)
    problems.append(
        f"wrong columns: {n} columns and no header row; expected the 12 Binance kline "
        "columns, or 6 columns timestamp, open, high, low, close, volume, or a header row "
        "naming them"
    )
    return None


def _numbers(
    t: _Table, col: str, problems: list[str], *, required: bool = True
) -> np.ndarray:
    raw = t.cells[col]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num)
    if required and bad.any():
        idx = np.flatnonzero(bad)
        values = raw.iloc[idx[:SHOW_LINES]].tolist()
        empty = all(v == "" for v in values)
        what = "empty cell" if empty else "not a number"
        problems.append(
            f"column {col!r}: {what} in {_lines(t.cells.index[idx] + 1, values)}"
        )
    return num


def _epoch_ms(
    t: _Table, col: str, problems: list[str]
) -> tuple[np.ndarray | None, str]:
    """Integer epoch s/ms/us by digit count, else ISO-8601 (generic files only)."""
    raw = t.cells[col]
    lines = t.cells.index.to_numpy() + 1
    digits = raw.str.fullmatch(r"\d+")
    if digits.all():
        lengths = raw.str.len().to_numpy()
        units = {_DIGITS_UNIT.get(int(n)) for n in np.unique(lengths)}
        allowed = {"ms", "us"} if t.kind == "binance" else {"s", "ms", "us"}
        if None in units or not units <= allowed:
            bad = np.flatnonzero(
                ~np.isin(lengths, [k for k, u in _DIGITS_UNIT.items() if u in allowed])
            )
            problems.append(
                f"column {col!r}: times must be epoch "
                + (
                    "milliseconds (13 digits) or microseconds (16 digits)"
                    if t.kind == "binance"
                    else "seconds (10 digits), milliseconds (13) or microseconds (16), or ISO-8601"
                )
                + f"; see {_lines(lines[bad], raw.iloc[bad[:SHOW_LINES]].tolist())}"
            )
            return None, "?"
        if len(units) > 1:
            unit0 = _DIGITS_UNIT[int(lengths[0])]
            bad = np.flatnonzero(lengths != lengths[0])
            problems.append(
                f"column {col!r}: mixed time units (line {lines[0]} is {unit0}, "
                f"{_lines(lines[bad], raw.iloc[bad[:SHOW_LINES]].tolist())} differ)"
            )
            return None, "?"
        unit = units.pop()
        ints = raw.astype("int64").to_numpy()
        if unit == "us":
            sub = np.flatnonzero(ints % 1000)
            if len(sub):
                problems.append(
                    f"column {col!r}: times must be whole milliseconds; see "
                    f"{_lines(lines[sub])}"
                )
                return None, unit
            return ints // 1000, unit
        return (ints * 1000 if unit == "s" else ints), unit
    if t.kind == "binance":
        bad = np.flatnonzero(~digits.to_numpy())
        problems.append(
            f"column {col!r}: not an integer epoch time in "
            f"{_lines(lines[bad], raw.iloc[bad[:SHOW_LINES]].tolist())}"
        )
        return None, "?"
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        problems.append(
            f"column {col!r}: not a time (epoch s/ms/us or ISO-8601) in "
            f"{_lines(lines[bad], raw.iloc[bad[:SHOW_LINES]].tolist())}"
        )
        return None, "iso"
    ns = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype("int64")
    sub = np.flatnonzero(ns % 1_000_000)
    if len(sub):
        problems.append(
            f"column {col!r}: times must be whole milliseconds; see {_lines(lines[sub])}"
        )
        return None, "iso"
    return ns // 1_000_000, "iso"


def _runs(d: np.ndarray) -> list[tuple[int, int, int]]:
    """(start index, length, value) of runs of equal consecutive values."""
    if not len(d):
        return []
    edges = np.flatnonzero(np.diff(d)) + 1
    starts = np.r_[0, edges]
    lengths = np.diff(np.r_[starts, len(d)])
    return [(int(s), int(n), int(d[s])) for s, n in zip(starts, lengths, strict=True)]


def _timeframe(
    ts: np.ndarray,
    lines: np.ndarray,
    sym: str,
    kind: str,
    row_tf: np.ndarray | None,
    problems: list[str],
) -> int | None:
    """Timeframe of one symbol's sorted unique bar starts (see module docstring)."""
    label = f"{sym}: " if sym else ""
    if row_tf is not None:
        # Binance truncates a bar cut short by maintenance (close_time earlier than the
        # interval's end, then no bars until trading resumes): such a bar is fine. Any
        # other row whose interval differs from the file's is a second timeframe.
        vals, counts = np.unique(row_tf, return_counts=True)
        tf = int(vals[np.argmax(counts)])
        nxt = np.r_[ts[1:], np.iinfo(np.int64).max] - ts
        odd = (row_tf != tf) & ~((row_tf < tf) & (nxt >= tf))
        if odd.any():
            k = np.flatnonzero(odd)
            problems.append(
                f"{label}mixed timeframes (close_time - open_time + 1): {_fmt_span(tf)} "
                f"bars, but {_lines(lines[k])} are {_fmt_span(int(row_tf[k[0]]))} bars; "
                "upload one timeframe per file"
            )
            return None
        if tf <= 0 or tf % 1000:
            problems.append(
                f"{label}bar interval {tf} ms (close_time - open_time + 1) is not a whole "
                f"number of seconds; see line {lines[0]}"
            )
            return None
    else:
        if len(ts) < 2:
            problems.append(
                f"{label}only one bar: at least 2 are needed to tell the timeframe"
            )
            return None
        tf = int(np.min(np.diff(ts)))
    d = np.diff(ts)
    if len(d):
        off = np.flatnonzero(d % tf)
        small = np.flatnonzero(d < tf)
        if len(small):
            problems.append(
                f"{label}bars overlap: {_lines(lines[small + 1])} start less than one "
                f"{_fmt_span(tf)} bar after the previous bar"
            )
            return None
        if len(off):
            problems.append(
                f"{label}mixed timeframes: smallest spacing is {_fmt_span(tf)} but "
                f"{_lines(lines[off + 1])} {'is' if len(off) == 1 else 'are'} {_fmt_span(int(d[off[0]]))} after the "
                "previous bar (not a whole number of bars)"
            )
            return None
        if row_tf is None:
            runs = [r for r in _runs(d) if r[1] >= MIXED_RUN]
            wide = [r for r in runs if r[2] > tf]
            if wide and any(r[2] == tf for r in runs):
                s, n, v = wide[0]
                problems.append(
                    f"{label}mixed timeframes: {_fmt_span(tf)} bars, and lines "
                    f"{lines[s + 1]}-{lines[s + n]} are {_fmt_span(v)} bars; upload one "
                    "timeframe per file"
                )
                return None
    if tf % 1000:
        problems.append(f"{label}spacing {tf} ms is not a whole number of seconds")
        return None
    off_grid = np.flatnonzero(ts % tf)
    if len(off_grid):
        problems.append(
            f"{label}bar starts must lie on the UTC-epoch grid of {_fmt_span(tf)} "
            f"(e.g. {_fmt_span(tf)} bars start at multiples of {_fmt_span(tf)} since "
            f"1970-01-01 00:00 UTC); see {_lines(lines[off_grid])}"
        )
        return None
    return tf


def _fmt_span(ms: int) -> str:
    ms = int(ms)
    if ms > 0 and ms % 1000 == 0:
        return format_timeframe(ms)
    return f"{ms} ms"


def _symbol_from_name(filename: str | None) -> tuple[str | None, int | None]:
    if not filename:
        return None, None
    base = re.split(r"[\\/]", filename)[-1]
    m = _NAME_RE.match(base)
    if m is None:
        return None, None
    try:
        tf = parse_timeframe(m.group(2))
    except ValueError:
        tf = None
    return m.group(1).upper(), tf


def _unzip(
    content: bytes, filename: str | None, max_bytes: int
) -> tuple[bytes, str | None]:
    """The one CSV member of a zip (data.binance.vision ships klines zipped)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:  # e.g. a cut file
        raise UploadError([f"not a readable zip file ({exc})"]) from None
    if len(members) != 1:
        raise UploadError(
            [
                f"a zip upload must hold exactly one CSV file, this one holds {len(members)}"
            ]
        )
    member = members[0]
    # The uncompressed size is checked before inflating (a small zip can inflate to GBs).
    if member.file_size > max_bytes:
        raise UploadError(
            [
                f"file too large: {member.filename} inflates to {member.file_size:,} bytes, "
                f"over the cap of {max_bytes:,} bytes"
            ]
        )
    # Inflating reads the member's bytes for the first time: a damaged stream, a CRC
    # mismatch, a cut file, encryption or an unknown method all surface here.
    try:
        with zf.open(member) as fh:
            data = fh.read(max_bytes + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise UploadError(
            [f"not a readable zip file: {member.filename[:80]} is damaged ({exc})"]
        ) from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted / unsupported method
        raise UploadError([f"cannot read the zip file's {member.filename[:80]}: {exc}"]) from None
    if len(data) > max_bytes:
        raise UploadError([f"file too large: over the cap of {max_bytes:,} bytes"])
    return data, member.filename


# -- the parser -----------------------------------------------------------------------------
def parse_ohlc_csv(
    content: bytes,
    *,
    filename: str | None = None,
    symbol: str | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> OhlcUpload:
    """Parse and validate an OHLC CSV (Binance klines or generic) into bars per symbol.

    Parameters
    ----------
    content : bytes
        The file as uploaded.
    filename : str, optional
        Used for the symbol (``BTCUSDT-1m-2024-01-01.csv``) and checked against the
        rows' timeframe.
    symbol : str, optional
        The symbol of a one-symbol file (overrides the file name; must agree with a
        ``symbol`` column if the file has one).
    max_bytes : int
        Size cap; larger files are refused before parsing.

    Returns
    -------
    OhlcUpload

    Raises
    ------
    UploadError
        With every problem found (see the module docstring for the rules); each
        message names the first offending lines.
    """
    if not isinstance(content, bytes | bytearray | memoryview):
        raise UploadError([f"content must be bytes, got {type(content).__name__}"])
    content = bytes(content)
    if len(content) > max_bytes:
        raise UploadError(
            [
                f"file too large: {len(content):,} bytes, over the cap of {max_bytes:,} bytes"
            ]
        )
    if content[:4] == b"PK\x03\x04":
        content, filename = _unzip(content, filename, max_bytes)
    if not content.strip():
        raise UploadError(["the file is empty (no rows)"])
    if b"\x00" in content:
        raise UploadError(["not a text CSV file (it contains NUL bytes)"])
    problems: list[str] = []
    form_symbol = None
    if symbol is not None and str(symbol).strip():
        form_symbol = str(symbol).strip().upper()
        if not SYMBOL_RE.match(form_symbol):
            raise UploadError(
                [f"symbol {str(symbol)[:40]!r} is not a symbol (2-20 letters/digits)"]
            )
    cells = _read_cells(_decode(content))
    if not len(cells):
        raise UploadError(["the file is empty (no rows)"])
    table = _identify(cells, problems)
    if table is None:
        raise UploadError(problems)
    t = table
    lines = t.cells.index.to_numpy() + 1

    # numbers
    cols = {c: _numbers(t, c, problems) for c in (*_PRICE_COLS, "volume")}
    extra: dict[str, np.ndarray] = {}
    if t.kind == "binance":
        extra["quote_volume"] = _numbers(t, "quote_volume", problems)
        extra["trades"] = _numbers(t, "count", problems)
        extra["buy_volume"] = _numbers(t, "taker_buy_volume", problems)
    else:
        for c in ("quote_volume", "trades", "buy_volume"):
            if c in t.cells.columns:
                # optional columns: an empty cell means "not known" (NaN), text is an error
                raw = t.cells[c]
                num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
                bad = np.flatnonzero(np.isnan(num) & (raw != "").to_numpy())
                if len(bad):
                    problems.append(
                        f"column {c!r}: not a number in "
                        f"{_lines(lines[bad], raw.iloc[bad[:SHOW_LINES]].tolist())}"
                    )
                extra[c] = num
    ts, unit = _epoch_ms(
        t, "open_time" if t.kind == "binance" else "timestamp", problems
    )
    row_tf = None
    if t.kind == "binance" and ts is not None:
        raw_close = t.cells["close_time"]
        bad = np.flatnonzero(~raw_close.str.fullmatch(r"\d+").to_numpy())
        if len(bad):
            problems.append(
                f"column 'close_time': not an integer epoch time in "
                f"{_lines(lines[bad], raw_close.iloc[bad[:SHOW_LINES]].tolist())}"
            )
        else:
            # close_time is the bar's last unit: open_time + interval - 1 (ms or us).
            raw_open = t.cells["open_time"].astype("int64").to_numpy()
            span = raw_close.astype("int64").to_numpy() - raw_open + 1
            row_tf = span if unit == "ms" else span // 1000

    # bar consistency
    o, h, lo, c, v = (cols[k] for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
        checks = (
            (finite & (h < lo), "high < low"),
            (finite & (h < np.maximum(o, c)), "high below max(open, close)"),
            (finite & (lo > np.minimum(o, c)), "low above min(open, close)"),
            (finite & ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)), "price <= 0"),
            (np.isfinite(v) & (v < 0), "negative volume"),
        )
    for mask, what in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            problems.append(f"{what} in {_lines(lines[bad])}")
    for k in ("buy_volume", "quote_volume", "trades"):
        if k in extra:
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(extra[k] < 0)
            if len(bad):
                problems.append(f"negative {k} in {_lines(lines[bad])}")

    # symbols
    name_symbol, name_tf = _symbol_from_name(filename)
    if "symbol" in t.cells.columns:
        sym_col = t.cells["symbol"].str.upper().to_numpy()
        bad = np.flatnonzero([not SYMBOL_RE.match(s) for s in sym_col])
        if len(bad):
            problems.append(
                f"column 'symbol': not a symbol (2-20 letters/digits) in "
                f"{_lines(lines[bad], list(sym_col[bad[:SHOW_LINES]]))}"
            )
        if form_symbol is not None:
            other = np.flatnonzero(sym_col != form_symbol)
            if len(other):
                problems.append(
                    f"the symbol field says {form_symbol} but the symbol column differs in "
                    f"{_lines(lines[other], list(sym_col[other[:SHOW_LINES]]))}"
                )
    else:
        sym = form_symbol or name_symbol
        if sym is None:
            problems.append(
                "no symbol: give the symbol field, a 'symbol' column, or a Binance-style "
                "file name such as BTCUSDT-1m-2024-01-01.csv"
            )
            sym = ""
        sym_col = np.full(len(t.cells), sym, dtype=object)
    if ts is None or problems:
        raise UploadError(problems)

    # per symbol: order, duplicates, timeframe
    symbols = list(dict.fromkeys(sym_col.tolist()))
    tfs: dict[str, int] = {}
    order_by_sym: dict[str, np.ndarray] = {}
    for sym in symbols:
        idx = np.flatnonzero(sym_col == sym)
        label = f"{sym}: " if len(symbols) > 1 else ""
        ts_s, ln_s = ts[idx], lines[idx]
        d = np.diff(ts_s)
        back = np.flatnonzero(d < 0)
        dup = np.flatnonzero(d == 0)
        if len(back):
            i = back[0]
            problems.append(
                f"{label}times not sorted ascending: line {ln_s[i + 1]} "
                f"({_iso(ts_s[i + 1])}) comes after line {ln_s[i]} ({_iso(ts_s[i])}); "
                f"out of order at {_lines(ln_s[back + 1])}"
            )
        if len(dup):
            i = dup[0]
            problems.append(
                f"{label}duplicate times: {_lines(ln_s[dup + 1])} repeat(s) the time of the "
                f"line before (first: lines {ln_s[i]} and {ln_s[i + 1]} at {_iso(ts_s[i])})"
            )
        if len(back) or len(dup):
            continue
        tf = _timeframe(
            ts_s,
            ln_s,
            label.rstrip(": "),
            t.kind,
            None if row_tf is None else row_tf[idx],
            problems,
        )
        if tf is not None:
            tfs[sym] = tf
            order_by_sym[sym] = idx
    if problems:
        raise UploadError(problems)
    if len(set(tfs.values())) > 1:
        desc = ", ".join(f"{s} {_fmt_span(tf)}" for s, tf in tfs.items())
        raise UploadError(
            [f"mixed timeframes across symbols ({desc}): one timeframe per file"]
        )
    tf = next(iter(tfs.values()))
    if name_tf is not None and name_symbol is not None and name_tf != tf:
        raise UploadError(
            [
                f"the file name says {_fmt_span(name_tf)} bars but the rows are "
                f"{_fmt_span(tf)} bars"
            ]
        )
    bars: dict[str, Bars] = {}
    for sym, idx in order_by_sym.items():
        n = len(idx)
        nan = np.full(n, np.nan)
        trades = extra.get("trades")
        trades = (
            np.zeros(n, np.int64)
            if trades is None
            else np.nan_to_num(trades[idx]).astype(np.int64)
        )
        bars[sym] = Bars(
            ts=ts[idx],
            open=o[idx],
            high=h[idx],
            low=lo[idx],
            close=c[idx],
            volume=v[idx],
            quote_volume=extra["quote_volume"][idx] if "quote_volume" in extra else nan,
            trades=trades,
            buy_volume=extra["buy_volume"][idx] if "buy_volume" in extra else nan,
            first_id=np.zeros(n, np.int64),
            last_id=np.zeros(n, np.int64),
            tf_ms=tf,
        )
    return OhlcUpload(
        bars=bars,
        symbols=tuple(symbols),
        tf_ms=tf,
        start_ms=int(min(b.ts[0] for b in bars.values())),
        end_ms=int(max(b.ts[-1] for b in bars.values())),
        rows=int(sum(len(b) for b in bars.values())),
        kind=t.kind,
        time_unit=unit,
        filename=filename,
        lines={sym: lines[idx] for sym, idx in order_by_sym.items()},
    )
