"""Basis `/basis`: one asset's perpetual against its spot (:mod:`analytics.basis`).

``/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=1s&window=60&max_lag=10``: the
chart of ``basis_bps = 1e4 (perp - spot) / spot`` on the pair grid with its rolling mean
and ±2σ bands, its rolling z-score, KPIs (basis, bps, mean, z, half-life) and the lead-lag
of the two legs' returns (which market moves first). Pickers list instruments by label
("BTCUSDT · perp").

Refreshed on bar close, never on the 500 ms path: a cheap 2 s check reads the tracked
pair's point count (``tracked_pair``, which never builds) and, when a point closed,
triggers the redraw, which reads :func:`dashapp.basis_queries.basis_of` (the numbers of
``GET /api/basis``, cached per closed point).
"""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, callback, dcc, html, no_update

from analytics.basis import DEFAULT_MAX_LAG
from analytics.errors import InsufficientData, NoQuotes
from analytics.timeframes import format_timeframe
from dashapp import basis_queries, figures, ids
from dashapp.api import params
from dashapp.api.params import BadParam
from dashapp.components import backtest_view as view
from dashapp.components.kpi import fmt, kpi_card
from dashapp.components.url_query import sync_query
from dashapp.downsample import minmax_multi
from dashapp.services import get_services

dash.register_page(__name__, path="/basis", name="Basis", order=2)

B = ids.Basis
BAND_K = 2.0


def _options(market: str) -> list[dict]:
    services = get_services()
    out = []
    for name in services.names():
        try:
            inst = services.instrument(name)
        except KeyError:
            continue
        if inst.market == market:
            out.append({"label": inst.label, "value": name})
    return out


def _tf_options() -> list[dict]:
    return [{"label": format_timeframe(t), "value": format_timeframe(t)}
            for t in get_services().timeframes()]


def _pick(value: str | None, options: list[dict], default: str | None) -> str | None:
    values = [o["value"] for o in options]
    if value:
        try:  # what the URL said, in the instrument syntax ("perp:btcusdt", "BTCUSDT")
            got = get_services().resolve(value)
            if got in values:
                return got
        except ValueError:
            pass
    return default if default in values else (values[0] if values else None)


