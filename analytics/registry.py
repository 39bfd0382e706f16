"""The analytics registry: every pair figure and every bar figure, declared once.

Why one place: a pair column used to be declared in five (the batch ``PairSeries``, the
engine's field tuple and record, the incremental point, the API's column list) and the
parity tests listed fields by hand, so adding one touched a dozen files and the live
and dataset frames could drift apart. Now everything that lists pair columns derives
from :data:`PAIR_FIGURES`, in its order:

* the batch :func:`analytics.pair.pair_series` runs each figure's ``batch``;
* the live :class:`analytics.live.IncrementalPair` runs each figure's ``twin``, bar by
  bar, and the engine stores the rows (:data:`PAIR_COLUMNS`, :data:`PAIR_DTYPES`);
* the record types (``PairSeries``, ``PairColumns``, ``PairPoint``) are built from it
  (:func:`pair_record`), and :func:`pair_table` is THE frame of a pair series, for
  live data and datasets alike (``/api/pair`` JSON and CSV, the downloads);
* :func:`analytics.pair.requirements` reads each ``warmup``; the pair page's KPI strip
  shows every figure whose :class:`Display` has a ``kpi`` slot;
* the parity tests (batch vs incremental at every bar, live vs dataset) iterate it.

A figure is computed from the pair's **inputs** (:class:`PairInputs` for a whole
series, :class:`BarInputs` for one bar: timestamps, raw and model prices, raw log
returns and the hedge ``alpha, beta`` of the chosen regression, which is a pair
option, not a column) and from the figures declared before it. Adding one: declare it
here (``docs/analytics-registry.md`` walks through the rolling half-life).

Bar figures (:data:`BAR_FIGURES`) declare the OHLCV fields the same way: the stored
ones (:data:`BAR_FIELDS`, :data:`BAR_DTYPES`, what :class:`analytics.bars.Bar` holds
and the store persists) and the served ones (:data:`BAR_COLUMNS`, ``/api/bars``), the
top-of-book columns last (:data:`BOOK_COLUMNS`, joined from :mod:`analytics.book`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, make_dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from analytics.rolling import MeanStd, RollingCorr, RollingMoments
from analytics.spread import rolling_corr, rolling_zscore
from analytics.stationarity import RollingHalfLife, rolling_half_life

__all__ = [
    "BAR_COLUMNS",
    "BAR_DTYPES",
    "BAR_FIELDS",
    "BAR_FIGURES",
    "BOOK_COLUMNS",
    "KPI_FIGURES",
    "PAIR_COLUMNS",
    "PAIR_DTYPES",
    "PAIR_FIGURES",
    "STATISTICS",
    "BarFigure",
    "BarInputs",
    "Display",
    "PairFigure",
    "PairInputs",
    "Twin",
    "pair_record",
    "pair_table",
]


@dataclass(frozen=True, slots=True)
class Display:
    """How a figure is shown: ``label`` (KPI title), ``fmt`` (format spec of a value),
    ``unit``; ``kpi``: its place in the pair page's KPI strip (cards sort by it; None =
    not a card), ``kpi_sub``: the card's second line, a template with ``{reg}``
    (regression label), ``{tf}`` and ``{window}``."""

    label: str
    fmt: str = ".6g"
    unit: str = ""
    kpi: int | None = None
    kpi_sub: str = ""


@dataclass(frozen=True, slots=True)
class PairInputs:
    """What every batch figure may read, whole-series arrays (one per aligned bar).

    ``model_*``: the prices the hedge regresses (raw, or ``ln`` for ``prices="log"``);
    ``ret_*``: log returns of the **raw** prices (``ret[0] = NaN``); ``alpha, beta``:
    the trailing hedge of the chosen regression; ``window``: ``w``.
    """

    ts: np.ndarray
    price_a: np.ndarray
    price_b: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    ret_a: np.ndarray
    ret_b: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    window: int


@dataclass(frozen=True, slots=True)
class BarInputs:
    """The same inputs for one closed aligned bar (the incremental twins' argument).

    ``n``: bars seen, this one included; ``hedged``: the hedge has a value (False while
    warming up, or before a robust regression's first scheduled refit): figures built
    on the spread do not take this bar in (as the batch, whose windows are NaN there).
    """

    ts: object
    price_a: float
    price_b: float
    model_a: float
    model_b: float
    ret_a: float
    ret_b: float
    alpha: float
    beta: float
    hedged: bool
    n: int


class Twin(Protocol):
    """Incremental twin of a figure: bounded state, one ``update`` per closed bar
    returning the figure's value at that bar (``row``: the figures declared before it,
    at this bar). It must equal the batch at every bar (tests). A twin with state also
    says how many values it holds (``count``, at most ``w``)."""

    def update(self, bar: BarInputs, row: Mapping[str, float]) -> float: ...


@dataclass(frozen=True, slots=True)
class PairFigure:
    """One pair column.

    ``batch(inputs, columns)``: the whole series (``columns``: the figures before it);
    ``twin(w)``: a new :class:`Twin`; ``twin_kind`` says in words how it updates;
    ``warmup(w, first)``: bars needed before it is defined (``first``: bars the hedge
    needs, ``w``, or 2 for Kalman), None for an input carried through; ``dense``: False
    when it can be NaN after its warm-up too (e.g. no half-life in a window that does
    not mean-revert).
    """

    name: str
    dtype: type
    description: str
    display: Display
    batch: Callable[[PairInputs, Mapping[str, np.ndarray]], np.ndarray]
    twin: Callable[[int], Twin]
    twin_kind: str
    warmup: Callable[[int, int], int] | None = None
    dense: bool = True


class PerBar:
    """Twin of a figure that is a function of this bar alone (no state)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[BarInputs, Mapping[str, float]], float]) -> None:
        self._fn = fn

    def update(self, bar: BarInputs, row: Mapping[str, float]) -> float:
        return self._fn(bar, row)


