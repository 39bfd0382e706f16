"""Versioned market boards, shared by every tab: what one 500 ms markets refresh sends.

The board (:mod:`analytics.board`: one row of cells per instrument) is built at most
once per :data:`BOARD_PERIOD_S` from the market facade, whichever tab asks first;
every build that changes a cell gets the next version, and the last
:data:`KEEP_VERSIONS` boards are kept. A tab sends the version it holds and gets
:func:`BoardCache.message`:

* ``{"v", "full": true, "names", "rows"}``: every row (first load, an unknown or too
  old version, an instrument gone), or
* ``{"v", "from", "set": {field: [i, value, i, value, ...]}, "add": [rows]}``: only the
  cells that changed since ``from``, ``i`` the row's index in ``names`` (instruments
  only join, so an index never moves); the diff of one ``from`` is built once and
  served to every tab holding it.

Sparklines travel apart (:func:`spark_message`): only for the rows the tab says are
visible, only when a bar closed since the one it holds.

Server cost per refresh: a dict lookup when nothing changed, one cached diff otherwise.
The build (per instrument: two bar reads and a few numpy sums, about 30 ms at 300
instruments) runs once per period for all tabs in a background thread, started by the
first refresh that finds the board stale: that refresh is served the previous board
(at most one period plus one build old), so no refresh waits for a build.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass

from analytics.board import (
    SPARK_BARS,
    BoardDiff,
    board_row,
    diff_boards,
    row_cells,
    spark_update,
)

BOARD_PERIOD_S = 0.5
KEEP_VERSIONS = 40
#: 1 s bars a row reads: those after the last closed minute (at most ~2 minutes of
#: them: a minute with a trade becomes a 1 m bar when it closes) and the last minute's
#: (trades/min); rows exist only for seconds with trades, so 180 rows cover >= 180 s
RECENT_1S_BARS = 180
#: whole sparklines per refresh (:func:`spark_message`)
MAX_WHOLE_SPARKS = 6


@dataclass(frozen=True, slots=True)
class Board:
    """One built board: ``rows`` name -> cells, ``names`` in the run's order."""

    version: int
    names: tuple[str, ...]
    rows: dict
    built_at: float
    build_s: float


def instrument_label(market, name: str) -> tuple[str, str]:
    """(label, market) of a row: "BTCUSDT · perp" where the run prefixes the name,
    the bare name otherwise."""
    try:
        inst = market.instrument(name)
    except KeyError:
        return name, ""
    return (inst.label if ":" in name else name), inst.market


def build_rows(market, labels: dict | None = None) -> dict[str, dict]:
    """name -> row cells of every instrument the market facade names (in its order);
    ``labels`` caches :func:`instrument_label` (a name's label never changes)."""
    labels = {} if labels is None else labels
    now = market.exchange_now_ms()
    names = market.names()
    bars_1m = market.bars_of(names, 60_000)  # at most a day: 1,440 rows
    bars_1s = market.recent_bars_of(names, 1_000, RECENT_1S_BARS)
    rows = {}
    for name in names:
        if not len(bars_1m[name]) and len(bars_1s[name]) == RECENT_1S_BARS:
            bars_1s[name] = market.bars(name, 1_000)  # no minute closed yet: all of them
        last = market.last_tick(name)
        quote = market.quote(name)
        if name not in labels:
            labels[name] = instrument_label(market, name)
        label, mkt = labels[name]
        row = board_row(
            name, label, mkt, bars_1m[name], bars_1s[name],
            None if last is None else float(last.price), now,
            None if quote is None else quote.bid, None if quote is None else quote.ask,
        )
        rows[name] = row_cells(row)
    return rows