def layout(perp: str | None = None, spot: str | None = None, timeframe: str | None = None,
           window: str = "60", max_lag: str | None = None, source: str = "trade",
           **_query) -> html.Div:
    """``/basis?perp=&spot=&timeframe=&window=&max_lag=&source=trade|mid`` (absent: the
    first symbol ingested on both markets, trade prices)."""
    pairs = basis_queries.basis_pairs()
    perp_opts, spot_opts = _options("perp"), _options("spot")
    p0, s0 = pairs[0] if pairs else (None, None)
    perp_v = _pick(perp, perp_opts, p0)
    spot_v = _pick(spot, spot_opts, s0)
    tfs = _tf_options()
    tf_values = [o["value"] for o in tfs]
    dd = dict(size="sm")
    note = None
    if not perp_opts or not spot_opts:
        note = dbc.Alert(
            "The basis needs one instrument on each market: run `python app.py --replay` "
            "(spot and perp tapes) or `--symbols spot:BTCUSDT,perp:BTCUSDT`.",
            color="info", id="basis-needs-two-markets")
    return html.Div([
        html.H4("Basis: perp against spot", className="mb-1"),
        html.P("basis = perp − spot; basis (bps) = 10⁴·(perp − spot)/spot on the pair's "
               "aligned grid; its rolling mean and ±2σ bands, z-score and half-life over "
               "the window (trailing, ddof=1), and which market moves first. Redrawn when "
               "a bar closes.", className="small text-muted"),
        dbc.Row([
            view.labelled("Perp", dbc.Select(id=B.PERP, options=perp_opts, value=perp_v, **dd),
                          2),
            view.labelled("Spot", dbc.Select(id=B.SPOT, options=spot_opts, value=spot_v, **dd),
                          2),
            view.labelled("Timeframe", dbc.Select(
                id=B.TF, options=tfs, value=timeframe if timeframe in tf_values else
                (tf_values[0] if tf_values else None), **dd), 1),
            view.labelled("Window (bars)", view.num_input(B.WINDOW, window, step=1), 1),
            view.labelled("Max lag (bars)", view.num_input(
                B.MAX_LAG, max_lag or DEFAULT_MAX_LAG, step=1), 1),
            view.labelled("Price", dbc.Select(
                id=B.SOURCE, options=view.SOURCE_OPTIONS,
                value=source if source in ("trade", "mid") else "trade", **dd), 1),
            dbc.Col([
                dbc.Button("Alert on the basis", id=B.ALERT_BUTTON, size="sm",
                           color="secondary", className="me-2"),
                html.A("open as a pair", id=B.PAIR_LINK, href="/pair", className="small"),
            ], md=3, className="mb-2"),
        ], className="g-2 align-items-end"),
        note,
        html.Div(id=B.MESSAGE),
        html.Div(id=B.STATUS, className="small text-muted mb-1"),
        dbc.Row(id=B.KPIS, className="g-2 mb-2"),
        html.H6("Basis (bps) with its rolling mean and ±2σ bands", className="mt-2 mb-0"),
        dcc.Graph(id=B.BPS_GRAPH, config={"displaylogo": False},
                  figure=figures.empty_figure(height=280, uirevision="basis")),
        html.H6("z-score of the basis (bps) over the window", className="mt-2 mb-0"),
        dcc.Graph(id=B.Z_GRAPH, config={"displaylogo": False},
                  figure=figures.empty_figure(height=220, uirevision="basis")),
        html.H6("Lead-lag of the legs' returns", className="mt-2"),
        html.Div(id=B.LL_NOTE, className="small text-muted"),
        dcc.Graph(id=B.LL_GRAPH, config={"displaylogo": False},
                  figure=figures.empty_figure(height=260, uirevision="basis")),
        dcc.Interval(id=B.INTERVAL, interval=2_000),
        dcc.Store(id=B.TRIGGER), dcc.Store(id=B.URL_SINK),
    ])


def _args(perp, spot, tf, window, max_lag, source=None) -> dict:
    return basis_queries.basis_args({
        "perp": perp or "", "spot": spot or "", "timeframe": tf or "",
        "window": "" if window is None else str(window),
        "max_lag": "" if max_lag is None else str(max_lag), "source": source or ""})


@callback(
    Output(B.TRIGGER, "data"),
    Input(B.INTERVAL, "n_intervals"), State(B.PERP, "value"), State(B.SPOT, "value"),
    State(B.TF, "value"), State(B.WINDOW, "value"), State(B.SOURCE, "value"),
    State(B.TRIGGER, "data"),
    prevent_initial_call=True,
)
def watch(_n, perp, spot, tf, window, source, last):
    """Cheap: the tracked pair's point count (never builds); a new count redraws."""
    try:
        tf_ms = params.timeframe({"timeframe": tf or ""})
        w = params.window({"window": "" if window is None else str(window)})
        snap = get_services().tracked_pair(perp, spot, tf_ms, w, *basis_queries.GRID_HEDGE,
                                           params.source({"source": source or ""}))
    except (BadParam, KeyError, ValueError):
        return no_update
    seq = None if snap is None else int(snap.bar_seq)
    return no_update if seq is not None and seq == last else seq


def _bps_figure(s, idx, uirev: str) -> dict:
    ts = s.ts[idx]
    fig = figures.spread_figure(
        ts, s.basis_bps[idx], s.mean_bps[idx], (s.mean_bps + BAND_K * s.std_bps)[idx],
        (s.mean_bps - BAND_K * s.std_bps)[idx], k=BAND_K, uirevision=uirev, height=280)
    fig["data"][0].update(name="basis (bps)", hovertemplate="basis %{y:.3f} bps<extra></extra>")
    return figures.mark_breaks(fig, _break_times(s))


