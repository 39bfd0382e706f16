"""The data page's table: selection, features (cached), ag-grid filter/sort -> pandas.

The grid uses ag-grid's **infinite row model**: the browser asks for one block of rows
at a time (``getRowsRequest`` with ``startRow``, ``endRow``, ``sortModel``,
``filterModel``) and the server answers with that block and the filtered row count, so
a day of 1 s rows (86,400) never travels to the browser at once. Filtering and sorting
happen here, on the server, with :func:`filter_mask` and :func:`sort_frame`; the CSV
download applies exactly the same two functions to the whole table, so the file holds
exactly the rows the grid shows, in the grid's order.

Features are computed once per selection (:func:`features_for`, an LRU of a few
tables): paging, sorting and filtering only slice the cached frame.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.book import book_columns
from analytics.features import (
    FEATURE_COLUMNS,
    PairFeatures,
    pair_features,
    pair_from_bars,
)
from analytics.pair import PRICE_MODES, REGRESSIONS
from analytics.timeframes import format_timeframe, parse_timeframe
from dashapp import queries
from dashapp.api.params import MAX_WINDOW, BadParam, control_number
from dashapp.components import dataset_select
from dashapp.selection import Selection
from dashapp.services import get_services

log = logging.getLogger(__name__)

LIVE = "live"
CACHE_TABLES = 6
MAX_PAGE_ROWS = 1_000
TEXT_COLUMNS = ("ts", "adf_ts")  # ISO strings in the grid: text filters
INT_COLUMNS = ("signal",)
NUMBER_OPS = (
    "equals",
    "notEqual",
    "lessThan",
    "lessThanOrEqual",
    "greaterThan",
    "greaterThanOrEqual",
    "inRange",
    "blank",
    "notBlank",
)
TEXT_OPS = (
    "contains",
    "notContains",
    "equals",
    "notEqual",
    "startsWith",
    "endsWith",
    "blank",
    "notBlank",
)


@dataclass(frozen=True, slots=True)
class Table:
    """What the table shows: a pair :class:`~dashapp.selection.Selection` (the one
    declaration of a pair choice: legs, timeframe, window, regression, prices, entry,
    source), the ADF step, and ``asof``, which changes on every Load so a reload
    recomputes."""

    sel: Selection
    adf_every: int | None
    asof: int

    def as_dict(self) -> dict:
        return {"sel": self.sel.to_store(), "adf_every": self.adf_every, "asof": self.asof}

    @classmethod
    def from_dict(cls, d) -> Table:
        """The page's store back (a forged one is a ``BadParam``, never a 500)."""
        try:
            return cls(Selection(**d["sel"]), d["adf_every"], d["asof"])
        except (TypeError, KeyError):
            raise BadParam("selection", "load a table first") from None


def make_table(
    source, a, b, timeframe, window, regression, prices, entry, adf_every
) -> Table:
    """Validate the page's controls (``BadParam`` naming the control)."""
    name = dataset_select.dataset_of(source)  # None: the live feed
    source = LIVE if name is None else name
    if source != LIVE:
        info = queries.dataset_info(source)
        known = set(info.symbols)
    else:
        known = set(get_services().names())
    for name, sym in (("a", a), ("b", b)):
        if not sym or sym not in known:
            raise BadParam(
                name,
                f"choose a symbol of {'the dataset' if source != LIVE else 'the feed'}"
                f" ({', '.join(sorted(known))})",
            )
    if a == b:
        raise BadParam("b", "must differ from a")
    try:
        tf = parse_timeframe(str(timeframe))
    except ValueError as exc:
        raise BadParam("timeframe", str(exc)) from None
    if source == LIVE and tf not in get_services().timeframes():
        raise BadParam("timeframe", "live tables exist for 1s, 1m and 5m")
    if regression not in REGRESSIONS:
        raise BadParam("regression", f"one of {', '.join(REGRESSIONS)}")
    if prices not in PRICE_MODES:
        raise BadParam("prices", f"one of {', '.join(PRICE_MODES)}")
    k = None
    if adf_every not in (None, ""):
        k = control_number(adf_every, "adf_every", 1, 86_400, integer=True)
    sel = Selection(
        a=a,
        b=b,
        tf=format_timeframe(tf),
        window=control_number(window, "window", 3, MAX_WINDOW, integer=True),
        regression=regression,
        prices=prices,
        entry=control_number(entry, "entry", 0.1, 20),
        dataset=None if source == LIVE else source,
    )
    return Table(sel, adf_every=k, asof=int(time.time() * 1000)
    )


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[str, PairFeatures] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PairFeatures | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: PairFeatures) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


_CACHE = _Lru(CACHE_TABLES)


