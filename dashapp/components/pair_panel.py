"""Layout of one pair panel (controls, KPIs, signal, charts), ids ``Pair.pid(kind, i)``.

Each panel is independent: its controls feed its own ``SELECTION`` store and its MATCH
callbacks (``dashapp/pages/pair/page.py``), so several pairs can be watched side by side.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from analytics.pair import REGRESSIONS
from analytics.registry import KPI_FIGURES
from analytics.timeframes import LIVE_TIMEFRAMES
from dashapp import figures
from dashapp.components import basis_link, dataset_select
from dashapp.components.kpi import kpi_card
from dashapp.ids import Pair
from dashapp.selection import MAX_WINDOW, NUM_HI, NUM_LO, Selection

REG_LABELS = {"ols": "OLS", "huber": "Huber", "theilsen": "Theil-Sen", "kalman": "Kalman"}
CHARTS = (
    ("price", "Prices", Pair.PRICE_GRAPH, 12),
    ("z", "z-score · live tick marker", Pair.Z_GRAPH, 6),
    ("spread", "Spread · ±k σ bands", Pair.SPREAD_GRAPH, 6),
    ("corr", "Rolling correlation of returns", Pair.CORR_GRAPH, 6),
    ("beta", "Hedge ratio β over time", Pair.BETA_GRAPH, 6),
)
GRAPH_CONFIG = {
    "displaylogo": False,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}


def collecting_id(index: int, chart: str) -> dict:
    return {"type": Pair.COLLECTING, "index": index, "chart": chart}


def _labelled(label: str, control, width: int | str = "auto") -> dbc.Col:
    return dbc.Col(
        [html.Label(label, className="ctl-label"), control], width=width, className="ctl"
    )


def _typed(value, id_, width: int, title: str, mode: str) -> dbc.Input:
    """A number box as text: the browser hands over exactly what was typed (a number
    input reports an out-of-range or mistyped value as empty), so the page can name the
    control and the rule instead of silently using a default."""
    return dbc.Input(
        type="text",
        inputMode=mode,
        value=value,
        id=id_,
        size="sm",
        debounce=True,
        placeholder=title,
        style={"width": width},
    )


#: The source select's value for the live feed (an empty value renders as a blank
#: select in the browser; ``dataset_select.dataset_of("live")`` is the live feed).
LIVE = "live"


def source_options_list() -> list[dict]:
    """"Live feed" and every stored dataset (:func:`dataset_select.options`)."""
    return [
        {**o, "value": LIVE} if o["value"] == dataset_select.LIVE_VALUE else o
        for o in dataset_select.options()
    ]


def tf_options(tfs) -> list[dict]:
    return [{"label": t, "value": t} for t in tfs]


def controls(
    i: int, sel: Selection, symbols: list[str], tfs=None, source_options=None
) -> dbc.Row:
    pid = Pair.pid
    sym_opts = dataset_select.labelled(sorted(symbols))  # "BTCUSDT · perp"
    src_opts = source_options if source_options is not None else source_options_list()
    return dbc.Row(
        [
            _labelled(
                "Source",
                dbc.Select(
                    options=src_opts,
                    value=sel.dataset or LIVE,
                    id=pid(Pair.SOURCE, i),
                    size="sm",
                    style={"width": 150},
                ),
            ),
            _labelled(
                "A",
                dbc.Select(
                    options=sym_opts,
                    value=sel.a,
                    id=pid(Pair.A, i),
                    size="sm",
                    style={"width": 140},
                ),
            ),
            _labelled(
                "B",
                html.Div([
                    dbc.Select(
                        options=sym_opts,
                        value=sel.b,
                        id=pid(Pair.B, i),
                        size="sm",
                        style={"width": 140},
                    ),
                    basis_link.link(i),  # shown when A/B are one symbol on two markets
                ], className="d-flex align-items-center"),
            ),
            _labelled(
                "Timeframe",
                dbc.RadioItems(
                    options=tf_options(tfs or LIVE_TIMEFRAMES),
                    value=sel.tf,
                    id=pid(Pair.TF, i),
                    inline=True,
                    className="btn-group btn-group-sm",
                    inputClassName="btn-check",
                    labelClassName="btn btn-outline-info btn-sm",
                    labelCheckedClassName="active",
                ),
            ),
            _labelled(
                "Window (bars)",
                _typed(
                    str(sel.window), pid(Pair.WINDOW, i), 80,
                    f"whole number of bars, 3 to {MAX_WINDOW}", "numeric",
                ),
            ),
            _labelled(
                "Regression",
                dbc.Select(
                    options=[{"label": REG_LABELS[r], "value": r} for r in REGRESSIONS],
                    value=sel.regression,
                    id=pid(Pair.REG, i),
                    size="sm",
                    style={"width": 110},
                ),
            ),
            _labelled(
                "Prices",
                dbc.Select(
                    options=[{"label": "raw", "value": "raw"}, {"label": "log", "value": "log"}],
                    value=sel.prices,
                    id=pid(Pair.PRICES, i),
                    size="sm",
                    style={"width": 70},
                ),
            ),
            _labelled(
                "Price",
                dbc.Select(
                    options=[{"label": "last trade", "value": "trade"},
                             {"label": "mid (bid+ask)/2", "value": "mid"}],
                    value=sel.source,
                    id=pid(Pair.PRICE_SOURCE, i),
                    size="sm",
                    style={"width": 140},
                ),
            ),
            _labelled(
                "Price chart",
                dbc.Select(
                    options=[
                        {"label": "normalized", "value": "overlay"},
                        {"label": "candles + vol", "value": "candles"},
                    ],
                    value=sel.mode,
                    id=pid(Pair.PRICE_MODE, i),
                    size="sm",
                    style={"width": 150},
                ),
            ),
            _labelled(
                "Bands k σ",
                _typed(
                    f"{sel.k:g}", pid(Pair.K, i), 70, f"{NUM_LO:g} to {NUM_HI:g}", "decimal"
                ),
            ),
            _labelled(
                "Entry |z|",
                _typed(
                    f"{sel.entry:g}", pid(Pair.ENTRY, i), 70, f"{NUM_LO:g} to {NUM_HI:g}",
                    "decimal",
                ),
            ),
            dbc.Col(
                [
                    html.Label("\u00a0", className="ctl-label"),
                    html.Div(
                        [
                            dbc.Button(
                                "Run ADF",
                                id=pid(Pair.ADF_BUTTON, i),
                                size="sm",
                                color="info",
                                disabled=True,
                                className="me-1",
                            ),
                            dbc.Button(
                                "Alert on this",
                                id=pid(Pair.ALERT_BUTTON, i),
                                size="sm",
                                color="warning",
                                outline=True,
                            ),
                        ]
                    ),
                ],
                width="auto",
                className="ctl",
            ),
        ],
        className="g-2 align-items-end mb-2 pair-controls",
    )


def panel(
    i: int, sel: Selection, symbols: list[str], tfs=None, source_options=None
) -> html.Div:
    """The whole panel ``i`` for the initial selection ``sel`` (``symbols`` and
    ``tfs``: the source's)."""
    pid = Pair.pid
    charts = []
    for name, title, kind, width in CHARTS:
        charts.append(
            dbc.Col(
                dbc.Card(
                    [
                        dbc.CardHeader(
                            [
                                html.Span(title, className="chart-title"),
                                html.Span(id=collecting_id(i, name), className="collecting ms-2"),
                            ],
                            className="py-1 px-2",
                        ),
                        dbc.CardBody(
                            dcc.Graph(
                                id=pid(kind, i),
                                config=GRAPH_CONFIG,
                                figure=figures.empty_figure(
                                    height=300 if name == "price" else 230, uirevision=sel.key
                                ),
                            ),
                            className="p-1",
                        ),
                    ],
                    className="chart-card",
                ),
                lg=width,
            )
        )
    charts.append(dbc.Col(html.Span(id=collecting_id(i, "adf")), width=0, className="d-none"))
    return html.Div(
        [
            dcc.Store(id=pid(Pair.SELECTION, i)),
            dcc.Store(id=pid(Pair.DRAWN, i)),
            dcc.Store(id=pid(Pair.VIEW, i)),
            dcc.Store(id=pid(Pair.ADF_STORE, i)),
            dcc.Store(id=pid(Pair.EXTEND, i)),
            dcc.Store(id=pid(Pair.RESYNC, i)),
            controls(i, sel, symbols, tfs, source_options),
            html.Div(id=pid(Pair.ERROR, i)),
            html.Div(id=pid(Pair.STATUS, i), className="pair-status"),
            html.Div(body(i, sel, charts), id=pid(Pair.BODY, i), className="pair-body"),
        ],
        className="pair-panel",
    )


def body(i: int, sel: Selection, charts: list) -> list:
    """KPIs, signal, ADF and charts: what turns stale while another choice is pending."""
    pid = Pair.pid
    return [
        dbc.Row(
            [
                dbc.Col(
                    kpi_card(
                        "live z (tick)",
                        "–",
                        value_id=pid(Pair.LIVE_Z, i),
                        title="z of the latest traded prices (Price: mid, of the latest "
                        "quotes' mids) against the last closed window, every 500 ms",
                    ),
                    width=6,
                    md=2,
                    lg=True,
                ),
                dbc.Col(html.Div(id=pid(Pair.KPI, i), className="kpi-row"), md=10, lg=10),
            ],
            className="g-2 mb-2",
        ),
        dbc.Row(
            [
                dbc.Col(html.Div(id=pid(Pair.SIGNAL, i)), lg=7),
                dbc.Col(
                    dcc.Loading(
                        html.Div(
                            adf_card(None), id=pid(Pair.ADF_RESULT, i), className="adf-result"
                        ),
                        type="dot",
                        color="#3498db",
                    ),
                    lg=5,
                ),
            ],
            className="g-2 mb-2",
        ),
        dbc.Row(charts, className="g-2"),
    ]


def refresh_outputs(up, sel_data: dict | None, adf: dict | None, charts: list[str]) -> dict:
    """A :class:`dashapp.pages.pair.pairlive.PanelUpdate` as the outputs of the panel's refresh
    callback (keys as in ``pages/pair.py``): ``figure`` per graph, ``extend`` (graph ->
    extendData, for the EXTEND store), ``drawn``,
    live z text and class, KPI cards, signal card, collecting notes (per chart in
    ``charts``), ADF button disabled, status line."""
    from dash import no_update

    from dashapp.pages.pair.pairlive import valid_adf

    def nu(v):
        return no_update if v is None else v

    sel = Selection.from_store(sel_data)
    adf = valid_adf(adf)
    tone = f"kpi-{up.live_tone}" if up.live_tone else ""
    graphs = ("price", "spread", "z", "corr", "beta")
    return {
        "figure": {g: nu(up.figures.get(g)) for g in graphs},
        "extend": {"from": up.extend_from, **{g: up.extend[g] for g in graphs if g in up.extend}}
        if up.extend
        else no_update,
        "drawn": nu(up.drawn),
        "live_z": nu(up.live_z),
        "live_class": no_update if up.live_z is None else f"kpi-value live-z {tone}",
        "kpi": no_update if up.kpis is None or sel is None else kpi_row(up.kpis, sel, adf),
        "signal": no_update if up.signal is None else signal_card(up.signal),
        "collecting": [no_update] * len(charts)
        if up.collecting is None
        else [up.collecting.get(c) for c in charts],
        "adf_disabled": nu(up.adf_disabled),
        "status": no_update if up.status is None else status_line(up.status),
    }


def status_line(text: str):
    """The panel's status: a spinner and what it builds (or why it cannot), or nothing."""
    if not text:
        return None
    spin = text.startswith("building")
    spinner = [dbc.Spinner(size="sm", color="info", spinner_class_name="me-2")] if spin else []
    return dbc.Alert(
        [*spinner, html.Span(text)],
        color="info" if spin else "warning",
        className="py-1 px-2 small mb-2 pair-building",
    )


#: Places in the KPI strip of the cards that are not pair columns; the column cards
#: take theirs from their declaration (``Display.kpi`` in :mod:`analytics.registry`:
#: beta 10, alpha 20, corr 50).
R2_SLOT, HALF_LIFE_SLOT, ADF_SLOT = 30, 40, 90


def kpi_row(k: dict, sel: Selection, adf: dict | None) -> dbc.Row:
    """Bar-close KPIs: every pair column declared with a KPI slot (beta, alpha, corr,
    ...), R^2, the day's half-life and the last ADF, in slot order."""
    from dashapp.components.kpi import fmt

    hl = k.get("half_life")
    if hl is None:
        hl_text, hl_sub = "–", None
    elif hl == float("inf"):
        hl_text, hl_sub = "∞", "not mean-reverting"
    else:
        hl_text, hl_sub = f"{hl:,.1f}", f"bars ≈ {_seconds(hl * sel.tf_ms / 1000)}"
    adf_text, adf_sub, adf_tone = "–", "press Run ADF", None
    if adf and adf.get("key") == sel.key and adf.get("pvalue") is not None:
        adf_text = f"p={adf['pvalue']:.3f}"
        adf_sub = f"stat {adf['stat']:.2f} · {adf.get('at', '')}"
        adf_tone = "up" if adf["pvalue"] < 0.05 else "warn"
    slots = [
        (R2_SLOT, kpi_card("R² (window)", fmt(k.get("r2"), ".3f"))),
        (HALF_LIFE_SLOT, kpi_card("half-life", hl_text, sub=hl_sub)),
        (ADF_SLOT, kpi_card("last ADF", adf_text, sub=adf_sub, tone=adf_tone)),
    ]
    for fig in KPI_FIGURES:
        d = fig.display
        sub = d.kpi_sub.format(reg=REG_LABELS[sel.regression], tf=sel.tf, window=sel.window)
        slots.append((d.kpi, kpi_card(d.label, fmt(k.get(fig.name), d.fmt), sub=sub or None)))
    cards = [card for _, card in sorted(slots, key=lambda slot: slot[0])]
    lg = 2 if len(cards) <= 6 else True  # six to a row on large screens, else share it
    return dbc.Row([dbc.Col(c, xs=6, md=4, lg=lg) for c in cards], className="g-2")


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:,.0f} s"
    if s < 7200:
        return f"{s / 60:,.1f} min"
    return f"{s / 3600:,.1f} h"


