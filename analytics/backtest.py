"""Mean-reversion backtest of a pair's z-score, with exact, checkable rules.

Rules
-----
Inputs are the pair series of :func:`analytics.pair.pair_series` (the columns of
``/api/pair``): per bar ``t`` the raw prices ``A_t, B_t``, the trailing hedge ``beta_t``
and the trailing z-score ``z_t``. The position is ``+1`` (long the spread: buy 1 A,
sell ``h`` B), ``-1`` (short the spread: sell 1 A, buy ``h`` B) or ``0``.

Decisions are taken at the close of bar ``t`` from ``z_t``, seeing the position *after*
any fill at ``t``:

* flat: ``z_t > entry`` -> go short (-1); ``z_t < -entry`` -> go long (+1) (needs a
  finite ``beta_t``);
* short: ``z_t <= exit`` closes; long: ``z_t >= -exit`` closes;
* either side: ``|z_t| > stop`` closes (optional), and so does the holding limit: the
  exit is decided at ``t`` when ``t + 1 - i_entry >= max_hold``, so a position is held
  at most ``max_hold`` bars from its entry fill to its exit fill (optional);
* a NaN ``z_t`` triggers nothing (the holding limit still applies);
* session breaks (``breaks``, :mod:`analytics.sessions`): no trade spans one. With
  ``L`` the last bar before a break, an open position is closed by a decision at
  ``L - 1`` (reason ``"break"``), so it fills at ``A_L, B_L``, the last prices of the
  session; no entry is decided at ``L - 1`` or ``L`` (its fill would be at ``L`` or
  in the next session). The price jump across the break is never in the equity.

A decision at the close of ``t`` **fills at the close of ``t + 1``** at ``A_{t+1},
B_{t+1}``. The hedge is frozen at entry from the *signal* bar's ``beta_t``: the units of
B per unit of A are ``h = beta_t`` for raw prices, and ``h = beta_t * A_fill / B_fill``
for log prices (a log-price beta is a ratio of returns, so it hedges ``beta_t`` times
A's notional in B). One position at a time; an exit fill and a new entry signal can
share a bar, the new entry then fills one bar later. A signal on the last bar has no
fill. A trade still open at the end is reported with ``exit_ts`` None (marked to the
last close) and left out of every trade total.

PnL and costs
-------------
For a trade with side ``s``::

    pnl_a = s * (A_exit - A_entry)
    pnl_b = -s * h * (B_exit - B_entry)
    gross = pnl_a + pnl_b = s * ((A_exit - A_entry) - h * (B_exit - B_entry))
    fees  = fee_bps / 1e4 * [(|A_entry| + |h B_entry|) + (|A_exit| + |h B_exit|)]
    slip  = slippage_bps / 1e4 * [same notionals]          (reported separately)
    pnl   = gross - fees - slip

Fills at the quote (``fills="quote"``)
--------------------------------------
With ``fills="last"`` (the default) every leg fills at the pair's price series, as
above. With ``fills="quote"`` each leg pays the spread: at the same bar ``t + 1`` the
``last`` fill uses, a **buy fills at the ask and a sell at the bid** of that bar (the
book as of the end of its bucket, :mod:`analytics.book`), on both legs. Long the spread
(``s = +1``) buys A and sells B at entry, sells A and buys B at exit; short the reverse.
The hedge ``h`` is the one of the ``last`` fills (``beta_t``; with log prices
``beta_t * A_{t+1} / B_{t+1}`` on the price series), so the position is the same and
only the prices paid differ. With ``P`` the price series at the fill bar and ``F`` the
fill, the spread cost of one leg fill of ``q`` units is ``q * (F - P)`` for a buy and
``q * (P - F)`` for a sell (``q = 1`` for A, ``|h|`` for B), and::

    gross  = as above, on the price series (identical to fills="last")
    spread = sum of the four leg fills' spread costs
    fees   = fee_bps / 1e4 * [fill notionals |F_A| + |h F_B| at entry and at exit]
    slip   = slippage_bps / 1e4 * [same notionals]
    pnl    = gross - spread - fees - slip
           = s * ((FA_exit - FA_entry) - h * (FB_exit - FB_entry)) - fees - slip

On mid prices (``source=mid``) a leg's spread cost is half its quoted spread, never
negative; on trade prices it is the distance from the last print to the quote crossed
(negative when the last print lay outside the quote at the bar's end). The per-bar
equity marks to the price series and books the spread cost at the fill bar, like fees.

Metrics
-------
* Equity (mark to market, per bar): ``E_t = sum_{u <= t} dE_u`` with
  ``dE_u = pos_{u-1} * ((A_u - A_{u-1}) - h_{u-1} (B_u - B_{u-1})) - costs_u``
  (``pos_{u-1}``, ``h_{u-1}``: position held after the fills at ``u - 1``; ``costs_u``:
  fees and slippage of a fill at ``u``). Over a closed trade the increments sum to its
  ``pnl`` exactly; the open trade's increments are in the curve (``open_pnl``).
* Drawdown ``D_t = E_t - max(0, max_{u <= t} E_u)``; ``max_drawdown = -min D_t >= 0``.
* Capital: the largest entry notional ``|A_entry| + |h B_entry|`` of any trade (one
  position at a time, so this carries every trade unlevered). ``total_return =
  total_pnl / capital``; ``max_drawdown_return = max_drawdown / capital``.
* Sharpe: ``mean(dE) / std(dE, ddof=1) * sqrt(bars_per_year)`` over every bar,
  ``bars_per_year = 365 * 86400 s / tf`` (crypto trades 24/7); None if undefined.
* Hit rate: closed trades with ``pnl > 0`` / closed trades. Average holding: mean of
  ``exit index - entry index`` (bars) and ``exit_ts - entry_ts`` (seconds).
* Turnover: traded notional of closed trades (both fills) / capital.

Totals (``total_pnl``, fees, hit rate, holding, turnover) use closed trades only; the
curve statistics (Sharpe, drawdown) use the mark-to-market curve, open trade included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.errors import InsufficientData
from analytics.rolling import as_float_array
from analytics.sessions import segment_starts

log = logging.getLogger(__name__)

YEAR_MS = 365 * 86_400_000
MAX_Z = 50.0
MAX_BPS = 1_000.0
#: How a leg fills: at the pair's price series, or buys at the ask and sells at the bid.
FILLS = ("last", "quote")

__all__ = [
    "FILLS",
    "BacktestParams",
    "BacktestResult",
    "Quotes",
    "Trade",
    "quoted_rows",
    "run_backtest",
    "trades_frame",
]


@dataclass(frozen=True, slots=True)
class BacktestParams:
    """Signal and cost parameters (see the module docstring for the rules).

    ``entry > 0``; ``exit < entry``; ``stop`` None or ``> entry``; ``max_hold`` None or
    an int ``>= 1`` (bars); ``fee_bps``, ``slippage_bps`` in ``[0, 1000]``; ``fills`` one
    of :data:`FILLS` (``"quote"`` needs :class:`Quotes`, module docstring).
    """

    entry: float = 2.0
    exit: float = 0.0
    stop: float | None = None
    max_hold: int | None = None
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    fills: str = "last"

    def __post_init__(self) -> None:
        def finite(name: str, v: object) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"{name} must be finite, got {v!r}")
            return float(v)

        entry = finite("entry", self.entry)
        if not 0.0 < entry <= MAX_Z:
            raise ValueError(f"entry must be in (0, {MAX_Z:g}], got {entry:g}")
        ex = finite("exit", self.exit)
        if not -MAX_Z <= ex < entry:
            raise ValueError(f"exit must be in [-{MAX_Z:g}, entry={entry:g}), got {ex:g}")
        if self.stop is not None:
            stop = finite("stop", self.stop)
            if not entry < stop <= MAX_Z:
                raise ValueError(f"stop must be in (entry={entry:g}, {MAX_Z:g}], got {stop:g}")
        if self.max_hold is not None:
            mh = self.max_hold
            if isinstance(mh, bool) or not isinstance(mh, int | np.integer) or mh < 1:
                raise ValueError(f"max_hold must be None or an int >= 1 (bars), got {mh!r}")
        for name in ("fee_bps", "slippage_bps"):
            v = finite(name, getattr(self, name))
            if not 0.0 <= v <= MAX_BPS:
                raise ValueError(f"{name} must be in [0, {MAX_BPS:g}], got {v:g}")
        if self.fills not in FILLS:
            raise ValueError(f"fills must be one of {', '.join(FILLS)}, got {self.fills!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Quotes:
    """Best bid and ask of both legs on the backtest's bar grid (one value per ``ts``):
    the book as of the end of each bar's bucket, what ``fills="quote"`` crosses.

    Every value must be finite and positive with ``bid <= ask`` (cut the rows before
    the first quote of either leg: :func:`quoted_rows`)."""

    bid_a: np.ndarray
    ask_a: np.ndarray
    bid_b: np.ndarray
    ask_b: np.ndarray

    def check(self, n: int) -> tuple[np.ndarray, ...]:
        out = []
        for name in ("bid_a", "ask_a", "bid_b", "ask_b"):
            arr = as_float_array(getattr(self, name), name)
            if len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} values, ts has {n}")
            if (arr <= 0).any():
                raise ValueError(f"{name} must be positive")
            out.append(arr)
        if (out[0] > out[1]).any() or (out[2] > out[3]).any():
            raise ValueError("a bid is above its ask (crossed quote)")
        return tuple(out)


def quoted_rows(*quotes: object) -> int:
    """Index of the first row where every given quote series is finite (``len`` if
    none): rows before it have no book yet for some leg. Quotes are carried forward,
    so every later row is quoted too (checked by :meth:`Quotes.check`)."""
    n = len(np.asarray(quotes[0])) if quotes else 0
    ok = np.ones(n, dtype=bool)
    for q in quotes:
        ok &= np.isfinite(np.asarray(q, dtype=np.float64))
    idx = np.flatnonzero(ok)
    return int(idx[0]) if len(idx) else n


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip; ``exit_*`` None while still open (then ``pnl`` is marked to the
    last close, net of the entry costs only)."""

    side: int
    signal_ts: int
    entry_ts: int
    exit_ts: int | None
    entry_index: int
    exit_index: int | None
    entry_a: float
    entry_b: float
    exit_a: float | None
    exit_b: float | None
    beta: float
    hedge: float
    pnl_a: float
    pnl_b: float
    gross: float
    fees: float
    slippage: float
    pnl: float
    notional: float
    exit_reason: str | None
    #: Leg fills and the quotes crossed (``fills="quote"``; with ``"last"`` the fills
    #: are the prices above, the quotes None). ``spread_cost`` as in the module docstring.
    entry_fill_a: float | None = None
    entry_fill_b: float | None = None
    exit_fill_a: float | None = None
    exit_fill_b: float | None = None
    entry_bid_a: float | None = None
    entry_ask_a: float | None = None
    entry_bid_b: float | None = None
    entry_ask_b: float | None = None
    exit_bid_a: float | None = None
    exit_ask_a: float | None = None
    exit_bid_b: float | None = None
    exit_ask_b: float | None = None
    spread_cost: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.exit_ts is None


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    """Trades, the per-bar curves and the metrics (module docstring)."""

    params: BacktestParams
    tf_ms: int
    prices: str
    ts: np.ndarray
    position: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    trades: tuple[Trade, ...]
    total_pnl: float
    gross_pnl: float
    total_fees: float
    total_slippage: float
    total_spread_cost: float
    open_pnl: float
    capital: float | None
    total_return: float | None
    sharpe: float | None
    max_drawdown: float
    max_drawdown_return: float | None
    hit_rate: float | None
    avg_holding_bars: float | None
    avg_holding_seconds: float | None
    turnover: float | None
    n_trades: int
    n_bars: int

    @property
    def closed_trades(self) -> tuple[Trade, ...]:
        return tuple(t for t in self.trades if not t.is_open)

    def curve_frame(self) -> pd.DataFrame:
        """Columns ``ts`` (epoch ms), ``position``, ``equity``, ``drawdown``."""
        return pd.DataFrame(
            {"ts": self.ts, "position": self.position, "equity": self.equity,
             "drawdown": self.drawdown}
        )