def _per_bar(fn: Callable[[BarInputs, Mapping[str, float]], float]) -> Callable[[int], Twin]:
    return lambda _w: PerBar(fn)


class ZScoreTwin:
    """``z_t`` of the spread: :class:`~analytics.rolling.RollingMoments` over the
    spreads of hedged bars. :attr:`stats` (mean, sample std of the last ``w`` spreads)
    is what the tick-level live z uses."""

    __slots__ = ("_moments", "stats")

    def __init__(self, window: int) -> None:
        self._moments = RollingMoments(window)
        self.stats: MeanStd | None = None

    @property
    def count(self) -> int:
        """Spreads held (<= w): the state is bounded."""
        return self._moments.count

    def update(self, bar: BarInputs, row: Mapping[str, float]) -> float:
        if not bar.hedged:
            return math.nan
        st = self.stats = self._moments.update(row["spread"])
        if st is None or not st.std > 0.0:
            return math.nan
        return (row["spread"] - st.mean) / st.std


class CorrTwin:
    """``corr_t``: :class:`~analytics.rolling.RollingCorr` of the raw log returns
    (from the second bar: the first has no return)."""

    __slots__ = ("_corr",)

    def __init__(self, window: int) -> None:
        self._corr = RollingCorr(window)

    @property
    def count(self) -> int:
        """Return pairs held (<= w): the state is bounded."""
        return self._corr.count

    def update(self, bar: BarInputs, row: Mapping[str, float]) -> float:
        if bar.n < 2:
            return math.nan
        c = self._corr.update(bar.ret_a, bar.ret_b)
        return math.nan if c is None else c


class HalfLifeTwin:
    """``halflife_t``: :class:`~analytics.stationarity.RollingHalfLife` over the spreads
    of hedged bars (running sums of the last w (lagged spread, change) pairs)."""

    __slots__ = ("_hl",)

    def __init__(self, window: int) -> None:
        self._hl = RollingHalfLife(window)

    @property
    def count(self) -> int:
        return self._hl.count

    def update(self, bar: BarInputs, row: Mapping[str, float]) -> float:
        return self._hl.update(row["spread"]) if bar.hedged else math.nan


PRICE_FMT = ",.8g"

