"""Builders of the backtest and screener pages: controls, KPI cards, figures, grid rows.

Pure layout/figure code (no services): the pages' callbacks call
:mod:`dashapp.trader_queries` and pass the results here.
"""

from __future__ import annotations

import math

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import html

from analytics.backtest import YEAR_MS, BacktestResult
from analytics.leadlag import LeadLag, LeadLagMatrix
from dashapp.api.downloads import iso_ms
from dashapp.downsample import minmax_indices
from dashapp.figures import mark_empty

MAX_POINTS = 2_000
HOVER_TIME = "%{x|%Y-%m-%d %H:%M:%S} UTC"
GRID_THEME = {
    "function": "themeAlpine.withParams({backgroundColor: '#222222', foregroundColor: "
    "'#e6e6e6', headerBackgroundColor: '#303030', accentColor: '#00bc8c', "
    "oddRowBackgroundColor: '#262626', fontSize: 12})"
}
REG_OPTIONS = [{"label": r, "value": r} for r in ("ols", "huber", "theilsen", "kalman")]
PRICE_OPTIONS = [{"label": "raw", "value": "raw"}, {"label": "log", "value": "log"}]
#: ``source=trade|mid`` (#17): the pair on the bars' last trades or on their mids.
SOURCE_OPTIONS = [{"label": "trade", "value": "trade"}, {"label": "mid", "value": "mid"}]
#: ``fills=last|quote`` (#17): legs fill at the pair's prices, or cross the spread.
FILLS_OPTIONS = [{"label": "last", "value": "last"}, {"label": "quote", "value": "quote"}]


def labelled(label: str, control, width: int = 2) -> dbc.Col:
    return dbc.Col([dbc.Label(label, className="small mb-0 text-muted"), control],
                   xs=6, md=width, className="mb-2")


def num_input(id_: str, value, *, step="any", placeholder: str = "") -> dbc.Input:
    return dbc.Input(id=id_, type="number", value=value, step=step, size="sm",
                     placeholder=placeholder, debounce=True)


def _fmt(v, spec: str = ",.2f", suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:{spec}}{suffix}"


def kpi_card(title: str, value, *, hint=None, color: str | None = None):
    return dbc.Col(
        dbc.Card(dbc.CardBody([
            html.Div(title, className="small text-muted"),
            html.Div(value, className=f"fs-5 font-monospace {color or ''}"),
            html.Div(hint or "", className="small text-muted"),
        ], className="py-2 px-3"), className="h-100"),
        xs=6, md=3, lg=True, className="mb-2",
    )


#: An annualised Sharpe needs at least this span of bars: below it the page shows the
#: per-bar Sharpe instead (13 minutes scaled by sqrt(bars per year) gives numbers like
#: -879 that say nothing about a year).
MIN_ANNUALISE_DAYS = 30


def _span_text(ms: float) -> str:
    s = ms / 1000
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86_400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} days"


def sharpe_kpi(r: BacktestResult) -> tuple[str, float | None, str]:
    """(title, value, hint) of the Sharpe card, by the sample rule.

    The span is ``n_bars * tf`` (the bars the run covers). With at least
    :data:`MIN_ANNUALISE_DAYS` days it is the annualised Sharpe of the result,
    ``mean(ΔE) / sd(ΔE) * sqrt(year / tf)``; below, the per-bar Sharpe
    ``mean(ΔE) / sd(ΔE)`` (the same number without the sqrt(bars per year) factor)
    with a note saying why."""
    span = r.n_bars * r.tf_ms
    if span >= MIN_ANNUALISE_DAYS * 86_400_000:
        return "Sharpe (ann.)", r.sharpe, f"per-bar PnL, 24/7; {_span_text(span)} of bars"
    per_bar = None if r.sharpe is None else r.sharpe / math.sqrt(YEAR_MS / r.tf_ms)
    return ("Sharpe (per bar)", per_bar,
            f"{_span_text(span)} of bars: too short to annualise "
            f"(needs {MIN_ANNUALISE_DAYS} days)")


