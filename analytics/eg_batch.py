"""Engle-Granger cointegration tests of many pairs at once, equal to statsmodels' ``coint``.

Why: the market-wide screen (:mod:`analytics.market_screen`) tests hundreds to thousands
of pairs. statsmodels' ``coint(a, b, trend="c", maxlag=M, autolag="aic")`` fits
``M + 2`` separate OLS models per pair through ``pinv`` (14-20 ms per pair on a day of
1 m bars here, so 24 s for the 1,225 pairs of the top 50); this module computes the
**same numbers** for a whole batch of pairs with a few stacked BLAS/LAPACK calls
(0.45 s for those 1,225: ``python -m benchmarks.market --only screen``).

What ``coint`` computes (and so what this module computes), for a pair ``(a, b)`` of
``T`` aligned observations:

1. Cointegrating regression, OLS ``a_t = alpha + beta * b_t + u_t``; from centred sums,
   ``beta = sum (b - mean b)(a - mean a) / sum (b - mean b)^2``,
   ``alpha = mean a - beta * mean b``, ``u = a - alpha - beta * b``.
   If ``R^2 >= 1 - 100 * sqrt(eps)`` the legs are (almost) collinear: ``coint``
   reports ``stat = -inf`` and ``pvalue = 0`` without a residual test; so do we
   (``usedlag = -1``).
2. ADF on the residual with **no** deterministic term (``regression="n"``):
   ``du_t = rho * u_{t-1} + sum_{j=1..L} g_j du_{t-j} + e_t``.
   *Lag search* (``autolag="aic"``): every ``L = 0 .. M`` is fitted on the **same**
   ``n = T - 1 - M`` rows (the rows the largest lag allows) and the smallest
   ``aic(L) = n log(ssr_L / n) + n (1 + log 2 pi) + 2 (L + 1)`` wins (ties: the smaller
   ``L``, as statsmodels' ``min`` over ``(aic, L)``). The candidate designs are nested
   (columns ``[u_{t-1}, du_{t-1}, ..., du_{t-M}]``, the first ``L + 1`` of them for lag
   ``L``), so **one factorisation per pair** gives all ``M + 1`` residual sums: with
   ``D^T D = l l^T`` (Cholesky, ``l = R^T`` of ``D``'s QR) and ``z = l^{-1} D^T y``
   (``= Q^T y``), ``ssr_L = ||y||^2 - sum_{j <= L + 1} z_j^2``. The Gram matrices of a
   whole chunk of pairs are one stacked matmul (a stacked QR is 50 x slower here).
   *Refit*: the chosen ``L`` is fitted again on its own full sample ``T - 1 - L`` rows
   (as ``adfuller`` does), with the level column last so its t-statistic is read off
   the factor directly: ``t = z_k / sqrt(ssr / (n_L - k))``, ``k = L + 1``
   (``beta_k = z_k / l_kk`` and ``se_k = sigma / l_kk``).
3. p-value: MacKinnon's (1994) approximate asymptotic p-value for an Engle-Granger test
   with two variables and a constant, ``mackinnonp(stat, regression="c", N=2)``, over
   statsmodels' own tables, vectorised and equal bit for bit (:func:`eg_pvalues`);
   critical values ``mackinnoncrit(N=2, regression="c", nobs=T - 1)`` (one call).

Exactness: the AIC comparison is the one place where rounding could pick a different
lag than statsmodels' ``pinv`` fits (two lags whose AIC agree to the last digits). A
pair whose best two AICs are closer than ``AIC_TIE_RTOL * |aic|`` is re-tested with
statsmodels itself and counted in ``EngleGrangerBatch.exact_fallbacks``; everywhere else
the statistic equals ``coint``'s to about 1e-12 relative (tested at rtol 1e-9 with the
identical lag on real recorded and synthetic data). One caveat is statsmodels': on log
prices its first-stage residual (``pinv`` of the uncentred ``[ln p, 1]``) is off by up to
~1e-8 relative, ours by 1e-12 against a long-double oracle; there the two agree to that
~1e-8, and exactly (1e-9) on the demeaned series, which is the same regression.

Memory: pairs are processed in chunks sized so one chunk's stacked design stays under
``chunk_bytes`` (default 48 MB), whatever ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analytics.stationarity import ADF_MIN_OBS, default_maxlag

__all__ = [
    "AIC_TIE_RTOL",
    "CHUNK_BYTES",
    "EngleGrangerBatch",
    "eg_maxlag",
    "eg_pvalues",
    "engle_granger_batch",
]

#: Relative AIC gap under which the lag choice is left to statsmodels itself.
AIC_TIE_RTOL = 1e-9
#: Budget of one chunk's stacked design matrices (bytes).
CHUNK_BYTES = 48 * 2**20
_SQRTEPS = math.sqrt(np.finfo(np.float64).eps)  # statsmodels' collinearity threshold
_LOG_2PI_1 = 1.0 + math.log(2.0 * math.pi)


@dataclass(frozen=True, slots=True, eq=False)
class EngleGrangerBatch:
    """Engle-Granger results of ``P`` pairs (arrays of length ``P``, in input order).

    ``stat``/``pvalue``: the residual ADF t-statistic and MacKinnon p-value, as
    ``coint(a, b, trend="c", maxlag=maxlag, autolag="aic")`` returns them;
    ``usedlag``: the lag ``adfuller`` chose (``-1`` where ``collinear``);
    ``alpha``/``beta``: the cointegrating regression ``a = alpha + beta * b + u``;
    ``critical_values``: 1 %, 5 %, 10 % (the same for every pair: same ``nobs``).
    """

    stat: np.ndarray
    pvalue: np.ndarray
    usedlag: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    collinear: np.ndarray
    nobs: int
    maxlag: int
    critical_values: tuple[float, float, float]
    exact_fallbacks: int

    def __len__(self) -> int:
        return int(self.stat.shape[0])


def eg_maxlag(nobs: int) -> int:
    """The residual ADF's lag cap for ``nobs`` observations: the project's rule
    (:func:`analytics.stationarity.default_maxlag` with no deterministic term, 12 on a
    day of 1 m bars), the same cap :func:`analytics.stationarity.coint_test` uses."""
    return default_maxlag(nobs, "n")


def _check(x: np.ndarray, ia: np.ndarray, ib: np.ndarray, maxlag: int | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2:
        raise ValueError(f"x must be a 2-D (observations x series) array, got {xa.ndim}-D")
    t = xa.shape[0]
    if t < ADF_MIN_OBS:
        raise ValueError(f"the Engle-Granger test needs >= {ADF_MIN_OBS} observations, "
                         f"got {t}")
    ia = np.asarray(ia, dtype=np.int64).ravel()
    ib = np.asarray(ib, dtype=np.int64).ravel()
    if ia.shape != ib.shape:
        raise ValueError(f"ia and ib differ in length: {len(ia)} and {len(ib)}")
    if len(ia) and (min(ia.min(), ib.min()) < 0 or max(ia.max(), ib.max()) >= xa.shape[1]):
        raise ValueError(f"pair indices must lie in 0 .. {xa.shape[1] - 1}")
    if np.any(ia == ib):
        raise ValueError("a pair must be two different series")
    used = np.unique(np.concatenate([ia, ib]))
    cols = xa[:, used]
    if not np.all(np.isfinite(cols)):
        raise ValueError("x holds NaN or inf in a series the pairs use")
    flat = np.all(cols == cols[0], axis=0)
    if np.any(flat):
        raise ValueError(f"series {used[flat].tolist()} are constant: the test is undefined")
    limit = t // 2 - 1
    if maxlag is None:
        lag = eg_maxlag(t)
    elif isinstance(maxlag, bool) or not isinstance(maxlag, int | np.integer) or maxlag < 0:
        raise ValueError(f"maxlag must be None or an int >= 0, got {maxlag!r}")
    elif maxlag > limit:
        raise ValueError(f"maxlag must be <= {limit} for {t} observations, got {maxlag}")
    else:
        lag = int(maxlag)
    return xa, ia, ib, lag


def _lagged_design(u: np.ndarray, du: np.ndarray, lags: int, rows: int,
                   level_first: bool) -> np.ndarray:
    """``(P, rows, lags + 1)``: the level ``u_{t-1}`` and ``du_{t-1} .. du_{t-lags}`` of
    the last ``rows`` differences (``adfuller``'s ``xdall`` for ``maxlag=lags``,
    trimmed to ``rows`` when searching on a common sample)."""
    p, t1 = du.shape
    start = t1 - rows
    out = np.empty((p, rows, lags + 1))
    lvl = 0 if level_first else lags
    out[:, :, lvl] = u[:, start:t1]
    for j in range(1, lags + 1):
        out[:, :, j - 1 + (1 if level_first else 0)] = du[:, start - j:t1 - j]
    return out


def _gram(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(z, l)``: the Cholesky factor ``l`` of ``D^T D`` and ``z = l^{-1} D^T y``.

    ``l`` is ``R^T`` of the QR of ``D`` (up to signs), so ``z = Q^T y`` and every prefix
    of ``z`` answers the nested regression on the first columns. Through the stacked
    Gram matrices: one batched matmul, not a QR per pair (50 x faster here); the
    designs are well conditioned once scaled (a level and lagged differences), and the
    result is tested against statsmodels at rtol 1e-9."""
    dt = design.transpose(0, 2, 1)
    gram = np.matmul(dt, design)
    chol = np.linalg.cholesky(gram)
    z = np.linalg.solve(chol, np.matmul(dt, y[:, :, None]))[:, :, 0]
    return z, chol