#: The pair columns, in column order (``/api/pair``, CSV, frames, records).
PAIR_FIGURES: tuple[PairFigure, ...] = (
    PairFigure(
        "ts", np.int64, "bucket start of the aligned bar, epoch ms",
        Display("time", "d", "ms"),
        batch=lambda x, c: x.ts, twin=_per_bar(lambda b, r: b.ts),
        twin_kind="carried from the bar",
    ),
    PairFigure(
        "price_a", np.float64, "close of leg A (carried forward when A did not trade)",
        Display("A", PRICE_FMT),
        batch=lambda x, c: x.price_a, twin=_per_bar(lambda b, r: b.price_a),
        twin_kind="carried from the bar",
    ),
    PairFigure(
        "price_b", np.float64, "close of leg B (carried forward when B did not trade)",
        Display("B", PRICE_FMT),
        batch=lambda x, c: x.price_b, twin=_per_bar(lambda b, r: b.price_b),
        twin_kind="carried from the bar",
    ),
    PairFigure(
        "alpha", np.float64, "intercept of the trailing hedge A = alpha + beta * B",
        Display("α", ".5g", kpi=20),
        batch=lambda x, c: x.alpha, twin=_per_bar(lambda b, r: b.alpha),
        twin_kind="read from the hedge (RollingOLS / KalmanHedge / robust refit)",
        warmup=lambda w, first: first,
    ),
    PairFigure(
        "beta", np.float64, "hedge ratio of the trailing regression of A on B",
        Display("β hedge", ".5g", kpi=10, kpi_sub="{reg} · {tf}"),
        batch=lambda x, c: x.beta, twin=_per_bar(lambda b, r: b.beta),
        twin_kind="read from the hedge (RollingOLS / KalmanHedge / robust refit)",
        warmup=lambda w, first: first,
    ),
    PairFigure(
        "spread", np.float64, "A - alpha_t - beta_t * B on model prices, each bar its own fit",
        Display("spread", ".6g"),
        batch=lambda x, c: x.model_a - c["alpha"] - c["beta"] * x.model_b,
        twin=_per_bar(
            lambda b, r: b.model_a - r["alpha"] - r["beta"] * b.model_b if b.hedged else math.nan
        ),
        twin_kind="per bar, from this bar's hedge",
        warmup=lambda w, first: first,
    ),
    PairFigure(
        "zscore", np.float64, "(spread - mean) / std (ddof=1) of the last w spreads",
        Display("z", "+.2f"),
        batch=lambda x, c: rolling_zscore(c["spread"], window=x.window),
        twin=ZScoreTwin, twin_kind="running sums of the last w spreads (RollingMoments)",
        warmup=lambda w, first: first + w - 1,
    ),
    PairFigure(
        "corr", np.float64, "Pearson correlation of the legs' raw log returns, last w returns",
        Display("corr ρ", ".3f", kpi=50, kpi_sub="w={window}"),
        batch=lambda x, c: rolling_corr(x.ret_a, x.ret_b, window=x.window),
        twin=CorrTwin, twin_kind="running sums of the last w return pairs (RollingCorr)",
        warmup=lambda w, first: w + 1,
    ),
    PairFigure(
        "halflife", np.float64,
        "bars for a spread deviation to halve: -ln 2 / ln(1 + b), b the slope of the AR(1)"
        " fit ds_t = a + b s_{t-1} over the last w changes (NaN if b >= 0)",
        Display("rolling half-life", ",.1f", "bars", kpi=60, kpi_sub="bars · w={window}"),
        batch=lambda x, c: rolling_half_life(c["spread"], window=x.window),
        twin=HalfLifeTwin, twin_kind="running sums of the last w (s_{t-1}, ds_t) pairs",
        warmup=lambda w, first: first + w, dense=False,
    ),
)

#: Column names, in order: THE pair column tuple.
PAIR_COLUMNS: tuple[str, ...] = tuple(f.name for f in PAIR_FIGURES)
#: Column dtypes (the engine's buffer).
PAIR_DTYPES: dict[str, type] = {f.name: f.dtype for f in PAIR_FIGURES}
#: The figures computed from the inputs (all but the carried ``ts``, prices).
STATISTICS: tuple[PairFigure, ...] = tuple(f for f in PAIR_FIGURES if f.warmup is not None)
#: The figures shown as KPI cards, in strip order.
KPI_FIGURES: tuple[PairFigure, ...] = tuple(
    sorted((f for f in PAIR_FIGURES if f.display.kpi is not None), key=lambda f: f.display.kpi)
)


def pair_record(
    name: str, module: str, doc: str, field_type: type, *, extra=(), namespace=None
) -> type:
    """A frozen dataclass ``module.name`` with one ``field_type`` field per pair column
    (then ``extra``: ``(name, type)`` pairs): the record types of a series and a point
    are generated, so they cannot miss a declared column (and pickle by ``module``,
    where the caller binds it, for the forked background jobs)."""
    fields = [(c, field_type) for c in PAIR_COLUMNS] + list(extra)
    cls = make_dataclass(name, fields, frozen=True, slots=True, namespace=namespace or {})
    cls.__doc__ = doc
    cls.__module__ = module
    return cls


