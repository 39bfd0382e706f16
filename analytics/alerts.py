"""Alert rules: model, validation and a pure, exact evaluator.

A rule watches one **metric** of one **subject** and fires when a comparison with a
**threshold** becomes true. Nothing here does I/O; the service that feeds it live data
and stores the events is :mod:`ingest.alert_service`.

Metrics
-------
===============  =======  ======  ===================================================
metric           subject  kind    value at data time ``t``
===============  =======  ======  ===================================================
``price``        symbol   tick    price of every trade (``t`` = trade time)
``trades_per_s`` symbol   live    trades with ``T`` in ``(t - 1 s, t]`` (exchange time)
``change_pct``   symbol   bar     ``100 (c_t / c_{t-w} - 1)``: close of bar t against
                                  the close ``w`` (``window``) bars earlier
``volume``       symbol   bar     base volume of bar t
``live_zscore``  pair     live    ``PairSnapshot.live_zscore`` of the latest prices
``zscore``       pair     bar     ``z_t`` of the pair series (see :mod:`analytics.pair`)
``spread``       pair     bar     ``spread_t = A_t - alpha_t - beta_t B_t``
``corr``         pair     bar     ``corr_t`` (rolling correlation of log returns)
``beta``         pair     bar     ``beta_t`` (trailing hedge ratio)
``adf_pvalue``   pair     bar     ADF p-value of the day's spread, every few bars
``basis_bps``    pair     bar     ``1e4 (A_t - B_t) / B_t`` on the pair grid: a = the
                                  perp, b = its spot (:mod:`analytics.basis`)
===============  =======  ======  ===================================================

A pair subject is ``a``, ``b``, ``timeframe``, ``window``, ``regression``, ``prices``,
``source`` (``trade``, the default, or ``mid``: the pair on the legs' mid prices, and
``live_zscore`` on the latest quotes' mids) exactly as in ``GET /api/pair``; bar metrics of a symbol use ``timeframe`` (and
``change_pct`` ``window``). Bar times are bucket starts.

Firing rule (threshold ``k``, hysteresis ``h >= 0``, value ``v_t``, previous value
``v_{t-1}`` of the same rule)
-----------------------------------------------------------------------------------
================  ============================  =====================================
op                fires at t when (and armed)   re-arms at t when (after firing)
================  ============================  =====================================
``gt``            ``v_t > k``                   ``v_t <= k - h``
``ge``            ``v_t >= k``                  ``v_t < k - h``
``lt``            ``v_t < k``                   ``v_t >= k + h``
``le``            ``v_t <= k``                  ``v_t > k + h``
``crosses_above`` ``v_{t-1} <= k < v_t``        ``v_t <= k - h``
``crosses_below`` ``v_{t-1} >= k > v_t``        ``v_t >= k + h``
================  ============================  =====================================

A rule starts armed. Firing disarms it; it fires again only after a value has cleared
the threshold by the band ``h`` (with ``h = 0``: once the condition is false again, so
a ``zscore crosses_above 2`` rule fires once for *every* bar with
``z_{t-1} <= 2 < z_t``). A **cooldown** of ``c`` seconds also suppresses firing while
``t < t_fired + c`` (data time, so replays behave as live); a crossing suppressed by
the cooldown is dropped and the rule stays armed. A NaN value (not defined yet) never
fires, never re-arms, and is the "previous value" of the next point (so no crossing is
taken across an undefined point). Likewise across a **session break** (a replay loop
seam, an outage; :mod:`analytics.sessions`): the first point of a new session has no
previous value, so no crossing is taken across the break. Comparisons never ``eval`` user text: ``op`` is one
of six names mapped to fixed numpy comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analytics.instruments import SYMBOL_RE
from analytics.pair import PRICE_MODES, REGRESSIONS, SOURCES
from analytics.timeframes import format_timeframe, parse_timeframe

__all__ = [
    "BAR_METRICS",
    "LIVE_METRICS",
    "METRICS",
    "OPS",
    "PAIR_METRICS",
    "SYMBOL_METRICS",
    "AlertRule",
    "Firing",
    "RuleError",
    "RuleState",
    "describe",
    "evaluate_series",
    "new_sessions",
    "parse_rule",
    "rule_to_json",
    "step",
]

SYMBOL_METRICS = ("price", "change_pct", "volume", "trades_per_s")
PAIR_METRICS = ("live_zscore", "zscore", "spread", "corr", "beta", "adf_pvalue", "basis_bps")
METRICS = (
    "price", "change_pct", "live_zscore", "zscore", "spread", "corr", "beta", "volume",
    "trades_per_s", "adf_pvalue", "basis_bps",
)
#: Evaluated on the latest ticks (price: on every tick) at most every few 100 ms.
LIVE_METRICS = ("price", "trades_per_s", "live_zscore")
#: Evaluated on every newly closed bar (pair point) since the last evaluation.
BAR_METRICS = (
    "change_pct", "volume", "zscore", "spread", "corr", "beta", "adf_pvalue", "basis_bps",
)
OPS = ("gt", "lt", "ge", "le", "crosses_above", "crosses_below")
OP_LABELS = {
    "gt": ">", "lt": "<", "ge": "≥", "le": "≤",
    "crosses_above": "crosses above", "crosses_below": "crosses below",
}
METRIC_LABELS = {
    "price": "price", "change_pct": "change %", "live_zscore": "live z-score",
    "zscore": "z-score", "spread": "spread", "corr": "correlation", "beta": "β",
    "volume": "volume", "trades_per_s": "trades/s", "adf_pvalue": "ADF p-value",
    "basis_bps": "basis (bps)",
}
#: Fields of the JSON rule format (``POST /api/alerts``).
FIELDS = (
    "metric", "symbol", "a", "b", "timeframe", "window", "regression", "prices", "op",
    "threshold", "hysteresis", "cooldown_s", "enabled", "channels", "source",
)
#: Keys a client may send back from ``GET /api/alerts``; they are not rule fields.
READ_ONLY_FIELDS = ("id", "created_at", "updated_at", "description", "status")
MAX_WINDOW = 86_400
MAX_COOLDOWN_S = 7 * 86_400
MAX_CHANNELS = 20
_UPWARD = ("gt", "ge", "crosses_above")


class RuleError(ValueError):
    """An invalid rule: ``fields`` maps every bad field to its message.

    ``RuleError("threshold", "must be a number")`` for one field; :meth:`of` for
    several. ``field``/``message`` are the first one (for callers that show one).
    """

    def __init__(self, field: str, message: str) -> None:
        self.fields: dict[str, str] = {field: message}
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")

    @classmethod
    def of(cls, fields: dict[str, str]) -> RuleError:
        first = next(iter(fields))
        err = cls(first, fields[first])
        err.fields = dict(fields)
        err.args = ("; ".join(f"{k}: {v}" for k, v in fields.items()),)
        return err


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One validated rule. ``symbol`` is set for symbol metrics, ``a``/``b`` for pairs."""

    metric: str
    op: str
    threshold: float
    symbol: str | None = None
    a: str | None = None
    b: str | None = None
    tf_ms: int = 1_000
    window: int = 60
    regression: str = "ols"
    prices: str = "raw"
    hysteresis: float = 0.0
    cooldown_s: float = 0.0
    enabled: bool = True
    id: int | None = None
    #: delivery channel ids (#20): each event becomes one delivery per channel
    channels: tuple[int, ...] = ()
    #: the pair's price source (#17): ``"trade"`` or ``"mid"``
    source: str = "trade"

    @property
    def is_pair(self) -> bool:
        return self.metric in PAIR_METRICS

    @property
    def kind(self) -> str:
        """``"live"`` or ``"bar"`` (when the service evaluates it)."""
        return "live" if self.metric in LIVE_METRICS else "bar"

    @property
    def pair_key(self) -> tuple[str, str, int, int, str, str, str] | None:
        """``(a, b, tf_ms, window, regression, prices, source)`` for
        ``MarketEngine.pair``."""
        if not self.is_pair:
            return None
        return (self.a, self.b, self.tf_ms, self.window, self.regression, self.prices,
                self.source)

    @property
    def cooldown_ms(self) -> int:
        return int(round(self.cooldown_s * 1000))