def backtest_kpis(r: BacktestResult) -> dbc.Row:
    ret = None if r.total_return is None else 100 * r.total_return
    dd = None if r.max_drawdown_return is None else 100 * r.max_drawdown_return
    hit = None if r.hit_rate is None else 100 * r.hit_rate
    colour = "text-success" if r.total_pnl > 0 else ("text-danger" if r.total_pnl < 0 else "")
    hold = r.avg_holding_seconds
    sharpe_title, sharpe, sharpe_hint = sharpe_kpi(r)
    per_bar = sharpe_title != "Sharpe (ann.)"
    return dbc.Row([
        kpi_card("Total return", _fmt(ret, "+.3f", " %"), color=colour,
                 hint=f"PnL {_fmt(r.total_pnl, '+,.2f')} on {_fmt(r.capital, ',.0f')}"),
        kpi_card(sharpe_title, _fmt(sharpe, ".4f" if per_bar else ".2f"), hint=sharpe_hint),
        kpi_card("Max drawdown", _fmt(dd, ".3f", " %"), hint=_fmt(r.max_drawdown, ",.2f")),
        kpi_card("Hit rate", _fmt(hit, ".1f", " %"), hint=f"{r.n_trades} closed trades"),
        kpi_card("Avg holding", _fmt(hold, ",.1f", " s"),
                 hint=_fmt(r.avg_holding_bars, ",.1f", " bars")),
        kpi_card("Turnover", _fmt(r.turnover, ",.1f", "×"), hint="traded / capital"),
        kpi_card("Trades", f"{len(r.trades)}",
                 hint=f"fees {_fmt(r.total_fees, ',.2f')}, slip "
                      f"{_fmt(r.total_slippage, ',.2f')}, open {_fmt(r.open_pnl, '+,.2f')}"),
        pnl_breakdown_card(r),
    ], className="g-2", id="backtest-kpi-row")


def pnl_breakdown(r: BacktestResult) -> dict[str, str]:
    """Closed trades' gross PnL, spread cost, fees (+ slippage) and net, as shown:
    ``net = gross − spread − fees − slippage`` (:mod:`analytics.backtest`)."""
    return {"gross": _fmt(r.gross_pnl, "+,.2f"), "spread": _fmt(r.total_spread_cost, ",.2f"),
            "fees": _fmt(r.total_fees + r.total_slippage, ",.2f"),
            "net": _fmt(r.total_pnl, "+,.2f")}


def pnl_breakdown_card(r: BacktestResult):
    """Gross, spread cost, fees and net apart; the spread line says how legs filled."""
    p = pnl_breakdown(r)
    how = ("fills at the quote: buys at the ask, sells at the bid"
           if r.params.fills == "quote" else "fills at the pair's prices: no spread paid")
    return kpi_card(
        "Gross → net", html.Span([p["gross"], html.Span(" → ", className="text-muted"),
                                  html.Span(p["net"], id="backtest-net")]),
        hint=html.Span([f"spread −{p['spread']}, fees & slip −{p['fees']}",
                        html.Br(), how], id="backtest-breakdown"))


def _layout(fig: go.Figure, *, height: int, uirevision: str, title: str) -> go.Figure:
    fig.update_layout(
        template="plotly_dark", height=height, uirevision=uirevision,
        margin=dict(l=60, r=16, t=30, b=28), paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="#1b1b1b", hovermode="x unified", showlegend=True,
        title=dict(text=title, x=0.01, y=0.97, font=dict(size=12)),
        legend=dict(orientation="h", x=0.5, y=1.02, yanchor="bottom", font=dict(size=10)),
    )
    fig.update_xaxes(type="date", gridcolor="#2c2c2c", hoverformat="%Y-%m-%d %H:%M:%S")
    fig.update_yaxes(gridcolor="#2c2c2c", zerolinecolor="#555")
    return mark_empty(fig, "no backtest run yet")  # no 2000-2001 axis when empty


def equity_figure(r: BacktestResult, uirevision: str) -> go.Figure:
    idx = minmax_indices(r.equity, MAX_POINTS)
    x = r.ts[idx].astype(np.float64)
    fig = go.Figure(go.Scatter(x=x, y=r.equity[idx], mode="lines", name="equity (MTM)",
                               line=dict(color="#00bc8c", width=1.5),
                               hovertemplate="%{y:,.4f}<extra>equity</extra>"))
    for side, name, color, symbol in ((-1, "short entry", "#e74c3c", "triangle-down"),
                                      (1, "long entry", "#3498db", "triangle-up")):
        tr = [t for t in r.trades if t.side == side]
        if tr:
            ix = np.array([t.entry_index for t in tr])
            fig.add_trace(go.Scatter(
                x=r.ts[ix].astype(np.float64), y=r.equity[ix], mode="markers", name=name,
                marker=dict(color=color, symbol=symbol, size=8),
                hovertemplate=f"{name}<br>" + HOVER_TIME + "<extra></extra>"))
    return _layout(fig, height=300, uirevision=uirevision,
                   title="Equity, mark to market (quote currency, 1 A vs β B)")


def drawdown_figure(r: BacktestResult, uirevision: str) -> go.Figure:
    idx = minmax_indices(r.drawdown, MAX_POINTS)
    fig = go.Figure(go.Scatter(
        x=r.ts[idx].astype(np.float64), y=r.drawdown[idx], mode="lines", name="drawdown",
        fill="tozeroy", line=dict(color="#e74c3c", width=1),
        hovertemplate="%{y:,.4f}<extra>drawdown</extra>"))
    return _layout(fig, height=200, uirevision=uirevision, title="Drawdown")