def pair_table(series: object, rows: slice | None = None) -> pd.DataFrame:
    """THE frame of a pair series (``PairSeries``, ``PairColumns``): columns
    :data:`PAIR_COLUMNS` in order, the ``rows`` picked (all by default). Live data and
    datasets both go through here, so their tables cannot drift apart."""
    keep = slice(None) if rows is None else rows
    return pd.DataFrame({c: getattr(series, c)[keep] for c in PAIR_COLUMNS})


# ---------------------------------------------------------------------------- bars
@dataclass(frozen=True, slots=True)
class BarFigure:
    """One bar field: ``stored`` (in :class:`analytics.bars.Bar`, persisted) or derived
    from the stored ones (``vwap``); ``served`` in ``/api/bars`` and the bar downloads
    (the trade-id range is bookkeeping, not served)."""

    name: str
    dtype: type
    description: str
    unit: str = ""
    stored: bool = True
    served: bool = True
    book: bool = False


#: Bar fields in table order (``/api/bars``), the stored-only trade ids last.
BAR_FIGURES: tuple[BarFigure, ...] = (
    BarFigure("ts", np.int64, "bucket start (a multiple of the timeframe)", "ms"),
    BarFigure("open", np.float64, "price of the first trade in (T, trade id) order"),
    BarFigure("high", np.float64, "highest trade price"),
    BarFigure("low", np.float64, "lowest trade price"),
    BarFigure("close", np.float64, "price of the last trade in (T, trade id) order"),
    BarFigure("volume", np.float64, "sum(qty), base asset"),
    BarFigure("quote_volume", np.float64, "sum(price * qty), quote asset", "USDT"),
    BarFigure("trades", np.int64, "number of trades"),
    BarFigure("vwap", np.float64, "quote_volume / volume (NaN if none)", stored=False),
    BarFigure("buy_volume", np.float64, "sum(qty) of taker buys (buyer not maker)"),
    BarFigure("first_id", np.int64, "trade id of the open trade", served=False),
    BarFigure("last_id", np.int64, "trade id of the close trade", served=False),
    # Top of book (analytics/book.py): the book as of the END of the bucket, from the
    # stored 1 s book bars; NaN before the first quote. Not in the trade-bar row.
    BarFigure("bid", np.float64, "best bid of the last book update (carried)", book=True,
              stored=False),
    BarFigure("ask", np.float64, "best ask of the last book update (carried)", book=True,
              stored=False),
    BarFigure("bid_qty", np.float64, "quantity at the best bid (last update, carried)",
              book=True, stored=False),
    BarFigure("ask_qty", np.float64, "quantity at the best ask (last update, carried)",
              book=True, stored=False),
    BarFigure("mid", np.float64, "(bid + ask) / 2 of the last update", book=True,
              stored=False),
    BarFigure("spread_bps", np.float64, "1e4 * (ask - bid) / mid of the last update",
              "bps", book=True, stored=False),
    BarFigure("spread_bps_twa", np.float64,
              "quoted spread time-weighted over the bucket (each quote by the time it "
              "stood in it, the one in force at the start included)", "bps", book=True,
              stored=False),
    BarFigure("imbalance", np.float64, "bid_qty / (bid_qty + ask_qty) of the last update",
              book=True, stored=False),
)
#: Stored bar fields, in :meth:`analytics.bars.Bar.as_row` order (the store's row).
BAR_FIELDS: tuple[str, ...] = tuple(f.name for f in BAR_FIGURES if f.stored)
#: Dtypes of the stored fields.
BAR_DTYPES: dict[str, type] = {f.name: f.dtype for f in BAR_FIGURES if f.stored}
#: Served bar columns, in ``/api/bars`` order (the trade columns, then the book's).
BAR_COLUMNS: tuple[str, ...] = tuple(f.name for f in BAR_FIGURES if f.served)
#: The served top-of-book columns (:func:`analytics.book.book_columns`), in order.
BOOK_COLUMNS: tuple[str, ...] = tuple(f.name for f in BAR_FIGURES if f.book)
