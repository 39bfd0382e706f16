"""Kalman hedge ratio: a time-varying ``A = alpha_t + beta_t * B``, no look-ahead.

Model
-----
State ``theta_t = [beta_t, alpha_t]`` follows a random walk, observed through leg A
(``y`` is leg A and ``x`` leg B in the coordinates below)::

    theta_t = theta_{t-1} + w_t,           w_t ~ N(0, Q),  Q = delta / (1 - delta) * I
    y_t = beta_t * x_t + alpha_t + v_t,    v_t ~ N(0, R),  R = obs_var

Predict ``P <- P + Q``; innovation ``e_t = y_t - (beta * x_t + alpha)``; its variance
``S_t = H P H' + R`` with ``H = [x_t, 1]``; gain ``K = P H' / S_t``; update
``theta <- theta + K e_t``, ``P <- P - K S_t K'``. We report the **filtered** state
``theta_{t|t}`` (it uses bars ``<= t``), never a smoothed one (which uses the future).

Coordinates (a documented modelling choice)
--------------------------------------------
``Q = q * I`` only makes sense if both state components act on the observation on
comparable scales, and ``R`` only has a portable default if it is unit-free. So the
filter runs on both legs expressed in **basis points from their first bar**::

    prices="raw":  y = 1e4 * (A - A_0) / A_0        x = 1e4 * (B - B_0) / B_0
    prices="log":  y = 1e4 * (a - a_0)              x = 1e4 * (b - b_0)   (a = ln A)

(raw relative changes and log changes are nearly equal, so the same defaults fit both).
The filter state ``[beta_n, alpha_n]`` maps back exactly to the caller's price scale::

    beta  = beta_n * s_A / s_B            (s = |P_0| for raw, 1 for log)
    alpha = A_0 - beta * B_0 + alpha_n * s_A / 1e4

so ``A - alpha - beta * B = (s_A / 1e4) * (y - alpha_n - beta_n * x)`` exactly.

Defaults (:class:`KalmanParams`)
--------------------------------
* ``delta = 1e-4``: per-bar random-walk variance ``q = delta/(1-delta) ~ 1e-4``, i.e. a
  beta_n step of ~0.01 per bar and an intercept step of ~0.01 bp per bar.
* ``obs_var = 1.0`` bp^2: about the variance of one 1 s BTC/ETH return (1-1.3 bp). The
  ratio ``q / R`` sets the adaptation speed; raise ``obs_var`` (or lower ``delta``) for
  a slower, more OLS-like beta: ``delta=1e-8`` with ``obs_var`` near the residual
  variance in bp^2 gives an almost static one (the known-truth test uses that).
* Prior ``theta_0 = [0, 0]``, ``P_0 = p0 * I`` with ``p0 = 100`` (a diffuse prior: sd 10
  on an elasticity of order 1, 10 bp on the intercept). The first bar is ``y = x = 0``
  by construction and only pins the intercept, so beta is reported from the **second
  bar** on (:data:`KALMAN_MIN_BARS`); expect a short warm-up. Keep ``p0 / obs_var``
  below ~1e8: the first covariance update ``P - P H' H P / S`` cancels ``log10(p0 / R)``
  digits (in any algebraic form of the update).

Speed: scalar 2x2 arithmetic in plain Python, ~1 us per bar; the batch
:func:`kalman_hedge` and the incremental :class:`KalmanHedge` share :func:`_step`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from analytics.errors import InsufficientData
from analytics.rolling import BetaAlpha, as_float_array

log = logging.getLogger(__name__)

BPS = 1e4  # filter coordinates are basis points from the first bar
KALMAN_MIN_BARS = 2
KALMAN_PRICES = ("raw", "log")

__all__ = [
    "BPS",
    "KALMAN_MIN_BARS",
    "KalmanFit",
    "KalmanHedge",
    "KalmanParams",
    "kalman_hedge",
]


@dataclass(frozen=True, slots=True)
class KalmanParams:
    """Kalman hedge settings (units: basis points from the first bar, see module doc).

    Parameters
    ----------
    delta : float
        ``0 < delta < 1``; transition covariance ``Q = delta / (1 - delta) * I``.
    obs_var : float
        Observation noise variance ``R`` in bp^2 (> 0).
    p0 : float
        Prior variance of both states, ``P_0 = p0 * I`` (> 0), prior mean ``[0, 0]``.
    """

    delta: float = 1e-4
    obs_var: float = 1.0
    p0: float = 100.0

    def __post_init__(self) -> None:
        if not (isinstance(self.delta, int | float) and 0.0 < self.delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        r = self.obs_var
        if not (isinstance(r, int | float) and 0.0 < r < math.inf):
            raise ValueError(f"obs_var must be a finite float > 0, got {r!r}")
        if not (isinstance(self.p0, int | float) and 0.0 < self.p0 < math.inf):
            raise ValueError(f"p0 must be a finite float > 0, got {self.p0!r}")

    @property
    def trans_var(self) -> float:
        """``q = delta / (1 - delta)``, the diagonal of ``Q``."""
        return self.delta / (1.0 - self.delta)


def _step(
    beta: float,
    alpha: float,
    p11: float,
    p12: float,
    p22: float,
    x: float,
    y: float,
    q: float,
    r: float,
) -> tuple[float, float, float, float, float, float, float]:
    """One predict+update of the 2-state filter; returns state, P, innovation, S."""
    p11 += q
    p22 += q
    e = y - beta * x - alpha
    h1 = p11 * x + p12  # P H'
    h2 = p12 * x + p22
    s = x * h1 + h2 + r  # H P H' + R
    k1 = h1 / s
    k2 = h2 / s
    return (
        beta + k1 * e,
        alpha + k2 * e,
        p11 - k1 * h1,  # P - K S K' = P - (P H')(H P) / S
        p12 - k1 * h2,
        p22 - k2 * h2,
        e,
        s,
    )


def _scales(a0: float, b0: float, prices: str) -> tuple[float, float]:
    if prices == "log":
        return 1.0, 1.0
    if prices != "raw":
        raise ValueError(f"prices must be one of {KALMAN_PRICES}, got {prices!r}")
    if a0 <= 0.0 or b0 <= 0.0:
        raise ValueError(f"raw prices must be positive, got a={a0!r}, b={b0!r}")
    return a0, b0


class KalmanHedge:
    """Incremental Kalman hedge ratio (filtered state, O(1) per bar, bounded state).

    Parameters
    ----------
    params : KalmanParams
    prices : {"raw", "log"}
        What ``a`` and ``b`` are: raw positive prices or natural-log prices (sets the
        basis-point coordinates, module docstring).

    ``update(a, b)`` returns :class:`~analytics.rolling.BetaAlpha` in the caller's price
    scale from the second bar on (None on the first).
    """

    __slots__ = (
        "_params", "_prices", "_q", "_r", "_n", "_a0", "_b0", "_sa", "_sb",
        "_beta", "_alpha", "_p11", "_p12", "_p22", "_e", "_s", "_value",
    )  # fmt: skip

    def __init__(
        self, params: KalmanParams = KalmanParams(), *, prices: str = "raw"
    ) -> None:
        if not isinstance(params, KalmanParams):
            name = type(params).__name__
            raise ValueError(f"params must be KalmanParams, got {name}")
        if prices not in KALMAN_PRICES:
            raise ValueError(f"prices must be one of {KALMAN_PRICES}, got {prices!r}")
        self._params, self._prices = params, prices
        self._q, self._r = params.trans_var, float(params.obs_var)
        self._n = 0
        self._a0 = self._b0 = 0.0
        self._sa = self._sb = 1.0
        self._beta = self._alpha = 0.0
        self._p11 = self._p22 = float(params.p0)
        self._p12 = 0.0
        self._e = self._s = math.nan
        self._value: BetaAlpha | None = None

    @property
    def params(self) -> KalmanParams:
        return self._params

    @property
    def count(self) -> int:
        """Bars seen."""
        return self._n

    @property
    def value(self) -> BetaAlpha | None:
        """Filtered ``(beta, alpha)`` in the caller's price scale, None before bar 2."""
        return self._value

    @property
    def state(self) -> tuple[float, float]:
        """Filter state ``(beta_n, alpha_n)`` in basis-point coordinates."""
        return self._beta, self._alpha

    @property
    def P(self) -> tuple[tuple[float, float], tuple[float, float]]:  # noqa: N802
        """State covariance (basis-point coordinates) after the last update."""
        return (self._p11, self._p12), (self._p12, self._p22)

    @property
    def innovation(self) -> float:
        """Last one-step forecast error of A, in A's price scale (raw or log)."""
        return self._e * (self._sa / BPS)

    @property
    def innovation_var(self) -> float:
        """Variance ``S_t`` of the last innovation, in A's price scale squared."""
        return self._s * (self._sa / BPS) ** 2

    def update(self, a: float, b: float) -> BetaAlpha | None:
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"a and b must be finite, got a={a!r}, b={b!r}")
        if self._n == 0:
            self._sa, self._sb = _scales(a, b, self._prices)
            self._a0, self._b0 = a, b
        sa, sb = self._sa, self._sb
        (
            self._beta,
            self._alpha,
            self._p11,
            self._p12,
            self._p22,
            self._e,
            self._s,
        ) = _step(
            self._beta,
            self._alpha,
            self._p11,
            self._p12,
            self._p22,
            BPS * (b - self._b0) / sb,
            BPS * (a - self._a0) / sa,
            self._q,
            self._r,
        )
        self._n += 1
        if self._n < KALMAN_MIN_BARS:
            return None
        # same operation order as kalman_hedge, so batch and incremental agree bitwise
        beta = self._beta * (sa / sb)
        alpha = self._a0 - beta * self._b0 + self._alpha * (sa / BPS)
        self._value = BetaAlpha(beta, alpha)
        return self._value

    def absorb(self, a: object, b: object) -> None:
        """Step the filter through many bars at once, returning nothing.

        Exactly ``for x, y in zip(a, b): self.update(x, y)`` (the same :func:`_step` on
        the same floats), in a tight loop without per-bar objects: a tracked Kalman pair
        warms up on a day of history in tens of milliseconds instead of hundreds.
        """
        aa = as_float_array(a, "a")
        bb = as_float_array(b, "b")
        if len(aa) != len(bb):
            raise ValueError(f"a and b must have the same length, got {len(aa)} and {len(bb)}")
        if len(aa) == 0:
            return
        if not (np.isfinite(aa).all() and np.isfinite(bb).all()):
            raise ValueError("a and b must be finite")
        if self._n == 0:
            self._sa, self._sb = _scales(float(aa[0]), float(bb[0]), self._prices)
            self._a0, self._b0 = float(aa[0]), float(bb[0])
        sa, sb = self._sa, self._sb
        xs = (BPS * (bb - self._b0) / sb).tolist()
        ys = (BPS * (aa - self._a0) / sa).tolist()
        q, r, step = self._q, self._r, _step
        bn, an, p11, p12, p22 = self._beta, self._alpha, self._p11, self._p12, self._p22
        e = s = math.nan
        for x, y in zip(xs, ys):
            bn, an, p11, p12, p22, e, s = step(bn, an, p11, p12, p22, x, y, q, r)
        self._beta, self._alpha, self._p11, self._p12, self._p22 = bn, an, p11, p12, p22
        self._e, self._s = e, s
        self._n += len(xs)
        if self._n >= KALMAN_MIN_BARS:
            beta = self._beta * (sa / sb)
            alpha = self._a0 - beta * self._b0 + self._alpha * (sa / BPS)
            self._value = BetaAlpha(beta, alpha)


