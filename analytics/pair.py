"""Pair statistics over a whole aligned series (batch, vectorised).

Definitions
-----------
Window ``w``, bar ``t``; ``P^A, P^B`` are raw prices, and the model prices ``A, B`` are
``P`` for ``prices="raw"`` or ``ln P`` for ``prices="log"``.

* ``beta_t, alpha_t``: hedge of **A regressed on B** (``A = alpha + beta * B + e``),
  trailing only:

  - ``"ols"``: OLS over bars ``t-w+1 .. t`` (:func:`analytics.hedge.rolling_ols`);
  - ``"huber"`` / ``"theilsen"``: the exact estimator (:mod:`analytics.robust`) on the
    same window, refitted on the bar-time schedule of
    :func:`analytics.robust.refit_due` (every ``refit_step(w, method)`` buckets of
    ``ts // tf_ms``) and held in between (:func:`analytics.hedge.rolling_robust`);
  - ``"kalman"``: the filtered state at ``t`` (:mod:`analytics.kalman`), from bar 2.

* ``spread_t = A_t - alpha_t - beta_t * B_t`` (each bar with its own fit: no
  look-ahead).
* ``z_t = (spread_t - mean(spread_{t-w+1..t})) / std(spread_{t-w+1..t}, ddof=1)``; needs
  ``2w - 1`` bars (``w + 1`` for Kalman).
* ``corr_t``: Pearson correlation of the log returns of the **raw** prices over returns
  ``t-w+1 .. t`` (``w + 1`` prices), whatever ``prices`` says.

The columns are declared once, in :mod:`analytics.registry` (``PAIR_FIGURES``: each
figure's batch function, incremental twin, warm-up and display); :func:`pair_series`
computes the hedge of the chosen regression and then runs every figure's batch in
order.

Arrays are NaN before each quantity is defined (and where it is undefined, e.g. a window
in which B never moved). :func:`requirements` says how many bars each needs;
:class:`analytics.live.IncrementalPair` reproduces :func:`pair_series` bar by bar.

:func:`adf_summary` tests the *static* OLS residual over the bars given (Engle-Granger
framing): ADF on that residual, the proper ``coint`` test and the residual's half-life.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.errors import InsufficientData
from analytics.hedge import (
    HedgeFit,
    RobustParams,
    ols_hedge,
    rolling_ols,
    rolling_robust,
)
from analytics.kalman import KALMAN_MIN_BARS, KalmanParams, kalman_hedge
from analytics.registry import PAIR_FIGURES, STATISTICS, PairInputs, pair_record, pair_table
from analytics.rolling import as_float_array, check_window, log_prices
from analytics.sessions import segment_starts
from analytics.stationarity import (
    ADF_MIN_OBS,
    HALF_LIFE_MIN_OBS,
    AdfResult,
    CointResult,
    HalfLife,
    adf_test,
    coint_test,
    half_life,
)

log = logging.getLogger(__name__)

REGRESSIONS = ("ols", "huber", "theilsen", "kalman")
PRICE_MODES = ("raw", "log")
#: Which price of each bar a pair is computed on: the last trade (the bar's close) or
#: the mid of the best bid and ask as of the end of the bar's bucket (issue #17).
SOURCES = ("trade", "mid")

__all__ = [
    "PRICE_MODES",
    "REGRESSIONS",
    "SOURCES",
    "PairSeries",
    "PairStationarity",
    "adf_summary",
    "check_options",
    "model_prices",
    "pair_series",
    "requirements",
    "static_fit",
]


def check_options(
    window: object,
    regression: object,
    prices: object,
    kalman: object = KalmanParams(),
    robust: object = RobustParams(),
    refit_step: object = None,
) -> int:
    """Validate the pair options (ValueError naming the parameter); return ``w``."""
    w = check_window(window)
    if regression not in REGRESSIONS:
        raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")
    if prices not in PRICE_MODES:
        raise ValueError(f"prices must be one of {PRICE_MODES}, got {prices!r}")
    if not isinstance(kalman, KalmanParams):
        raise ValueError(f"kalman must be KalmanParams, got {type(kalman).__name__}")
    if not isinstance(robust, RobustParams):
        raise ValueError(f"robust must be RobustParams, got {type(robust).__name__}")
    if refit_step is not None:
        check_window(refit_step, minimum=1, name="refit_step")
    return w


def requirements(window: int, regression: str = "ols") -> dict[str, int]:
    """Bars needed before each analytic is defined.

    Returns
    -------
    dict
        Every statistic of :data:`analytics.registry.STATISTICS` by its declared
        ``warmup`` (``alpha`` / ``beta`` / ``spread``: ``w``, Kalman 2; ``zscore``: that
        plus ``w - 1``; ``corr``: ``w + 1``; ...), then ``adf`` / ``coint``:
        ``ADF_MIN_OBS`` bars and ``half_life``: ``HALF_LIFE_MIN_OBS`` bars (these three on
        the static residual of :func:`adf_summary`).
    """
    w = check_options(window, regression, "raw")
    first = KALMAN_MIN_BARS if regression == "kalman" else w
    out = {f.name: f.warmup(w, first) for f in STATISTICS}
    out.update(adf=ADF_MIN_OBS, coint=ADF_MIN_OBS, half_life=HALF_LIFE_MIN_OBS)
    return out


def model_prices(a: object, b: object, prices: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated raw legs -> the legs the model regresses (raw, or ``math.log``)."""
    if prices not in PRICE_MODES:
        raise ValueError(f"prices must be one of {PRICE_MODES}, got {prices!r}")
    aa = as_float_array(a, "a")
    bb = as_float_array(b, "b")
    if len(aa) != len(bb):
        raise ValueError(
            f"a and b must have the same length, got {len(aa)} and {len(bb)}"
        )
    if (aa <= 0.0).any() or (bb <= 0.0).any():
        raise ValueError("a and b must be positive prices")
    if prices == "log":
        return log_prices(aa, "a"), log_prices(bb, "b")
    return aa, bb