def compute_features(table: Table) -> PairFeatures:
    """The features table of a selection (live engine or uploaded dataset)."""
    sel = table.sel
    if sel.dataset is None:
        market = get_services()
        snap = market.pair(
            sel.a, sel.b, sel.tf_ms, sel.window, sel.regression, sel.prices
        )
        bars_a, bars_b = market.bars(sel.a, sel.tf_ms), market.bars(sel.b, sel.tf_ms)
        series = snap.series
        breaks = snap.breaks  # no return or position spans a session break
        books = {"a": market.book_bars(sel.a, sel.tf_ms), "b": market.book_bars(sel.b, sel.tf_ms)}
    else:
        bars_a = queries.dataset_bars(sel.dataset, sel.a, sel.tf_ms)
        bars_b = queries.dataset_bars(sel.dataset, sel.b, sel.tf_ms)
        _, series = pair_from_bars(
            bars_a,
            bars_b,
            window=sel.window,
            regression=sel.regression,
            prices=sel.prices,
        )
        breaks = None
        books = {}
    return with_book(pair_features(
        bars_a,
        bars_b,
        series,
        window=sel.window,
        regression=sel.regression,
        prices=sel.prices,
        entry=sel.entry,
        adf_every=table.adf_every,
        breaks=breaks,
    ), books)


#: Top-of-book columns of each leg in the table (``a_bid``...; :mod:`analytics.book`):
#: the book as of each row's bucket end, NaN before the first quote, for a dataset, and
#: while the leg's book second is not final yet (a quote of it may still come).
LEG_BOOK = ("bid", "ask", "spread_bps_twa")
BOOK_TABLE_COLUMNS = tuple(f"{leg}_{c}" for leg in ("a", "b") for c in LEG_BOOK)
#: Every column of the table: the features, then the legs' book.
TABLE_COLUMNS = (*FEATURE_COLUMNS, *BOOK_TABLE_COLUMNS)


def with_book(features: PairFeatures, books: dict) -> PairFeatures:
    """``features`` with :data:`BOOK_TABLE_COLUMNS` (``books``: leg ``"a"``/``"b"`` ->
    :class:`analytics.book.BookBars` at the table's timeframe, or None)."""
    frame = features.frame.copy()
    ts = frame["ts"].to_numpy()
    tf = features.tf_ms
    for leg in ("a", "b"):
        book = books.get(leg)
        cols = book_columns(ts, tf, book)
        if book is not None and book.final_ms is not None:
            open_rows = ts + tf > book.final_ms  # not final: not known yet
            cols = {c: np.where(open_rows, np.nan, v) for c, v in cols.items()}
        for c in LEG_BOOK:
            frame[f"{leg}_{c}"] = cols[c]
    return dataclasses.replace(features, frame=frame)


def features_for(table: Table) -> PairFeatures:
    """Cached :func:`compute_features` (paging must not recompute the table)."""
    key = json.dumps(table.as_dict(), sort_keys=True)
    hit = _CACHE.get(key)
    if hit is None:
        hit = compute_features(table)
        _CACHE.put(key, hit)
    return hit


# -- ag-grid filter model -> pandas mask ------------------------------------------------
def _iso_col(values: np.ndarray) -> pd.Series:
    v = np.asarray(values, dtype=np.int64)
    out = np.datetime_as_string(v.astype("datetime64[ms]"), unit="ms").astype(object)
    out = np.char.add(out.astype(str), "Z").astype(object)
    out[v < 0] = None
    return pd.Series(out)


def _number_condition(col: pd.Series, cond: dict) -> pd.Series:
    op = cond.get("type")
    if op not in NUMBER_OPS:
        raise BadParam("filter", f"unsupported number filter {str(op)[:30]!r}")
    if op == "blank":
        return col.isna()
    if op == "notBlank":
        return col.notna()
    try:
        x = float(cond.get("filter"))
    except (TypeError, ValueError):
        return pd.Series(True, index=col.index)  # an empty filter box filters nothing
    if op == "equals":
        return col == x
    if op == "notEqual":
        return col != x
    if op == "lessThan":
        return col < x
    if op == "lessThanOrEqual":
        return col <= x
    if op == "greaterThan":
        return col > x
    if op == "greaterThanOrEqual":
        return col >= x
    try:
        hi = float(cond.get("filterTo"))
    except (TypeError, ValueError):
        return col >= x
    # ag-grid's inRange excludes both ends unless inRangeInclusive is set
    return (col > x) & (col < hi)