def _break_times(s) -> list[int]:
    sid = s.session
    return [int(t) for t in s.ts[1:][sid[1:] != sid[:-1]]] if len(sid) > 1 else []


def _ll_figure(ll, perp_label: str, spot_label: str, uirev: str) -> dict:
    corr = list(ll.corr)
    colors = ["#f39c12" if lag == ll.peak_lag else "#3498db" for lag in ll.lags]
    layout = figures.base_layout(
        height=260, uirevision=uirev, showlegend=False, hovermode="closest",
        title=f"corr(r {perp_label}[t], r {spot_label}[t+lag]): positive lag = perp first")
    layout["xaxis"] = {**layout["xaxis"], "type": "linear", "title": {"text": "lag (bars)"}}
    if len(ll.lags) <= 21:
        layout["xaxis"]["dtick"] = 1
    layout["margin"]["b"] = 40
    return {
        "data": [{"type": "bar", "x": list(ll.lags), "y": corr, "marker": {"color": colors},
                  "name": "corr",
                  "hovertemplate": "lag %{x} bars: corr %{y:.4f}<extra></extra>"}],
        "layout": layout,
    }


def _leader_text(ll, tf_ms: int) -> str:
    if ll.peak_lag is None:
        return (f"lead-lag: not defined yet ({ll.nobs} of {ll.needed} aligned bars, or no "
                "price moves)")
    secs = abs(ll.peak_lag) * tf_ms / 1000
    who = {"perp": f"the perp moves first, spot follows {abs(ll.peak_lag)} bar(s) "
                   f"({secs:g} s) later",
           "spot": f"spot moves first, the perp follows {abs(ll.peak_lag)} bar(s) "
                   f"({secs:g} s) later",
           "together": "both move within the same bar"}[ll.leader]
    zero = "–" if ll.corr_at_zero is None else f"{ll.corr_at_zero:.3f}"
    return (f"peak at lag {ll.peak_lag:+d} (corr {ll.peak_corr:.3f}; at lag 0: {zero}): "
            f"{who}. {ll.nobs:,} aligned bars of the last session.")