#: (field, header, minimum width, flex). Net PnL and the exit reason come right after the
#: times, and the widths sum to ~1,300 px, so the whole trade fits a 1,400 px screen
#: (the signal time, always the bar before the entry, is the entry cell's tooltip and a
#: column of the CSV).
TRADE_COLS = [
    ("side", "Side", 60, 1), ("entry_ts", "Entry (UTC)", 140, 2),
    ("exit_ts", "Exit (UTC)", 140, 2), ("pnl", "Net PnL", 86, 1.2),
    ("exit_reason", "Exit by", 74, 1), ("beta", "β", 78, 1.1), ("hedge", "B units", 78, 1.1),
    ("entry_a", "A in", 84, 1.2), ("exit_a", "A out", 84, 1.2), ("entry_b", "B in", 76, 1.1),
    ("exit_b", "B out", 76, 1.1), ("pnl_a", "PnL A", 78, 1.1), ("pnl_b", "PnL B", 78, 1.1),
    ("fees", "Fees", 64, 1), ("slippage", "Slip", 58, 1),
]
#: With ``fills=quote`` (after :data:`TRADE_COLS`; the grid then scrolls sideways): the
#: trade's spread cost, each leg's fill and the quote it crossed ("bid × ask").
QUOTE_COLS = [
    ("spread_cost", "Spread", 64, 1),
    ("entry_fill_a", "A fill in", 84, 1.2), ("entry_quote_a", "A quote in", 150, 1.6),
    ("exit_fill_a", "A fill out", 84, 1.2), ("exit_quote_a", "A quote out", 150, 1.6),
    ("entry_fill_b", "B fill in", 76, 1.1), ("entry_quote_b", "B quote in", 130, 1.5),
    ("exit_fill_b", "B fill out", 76, 1.1), ("exit_quote_b", "B quote out", 130, 1.5),
]
#: ``2024-08-08T23:55:00.000Z`` -> ``2024-08-08 23:55:00`` (bar times are whole seconds;
#: any milliseconds stay); "open" (a trade still open) as is. Plain string replaces: the
#: grid's function-string evaluator has no regular expressions.
_TIME = ("params.value == null ? '' : params.value.replace('T', ' ')"
         ".replace('.000Z', '').replace('Z', '')")
#: Display formats (the CSV download keeps every digit): prices and β to 8 and 6
#: significant digits, money (quote currency) to cents.
_FORMATS = {"entry_a": ",.8~g", "exit_a": ",.8~g", "entry_b": ",.8~g", "exit_b": ",.8~g",
            "beta": ",.6~g", "hedge": ",.6~g", "pnl": ",.2f", "pnl_a": ",.2f",
            "pnl_b": ",.2f", "fees": ",.2f", "slippage": ",.2f", "spread_cost": ",.2f",
            "entry_fill_a": ",.8~g", "exit_fill_a": ",.8~g", "entry_fill_b": ",.8~g",
            "exit_fill_b": ",.8~g"}
TRADES_THEME = {
    "function": GRID_THEME["function"].replace(
        "fontSize: 12", "fontSize: 12, dataFontSize: 12, rowHeight: 30, "
        "cellHorizontalPaddingScale: 0.5")
}


def trade_column_defs(fills: str = "last") -> list[dict]:
    """The trades grid's columns: :data:`TRADE_COLS`, plus :data:`QUOTE_COLS` with
    ``fills=quote``."""
    cols = []
    for field, name, width, flex in TRADE_COLS + (QUOTE_COLS if fills == "quote" else []):
        col = {"field": field, "headerName": name, "minWidth": width, "flex": flex,
               "sortable": True, "headerTooltip": name}
        if field.endswith("_ts"):
            col["valueFormatter"] = {"function": _TIME}
        elif field in _FORMATS:
            col["valueFormatter"] = {
                "function": f"params.value == null ? '' : d3.format('{_FORMATS[field]}')"
                            "(params.value)"}
            col["type"] = "rightAligned"
        if field == "entry_ts":
            col["tooltipField"] = "signal_ts"
            col["headerTooltip"] = ("Entry fill (UTC): the close of the bar after the signal; "
                                    "hover a cell for the signal bar")
        if field == "pnl":
            col["headerTooltip"] = "Net PnL: gross minus spread cost, fees and slippage"
            col["cellClassRules"] = {"text-success": "params.value > 0",
                                     "text-danger": "params.value < 0"}
        if field == "spread_cost":
            col["headerTooltip"] = ("Spread cost (fills=quote): what crossing the bid/ask cost "
                                    "against the pair's prices, all four leg fills")
        if "_quote_" in field:
            col["headerTooltip"] = "The quote the fill crossed: bid × ask at the fill bar"
        cols.append(col)
    return cols