def _text_condition(col: pd.Series, cond: dict) -> pd.Series:
    op = cond.get("type")
    if op not in TEXT_OPS:
        raise BadParam("filter", f"unsupported text filter {str(op)[:30]!r}")
    s = col.astype("string")
    if op == "blank":
        return s.isna()
    if op == "notBlank":
        return s.notna()
    needle = cond.get("filter")
    if needle is None or str(needle) == "":
        return pd.Series(True, index=col.index)
    needle = str(needle).lower()
    low = s.str.lower()
    if op == "contains":
        m = low.str.contains(needle, regex=False)
    elif op == "notContains":
        m = ~low.str.contains(needle, regex=False)
    elif op == "equals":
        m = low == needle
    elif op == "notEqual":
        m = low != needle
    elif op == "startsWith":
        m = low.str.startswith(needle)
    else:
        m = low.str.endswith(needle)
    return m.fillna(op in ("notContains", "notEqual")).astype(bool)


def _column_mask(frame: pd.DataFrame, col_id: str, model: dict) -> pd.Series:
    if col_id not in frame.columns:
        raise BadParam("filter", f"no column {col_id[:40]!r}")
    conditions = model.get("conditions")
    if conditions:
        masks = [
            _column_mask(frame, col_id, {**c, "filterType": model.get("filterType")})
            for c in conditions
        ]
        out = masks[0]
        for m in masks[1:]:
            out = (out | m) if model.get("operator") == "OR" else (out & m)
        return out
    if col_id in TEXT_COLUMNS:
        return _text_condition(_iso_col(frame[col_id].to_numpy()), model)
    return _number_condition(frame[col_id].astype("float64"), model)


def filter_mask(frame: pd.DataFrame, filter_model: dict | None) -> np.ndarray:
    """Boolean rows of ``frame`` that ag-grid's ``filterModel`` keeps (all filters ANDed).

    Supports the community number filter (equals, notEqual, lessThan(OrEqual),
    greaterThan(OrEqual), inRange, blank, notBlank) and text filter (contains,
    notContains, equals, notEqual, startsWith, endsWith, blank, notBlank; case
    insensitive) with two conditions joined by AND/OR. ``ts``/``adf_ts`` filter as the
    ISO strings the grid shows. NaN never satisfies a comparison (ag-grid's rule).
    """
    mask = np.ones(len(frame), dtype=bool)
    for col_id, model in (filter_model or {}).items():
        if not isinstance(model, dict):
            raise BadParam("filter", f"bad filter for {col_id[:40]!r}")
        mask &= _column_mask(frame, col_id, model).to_numpy(dtype=bool)
    return mask


def sort_frame(frame: pd.DataFrame, sort_model: list | None) -> pd.DataFrame:
    """``frame`` in the order of ag-grid's ``sortModel`` (stable; NaN last); default ts."""
    if not sort_model:
        return frame
    cols, asc = [], []
    for item in sort_model:
        col = item.get("colId")
        if col not in frame.columns:
            raise BadParam("sort", f"no column {str(col)[:40]!r}")
        cols.append(col)
        asc.append(item.get("sort") != "desc")
    return frame.sort_values(cols, ascending=asc, kind="stable", na_position="last")


def view(frame: pd.DataFrame, request: dict | None) -> pd.DataFrame:
    """Rows the grid shows for this filter and sort model, in order."""
    request = request or {}
    kept = frame[filter_mask(frame, request.get("filterModel"))]
    return sort_frame(kept, request.get("sortModel"))


def _json_records(frame: pd.DataFrame) -> list[dict]:
    cols = {}
    for c in frame.columns:
        v = frame[c].to_numpy()
        if c in TEXT_COLUMNS:
            cols[c] = _iso_col(v).tolist()
        elif v.dtype.kind == "f":
            obj = v.astype(object)
            obj[~np.isfinite(v)] = None
            cols[c] = obj.tolist()
        else:
            cols[c] = v.tolist()
    names = list(cols)
    return [
        dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)
    ]


def rows_response(features: PairFeatures, request: dict) -> dict:
    """The ``getRowsResponse`` for a ``getRowsRequest``: one block and the row count."""
    shown = view(features.frame, request)
    start = max(int(request.get("startRow") or 0), 0)
    end = min(int(request.get("endRow") or start + 100), start + MAX_PAGE_ROWS)
    return {"rowData": _json_records(shown.iloc[start:end]), "rowCount": len(shown)}


def export_frame(
    features: PairFeatures, sel: Selection, request: dict | None
) -> pd.DataFrame:
    """The download: the rows the grid shows, leg columns named by symbol."""
    shown = view(features.frame, request).copy()
    adf_ts = shown["adf_ts"].to_numpy()
    shown["adf_ts"] = _iso_col(adf_ts).to_numpy()
    leg_cols = ("open", "high", "low", "close", "volume", *LEG_BOOK)
    ren = {f"a_{c}": f"{sel.a}_{c}" for c in leg_cols}
    ren.update({f"b_{c}": f"{sel.b}_{c}" for c in leg_cols})
    ren.update({"vol_a": f"vol_{sel.a}", "vol_b": f"vol_{sel.b}"})
    return shown.rename(columns=ren).reset_index(drop=True)