@callback(
    Output(B.BPS_GRAPH, "figure"), Output(B.Z_GRAPH, "figure"), Output(B.LL_GRAPH, "figure"),
    Output(B.KPIS, "children"), Output(B.LL_NOTE, "children"), Output(B.STATUS, "children"),
    Output(B.MESSAGE, "children"), Output(B.PAIR_LINK, "href"),
    Input(B.TRIGGER, "data"), Input(B.PERP, "value"), Input(B.SPOT, "value"),
    Input(B.TF, "value"), Input(B.WINDOW, "value"), Input(B.MAX_LAG, "value"),
    Input(B.SOURCE, "value"),
)
def draw(_seq, perp, spot, tf, window, max_lag, source):
    """On bar close (or a control change): the basis of the last day, downsampled."""
    try:
        args = _args(perp, spot, tf, window, max_lag, source)
        s = basis_queries.basis_of(**args)
    except BadParam as exc:
        return (*([no_update] * 6), dbc.Alert(str(exc), color="warning", id="basis-error"),
                no_update)
    except NoQuotes as exc:  # source=mid before any quote (or a run with --no-book)
        return (*([no_update] * 6), dbc.Alert(str(exc), color="warning", id="basis-error"),
                no_update)
    except InsufficientData as exc:
        return (*([no_update] * 5), f"collecting: {exc.have} of {exc.needed} ({exc.what})",
                None, no_update)
    perp_label = basis_queries.leg_label(args["perp"])
    spot_label = basis_queries.leg_label(args["spot"])
    uirev = f"basis-{args['perp']}-{args['spot']}-{tf}-{args['window']}"
    idx = minmax_multi([s.basis_bps, s.zscore])
    z_fig = figures.zscore_figure(s.ts[idx], s.zscore[idx], entry=BAND_K, uirevision=uirev,
                                  height=220)
    last = s.last()
    hl = last.get("halflife")
    tf_s = args["tf_ms"] / 1000
    kpis = [
        dbc.Col(kpi_card("basis (perp − spot)", fmt(last.get("basis"), ",.2f"),
                         sub="USDT"), md=2),
        dbc.Col(kpi_card("basis (bps)", fmt(last.get("basis_bps"), "+.3f"),
                         sub="10⁴·(perp − spot)/spot", value_id="basis-kpi-bps"), md=2),
        dbc.Col(kpi_card("rolling mean (bps)", fmt(last.get("mean_bps"), "+.3f"),
                         sub=f"w={args['window']}"), md=2),
        dbc.Col(kpi_card("z-score", fmt(last.get("zscore"), "+.2f"),
                         sub=f"ddof=1 · w={args['window']}", value_id="basis-kpi-z"), md=2),
        dbc.Col(kpi_card("half-life", fmt(hl, ",.1f"),
                         sub="bars" if hl is None else f"bars ≈ {hl * tf_s:,.1f} s"), md=2),
        dbc.Col(kpi_card("leader", {"perp": "perp", "spot": "spot", "together": "together",
                                    "undefined": "–"}[s.leadlag.leader],
                         sub="–" if s.leadlag.peak_lag is None else
                         f"lag {s.leadlag.peak_lag:+d} bars", value_id="basis-kpi-leader"),
                md=2),
    ]
    when = "–" if not len(s) else str(np.datetime64(int(s.ts[-1]), "ms")) + " UTC"
    status = html.Span(f"{perp_label} against {spot_label}: {len(s):,} aligned "
                       f"{format_timeframe(args['tf_ms'])} points; last {when}",
                       id="basis-done")
    link = "/pair?" + urlencode({"a": args["perp"], "b": args["spot"], "tf": tf,
                                 "w": args["window"],
                                 **({"source": "mid"} if args["source"] == "mid" else {})})
    return (_bps_figure(s, idx, uirev), z_fig,
            _ll_figure(s.leadlag, perp_label, spot_label, uirev),
            kpis, _leader_text(s.leadlag, args["tf_ms"]), status, None, link)


@callback(
    Output(ids.Shell.ALERT_PREFILL, "data", allow_duplicate=True),
    Input(B.ALERT_BUTTON, "n_clicks"), State(B.PERP, "value"), State(B.SPOT, "value"),
    State(B.TF, "value"), State(B.WINDOW, "value"), State(B.SOURCE, "value"),
    prevent_initial_call=True,
)
def alert_on_basis(clicks, perp, spot, tf, window, source):
    """The shell's alert modal, pre-filled: ``basis_bps`` of this perp/spot crossing
    above the rounded current value + 1 bp (the trader edits the threshold)."""
    if not clicks:
        return no_update
    try:
        args = _args(perp, spot, tf, window, None, source)
        last = basis_queries.basis_of(**args).last()
    except (BadParam, InsufficientData):
        return no_update
    bps = last.get("basis_bps")
    return {"metric": "basis_bps", "a": args["perp"], "b": args["spot"],
            "timeframe": format_timeframe(args["tf_ms"]), "window": args["window"],
            "regression": "ols", "prices": "raw", "source": args["source"],
            "op": "crosses_above",
            "threshold": round(bps + 1.0, 1) if bps is not None else 0.0}


sync_query("/basis", B.URL_SINK, {
    "perp": B.PERP, "spot": B.SPOT, "timeframe": B.TF, "window": B.WINDOW,
    "max_lag": B.MAX_LAG, "source": B.SOURCE,
}, omit={"source": "trade"})
