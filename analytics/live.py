"""Incremental pair statistics for the live engine: one aligned bar at a time, O(1).

:class:`IncrementalPair` is the bar-by-bar twin of :func:`analytics.pair.pair_series`
(same definitions, see :mod:`analytics.pair`): feeding bars ``0 .. t`` yields the row
``t`` of ``pair_series`` on those bars, to floating-point noise (tested at every bar for
every regression). State is bounded: ring buffers of ``w`` bars and a few floats.

* OLS: :class:`analytics.rolling.RollingOLS` (running centred sums, exact recompute
  every ``w`` bars).
* Huber / Theil-Sen: the last ``w`` model prices in deques; the same
  :func:`analytics.hedge.robust_window_fit` as the batch, on bar close only, on the
  bar-time schedule of :func:`analytics.robust.refit_due` (bucket ``ts // tf_ms``
  reaching a new multiple of ``refit_step``), the same as
  :func:`analytics.hedge.rolling_robust`: a live pair and a batch build agree at every
  bar whenever the pair was opened.
* Kalman: :class:`analytics.kalman.KalmanHedge` (the batch uses the same step).
* Every column then comes from its incremental twin declared in
  :mod:`analytics.registry` (z-score: :class:`analytics.rolling.RollingMoments` over
  the spreads; correlation: :class:`analytics.rolling.RollingCorr` over raw log
  returns; ...), in declared order, so a declared column is live with no edit here.

Tick-level z (:meth:`IncrementalPair.live_zscore`)::

    z_now = ((A_now - alpha_t - beta_t * B_now) - mean_t) / std_t

with ``alpha_t, beta_t`` the hedge of the **last closed bar** ``t`` and
``mean_t, std_t`` the mean and sample std of ``spread_{t-w+1..t}``: nothing is refitted
per tick (robust fits only on bar close), so it costs a few float operations. It is a
*preview*: when the bar closes, ``z_{t+1}`` also moves the window and the fit.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np

from analytics.hedge import RobustParams, robust_window_fit
from analytics.kalman import KalmanHedge, KalmanParams
from analytics.pair import check_options, requirements
from analytics.registry import PAIR_FIGURES, STATISTICS, BarInputs, ZScoreTwin, pair_record
from analytics.robust import refit_due
from analytics.robust import refit_step as schedule_step
from analytics.rolling import BetaAlpha, MeanStd, RollingOLS

log = logging.getLogger(__name__)

__all__ = ["IncrementalPair", "PairPoint"]


#: Pair statistics of one closed bar, one field per declared column (NaN where
#: undefined), then ``n`` = bars seen.
PairPoint = pair_record(
    "PairPoint", __name__,
    "Pair statistics of one closed bar (NaN where undefined); n = bars seen.",
    float, extra=(("n", int),),
)


class _RobustRolling:
    """Trailing robust refits on bar close at scheduled buckets, last fit held."""

    __slots__ = ("_w", "_method", "_params", "_step", "_a", "_b", "_prev", "_value")

    def __init__(
        self, window: int, method: str, params: RobustParams, step: int
    ) -> None:
        self._w, self._method, self._params, self._step = window, method, params, step
        self._a: deque[float] = deque(maxlen=window)
        self._b: deque[float] = deque(maxlen=window)
        self._prev: int | None = None  # bucket // step of the previous bar
        self._value: BetaAlpha | None = None

    def update(self, a: float, b: float, bucket: int) -> BetaAlpha | None:
        self._a.append(a)
        self._b.append(b)
        slot = bucket // self._step
        due = slot != self._prev
        self._prev = slot
        w = self._w
        if due and len(self._a) == w:
            beta, alpha, _, _ = robust_window_fit(
                np.fromiter(self._a, dtype=np.float64, count=w),
                np.fromiter(self._b, dtype=np.float64, count=w),
                self._method,
                self._params,
            )
            self._value = BetaAlpha(beta, alpha)
        return self._value


class IncrementalPair:
    """Live pair statistics, updated once per closed aligned bar.

    Parameters
    ----------
    window : int
        ``w >= 3`` bars (hedge window, z-score window, correlation returns).
    regression : {"ols", "huber", "theilsen", "kalman"}
    prices : {"raw", "log"}
        Model price scale; the correlation always uses raw log returns.
    kalman : KalmanParams
    robust : RobustParams
    refit_step : int, optional
        Robust regressions refit every ``refit_step`` buckets (default
        :func:`analytics.robust.refit_step` of the window and method).
    tf_ms : int, optional
        Bar length on the ``ts`` scale: the refit schedule uses bucket ``ts // tf_ms``
        (bar time). Without it, the bar's position since the first update.

    ``update(ts, a, b)`` takes the closed bar's raw prices and returns a
    :class:`PairPoint` once the hedge is defined (None during the first ``w - 1`` bars,
    1 for Kalman). ``live_zscore(a_now, b_now)`` is the O(1) tick-level preview.
    """

    def __init__(
        self,
        window: int,
        regression: str = "ols",
        prices: str = "raw",
        kalman: KalmanParams = KalmanParams(),
        robust: RobustParams = RobustParams(),
        refit_step: int | None = None,
        tf_ms: int | None = None,
    ) -> None:
        w = check_options(window, regression, prices, kalman, robust, refit_step)
        self.window, self.regression, self.prices = w, regression, prices
        if refit_step is None:
            refit_step = schedule_step(w, regression)
        self._refit_step = refit_step
        self._tf_ms = None if tf_ms is None else int(tf_ms)
        self._req = requirements(w, regression)
        self._log = prices == "log"
        if regression == "ols":
            self._hedge: RollingOLS | KalmanHedge | _RobustRolling = RollingOLS(w)
        elif regression == "kalman":
            self._hedge = KalmanHedge(kalman, prices=prices)
        else:
            self._hedge = _RobustRolling(w, regression, robust, refit_step)
        self._twins = [(f.name, f.twin(w)) for f in PAIR_FIGURES]
        self._z: ZScoreTwin = dict(self._twins)["zscore"]
        self._n = 0
        self._last_ts: object = None
        self._prev_la = self._prev_lb = math.nan  # log raw prices of the previous bar
        self._alpha = self._beta = math.nan
        self._last: PairPoint | None = None

    @property
    def count(self) -> int:
        """Bars seen."""
        return self._n

    @property
    def last(self) -> PairPoint | None:
        """The last :class:`PairPoint` returned (None while warming up)."""
        return self._last

    def spread_stats(self) -> MeanStd:
        """Mean and sample std of the spreads of the last ``w`` closed bars.

        The window statistics :meth:`live_zscore` uses; NaN while not yet defined.
        """
        st = self._z.stats
        return MeanStd(math.nan, math.nan) if st is None else st

    def needs(self) -> dict[str, int]:
        """Bars each statistic of the registry still needs (0 = defined)."""
        return {f.name: max(self._req[f.name] - self._n, 0) for f in STATISTICS}

    def update(self, ts: object, a: float, b: float) -> PairPoint | None:
        """Consume one closed aligned bar (raw prices): O(1), robust: one refit."""
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b) and a > 0.0 and b > 0.0):
            raise ValueError(
                f"a and b must be finite positive prices, got a={a!r}, b={b!r}"
            )
        last_ts = self._last_ts
        if last_ts is not None and not ts > last_ts:  # type: ignore[operator]
            raise ValueError(f"ts must increase: {ts!r} after {last_ts!r}")
        self._last_ts = ts
        la, lb = math.log(a), math.log(b)
        pa, pb = (la, lb) if self._log else (a, b)
        ret_a, ret_b = la - self._prev_la, lb - self._prev_lb  # NaN on the first bar
        self._prev_la, self._prev_lb = la, lb
        self._n += 1

        if isinstance(self._hedge, _RobustRolling):
            bucket = self._n - 1 if self._tf_ms is None else int(ts) // self._tf_ms
            fit = self._hedge.update(pa, pb, bucket)
        else:
            fit = self._hedge.update(pa, pb)
        alpha = beta = math.nan
        if fit is not None:
            beta, alpha = fit
            self._alpha, self._beta = alpha, beta
        bar = BarInputs(ts, a, b, pa, pb, ret_a, ret_b, alpha, beta, fit is not None, self._n)
        row: dict[str, float] = {}
        for name, twin in self._twins:  # declared order: each reads the ones before
            row[name] = twin.update(bar, row)
        if fit is None and self._n < self.window:
            return None
        # (a full window whose first scheduled robust refit is still to come has no
        # hedge yet, but the correlation is defined, as in the batch series)
        self._last = PairPoint(**row, n=self._n)
        return self._last

    @property
    def refit_step(self) -> int:
        """Buckets between robust refits (1 for OLS and Kalman)."""
        return self._refit_step

    def warm(self, ts: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """Consume a history of closed aligned bars (raw prices), oldest first.

        Leaves the estimator in the state that :meth:`update` on every bar would, but
        only the bars that determine that state go through :meth:`update`: the last
        ``2w + 1`` (the hedge window of the first z-window bar, its spreads, and one
        return more), reaching back for robust regressions to the window of the
        scheduled refit in force at the first z-window bar (the schedule is a function
        of bar time, so the replay refits on the same bars as a batch build). The
        Kalman filter depends on its whole history: its earlier bars are stepped by
        :meth:`KalmanHedge.absorb` (same arithmetic, no per-bar objects). Requires a
        fresh estimator.
        """
        if self._n:
            raise ValueError("warm() needs a fresh IncrementalPair")
        n = len(ts)
        w = self.window
        start = 0
        if n > 2 * w + 1:
            start = n - 2 * w - 1
            if isinstance(self._hedge, _RobustRolling):
                step = self._refit_step
                if self._tf_ms is None:
                    k = np.arange(n, dtype=np.int64)
                else:
                    k = np.asarray(ts, dtype=np.int64) // self._tf_ms
                due = np.flatnonzero(refit_due(k[: n - w + 1], w, step))
                if len(due):
                    start = min(start, int(due[-1]) - w + 1)
                if self._tf_ms is None:  # positions restart at 0 in the replay
                    start = start // step * step
        if start and self.regression == "kalman":
            pa = np.log(a[:start]) if self._log else np.asarray(a[:start], dtype=float)
            pb = np.log(b[:start]) if self._log else np.asarray(b[:start], dtype=float)
            self._hedge.absorb(pa, pb)
            self._n = start
            self._prev_la, self._prev_lb = math.log(a[start - 1]), math.log(b[start - 1])
            self._last_ts = int(ts[start - 1])
            # the rolling windows (spread moments, returns) only hold the last w values,
            # all inside the tail replayed below
        for i in range(start, n):
            self.update(int(ts[i]), float(a[i]), float(b[i]))

    def live_zscore(self, a_now: float, b_now: float) -> float | None:
        """Tick-level z from the last closed bar's hedge and spread-window stats.

        ``((A_now - alpha_t - beta_t * B_now) - mean_t) / std_t`` (module docstring);
        None while the bar z-score is undefined (warm-up, NaN hedge or zero std).
        """
        st = self._z.stats
        if st is None or not st.std > 0.0 or self._beta != self._beta:
            return None
        if self._log:
            a_now, b_now = math.log(a_now), math.log(b_now)
        return (a_now - self._alpha - self._beta * b_now - st.mean) / st.std
