"""Validation of request parameters and page controls, shared by the HTTP API and the
pages: the one module that turns what a user typed into a number (or refuses it).

Every bad value raises :class:`BadParam` naming the parameter, so the API answers
400 with ``{"error": ..., "param": ...}`` and never a 500, and a page names the control.
Numbers are read from ASCII only: ``int()``/``float()`` also read other scripts' digits
(``"١٢"`` -> 12), and what was sent must be what is shown.

* query parameters (API): :func:`integer`, :func:`number`, :func:`window`, :func:`time_ms`;
* required controls (pair page): :func:`whole_number`, :func:`bounded_number`;
* control values that may be JSON numbers (data page): :func:`control_number`.

(Numbers inside browser stores are checked by :func:`dashapp.stores.number`.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import pandas as pd

from analytics.backtest import FILLS
from analytics.instruments import SYMBOL_RE
from analytics.pair import PRICE_MODES, REGRESSIONS, SOURCES
from analytics.timeframes import parse_timeframe

#: An integer as sent in a URL: ASCII digits, an optional sign (``\d`` would take any
#: Unicode digit, and ``int()`` reads them).
INTEGER_RE = re.compile(r"^[+-]?[0-9]+$", re.ASCII)
#: A number in ASCII decimal notation (no "inf", "nan", "1_000" or other scripts' digits).
DECIMAL_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
MAX_WINDOW = 86_400
FORMATS = ("json", "csv")
MAX_TF_MS = 86_400_000
MAX_LIMIT = 1_000_000
# Epoch ms of 1970-01-01 .. 9999-12-31: anything outside is a typo (seconds, ns), not a time.
MAX_EPOCH_MS = 253_402_300_799_999


class BadParam(ValueError):
    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


def _required(args, name: str) -> str:
    value = args.get(name)
    if value is None or str(value).strip() == "":
        raise BadParam(name, "is required")
    return str(value).strip()


def instrument_text(text: str) -> str:
    """What a user typed, in the case names use: ``Perp:btcusdt`` -> ``perp:BTCUSDT``
    (market and venue lower case, the symbol upper case)."""
    *prefix, sym = str(text).strip().split(":")
    return ":".join([p.strip().lower() for p in prefix] + [sym.strip().upper()])


def symbol(args, name: str, known: set[str] | list[str], resolve=None) -> str:
    """``name`` as one of the ``known`` instrument names (``BTCUSDT``, ``perp:BTCUSDT``).

    A bare symbol names the one instrument of that symbol; on two markets it is a 400
    listing the choices. ``resolve`` (the facade's, for live data) maps the instrument
    syntax onto a one-market run's bare names (``spot:BTCUSDT`` -> ``BTCUSDT`` when spot
    is the run's market)."""
    value = _required(args, name)
    text = instrument_text(value)
    if text in known:
        return text
    sym = text.rsplit(":", 1)[-1]
    if not SYMBOL_RE.match(sym) or text.count(":") > 2:
        raise BadParam(
            name, f"{value[:40]!r} is not an instrument (SYMBOL or market:SYMBOL, "
            "such as BTCUSDT or perp:BTCUSDT)")
    if resolve is not None and ":" in text:
        try:
            got = resolve(text)
        except ValueError as exc:  # InstrumentError: unknown, ambiguous (lists the choices)
            raise BadParam(name, str(exc)) from None
        if got in known:
            return got
    elif ":" not in text:
        hits = sorted(k for k in known if k.rsplit(":", 1)[-1] == text)
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise BadParam(
                name, f"{text} is on {len(hits)} markets here: use one of {', '.join(hits)}")
    raise BadParam(name, f"{text} is not ingested; known: {', '.join(sorted(known))}")


def timeframe(args, name: str = "timeframe", default: str = "1s") -> int:
    raw = str(args.get(name) or default).strip()
    try:
        tf = parse_timeframe(raw)
    except ValueError as exc:
        raise BadParam(name, str(exc)) from None
    if tf > MAX_TF_MS:
        raise BadParam(name, "at most 1d")
    return tf


def integer(args, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """``name`` as an int in ``[lo, hi]``; ``default`` when absent or blank."""
    raw = args.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    text = str(raw).strip()
    # int() also reads Arabic-Indic, Devanagari, fullwidth... digits ("١٢" -> 12): a
    # query parameter is ASCII digits only, so what was sent is what is shown.
    if not INTEGER_RE.match(text):
        raise BadParam(name, f"{text[:40]!r} is not an integer (ASCII digits 0-9)")
    value = int(text)
    if not lo <= value <= hi:
        raise BadParam(name, f"must be between {lo} and {hi}, got {value}")
    return value


def number(args: Mapping, name: str, default: float | None, lo: float, hi: float,
           *, lo_open: bool = False) -> float | None:
    """``name`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), or
    ``default`` when absent or blank."""
    raw = args.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        if not str(raw).strip().isascii():  # float() reads "١٢" as 12: refuse
            raise ValueError
        value = float(str(raw).strip())
    except ValueError:
        raise BadParam(name, f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadParam(name, f"must be finite, got {raw!s:.40}")
    if value > hi or value < lo or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        raise BadParam(name, f"must be in {bracket}{lo:g}, {hi:g}], got {value:g}")
    return value


def decimal_text(text: str) -> bool:
    """ASCII decimal notation only (``float()`` also reads other scripts' digits)."""
    return DECIMAL_RE.fullmatch(text) is not None


def required_text(values: Mapping, name: str) -> str:
    raw = values.get(name)
    text = "" if raw is None else str(raw).strip()
    if text == "":
        raise BadParam(name, "is required")
    return text


def whole_number(values: Mapping, name: str, lo: int, hi: int) -> int:
    """A required whole number in ``[lo, hi]`` (``"60"``, ``"60.0"``; not ``"3.5"``)."""
    text = required_text(values, name)
    rule = f"must be a whole number from {lo} to {hi}"
    try:
        v = float(text) if decimal_text(text) else None
    except ValueError:
        v = None
    if v is None or not math.isfinite(v):
        raise BadParam(name, f"{rule}, got {text[:20]!r}")
    if v != int(v):
        raise BadParam(name, f"{rule}, got {text[:20]}")
    if not lo <= v <= hi:
        raise BadParam(name, f"{rule}, got {int(v)}")
    return int(v)


def bounded_number(values: Mapping, name: str, lo: float, hi: float) -> float:
    """A required finite number in ``[lo, hi]``."""
    text = required_text(values, name)
    rule = f"must be a number from {lo:g} to {hi:g}"
    v = float(text) if decimal_text(text) else math.nan
    if not (math.isfinite(v) and lo <= v <= hi):
        raise BadParam(name, f"{rule}, got {text[:20]}")
    return v


def control_number(value, name: str, lo: float, hi: float, *, integer: bool = False):
    """A control's value (a JSON number from a number input, or its text) in
    ``[lo, hi]``; a whole number (``int``) with ``integer``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BadParam(name, f"{str(value)[:40]!r} is not a number") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise BadParam(name, f"must be between {lo:g} and {hi:g}, got {value}")
    if integer:
        if v != int(v):
            raise BadParam(name, f"must be a whole number, got {value}")
        return int(v)
    return v


def choice(args, name: str, options: tuple[str, ...], default: str) -> str:
    value = str(args.get(name) or default).strip().lower()
    if value not in options:
        raise BadParam(name, f"{value[:40]!r} is not one of {', '.join(options)}")
    return value


def window(args, name: str = "window", default: int = 60) -> int:
    return integer(args, name, default, 3, MAX_WINDOW)


def regression(args) -> str:
    return choice(args, "regression", REGRESSIONS, "ols")


def prices(args) -> str:
    return choice(args, "prices", PRICE_MODES, "raw")


def source(args) -> str:
    """``source=trade|mid``: a pair on the bars' last trades (default) or on their mids."""
    return choice(args, "source", SOURCES, "trade")


def fills(args) -> str:
    """``fills=last|quote``: backtest legs fill at the pair's prices (default) or buy at
    the ask and sell at the bid."""
    return choice(args, "fills", FILLS, "last")


def fmt(args) -> str:
    return choice(args, "format", FORMATS, "json")


def time_ms(args, name: str) -> int | None:
    """``name`` as epoch milliseconds: given as epoch ms or ISO-8601 (UTC if no offset);
    None when absent or blank."""
    raw = args.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    if INTEGER_RE.match(text):
        value = int(text) if len(text) <= 16 else MAX_EPOCH_MS + 1
        if not 0 <= value <= MAX_EPOCH_MS:
            raise BadParam(name, f"epoch milliseconds must be between 0 and {MAX_EPOCH_MS}")
        return value
    try:
        ts = pd.Timestamp(text)
        if ts is pd.NaT:
            raise ValueError("not a time")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        value = int(ts.as_unit("ms").asm8.view("i8"))  # floor; any unit, years 1-9999
    except (ValueError, TypeError, OverflowError):
        raise BadParam(name, f"{text[:40]!r} is neither epoch ms nor ISO-8601") from None
    if not 0 <= value <= MAX_EPOCH_MS:
        raise BadParam(name, f"{text[:40]!r} is before 1970 or after 9999")
    return value


def row_range(args) -> tuple[int | None, int | None, int | None]:
    """``start``, ``end`` (inclusive bounds on ``ts``, epoch ms or ISO-8601) and ``limit``
    (at most that many rows, the latest), each None when absent: what a researcher polls
    with (``limit=600`` is the last 600 bars, whatever the day held so far)."""
    start, end = time_ms(args, "start"), time_ms(args, "end")
    if start is not None and end is not None and start > end:
        raise BadParam("end", "must not be before start")
    return start, end, integer(args, "limit", None, 1, MAX_LIMIT)
