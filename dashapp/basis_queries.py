"""The basis of a perp against its spot for the API and the basis page (one source).

``GET /api/basis`` and the ``/basis`` page both call :func:`basis_args` (validation: a
bad value is a :class:`~dashapp.api.params.BadParam` naming it) and :func:`basis_of`
(the numbers, :func:`analytics.basis.basis_from_prices` on the live pair grid), so
both show the same figures for the same query.

``basis_of`` is vectorised numpy over at most a day of points and is cached on the
pair's last closed point, so it runs once per bar close
whatever the number of clients, and never on the 500 ms refresh path of another page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from analytics.basis import DEFAULT_MAX_LAG, BasisSeries, basis_from_prices
from analytics.timeframes import format_timeframe
from dashapp.api import params
from dashapp.api.params import BadParam
from dashapp.services import get_services

__all__ = ["basis_args", "basis_of", "basis_pairs", "leg_label"]

_CACHE: OrderedDict[tuple, BasisSeries] = OrderedDict()
_CACHE_SIZE = 16
_LOCK = threading.Lock()


def _leg(args: Mapping, name: str, market: str) -> str:
    services = get_services()
    known = set(services.names())
    got = params.symbol(args, name, known, resolve=services.resolve)
    inst = services.instrument(got)
    if inst.market != market:
        raise BadParam(
            name, f"{got} is a {inst.market} instrument: {name} takes a {market} one"
            + _choices(market))
    return got


def _choices(market: str) -> str:
    services = get_services()
    names = [n for n in services.names() if services.instrument(n).market == market]
    return f" (ingested: {', '.join(names)})" if names else f" (no {market} instrument ingested)"


def basis_args(args: Mapping) -> dict:
    """``perp, spot, tf_ms, window, max_lag, source`` of a basis request (``window`` 60,
    ``max_lag`` 10, ``source=trade`` by default; live timeframes only, as for pairs)."""
    tf_ms = params.timeframe(args)
    tracked = get_services().timeframes()
    if tf_ms not in tracked:
        names = ", ".join(format_timeframe(t) for t in tracked)
        raise BadParam("timeframe", f"the basis exists for {names}, got {format_timeframe(tf_ms)}")
    window = params.window(args)
    max_lag = params.integer(args, "max_lag", DEFAULT_MAX_LAG, 1, 500)
    source = params.source(args)  # trade closes, or the bars' mids (top of book)
    spot = _leg(args, "spot", "spot")
    perp = _leg(args, "perp", "perp")
    return dict(perp=perp, spot=spot, tf_ms=tf_ms, window=window, max_lag=max_lag,
                source=source)


#: Hedge settings of the tracked pair whose grid the basis uses (the alignment does not
#: depend on them; OLS on raw prices is the pair page's default, so its pair is shared).
GRID_HEDGE = ("ols", "raw")


def basis_of(perp: str, spot: str, tf_ms: int, window: int,
             max_lag: int = DEFAULT_MAX_LAG, source: str = "trade") -> BasisSeries:
    """The basis series over the last day, on the live engine's pair grid (the points
    of the tracked pair ``perp``/``spot``: the grid of the pair page and of the
    ``basis_bps`` alerts); cached per closed point."""
    snap = get_services().pair(perp, spot, tf_ms, window, *GRID_HEDGE, source)
    series = snap.series
    brk = snap.session_breaks_ms
    n = len(series.ts)
    key = (perp, spot, tf_ms, window, max_lag, source, n,
           int(series.ts[-1]) if n else None, len(brk))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    out = basis_from_prices(series.ts, series.price_a, series.price_b, tf_ms=tf_ms,
                            window=window, breaks=brk, max_lag=max_lag)
    with _LOCK:
        _CACHE[key] = out
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return out


def basis_pairs() -> list[tuple[str, str]]:
    """``(perp, spot)`` names of every symbol ingested on both markets, in run order."""
    services = get_services()
    by_market: dict[tuple[str, str], str] = {}
    for name in services.names():
        inst = services.instrument(name)
        by_market[(inst.market, inst.symbol)] = name
    return [(name, by_market[("spot", sym)]) for (market, sym), name in by_market.items()
            if market == "perp" and ("spot", sym) in by_market]


def leg_label(name: str) -> str:
    """``BTCUSDT · perp`` (the name itself when the facade does not know it)."""
    try:
        return get_services().instrument(name).label
    except (KeyError, ValueError):
        return name
