"""One refresh of the markets page, from the market facade (read-only, no Dash callback code).

Per symbol: last price (flash class when it moved), change %, quote volume and VWAP over
the bars held (at most a day), trades/s, trades/min and USDT/min (the liquidity filter
measures), a sparkline of the last ``SPARK_BARS`` closes at the chosen timeframe
(``extendData`` on bar close), and a correlation heatmap of log returns over the last
``HEATMAP_BARS`` bars all shown symbols share (values patched on bar close, whole figure
when the timeframe or the shown set changes). The browser's ``STATE`` store remembers
what was drawn, so an unchanged widget costs nothing.

Top of book (#17): the latest quote of each symbol (bid, ask, quoted spread in bps,
imbalance: :func:`dashapp.components.symbol_card.quote_values`), and a spread filter:
``max_spread_bps`` hides a symbol whose latest quoted spread is wider (a symbol without
a quote yet is not judged, so it stays shown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics.timeframes import LIVE_TIMEFRAMES, format_timeframe
from dashapp import figures, stores, updates
from dashapp.components.symbol_card import quote_spread_bps

SPARK_BARS = 120
HEATMAP_BARS = 600
#: Below this many shared returns a correlation is noise (the standard error of rho
#: is about (1 - rho^2) / sqrt(n - 3): at n = 3 any value is possible), so the matrix is
#: drawn greyed with its n and a caveat instead of in colour.
HEATMAP_MIN_RETURNS = 30
HEATMAP_GREY = "#5b6270"


@dataclass
class MarketsUpdate:
    stats: dict = field(default_factory=dict)  # symbol -> SymbolStats
    price_class: dict = field(default_factory=dict)  # symbol -> css class
    hidden: list = field(default_factory=list)
    sparks: dict = field(default_factory=dict)  # symbol -> ("figure", fig) | ("extend", tuple)
    heatmap: object | None = None  # go.Figure or Patch
    heatmap_note: str | None = None
    state: dict = field(default_factory=dict)
    quotes: dict = field(default_factory=dict)  # symbol -> latest quote (or None)


def max_spread_arg(raw) -> float | None:
    """The spread filter's threshold (bps, >= 0) from the URL or the control; None
    (no filter) when blank or not such a number."""
    try:
        value = float(str(raw).strip()) if raw is not None and str(raw).strip() else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < float("inf") else None


def too_wide(quote, max_spread_bps) -> bool:
    """Does a symbol fail the spread filter (its quoted spread above the threshold)?
    No threshold, or no quote yet: it passes."""
    if max_spread_bps is None or quote is None:
        return False
    spread = quote_spread_bps(quote)
    return spread is not None and spread > float(max_spread_bps)


def refresh(market, tf: str, min_trades, min_volume, state: dict | None,
            max_spread_bps=None) -> MarketsUpdate:
    state = stores.mapping(state).copy()  # a browser store: forged parts are dropped
    tf_ms = LIVE_TIMEFRAMES.get(tf, 1_000)
    now = market.exchange_now_ms()
    up = MarketsUpdate()
    prices = stores.str_keyed(state.get("prices"), lambda v: stores.number(v) is not None)
    flips = stores.str_keyed(state.get("flip"), lambda v: type(v) is int)
    classes = stores.str_keyed(state.get("cls"), lambda v: isinstance(v, str))
    spark_ts = (
        stores.str_keyed(state.get("spark_ts"), lambda v: type(v) is int)
        if state.get("tf") == tf
        else {}
    )
    closes = {}
    for sym in market.names():
        last = market.last_tick(sym)
        price = None if last is None else last.price
        bars_1s = market.bars(sym, 1_000)
        bars_1m = market.bars(sym, 60_000)
        st = updates.symbol_stats(bars_1m, bars_1s, price, market.trade_rate(sym), now)
        up.stats[sym] = st
        prev = prices.get(sym)
        if price is not None and prev is not None and price != prev:
            flips[sym] = 1 - flips.get(sym, 0)
            classes[sym] = f"sym-price flash-{'up' if price > prev else 'down'}-{flips[sym]}"
        classes.setdefault(sym, "sym-price")
        up.price_class[sym] = classes[sym]
        if price is not None:
            prices[sym] = price
        quote = up.quotes[sym] = market.quote(sym)
        if not updates.liquid(st, min_trades, min_volume) or too_wide(quote, max_spread_bps):
            up.hidden.append(sym)
            continue
        bars = bars_1s if tf_ms == 1_000 else market.bars(sym, tf_ms)
        tail = bars.tail(2 * HEATMAP_BARS)
        closes[sym] = (np.asarray(tail.ts), np.asarray(tail.close))
        up.sparks[sym] = _spark(sym, bars, spark_ts)
    up.heatmap, up.heatmap_note, heat = _heatmap(closes, tf, state)
    up.state = {
        "prices": prices,
        "flip": flips,
        "cls": classes,
        "spark_ts": spark_ts,
        "tf": tf,
        **heat,
    }
    return up


def _spark(sym: str, bars, drawn: dict):
    """Whole sparkline on first draw / timeframe change, else extend by new closes."""
    if not len(bars):
        return None
    last = int(bars.ts[-1])
    have = drawn.get(sym)
    if have == last:
        return None
    drawn[sym] = last
    if have is None:
        tail = bars.tail(SPARK_BARS)
        up = len(tail) < 2 or tail.close[-1] >= tail.close[0]
        return ("figure", figures.sparkline(tail.ts, tail.close, up=up, uirevision=sym))
    i = int(np.searchsorted(bars.ts, have, side="right"))
    new_ts, new_close = bars.ts[i:][-SPARK_BARS:], bars.close[i:][-SPARK_BARS:]
    return (
        "extend",
        updates.extend(
            [{"x": updates.clean(new_ts), "y": updates.clean(new_close)}], [0], SPARK_BARS
        ),
    )


HEAT_KEYS = ("heat_syms", "heat_ts", "heat_tf", "heat_ok")


def heatmap_hover(n: int) -> str:
    return f"%{{y}} vs %{{x}}: ρ = %{{z:.4f}} · n = {n:,} returns<extra></extra>"


def heatmap_figure(syms: list[str], matrix, n: int) -> dict:
    """The correlation heatmap with its sample size in the hover; greyed (one grey, no
    colour bar, muted numbers) when ``n < HEATMAP_MIN_RETURNS``."""
    fig = figures.correlation_heatmap(syms, matrix, title=None)
    trace = fig["data"][0]
    trace["hovertemplate"] = heatmap_hover(n)
    if n < HEATMAP_MIN_RETURNS:
        trace["colorscale"] = [[0.0, HEATMAP_GREY], [1.0, HEATMAP_GREY]]
        trace["showscale"] = False
        trace["textfont"] = {**trace.get("textfont", {}), "color": "#aab0ba"}
    return fig


def _heatmap(closes: dict, tf: str, state: dict):
    last = max((int(c[0][-1]) for c in closes.values() if len(c[0])), default=None)
    same_set = state.get("heat_syms") == sorted(closes) and state.get("heat_tf") == tf
    if same_set and state.get("heat_ts") == last:
        return None, None, {k: state.get(k) for k in HEAT_KEYS}
    syms, matrix, used = updates.returns_correlation(closes, HEATMAP_BARS)
    ok = used >= HEATMAP_MIN_RETURNS
    heat = {"heat_syms": syms, "heat_ts": last, "heat_tf": tf, "heat_ok": ok}
    tf_text = format_timeframe(LIVE_TIMEFRAMES[tf])
    note = (
        f"Return correlation · ρ of log returns · n = {used:,} returns (last "
        f"{used + 1 if used else 0:,} {tf_text} bars shared by all shown symbols)"
    )
    if not ok:
        note += (
            f" · too few for a meaningful ρ (n < {HEATMAP_MIN_RETURNS}): greyed until "
            "more bars close"
        )
    if not same_set or state.get("heat_ok") != ok:  # a new set, or greyed <-> coloured
        return heatmap_figure(syms, matrix, used), note, heat
    patch = updates.heatmap_patch(matrix)
    patch["data"][0]["hovertemplate"] = heatmap_hover(used)
    return patch, note, heat