def signal_card(summary) -> dbc.Card:
    """Signal summary: the call in large type and the reasons as a list."""
    tone = {"long_spread": "success", "short_spread": "danger", "flat": "secondary"}[summary.side]
    premise = {
        "holds": ("premise holds", "success"),
        "fails": ("premise fails", "danger"),
        "unknown": ("premise unconfirmed", "warning"),
    }[summary.premise]
    return dbc.Card(
        dbc.CardBody(
            [
                html.Div(
                    [
                        dbc.Badge(summary.label, color=tone, className="signal-badge me-2"),
                        dbc.Badge(premise[0], color=premise[1], className="me-2"),
                        html.Small("signal summary (last closed bar)", className="text-muted"),
                    ],
                    className="mb-1",
                ),
                html.Ul([html.Li(r) for r in summary.reasons], className="signal-reasons mb-0"),
            ],
            className="p-2",
        ),
        className="signal-card h-100",
    )


def adf_card(report: dict | None, error: str | None = None) -> html.Div:
    """ADF statistic, p-value and a plain-words reading (plus Engle-Granger)."""
    if error:
        return dbc.Alert(error, color="warning", className="py-1 px-2 mb-0 small")
    if not report:
        return html.Div(
            "ADF: not run yet. The test runs in the background on the "
            "day's spread; Engle-Granger on the prices.",
            className="text-muted small p-2",
        )
    p, cp = report["pvalue"], report.get("coint_pvalue")
    if p < 0.01:
        words = "strong evidence the spread is stationary (mean-reverting)"
    elif p < 0.05:
        words = "the spread looks stationary at the 5% level"
    elif p < 0.10:
        words = "weak evidence of stationarity (10% level only)"
    else:
        words = "cannot reject a unit root: the spread may wander (no mean reversion)"
    crit = report.get("critical_values") or {}
    crit_text = ", ".join(f"{k} {v:.2f}" for k, v in crit.items())
    rows = [
        html.Div(
            [
                html.B("ADF "),
                f"stat {report['stat']:.3f} · p-value {p:.4f} · "
                f"lags {report['usedlag']} · n {report['nobs']:,}",
            ]
        ),
        html.Div(f"critical: {crit_text}", className="text-muted"),
        html.Div([html.B("Reading: "), words + "."]),
    ]
    if cp is not None:
        rows.append(
            html.Div(
                [
                    html.B("Engle-Granger "),
                    f"stat {report['coint_stat']:.3f} · p-value {cp:.4f}"
                    + (" (cointegrated at 5%)" if cp < 0.05 else " (not cointegrated at 5%)"),
                ]
            )
        )
    if report.get("halflife") is not None:
        rows.append(html.Div(f"half-life over the day: {report['halflife']:,.1f} bars"))
    rows.append(
        html.Div(
            f"{report.get('a')}/{report.get('b')} · {report.get('timeframe')} · "
            f"w={report.get('window')} · {report.get('regression')} · "
            f"{report.get('prices')} · at {report.get('at', '')}",
            className="text-muted",
        )
    )
    return html.Div(rows, className="small p-2 adf-box")
