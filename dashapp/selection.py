"""A pair selection: the ONE declaration of what a pair panel, the data table and the
downloads show (legs, timeframe, window, regression, prices, chart mode, bands, entry,
source), and how it is read from the URL, the controls and the browser's store.

* :class:`Selection`: validated choices (frozen; ``key`` is its analytics identity);
* :func:`parse_query`: ``/pair?a=..&b=..&tf=..&w=..&reg=..&prices=..`` -> a Selection,
  falling back to the default of every bad value with a note saying why;
* :func:`validate`: the controls -> a Selection, strictly (a bad value is a
  :class:`~dashapp.api.params.BadParam` naming the control);
* :meth:`Selection.from_store`: the browser's store back, a forged one refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlencode

from analytics.instruments import SYMBOL_RE
from analytics.pair import PRICE_MODES, REGRESSIONS, SOURCES
from analytics.timeframes import LIVE_TIMEFRAMES, format_timeframe, parse_timeframe
from dashapp.api import params

MAX_WINDOW = 3_600
DEFAULT_WINDOW = 60


@dataclass(frozen=True, slots=True)
class Selection:
    a: str
    b: str
    tf: str = "1s"
    window: int = DEFAULT_WINDOW
    regression: str = "ols"
    prices: str = "raw"
    mode: str = "overlay"  # price chart: "overlay" (normalized lines) or "candles"
    k: float = 2.0  # spread band width in sigmas
    entry: float = 2.0  # z entry threshold (lines, signal summary)
    dataset: str | None = None  # an uploaded dataset (batch), None = the live feed
    #: the price the pair is computed on (#17): "trade" (bars' closes) or "mid"
    source: str = "trade"

    @property
    def tf_ms(self) -> int:
        return LIVE_TIMEFRAMES.get(self.tf) or parse_timeframe(self.tf)

    @property
    def key(self) -> str:
        """Identity of the analytics (what uirevision and the drawn store follow)."""
        base = f"{self.a}|{self.b}|{self.tf}|{self.window}|{self.regression}|{self.prices}"
        if self.source != "trade":
            base += f"|{self.source}"
        return base if self.dataset is None else f"{base}|dataset={self.dataset}"

    def engine_args(self) -> tuple:
        """``MarketData.pair`` / ``tracked_pair`` arguments, the price source last."""
        return (self.a, self.b, self.tf_ms, self.window, self.regression, self.prices,
                self.source)

    def query_params(self) -> dict:
        """Every control, as the URL carries it (``dataset`` only when not live)."""
        out = {
            "a": self.a,
            "b": self.b,
            "tf": self.tf,
            "w": self.window,
            "reg": self.regression,
            "prices": self.prices,
            "mode": self.mode,
            "k": f"{self.k:g}",
            "entry": f"{self.entry:g}",
        }
        if self.source != "trade":  # the default stays out: today's links unchanged
            out["source"] = self.source
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    def query(self) -> str:
        return "?" + urlencode(self.query_params())

    def to_store(self) -> dict:
        return asdict(self)

    @classmethod
    def from_store(cls, data) -> Selection | None:
        """The store's selection, or None when it is absent or not one (the browser
        can send anything: a forged store is refused here, never a 500 later)."""
        if not isinstance(data, dict) or set(data) - set(cls.__slots__):
            return None
        try:
            return cls(**_checked_store(data))
        except (TypeError, ValueError, KeyError):
            return None


def _checked_store(d: dict) -> dict:
    """Type and range checks of a stored selection (raises ValueError/KeyError)."""
    out = {}
    for name in ("a", "b"):
        v = d[name]
        # a name as the run gives it: "BTCUSDT" or "perp:BTCUSDT" (analytics.instruments)
        if (not isinstance(v, str) or v.count(":") > 2
                or not SYMBOL_RE.match(v.rsplit(":", 1)[-1])):
            raise ValueError(name)
        out[name] = v
    if out["a"] == out["b"]:
        raise ValueError("a == b")
    tf = d.get("tf", "1s")
    if not isinstance(tf, str) or len(tf) > 8 or not 0 < parse_timeframe(tf) <= 86_400_000:
        raise ValueError("tf")
    w = d.get("window", DEFAULT_WINDOW)
    if type(w) is not int or not 3 <= w <= MAX_WINDOW:
        raise ValueError("window")
    choices = {
        "regression": REGRESSIONS,
        "prices": PRICE_MODES,
        "mode": PRICE_CHART_MODES,
        "source": SOURCES,
    }
    for name, allowed in choices.items():
        v = d.get(name, allowed[0])
        if v not in allowed:
            raise ValueError(name)
        out[name] = v
    for name in ("k", "entry"):
        v = d.get(name, 2.0)
        if type(v) not in (int, float) or not (math.isfinite(v) and NUM_LO <= v <= NUM_HI):
            raise ValueError(name)
        out[name] = float(v)
    ds = d.get("dataset")
    if ds is not None and (not isinstance(ds, str) or not 0 < len(ds) <= 64):
        raise ValueError("dataset")
    return {**out, "tf": tf, "window": w, "dataset": ds}


def default_selection(symbols: list[str]) -> Selection:
    syms = sorted(symbols)
    pref = [s for s in ("BTCUSDT", "ETHUSDT") if s in syms]
    pick = pref if len(pref) == 2 else syms[:2]
    if len(pick) < 2:
        raise ValueError("the pair page needs at least two ingested symbols")
    return Selection(pick[0], pick[1])


#: What the red message calls each control (the labels on screen).
CONTROL_LABELS = {
    "a": "A",
    "b": "B",
    "tf": "Timeframe",
    "w": "Window (bars)",
    "reg": "Regression",
    "prices": "Prices",
    "mode": "Price chart",
    "k": "Bands k σ",
    "entry": "Entry |z|",
    "dataset": "Source",
    "source": "Price",
}
PRICE_CHART_MODES = ("overlay", "candles")
NUM_LO, NUM_HI = 0.5, 5.0  # bounds of k and entry


def validate(
    values: dict, symbols: list[str], timeframes=None, dataset: str | None = None
) -> Selection:
    """Controls/URL values -> Selection; raises :class:`~dashapp.api.params.BadParam`.

    Strict, because a control the trader typed into must never be replaced silently: a
    blank window, ``3.5`` bars, ``k = 0`` are errors, not defaults. ``timeframes`` are
    the source's (default: the live :data:`~analytics.timeframes.LIVE_TIMEFRAMES`)."""
    tfs = tuple(timeframes or LIVE_TIMEFRAMES)
    known = set(symbols)
    a = params.symbol(values, "a", known)
    b = params.symbol(values, "b", known)
    if a == b:
        raise params.BadParam("b", "must differ from a")
    tf = str(values.get("tf") or tfs[0]).strip()
    if tf not in tfs:
        raise params.BadParam("tf", f"{tf[:20]!r} is not one of {', '.join(tfs)}")
    w = params.whole_number(values, "w", 3, MAX_WINDOW)
    reg = params.regression({"regression": values.get("reg")})
    prices = params.prices({"prices": values.get("prices")})
    mode = params.choice(values, "mode", PRICE_CHART_MODES, "overlay")
    k = params.bounded_number(values, "k", NUM_LO, NUM_HI)
    entry = params.bounded_number(values, "entry", NUM_LO, NUM_HI)
    source = params.source({"source": values.get("source")})
    if dataset is not None and source != "trade":
        raise params.BadParam("source", "an uploaded dataset has no top of book: use trade")
    return Selection(a, b, tf, w, reg, prices, mode, k, entry, dataset, source)


