"""Put two symbols' bars on one time grid, in batch and incrementally.

The alignment rule
------------------
Bars exist only for buckets with trades, so two symbols rarely have bars at the
same buckets. A pair is aligned on the **union** of both legs' bucket starts,
beginning at the **later of the two first bars**. At each grid point a leg's
value is the close of its bar at that bucket if it has one, else the close of
its most recent earlier bar (carried forward: no trade means the last traded
price still stands). Nothing is filled before a leg's first bar, which is why the
grid starts at the later first bar. Buckets where neither leg traded are not on
the grid (they would only repeat the previous point). ``a_has_bar``/``b_has_bar``
say which values are real bars and which are carried forward. ``max_bars`` keeps
the last N grid points *after* alignment, so the first kept point still carries
the right value from before the window.

In pandas terms (the test oracle): outer-join the two close series on ``ts``,
sort, forward-fill, drop rows before both legs' first bar.

Incremental twin
----------------
:class:`PairAligner` receives each leg's closed bars (in time order, as
:class:`analytics.bars.BarBuilder` emits them) and emits a point for bucket
``ts`` as soon as it is **final**: for *each* leg, either

* the leg has a bar at ``ts`` or later (bars arrive in order, so it will never
  send another bar at or before ``ts``), or
* the clock has passed the leg's close deadline: ``now >= ts + tf + delay``
  (its :class:`~analytics.bars.BarBuilder` with the same ``close_delay_ms`` has
  closed that bucket, and treats any later tick for it as late).

A final point can never be changed by a later bar, so the sequence of emitted
points equals :func:`align_pair` over the same bars, exactly, at every moment (a
prefix of it). This relies on the caller feeding each builder's bars for a clock
tick *before* calling :meth:`PairAligner.on_clock` with that time.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from analytics.bars import Bar, Bars
from analytics.timeframes import validate_tf_ms

__all__ = ["AlignedPair", "AlignedPoint", "PairAligner", "align_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class AlignedPair:
    """Two legs' closes on one grid (see the module docstring for the rule).

    Attributes
    ----------
    ts : ndarray of int64
        Bucket starts (ms, UTC), strictly increasing.
    a, b : ndarray of float64
        Close of leg a / b at or carried forward to each ``ts``.
    a_has_bar, b_has_bar : ndarray of bool
        True where the leg has a real bar at ``ts``, False where carried forward.
    tf_ms : int
        The bars' timeframe.
    """

    ts: np.ndarray
    a: np.ndarray
    b: np.ndarray
    a_has_bar: np.ndarray
    b_has_bar: np.ndarray
    tf_ms: int

    def __post_init__(self) -> None:
        dtypes = {"ts": np.int64, "a": np.float64, "b": np.float64,
                  "a_has_bar": np.bool_, "b_has_bar": np.bool_}
        n = len(self.ts)
        for name, dtype in dtypes.items():
            arr = np.asarray(getattr(self, name), dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(
                    f"AlignedPair.{name} has shape {arr.shape}, expected ({n},)"
                )
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def tail(self, n: int) -> AlignedPair:
        """The last ``n`` points."""
        if n < 0:
            raise ValueError(f"tail(n) needs n >= 0, got {n}")
        sl = slice(max(len(self) - n, 0), None)
        return AlignedPair(self.ts[sl], self.a[sl], self.b[sl], self.a_has_bar[sl],
                           self.b_has_bar[sl], self.tf_ms)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``a, b, a_has_bar, b_has_bar``, UTC DatetimeIndex named ``ts``."""
        index = pd.DatetimeIndex(
            pd.to_datetime(self.ts, unit="ms", utc=True), name="ts"
        )
        return pd.DataFrame(
            {
                "a": np.array(self.a),
                "b": np.array(self.b),
                "a_has_bar": np.array(self.a_has_bar),
                "b_has_bar": np.array(self.b_has_bar),
            },
            index=index,
        )


