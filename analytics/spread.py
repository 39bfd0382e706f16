"""Spread, rolling z-score and rolling return correlation (batch, vectorised).

Definitions (window ``w``, bar ``t``)
-------------------------------------
* ``spread_t = A_t - alpha_t - beta_t * B_t`` with ``(alpha_t, beta_t)`` the hedge
  fitted on bars up to ``t`` (A regressed on B, :mod:`analytics.hedge`).
* ``z_t = (x_t - mean(x_{t-w+1..t})) / std(x_{t-w+1..t}, ddof=1)``: the window includes
  ``x_t`` itself (pandas ``rolling(w).mean()/.std()``). For a rolling-beta spread, each
  ``spread_s`` in the window uses its own ``beta_s, alpha_s`` (no refitting of the past
  with today's beta = no look-ahead), so ``z`` needs ``2w - 1`` bars.
* ``corr_t = Pearson corr(r^A, r^B)`` over the log returns
  ``r_s = ln P_s - ln P_{s-1}``, ``s = t-w+1 .. t``: needs ``w + 1`` prices. Always on
  **raw** prices' log returns.

NaN means "not defined": any window holding a NaN gives NaN; ``std == 0`` gives NaN z
(pandas gives +-inf or NaN there; we never return inf), either std 0 gives NaN corr.
"""

from __future__ import annotations

import logging

import numpy as np

from analytics.rolling import as_float_array, check_window, log_prices, window_moments

log = logging.getLogger(__name__)

__all__ = [
    "log_returns",
    "rolling_corr",
    "rolling_corr_logret",
    "rolling_zscore",
    "spread",
]


def spread(a: object, b: object, alpha: object, beta: object) -> np.ndarray:
    """``A - alpha - beta * B`` elementwise (``alpha``, ``beta`` scalars or arrays).

    Parameters
    ----------
    a, b : array_like
        Leg prices on the scale the hedge was fitted on (raw or log).
    alpha, beta : float or array_like
        Intercept and hedge ratio of ``A = alpha + beta * B``.
    """
    aa = as_float_array(a, "a", allow_nan=True)
    bb = as_float_array(b, "b", allow_nan=True)
    if len(aa) != len(bb):
        raise ValueError(
            f"a and b must have the same length, got {len(aa)} and {len(bb)}"
        )
    al = np.asarray(alpha, dtype=np.float64)
    be = np.asarray(beta, dtype=np.float64)
    for name, v in (("alpha", al), ("beta", be)):
        if v.ndim > 1 or (v.ndim == 1 and len(v) != len(aa)):
            raise ValueError(
                f"{name} must be a scalar or have the length of a ({len(aa)})"
            )
    return aa - al - be * bb


def rolling_zscore(x: object, *, window: int) -> np.ndarray:
    """Trailing z-score ``(x_t - mean_w) / std_w`` (ddof=1, window includes ``x_t``).

    Parameters
    ----------
    x : array_like
        Series (NaN allowed: windows touching a NaN give NaN).
    window : int
        ``w >= 2``.

    Returns
    -------
    numpy.ndarray
        Equals ``(s - s.rolling(w).mean()) / s.rolling(w).std()`` of pandas, NaN where
        the window is incomplete or has zero std.
    """
    w = check_window(window, minimum=2)
    xa = as_float_array(x, "x", allow_nan=True)
    m = window_moments(xa, window=w)
    sd = np.sqrt(m.cxx / (w - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0.0, (xa - m.mean_x) / sd, np.nan)


def rolling_corr(x: object, y: object, *, window: int) -> np.ndarray:
    """Trailing Pearson correlation of ``x`` and ``y`` over ``w`` pairs (pandas')."""
    w = check_window(window, minimum=2)
    m = window_moments(x, y, window=w)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (m.cxx > 0.0) & (m.cyy > 0.0)
        r = np.where(ok, m.cxy / np.sqrt(m.cxx * m.cyy), np.nan)
    # rounding can push |r| a hair above 1 for near-collinear windows
    return np.clip(r, -1.0, 1.0)


def log_returns(p: object, name: str = "p") -> np.ndarray:
    """``r_t = ln p_t - ln p_{t-1}`` with ``r_0 = NaN``; prices must be positive."""
    lp = log_prices(p, name)
    r = np.empty(len(lp))
    r[:1] = np.nan
    np.subtract(lp[1:], lp[:-1], out=r[1:])
    return r


def rolling_corr_logret(a: object, b: object, *, window: int) -> np.ndarray:
    """Rolling correlation of the log returns of two raw price series.

    Parameters
    ----------
    a, b : array_like
        Aligned **raw** (positive) prices.
    window : int
        Number of returns ``w >= 2``; ``corr[t]`` uses returns ``t-w+1 .. t``, i.e.
        prices ``t-w .. t``, so it is defined from ``t = w`` (``w + 1`` prices).

    Returns
    -------
    numpy.ndarray
        Equals ``np.log(a).diff().rolling(w).corr(np.log(b).diff())`` of pandas.
    """
    ra, rb = log_returns(a, "a"), log_returns(b, "b")
    if len(ra) != len(rb):
        raise ValueError(
            f"a and b must have the same length, got {len(ra)} and {len(rb)}"
        )
    return rolling_corr(ra, rb, window=window)
