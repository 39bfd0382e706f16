"""Per-symbol price statistics over a trailing window of bars (the KPI cards).

Window: the bars whose bucket starts in ``[now - lookback, now)``; ``now``
defaults to the end of the last bar (``ts[-1] + tf``), so a one-day lookback on
1 s bars covers exactly 86,400 buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics.bars import Bars
from analytics.errors import InsufficientData

__all__ = ["MIN_BARS_VOL", "PriceStats", "annualization_factor", "price_stats"]

#: Bars needed for realized volatility: two log returns, for a ddof=1 std.
MIN_BARS_VOL = 3
_YEAR_MS = 365 * 86_400_000  # crypto trades 24/7/365


def annualization_factor(tf_ms: int) -> float:
    """``sqrt(365 * 86_400_000 / tf_ms)``, sqrt(bars a year): per-bar std -> annual."""
    return math.sqrt(_YEAR_MS / tf_ms)


@dataclass(frozen=True, slots=True)
class PriceStats:
    """Trailing-window statistics of one symbol (see :func:`price_stats`).

    Prices are in quote currency, volumes in base, ``quote_volume`` in quote,
    ``change_pct`` in percent, ``realized_vol`` as an annualised fraction
    (0.45 = 45 %).
    """

    last: float
    change_pct: float
    high: float
    low: float
    vwap: float
    realized_vol: float
    volume: float
    quote_volume: float
    trades: int
    trades_per_min: float
    taker_buy_share: float
    n_bars: int
    start_ms: int  # first bar's bucket start in the window
    end_ms: int  # ``now``: the window's end


def price_stats(
    bars: Bars, *, now_ms: int | None = None, lookback_ms: int = 86_400_000
) -> PriceStats:
    """Summarise the bars of the last ``lookback_ms`` before ``now_ms``.

    Parameters
    ----------
    bars : Bars
        One symbol's bars, any timeframe.
    now_ms : int, optional
        End of the window (exclusive, on bucket starts). Default: the end of the
        last bar, ``bars.ts[-1] + bars.tf_ms``.
    lookback_ms : int, default one day
        Window length; bars with ``now - lookback <= ts < now`` are used.

    Returns
    -------
    PriceStats
        With, over the :math:`n` bars of the window (closes :math:`c_i`):

        * ``last`` :math:`= c_n`; ``change_pct`` :math:`= 100 (c_n / open_1 - 1)`
        * ``high``, ``low``: max of highs, min of lows
        * ``vwap`` :math:`= \\sum quote / \\sum volume` (NaN if no volume)
        * ``realized_vol`` :math:`= \\mathrm{std}_{ddof=1}(\\ln c_{i+1} - \\ln c_i)
          \\cdot \\sqrt{365 \\cdot 86400000 / tf}` (annualised, 24/7 market);
          **NaN** when :math:`n <` :data:`MIN_BARS_VOL` (3 bars = 2 returns).
          Returns are between consecutive bars; a bucket with no trade is not a
          zero return, so on sparse data the per-bar std (and the annualised
          figure) slightly overstates the per-bucket volatility.
        * ``volume``, ``quote_volume``, ``trades``: sums
        * ``trades_per_min`` :math:`= trades / ((now - ts_1) / 60000)`: the rate
          since the first bar of the window, not over the nominal lookback, so a
          young history is not diluted.
        * ``taker_buy_share`` :math:`= \\sum buy\\_volume / \\sum volume` (NaN if no
          volume)

    Raises
    ------
    InsufficientData
        If the window holds no bar (``needed=1``). Only volatility needs more, and
        it is NaN rather than an error, so a card can show the price of a new
        symbol at once.
    ValueError
        If ``lookback_ms`` is not positive.
    """
    if lookback_ms <= 0:
        raise ValueError(f"price_stats: lookback_ms must be > 0, got {lookback_ms}")
    ts = bars.ts
    if now_ms is None:
        now_ms = int(ts[-1]) + bars.tf_ms if len(bars) else 0
    lo = int(np.searchsorted(ts, now_ms - lookback_ms, side="left"))
    hi = int(np.searchsorted(ts, now_ms, side="left"))
    n = hi - lo
    if n < 1:
        raise InsufficientData("price stats", 1, 0)
    sl = slice(lo, hi)
    close = bars.close[sl]
    volume = float(bars.volume[sl].sum())
    quote = float(bars.quote_volume[sl].sum())
    buy = float(bars.buy_volume[sl].sum())
    trades = int(bars.trades[sl].sum())
    start = int(ts[lo])
    if n >= MIN_BARS_VOL:
        per_bar = float(np.std(np.diff(np.log(close)), ddof=1))
        vol = per_bar * annualization_factor(bars.tf_ms)
    else:
        vol = math.nan
    return PriceStats(
        last=float(close[-1]),
        change_pct=(float(close[-1]) / float(bars.open[lo]) - 1.0) * 100.0,
        high=float(bars.high[sl].max()),
        low=float(bars.low[sl].min()),
        vwap=quote / volume if volume > 0 else math.nan,
        realized_vol=vol,
        volume=volume,
        quote_volume=quote,
        trades=trades,
        trades_per_min=trades / ((now_ms - start) / 60_000),
        taker_buy_share=buy / volume if volume > 0 else math.nan,
        n_bars=n,
        start_ms=start,
        end_ms=int(now_ms),
    )
