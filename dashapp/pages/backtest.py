"""Backtest `/backtest`: the z-score mean-reversion rule on any pair, with costs.

The run is a background callback (forked process, never the 500 ms path). The exact
range shown (first and last bar) is kept in a ``dcc.Store``, so the downloads re-run
the same backtest on the same bars instead of shipping the curve through the browser.
Rules and metrics: :mod:`analytics.backtest`.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import Input, Output, State, callback, dcc, html, no_update

from analytics.errors import InsufficientData, NoQuotes
from analytics.timeframes import SUPPORTED_UI, format_timeframe
from dashapp import ids
from dashapp import trader_queries as tq
from dashapp.api.downloads import file_stem, send_frame
from dashapp.api.params import BadParam
from dashapp.components import backtest_view as view
from dashapp.components import dataset_select
from dashapp.components.url_query import sync_query

dash.register_page(__name__, path="/backtest", name="Backtest", order=40)

B = ids.Backtest
FORM = (B.SOURCE, B.A, B.B, B.TF, B.WINDOW, B.REG, B.PRICES, B.ENTRY, B.EXIT, B.STOP,
        B.MAX_HOLD, B.FEE, B.SLIPPAGE, B.PRICE_SOURCE, B.FILLS)
ARG_NAMES = ("dataset", "a", "b", "timeframe", "window", "regression", "prices", "entry",
             "exit", "stop", "max_hold", "fee_bps", "slippage_bps", "source", "fills")
#: URL parameter -> control: the address bar carries the whole form (a link re-runs it).
URL_FIELDS = {
    dataset_select.URL_PARAM: B.SOURCE, "a": B.A, "b": B.B, "tf": B.TF, "w": B.WINDOW,
    "reg": B.REG, "prices": B.PRICES, "entry": B.ENTRY, "exit": B.EXIT, "stop": B.STOP,
    "max_hold": B.MAX_HOLD, "fee_bps": B.FEE, "slippage_bps": B.SLIPPAGE,
    "source": B.PRICE_SOURCE, "fills": B.FILLS,
}
#: left out of the URL at their defaults (today's links stay as they were)
URL_OMIT = {dataset_select.URL_PARAM: dataset_select.LIVE_VALUE, "source": "trade",
            "fills": "last"}


def _num(raw, default):
    """A URL number as the input's value (bad text is kept: the run names the field)."""
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return float(raw) if "." in str(raw) else int(raw)
    except ValueError:
        return str(raw)[:40]