@dataclass(frozen=True, slots=True)
class RuleState:
    """Evaluation state of one rule (persisted, so a restart neither re-fires nor
    forgets). ``frontier_ts`` is the data time of the last point evaluated (None: not
    initialised yet); ``last_value`` that point's value (NaN if undefined)."""

    armed: bool = True
    last_value: float = math.nan
    frontier_ts: int | None = None
    last_fired_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Firing:
    """The rule fired at data time ``data_ts`` on ``value`` (``previous`` before it)."""

    data_ts: int
    value: float
    previous: float
    threshold: float


# ---------------------------------------------------------------------- validation
def _text(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise RuleError(name, f"must be a string, got {type(value).__name__}")
    return value.strip()


def _symbol(data: dict, name: str, symbols) -> str:
    """An instrument name as the run names it: ``BTCUSDT`` or ``perp:BTCUSDT`` (a bare
    symbol on two markets is refused with the choices)."""
    value = _text(data, name)
    if value is None:
        raise RuleError(name, "is required")
    *prefix, sym = value.split(":")
    value = ":".join([p.strip().lower() for p in prefix] + [sym.strip().upper()])
    if not SYMBOL_RE.match(value.rsplit(":", 1)[-1]) or len(prefix) > 2:
        raise RuleError(name, f"{value[:40]!r} is not a symbol (2-20 letters/digits) or an "
                        "instrument (perp:BTCUSDT)")
    if symbols is not None and value not in symbols:
        hits = sorted(s for s in symbols if not prefix and s.rsplit(":", 1)[-1] == value)
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise RuleError(
                name, f"{value} is on {len(hits)} markets here: use one of {', '.join(hits)}")
        raise RuleError(name, f"{value} is not ingested; known: {', '.join(sorted(symbols))}")
    return value


def _number(data: dict, name: str, default: float | None, lo: float, hi: float) -> float:
    value = data.get(name)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if default is None:
            raise RuleError(name, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(name, "must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise RuleError(name, "must be a finite number")
    if not lo <= value <= hi:
        raise RuleError(name, f"must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _integer(data: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = data.get(name)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(name, "must be an integer")
    if not lo <= value <= hi:
        raise RuleError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _choice(data: dict, name: str, options: tuple[str, ...], default: str | None) -> str:
    value = _text(data, name)
    if value is None:
        if default is None:
            raise RuleError(name, f"is required (one of {', '.join(options)})")
        return default
    value = value.lower()
    if value not in options:
        raise RuleError(name, f"{value[:40]!r} is not one of {', '.join(options)}")
    return value


def _timeframe(data: dict, timeframes_ms) -> int:
    raw = data.get("timeframe")
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return 1_000
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise RuleError("timeframe", "must be a string such as '1s', '1m' or '5m'")
    try:
        tf = parse_timeframe(raw.strip() if isinstance(raw, str) else raw)
    except ValueError as exc:
        raise RuleError("timeframe", str(exc)) from None
    if timeframes_ms is not None and tf not in timeframes_ms:
        options = ", ".join(format_timeframe(t) for t in timeframes_ms)
        raise RuleError("timeframe", f"{format_timeframe(tf)} is not tracked live ({options})")
    return tf


def _channels(data: dict, name: str) -> tuple[int, ...]:
    """``[id, ...]`` of delivery channels (ids only: whether they exist is the
    service's check); duplicates dropped, order kept."""
    raw = data.get(name)
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise RuleError(name, "must be a list of channel ids")
    out: list[int] = []
    for v in raw:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RuleError(name, f"{str(v)[:20]!r} is not a channel id")
        if v not in out:
            out.append(v)
    if len(out) > MAX_CHANNELS:
        raise RuleError(name, f"at most {MAX_CHANNELS} channels")
    return tuple(out)


def parse_rule(
    data: Any,
    *,
    symbols: set[str] | list[str] | tuple[str, ...] | None = None,
    timeframes_ms: tuple[int, ...] | None = (1_000, 60_000, 300_000),
    rule_id: int | None = None,
) -> AlertRule:
    """Validate a rule in its JSON form (see module docstring) into an :class:`AlertRule`.

    Parameters
    ----------
    data : dict
        ``{"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT", "timeframe": "1s",
        "window": 60, "regression": "ols", "prices": "raw", "op": "crosses_above",
        "threshold": 2.0, "hysteresis": 0, "cooldown_s": 0}``; single-symbol metrics
        take ``symbol`` instead of ``a``/``b``. ``enabled`` defaults to true. The keys
        of :data:`READ_ONLY_FIELDS` are ignored; any other unknown key is an error.
    symbols : collection of str, optional
        Ingested symbols; when given, a subject outside it is refused.
    timeframes_ms : tuple of int, optional
        Timeframes the live engine tracks (None: any valid timeframe).
    rule_id : int, optional
        Id to give the rule (an edit of a stored rule).

    Raises
    ------
    RuleError
        With ``fields`` naming every bad field, e.g.
        ``{"threshold": "must be a number", "b": "is required"}``.
    """
    if not isinstance(data, dict):
        raise RuleError("rule", "must be a JSON object")
    errors: dict[str, str] = {}

    def field(name: str, fn, *args):
        try:
            return fn(data, name, *args)
        except RuleError as exc:
            errors[name] = exc.message
            return None

    for key in data:
        if key not in FIELDS and key not in READ_ONLY_FIELDS:
            errors[str(key)[:40]] = "unknown field"
    metric = field("metric", _choice, METRICS, None)
    op = field("op", _choice, OPS, None)
    threshold = field("threshold", _number, None, -math.inf, math.inf)
    hysteresis = field("hysteresis", _number, 0.0, 0.0, math.inf)
    cooldown = field("cooldown_s", _number, 0.0, 0.0, MAX_COOLDOWN_S)
    try:
        tf = _timeframe(data, timeframes_ms)
    except RuleError as exc:
        errors["timeframe"], tf = exc.message, 1_000
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = "must be true or false"
    symbol = a = b = None
    regression, prices, window, source = "ols", "raw", 60, "trade"
    if metric in PAIR_METRICS:
        a = field("a", _symbol, symbols)
        b = field("b", _symbol, symbols)
        if a is not None and a == b:
            errors["b"] = "must differ from a"
        if metric == "basis_bps":  # a names the perp, b its spot (when the name says)
            for leg, want, other in (("a", "perp", "spot"), ("b", "spot", "perp")):
                if str(data.get(leg) or "").strip().lower().startswith(other + ":"):
                    errors[leg] = f"basis_bps takes the {want} as {leg}"
        if data.get("symbol") not in (None, ""):
            errors["symbol"] = f"not used by {metric} (a pair metric: give a and b)"
        window = field("window", _integer, 60, 3, MAX_WINDOW)
        regression = field("regression", _choice, REGRESSIONS, "ols")
        prices = field("prices", _choice, PRICE_MODES, "raw")
        source = field("source", _choice, SOURCES, "trade")
    elif metric in SYMBOL_METRICS:
        symbol = field("symbol", _symbol, symbols)
        for name in ("a", "b"):
            if data.get(name) not in (None, ""):
                errors[name] = f"not used by {metric} (a symbol metric: give symbol)"
        if metric == "change_pct":
            window = field("window", _integer, 60, 1, MAX_WINDOW)
        if str(data.get("source") or "trade").strip().lower() != "trade":
            errors["source"] = f"not used by {metric} (a symbol metric is on its trades)"
    channels = field("channels", _channels)
    if errors:
        raise RuleError.of(errors)
    return AlertRule(
        metric=metric, op=op, threshold=threshold, symbol=symbol, a=a, b=b, tf_ms=tf,
        window=window, regression=regression, prices=prices, hysteresis=hysteresis,
        cooldown_s=cooldown, enabled=enabled, id=rule_id, channels=channels, source=source,
    )


def rule_to_json(rule: AlertRule) -> dict:
    """The JSON rule format (inverse of :func:`parse_rule`; no id or times)."""
    out: dict[str, Any] = {"metric": rule.metric}
    if rule.is_pair:
        out.update(a=rule.a, b=rule.b)
    else:
        out["symbol"] = rule.symbol
    out.update(timeframe=format_timeframe(rule.tf_ms), window=rule.window)
    if rule.is_pair:
        out.update(regression=rule.regression, prices=rule.prices, source=rule.source)
    out.update(
        op=rule.op, threshold=rule.threshold, hysteresis=rule.hysteresis,
        cooldown_s=rule.cooldown_s, enabled=rule.enabled, channels=list(rule.channels),
    )
    return out


def describe(rule: AlertRule) -> str:
    """One line for tables and toasts: ``BTCUSDT/ETHUSDT 1s w60 ols z-score crosses
    above 2``."""
    tf = format_timeframe(rule.tf_ms)
    if rule.is_pair:
        subject = f"{rule.a}/{rule.b} {tf} w{rule.window} {rule.regression}"
        if rule.prices == "log":
            subject += " log"
        if rule.source == "mid":
            subject += " mid"
    elif rule.metric == "change_pct":
        subject = f"{rule.symbol} {tf} over {rule.window} bars"
    elif rule.metric == "volume":
        subject = f"{rule.symbol} {tf}"
    else:
        subject = rule.symbol
    text = f"{subject} {METRIC_LABELS[rule.metric]} {OP_LABELS[rule.op]} {rule.threshold:.10g}"
    if rule.hysteresis:
        text += f" (band {rule.hysteresis:.10g})"
    return text


# ---------------------------------------------------------------------- evaluation
def _condition(op: str, k: float, prev: np.ndarray, v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "gt":
            return v > k
        if op == "ge":
            return v >= k
        if op == "lt":
            return v < k
        if op == "le":
            return v <= k
        if op == "crosses_above":
            return (prev <= k) & (v > k)
        if op == "crosses_below":
            return (prev >= k) & (v < k)
    raise ValueError(f"unknown op {op!r}")


def _cleared(op: str, k: float, h: float, v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "gt" or op == "crosses_above":
            return v <= k - h
        if op == "ge":
            return v < k - h
        if op == "lt" or op == "crosses_below":
            return v >= k + h
        if op == "le":
            return v > k + h
    raise ValueError(f"unknown op {op!r}")


def step(
    rule: AlertRule, state: RuleState, ts: int, value: float, *, new_session: bool = False
) -> tuple[RuleState, Firing | None]:
    """Evaluate one point (the scalar reference of :func:`evaluate_series`);
    ``new_session``: a break lies between the previous point and this one."""
    v = float(value)
    prev = math.nan if new_session else state.last_value
    if not math.isfinite(v):
        return replace(state, last_value=math.nan, frontier_ts=int(ts)), None
    if state.armed:
        cond = bool(_condition(rule.op, rule.threshold, np.float64(prev), np.float64(v)))
        cool = state.last_fired_ts is None or ts - state.last_fired_ts >= rule.cooldown_ms
        if cond and cool:
            fired = Firing(int(ts), v, prev, rule.threshold)
            return RuleState(False, v, int(ts), int(ts)), fired
        return replace(state, last_value=v, frontier_ts=int(ts)), None
    armed = bool(_cleared(rule.op, rule.threshold, rule.hysteresis, np.float64(v)))
    return replace(state, armed=armed, last_value=v, frontier_ts=int(ts)), None


def new_sessions(prev_ts: int | None, ts: np.ndarray, breaks: object | None) -> np.ndarray:
    """Bool per point: a break lies in ``(previous point's ts, ts[i]]`` (``breaks`` on
    the ``ts`` scale: bucket starts for bars, raw ms for ticks); ``prev_ts`` is the
    ts before the first point (None: unknown, no break taken)."""
    ts = np.asarray(ts, dtype=np.int64)
    out = np.zeros(len(ts), dtype=bool)
    br = np.asarray([] if breaks is None else breaks, dtype=np.int64)
    if not len(br) or not len(ts):
        return out
    sid = np.searchsorted(br, ts, side="right")
    out[1:] = sid[1:] != sid[:-1]
    if prev_ts is not None:
        out[0] = sid[0] != np.searchsorted(br, int(prev_ts), side="right")
    return out


def evaluate_series(
    rule: AlertRule, state: RuleState, ts: np.ndarray, values: np.ndarray,
    breaks: object | None = None,
) -> tuple[RuleState, list[Firing]]:
    """Evaluate consecutive points ``(ts[i], values[i])`` after ``state``; vectorised.

    Exactly the fold of :func:`step` over the points (a test checks it), but each run
    of points between two state changes (fire, re-arm) costs one numpy pass, so a
    burst of ticks costs O(n) numpy work plus O(events) Python steps.

    Parameters
    ----------
    rule : AlertRule
    state : RuleState
        State after the previous point (``last_value`` is ``v_{t-1}`` of the first).
    ts : array of int64
        Data times, increasing.
    values : array of float
        Metric values (NaN where undefined).
    breaks : array of int, optional
        Session starts on the ``ts`` scale (sorted): a point after one has no previous
        value (no crossing across a break; :func:`new_sessions`, ``state.frontier_ts``
        is the time of the point before the first).

    Returns
    -------
    (RuleState, list of Firing)
    """
    ts = np.asarray(ts, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return state, []
    prev = np.empty(n)
    prev[0] = state.last_value
    prev[1:] = v[:-1]
    if breaks is not None:
        prev[new_sessions(state.frontier_ts, ts, breaks)] = np.nan
    cond = _condition(rule.op, rule.threshold, prev, v)
    clear = _cleared(rule.op, rule.threshold, rule.hysteresis, v)
    armed, last_fired = state.armed, state.last_fired_ts
    cd = rule.cooldown_ms
    fired: list[Firing] = []
    i = 0
    while i < n:
        if armed:
            ok = cond[i:]
            if last_fired is not None and cd > 0:
                ok = ok & (ts[i:] - last_fired >= cd)
            hits = np.flatnonzero(ok)
            if len(hits) == 0:
                break
            j = i + int(hits[0])
            fired.append(Firing(int(ts[j]), float(v[j]), float(prev[j]), rule.threshold))
            armed, last_fired = False, int(ts[j])
        else:
            hits = np.flatnonzero(clear[i:])
            if len(hits) == 0:
                break
            j = i + int(hits[0])
            armed = True
        i = j + 1
    new = RuleState(armed, float(v[-1]), int(ts[-1]), last_fired)
    return new, fired
