"""Synthetic but realistic Binance-like trade tapes for the benchmarks (fixed seed).

Why synthetic: the real recorded tape in ``sample_data/`` covers 10.8 minutes, and the
benchmarks need a whole day (86,400 one-second bars) of ticks per symbol.

Model (one day at 1 s resolution, then ticks inside each second):

* a common factor ``f`` (ETH-like log random walk, 1.2 bp per second, i.e. ~3.5 % a day);
* every symbol ``s``: ``ln P_s = ln P0_s + beta_s * f + u_s`` with ``u_s`` an
  Ornstein-Uhlenbeck residual (half-life 30 min, stationary sd 20 bp): the symbols are
  **cointegrated** random walks (BTC: beta 0.8 on the ETH factor, so ~1.1 bp a second);
* trade counts per second: Poisson with an intraday rate of 10-40 trades/s (slow
  sinusoid times a persistent AR(1) activity factor, clipped to [10, 40]); optionally a
  flat rate (40/s) after ``live_from`` for the live replay;
* trade times: uniform integer ms inside the second, sorted (ties allowed, as when one
  taker order fills several makers in the same ms); trade ids consecutive;
* price: the mid interpolated (in log) between the second's end points; the trade is at
  the bid (``floor(mid / tick) * tick``) when ``buyer_is_maker`` (taker sold) and one
  tick higher (the ask) when the taker bought; ~3 % of trades sweep 1-3 more ticks.
  Prices are exact multiples of the tick (0.01) as ``float(str)`` would parse them;
* qty: lognormal on the symbol's lot step (BTC median 0.002, ETH 0.03), at least 1 lot;
* ``buyer_is_maker``: fair coin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY_START_MS = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC (day after the sample tape)
SEED = 7


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    p0: float
    beta: float  # loading on the common log factor
    tick: float
    lot: float
    qty_median: float
    first_id: int


SPECS = (
    SymbolSpec("BTCUSDT", 61_000.0, 0.8, 0.01, 1e-5, 0.002, 3_735_703_163),
    SymbolSpec("ETHUSDT", 2_680.0, 1.0, 0.01, 1e-4, 0.03, 1_520_553_440),
    SymbolSpec("SOLUSDT", 152.0, 1.3, 0.01, 1e-3, 1.5, 801_000_000),
    SymbolSpec("BNBUSDT", 510.0, 0.7, 0.01, 1e-3, 0.2, 902_000_000),
    SymbolSpec("LTCUSDT", 61.0, 1.1, 0.01, 1e-3, 1.0, 403_000_000),
)


@dataclass(frozen=True)
class Ticks:
    """One symbol's ticks, sorted by (time_ms, trade_id); numpy columns."""

    symbol: str
    time_ms: np.ndarray  # int64
    trade_id: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_is_maker: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.time_ms)

    def between(self, t0: int, t1: int) -> Ticks:
        """Ticks with ``t0 <= time_ms < t1``."""
        i, j = np.searchsorted(self.time_ms, [t0, t1], side="left")
        return Ticks(self.symbol, self.time_ms[i:j], self.trade_id[i:j],
                     self.price[i:j], self.qty[i:j], self.buyer_is_maker[i:j])


class Market:
    """Latent 1 s log prices of several cointegrated symbols (generated up front)."""

    def __init__(self, seconds: int, n_symbols: int = 2, seed: int = SEED, *,
                 live_from: int | None = None, live_rate: float = 40.0) -> None:
        """``seconds`` of market; from second ``live_from`` on, every symbol trades at a
        flat ``live_rate`` trades/s (Poisson), the load the live benchmark replays."""
        self.seconds = int(seconds)
        self.specs = SPECS[:n_symbols]
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        n = self.seconds + 1  # end points of every second
        factor = np.concatenate(([0.0], np.cumsum(rng.normal(0.0, 1.2e-4, n - 1))))
        phi = math.exp(-math.log(2.0) / 1800.0)
        sd_u = 20e-4
        self.log_mid: dict[str, np.ndarray] = {}
        for spec in self.specs:
            eps = rng.normal(0.0, sd_u * math.sqrt(1.0 - phi * phi), n)
            u = _ar1(eps, phi, rng.normal(0.0, sd_u))
            self.log_mid[spec.symbol] = math.log(spec.p0) + spec.beta * factor + u
        # trade-rate pattern per symbol: sinusoid x persistent activity, in [10, 40]/s
        self.rate: dict[str, np.ndarray] = {}
        s = np.arange(self.seconds)
        for k, spec in enumerate(self.specs):
            act = _ar1(rng.normal(0.0, 0.35 * math.sqrt(1 - 0.995**2), self.seconds),
                       0.995, 0.0)
            base = 24.0 * np.exp(0.3 * np.sin(2 * np.pi * s / 86_400 + 1.3 * k) + act)
            rate = np.clip(base, 10.0, 40.0)
            if live_from is not None:
                rate[live_from:] = live_rate
            self.rate[spec.symbol] = rate

    def ticks(self, symbol: str) -> Ticks:
        """All ticks of ``symbol`` over the generated seconds (deterministic)."""
        spec = next(s for s in self.specs if s.symbol == symbol)
        k = [s.symbol for s in self.specs].index(symbol)
        rng = np.random.default_rng([SEED, 1000 + k])  # independent per symbol
        counts = rng.poisson(self.rate[symbol])
        sec = np.repeat(np.arange(self.seconds, dtype=np.int64), counts)
        n = len(sec)
        off = rng.integers(0, 1000, n)
        key = sec * 1000 + off
        order = np.argsort(key, kind="stable")
        key = key[order]
        sec = sec[order]
        frac = (key - sec * 1000) / 1000.0
        lm = self.log_mid[symbol]
        mid = np.exp(lm[sec] + frac * (lm[sec + 1] - lm[sec]))
        maker = rng.random(n) < 0.5
        steps = np.floor(mid / spec.tick)  # bid, in ticks
        steps += ~maker  # taker bought: lifted the ask
        sweep = rng.random(n) < 0.03
        extra = rng.integers(1, 4, n) * sweep
        steps += np.where(maker, -extra, extra)
        price = steps / round(1 / spec.tick)  # k / 100: the double float("x.yz") gives
        lots = np.maximum(1.0, np.round(
            rng.lognormal(math.log(spec.qty_median / spec.lot), 1.4, n)))
        qty = lots / round(1 / spec.lot)  # exact lot multiples, as parsed from text
        ids = spec.first_id + np.arange(n, dtype=np.int64)
        return Ticks(symbol, DAY_START_MS + key, ids, price, qty, maker)


def _ar1(eps: np.ndarray, phi: float, x0: float) -> np.ndarray:
    """x_t = phi x_{t-1} + eps_t, vectorised via a scaled cumsum in blocks (stable)."""
    out = np.empty_like(eps)
    prev = x0
    block = 2048  # phi^-block stays small for phi >= 0.99
    powers = phi ** np.arange(1, block + 1)
    for i in range(0, len(eps), block):
        e = eps[i:i + block]
        p = powers[: len(e)]
        # x_j = phi^(j+1) prev + sum_{m<=j} phi^(j-m) e_m = p_j (prev + sum_m e_m / p_m)
        out[i:i + block] = p * (prev + np.cumsum(e / p))
        prev = out[i + len(e) - 1]
    return out