def parse_query(
    query: dict, symbols: list[str], timeframes=None, dataset: str | None = None
) -> tuple[Selection, list[str]]:
    """URL query -> Selection; each bad value falls back to its default with a note.

    ``symbols`` and ``timeframes`` are the source's (the live feed's by default, or
    those of ``dataset``)."""
    tfs = tuple(timeframes or LIVE_TIMEFRAMES)
    sel = replace(default_selection(symbols), tf=tfs[0], dataset=dataset)
    known = set(symbols)

    def tf_check(v):
        v = str(v).strip()
        if v not in tfs:
            raise params.BadParam("tf", f"{v[:20]!r} is not one of {', '.join(tfs)}")
        return v

    checks = {
        "a": lambda v: params.symbol({"a": v}, "a", known),
        "b": lambda v: params.symbol({"b": v}, "b", known),
        "tf": tf_check,
        "w": lambda v: params.whole_number({"w": v}, "w", 3, MAX_WINDOW),
        "reg": lambda v: params.regression({"regression": v}),
        "prices": lambda v: params.prices({"prices": v}),
        "mode": lambda v: params.choice({"mode": v}, "mode", PRICE_CHART_MODES, "overlay"),
        "k": lambda v: params.bounded_number({"k": v}, "k", NUM_LO, NUM_HI),
        "entry": lambda v: params.bounded_number({"entry": v}, "entry", NUM_LO, NUM_HI),
        "source": lambda v: _source_check(v, dataset),
    }
    fields = {"w": "window", "reg": "regression"}
    values, notes = {}, []
    for name, check in checks.items():
        if name not in query:
            continue
        field_name = fields.get(name, name)
        try:
            values[field_name] = check(query[name])
        except params.BadParam as exc:
            notes.append(f"URL parameter {exc} (using {getattr(sel, field_name)})")
    chosen = replace(sel, **values)
    if chosen.a == chosen.b:
        notes.append(f"URL parameters a and b are both {chosen.a} (using {sel.a} / {sel.b})")
        chosen = replace(chosen, a=sel.a, b=sel.b)
    return chosen, notes


def _source_check(value, dataset: str | None) -> str:
    source = params.source({"source": value})
    if dataset is not None and source != "trade":
        raise params.BadParam("source", "an uploaded dataset has no top of book")
    return source


def describe(sel: Selection) -> str:
    src = "" if sel.dataset is None else f" · dataset {sel.dataset}"
    mid = " · mid" if sel.source == "mid" else ""
    return (
        f"{sel.a} / {sel.b} · {format_timeframe(sel.tf_ms)} · w={sel.window} · "
        f"{sel.prices}{mid}{src}"
    )


def alert_rule(sel: Selection) -> dict:
    """Partial alert rule (JSON rule format of ``POST /api/alerts``) for this panel:
    z-score crossing above the entry threshold; the modal lets the trader edit it."""
    return {
        "metric": "zscore",
        "a": sel.a,
        "b": sel.b,
        "timeframe": sel.tf,
        "window": sel.window,
        "regression": sel.regression,
        "prices": sel.prices,
        "source": sel.source,
        "op": "crosses_above",
        "threshold": sel.entry,
    }
