"""The market board: one row of numbers per instrument, and what changed between two
boards (the markets page sends only that every 500 ms).

Pure functions over closed bars and the latest quote (no Dash, no sockets). Per
instrument, with ``bars_1m`` the closed 1 m bars held (at most a day), ``bars_1s`` the
closed 1 s bars and ``now`` the exchange clock:

* ``last``: the last trade price.
* ``change_pct = 100 * (last / open_0 - 1)`` with ``open_0`` the open of the FIRST bar
  held (1 m, else 1 s): the change over the window the board holds (at most a day, less
  after a start), never a look-ahead.
* ``volume``: quote volume (USDT) over the same window: the closed 1 m bars plus the
  closed 1 s bars after the last closed minute (each trade counted once).
* ``trades_per_min`` / ``volume_per_min``: trades and quote volume of the closed 1 s
  bars with ``ts >= now - 60 s``.
* ``spread_bps = 1e4 * (ask - bid) / mid`` of the latest quote (blank without one).

Cells carry the precision the page shows (:func:`row_cells`): a price as it came, a
change to 0.01 %, volumes to 3 significant digits, a spread to 0.01 bps. So a refresh
sends a cell only when what the user sees would change.

Sparklines: :func:`spark_update` says what a client holding a sparkline up to bar
``have_ts`` lacks (the whole tail, or the closes after ``have_ts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analytics.book import quote_spread_bps

#: trades/min and volume/min look this far back (closed 1 s bars)
TRADE_WINDOW_MS = 60_000
#: closes a sparkline holds
SPARK_BARS = 60
#: the fields of a row that change (the name, label and market never do)
CELL_FIELDS = ("last", "change_pct", "volume", "trades_per_min", "volume_per_min",
               "spread_bps")


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One instrument on the board (module notes for each number)."""

    name: str
    label: str
    market: str
    last: float | None
    change_pct: float | None
    volume: float
    trades_per_min: int
    volume_per_min: float
    spread_bps: float | None


def board_row(name: str, label: str, market: str, bars_1m, bars_1s, last: float | None,
              now_ms: int | None, bid: float | None = None,
              ask: float | None = None) -> BoardRow:
    """The row of one instrument from its closed bars, last price and latest quote."""
    cut = int(bars_1m.ts[-1]) + 60_000 if len(bars_1m) else None
    i_recent = 0 if cut is None else int(np.searchsorted(bars_1s.ts, cut, side="left"))
    volume = float(np.sum(bars_1m.quote_volume)) + float(np.sum(bars_1s.quote_volume[i_recent:]))
    first = (float(bars_1m.open[0]) if len(bars_1m)
             else float(bars_1s.open[0]) if len(bars_1s) else None)
    change = None if not first or last is None else (last / first - 1.0) * 100.0
    tpm, vpm = 0, 0.0
    if len(bars_1s) and now_ms is not None:
        i = int(np.searchsorted(bars_1s.ts, now_ms - TRADE_WINDOW_MS, side="left"))
        tpm = int(np.sum(bars_1s.trades[i:]))
        vpm = float(np.sum(bars_1s.quote_volume[i:]))
    spread = None
    if bid is not None and ask is not None and bid > 0 and ask > 0:
        spread = float(quote_spread_bps(bid, ask))
    return BoardRow(name, label, market, last, change, volume, tpm, vpm, spread)


def sig(x: float | None, digits: int = 3) -> float | None:
    """``x`` to ``digits`` significant digits (None and non-finite -> None)."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _round(x: float | None, nd: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def row_cells(row: BoardRow) -> dict:
    """The row as the grid holds it (JSON-ready, at the precision shown)."""
    return {
        "name": row.name,
        "label": row.label,
        "market": row.market,
        "last": row.last,
        "change_pct": _round(row.change_pct, 2),
        "volume": sig(row.volume),
        "trades_per_min": row.trades_per_min,
        "volume_per_min": sig(row.volume_per_min),
        "spread_bps": _round(row.spread_bps, 2),
    }


@dataclass(frozen=True, slots=True)
class BoardDiff:
    """What turns board ``old`` into board ``new``: ``changed[field]`` = [(name, value)]
    of every cell that differs, ``added`` = whole rows of new names (in board order),
    ``removed`` = names gone."""

    changed: dict[str, list[tuple[str, object]]]
    added: list[dict]
    removed: list[str]

    @property
    def cells(self) -> int:
        return sum(len(v) for v in self.changed.values())


def diff_boards(old: Mapping[str, Mapping], new: Mapping[str, Mapping]) -> BoardDiff:
    """Cell-level difference of two boards (name -> row cells)."""
    changed: dict[str, list[tuple[str, object]]] = {}
    added = []
    for name, row in new.items():
        before = old.get(name)
        if before is None:
            added.append(dict(row))
            continue
        if before == row:
            continue
        for f in CELL_FIELDS:
            if before.get(f) != row.get(f):
                changed.setdefault(f, []).append((name, row.get(f)))
    removed = [n for n in old if n not in new]
    return BoardDiff(changed, added, removed)


def apply_diff(board: Mapping[str, Mapping], diff: BoardDiff) -> dict[str, dict]:
    """``board`` with ``diff`` applied (what a client does; the tests' reference)."""
    out = {n: dict(r) for n, r in board.items() if n not in set(diff.removed)}
    for f, cells in diff.changed.items():
        for name, value in cells:
            out[name][f] = value
    for row in diff.added:
        out[row["name"]] = dict(row)
    return out


@dataclass(frozen=True, slots=True)
class SparkUpdate:
    """For one sparkline: ``full`` (replace with ``closes``) or append ``closes``;
    ``ts`` = the last bar's time, what the client then holds."""

    ts: int
    full: bool
    closes: list[float]


def spark_update(ts: np.ndarray, close: np.ndarray, have_ts: int | None,
                 n: int = SPARK_BARS) -> SparkUpdate | None:
    """What a client holding a sparkline up to bar ``have_ts`` (None: nothing) lacks of
    the last ``n`` closes; None when it is current (or there are no bars)."""
    if not len(ts):
        return None
    last = int(ts[-1])
    if have_ts == last:
        return None
    if have_ts is not None:
        i = int(np.searchsorted(ts, have_ts, side="right"))
        if 0 < i <= len(ts) and int(ts[i - 1]) == have_ts and len(ts) - i < n:
            return SparkUpdate(last, False, [sig(float(c), 6) for c in close[i:]])
    return SparkUpdate(last, True, [sig(float(c), 6) for c in close[-n:]])


def top_by_volume(rows: Mapping[str, Mapping], n: int) -> list[str]:
    """The ``n`` names with the largest window volume (ties by name)."""
    ranked = sorted(rows.values(), key=lambda r: (-(r.get("volume") or 0.0), r["name"]))
    return [r["name"] for r in ranked[:n]]
