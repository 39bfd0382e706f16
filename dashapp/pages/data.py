"""Data `/data`: the features table through time, downloads, and OHLC upload.

The table has one row per aligned bar of a pair (live data or an uploaded dataset) with
both legs' OHLCV, β, α, spread, z, correlation, rolling volatility, the last ADF p-value
and the signal (definitions in :mod:`analytics.features`). It pages from the server
(ag-grid infinite row model, see :mod:`dashapp.components.data_table`); the CSV button
downloads exactly the filtered, sorted rows. Nothing here runs on an interval.
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import (
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)

from analytics.errors import InsufficientData
from analytics.timeframes import SUPPORTED_UI, format_timeframe
from analytics.upload import MAX_UPLOAD_BYTES
from dashapp import ids, stores
from dashapp.api import downloads
from dashapp.api.params import BadParam
from dashapp.components import data_downloads as dd
from dashapp.components import data_table as dt
from dashapp.components import dataset_select
from dashapp.components.url_query import sync_query
from dashapp.facade import DatasetError
from dashapp.services import get_services

dash.register_page(__name__, path="/data", name="Data", order=40)

PAGE_SIZE = 100


def _field(label: str, control, width: int = 2) -> dbc.Col:
    return dbc.Col([dbc.Label(label, className="small mb-1"), control], md=width)


def _controls(
    source: dataset_select.Source, symbols: list[str], a: str | None, b: str | None,
    tfs: list[str], tf: str, form: dict,
) -> dbc.Card:
    row1 = dbc.Row(
        [
            dataset_select.selector(ids.Data.SOURCE, source, width=3, size=None),
            _field("Leg A", dbc.Select(id=ids.Data.A, options=dataset_select.labelled(symbols),
                                       value=a)),
            _field("Leg B", dbc.Select(id=ids.Data.B, options=dataset_select.labelled(symbols),
                                       value=b)),
            _field(
                "Timeframe",
                dbc.Select(id=ids.Data.TF, options=tfs, value=tf),
            ),
            _field(
                "Window (bars)",
                dbc.Input(
                    id=ids.Data.WINDOW, type="number", value=form["w"], min=3, step=1
                ),
                1,
            ),
            _field(
                "Regression",
                dbc.Select(
                    id=ids.Data.REG,
                    value=form["reg"],
                    options=["ols", "huber", "theilsen", "kalman"],
                ),
                1,
            ),
        ],
        className="g-2",
    )
    row2 = dbc.Row(
        [
            _field(
                "Prices",
                dbc.RadioItems(
                    id=ids.Data.PRICES, value=form["prices"], inline=True,
                    options=["raw", "log"],
                ),
            ),
            _field(
                "Signal entry |z|",
                dbc.Input(
                    id=ids.Data.ENTRY, type="number", value=form["entry"], min=0.1, step=0.1
                ),
            ),
            _field(
                "ADF every K bars",
                dbc.Input(
                    id=ids.Data.ADF_EVERY,
                    type="number",
                    min=1,
                    step=1,
                    placeholder="auto",
                ),
            ),
            dbc.Col(
                dbc.Button(
                    "Load table", id=ids.Data.LOAD, color="primary", className="mt-4"
                ),
                md=2,
            ),
            dbc.Col(html.Div(id=ids.Data.STATUS, className="small mt-3"), md=4),
        ],
        className="g-2 mt-1",
    )
    return dbc.Card(dbc.CardBody([row1, row2]), className="mb-3")


def _grid() -> dbc.Card:
    grid = dag.AgGrid(
        id=ids.Data.GRID,
        rowModelType="infinite",
        columnDefs=dt.column_defs("A", "B"),
        defaultColDef={
            "resizable": True,
            "minWidth": 95,
            "floatingFilter": True,
            "suppressHeaderMenuButton": False,
        },
        dashGridOptions={
            "pagination": True,
            "paginationPageSize": PAGE_SIZE,
            "paginationPageSizeSelector": [50, 100, 500],
            "cacheBlockSize": PAGE_SIZE,
            "maxBlocksInCache": 20,
            "infiniteInitialRowCount": 1,
            "rowBuffer": 0,
            "tooltipShowDelay": 300,
            "theme": dt.GRID_THEME,
        },
        style={"height": "560px"},
    )
    bar = dbc.Row(
        [
            dbc.Col(
                html.Span(
                    "Features per bar: sort and filter on the server; the download "
                    "holds exactly the rows the filters keep, in this order.",
                    className="small text-muted",
                ),
                md=7,
            ),
            dbc.Col(
                dbc.RadioItems(
                    id=ids.Data.FORMAT,
                    value="csv",
                    inline=True,
                    options=[
                        {"label": "CSV", "value": "csv"},
                        {
                            "label": "Parquet",
                            "value": "parquet",
                            "disabled": not downloads.parquet_available(),
                        },
                    ],
                ),
                md=2,
            ),
            dbc.Col(
                dbc.Button(
                    "Download table",
                    id=ids.Data.DOWNLOAD_TABLE,
                    color="success",
                    size="sm",
                ),
                md=3,
                className="text-end",
            ),
        ],
        className="mb-2 align-items-center",
    )
    return dbc.Card(dbc.CardBody([bar, grid]), className="mb-3")


def _downloads(symbols: list[str]) -> dbc.Card:
    ticks = dd.tick_defaults(symbols[0] if symbols else None)
    return dbc.Card(
        [
            dbc.CardHeader("Downloads (the selection above; format as chosen)"),
            dbc.CardBody(
                [
                    dbc.ButtonGroup(
                        [
                            dbc.Button(
                                "Bars of both legs",
                                id=ids.Data.DOWNLOAD_BARS,
                                outline=True,
                                color="info",
                                size="sm",
                            ),
                            dbc.Button(
                                "Pair analytics",
                                id=ids.Data.DOWNLOAD_PAIR,
                                outline=True,
                                color="info",
                                size="sm",
                            ),
                        ],
                        className="mb-3",
                    ),
                    dbc.Row(
                        [
                            _field(
                                "Ticks of",
                                dbc.Select(
                                    id=ids.Data.TICKS_SYMBOL,
                                    options=symbols,
                                    value=symbols[0] if symbols else None,
                                    size="sm",
                                ),
                                3,
                            ),
                            _field(
                                "From (UTC)",
                                dbc.Input(
                                    id=ids.Data.TICKS_START,
                                    value=ticks["start"],
                                    placeholder=ticks["start_ph"],
                                    size="sm",
                                ),
                                3,
                            ),
                            _field(
                                "To (UTC, excl.)",
                                dbc.Input(
                                    id=ids.Data.TICKS_END,
                                    value=ticks["end"],
                                    placeholder=ticks["end_ph"],
                                    size="sm",
                                ),
                                3,
                            ),
                            dbc.Col(
                                dbc.Button(
                                    "Download ticks",
                                    id=ids.Data.DOWNLOAD_TICKS,
                                    outline=True,
                                    color="info",
                                    size="sm",
                                    className="mt-4",
                                ),
                                md=3,
                            ),
                        ],
                        className="g-2",
                    ),
                    html.Div(id=ids.Data.DOWNLOAD_NOTE, className="small mt-2"),
                    dcc.Download(id=ids.Data.DOWNLOAD),
                ]
            ),
        ],
        className="mb-3",
    )


def _upload_box() -> html.Div:
    """The drop zone. ``data-max-bytes``/``data-report-to`` let ``assets/upload_cap.js``
    say when a file is over the cap: ``dcc.Upload`` drops it without a callback."""
    mb = MAX_UPLOAD_BYTES // (1024 * 1024)
    hint = (f"CSV or zip, at most {mb} MB each. Files dropped together go into one dataset "
            "(two symbols: a pair; consecutive months: appended); an existing dataset's name "
            "adds to it")
    return html.Div(
        dcc.Upload(
            id=ids.Data.UPLOAD,
            multiple=True,
            max_size=MAX_UPLOAD_BYTES,
            children=html.Div(
                ["Drop files here or ", html.A("choose files"),
                 html.Div(hint, className="small text-muted")]
            ),
            className="upload-box text-center p-2 border border-secondary rounded",
        ),
        **{"data-max-bytes": str(MAX_UPLOAD_BYTES), "data-report-to": ids.Data.UPLOAD_TOO_BIG},
    )


def _upload() -> dbc.Card:
    return dbc.Card(
        [
            dbc.CardHeader(
                "Upload OHLC (Binance kline CSV/zip, or timestamp,open,high,low,close,volume)"
            ),
            dbc.CardBody(
                [
                    dbc.Row(
                        [
                            _field(
                                "Dataset name (optional)",
                                dbc.Input(
                                    id=ids.Data.UPLOAD_DATASET,
                                    placeholder="from the file name(s)",
                                ),
                                3,
                            ),
                            _field(
                                "Symbol (optional)",
                                dbc.Input(
                                    id=ids.Data.UPLOAD_SYMBOL,
                                    placeholder="from the file name or column",
                                ),
                                3,
                            ),
                            dbc.Col(_upload_box(), md=6),
                        ],
                        className="g-2 align-items-end",
                    ),
                    html.Div(id=ids.Data.UPLOAD_TOO_BIG, className="mt-2 small text-danger"),
                    html.Div(id=ids.Data.UPLOAD_RESULT, className="mt-2"),
                    html.Div(id=ids.Data.DATASETS, className="mt-2"),
                    dbc.Button(
                        "Remove the selected dataset",
                        id=ids.Data.DELETE,
                        color="danger",
                        outline=True,
                        size="sm",
                        className="mt-2",
                    ),
                ]
            ),
        ]
    )


def _url_form(w, reg, prices, entry) -> tuple[dict, list[str]]:
    """Window, regression, prices and entry from the URL; a bad value keeps the default
    and is named in the note (the page still opens)."""
    form = {"w": 60, "reg": "ols", "prices": "raw", "entry": 2}
    bad = []
    for key, raw, ok in (
        ("w", w, lambda v: v.isascii() and v.isdigit() and 3 <= int(v) <= 100_000),
        ("reg", reg, lambda v: v in ("ols", "huber", "theilsen", "kalman")),
        ("prices", prices, lambda v: v in ("raw", "log")),
        ("entry", entry, lambda v: v.isascii() and v.replace(".", "", 1).isdigit()
         and 0.1 <= float(v) <= 20),
    ):
        if raw is None or not str(raw).strip():
            continue
        v = str(raw).strip()
        if ok(v):
            form[key] = int(v) if key == "w" else float(v) if key == "entry" else v
        else:
            bad.append(f"{key}={v[:20]!r} is not valid, using {form[key]}")
    return form, bad


def layout(
    dataset: str | None = None, a: str | None = None, b: str | None = None,
    tf: str | None = None, timeframe: str | None = None, w: str | None = None,
    reg: str | None = None, prices: str | None = None, entry: str | None = None,
    **_query,
) -> html.Div:
    """``/data?dataset=NAME&a=..&b=..&tf=..&w=..&reg=..&prices=..&entry=..`` opens on that
    source and selection (a link to share; ``timeframe=`` is read too); an unknown
    dataset falls back to the live feed, and says so under the source select."""
    symbols = sorted(get_services().names())
    source = dataset_select.resolve(dataset)
    form, bad = _url_form(w, reg, prices, entry)
    if bad:
        note = "; ".join(filter(None, [source.note, *bad]))
        source = dataset_select.Source(source.dataset, note)
    opts, a, b, tfs, tf = dd.source_choices(source.value, a, b, tf or timeframe, SUPPORTED_UI)
    return html.Div(
        [
            dcc.Store(id=ids.Data.SELECTION),
            dcc.Store(id=ids.Data.DATASETS_VERSION, data={"n": 0, "select": None}),
            dcc.Store(id=ids.Data.PURGE_SINK),
            dcc.Store(id=ids.Data.URL_SINK),
            _controls(source, opts, a, b, tfs, tf, form),
            _grid(),
            dbc.Row([dbc.Col(_downloads(symbols), lg=6), dbc.Col(_upload(), lg=6)]),
        ]
    )


def _error(exc: Exception) -> html.Span:
    return html.Span(str(exc), className="text-danger")


@callback(
    Output(ids.Data.SELECTION, "data"),
    Output(ids.Data.STATUS, "children"),
    Output(ids.Data.GRID, "columnDefs"),
    Input(ids.Data.LOAD, "n_clicks"),
    State(ids.Data.SOURCE, "value"),
    State(ids.Data.A, "value"),
    State(ids.Data.B, "value"),
    State(ids.Data.TF, "value"),
    State(ids.Data.WINDOW, "value"),
    State(ids.Data.REG, "value"),
    State(ids.Data.PRICES, "value"),
    State(ids.Data.ENTRY, "value"),
    State(ids.Data.ADF_EVERY, "value"),
)
def load_table(_n, *controls):
    """Validate the controls and build the table once; the grid then pages through it."""
    try:
        table = dt.make_table(*controls)
        feats = dt.features_for(table)
    except (BadParam, InsufficientData) as exc:
        return None, _error(exc), no_update
    sel = table.sel
    status = (
        f"{len(feats):,} rows of {format_timeframe(sel.tf_ms)} bars, "
        f"{sel.a}/{sel.b} ({'live' if sel.dataset is None else sel.dataset}); "
        f"ADF every {feats.adf_every} bars on the last {feats.adf_lookback} spreads, "
        f"lag {feats.adf_lag}"
    )
    return (
        table.as_dict(),
        html.Span(status, className="text-info"),
        dt.column_defs(sel.a, sel.b),
    )


# A new selection must drop the grid's cached blocks, or it would keep showing the old table.
clientside_callback(
    f"""function(sel) {{
        // before the grid is up there is nothing cached to drop (getApi throws then)
        try {{ dash_ag_grid.getApi('{ids.Data.GRID}').purgeInfiniteCache(); }} catch (e) {{}}
        return window.dash_clientside.no_update;
    }}""",
    Output(ids.Data.PURGE_SINK, "data"),
    Input(ids.Data.SELECTION, "data"),
    prevent_initial_call=True,
)


@callback(
    Output(ids.Data.GRID, "getRowsResponse"),
    Input(ids.Data.GRID, "getRowsRequest"),
    State(ids.Data.SELECTION, "data"),
    prevent_initial_call=True,
)
def serve_rows(request, sel):
    """One block of the filtered, sorted table per request (never the whole day)."""
    if not request or not sel:
        return {"rowData": [], "rowCount": 0}
    try:
        return dt.rows_response(dt.features_for(dt.Table.from_dict(sel)), request)
    except (BadParam, InsufficientData):
        return {"rowData": [], "rowCount": 0}


@callback(
    Output(ids.Data.DOWNLOAD, "data"),
    Output(ids.Data.DOWNLOAD_NOTE, "children"),
    Input(ids.Data.DOWNLOAD_TABLE, "n_clicks"),
    Input(ids.Data.DOWNLOAD_BARS, "n_clicks"),
    Input(ids.Data.DOWNLOAD_PAIR, "n_clicks"),
    Input(ids.Data.DOWNLOAD_TICKS, "n_clicks"),
    State(ids.Data.SELECTION, "data"),
    State(ids.Data.GRID, "getRowsRequest"),
    State(ids.Data.FORMAT, "value"),
    State(ids.Data.TICKS_SYMBOL, "value"),
    State(ids.Data.TICKS_START, "value"),
    State(ids.Data.TICKS_END, "value"),
    # Writing a day of rows as CSV takes 1-3 s of pandas (GIL held): run it in a
    # background process, never in the server thread the feed shares.
    background=True,
    running=[
        (Output(b, "disabled"), True, False)
        for b in (
            ids.Data.DOWNLOAD_TABLE,
            ids.Data.DOWNLOAD_BARS,
            ids.Data.DOWNLOAD_PAIR,
            ids.Data.DOWNLOAD_TICKS,
        )
    ],
    prevent_initial_call=True,
)
def download(_t, _b, _p, _k, sel, request, fmt, tick_symbol, start, end):
    """Every download of the page, through dashapp.api.downloads."""
    try:
        if ctx.triggered_id == ids.Data.DOWNLOAD_TICKS:
            return dd.ticks_file(tick_symbol, start, end, fmt), ""
        if not sel:
            raise BadParam("selection", "load a table first")
        table = dt.Table.from_dict(sel)
        if ctx.triggered_id == ids.Data.DOWNLOAD_TABLE:
            return dd.table_file(table, request, fmt), ""
        if ctx.triggered_id == ids.Data.DOWNLOAD_BARS:
            return dd.bars_file(table.sel, fmt), ""
        return dd.pair_file(table.sel, fmt), ""
    except (BadParam, InsufficientData, ValueError) as exc:
        return no_update, _error(exc)


@callback(
    Output(ids.Data.UPLOAD_RESULT, "children"),
    Output(ids.Data.DATASETS_VERSION, "data"),
    Input(ids.Data.UPLOAD, "contents"),
    Input(ids.Data.DELETE, "n_clicks"),
    State(ids.Data.UPLOAD, "filename"),
    State(ids.Data.UPLOAD_SYMBOL, "value"),
    State(ids.Data.UPLOAD_DATASET, "value"),
    State(ids.Data.SOURCE, "value"),
    State(ids.Data.DATASETS_VERSION, "data"),
    prevent_initial_call=True,
)
def change_datasets(contents, _del, filenames, symbol, dataset, source, version):
    """Store uploaded files as datasets, or remove the selected dataset."""
    n = stores.counter(stores.mapping(version).get("n")) + 1
    if ctx.triggered_id == ids.Data.DELETE:
        source = dataset_select.dataset_of(source)
        if source is None:
            return dbc.Alert(
                "Select a dataset as the source to remove it.",
                color="warning",
                className="py-2",
            ), no_update
        try:
            removed = get_services().datasets.remove(source)
        except DatasetError as exc:
            return dbc.Alert(str(exc), color="danger", className="py-2"), no_update
        if not removed:  # removed meanwhile (another tab, the API): say so, list again
            return dbc.Alert(
                f"No dataset named {source!r}: nothing was removed.", color="warning",
                className="py-2",
            ), {"n": n, "select": dataset_select.LIVE_VALUE}
        return dbc.Alert(
            f"Removed dataset {source!r}.", color="secondary", className="py-2"
        ), {"n": n, "select": dataset_select.LIVE_VALUE}
    if not contents:
        return no_update, no_update
    alerts, selected = dd.upload_files(contents, filenames, symbol, dataset)
    return alerts, {"n": n, "select": selected}


@callback(
    Output(ids.Data.SOURCE, "options"),
    Output(ids.Data.SOURCE, "value"),
    Output(ids.Data.DATASETS, "children"),
    Input(ids.Data.DATASETS_VERSION, "data"),
)
def refresh_datasets(version):
    """The source list and the dataset table follow uploads and removals."""
    select = stores.mapping(version).get("select")
    select = select if isinstance(select, str) else None  # a forged store: keep the select
    return (dd.source_options(), no_update if select is None else select,
            dd.datasets_table())


@callback(
    Output(ids.Data.A, "options"),
    Output(ids.Data.A, "value"),
    Output(ids.Data.B, "options"),
    Output(ids.Data.B, "value"),
    Output(ids.Data.TF, "options"),
    Output(ids.Data.TF, "value"),
    Input(ids.Data.SOURCE, "value"),
    State(ids.Data.A, "value"),
    State(ids.Data.B, "value"),
    State(ids.Data.TF, "value"),
    prevent_initial_call=True,
)
def follow_source(source, a, b, tf):
    """A dataset offers its own symbols and its timeframe (and multiples of it)."""
    choice = dd.source_choices(source, a, b, tf, SUPPORTED_UI)
    if choice is None:
        return (no_update,) * 6
    symbols, a, b, tfs, tf = choice
    opts = dataset_select.labelled(symbols)  # "BTCUSDT · perp"
    return opts, a, opts, b, tfs, tf


# The address bar follows the selection: a link opens the same table again.
sync_query(
    "/data",
    ids.Data.URL_SINK,
    {
        dataset_select.URL_PARAM: ids.Data.SOURCE,
        "a": ids.Data.A,
        "b": ids.Data.B,
        "tf": ids.Data.TF,
        "w": ids.Data.WINDOW,
        "reg": ids.Data.REG,
        "prices": ids.Data.PRICES,
        "entry": ids.Data.ENTRY,
    },
    omit={dataset_select.URL_PARAM: dataset_select.LIVE_VALUE},
)


@callback(
    Output(ids.Data.TICKS_START, "value"),
    Output(ids.Data.TICKS_END, "value"),
    Output(ids.Data.TICKS_START, "placeholder"),
    Output(ids.Data.TICKS_END, "placeholder"),
    Input(ids.Data.TICKS_SYMBOL, "value"),
    prevent_initial_call=True,
)
def follow_tick_symbol(symbol):
    """Another symbol: its own last minutes held (two indexed reads)."""
    d = dd.tick_defaults(symbol)
    return d["start"], d["end"], d["start_ph"], d["end_ph"]
