"""Bar timeframes: parse, validate and format bucket lengths.

A timeframe is a bucket length in milliseconds that is a positive whole number of
seconds. Buckets are aligned to the UTC epoch (``start = floor(T / tf) * tf``), so
every timeframe that divides a day (1 s, 5 s, 1 m, 5 m, 15 m, 1 h, ...) starts a
bucket at 00:00:00 UTC. Timeframes that do not divide a day (e.g. ``"7s"``) are
valid but their buckets drift relative to midnight; they are still epoch-aligned
and therefore deterministic.

Text form, Binance style: ``<n><unit>`` with unit ``s`` (second), ``m`` (minute),
``h`` (hour), ``d`` (day), ``w`` (week), or ``ms`` when the value is a whole
number of seconds (``"1000ms"`` is ``"1s"``). Units are case-sensitive: ``"1M"`` is
Binance's *month*, which has no fixed length and is rejected, and pandas' old
``"1H"``/``"1T"`` aliases are rejected rather than guessed.
"""

from __future__ import annotations

import re

__all__ = [
    "DAY_MS",
    "LIVE_TIMEFRAMES",
    "SECOND_MS",
    "SUPPORTED_UI",
    "bars_per_day",
    "format_timeframe",
    "pandas_freq",
    "parse_timeframe",
    "validate_tf_ms",
]

SECOND_MS = 1_000
DAY_MS = 86_400_000

#: Timeframes offered in the UI. 1 s bars are built live; 1 m and 5 m are
#: resampled from stored 1 s bars (see :func:`analytics.bars.resample_bars`).
SUPPORTED_UI: tuple[str, ...] = ("1s", "1m", "5m")

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_UNIT_MS["w"] = 7 * DAY_MS
_TEXT = re.compile(r"(\d+)(ms|s|m|h|d|w)")
# Largest unit first, so format_timeframe picks the shortest exact spelling.
_FORMAT_UNITS = (("w", 7 * DAY_MS), ("d", DAY_MS), ("h", 3_600_000), ("m", 60_000))
_PANDAS_UNITS = (("D", DAY_MS), ("h", 3_600_000), ("min", 60_000))


def validate_tf_ms(tf_ms: object) -> int:
    """Return ``tf_ms`` as ``int`` if it is a positive multiple of one second.

    Raises
    ------
    ValueError
        If ``tf_ms`` is not an integer (``bool`` is refused), not positive, or not
        a multiple of 1000 ms.
    """
    if isinstance(tf_ms, bool) or not hasattr(tf_ms, "__index__"):
        raise ValueError(f"timeframe must be an integer number of ms, got {tf_ms!r}")
    value = int(tf_ms)  # numpy integers too
    if value <= 0 or value % SECOND_MS:
        raise ValueError(
            f"timeframe {value!r} ms is not a positive multiple of one second (1000 ms)"
        )
    return value


def parse_timeframe(tf: str | int) -> int:
    """Parse a timeframe such as ``"1s"``, ``"5m"`` or ``"1h"`` into milliseconds.

    Parameters
    ----------
    tf : str or int
        ``<n><unit>`` with unit in ``ms, s, m, h, d, w`` (case-sensitive, no spaces),
        or an integer number of milliseconds.

    Returns
    -------
    int
        Bucket length in ms, a positive multiple of 1000.

    Raises
    ------
    ValueError
        Naming the offending value, if it is malformed, zero, or not a whole number
        of seconds (``"500ms"``).

    Examples
    --------
    >>> parse_timeframe("1m"), parse_timeframe("15m"), parse_timeframe("1h")
    (60000, 900000, 3600000)
    """
    if isinstance(tf, str):
        match = _TEXT.fullmatch(tf)
        if match is None:
            raise ValueError(
                f"invalid timeframe {tf!r}: expected <n><unit> with unit one of "
                "ms, s, m, h, d, w (e.g. '1s', '5m', '1h')"
            )
        value = int(match.group(1)) * _UNIT_MS[match.group(2)]
        try:
            return validate_tf_ms(value)
        except ValueError:
            raise ValueError(
                f"invalid timeframe {tf!r}: must be a positive whole number of seconds"
            ) from None
    return validate_tf_ms(tf)


def format_timeframe(tf_ms: int) -> str:
    """Shortest text form of ``tf_ms``; the inverse of :func:`parse_timeframe`.

    ``format_timeframe(parse_timeframe(s))`` is canonical (``"60s"`` -> ``"1m"``,
    ``"90s"`` stays ``"90s"``) and ``parse_timeframe(format_timeframe(ms)) == ms``.
    """
    tf_ms = validate_tf_ms(tf_ms)
    for unit, size in _FORMAT_UNITS:
        if tf_ms % size == 0:
            return f"{tf_ms // size}{unit}"
    return f"{tf_ms // SECOND_MS}s"


def pandas_freq(tf_ms: int) -> str:
    """pandas 3 frequency for ``tf_ms``: ``"1s"``, ``"1min"``, ``"1h"``, ``"1D"``."""
    tf_ms = validate_tf_ms(tf_ms)
    for unit, size in _PANDAS_UNITS:
        if tf_ms % size == 0:
            return f"{tf_ms // size}{unit}"
    return f"{tf_ms // SECOND_MS}s"


def bars_per_day(tf_ms: int) -> int:
    """Number of whole buckets in one UTC day: ``max(1, 86_400_000 // tf_ms)``.

    This is the ``max_bars`` the app passes to keep one day of history; a
    timeframe longer than a day still keeps one bar.
    """
    return max(1, DAY_MS // validate_tf_ms(tf_ms))


#: The live timeframes by their text, ``{"1s": 1000, "1m": 60000, "5m": 300000}``: what
#: the pages offer, what alert rules and the API accept for live data (derived from
#: :data:`SUPPORTED_UI`, the one list).
LIVE_TIMEFRAMES: dict[str, int] = {tf: parse_timeframe(tf) for tf in SUPPORTED_UI}
