"""Hedge ratios: the regression of leg A on leg B, static and trailing-window.

Definitions
-----------
Every estimator here fits ``A = alpha + beta * B + e`` (**A regressed on B**, never the
other way round) and the spread built from it is ``spread = A - alpha - beta * B``
(:func:`analytics.spread.spread`). ``A`` and ``B`` are whatever price scale the caller
chose (raw or natural-log prices, see :mod:`analytics.pair`).

* Static OLS (:func:`ols_hedge`) over the bars given::

      beta  = sum (B_i - mean B)(A_i - mean A) / sum (B_i - mean B)^2
      alpha = mean A - beta * mean B
      r2    = cov(A, B)^2 / (var A * var B)

  computed two-pass (means first, then centred sums), so raw BTC prices lose nothing.
* Rolling OLS (:func:`rolling_ols`) at bar ``t`` over bars ``t-w+1 .. t`` with the
  same formulas, trailing only: nothing after ``t`` is used. Vectorised with the
  block-centred kernel :func:`analytics.rolling.window_moments` (O(n) for any ``w``,
  relative error ~1e-13; *not* a day-long cumsum of raw sums, which cancels
  catastrophically).
* Robust fits (:func:`huber_hedge`, :func:`theilsen_hedge`, :func:`rolling_robust`) call
  scikit-learn on the window **standardised**: ``x = (B - mean B) / sd B``,
  ``y = (A - mean A) / sd A`` (population sd; ``sd A = 0`` is replaced by 1), then map
  back ``beta = coef * sd A / sd B``,
  ``alpha = mean A + sd A * intercept - beta * mean B``.
  With ``alpha=0`` (no penalty) Huber is affine-equivariant, so this is the same
  estimator, only well conditioned: on raw prices (B ~2,680, A ~61,700) sklearn's
  L-BFGS stops with the intercept still ~0 and beta ~ A/B, the price ratio, without
  any warning (checked on the sample tape). Theil-Sen's 2-D spatial median is *not*
  equivariant to rescaling one axis; standardising makes slope and intercept
  commensurate, and defines the estimator we report.

  - Huber: ``HuberRegressor(epsilon=1.35, alpha=0.0, max_iter=1000, tol=1e-5)``; the
    scale is estimated jointly (sklearn's concomitant scale), so ``epsilon=1.35`` gives
    95 % efficiency under Gaussian noise.
  - Theil-Sen: the window is first **subsampled evenly to at most ``max_points=100``
    bars**: every ``k``-th bar, ``k = ceil(n / max_points)``, counted backwards from the
    last bar so the latest bar is always included (bars ``t, t-k, t-2k, ...``). Then
    ``TheilSenRegressor(n_subsamples=None, max_subpopulation=10_000, random_state=0)``:
    ``n_subsamples=None`` means pairs of points (classic Theil-Sen slopes); with at most
    100 points there are <= 4,950 pairs < ``max_subpopulation``, so *all* pairs are used
    and the fit is deterministic (random_state only matters if you raise max_points
    above 141).
  - ``r2`` of a robust fit is the in-sample ``1 - SSR / SST`` of its line over the
    points it was fitted on.
* :func:`rolling_robust` refits every ``step`` bars, at ``t = w-1, w-1+step, ...``, and
  holds the last fit in between. A held fit was estimated on bars ending at or before
  ``t``, so it is still trailing: no look-ahead, just a staler beta.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from analytics.errors import AnalyticsError, InsufficientData
from analytics.rolling import (
    MIN_WINDOW,
    as_float_array,
    check_window,
    window_moments,
)

log = logging.getLogger(__name__)

MIN_OBS = MIN_WINDOW
ROBUST_METHODS = ("huber", "theilsen")
HUBER_EPSILON = 1.35
HUBER_ALPHA = 0.0
HUBER_MAX_ITER = 1000
HUBER_TOL = 1e-5
THEILSEN_MAX_POINTS = 100
THEILSEN_MAX_SUBPOPULATION = 10_000

__all__ = [
    "MIN_OBS",
    "ROBUST_METHODS",
    "HedgeFit",
    "RobustParams",
    "RollingFit",
    "huber_hedge",
    "ols_hedge",
    "robust_window_fit",
    "rolling_ols",
    "rolling_robust",
    "subsample_tail",
    "theilsen_hedge",
    "validate_pair",
]


@dataclass(frozen=True, slots=True)
class HedgeFit:
    """One fit of ``A = alpha + beta * B``: ``spread = A - alpha - beta * B``.

    ``n`` is the number of bars the estimator saw (Theil-Sen: after subsampling).
    """

    beta: float
    alpha: float
    r2: float
    n: int
    method: str


@dataclass(frozen=True, slots=True)
class RollingFit:
    """Trailing fits; ``[t]`` uses ``t`` uses bars ``t-w+1 .. t`` only (NaN before)."""

    alpha: np.ndarray
    beta: np.ndarray
    r2: np.ndarray
    window: int
    method: str
    step: int = 1


@dataclass(frozen=True, slots=True)
class RobustParams:
    """Settings of the robust estimators (see the module docstring)."""

    epsilon: float = HUBER_EPSILON
    huber_alpha: float = HUBER_ALPHA
    max_iter: int = HUBER_MAX_ITER
    tol: float = HUBER_TOL
    max_points: int = THEILSEN_MAX_POINTS
    max_subpopulation: int = THEILSEN_MAX_SUBPOPULATION
    random_state: int = 0

    def __post_init__(self) -> None:
        if not self.epsilon >= 1.0:
            raise ValueError(f"epsilon must be >= 1.0, got {self.epsilon}")
        if not self.huber_alpha >= 0.0:
            raise ValueError(f"huber_alpha must be >= 0, got {self.huber_alpha}")
        check_window(self.max_iter, minimum=1, name="max_iter")
        check_window(self.max_points, minimum=MIN_WINDOW, name="max_points")
        check_window(self.max_subpopulation, minimum=1, name="max_subpopulation")


# ---------------------------------------------------------------------------- helpers


def validate_pair(
    a: object, b: object, *, min_obs: int = MIN_OBS, what: str = "hedge"
) -> tuple[np.ndarray, np.ndarray]:
    """Both legs as finite float arrays of equal length ``>= min_obs``."""
    aa = as_float_array(a, "a")
    bb = as_float_array(b, "b")
    if len(aa) != len(bb):
        raise ValueError(
            f"a and b must have the same length, got {len(aa)} and {len(bb)}"
        )
    if len(aa) < min_obs:
        raise InsufficientData(what, min_obs, len(aa))
    return aa, bb


def subsample_tail(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spaced bars of ``n``, the last included.

    Every ``k``-th bar counted back from ``n-1``, ``k = ceil(n / max_points)``.
    """
    k = -(-n // max_points)
    return np.arange(n - 1, -1, -k)[::-1]


def _r2(a: np.ndarray, b: np.ndarray, beta: float, alpha: float) -> float:
    resid = a - alpha - beta * b
    da = a - a.mean()
    sst = float(da @ da)
    return 1.0 - float(resid @ resid) / sst if sst > 0.0 else math.nan


def _ols(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(beta, alpha, r2) two-pass; NaN beta/alpha if ``b`` is constant."""
    if np.all(b == b[0]):
        return math.nan, math.nan, math.nan
    a_const = bool(np.all(a == a[0]))
    mb = b.mean()
    ma = a[0] if a_const else a.mean()
    db = b - mb
    da = a - ma
    sbb = float(db @ db)
    sab = 0.0 if a_const else float(db @ da)
    saa = float(da @ da)
    beta = sab / sbb
    r2 = sab * sab / (sbb * saa) if saa > 0.0 else math.nan
    return beta, float(ma - beta * mb), r2


def robust_window_fit(
    a: np.ndarray, b: np.ndarray, method: str, params: RobustParams = RobustParams()
) -> tuple[float, float, float, int]:
    """(beta, alpha, r2, n_used) of one robust fit on one window (NaN if b constant).

    The single code path behind :func:`huber_hedge`, :func:`theilsen_hedge`,
    :func:`rolling_robust` and the live engine, so batch and incremental agree bitwise.
    """
    # imported here: scikit-learn costs ~1 s to import and only robust fits need it
    from sklearn.linear_model import HuberRegressor, TheilSenRegressor

    if method == "theilsen":
        idx = subsample_tail(len(a), params.max_points)
        a, b = a[idx], b[idx]
    elif method != "huber":
        raise ValueError(f"method must be one of {ROBUST_METHODS}, got {method!r}")
    n = len(a)
    if np.all(b == b[0]):
        return math.nan, math.nan, math.nan, n
    mb, sb = float(b.mean()), float(b.std())
    ma, sa = float(a.mean()), float(a.std())
    if sa == 0.0 or np.all(a == a[0]):
        ma, sa = float(a[0]), 1.0
    x = ((b - mb) / sb)[:, None]
    y = (a - ma) / sa
    if method == "huber":
        est = HuberRegressor(
            epsilon=params.epsilon,
            alpha=params.huber_alpha,
            max_iter=params.max_iter,
            tol=params.tol,
        )
    else:
        est = TheilSenRegressor(
            n_subsamples=None,
            max_subpopulation=params.max_subpopulation,
            random_state=params.random_state,
        )
    est.fit(x, y)
    beta = float(est.coef_[0]) * sa / sb
    alpha = float(ma + sa * float(est.intercept_) - beta * mb)
    return beta, alpha, _r2(a, b, beta, alpha), n


# ------------------------------------------------------------------------ static fits


def ols_hedge(a: object, b: object) -> HedgeFit:
    """OLS hedge ratio of ``a`` on ``b`` over all bars given.

    Parameters
    ----------
    a, b : array_like
        Aligned prices of leg A (regressand) and leg B (regressor), raw or log.

    Returns
    -------
    HedgeFit
        ``beta``, ``alpha`` of ``A = alpha + beta * B + e`` and ``r2``; the spread is
        ``A - alpha - beta * B``.

    Notes
    -----
    Closed form, two-pass centred (see module docstring); equals statsmodels
    ``OLS(a, add_constant(b))`` to ~1e-15. Raises ``ValueError`` if ``b`` is constant.
    """
    aa, bb = validate_pair(a, b, what="ols_hedge")
    beta, alpha, r2 = _ols(aa, bb)
    if math.isnan(beta):
        raise AnalyticsError("ols_hedge: b is constant, the hedge ratio is undefined")
    return HedgeFit(beta, alpha, r2, len(aa), "ols")


def _robust_hedge(a: object, b: object, method: str, params: RobustParams) -> HedgeFit:
    aa, bb = validate_pair(a, b, what=f"{method}_hedge")
    beta, alpha, r2, n = robust_window_fit(aa, bb, method, params)
    if math.isnan(beta):
        raise AnalyticsError(
            f"{method}_hedge: b is constant, the hedge ratio is undefined"
        )
    return HedgeFit(beta, alpha, r2, n, method)


def huber_hedge(
    a: object,
    b: object,
    *,
    epsilon: float = HUBER_EPSILON,
    alpha: float = HUBER_ALPHA,
    max_iter: int = HUBER_MAX_ITER,
    tol: float = HUBER_TOL,
) -> HedgeFit:
    """Huber-loss hedge ratio of ``a`` on ``b`` (scikit-learn ``HuberRegressor``).

    Parameters
    ----------
    a, b : array_like
        Aligned prices, leg A regressed on leg B.
    epsilon : float
        Huber threshold in units of the jointly estimated scale (1.35: 95 % Gaussian
        efficiency).
    alpha : float
        L2 penalty of sklearn (0: none, which keeps the fit equivariant).
    max_iter, tol : int, float
        L-BFGS limits.

    Notes
    -----
    Fitted on the standardised bars, mapped back (module docstring).
    """
    params = RobustParams(
        epsilon=epsilon, huber_alpha=alpha, max_iter=max_iter, tol=tol
    )
    return _robust_hedge(a, b, "huber", params)


def theilsen_hedge(
    a: object,
    b: object,
    *,
    max_points: int = THEILSEN_MAX_POINTS,
    max_subpopulation: int = THEILSEN_MAX_SUBPOPULATION,
    random_state: int = 0,
) -> HedgeFit:
    """Theil-Sen hedge ratio of ``a`` on ``b`` (scikit-learn ``TheilSenRegressor``).

    Parameters
    ----------
    a, b : array_like
        Aligned prices, leg A regressed on leg B.
    max_points : int
        The bars are subsampled evenly to at most this many, the last bar always kept
        (:func:`subsample_tail`): sklearn's cost grows with the number of pairs.
    max_subpopulation, random_state
        Passed to sklearn; with ``max_points <= 141`` all pairs are used
        (deterministic).

    Notes
    -----
    Fitted on the standardised subsample, mapped back (module docstring). ``n`` of the
    result is the subsample size.
    """
    params = RobustParams(
        max_points=max_points,
        max_subpopulation=max_subpopulation,
        random_state=random_state,
    )
    return _robust_hedge(a, b, "theilsen", params)


# ---------------------------------------------------------------------- rolling fits


def rolling_ols(a: object, b: object, *, window: int) -> RollingFit:
    """Trailing-window OLS of ``a`` on ``b``, vectorised and exact.

    Parameters
    ----------
    a, b : array_like
        Aligned prices (finite), leg A regressed on leg B.
    window : int
        ``w >= 3`` bars per fit.

    Returns
    -------
    RollingFit
        ``beta[t]``, ``alpha[t]``, ``r2[t]`` of the OLS fit on bars ``t-w+1 .. t``
        (NaN for ``t < w-1``; beta/alpha NaN where ``b`` is constant over the window,
        beta 0 where ``a`` is).

    Notes
    -----
    ``beta = cov_w(A, B) / var_w(B)``, ``alpha = mean_w(A) - beta * mean_w(B)`` from
    block-centred window moments (:func:`analytics.rolling.window_moments`): equals
    statsmodels OLS on every window to ~1e-13 relative; 86,400 bars in a few ms.
    """
    w = check_window(window)
    aa, bb = validate_pair(a, b, min_obs=w, what=f"rolling OLS (w={w})")
    m = window_moments(bb, aa, window=w)  # x = b (regressor), y = a
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(m.cxx > 0.0, m.cxy / m.cxx, np.nan)
        alpha = m.mean_y - beta * m.mean_x
        r2 = np.where((m.cxx > 0.0) & (m.cyy > 0.0), m.cxy**2 / (m.cxx * m.cyy), np.nan)
    return RollingFit(alpha, beta, r2, w, "ols")


def rolling_robust(
    a: object,
    b: object,
    *,
    window: int,
    method: str = "huber",
    step: int = 1,
    params: RobustParams = RobustParams(),
) -> RollingFit:
    """Trailing-window Huber or Theil-Sen fits of ``a`` on ``b``.

    Parameters
    ----------
    a, b : array_like
        Aligned prices, leg A regressed on leg B.
    window : int
        ``w >= 3`` bars per fit.
    method : {"huber", "theilsen"}
    step : int
        Refit every ``step`` bars (at ``t = w-1, w-1+step, ...``); in between the last
        fit is held. Held fits only used bars up to their own fit time, so every value
        at ``t`` depends on bars ``<= t`` only.
    params : RobustParams
        Estimator settings.

    Notes
    -----
    One sklearn fit per refit (~2-6 ms Huber, ~40 ms Theil-Sen with 100 points): a day
    of 1 s bars at ``step=1`` is minutes, so use ``step`` (or the live engine, which
    refits once per closed bar).
    """
    w = check_window(window)
    step = check_window(step, minimum=1, name="step")
    if method not in ROBUST_METHODS:
        raise ValueError(f"method must be one of {ROBUST_METHODS}, got {method!r}")
    aa, bb = validate_pair(a, b, min_obs=w, what=f"rolling {method} (w={w})")
    n = len(aa)
    beta = np.full(n, np.nan)
    alpha = np.full(n, np.nan)
    r2 = np.full(n, np.nan)
    fit = (math.nan, math.nan, math.nan)
    for t in range(w - 1, n):
        if (t - (w - 1)) % step == 0:
            lo = t - w + 1
            fit = robust_window_fit(aa[lo : t + 1], bb[lo : t + 1], method, params)[:3]
        beta[t], alpha[t], r2[t] = fit
    return RollingFit(alpha, beta, r2, w, method, step)