def trades_frame(result: BacktestResult) -> pd.DataFrame:
    """One row per trade; times as epoch ms (int), open trades with empty exits."""
    cols = [f for f in Trade.__slots__]
    rows = [[getattr(t, c) for c in cols] for t in result.trades]
    frame = pd.DataFrame(rows, columns=cols)
    for c in ("exit_ts", "exit_index"):
        frame[c] = frame[c].astype("Int64")
    for c in cols:
        if c.startswith(("exit_", "entry_fill", "entry_bid", "entry_ask")) and c not in (
            "exit_ts", "exit_index", "exit_reason"
        ):
            frame[c] = frame[c].astype("float64")
    return frame


def _inputs(ts, price_a, price_b, beta, zscore) -> tuple[np.ndarray, ...]:
    t = np.asarray(ts)
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ValueError(f"ts must be 1-D integer epoch ms, got {t.dtype} shape {t.shape}")
    n = len(t)
    a = as_float_array(price_a, "price_a")
    b = as_float_array(price_b, "price_b")
    be = as_float_array(beta, "beta", allow_nan=True)
    z = as_float_array(zscore, "zscore", allow_nan=True)
    for name, arr in (("price_a", a), ("price_b", b), ("beta", be), ("zscore", z)):
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} values, ts has {n}")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("price_a and price_b must be positive")
    if n > 1 and not (t[1:] > t[:-1]).all():
        raise ValueError("ts must be strictly increasing")
    return t.astype(np.int64), a, b, be, z


