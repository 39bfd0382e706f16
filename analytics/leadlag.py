"""Lead-lag: cross-correlation of two legs' returns at lags ``-k .. +k`` bars.

Convention
----------
With log returns ``r^A_t = ln A_t - ln A_{t-1}`` (likewise B) on the aligned grid,

    rho(k) = corr(r^A_t, r^B_{t+k})       over every t where both are defined

(Pearson). **A positive lag means A leads B**: A's move at ``t`` shows up in B ``k``
bars later. ``rho(-k)`` of (A, B) is ``rho(k)`` of (B, A), so the peak-lag matrix is
antisymmetric. In pandas terms ``rho(k) = rA.corr(rB.shift(-k))``.

The peak lag is the ``k`` of the largest ``|rho(k)|`` (ties: the smallest ``|k|``, then
the negative one), so a strong negative correlation counts as a lead too; its sign is in
``peak_corr``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analytics.align import align_pair
from analytics.bars import Bars
from analytics.errors import InsufficientData
from analytics.rolling import as_float_array
from analytics.sessions import last_session

log = logging.getLogger(__name__)

#: Returns needed beyond the largest lag, so every lag's correlation has this many pairs.
MIN_OVERLAP = 20
MAX_LAG = 500

__all__ = ["LeadLag", "LeadLagMatrix", "cross_correlation", "lead_lag_matrix"]


@dataclass(frozen=True, slots=True, eq=False)
class LeadLag:
    """``corr[i]`` is ``rho(lags[i])``; ``peak_*`` None when every lag is undefined."""

    lags: np.ndarray
    corr: np.ndarray
    peak_lag: int | None
    peak_corr: float | None
    nobs: int


@dataclass(frozen=True, slots=True, eq=False)
class LeadLagMatrix:
    """``peak_lag[i, j]``: peak lag of (``symbols[i]`` as A, ``symbols[j]`` as B);
    NaN on the diagonal and where undefined. ``nobs[i, j]``: aligned bars used."""

    symbols: tuple[str, ...]
    peak_lag: np.ndarray
    peak_corr: np.ndarray
    nobs: np.ndarray
    max_lag: int


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    den = float(np.sqrt((dx @ dx) * (dy @ dy)))
    return float(dx @ dy) / den if den > 0.0 else float("nan")


def _check_max_lag(max_lag: object) -> int:
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer):
        raise ValueError(f"max_lag must be an int, got {max_lag!r}")
    if not 1 <= max_lag <= MAX_LAG:
        raise ValueError(f"max_lag must be between 1 and {MAX_LAG}, got {max_lag}")
    return int(max_lag)


def cross_correlation(a: object, b: object, *, max_lag: int = 10) -> LeadLag:
    """Correlation of A's and B's log returns at every lag ``-max_lag .. max_lag``.

    Parameters
    ----------
    a, b : array_like
        Aligned positive prices (same grid, e.g. :func:`analytics.align.align_pair`).
    max_lag : int
        ``k`` in ``1 .. MAX_LAG`` bars.

    Returns
    -------
    LeadLag

    Raises
    ------
    InsufficientData
        Fewer than ``max_lag + MIN_OVERLAP`` returns.
    """
    k = _check_max_lag(max_lag)
    pa, pb = as_float_array(a, "a"), as_float_array(b, "b")
    if len(pa) != len(pb):
        raise ValueError(f"a and b must have the same length, got {len(pa)} and {len(pb)}")
    if (pa <= 0).any() or (pb <= 0).any():
        raise ValueError("a and b must be positive prices")
    ra, rb = np.diff(np.log(pa)), np.diff(np.log(pb))
    m = len(ra)
    if m < k + MIN_OVERLAP:
        raise InsufficientData(f"lead-lag (max lag {k})", k + MIN_OVERLAP + 1, len(pa))
    lags = np.arange(-k, k + 1)
    corr = np.empty(len(lags))
    for i, lag in enumerate(lags):
        if lag >= 0:  # pairs (rA_t, rB_{t+lag})
            corr[i] = _corr(ra[: m - lag], rb[lag:])
        else:
            corr[i] = _corr(ra[-lag:], rb[: m + lag])
    peak_lag = peak_corr = None
    finite = np.isfinite(corr)
    if finite.any():
        score = np.where(finite, np.abs(corr), -1.0)
        best = score.max()
        cands = lags[score == best]
        lag = int(cands[np.lexsort((cands, np.abs(cands)))][0])
        peak_lag, peak_corr = lag, float(corr[lags == lag][0])
    return LeadLag(lags=lags, corr=corr, peak_lag=peak_lag, peak_corr=peak_corr, nobs=len(pa))


def lead_lag_matrix(
    bars: Mapping[str, Bars], *, max_lag: int = 10, max_bars: int | None = None,
    breaks: Mapping[str, object] | None = None,
) -> LeadLagMatrix:
    """Peak lag of every ordered pair of symbols (each pair aligned on its own grid).

    Pairs with too little data are NaN. ``max_bars`` keeps the last N aligned bars.
    ``breaks`` (symbol -> session break times, ms): each pair uses its last session
    only (:func:`analytics.sessions.last_session`), so no return spans a break.
    """
    k = _check_max_lag(max_lag)
    syms = tuple(bars)
    n = len(syms)
    lag_m = np.full((n, n), np.nan)
    corr_m = np.full((n, n), np.nan)
    nobs = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            al = align_pair(bars[syms[i]], bars[syms[j]], max_bars=max_bars)
            if breaks:
                al = last_session(al, breaks.get(syms[i]), breaks.get(syms[j]))
            nobs[i, j] = nobs[j, i] = len(al)
            try:
                ll = cross_correlation(al.a, al.b, max_lag=k)
            except InsufficientData:
                continue
            if ll.peak_lag is None:
                continue
            lag_m[i, j], lag_m[j, i] = ll.peak_lag, -ll.peak_lag
            corr_m[i, j] = corr_m[j, i] = ll.peak_corr
    return LeadLagMatrix(symbols=syms, peak_lag=lag_m, peak_corr=corr_m, nobs=nobs, max_lag=k)