def _series_len(self) -> int:
    return len(self.ts)


def _series_frame(self) -> pd.DataFrame:
    """The columns of :data:`analytics.registry.PAIR_COLUMNS`, in order."""
    return pair_table(self)


#: Pair statistics per bar, one array per declared column (NaN before each is
#: defined), then the options they were computed with.
PairSeries = pair_record(
    "PairSeries", __name__,
    "Pair statistics per bar, one array per column of analytics.registry.PAIR_COLUMNS "
    "(NaN before each is defined), and the window, regression and prices used.",
    np.ndarray,
    extra=(("window", int), ("regression", str), ("prices", str)),
    namespace={"__len__": _series_len, "to_frame": _series_frame},
)


def _check_ts(ts: object, n: int) -> np.ndarray:
    t = ts.to_numpy() if isinstance(ts, pd.Series | pd.Index) else np.asarray(ts)
    if t.ndim != 1 or len(t) != n:
        raise ValueError(
            f"ts must be 1-D with the length of a and b ({n}), got shape {t.shape}"
        )
    if t.dtype.kind in "iufM" and n > 1 and not (t[1:] > t[:-1]).all():
        raise ValueError(
            "ts must be strictly increasing (one aligned bar per timestamp)"
        )
    return t


def pair_series(
    ts: object,
    a: object,
    b: object,
    *,
    window: int,
    regression: str = "ols",
    prices: str = "raw",
    kalman: KalmanParams = KalmanParams(),
    robust: RobustParams = RobustParams(),
    refit_step: int | None = None,
    breaks: object | None = None,
    tf_ms: int | None = None,
) -> PairSeries:
    """Hedge, spread, z-score and correlation of an aligned pair at every bar.

    Parameters
    ----------
    ts : array_like
        Bar timestamps (strictly increasing), carried through.
    a, b : array_like
        Aligned **raw** prices of leg A (regressand) and leg B (regressor), positive.
    window : int
        ``w >= 3`` bars for the hedge, the z-score and the correlation.
    regression : {"ols", "huber", "theilsen", "kalman"}
    prices : {"raw", "log"}
        Scale of the model prices ``A, B`` (the correlation always uses raw log
        returns).
    kalman : KalmanParams
        Used when ``regression="kalman"``.
    robust : RobustParams
        Used when ``regression`` is ``"huber"`` or ``"theilsen"``.
    refit_step : int, optional
        Robust refit every ``refit_step`` buckets (held in between; still trailing).
        Default :func:`analytics.robust.refit_step` of ``window`` and ``regression``,
        as every caller in the app uses.
    tf_ms : int, optional
        Bar length on the ``ts`` scale: anchors the robust refit schedule to bar time
        (bucket ``ts // tf_ms``), so a bar's value does not depend on where the series
        starts. Without it the schedule counts bars from the first one given.
    breaks : array_like of int, optional
        Session starts on the ``ts`` scale (for bucket timestamps: the bucket start of
        each break, :func:`analytics.sessions.break_buckets`). A point with
        ``ts >= break`` opens a new segment: every segment is computed on its own
        (no return, regression, spread window, z or correlation spans a break) and is
        NaN until it has the bars each quantity needs; a segment shorter than the first
        hedge is all NaN but for the prices.

    Returns
    -------
    PairSeries

    Raises
    ------
    ValueError
        Bad parameter (the message names it).
    InsufficientData
        Fewer bars than the first hedge needs.
    """
    w = check_options(window, regression, prices, kalman, robust, refit_step)
    raw_a, raw_b = model_prices(a, b, "raw")
    n = len(raw_a)
    t = _check_ts(ts, n)
    need = requirements(w, regression)["beta"]
    if n < need:
        raise InsufficientData(f"pair series (w={w}, {regression})", need, n)
    cuts = segment_starts(t, breaks) if breaks is not None else ()
    if len(cuts):
        return _pair_series_by_segment(
            t, raw_a, raw_b, cuts, need,
            dict(window=w, regression=regression, prices=prices, kalman=kalman,
                 robust=robust, refit_step=refit_step, tf_ms=tf_ms),
        )
    raw_a, raw_b = raw_a.copy(), raw_b.copy()
    # one log pass serves the log model prices and the correlation's log returns
    la, lb = log_prices(raw_a, "a"), log_prices(raw_b, "b")
    pa, pb = (la, lb) if prices == "log" else (raw_a, raw_b)

    if regression == "ols":
        fit = rolling_ols(pa, pb, window=w)
        alpha, beta = fit.alpha, fit.beta
    elif regression == "kalman":
        kfit = kalman_hedge(pa, pb, kalman, prices=prices)
        alpha, beta = kfit.alpha, kfit.beta
    else:
        fit = rolling_robust(
            pa, pb, window=w, method=regression, step=refit_step, params=robust,
            buckets=None if tf_ms is None else _buckets(t, tf_ms),
        )  # fmt: skip
        alpha, beta = fit.alpha, fit.beta
    inputs = PairInputs(
        ts=t, price_a=raw_a, price_b=raw_b, model_a=pa, model_b=pb,
        ret_a=np.diff(la, prepend=np.nan), ret_b=np.diff(lb, prepend=np.nan),
        alpha=alpha, beta=beta, window=w,
    )  # fmt: skip
    cols: dict[str, np.ndarray] = {}
    for fig in PAIR_FIGURES:  # in declared order: a figure may read the ones before it
        cols[fig.name] = fig.batch(inputs, cols)
    return PairSeries(**cols, window=w, regression=regression, prices=prices)


