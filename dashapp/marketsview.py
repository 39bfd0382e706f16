"""One refresh of the markets page, from services (read-only, no Dash callback code).

Per symbol: last price (flash class when it moved), change %, quote volume and VWAP over
the bars held (at most a day), trades/s, trades/min and USDT/min (the liquidity filter
measures), a sparkline of the last ``SPARK_BARS`` closes at the chosen timeframe
(``extendData`` on bar close), and a correlation heatmap of log returns over the last
``HEATMAP_BARS`` bars all shown symbols share (values patched on bar close, whole figure
when the timeframe or the shown set changes). The browser's ``STATE`` store remembers
what was drawn, so an unchanged widget costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics.timeframes import format_timeframe
from dashapp import figures, updates

SPARK_BARS = 120
HEATMAP_BARS = 600
TIMEFRAMES = {"1s": 1_000, "1m": 60_000, "5m": 300_000}


@dataclass
class MarketsUpdate:
    stats: dict = field(default_factory=dict)  # symbol -> SymbolStats
    price_class: dict = field(default_factory=dict)  # symbol -> css class
    hidden: list = field(default_factory=list)
    sparks: dict = field(default_factory=dict)  # symbol -> ("figure", fig) | ("extend", tuple)
    heatmap: object | None = None  # go.Figure or Patch
    heatmap_note: str | None = None
    state: dict = field(default_factory=dict)


def refresh(services, tf: str, min_trades, min_volume, state: dict | None) -> MarketsUpdate:
    state = dict(state or {})
    engine = services.engine
    tf_ms = TIMEFRAMES.get(tf, 1_000)
    now = services.ingestor.exchange_now_ms()
    up = MarketsUpdate()
    prices = dict(state.get("prices") or {})
    flips = dict(state.get("flip") or {})
    classes = dict(state.get("cls") or {})
    spark_ts = dict(state.get("spark_ts") or {}) if state.get("tf") == tf else {}
    closes = {}
    for sym in engine.symbols:
        ring = services.ingestor.rings.get(sym)
        last = ring.last() if ring is not None else None
        price = None if last is None else last.price
        bars_1s = engine.bars(sym, 1_000)
        bars_1m = engine.bars(sym, 60_000)
        st = updates.symbol_stats(bars_1m, bars_1s, price, services.ingestor.rate(sym), now)
        up.stats[sym] = st
        prev = prices.get(sym)
        if price is not None and prev is not None and price != prev:
            flips[sym] = 1 - flips.get(sym, 0)
            classes[sym] = f"sym-price flash-{'up' if price > prev else 'down'}-{flips[sym]}"
        classes.setdefault(sym, "sym-price")
        up.price_class[sym] = classes[sym]
        if price is not None:
            prices[sym] = price
        if not updates.liquid(st, min_trades, min_volume):
            up.hidden.append(sym)
            continue
        bars = bars_1s if tf_ms == 1_000 else engine.bars(sym, tf_ms)
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


def _heatmap(closes: dict, tf: str, state: dict):
    last = max((int(c[0][-1]) for c in closes.values() if len(c[0])), default=None)
    same_set = state.get("heat_syms") == sorted(closes) and state.get("heat_tf") == tf
    if same_set and state.get("heat_ts") == last:
        return None, None, {k: state.get(k) for k in ("heat_syms", "heat_ts", "heat_tf")}
    syms, matrix, used = updates.returns_correlation(closes, HEATMAP_BARS)
    heat = {"heat_syms": syms, "heat_ts": last, "heat_tf": tf}
    tf_text = format_timeframe(TIMEFRAMES[tf])
    note = (
        f"Return correlation · ρ of log returns · last {used:,} {tf_text} bars "
        "shared by all shown symbols"
    )
    if not same_set:
        fig = figures.correlation_heatmap(syms, matrix, title=None)
        return fig, note, heat
    return updates.heatmap_patch(matrix), note, heat
