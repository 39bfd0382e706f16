"""The basis: one asset's perpetual against its spot, on the pair grid.

Definitions (aligned grid of :func:`analytics.align.align_pair` with A = perp, B = spot;
window ``w`` bars; bar ``t``)
-----------------------------------------------------------------------------------
* ``basis_t = perp_t - spot_t`` (quote currency, USDT);
* ``basis_bps_t = 1e4 * (perp_t - spot_t) / spot_t`` (basis points of spot);
* ``mean_t = mean(basis_bps_{t-w+1..t})`` and ``std_t`` its ``ddof=1`` standard
  deviation: the window includes bar ``t`` (pandas ``rolling(w).mean()/.std()``);
* ``zscore_t = (basis_bps_t - mean_t) / std_t`` (NaN where ``std_t = 0``), the same
  convention as the pair z (:func:`analytics.spread.rolling_zscore`);
* ``halflife_t``: the rolling AR(1) half-life of ``basis_bps`` over the last ``w``
  changes, ``-ln 2 / ln(1 + b_t)`` bars with ``b_t`` the OLS slope of
  ``d basis_bps_u = a + b * basis_bps_{u-1}`` (:func:`analytics.stationarity.
  rolling_half_life`; NaN when ``b >= 0``: no mean reversion).

Every figure is trailing: a value at ``t`` uses bars up to ``t`` only, so a cut of the
series equals the same rows of the whole. At a session break (:mod:`analytics.sessions`)
the windows restart, exactly as the pair series does.

Lead-lag (:func:`analytics.leadlag.cross_correlation` on the last session's aligned
closes): ``rho(k) = corr(r^perp_t, r^spot_{t+k})``, so a positive peak lag means the
**perp moves first** and spot follows ``k`` bars later; a negative one, spot first;
0, together within a bar.

Pure numpy; no I/O. Computed on bar close, never on the 500 ms refresh path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.align import AlignedPair, align_pair
from analytics.bars import Bars
from analytics.errors import InsufficientData
from analytics.leadlag import cross_correlation
from analytics.rolling import check_window, window_moments
from analytics.sessions import last_segment, segment_bounds, session_ids, union_breaks
from analytics.spread import rolling_zscore
from analytics.stationarity import rolling_half_life

log = logging.getLogger(__name__)

__all__ = [
    "BASIS_COLUMNS",
    "DEFAULT_MAX_LAG",
    "BasisLeadLag",
    "BasisSeries",
    "basis_from_aligned",
    "basis_from_prices",
    "basis_series",
]

#: Lags (bars) the lead-lag scans each way by default.
DEFAULT_MAX_LAG = 10

#: Columns of ``/api/basis`` (JSON records and CSV), in order.
BASIS_COLUMNS: tuple[str, ...] = (
    "ts", "price_perp", "price_spot", "basis", "basis_bps",
    "mean_bps", "std_bps", "zscore", "halflife", "session",
)


@dataclass(frozen=True, slots=True)
class BasisLeadLag:
    """Which leg moves first. ``peak_lag`` > 0: perp leads spot by that many bars;
    < 0: spot leads; 0: together. None (with ``leader`` ``"undefined"``) when every
    lag's correlation is undefined or there are too few returns (``needed`` says how
    many prices it takes)."""

    max_lag: int
    peak_lag: int | None
    peak_corr: float | None
    corr_at_zero: float | None
    nobs: int
    leader: str  # "perp" | "spot" | "together" | "undefined"
    lags: tuple[int, ...]
    corr: tuple[float | None, ...]
    needed: int

    def as_dict(self) -> dict:
        return {
            "max_lag": self.max_lag, "peak_lag": self.peak_lag, "peak_corr": self.peak_corr,
            "corr_at_zero": self.corr_at_zero, "nobs": self.nobs, "leader": self.leader,
            "lags": list(self.lags), "corr": list(self.corr), "needed": self.needed,
        }


@dataclass(frozen=True, slots=True, eq=False)
class BasisSeries:
    """The basis of a perp against its spot on the aligned grid (module docstring).

    Arrays are read-only and share one length; ``session`` numbers the segments between
    session breaks (a statistic never spans one)."""

    ts: np.ndarray
    price_perp: np.ndarray
    price_spot: np.ndarray
    basis: np.ndarray
    basis_bps: np.ndarray
    mean_bps: np.ndarray
    std_bps: np.ndarray
    zscore: np.ndarray
    halflife: np.ndarray
    session: np.ndarray
    tf_ms: int
    window: int
    leadlag: BasisLeadLag

    def __post_init__(self) -> None:
        for name in BASIS_COLUMNS:
            arr = getattr(self, name)
            view = np.asarray(arr).view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)

    def __len__(self) -> int:
        return int(len(self.ts))

    def frame(self, rows: slice | None = None) -> pd.DataFrame:
        """Columns :data:`BASIS_COLUMNS` (int ``ts`` in epoch ms), rows ``rows``."""
        keep = slice(None) if rows is None else rows
        return pd.DataFrame({c: np.array(getattr(self, c)[keep]) for c in BASIS_COLUMNS})

    def last(self) -> dict:
        """The latest row as plain floats (NaN -> None), for KPI cards and alerts."""
        if not len(self):
            return {}
        out = {}
        for c in BASIS_COLUMNS:
            v = getattr(self, c)[-1]
            out[c] = int(v) if c in ("ts", "session") else (
                float(v) if np.isfinite(v) else None)
        return out


def _rolling_mean_std(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and ``ddof=1`` std of the last ``w`` values (NaN until ``w``)."""
    m = window_moments(x, window=w)
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.maximum(m.cxx, 0.0) / (w - 1))
    return np.asarray(m.mean_x, dtype=np.float64), sd


