"""Validation of request parameters, shared by the HTTP API and the pages.

Every bad value raises :class:`BadParam` naming the parameter, so the API answers
400 with ``{"error": ..., "param": ...}`` and never a 500.
"""

from __future__ import annotations

import re

import pandas as pd

from analytics.pair import PRICE_MODES, REGRESSIONS
from analytics.timeframes import parse_timeframe

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
#: An integer as sent in a URL: ASCII digits, an optional sign (``\d`` would take any
#: Unicode digit, and ``int()`` reads them).
INTEGER_RE = re.compile(r"^[+-]?[0-9]+$", re.ASCII)
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


def symbol(args, name: str, known: set[str] | list[str]) -> str:
    value = _required(args, name).upper()
    if not SYMBOL_RE.match(value):
        raise BadParam(name, f"{value[:40]!r} is not a symbol (2-20 letters/digits)")
    if value not in known:
        raise BadParam(name, f"{value} is not ingested; known: {', '.join(sorted(known))}")
    return value


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