# Dark grid matching the darkly theme (ag-grid's theming API; no CDN stylesheet).
GRID_THEME = {
    "function": "themeAlpine.withParams({backgroundColor: '#222222', foregroundColor: "
    "'#e6e6e6', headerBackgroundColor: '#303030', accentColor: '#00bc8c', "
    "oddRowBackgroundColor: '#262626', fontSize: 12})"
}


# -- column definitions -----------------------------------------------------------------
_FMT = {
    "price": "params.value == null ? '' : d3.format(',.6~r')(params.value)",
    "num": "params.value == null ? '' : d3.format('.6~g')(params.value)",
    "z": "params.value == null ? '' : d3.format('.3f')(params.value)",
    "pct": "params.value == null ? '' : d3.format('.1%')(params.value)",
    "p": "params.value == null ? '' : d3.format('.4f')(params.value)",
}
HEADERS = {
    "ts": "Bar (UTC)",
    "beta": "β",
    "alpha": "α",
    "spread": "Spread",
    "zscore": "z",
    "corr": "Corr",
    "adf_pvalue": "ADF p",
    "adf_ts": "ADF at (UTC)",
    "signal": "Signal",
}
TOOLTIPS = {
    "ts": "bucket start of the aligned pair grid",
    "beta": "hedge ratio of A on B over the trailing window",
    "alpha": "intercept of A on B over the trailing window",
    "spread": "A - α - β·B with this bar's own trailing fit",
    "zscore": "(spread - mean) / std over the trailing window",
    "corr": "correlation of the legs' log returns over the trailing window",
    "vol_a": "annualised std of A's log returns over the trailing window",
    "vol_b": "annualised std of B's log returns over the trailing window",
    "adf_pvalue": "last fixed-lag ADF p-value of the spread (H0: unit root)",
    "adf_ts": "bar the ADF p-value was computed at",
    "signal": "+1 long spread, -1 short, 0 flat (entry/exit rules of the backtest)",
}
TOOLTIPS.update({
    f"{leg}_{c}": text
    for leg in ("a", "b")
    for c, text in (
        ("bid", "best bid as of the bar's end (last book update, carried)"),
        ("ask", "best ask as of the bar's end (last book update, carried)"),
        ("spread_bps_twa", "quoted spread 1e4·(ask−bid)/mid, time-weighted over the bar"),
    )
})


#: Grid column order: the signal and the pair statistics first, the legs' OHLCV after
#: (the download keeps FEATURE_COLUMNS order).
GRID_ORDER = (
    "ts",
    "signal",
    "zscore",
    "spread",
    "beta",
    "alpha",
    "corr",
    "adf_pvalue",
    "adf_ts",
    "vol_a",
    "vol_b",
    *(c for c in FEATURE_COLUMNS if c.startswith(("a_", "b_"))),
    *BOOK_TABLE_COLUMNS,
)


def column_defs(a: str, b: str) -> list[dict]:
    """ag-grid columns: sortable, with server-side number / text filters."""
    defs = []
    for c in GRID_ORDER:
        if c.startswith(("a_", "b_")):
            leg, field = c.split("_", 1)
            header = f"{a if leg == 'a' else b} {field}"
            kind = "num" if field in ("volume", "spread_bps_twa") else "price"
        elif c in ("vol_a", "vol_b"):
            header = f"Vol {a if c == 'vol_a' else b}"
            kind = "pct"
        else:
            header = HEADERS.get(c, c)
            kind = {"zscore": "z", "corr": "z", "adf_pvalue": "p"}.get(c, "num")
        d = {
            "field": c,
            "headerName": header,
            "sortable": True,
            "headerTooltip": TOOLTIPS.get(c, header),
        }
        if c in TEXT_COLUMNS:
            d.update(
                filter="agTextColumnFilter",
                minWidth=215,
                pinned="left" if c == "ts" else None,
                filterParams={
                    "filterOptions": list(TEXT_OPS[:6]),
                    "maxNumConditions": 2,
                },
            )
        else:
            d.update(
                filter="agNumberColumnFilter",
                type="rightAligned",
                filterParams={"filterOptions": list(NUMBER_OPS), "maxNumConditions": 2},
            )
            if c not in INT_COLUMNS:
                d["valueFormatter"] = {"function": _FMT[kind]}
        if d.get("pinned") is None:
            d.pop("pinned", None)
        defs.append(d)
    return defs
