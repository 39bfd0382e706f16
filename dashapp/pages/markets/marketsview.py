"""What the markets page's callbacks send, from the market facade (no Dash callback code).

* :func:`board_refresh`: the 500 ms grid refresh, the changed cells since the version
  the tab holds (:mod:`dashapp.board`) and the sparklines of its visible rows.
* :func:`prefilters`: the liquidity and spread pre-filters' thresholds, which the grid
  applies as its external filter (trades/min >= x, USDT/min >= y, spread bps <= z; a
  row without a quote yet is not judged by the spread filter, so it stays shown).
* :func:`heatmap_refresh`: the return-correlation heatmap over the top N instruments by
  volume, or the rows selected in the grid (a watchlist). The correlation is computed
  only when the set, the timeframe or the last closed bar changed, once for all tabs
  (:class:`CorrelationCache`); otherwise the tab gets nothing (or a values-only Patch).
* :func:`pair_link`: two selected rows -> ``/pair?a=&b=``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from urllib.parse import urlencode

import numpy as np

from analytics.board import top_by_volume
from analytics.timeframes import LIVE_TIMEFRAMES, format_timeframe
from dashapp import figures, stores, updates
from dashapp.board import board_cache, spark_message

HEATMAP_BARS = 600
#: Below this many shared returns a correlation is noise (the standard error of rho
#: is about (1 - rho^2) / sqrt(n - 3): at n = 3 any value is possible), so the matrix is
#: drawn greyed with its n and a caveat instead of in colour.
HEATMAP_MIN_RETURNS = 30
HEATMAP_GREY = "#5b6270"
#: heatmap sets: top N by volume, or the rows selected in the grid
HEAT_SETS = {"top:10": "top 10 by volume", "top:20": "top 20 by volume",
             "top:30": "top 30 by volume", "selected": "selected rows"}
DEFAULT_HEAT_SET = "top:10"
MAX_SELECTED_HEAT = 40


def max_spread_arg(raw) -> float | None:
    """The spread filter's threshold (bps, >= 0) from the URL or the control; None
    (no filter) when blank or not such a number."""
    try:
        value = float(str(raw).strip()) if raw is not None and str(raw).strip() else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < float("inf") else None


def _threshold(raw) -> float | None:
    value = max_spread_arg(raw)
    return value if value else None  # 0 or blank: no filter (as before)


# --------------------------------------------------------------------- grid refresh
def board_refresh(market, client, tf: str) -> dict:
    """One refresh of the grid for a tab whose store says ``client`` = ``{"v": version
    held, "tf": sparkline timeframe held, "vis": {name: last spark bar ts held}}``:
    the board message (:meth:`dashapp.board.BoardCache.message`) plus ``"spark"``
    (:func:`dashapp.board.spark_message`) and ``"tf"``."""
    client = stores.mapping(client)
    tf = tf if tf in LIVE_TIMEFRAMES else "1s"
    msg = dict(board_cache(market).message(client.get("v")))
    visible = client.get("vis") if isinstance(client.get("vis"), dict) else {}
    if client.get("tf") != tf:  # the tab holds another timeframe's lines: redraw them
        visible = dict.fromkeys(visible)
    msg["spark"] = spark_message(market, visible, LIVE_TIMEFRAMES[tf])
    msg["tf"] = tf
    return msg


def prefilters(min_trades, min_volume, max_spread) -> dict:
    """The pre-filters' thresholds ``{"min_trades", "min_volume", "max_spread"}`` (None:
    off; blank, 0 or not a number is off) for the grid's external filter
    (``assets/dashAgGridFunctions.js``): a row passes when trades/min >= min_trades,
    USDT/min >= min_volume and spread bps <= max_spread (a row without a quote is not
    judged by the spread)."""
    return {"min_trades": _threshold(min_trades), "min_volume": _threshold(min_volume),
            "max_spread": _threshold(max_spread)}


def passes_prefilters(row: dict, f: dict) -> bool:
    """The rule ``marketsPrefilterPass`` applies in the browser (the tests' reference)."""
    if f.get("min_trades") is not None and (row.get("trades_per_min") or 0) < f["min_trades"]:
        return False
    if f.get("min_volume") is not None and (row.get("volume_per_min") or 0) < f["min_volume"]:
        return False
    spread = row.get("spread_bps")
    return f.get("max_spread") is None or spread is None or spread <= f["max_spread"]


def pair_link(selected) -> str | None:
    """``/pair?a=..&b=..`` for exactly two selected rows, else None. A and B in name
    order: the grid's selection order follows its sort, which moves with every refresh,
    so the link must not (``perp:X`` comes before ``spot:X``: the basis convention)."""
    names = sorted(selected_names(selected))
    if len(names) != 2:
        return None
    return "/pair?" + urlencode({"a": names[0], "b": names[1]})


def selected_names(selected) -> list[str]:
    """Names of the grid's selected rows (a browser value: anything else dropped)."""
    if not isinstance(selected, list):
        return []
    return [r["name"] for r in selected if isinstance(r, dict) and isinstance(r.get("name"), str)]


# ------------------------------------------------------------------------- heatmap
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


class CorrelationCache:
    """Correlation matrices by (names, timeframe, last closed bar): computed once, served
    to every tab; the last few kept."""

    def __init__(self, keep: int = 16) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict = OrderedDict()
        self._keep = keep
        self.computed = 0

    def get(self, key, compute):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self.computed += 1
            self._items[key] = value
            while len(self._items) > self._keep:
                self._items.popitem(last=False)
        return value


CORRELATIONS = CorrelationCache()


def heat_names(market, heat_set: str, selected) -> tuple[list[str], str | None]:
    """The instruments of the heatmap and, when it cannot be drawn, why not."""
    if heat_set == "selected":
        names = [n for n in selected_names(selected) if n in set(market.names())]
        if len(names) < 2:
            return [], "select at least two rows in the grid for a watchlist heatmap"
        return names[:MAX_SELECTED_HEAT], None
    n = int(heat_set.split(":")[1]) if heat_set in HEAT_SETS else 10
    return top_by_volume(board_cache(market).current().rows, n), None


def heatmap_refresh(market, heat_set: str, selected, tf: str, state):
    """(figure | Patch | None, note | None, state) for the heatmap (module notes)."""
    state = stores.mapping(state)
    tf = tf if tf in LIVE_TIMEFRAMES else "1s"
    names, why = heat_names(market, heat_set, selected)
    if why is not None:
        return figures.empty_figure(height=420, uirevision="heat", text=why), why, {}
    bars = market.recent_bars_of(names, LIVE_TIMEFRAMES[tf], 2 * HEATMAP_BARS)
    closes = {}
    for s in names:
        tail = bars[s]
        closes[s] = (np.asarray(tail.ts), np.asarray(tail.close))
    return _heatmap(closes, tf, state)


def _heatmap(closes: dict, tf: str, state: dict):
    last = max((int(c[0][-1]) for c in closes.values() if len(c[0])), default=None)
    same_set = state.get("heat_syms") == sorted(closes) and state.get("heat_tf") == tf
    if same_set and state.get("heat_ts") == last:
        return None, None, {k: state.get(k) for k in HEAT_KEYS}
    syms, matrix, used = CORRELATIONS.get(
        (tuple(sorted(closes)), tf, last),
        lambda: updates.returns_correlation(closes, HEATMAP_BARS))
    ok = used >= HEATMAP_MIN_RETURNS
    heat = {"heat_syms": syms, "heat_ts": last, "heat_tf": tf, "heat_ok": ok}
    tf_text = format_timeframe(LIVE_TIMEFRAMES[tf])
    note = (
        f"Return correlation · ρ of log returns · n = {used:,} returns (last "
        f"{used + 1 if used else 0:,} {tf_text} bars shared by all {len(syms)} shown)"
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