def trades_grid(id_: str) -> dag.AgGrid:
    return dag.AgGrid(id=id_, columnDefs=trade_column_defs(), rowData=[],
                      dashGridOptions={"theme": TRADES_THEME, "animateRows": False,
                                       "tooltipShowDelay": 300},
                      style={"height": "320px"})


def _quote_text(bid: float | None, ask: float | None) -> str:
    return "" if bid is None or ask is None else f"{bid:,.8g} × {ask:,.8g}"


def trade_rows(r: BacktestResult) -> list[dict]:
    rows = []
    for t in r.trades:
        row = {f: getattr(t, f) for f, *_ in TRADE_COLS + QUOTE_COLS if "_quote_" not in f}
        for when in ("entry", "exit"):
            for leg in ("a", "b"):
                row[f"{when}_quote_{leg}"] = _quote_text(getattr(t, f"{when}_bid_{leg}"),
                                                         getattr(t, f"{when}_ask_{leg}"))
        row["signal_ts"] = t.signal_ts
        row["side"] = "long" if t.side > 0 else "short"
        for f in ("signal_ts", "entry_ts", "exit_ts"):
            row[f] = "open" if row[f] is None else str(iso_ms(np.array([row[f]]))[0])
        rows.append(row)
    return rows


# ---------------------------------------------------------------- screener
SCREEN_COLS = [
    ("rank", "#", 55, None), ("a", "A", 100, None), ("b", "B", 100, None),
    ("coint_pvalue", "coint p", 95, ".4f"), ("half_life_seconds", "half-life s", 105, ",.1f"),
    ("abs_z", "|z|", 75, ".2f"), ("zscore", "z", 75, "+.2f"), ("corr", "corr", 75, ".3f"),
    ("beta", "β", 90, ",.4f"), ("liquidity", "trades/min (thin leg)", 160, ",.0f"),
    ("n_bars", "bars", 75, ",d"), ("error", "note", 200, None),
]


def screener_grid(id_: str) -> dag.AgGrid:
    cols = []
    for field, name, width, fmt in SCREEN_COLS:
        col = {"field": field, "headerName": name, "width": width, "sortable": True}
        if fmt:
            col["valueFormatter"] = {
                "function": f"params.value == null ? '–' : d3.format('{fmt}')(params.value)"}
            col["type"] = "rightAligned"
        cols.append(col)
    return dag.AgGrid(id=id_, columnDefs=cols, rowData=[],
                      dashGridOptions={"theme": GRID_THEME, "rowSelection": {"mode": "singleRow",
                                       "checkboxes": False, "enableClickSelection": True},
                                       "animateRows": False, "domLayout": "autoHeight"},
                      style={"minHeight": "120px"}, className="screener-grid")


def leadlag_figure(ll: LeadLag, a: str, b: str, uirevision: str) -> go.Figure:
    colors = ["#f39c12" if lag == ll.peak_lag else "#3498db" for lag in ll.lags]
    fig = go.Figure(go.Bar(x=ll.lags, y=ll.corr, marker_color=colors, name="corr",
                           hovertemplate="lag %{x} bars: corr %{y:.4f}<extra></extra>"))
    if ll.peak_lag is not None:
        fig.add_annotation(x=ll.peak_lag, y=ll.peak_corr, text=f"peak {ll.peak_lag:+d}",
                           showarrow=True, arrowhead=2, font=dict(color="#f39c12"))
    fig.update_layout(
        template="plotly_dark", height=280, uirevision=uirevision, showlegend=False,
        margin=dict(l=56, r=16, t=30, b=40), paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="#1b1b1b",
        title=dict(text=f"corr(r {a}[t], r {b}[t+lag]) — positive lag: {a} leads {b}",
                   x=0.01, font=dict(size=12)),
        xaxis_title="lag (bars)", yaxis_title="correlation",
    )
    return fig


def leadlag_heatmap(m: LeadLagMatrix, uirevision: str) -> go.Figure:
    z = m.peak_lag
    text = [["–" if not np.isfinite(v) else f"{int(v):+d}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=np.where(np.isfinite(z), z, None).tolist(), x=list(m.symbols), y=list(m.symbols),
        text=text, texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-m.max_lag,
        zmax=m.max_lag, customdata=m.peak_corr,
        colorbar=dict(title="lag"),
        hovertemplate="A=%{y} B=%{x}<br>peak lag %{z} bars (corr %{customdata:.3f})"
                      "<extra></extra>"))
    fig.update_layout(
        template="plotly_dark", height=320, uirevision=uirevision,
        margin=dict(l=80, r=16, t=30, b=60), paper_bgcolor="rgba(0,0,0,0)",
        title=dict(text="Peak lag, row A vs column B (positive: row leads column)",
                   x=0.01, font=dict(size=12)),
        yaxis=dict(autorange="reversed"),
    )
    return fig