def _signals(
    z: list, beta_ok: list, p: BacktestParams, last_before_break: frozenset = frozenset()
) -> list[tuple[int, int, str]]:
    """The state machine: ``(bar of decision, new position, reason)`` per decision.

    ``last_before_break``: indices ``L`` of the last bar before each break.
    A plain loop over Python floats (about 30 ns a bar): a day of 1 s bars in ~20 ms.
    """
    n = len(z)
    entry, ex = p.entry, p.exit
    stop = math.inf if p.stop is None else p.stop
    max_hold = p.max_hold
    pos, pending, entry_i = 0, None, -1
    out: list[tuple[int, int, str]] = []
    for t in range(n):
        if pending is not None:  # the decision of t - 1 fills now, at the close of t
            pos = pending
            if pos != 0:
                entry_i = t
            pending = None
        zt = z[t]
        if t == n - 1:
            break  # a decision here would have no bar to fill at
        if last_before_break and (t + 1 in last_before_break or t in last_before_break):
            if pos != 0 and t + 1 in last_before_break:
                pending = 0
                out.append((t, 0, "break"))
            continue  # no entry: its fill would be at the session's last bar or after
        if pos == 0:
            if zt > entry and beta_ok[t]:
                pending = -1
                out.append((t, -1, "entry"))
            elif zt < -entry and beta_ok[t]:
                pending = 1
                out.append((t, 1, "entry"))
            continue
        reason = None
        if (pos == -1 and zt <= ex) or (pos == 1 and zt >= -ex):
            reason = "exit"
        elif abs(zt) > stop:
            reason = "stop"
        elif max_hold is not None and t + 1 - entry_i >= max_hold:
            reason = "max_hold"
        if reason is not None:
            pending = 0
            out.append((t, 0, reason))
    return out