def _leadlag(perp: np.ndarray, spot: np.ndarray, max_lag: int) -> BasisLeadLag:
    from analytics.leadlag import MIN_OVERLAP

    needed = max_lag + MIN_OVERLAP + 1
    lags = tuple(range(-max_lag, max_lag + 1))
    undefined = BasisLeadLag(max_lag, None, None, None, len(perp), "undefined", lags,
                             tuple(None for _ in lags), needed)
    ok = np.isfinite(perp) & np.isfinite(spot) & (perp > 0) & (spot > 0)
    if not ok.all():
        return undefined
    try:
        ll = cross_correlation(perp, spot, max_lag=max_lag)
    except InsufficientData:
        return undefined
    corr = tuple(float(c) if np.isfinite(c) else None for c in ll.corr)
    zero = corr[max_lag]
    if ll.peak_lag is None:
        return BasisLeadLag(max_lag, None, None, zero, ll.nobs, "undefined", lags, corr, needed)
    leader = "perp" if ll.peak_lag > 0 else "spot" if ll.peak_lag < 0 else "together"
    return BasisLeadLag(max_lag, ll.peak_lag, ll.peak_corr, zero, ll.nobs, leader, lags, corr,
                        needed)


def basis_from_aligned(
    aligned: AlignedPair, *, window: int, breaks: object | None = None,
    max_lag: int = DEFAULT_MAX_LAG,
) -> BasisSeries:
    """:class:`BasisSeries` of an aligned pair whose leg A is the perp, B the spot.

    ``breaks``: session break times (ms, both legs' union); windows restart at each.
    """
    return basis_from_prices(aligned.ts, aligned.a, aligned.b, tf_ms=aligned.tf_ms,
                             window=window, breaks=breaks, max_lag=max_lag)


def basis_from_prices(
    ts: object, perp: object, spot: object, *, tf_ms: int, window: int,
    breaks: object | None = None, max_lag: int = DEFAULT_MAX_LAG,
) -> BasisSeries:
    """:class:`BasisSeries` of closes already on one grid (the live engine's pair
    series: ``ts``, ``price_a`` = perp, ``price_b`` = spot), so the basis is on exactly
    the grid the pair page and the alerts use."""
    w = check_window(window)
    perp = np.array(perp, dtype=np.float64)
    spot = np.array(spot, dtype=np.float64)
    ts = np.array(ts, dtype=np.int64)
    if not len(perp) == len(spot) == len(ts):
        raise ValueError(f"ts, perp and spot differ in length: {len(ts)}, {len(perp)}, "
                         f"{len(spot)}")
    n = len(ts)
    basis = perp - spot
    with np.errstate(divide="ignore", invalid="ignore"):
        bps = np.where(spot > 0, 1e4 * basis / spot, np.nan)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    z = np.full(n, np.nan)
    hl = np.full(n, np.nan)
    for lo, hi in segment_bounds(ts, breaks, tf_ms):
        seg = bps[lo:hi]
        mean[lo:hi], std[lo:hi] = _rolling_mean_std(seg, w)
        z[lo:hi] = rolling_zscore(seg, window=w)
        hl[lo:hi] = rolling_half_life(seg, window=w)
    s0 = last_segment(ts, breaks, tf_ms)
    return BasisSeries(
        ts=ts, price_perp=perp, price_spot=spot, basis=basis, basis_bps=bps,
        mean_bps=mean, std_bps=std, zscore=z, halflife=hl,
        session=session_ids(ts, breaks, tf_ms), tf_ms=int(tf_ms), window=w,
        leadlag=_leadlag(perp[s0:], spot[s0:], max_lag),
    )


def basis_series(
    perp: Bars, spot: Bars, *, window: int, breaks_perp: object | None = None,
    breaks_spot: object | None = None, max_bars: int | None = None,
    max_lag: int = DEFAULT_MAX_LAG,
) -> BasisSeries:
    """Align ``perp`` and ``spot`` bars (:func:`analytics.align.align_pair`, the pair
    page's grid) and compute the basis series (module docstring). ``max_bars`` keeps the
    last N aligned points (the app passes one day, as for pairs)."""
    aligned = align_pair(perp, spot, max_bars=max_bars)
    return basis_from_aligned(
        aligned, window=window, breaks=union_breaks(breaks_perp, breaks_spot), max_lag=max_lag
    )