def _pair_series_by_segment(
    t: np.ndarray, a: np.ndarray, b: np.ndarray, cuts: np.ndarray, need: int, opts: dict
) -> PairSeries:
    """:func:`pair_series` of each session segment on its own, concatenated.

    Each segment is exactly the series of its bars alone (what a fresh start of the
    data there would give); a segment shorter than the first hedge is NaN but for the
    prices.
    """
    n = len(t)
    out = {f.name: np.full(n, np.nan) for f in STATISTICS}
    bounds = [0, *(int(c) for c in cuts), n]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi - lo < need:
            continue
        seg = pair_series(t[lo:hi], a[lo:hi], b[lo:hi], **opts)
        for c, arr in out.items():
            arr[lo:hi] = getattr(seg, c)
    return PairSeries(
        ts=t, price_a=a.copy(), price_b=b.copy(), **out,
        window=opts["window"], regression=opts["regression"], prices=opts["prices"],
    )


def _buckets(ts: np.ndarray, tf_ms: int) -> np.ndarray:
    """Bucket index ``ts // tf_ms`` of each bar (datetime64 read as ms)."""
    t = ts.astype("datetime64[ms]").astype(np.int64) if ts.dtype.kind == "M" else ts
    return np.asarray(t, dtype=np.int64) // int(tf_ms)


def static_fit(a: object, b: object, *, prices: str = "raw") -> HedgeFit:
    """One OLS hedge of A on B over all bars given (the "static" display), with R^2."""
    pa, pb = model_prices(a, b, prices)
    return ols_hedge(pa, pb)


@dataclass(frozen=True, slots=True)
class PairStationarity:
    """Static fit over the lookback and the tests of its residual."""

    fit: HedgeFit
    adf: AdfResult
    coint: CointResult
    half_life: HalfLife


def adf_summary(
    a: object,
    b: object,
    *,
    prices: str = "raw",
    maxlag: int | None = None,
    autolag: str | None = "AIC",
) -> PairStationarity:
    """Static OLS over the bars given, ADF + Engle-Granger coint + half-life of its
    residual.

    ADF uses ``regression="c"`` on ``A - alpha - beta * B``; read its p-value with care
    (fitted residuals look more stationary than they are); ``coint`` is the test to
    trust. Lag defaults are capped (:mod:`analytics.stationarity`).
    """
    pa, pb = model_prices(a, b, prices)
    fit = ols_hedge(pa, pb)
    resid = pa - fit.alpha - fit.beta * pb
    return PairStationarity(
        fit=fit,
        adf=adf_test(resid, autolag=autolag, maxlag=maxlag),
        coint=coint_test(
            pa, pb, maxlag=maxlag, autolag=None if autolag is None else autolag.lower()
        ),
        half_life=half_life(resid),
    )
