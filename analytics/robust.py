"""Exact robust line fits (Theil-Sen, Huber) over many trailing windows at once.

Both estimators fit ``y = alpha + beta * x`` on each window (``y`` = leg A, ``x`` = leg
B, as :mod:`analytics.hedge` defines them) and are computed **to the estimator's own
definition**, not to an optimiser's stopping rule, vectorised over a batch of windows.
The result of one window never depends on which other windows share its batch (every
reduction is per row and every iteration count is per window), so a live refit of one
window equals the batch value bit for bit.

Theil-Sen (textbook, Sen 1968)
------------------------------
::

    beta  = median { (y_j - y_i) / (x_j - x_i) : i < j, x_i != x_j }
    alpha = median { y_i - beta * x_i }

on the window as given (no subsampling, no standardising); pairs with tied ``x`` (many
on 1 s bars: carried-forward closes) are *excluded*, not counted as zero or as
minimum-norm solutions. This is ``scipy.stats.theilslopes(y, x, method="joint")``.
If every ``x`` of the window is equal, no slope exists: NaN.

Windows longer than ``THEILSEN_MATRIX_MAX_WINDOW`` (1,024) are done one at a time by
a bracketed selection with bounded memory (:func:`_theilsen_slope_bracketed`), same
value. Vectorised: the full ``w x w`` slope matrix of a chunk of windows
(``s_ij = (y_j - y_i)/(x_j - x_i)``, each pair twice, which leaves the median
unchanged). Tied entries are filled with ``-inf`` below the diagonal, ``+inf`` above
it, and the diagonal with ``floor(w/2)`` times ``-inf`` and the rest ``+inf``: then,
whatever the number ``m`` of tied pairs, exactly ``m + floor(w/2)`` entries sort before
the ``2 (P - m)`` valid ones (``P = w (w-1) / 2``), so the two middle valid entries are
always at ranks ``floor(w/2) + P - 1`` and ``floor(w/2) + P``: one
``np.partition`` with two fixed ``kth`` per chunk, exact. Cost ~``w^2`` per window.

Huber (concomitant scale, Huber 1981 sec. 7.7; scikit-learn's objective)
-------------------------------------------------------------------------
``(alpha, beta, sigma)`` minimise, over ``sigma > 0``::

    L = sum_i sigma * (1 + H_eps((y_i - alpha - beta x_i) / sigma))
    H_eps(u) = u^2                      if |u| <= eps
             = 2 eps |u| - eps^2        otherwise

with ``eps = 1.35`` (95 % efficiency under Gaussian noise). ``L`` is jointly convex
(a sum of perspectives of a convex function) and continuously differentiable for
``sigma > 0``, so a point with zero gradient is the global minimum. Minimised by
Newton's method with the exact piecewise Hessian and a backtracking (Armijo) line
search, on the window standardised (``x, y`` centred and divided by their population
sd; ``L`` is affine-equivariant, so mapping back is exact algebra), from OLS and a MAD
scale, until a step changes nothing (gradient at rounding level; typically 5-10
iterations). ``sigma`` is the robust scale of the residuals in ``y`` units.

Degenerate windows (NaN, said so in the methodology): ``x`` constant (no slope), or
the infimum reached only as ``sigma -> 0``: that happens when at least
``n (1 - 1/eps^2)`` (~45 %) of the points lie exactly on one line (then
``dL/dsigma >= 0`` at ``sigma = 0``), and the objective degenerates to least absolute
deviations, whose minimiser need not be unique and has no scale. A Newton iterate that
heads to ``sigma = 0`` where that condition fails is restarted from the exact best
``sigma`` for its line, so only true boundary minima are NaN. On the recorded tape
(1 s, BTC/ETH) that is 25 of 641 windows at w = 10 (A flat for half the window) and none
at w >= 20. No convergence in ``HUBER_MAX_ITER`` steps is NaN too (never seen).
Exactly collinear windows give that line; ``y`` constant gives ``beta = 0``,
``alpha = y``, like OLS.

Refit schedule (anchored to bar time)
-------------------------------------
A robust hedge is refitted at bar ``t`` when the bucket index ``k_t = ts_t // tf`` has
reached a new multiple of ``step`` since the previous bar
(``k_t // step != k_{t-1} // step``; with gaps, at the first bar after each multiple)
and the window ``t-w+1 .. t`` is full; in between the last fit is held (it used bars
``<= t`` only: trailing). ``step`` (:func:`refit_step`) depends on the window and the
estimator only, never on how much history is present, so the figure at a bar depends
only on the bars up to it and the selection, whoever asks and whenever. ``step`` bounds
the amortised cost per bar: ``step = ceil(fit cost / 8 µs)`` with the fit cost
measured (:func:`fit_cost_us`: Theil-Sen ~``w^2``, Huber ~``w`` per Newton iteration).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Huber threshold in units of the scale (95 % Gaussian efficiency).
HUBER_EPSILON = 1.35
#: Newton steps before a Huber window is declared not converged (NaN).
HUBER_MAX_ITER = 100
#: A Huber scale below this (standardised ``y`` has sd 1) is the sigma -> 0 boundary.
HUBER_SIGMA_FLOOR = 1e-10
#: Refit schedule: a window fit's cost (µs, measured with ``benchmarks.analytics`` on
#: the project's 2-core box under load) and the amortised budget per bar it must fit in
#: (8 µs/bar: a day of 1 s bars in ~0.7 s whatever the window).
THEILSEN_US_PER_PAIR_ENTRY = 0.011  # x w^2 entries of the slope matrix
HUBER_US_PER_FIT = 20.0
HUBER_US_PER_POINT = 0.2
REFIT_BUDGET_US_PER_BAR = 8.0
#: Theil-Sen windows above this skip the w x w matrix (memory ~ 18 w^2 bytes) for a
#: bracketed selection over blocks of rows (:func:`_theilsen_slope_bracketed`: memory
#: ~ a block plus a few % of the pairs; w = 3600 in ~0.1 s).
THEILSEN_MATRIX_MAX_WINDOW = 1_024
#: Pair slopes computed per block in the bracketed selection, and its bracket margin
#: in sample ranks (~sd of a sample rank: sqrt(sample size) / 2).
BRACKET_BLOCK = 1 << 20
BRACKET_MARGIN_SD = 5.0
BRACKET_MARGIN_MIN = 10
#: Elements per vectorised chunk (bounds the temporary memory to ~tens of MB).
CHUNK_ELEMENTS = 1_000_000
#: Huber iterates many small passes: chunks that stay in cache are faster.
HUBER_CHUNK_ELEMENTS = 32_768

__all__ = [
    "HUBER_EPSILON",
    "fit_cost_us",
    "huber_fits",
    "refit_due",
    "refit_step",
    "theilsen_fits",
    "window_fits",
]


def fit_cost_us(window: int, method: str) -> float:
    """Estimated µs of one window fit: Theil-Sen ``0.011 w^2``, Huber
    ``20 + 0.2 w`` (Newton, ~8 iterations of O(w)); 0 for anything else."""
    w = int(window)
    if method == "theilsen":
        return THEILSEN_US_PER_PAIR_ENTRY * w * w
    if method == "huber":
        return HUBER_US_PER_FIT + HUBER_US_PER_POINT * w
    return 0.0


def refit_step(window: int, method: str) -> int:
    """Buckets between robust refits: a function of the selection only.

    ``ceil(fit_cost_us(w, method) / 8 µs)``, so the amortised cost per bar is bounded
    whatever the window: Theil-Sen w = 20: 1, 30: 2, 60: 5, 120: 20, 200: 55;
    Huber w = 20: 3, 60: 4, 120: 6, 200: 8; OLS and Kalman: 1.
    """
    cost = fit_cost_us(window, method)
    return max(1, math.ceil(cost / REFIT_BUDGET_US_PER_BAR - 1e-9))


def refit_due(buckets: np.ndarray, window: int, step: int) -> np.ndarray:
    """Bars at which the schedule refits (module docstring).

    ``buckets`` are the bars' bucket indices (``ts // tf``, strictly increasing; a
    bar's position when no bar time is known). True at ``t >= w - 1`` where
    ``buckets[t] // step`` differs from the previous bar's.
    """
    k = np.asarray(buckets, dtype=np.int64) // int(step)
    due = np.ones(len(k), dtype=bool)
    due[1:] = k[1:] != k[:-1]
    due[: window - 1] = False
    return due


# ------------------------------------------------------------------------ Theil-Sen


def _theilsen_low(w: int) -> np.ndarray:
    """Entries of the ``w x w`` slope matrix filled with ``-inf`` when tied: below the
    diagonal, and the first ``floor(w/2)`` diagonal entries (the rest get ``+inf``)."""
    low = np.tri(w, w, -1, dtype=bool)
    d = np.arange(w // 2)
    low[d, d] = True
    return low.ravel()


def theilsen_fits(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook Theil-Sen ``(beta, alpha)`` of each row of ``y`` on the same row of ``x``.

    ``y, x`` are ``(m, w)`` float arrays (one window per row). NaN where a row's ``x``
    is constant. Equal to ``scipy.stats.theilslopes(y, x, method="joint")`` per row.
    """
    m, w = x.shape
    p = w * (w - 1) // 2
    kth = (w // 2 + p - 1, w // 2 + p)
    if w > THEILSEN_MATRIX_MAX_WINDOW:
        beta = np.array([_theilsen_slope_bracketed(y[i], x[i]) for i in range(m)])
        with np.errstate(invalid="ignore"):
            return beta, np.median(y - beta[:, None] * x, axis=1)
    low = _theilsen_low(w)
    beta = np.empty(m)
    alpha = np.empty(m)
    rows = max(1, CHUNK_ELEMENTS // (w * w))
    for lo in range(0, m, rows):
        yc, xc = y[lo : lo + rows], x[lo : lo + rows]
        c = len(xc)
        dx = (xc[:, None, :] - xc[:, :, None]).reshape(c, w * w)
        s = (yc[:, None, :] - yc[:, :, None]).reshape(c, w * w)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(s, dx, out=s)
        tied = dx == 0.0
        np.copyto(s, np.inf, where=tied)
        np.logical_and(tied, low, out=tied)
        np.copyto(s, -np.inf, where=tied)
        s.partition(kth, axis=1)
        with np.errstate(invalid="ignore"):  # -inf + inf where x is constant: NaN
            med = 0.5 * (s[:, kth[0]] + s[:, kth[1]])
        med[xc.min(axis=1) == xc.max(axis=1)] = np.nan
        beta[lo : lo + c] = med
        alpha[lo : lo + c] = np.median(yc - med[:, None] * xc, axis=1)
    return beta, alpha


def _pair_slopes(y: np.ndarray, x: np.ndarray, i0: int, i1: int, rows: slice | None = None):
    """Slopes ``(y_j - y_i) / (x_j - x_i)`` of the pairs ``i < j`` with ``x_i != x_j``,
    for ``i`` in ``[i0, i1)`` (every ``rows.step``-th only if ``rows`` is given)."""
    idx = np.arange(i0, i1)[rows] if rows is not None else np.arange(i0, i1)
    dx = x[None, :] - x[idx, None]
    keep = (np.arange(len(x))[None, :] > idx[:, None]) & (dx != 0.0)
    return (y[None, :] - y[idx, None])[keep] / dx[keep]


def _theilsen_slope_bracketed(y: np.ndarray, x: np.ndarray) -> float:
    """Textbook Theil-Sen slope of one long window with memory ~ w, exactly.

    The two middle order statistics of the valid pair slopes are bracketed by order
    statistics of a regular sample of rows (margin ~5 sample standard deviations of
    the rank); one blocked pass then counts the slopes below the bracket and keeps
    those inside it, which are partitioned. The counts check the bracket; if it missed,
    the missed side is opened to infinity and the pass repeated. Same value as
    partitioning all slopes at once.
    """
    w = len(x)
    _, mult = np.unique(x, return_counts=True)
    valid = w * (w - 1) // 2 - int((mult * (mult - 1) // 2).sum())
    if valid == 0:
        return math.nan
    k1, k2 = (valid - 1) // 2, valid // 2
    stride = max(1, (w * w // 2) // 20_000)  # a sample of ~20,000 slopes
    sample = np.sort(_pair_slopes(y, x, 0, w, slice(None, None, stride)))
    ns = len(sample)
    margin = int(BRACKET_MARGIN_SD * math.sqrt(max(ns, 1))) + BRACKET_MARGIN_MIN
    lo = sample[max(0, (k1 * ns) // valid - margin)] if ns else -math.inf
    hi = sample[min(ns - 1, -(-(k2 * ns) // valid) + margin)] if ns else math.inf
    block = max(1, BRACKET_BLOCK // w)
    while True:
        below, band = 0, []
        for i0 in range(0, w, block):
            sl = _pair_slopes(y, x, i0, min(w, i0 + block))
            below += int(np.count_nonzero(sl < lo))
            band.append(sl[(sl >= lo) & (sl <= hi)])
        vals = np.concatenate(band)
        if below > k1:
            lo = -math.inf
        elif k2 >= below + len(vals):
            hi = math.inf
        else:
            vals.partition((k1 - below, k2 - below))
            return 0.5 * (vals[k1 - below] + vals[k2 - below])


# ---------------------------------------------------------------------------- Huber


def huber_objective(
    y: np.ndarray, x: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    sigma: np.ndarray, epsilon: float = HUBER_EPSILON,
) -> np.ndarray:  # fmt: skip
    """``L`` of the module docstring for each row (``sigma > 0``)."""
    with np.errstate(over="ignore", invalid="ignore"):  # far line-search trials: inf
        r = y - alpha[:, None] - beta[:, None] * x
        ar = np.abs(r)
        s = sigma[:, None]
        q = np.where(ar > epsilon * s, 2.0 * epsilon * ar - s * epsilon**2, r * r / s)
        return x.shape[1] * sigma + q.sum(axis=1)


def _newton(
    ys: np.ndarray, xs: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Minimise ``L`` per row of standardised windows -> (alpha, beta, sigma, ok)."""
    m, w = xs.shape
    beta = (xs * ys).mean(axis=1)  # OLS on standardised data (alpha = 0)
    alpha = np.zeros(m)
    r = ys - beta[:, None] * xs
    sigma = np.median(np.abs(r), axis=1) / 0.6745
    rms = np.sqrt((r * r).mean(axis=1))
    sigma = np.where(sigma > 0.0, sigma, rms)
    ok = np.zeros(m, dtype=bool)
    ok[sigma == 0.0] = True  # y is exactly a line in x: that line, sigma 0
    act = np.flatnonzero(sigma > 0.0)
    eye = np.eye(3)
    # rows whose last Newton step failed (the Hessian can be near-singular where the
    # quadratic zone holds < 2 distinct x) take one preconditioned gradient step
    gmode = np.zeros(m, dtype=bool)
    lcur = np.full(m, np.nan)  # L at the current point (NaN: not known yet)
    for _ in range(HUBER_MAX_ITER):
        if act.size == 0:
            break
        y, x = ys[act], xs[act]
        a, b, s = alpha[act], beta[act], sigma[act]
        u = (y - a[:, None] - b[:, None] * x) / s[:, None]
        inl = np.abs(u) <= eps
        fin = inl.astype(np.float64)
        uin = np.where(inl, u, 0.0)
        psi = np.where(inl, u, eps * np.sign(u))
        n_out = w - fin.sum(axis=1)
        g = np.stack(
            [-2.0 * psi.sum(axis=1), -2.0 * (psi * x).sum(axis=1),
             w - (uin * uin).sum(axis=1) - n_out * eps**2], axis=1,
        )  # fmt: skip
        two_s = (2.0 / s)[:, None]
        fx = fin * x
        ux = uin * x
        h = np.empty((len(act), 3, 3))
        h[:, 0, 0] = fin.sum(axis=1)
        h[:, 0, 1] = h[:, 1, 0] = fx.sum(axis=1)
        h[:, 1, 1] = (fx * x).sum(axis=1)
        h[:, 0, 2] = h[:, 2, 0] = uin.sum(axis=1)
        h[:, 1, 2] = h[:, 2, 1] = ux.sum(axis=1)
        h[:, 2, 2] = (uin * uin).sum(axis=1)
        h *= two_s[:, :, None]
        # a tiny ridge keeps windows with < 2 distinct inlier x solvable (gradient-like)
        h += eye * (1e-12 * np.abs(h).max(axis=(1, 2)) + 1e-300)[:, None, None]
        d = -np.linalg.solve(h, g[:, :, None])[:, :, 0]
        slope = (g * d).sum(axis=1)
        grad = gmode[act] | ~(slope < 0.0)
        if grad.any():
            diag = np.maximum(np.diagonal(h, axis1=1, axis2=2)[grad], (2.0 / s[grad])[:, None])
            d[grad] = -g[grad] / diag
        l0 = lcur[act]
        unknown = np.isnan(l0)
        if unknown.any():
            l0[unknown] = huber_objective(y[unknown], x[unknown], a[unknown], b[unknown],
                                          s[unknown], eps)  # fmt: skip
        t = np.ones(len(act))
        shrink = d[:, 2] < 0.0  # keep sigma > 0: at most 3/4 of the way to 0
        t[shrink] = np.minimum(1.0, -0.75 * s[shrink] / d[shrink, 2])
        t_full = t.copy()
        slope = (g * d).sum(axis=1)
        l1 = huber_objective(y, x, a + t * d[:, 0], b + t * d[:, 1], s + t * d[:, 2], eps)
        # rows whose Newton decrement is below L's rounding skip the line search
        bad = np.flatnonzero((l1 > l0 + 1e-4 * t * slope) & (-slope > 1e-13 * np.abs(l0)))
        for _ls in range(40):  # backtrack only the rows that need it
            if bad.size == 0:
                break
            t[bad] *= 0.5
            tb = t[bad]
            l1[bad] = huber_objective(
                y[bad], x[bad], a[bad] + tb * d[bad, 0], b[bad] + tb * d[bad, 1],
                s[bad] + tb * d[bad, 2], eps,
            )  # fmt: skip
            bad = bad[l1[bad] > l0[bad] + 1e-4 * t[bad] * slope[bad]]
        accept = l1 < l0
        # Near the minimum L changes below its rounding: take the plain Newton step
        # there if it lowers the gradient (Newton converges quadratically).
        flat = ~accept & ~grad
        if flat.any():
            tf = t_full[flat]
            df = d[flat]
            af, bf, sf = a[flat] + tf * df[:, 0], b[flat] + tf * df[:, 1], s[flat] + tf * df[:, 2]
            g1 = _gradient(y[flat], x[flat], af, bf, sf, eps)
            lower = np.abs(g1).max(axis=1) < np.abs(g[flat]).max(axis=1)
            t[flat] = np.where(lower, tf, 0.0)
            accept[flat] = lower
            l1[np.flatnonzero(flat)[lower]] = np.nan  # L of a plain Newton step: unknown
        na, nb, ns = a + t * d[:, 0], b + t * d[:, 1], s + t * d[:, 2]
        lcur[act] = np.where(accept, l1, l0)
        alpha[act] = np.where(accept, na, a)
        beta[act] = np.where(accept, nb, b)
        sigma[act] = np.where(accept, ns, s)
        still = (
            (np.abs(na - a) > 1e-15 * (1.0 + np.abs(na)))
            | (np.abs(nb - b) > 1e-15 * (1.0 + np.abs(nb)))
            | (np.abs(ns - s) > 1e-15 * ns)
        )
        g_small = np.abs(g).max(axis=1) <= 1e-9 * w
        retry = ~accept & ~grad & ~g_small  # Newton failed far from the minimum
        gmode[act] = retry
        done = (~accept & ~retry) | (accept & ~still)
        at_zero = sigma[act] < HUBER_SIGMA_FLOOR
        if at_zero.any():
            # sigma -> 0 is the minimum only if L cannot drop by raising sigma from 0:
            # n - (points off the line) eps^2 >= 0. Otherwise restart from the exact
            # best sigma for this line (the Newton model of L in sigma, ~Q/sigma, can
            # overshoot towards 0).
            idx = np.flatnonzero(at_zero)
            z = act[idx]
            rz = ys[z] - alpha[z, None] - beta[z, None] * xs[z]
            off = (np.abs(rz) > 1e-12).sum(axis=1)
            escape = w - off * eps**2 < 0.0
            if escape.any():
                sigma[z[escape]] = _best_sigma(rz[escape], eps)
                lcur[z[escape]] = np.nan
                at_zero[idx[escape]] = False
                done[idx[escape]] = False
                gmode[z[escape]] = False
        ok[act[done & ~at_zero]] = True
        act = act[~(done | at_zero)]
    # certify: the gradient at the returned point is at rounding level (convex L)
    g = _gradient(ys, xs, alpha, beta, np.where(sigma > 0.0, sigma, 1.0), eps)
    ok &= (sigma == 0.0) | (np.abs(g).max(axis=1) <= 1e-9 * w)
    return alpha, beta, sigma, ok


def _best_sigma(r: np.ndarray, eps: float) -> np.ndarray:
    """argmin over sigma > 0 of L for fixed residuals ``r`` (rows), exactly.

    With the ``k`` largest ``|r|`` beyond ``eps sigma``, ``dL/dsigma = 0`` gives
    ``sigma_k^2 = (sum of the other r^2) / (n - k eps^2)``; L is convex in sigma, so
    the best is the candidate with the least L.
    """
    m, n = r.shape
    ar = np.sort(np.abs(r), axis=1)
    ssq = np.cumsum(ar * ar, axis=1)  # ssq[:, j] = sum of the j+1 smallest squares
    k = np.arange(n)
    denom = n - k * eps**2
    inner = ssq[:, n - 1 - k]  # the n-k smallest
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = np.where((denom > 0.0) & (inner > 0.0), np.sqrt(inner / denom), np.nan)
    best = np.full(m, np.nan)
    best_l = np.full(m, np.inf)
    for j in range(n):
        c = cand[:, j]
        good = np.isfinite(c)
        if not good.any():
            continue
        lj = np.full(m, np.inf)
        lj[good] = huber_objective(r[good], np.zeros_like(r[good]), np.zeros(good.sum()),
                                   np.zeros(good.sum()), c[good], eps)  # fmt: skip
        take = lj < best_l
        best[take], best_l[take] = c[take], lj[take]
    return best


def _gradient(ys, xs, alpha, beta, sigma, eps) -> np.ndarray:
    """dL/d(alpha, beta, sigma) per row (standardised windows)."""
    w = xs.shape[1]
    u = (ys - alpha[:, None] - beta[:, None] * xs) / sigma[:, None]
    inl = np.abs(u) <= eps
    psi = np.where(inl, u, eps * np.sign(u))
    uin = np.where(inl, u, 0.0)
    n_out = w - inl.sum(axis=1)
    return np.stack(
        [-2.0 * psi.sum(axis=1), -2.0 * (psi * xs).sum(axis=1),
         w - (uin * uin).sum(axis=1) - n_out * eps**2], axis=1,
    )  # fmt: skip


def huber_fits(
    y: np.ndarray, x: np.ndarray, epsilon: float = HUBER_EPSILON
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Huber ``(beta, alpha, sigma)`` of each row of ``y`` on the same row of ``x``.

    ``y, x`` are ``(m, w)`` float arrays. NaN on degenerate rows (module docstring).
    """
    m, w = x.shape
    beta = np.full(m, np.nan)
    alpha = np.full(m, np.nan)
    sigma = np.full(m, np.nan)
    mx, sx = x.mean(axis=1), x.std(axis=1)
    my, sy = y.mean(axis=1), y.std(axis=1)
    x_var = (sx > 0.0) & (x.min(axis=1) != x.max(axis=1))
    y_flat = y.min(axis=1) == y.max(axis=1)
    flat = x_var & y_flat
    beta[flat], alpha[flat], sigma[flat] = 0.0, y[flat, 0], 0.0
    rows = np.flatnonzero(x_var & ~y_flat)
    step = max(1, HUBER_CHUNK_ELEMENTS // w)
    for lo in range(0, len(rows), step):
        idx = rows[lo : lo + step]
        xs = (x[idx] - mx[idx, None]) / sx[idx, None]
        ys = (y[idx] - my[idx, None]) / sy[idx, None]
        a, b, s, ok = _newton(ys, xs, epsilon)
        bb = b * sy[idx] / sx[idx]
        beta[idx] = np.where(ok, bb, np.nan)
        alpha[idx] = np.where(ok, my[idx] + sy[idx] * a - bb * mx[idx], np.nan)
        sigma[idx] = np.where(ok, s * sy[idx], np.nan)
    return beta, alpha, sigma


# --------------------------------------------------------------------------- windows


def window_fits(
    a: np.ndarray, b: np.ndarray, ends: np.ndarray, window: int, method: str,
    epsilon: float = HUBER_EPSILON,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``(beta, alpha, r2)`` of ``a`` on ``b`` over the windows ending at ``ends``.

    ``r2`` is the in-sample ``1 - SSR / SST`` of each fitted line over its window.
    """
    ends = np.asarray(ends, dtype=np.int64)
    ya = sliding_window_view(a, window)[ends - (window - 1)]
    xb = sliding_window_view(b, window)[ends - (window - 1)]
    if method == "theilsen":
        beta, alpha = theilsen_fits(ya, xb)
    elif method == "huber":
        beta, alpha, _ = huber_fits(ya, xb, epsilon)
    else:
        raise ValueError(f"method must be 'huber' or 'theilsen', got {method!r}")
    resid = ya - alpha[:, None] - beta[:, None] * xb
    dev = ya - ya.mean(axis=1)[:, None]
    sst = (dev * dev).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0.0, 1.0 - (resid * resid).sum(axis=1) / sst, math.nan)
    return beta, alpha, r2