def _search_lags(u: np.ndarray, du: np.ndarray, maxlag: int) -> tuple[np.ndarray, np.ndarray]:
    """Best AIC lag per pair on the common sample, and whether its margin is a near tie."""
    n = du.shape[1] - maxlag
    y = du[:, maxlag:]
    z, _ = _gram(_lagged_design(u, du, maxlag, n, level_first=True), y)
    yy = np.einsum("pn,pn->p", y, y)
    ssr = yy[:, None] - np.cumsum(z * z, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        aic = n * np.log(ssr / n) + n * _LOG_2PI_1 + 2.0 * np.arange(1, maxlag + 2)
    best = np.argmin(aic, axis=1)
    if maxlag == 0:
        return best, ~np.isfinite(aic[:, 0])
    part = np.partition(aic, 1, axis=1)
    gap = part[:, 1] - part[:, 0]
    tie = ~(gap > AIC_TIE_RTOL * np.maximum(np.abs(part[:, 0]), 1.0))
    return best, tie


def _refit_t(u: np.ndarray, du: np.ndarray, lag: int) -> np.ndarray:
    """t-statistic of the level in the ADF regression with ``lag`` lags on its full
    sample (``T - 1 - lag`` rows), level column last:
    ``t = z_k / sqrt(ssr / (n_L - k))`` with ``ssr = ||y||^2 - ||z||^2``."""
    n = du.shape[1] - lag
    y = du[:, lag:]
    z, _ = _gram(_lagged_design(u, du, lag, n, level_first=False), y)
    k = lag + 1
    ssr = np.einsum("pn,pn->p", y, y) - np.einsum("pk,pk->p", z, z)
    return z[:, -1] / np.sqrt(ssr / (n - k))


def _batch_or_none(fn, u: np.ndarray, du: np.ndarray, lag: int):
    """``fn(u, du, lag)`` for a stack of pairs; a singular Gram matrix in the stack
    (a residual whose design is rank-deficient) sends the whole stack to statsmodels:
    the lag search answers "every pair is a tie", the refit None."""
    try:
        return fn(u, du, lag)
    except np.linalg.LinAlgError:
        if fn is _search_lags:
            return np.zeros(len(u), dtype=np.int64), np.ones(len(u), dtype=bool)
        return None


def eg_pvalues(stat: np.ndarray) -> np.ndarray:
    """``mackinnonp(s, regression="c", N=2)`` for every ``s`` of ``stat``, bit for bit.

    The same piecewise rule over statsmodels' own MacKinnon (1994) tables, vectorised
    (the scalar call is 0.17 ms, a third of a top-50 screen): 1 above the table's
    maximum, 0 below its minimum, else ``Phi(poly(s))`` with the small-p polynomial at
    or below ``tau*`` and the large-p one above (``Phi`` = ``scipy.special.ndtr``, what
    ``norm.cdf`` evaluates). Falls back to the scalar call if statsmodels moves its
    tables."""
    from statsmodels.tsa import adfvalues

    s = np.asarray(stat, dtype=np.float64)
    try:
        from scipy.special import ndtr

        k = 1  # N = 2 series
        hi, lo = adfvalues._tau_maxs["c"][k], adfvalues._tau_mins["c"][k]
        star = adfvalues._tau_stars["c"][k]
        small = adfvalues._tau_smallps["c"][k][::-1]
        large = adfvalues._tau_largeps["c"][k][::-1]
    except (AttributeError, KeyError, IndexError, ImportError):
        return np.array([adfvalues.mackinnonp(v, regression="c", N=2) for v in s])
    with np.errstate(invalid="ignore", over="ignore"):
        poly = np.where(s <= star, np.polyval(small, s), np.polyval(large, s))
        out = ndtr(poly)
    out = np.where(s > hi, 1.0, np.where(s < lo, 0.0, out))
    return out.astype(np.float64)


def _statsmodels_adf(u: np.ndarray, maxlag: int) -> tuple[float, int]:
    from statsmodels.tsa.stattools import adfuller

    res = adfuller(u, maxlag=maxlag, regression="n", autolag="aic", result_object=True)
    return float(res.statistic), int(res.lags)


def engle_granger_batch(
    x: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    *,
    maxlag: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> EngleGrangerBatch:
    """Engle-Granger test of ``x[:, ia[p]]`` on ``x[:, ib[p]]`` for every ``p``.

    Parameters
    ----------
    x : ndarray (T, N)
        Aligned series (prices or log prices) in columns, finite, none constant.
    ia, ib : int arrays (P,)
        Column of the regressand A and of the regressor B of each pair.
    maxlag : int, optional
        Lag cap of the residual ADF; default :func:`eg_maxlag` ``(T)``.
    chunk_bytes : int
        Memory budget of one chunk's stacked design.
    progress : callable(done, total), optional
        Called after each chunk with the pairs done so far.

    Returns
    -------
    EngleGrangerBatch
        The numbers ``coint(x[:, a], x[:, b], trend="c", maxlag=maxlag, autolag="aic")``
        returns, per pair (module docstring).
    """
    from statsmodels.tsa.adfvalues import mackinnoncrit

    xa, ia, ib, lag = _check(x, ia, ib, maxlag)
    t, p_total = xa.shape[0], len(ia)
    stat = np.empty(p_total)
    usedlag = np.full(p_total, -1, dtype=np.int64)
    alpha, beta = np.empty(p_total), np.empty(p_total)
    collinear = np.zeros(p_total, dtype=bool)
    fallbacks = 0
    per_pair = (t - 1) * (lag + 1) * 8 * 2  # the stacked design and its lag copy
    step = max(1, int(chunk_bytes // per_pair))
    for lo in range(0, p_total, step):
        sl = slice(lo, min(lo + step, p_total))
        a = xa[:, ia[sl]].T  # (p, T): one row per pair
        b = xa[:, ib[sl]].T
        am, bm = a.mean(axis=1), b.mean(axis=1)
        ac, bc = a - am[:, None], b - bm[:, None]
        bet = np.einsum("pt,pt->p", bc, ac) / np.einsum("pt,pt->p", bc, bc)
        u = ac - bet[:, None] * bc
        r2 = 1.0 - np.einsum("pt,pt->p", u, u) / np.einsum("pt,pt->p", ac, ac)
        coll = ~(r2 < 1.0 - 100.0 * _SQRTEPS)
        alpha[sl], beta[sl], collinear[sl] = am - bet * bm, bet, coll
        chunk_stat = np.full(len(bet), -np.inf)
        chunk_lag = np.full(len(bet), -1, dtype=np.int64)
        live = np.flatnonzero(~coll)
        if len(live):
            ul = u[live]
            dul = np.diff(ul, axis=1)
            best, tie = _batch_or_none(_search_lags, ul, dul, lag)
            for L in np.unique(best[~tie]):
                sel = np.flatnonzero((best == L) & ~tie)
                t_stat = _batch_or_none(_refit_t, ul[sel], dul[sel], int(L))
                if t_stat is None:  # a singular design in this group: statsmodels decides
                    tie[sel] = True
                    continue
                chunk_stat[live[sel]] = t_stat
                chunk_lag[live[sel]] = L
            for one in np.flatnonzero(tie):  # near tie or singular: statsmodels decides
                chunk_stat[live[one]], chunk_lag[live[one]] = _statsmodels_adf(ul[one], lag)
            fallbacks += int(tie.sum())
        stat[sl], usedlag[sl] = chunk_stat, chunk_lag
        if progress is not None:
            progress(sl.stop, p_total)
    pvalue = eg_pvalues(stat)
    crit = mackinnoncrit(N=2, regression="c", nobs=t - 1)
    for arr in (stat, pvalue, usedlag, alpha, beta, collinear):
        arr.flags.writeable = False
    return EngleGrangerBatch(
        stat=stat, pvalue=pvalue, usedlag=usedlag, alpha=alpha, beta=beta,
        collinear=collinear, nobs=t, maxlag=lag,
        critical_values=(float(crit[0]), float(crit[1]), float(crit[2])),
        exact_fallbacks=fallbacks,
    )