@dataclass(frozen=True, slots=True)
class _Fills:
    """One side's two leg fills at one bar (entry or exit) and the quotes crossed."""

    fill_a: float
    fill_b: float
    bid_a: float | None
    ask_a: float | None
    bid_b: float | None
    ask_b: float | None
    spread_cost: float


def _leg_fills(book, i: int, a_dir: int, h: float, pa: float, pb: float) -> _Fills:
    """Fills at bar ``i`` when buying (``a_dir = +1``) or selling (``-1``) one A and
    doing the opposite with ``h`` B. ``book`` None: at the prices ``pa``, ``pb``."""
    if book is None:
        return _Fills(pa, pb, None, None, None, None, 0.0)
    bid_a, ask_a, bid_b, ask_b = (float(q[i]) for q in book)
    fa = ask_a if a_dir > 0 else bid_a
    b_dir = -a_dir if h >= 0 else a_dir  # a negative hedge trades B the other way
    fb = ask_b if b_dir > 0 else bid_b
    cost = a_dir * (fa - pa) + b_dir * abs(h) * (fb - pb)
    return _Fills(fa, fb, bid_a, ask_a, bid_b, ask_b, float(cost))


def run_backtest(
    ts: object,
    price_a: object,
    price_b: object,
    beta: object,
    zscore: object,
    *,
    params: BacktestParams = BacktestParams(),
    tf_ms: int,
    prices: str = "raw",
    min_bars: int = 2,
    breaks: object | None = None,
    quotes: Quotes | None = None,
) -> BacktestResult:
    """Backtest the z-score mean-reversion rule on one pair series.

    Parameters
    ----------
    ts : array_like of int
        Bar times, epoch ms, strictly increasing.
    price_a, price_b : array_like
        Raw prices of the legs (positive, finite).
    beta, zscore : array_like
        Trailing hedge and z-score per bar (NaN where undefined), as in
        :class:`analytics.pair.PairSeries`.
    params : BacktestParams
        Entry / exit / stop thresholds, holding limit, costs.
    tf_ms : int
        Bar length, for the Sharpe annualisation and holding seconds.
    prices : {"raw", "log"}
        Scale ``beta`` was fitted on (sets the hedge units, module docstring).
    min_bars : int
        Fewer bars than this raise :class:`InsufficientData`.
    breaks : array_like of int, optional
        Session starts on the ``ts`` scale (bucket starts, as for
        :func:`analytics.pair.pair_series`): positions are closed at the last bar
        before each and never opened across one (module docstring).
    quotes : Quotes, optional
        Both legs' bid and ask per bar: required by ``params.fills == "quote"``.

    Returns
    -------
    BacktestResult
    """
    if not isinstance(params, BacktestParams):
        raise ValueError(f"params must be BacktestParams, got {type(params).__name__}")
    if prices not in ("raw", "log"):
        raise ValueError(f"prices must be 'raw' or 'log', got {prices!r}")
    if isinstance(tf_ms, bool) or not isinstance(tf_ms, int | np.integer) or tf_ms <= 0:
        raise ValueError(f"tf_ms must be a positive int, got {tf_ms!r}")
    t, a, b, be, z = _inputs(ts, price_a, price_b, beta, zscore)
    n = len(t)
    if n < max(min_bars, 2):
        raise InsufficientData("backtest", max(min_bars, 2), n)
    book = None
    if params.fills == "quote":
        if quotes is None:
            raise ValueError('fills="quote" needs quotes (both legs\' bid and ask per bar)')
        book = quotes.check(n)

    cuts = segment_starts(t, breaks) if breaks is not None else ()
    last_before = frozenset(int(c) - 1 for c in cuts)
    decisions = _signals(z.tolist(), np.isfinite(be).tolist(), params, last_before)
    fee_rate, slip_rate = params.fee_bps / 1e4, params.slippage_bps / 1e4

    position = np.zeros(n, dtype=np.int8)  # held after the fills at each bar
    hedge_arr = np.zeros(n)
    costs = np.zeros(n)
    trades: list[Trade] = []
    # Pair each entry decision with the exit decision that follows it.
    i = 0
    while i < len(decisions):
        sig_t, side, _ = decisions[i]
        ei = sig_t + 1
        ea, eb = float(a[ei]), float(b[ei])
        beta_sig = float(be[sig_t])
        h = beta_sig if prices == "raw" else beta_sig * ea / eb
        entry = _leg_fills(book, ei, side, h, ea, eb)
        if i + 1 < len(decisions):
            x_sig, _, reason = decisions[i + 1]
            xi = x_sig + 1
            xa, xb = float(a[xi]), float(b[xi])
            exit_ = _leg_fills(book, xi, -side, h, xa, xb)
            i += 2
        else:
            xi, reason = None, None
            xa, xb = float(a[-1]), float(b[-1])
            exit_ = None
            i += 1
        notional_in = abs(entry.fill_a) + abs(h * entry.fill_b)
        notional_out = 0.0 if exit_ is None else abs(exit_.fill_a) + abs(h * exit_.fill_b)
        spread_in = entry.spread_cost
        spread_out = 0.0 if exit_ is None else exit_.spread_cost
        end = n if xi is None else xi
        position[ei:end] = side
        hedge_arr[ei:end] = h
        costs[ei] += (fee_rate + slip_rate) * notional_in + spread_in
        if xi is not None:
            costs[xi] += (fee_rate + slip_rate) * notional_out + spread_out
        pnl_a = side * (xa - ea)
        pnl_b = -side * h * (xb - eb)
        fees = fee_rate * (notional_in + notional_out)
        slip = slip_rate * (notional_in + notional_out)
        spread = spread_in + spread_out
        closed = exit_ is not None
        trades.append(
            Trade(
                side=int(side), signal_ts=int(t[sig_t]), entry_ts=int(t[ei]),
                exit_ts=None if xi is None else int(t[xi]), entry_index=int(ei),
                exit_index=xi, entry_a=ea, entry_b=eb,
                exit_a=None if xi is None else xa, exit_b=None if xi is None else xb,
                beta=beta_sig, hedge=float(h), pnl_a=float(pnl_a), pnl_b=float(pnl_b),
                gross=float(pnl_a + pnl_b), fees=float(fees), slippage=float(slip),
                pnl=float(pnl_a + pnl_b - fees - slip - spread), notional=float(notional_in),
                exit_reason=reason,
                entry_fill_a=entry.fill_a, entry_fill_b=entry.fill_b,
                exit_fill_a=exit_.fill_a if closed else None,
                exit_fill_b=exit_.fill_b if closed else None,
                entry_bid_a=entry.bid_a, entry_ask_a=entry.ask_a,
                entry_bid_b=entry.bid_b, entry_ask_b=entry.ask_b,
                exit_bid_a=exit_.bid_a if closed else None,
                exit_ask_a=exit_.ask_a if closed else None,
                exit_bid_b=exit_.bid_b if closed else None,
                exit_ask_b=exit_.ask_b if closed else None,
                spread_cost=float(spread),
            )
        )

    d_equity = np.zeros(n)
    d_equity[1:] = position[:-1] * (np.diff(a) - hedge_arr[:-1] * np.diff(b))
    d_equity -= costs
    equity = np.cumsum(d_equity)
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    drawdown = equity - peak
    max_dd = float(-drawdown.min()) if n else 0.0

    closed = [tr for tr in trades if not tr.is_open]
    open_pnl = sum(tr.pnl for tr in trades if tr.is_open)
    capital = max((tr.notional for tr in trades), default=0.0) or None
    total_pnl = float(sum(tr.pnl for tr in closed))
    traded = sum(
        tr.notional + abs(tr.exit_fill_a) + abs(tr.hedge * tr.exit_fill_b) for tr in closed
    )
    sd = float(np.std(d_equity, ddof=1)) if n > 2 else 0.0
    sharpe = (
        float(np.mean(d_equity) / sd * math.sqrt(YEAR_MS / tf_ms)) if sd > 0 else None
    )
    hold_bars = [tr.exit_index - tr.entry_index for tr in closed]
    hold_s = [(tr.exit_ts - tr.entry_ts) / 1000.0 for tr in closed]
    return BacktestResult(
        params=params, tf_ms=int(tf_ms), prices=prices, ts=t, position=position,
        equity=equity, drawdown=drawdown, trades=tuple(trades), total_pnl=total_pnl,
        gross_pnl=float(sum(tr.gross for tr in closed)),
        total_fees=float(sum(tr.fees for tr in closed)),
        total_slippage=float(sum(tr.slippage for tr in closed)),
        total_spread_cost=float(sum(tr.spread_cost for tr in closed)),
        open_pnl=float(open_pnl), capital=capital,
        total_return=None if capital is None else total_pnl / capital,
        sharpe=sharpe, max_drawdown=max_dd,
        max_drawdown_return=None if capital is None else max_dd / capital,
        hit_rate=(sum(tr.pnl > 0 for tr in closed) / len(closed)) if closed else None,
        avg_holding_bars=float(np.mean(hold_bars)) if closed else None,
        avg_holding_seconds=float(np.mean(hold_s)) if closed else None,
        turnover=None if capital is None else float(traded / capital),
        n_trades=len(closed), n_bars=n,
    )