class BoardCache:
    """The boards of one market facade (module notes). Thread-safe: Dash serves
    callbacks from several threads; one builds, the others serve the last board."""

    def __init__(self, market, *, period_s: float = BOARD_PERIOD_S,
                 keep: int = KEEP_VERSIONS, clock=time.monotonic,
                 first_version: int | None = None) -> None:
        self._market = market
        # versions start at a random number: a tab still holding a version of an
        # earlier server process (a restart) must not find it here (it gets a full board)
        self._first_version = (random.getrandbits(40) if first_version is None
                               else first_version)
        self._period = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._history: OrderedDict[int, Board] = OrderedDict()
        self._keep = keep
        self._diffs: dict[tuple[int, int], dict] = {}
        self._current: Board | None = None
        self._labels: dict = {}
        #: seconds of the last builds (the benchmark reads them)
        self.build_seconds: deque = deque(maxlen=256)

    def current(self) -> Board:
        """The latest board. When it is older than the period a rebuild starts in the
        background (one at a time) and this board is served meanwhile, so no refresh
        waits for a build; only the very first board is built in the caller."""
        board = self._current
        if board is None:
            with self._lock:
                if self._current is None:
                    self._build()
            return self._current
        if self._clock() - board.built_at >= self._period and self._lock.acquire(
                blocking=False):
            threading.Thread(target=self._build_and_release, name="board-build",
                             daemon=True).start()
        return board

    def _build_and_release(self) -> None:
        try:
            self._build()
        finally:
            self._lock.release()

    def _build(self) -> None:
        """Build a board (caller holds the lock); a new version only when a cell
        changed."""
        board = self._current
        now = self._clock()
        t0 = time.perf_counter()
        rows = build_rows(self._market, self._labels)
        build_s = time.perf_counter() - t0
        self.build_seconds.append(build_s)
        if board is not None and rows == board.rows:
            self._current = Board(board.version, board.names, board.rows, now, build_s)
            return
        version = self._first_version if board is None else board.version + 1
        board = Board(version, tuple(rows), rows, now, build_s)
        self._history[version] = board
        while len(self._history) > self._keep:
            self._history.popitem(last=False)
        self._diffs = {k: v for k, v in self._diffs.items() if k[0] in self._history}
        self._current = board

    def build_now(self) -> Board:
        """Build a board in the caller (tests, benchmarks), waiting for one running."""
        with self._lock:
            self._build()
        return self._current

    def message(self, since) -> dict:
        """What a tab holding version ``since`` (None: nothing) needs (module notes)."""
        board = self.current()
        since = since if type(since) is int else None
        if since == board.version:
            return {"v": board.version, "from": since, "set": {}, "add": []}
        old = self._history.get(since) if since is not None else None
        if old is None:
            return full_message(board)
        key = (since, board.version)
        msg = self._diffs.get(key)
        if msg is None:
            diff = diff_boards(old.rows, board.rows)
            same_order = board.names[:len(old.names)] == old.names
            msg = full_message(board) if diff.removed or not same_order else diff_message(
                since, board.version, board.names, diff)
            self._diffs[key] = msg
        return msg


def full_message(board: Board) -> dict:
    return {"v": board.version, "full": True, "names": list(board.names),
            "rows": [board.rows[n] for n in board.names]}


def diff_message(since: int, version: int, names, diff: BoardDiff) -> dict:
    index = {n: i for i, n in enumerate(names)}
    flat = {}
    for field, cells in diff.changed.items():
        out = []
        for name, value in cells:
            out.extend((index[name], value))
        flat[field] = out
    return {"v": version, "from": since, "set": flat, "add": diff.added}


def spark_message(market, visible, tf_ms: int, n: int = SPARK_BARS,
                  max_full: int = MAX_WHOLE_SPARKS) -> dict:
    """Sparkline updates for the visible rows: ``{name: [ts, full 0|1, close...]}``
    (``visible`` = {name: last bar ts held or None}, in display order); names not
    ingested are ignored. At most ``max_full`` whole lines per refresh (a whole line is
    ~500 bytes: 25 at once would pass the 10 KB goal), so a page load or a scroll fills
    its sparklines over a few refreshes, top rows first."""
    if not isinstance(visible, dict):
        return {}
    known = set(market.names())
    names = [n for n in list(visible)[:200] if isinstance(n, str) and n in known]
    if not names:
        return {}
    bars = market.recent_bars_of(names, tf_ms, 2 * n)
    out = {}
    whole = 0
    for name in names:
        have = visible.get(name)
        b = bars[name]
        up = spark_update(b.ts, b.close, have if type(have) is int else None, n)
        if up is None or (up.full and whole >= max_full):
            continue  # a whole line beyond the cap: the next refresh sends it
        whole += up.full
        out[name] = [up.ts, 1 if up.full else 0, *up.closes]
    return out


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def board_cache(market) -> BoardCache:
    """The one :class:`BoardCache` of a market facade (made on first use)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(market)
        if cache is None:
            cache = _CACHES[market] = BoardCache(market)
        return cache