@dataclass(frozen=True, slots=True)
class KalmanFit:
    """Batch Kalman output; element ``t`` is the filtered state at bar ``t``.

    ``beta``/``alpha`` are NaN at bar 0 (the first bar only pins the intercept).
    ``innovation``/``innovation_var`` are in A's price scale (raw or log).
    """

    beta: np.ndarray
    alpha: np.ndarray
    innovation: np.ndarray
    innovation_var: np.ndarray
    params: KalmanParams
    prices: str


def kalman_hedge(
    a: object, b: object, params: KalmanParams = KalmanParams(), *, prices: str = "raw"
) -> KalmanFit:
    """Filtered Kalman hedge ratio of ``a`` on ``b`` at every bar (batch).

    Parameters
    ----------
    a, b : array_like
        Aligned prices of leg A and leg B (finite; positive when ``prices="raw"``).
    params : KalmanParams
    prices : {"raw", "log"}
        Whether ``a``/``b`` are raw prices or natural-log prices.

    Returns
    -------
    KalmanFit
        Equal, bar by bar, to feeding :class:`KalmanHedge` (same :func:`_step`).
    """
    aa = as_float_array(a, "a")
    bb = as_float_array(b, "b")
    if len(aa) != len(bb):
        raise ValueError(
            f"a and b must have the same length, got {len(aa)} and {len(bb)}"
        )
    if len(aa) < KALMAN_MIN_BARS:
        raise InsufficientData("Kalman hedge", KALMAN_MIN_BARS, len(aa))
    kf = KalmanHedge(params, prices=prices)
    n = len(aa)
    sa, sb = _scales(float(aa[0]), float(bb[0]), prices)
    ys = (BPS * (aa - aa[0]) / sa).tolist()
    xs = (BPS * (bb - bb[0]) / sb).tolist()
    q, r = kf._q, kf._r
    bn, an, p11, p12, p22 = kf._beta, kf._alpha, kf._p11, kf._p12, kf._p22
    beta_n = [0.0] * n
    alpha_n = [0.0] * n
    innov = [0.0] * n
    svar = [0.0] * n
    step = _step
    for i in range(n):
        bn, an, p11, p12, p22, e, s = step(bn, an, p11, p12, p22, xs[i], ys[i], q, r)
        beta_n[i], alpha_n[i], innov[i], svar[i] = bn, an, e, s
    beta = np.asarray(beta_n) * (sa / sb)
    alpha = aa[0] - beta * bb[0] + np.asarray(alpha_n) * (sa / BPS)
    beta[0] = alpha[0] = np.nan
    return KalmanFit(
        beta,
        alpha,
        np.asarray(innov) * (sa / BPS),
        np.asarray(svar) * (sa / BPS) ** 2,
        params,
        prices,
    )
