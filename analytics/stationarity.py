"""Unit-root and cointegration tests, and the spread's half-life.

This module is the **only** caller of statsmodels' ``adfuller`` and ``coint``.

Definitions
-----------
* ADF (:func:`adf_test`): ``adfuller(x, maxlag, regression, autolag)`` with
  ``result_object=True`` (statsmodels 0.15 warns on the plain tuple). H0: unit root.
* Lag cap: statsmodels' default ``maxlag`` is Schwert's ``ceil(12 (n/100)^(1/4))`` (65
  on 86,400 bars), and ``autolag="AIC"`` then fits every lag: 25 s on a day of 1 s bars.
  Our default is ``maxlag = min(ceil(12 (n/100)^(1/4)), ADF_MAX_LAG=12,
  n // 2 - k - 1)`` (``k`` deterministic terms; the last bound is statsmodels' own
  feasibility limit). 12 bars of short-run dynamics is ample for bar-sampled prices
  (bid-ask bounce dies within a few bars); pass ``maxlag`` explicitly to override, or
  ``autolag=None`` to use exactly ``maxlag`` lags (fastest).
* Cointegration (:func:`coint_test`): Engle-Granger ``coint(a, b)`` (A on B plus a
  constant, ADF on the residual with **Engle-Granger/MacKinnon critical values**; plain
  ADF p-values on fitted residuals are too optimistic). Same lag cap.
* Half-life (:func:`half_life`): OLS of the AR(1) ``s_t = c + phi * s_{t-1} + e_t``;
  ``half_life = -ln 2 / ln(phi)`` bars when ``0 < phi < 1`` (a deviation decays by half
  in that many bars), ``inf`` otherwise (``phi >= 1``: not mean-reverting; ``phi <= 0``:
  no monotone decay to speak of, reported as inf too, ``mean_reverting=False``).

* Rolling half-life (:func:`rolling_half_life`, live twin :class:`RollingHalfLife`):
  the same AR(1) on the trailing window, per bar, as a slope of differences:
  ``hl_t = -ln 2 / ln(1 + b_t)`` bars with ``b_t`` the OLS slope of
  ``ds_u = a + b * s_{u-1} + e_u`` over ``u = t-w+1 .. t`` (``1 + b = phi``).

Too-short input raises :class:`~analytics.errors.InsufficientData`; a constant series
raises :class:`~analytics.errors.AnalyticsError` (a ``ValueError``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from analytics.errors import AnalyticsError, InsufficientData
from analytics.hedge import validate_pair
from analytics.rolling import RollingOLS, as_float_array, check_window, window_moments

log = logging.getLogger(__name__)

ADF_MIN_OBS = 20
ADF_MAX_LAG = 12
HALF_LIFE_MIN_OBS = 10
ADF_REGRESSIONS = ("c", "ct", "ctt", "n")
_NTREND = {"n": 0, "c": 1, "ct": 2, "ctt": 3}
_AUTOLAGS = ("AIC", "BIC", "t-stat")

__all__ = [
    "ADF_MAX_LAG",
    "ADF_MIN_OBS",
    "HALF_LIFE_MIN_OBS",
    "AdfResult",
    "CointResult",
    "HalfLife",
    "RollingHalfLife",
    "adf_test",
    "coint_test",
    "default_maxlag",
    "half_life",
    "rolling_half_life",
]


@dataclass(frozen=True, slots=True)
class AdfResult:
    """Augmented Dickey-Fuller test (H0: unit root); ``icbest`` None without autolag."""

    stat: float
    pvalue: float
    usedlag: int
    nobs: int
    critical_values: dict[str, float]
    icbest: float | None
    maxlag: int
    regression: str
    autolag: str | None


@dataclass(frozen=True, slots=True)
class CointResult:
    """Engle-Granger cointegration test (H0: no cointegration)."""

    stat: float
    pvalue: float
    critical_values: dict[str, float]
    nobs: int
    maxlag: int


@dataclass(frozen=True, slots=True)
class HalfLife:
    """AR(1) fit ``s_t = const + phi * s_{t-1} + e`` and its half-life in bars."""

    bars: float
    phi: float
    const: float
    nobs: int
    mean_reverting: bool


def default_maxlag(nobs: int, regression: str = "c") -> int:
    """Default ADF lags: ``min(ceil(12 (n/100)^(1/4)), ADF_MAX_LAG, n // 2 - k - 1)``.

    ``k`` is the number of deterministic terms of ``regression``.
    """
    schwert = math.ceil(12.0 * (nobs / 100.0) ** 0.25)
    return max(min(schwert, ADF_MAX_LAG, nobs // 2 - _NTREND[regression] - 1), 0)


def _check_series(x: object, name: str, what: str) -> np.ndarray:
    xa = as_float_array(x, name)
    if len(xa) < ADF_MIN_OBS:
        raise InsufficientData(what, ADF_MIN_OBS, len(xa))
    if np.all(xa == xa[0]):
        raise AnalyticsError(f"{what}: {name} is constant, the test is undefined")
    return xa


def _check_maxlag(maxlag: object, nobs: int, regression: str) -> int:
    if maxlag is None:
        return default_maxlag(nobs, regression)
    is_int = isinstance(maxlag, int | np.integer) and not isinstance(maxlag, bool)
    if not is_int or maxlag < 0:
        raise ValueError(f"maxlag must be None or an int >= 0, got {maxlag!r}")
    limit = nobs // 2 - _NTREND[regression] - 1
    if maxlag > limit:
        raise ValueError(
            f"maxlag must be <= {limit} for {nobs} observations, got {maxlag}"
        )
    return int(maxlag)


def adf_test(
    x: object,
    *,
    autolag: str | None = "AIC",
    maxlag: int | None = None,
    regression: str = "c",
) -> AdfResult:
    """Augmented Dickey-Fuller unit-root test.

    Parameters
    ----------
    x : array_like
        Series (e.g. a spread), at least ``ADF_MIN_OBS`` finite values, not constant.
    autolag : {"AIC", "BIC", "t-stat", None}
        Lag selection over ``0 .. maxlag``; None uses exactly ``maxlag`` lags.
    maxlag : int, optional
        Default: Schwert's rule capped at ``ADF_MAX_LAG`` (module docstring).
    regression : {"c", "ct", "ctt", "n"}
        Deterministic terms of the test regression.

    Returns
    -------
    AdfResult
        Same numbers as ``adfuller(x, maxlag=..., regression=..., autolag=...)``.
    """
    if regression not in ADF_REGRESSIONS:
        raise ValueError(
            f"regression must be one of {ADF_REGRESSIONS}, got {regression!r}"
        )
    if autolag is not None and autolag not in _AUTOLAGS:
        raise ValueError(f"autolag must be one of {_AUTOLAGS} or None, got {autolag!r}")
    # imported on use: statsmodels costs ~1 s to import, the live engine never needs it
    from statsmodels.tsa.stattools import adfuller

    xa = _check_series(x, "x", "ADF test")
    lag = _check_maxlag(maxlag, len(xa), regression)
    res = adfuller(
        xa, maxlag=lag, regression=regression, autolag=autolag, result_object=True
    )
    return AdfResult(
        stat=float(res.statistic),
        pvalue=float(res.pvalue),
        usedlag=int(res.lags),
        nobs=int(res.nobs),
        critical_values={k: float(v) for k, v in res.critical_values.items()},
        icbest=None if res.icbest is None else float(res.icbest),
        maxlag=lag,
        regression=regression,
        autolag=autolag,
    )


def coint_test(
    a: object,
    b: object,
    *,
    maxlag: int | None = None,
    autolag: str | None = "aic",
    trend: str = "c",
) -> CointResult:
    """Engle-Granger test of no-cointegration of ``a`` with ``b`` (statsmodels
    ``coint``).

    Parameters
    ----------
    a, b : array_like
        Aligned series (raw or log prices), A regressed on B.
    maxlag : int, optional
        Lags of the residual ADF; default as :func:`adf_test` (residual test has no
        deterministic term).
    autolag : {"aic", "bic", "t-stat", None}
    trend : {"c", "ct", "ctt", "n"}
        Deterministic terms of the cointegrating regression.

    Returns
    -------
    CointResult
        ``stat``, ``pvalue`` (MacKinnon), ``critical_values`` {"1%", "5%", "10%"}.
    """
    if trend not in ADF_REGRESSIONS:
        raise ValueError(f"trend must be one of {ADF_REGRESSIONS}, got {trend!r}")
    if autolag is not None and autolag.lower() not in ("aic", "bic", "t-stat"):
        raise ValueError(
            f"autolag must be 'aic', 'bic', 't-stat' or None, got {autolag!r}"
        )
    aa, bb = validate_pair(a, b, min_obs=ADF_MIN_OBS, what="cointegration test")
    _check_series(aa, "a", "cointegration test")
    _check_series(bb, "b", "cointegration test")
    lag = _check_maxlag(maxlag, len(aa), "n")
    from statsmodels.tsa.stattools import coint

    res = coint(aa, bb, trend=trend, maxlag=lag, autolag=autolag)
    levels = ("1%", "5%", "10%")
    crit = {k: float(v) for k, v in zip(levels, res.critical_values, strict=True)}
    return CointResult(float(res.coint_t), float(res.pvalue), crit, len(aa), lag)


def half_life(spread: object) -> HalfLife:
    """Mean-reversion half-life of a spread from its AR(1) fit.

    Parameters
    ----------
    spread : array_like
        At least ``HALF_LIFE_MIN_OBS`` finite values, not constant.

    Returns
    -------
    HalfLife
        ``phi``, ``const`` of ``s_t = const + phi * s_{t-1} + e`` (OLS) and
        ``bars = -ln 2 / ln(phi)`` if ``0 < phi < 1`` else ``inf``.
    """
    s = as_float_array(spread, "spread")
    if len(s) < HALF_LIFE_MIN_OBS:
        raise InsufficientData("half-life", HALF_LIFE_MIN_OBS, len(s))
    lagged, current = s[:-1], s[1:]
    if np.all(lagged == lagged[0]):
        raise AnalyticsError(
            "half-life: spread is constant, the AR(1) fit is undefined"
        )
    ml, mc = lagged.mean(), current.mean()
    dl = lagged - ml
    phi = float(dl @ (current - mc)) / float(dl @ dl)
    const = float(mc - phi * ml)
    ok = 0.0 < phi < 1.0
    bars = -math.log(2.0) / math.log(phi) if ok else math.inf
    return HalfLife(bars, phi, const, len(current), ok)


def _half_life_of_slope(b: np.ndarray) -> np.ndarray:
    """``-ln 2 / ln(1 + b)`` where ``-1 < b < 0``, else NaN (elementwise)."""
    ok = (b < 0.0) & (b > -1.0)  # False for NaN too
    out = np.full(len(b), np.nan)
    out[ok] = -math.log(2.0) / np.log1p(b[ok])
    return out


def rolling_half_life(spread: object, *, window: int) -> np.ndarray:
    """Trailing mean-reversion half-life of a spread, in bars, at every bar.

    The AR(1) fit of the spread's changes on its lagged level over the last ``w``
    differences::

        ds_u = s_u - s_{u-1} = a + b * s_{u-1} + e_u,   u = t-w+1 .. t   (OLS)
        b_t = cov(s_{u-1}, ds_u) / var(s_{u-1})
        hl_t = -ln 2 / ln(1 + b_t)                       (bars)

    A deviation from the mean shrinks by the factor ``1 + b`` per bar, so it halves in
    ``hl`` bars. Trailing: ``hl_t`` uses spreads ``t-w .. t`` only.

    Parameters
    ----------
    spread : array_like
        The pair's spread (NaN allowed: a window holding a NaN gives NaN).
    window : int
        ``w >= 3`` differences per fit (``w + 1`` spreads).

    Returns
    -------
    numpy.ndarray
        ``hl_t``; NaN while fewer than ``w`` differences are held, where ``b >= 0``
        (no mean reversion), ``b <= -1`` (an overshoot: ``ln`` undefined) or the
        lagged spread is constant over the window.
    """
    w = check_window(window)
    s = as_float_array(spread, "spread", allow_nan=True)
    lag = np.empty(len(s))
    lag[:1] = np.nan
    lag[1:] = s[:-1]
    m = window_moments(lag, s - lag, window=w)  # x = s_{u-1}, y = ds_u
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(m.cxx > 0.0, m.cxy / m.cxx, np.nan)
    return _half_life_of_slope(b)


class RollingHalfLife:
    """Incremental twin of :func:`rolling_half_life`: one spread per closed bar, O(1).

    The ``(s_{u-1}, ds_u)`` pairs go through a :class:`~analytics.rolling.RollingOLS`
    of ``ds`` on ``s_{u-1}`` (running centred sums of the last ``w`` pairs, exact
    recompute every ``w`` updates); ``update(s)`` returns ``hl_t`` (NaN where the batch
    is NaN). Bounded state: the window and the previous spread.
    """

    __slots__ = ("_ols", "_prev")

    def __init__(self, window: int) -> None:
        self._ols = RollingOLS(check_window(window))
        self._prev: float | None = None

    @property
    def count(self) -> int:
        """Difference pairs held (<= w)."""
        return self._ols.count

    def update(self, s: float) -> float:
        s = float(s)
        prev, self._prev = self._prev, s
        if prev is None:
            return math.nan
        fit = self._ols.update(s - prev, prev)
        if fit is None:
            return math.nan
        b = fit.beta
        return -math.log(2.0) / math.log1p(b) if -1.0 < b < 0.0 else math.nan