def layout(dataset: str | None = None, a: str | None = None, b: str | None = None,
           tf: str | None = None, w: str = "60", reg: str = "ols", prices: str = "raw",
           entry=None, exit=None, stop=None, max_hold=None, fee_bps=None,  # noqa: A002
           slippage_bps=None, source: str = "trade", fills: str = "last",
           **_query) -> html.Div:
    """``/backtest?dataset=NAME&a=..&b=..&tf=..&w=..&reg=..&prices=..&entry=..&exit=..
    &source=trade|mid&fills=last|quote`` opens with that form (``dataset`` absent: the
    live feed; an unknown one falls back to live with a note under the source select; an
    unknown ``source``/``fills`` is kept, and the run names it)."""
    price_source, source = source, dataset_select.resolve(dataset)
    symbols = dataset_select.symbol_options(source.dataset)
    a, b = dataset_select.pick_legs(symbols, a, b)
    tfs = dataset_select.timeframe_options(source.dataset, SUPPORTED_UI)
    sym_opts = dataset_select.labelled(symbols)  # "BTCUSDT · perp"
    dd = dict(size="sm")
    controls = dbc.Row([
        dataset_select.selector(B.SOURCE, source, width=2),
        view.labelled("Leg A", dbc.Select(id=B.A, options=sym_opts, value=a, **dd)),
        view.labelled("Leg B", dbc.Select(id=B.B, options=sym_opts, value=b, **dd)),
        view.labelled("Timeframe", dbc.Select(id=B.TF, options=tfs,
                                                value=tf if tf in tfs else tfs[0], **dd), 1),
        view.labelled("Window (bars)", view.num_input(B.WINDOW, _num(w, 60), step=1), 1),
        view.labelled("Regression", dbc.Select(id=B.REG, options=view.REG_OPTIONS,
                                                 value=reg, **dd), 1),
        view.labelled("Prices", dbc.RadioItems(id=B.PRICES, options=view.PRICE_OPTIONS,
                                               value=prices, inline=True), 1),
        view.labelled("Entry |z| >", view.num_input(B.ENTRY, _num(entry, 2.0)), 1),
        view.labelled("Exit z", view.num_input(B.EXIT, _num(exit, 0.0)), 1),
        view.labelled("Stop |z| >", view.num_input(B.STOP, _num(stop, None),
                                                   placeholder="none"), 1),
        view.labelled("Max hold (bars)", view.num_input(B.MAX_HOLD, _num(max_hold, None),
                                                        step=1, placeholder="none"), 1),
        view.labelled("Fee bps/leg", view.num_input(B.FEE, _num(fee_bps, 1.0)), 1),
        view.labelled("Slippage bps/leg", view.num_input(B.SLIPPAGE, _num(slippage_bps, 0.0)),
                      1),
        view.labelled("Price", dbc.RadioItems(id=B.PRICE_SOURCE, options=_options(
            view.SOURCE_OPTIONS, price_source), value=price_source, inline=True), 1),
        view.labelled("Fills", dbc.RadioItems(id=B.FILLS, options=_options(
            view.FILLS_OPTIONS, fills), value=fills, inline=True), 1),
    ], className="g-2 align-items-end")
    return html.Div([
        html.H4("Backtest: mean reversion of the spread's z-score", className="mb-1"),
        html.P("Short the spread (sell 1 A, buy β B) when z > entry, long when z < −entry; "
               "short closes when z ≤ exit, long when z ≥ −exit; a signal at the close of "
               "bar t fills at the close of t+1 with β of the signal bar, frozen. Costs in "
               "bps of each leg's notional per fill. Price: the pair on the bars' last trades "
               "or their mids (bid+ask)/2; fills: at those prices, or at the quote (buy at "
               "the ask, sell at the bid), the spread cost shown apart.",
               className="small text-muted"),
        controls,
        html.Div([
            dbc.Button("Run backtest", id=B.RUN, color="primary", size="sm", className="me-2"),
            html.Span([dbc.Spinner(size="sm", color="info"), " running…"], id=B.SPINNER,
                      className="small text-info", style={"display": "none"}),
            dbc.Button("Trades CSV", id=B.DL_TRADES, color="secondary", outline=True,
                       size="sm", className="ms-3 me-2"),
            dbc.Button("Equity CSV", id=B.DL_EQUITY, color="secondary", outline=True, size="sm"),
        ], className="d-flex align-items-center my-2"),
        html.Div(id=B.MESSAGE),
        html.Div(id=B.KPIS),
        dcc.Graph(id=B.EQUITY_GRAPH, figure=view._layout(
            go.Figure(), height=300, uirevision="none", title="Equity"),
            config={"displaylogo": False}),
        dcc.Graph(id=B.DRAWDOWN_GRAPH, figure=view._layout(
            go.Figure(), height=200, uirevision="none", title="Drawdown"),
            config={"displaylogo": False}),
        html.H6("Trades", className="mt-2"),
        view.trades_grid(B.TRADES),
        dcc.Store(id=B.RUN_SPEC),
        dcc.Store(id=B.URL_SINK),
        dcc.Download(id=B.DOWNLOAD),
    ])


def _options(options: list[dict], value) -> list[dict]:
    """The radio's options, plus a URL's unknown value (so the run names the field)."""
    if value in [o["value"] for o in options] or value is None:
        return options
    return [*options, {"label": str(value)[:20], "value": value}]


def _args(values) -> dict:
    """The form as request-style arguments (``dataset`` empty for the live feed)."""
    args = {k: ("" if v is None else str(v)) for k, v in zip(ARG_NAMES, values, strict=True)}
    args["dataset"] = dataset_select.dataset_of(args["dataset"]) or ""
    return args


def _empty(title: str, height: int) -> go.Figure:
    return view._layout(go.Figure(), height=height, uirevision="none", title=title)


def cleared(message) -> tuple:
    """Page outputs when a run cannot be shown: the message, and no KPIs, curves, trades
    or run (a previous run's result must not stay under a message about this one)."""
    return (message, None, _empty("Equity", 300), _empty("Drawdown", 200), [], None,
            no_update)