def _empty(tf_ms: int) -> AlignedPair:
    e = np.empty(0)
    no = e.astype(bool)
    return AlignedPair(np.empty(0, np.int64), e, e, no, no, tf_ms)


def _carry(
    ts: np.ndarray, close: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Close of the last bar at or before each grid point, and whether it is *at* it."""
    idx = np.searchsorted(ts, grid, side="right") - 1  # >= 0: grid starts at a bar
    return close[idx], ts[idx] == grid


def align_pair(
    bars_a: Bars, bars_b: Bars, *, max_bars: int | None = None
) -> AlignedPair:
    """Align two legs' closes on the union grid of their bucket starts.

    Parameters
    ----------
    bars_a, bars_b : Bars
        The two legs, same timeframe.
    max_bars : int, optional
        Keep only the last ``max_bars`` grid points (the app passes one day,
        :func:`analytics.timeframes.bars_per_day`). Applied after alignment.

    Returns
    -------
    AlignedPair
        Empty if either leg has no bars.

    Notes
    -----
    With :math:`G = \\{ts \\in T_a \\cup T_b : ts \\ge \\max(\\min T_a, \\min T_b)\\}`,
    for :math:`g \\in G`: :math:`a_g = close^a_{j(g)}` where
    :math:`j(g) = \\max\\{j : ts^a_j \\le g\\}` (likewise for b), and
    ``a_has_bar`` is :math:`ts^a_{j(g)} = g`. See the module docstring.

    Raises
    ------
    ValueError
        If the timeframes differ or ``max_bars`` is negative.
    """
    if bars_a.tf_ms != bars_b.tf_ms:
        raise ValueError(f"align_pair: tf_ms differ ({bars_a.tf_ms} vs {bars_b.tf_ms})")
    if max_bars is not None and max_bars < 0:
        raise ValueError(f"align_pair: max_bars must be >= 0, got {max_bars}")
    tf = bars_a.tf_ms
    if not len(bars_a) or not len(bars_b):
        return _empty(tf)
    start = max(bars_a.ts[0], bars_b.ts[0])
    ta = bars_a.ts[np.searchsorted(bars_a.ts, start):]
    tb = bars_b.ts[np.searchsorted(bars_b.ts, start):]
    # Union of two sorted unique arrays: a stable sort of the concatenation is a
    # merge of two runs (timsort), then drop the duplicates.
    grid = np.sort(np.concatenate((ta, tb)), kind="stable")
    grid = grid[np.r_[True, grid[1:] != grid[:-1]]]
    if max_bars is not None:
        grid = grid[len(grid) - min(max_bars, len(grid)):]
    a, a_has = _carry(bars_a.ts, bars_a.close, grid)
    b, b_has = _carry(bars_b.ts, bars_b.close, grid)
    return AlignedPair(grid, a, b, a_has, b_has, tf)


class AlignedPoint(NamedTuple):
    """One aligned grid point, as emitted by :class:`PairAligner`."""

    ts: int
    a: float
    b: float


_LEGS = {"a": 0, "b": 1}


class PairAligner:
    """Incremental :func:`align_pair`: emits each grid point once it is final.

    Parameters
    ----------
    tf_ms : int
        Timeframe of both legs' bars.
    close_delay_ms : int, default 0
        The legs' :class:`~analytics.bars.BarBuilder` ``close_delay_ms``: after
        ``on_clock(now)``, a bucket ``ts`` with ``now >= ts + tf_ms + delay`` is
        final for a leg that sent no bar for it.

    Notes
    -----
    Emission rule (see the module docstring): a bucket is emitted when, for each
    leg, that leg has sent a bar at or after it, or the clock has passed its
    deadline. Points come out in ``ts`` order and, concatenated, equal
    :func:`align_pair` on the bars received so far, up to the last emitted point.

    Each leg's bars must arrive in strictly increasing ``ts`` (``ValueError``
    otherwise). A bar for a bucket that was already emitted (possible only if
    :meth:`on_clock` ran ahead of the builders) cannot change the past: it is
    counted in :attr:`late_bars` and only its close is carried forward.

    State is the buckets not yet final plus two carried closes: bounded by the
    buckets within ``tf + delay`` of the clock as long as :meth:`on_clock` is
    called regularly (without a clock, a silent leg holds the other leg's
    buckets until it trades again).
    """

    __slots__ = ("tf_ms", "close_delay_ms", "late_bars", "_last", "_clock", "_pending",
                 "_order", "_carry", "_done")

    def __init__(self, tf_ms: int, *, close_delay_ms: int = 0) -> None:
        self.tf_ms = validate_tf_ms(tf_ms)
        if isinstance(close_delay_ms, bool) or int(close_delay_ms) != close_delay_ms:
            raise ValueError(
                f"close_delay_ms must be an integer, got {close_delay_ms!r}"
            )
        if close_delay_ms < 0:
            raise ValueError(f"close_delay_ms must be >= 0, got {close_delay_ms}")
        self.close_delay_ms = int(close_delay_ms)
        #: Bars that arrived for an already emitted bucket (see class notes).
        self.late_bars = 0
        self._last: list[int | None] = [None, None]  # last bar ts per leg
        self._clock: int | None = None  # latest on_clock time
        self._pending: dict[int, list[float | None]] = {}  # ts -> [close a, close b]
        self._order: list[int] = []  # pending ts, sorted
        self._carry: list[float | None] = [None, None]  # closes as of _done
        self._done: int | None = None  # last bucket resolved (emitted or dropped)

    @property
    def pending(self) -> int:
        """Buckets received but not yet final."""
        return len(self._order)

    def on_bar(self, leg: str, bar: Bar) -> list[AlignedPoint]:
        """Add a closed bar of leg ``"a"`` or ``"b"``; return the points now final."""
        i = _LEGS.get(leg)
        if i is None:
            raise ValueError(f"leg must be 'a' or 'b', got {leg!r}")
        ts = bar.ts
        if ts % self.tf_ms:
            raise ValueError(f"bar ts {ts} is not a multiple of tf_ms={self.tf_ms}")
        last = self._last[i]
        if last is not None and ts <= last:
            raise ValueError(
                f"leg {leg}: bars must arrive in increasing ts, got {ts} after {last}"
            )
        self._last[i] = ts
        if self._done is not None and ts <= self._done:
            self.late_bars += 1
            log.warning(
                "leg %s: bar %s arrived after its bucket was emitted (clock ahead of "
                "the bar builders?); carried forward only",
                leg,
                ts,
            )
            self._carry[i] = bar.close
        else:
            slot = self._pending.get(ts)
            if slot is None:
                slot = self._pending[ts] = [None, None]
                bisect.insort(self._order, ts)
            slot[i] = bar.close
        return self._drain()

    def on_clock(self, now_ms: int) -> list[AlignedPoint]:
        """Advance the clock (after the legs' builders); return the points now final."""
        if self._clock is None or now_ms > self._clock:
            self._clock = now_ms
        return self._drain()

    def _drain(self) -> list[AlignedPoint]:
        out: list[AlignedPoint] = []
        order, carry = self._order, self._carry
        while order and self._final_for_both(order[0]):
            ts = order.pop(0)
            ca, cb = self._pending.pop(ts)
            if ca is not None:
                carry[0] = ca
            if cb is not None:
                carry[1] = cb
            self._done = ts
            if carry[0] is not None and carry[1] is not None:
                out.append(AlignedPoint(ts, carry[0], carry[1]))
        return out

    def _final_for_both(self, ts: int) -> bool:
        # (a final) and (b final), where a leg is final at ts if it sent a bar at or
        # after ts or the shared clock passed ts + tf + delay; the clock term is
        # common to both legs, hence "clock or (both legs past ts)".
        clock = self._clock
        if clock is not None and clock >= ts + self.tf_ms + self.close_delay_ms:
            return True
        la, lb = self._last
        return la is not None and la >= ts and lb is not None and lb >= ts