def run_spec(args: dict) -> tuple:
    """Page outputs for one run (message, KPIs, figures, rows, spec, the trades grid's
    columns: the fills and quotes too with ``fills=quote``): the callback body."""
    try:
        pair, bt = tq.backtest_args(args)
        result = tq.backtest(**pair, bt=bt)
    except (BadParam, NoQuotes) as exc:
        return cleared(dbc.Alert(str(exc), color="warning", className="py-2"))
    except InsufficientData as exc:
        return cleared(dbc.Alert(f"collecting: {exc.have} of {exc.needed} bars ({exc.what}); "
                                 "try a shorter window or wait", color="info", className="py-2"))
    rev = f"{pair['dataset']}-{pair['a']}-{pair['b']}-{pair['tf_ms']}-{pair['window']}"
    spec = {**args, "since_ts": int(result.ts[0]), "until_ts": int(result.ts[-1])}
    source = "live feed" if pair["dataset"] is None else f"dataset {pair['dataset']}"
    price = "mid prices" if pair["source"] == "mid" else "trade prices"
    fills = "fills at the quote" if bt.fills == "quote" else "fills at the pair's prices"
    note = html.Div(
        f"{pair['a']} vs {pair['b']} ({source}), {format_timeframe(pair['tf_ms'])} bars, "
        f"w={pair['window']} {pair['regression']} ({pair['prices']}), {price}, {fills}: "
        f"{result.n_bars:,} bars "
        f"from {tq.iso_ms(result.ts[:1])[0]} to {tq.iso_ms(result.ts[-1:])[0]}",
        className="small text-muted mb-2", id="backtest-range")
    return (note, view.backtest_kpis(result), view.equity_figure(result, rev),
            view.drawdown_figure(result, rev), view.trade_rows(result), spec,
            view.trade_column_defs(bt.fills))


@callback(
    Output(B.MESSAGE, "children"), Output(B.KPIS, "children"),
    Output(B.EQUITY_GRAPH, "figure"), Output(B.DRAWDOWN_GRAPH, "figure"),
    Output(B.TRADES, "rowData"), Output(B.RUN_SPEC, "data"),
    Output(B.TRADES, "columnDefs"),
    Input(B.RUN, "n_clicks"),
    *(State(i, "value") for i in FORM),
    background=True,
    running=[(Output(B.RUN, "disabled"), True, False),
             (Output(B.SPINNER, "style"), {"display": "inline"}, {"display": "none"})],
    prevent_initial_call=False,
)
def run_backtest(_n, *values):
    """Backtests are heavy (a day of bars, a pair build): run them off the request path."""
    return run_spec(_args(values))


@callback(
    Output(B.A, "options"), Output(B.A, "value"), Output(B.B, "options"), Output(B.B, "value"),
    Output(B.TF, "options"), Output(B.TF, "value"),
    Input(B.SOURCE, "value"), State(B.A, "value"), State(B.B, "value"), State(B.TF, "value"),
    prevent_initial_call=True,
)
def follow_source(source, a, b, tf):
    """Another source offers its own symbols and timeframes; legs kept when offered."""
    return dataset_select.follow(source, a, b, tf, SUPPORTED_UI)


sync_query("/backtest", B.URL_SINK, URL_FIELDS, omit=URL_OMIT)


def _rerun(spec: dict):
    pair, bt = tq.backtest_args(spec)
    return pair, tq.backtest(**pair, bt=bt, since_ts=spec["since_ts"], until_ts=spec["until_ts"])


@callback(
    Output(B.DOWNLOAD, "data"), Output(B.MESSAGE, "children", allow_duplicate=True),
    Input(B.DL_TRADES, "n_clicks"), Input(B.DL_EQUITY, "n_clicks"),
    State(B.RUN_SPEC, "data"),
    prevent_initial_call=True,
)
def download(_t, _e, spec):
    """Downloads re-run the exact backtest shown (same bars), through dashapp.api.downloads."""
    if not spec:
        return no_update, dbc.Alert("Run a backtest first.", color="info", className="py-2")
    try:
        if not isinstance(spec, dict):  # a browser store: checked like any input
            raise BadParam("run", "the page's record of the run is not one")
        pair, result = _rerun(spec)
    except (BadParam, InsufficientData, KeyError, TypeError, ValueError) as exc:
        return no_update, dbc.Alert(f"Cannot re-run the backtest shown: {exc}; run it again.",
                                    color="warning", className="py-2")
    trades = dash.ctx.triggered_id == B.DL_TRADES
    frame = tq.trades_frame(result) if trades else result.curve_frame()
    ts = result.ts
    stem = file_stem("backtest_trades" if trades else "backtest_equity",
                     [pair["a"], pair["b"]], pair["tf_ms"], ts)
    return send_frame(frame_with_iso(frame), stem, "csv"), no_update


def frame_with_iso(frame):
    """Trade time columns as ISO strings (the ``ts`` column is converted by downloads)."""
    out = frame.copy()
    for c in ("signal_ts", "entry_ts", "exit_ts"):
        if c in out.columns:
            vals = out[c]
            mask = vals.notna()
            iso = vals.astype("object")
            iso[mask] = tq.iso_ms(vals[mask].astype("int64").to_numpy())
            iso[~mask] = None
            out[c] = iso
    return out
