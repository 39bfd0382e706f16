"""Pure figure builders: numpy arrays in, plotly figure dicts out (no services, no Dash).

Figures are plain ``{"data": [...], "layout": {...}}`` dicts, the JSON plotly.js reads:
building them through ``go.Figure`` validates every point in Python and deep-copies the
template, about 130 ms for one panel over a day of bars; dicts take a few ms. The dark
look is spelled out in ``base_layout`` (no named template to resolve or ship).

Conventions for every chart:

* x is epoch milliseconds (ints) on a ``date`` axis: plotly.js reads numbers on a date
  axis as ms since the UTC epoch; every time shown is UTC;
* traces that ``extendData`` grows hold plain JSON arrays (plotly.js cannot extend
  base64 typed-array specs), y rounded to display precision (``_y``);
* hover shows exact values and the UTC time to the second (x unified hover);
* ``uirevision`` is set by the caller (the selection), so zoom and pan survive updates
  and reset only when the selection changes.

Trace order is part of the contract with :mod:`dashapp.updates` and
:mod:`dashapp.pages.pair.pairview` (``extendData`` targets trace indices): see ``*_TRACES``.
"""

from __future__ import annotations

import numpy as np

UP, DOWN = "#00bc8c", "#e74c3c"
COLOR_A, COLOR_B = "#3498db", "#f39c12"
SPREAD_COLOR, BAND_COLOR = "#ecf0f1", "rgba(52, 152, 219, 0.55)"
ALERT_COLOR = "#e83e8c"
GRID, TEXT = "#2c2c2c", "#d0d0d0"
FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
HOVER_TIME = "%Y-%m-%d %H:%M:%S UTC"
#: diverging, dark at 0 so the annotated values stay readable on the dark theme
HEAT_SCALE = [[0.0, "#e74c3c"], [0.5, "#1e1e1e"], [1.0, "#3498db"]]

#: extendData trace indices
Z_TRACES = {"z": 0, "live": 1}
SPREAD_TRACES = {"spread": 0, "mean": 1, "upper": 2, "lower": 3}


def _x(ts: np.ndarray) -> list:
    """Epoch ms as a JSON list of ints."""
    return np.asarray(ts, dtype=np.int64).tolist()


def _y(values: np.ndarray, sig: int = 7) -> list:
    """Floats as a JSON list rounded to ``sig`` significant digits of the trace's
    largest magnitude (display precision; hover shows these), NaN -> None (a gap)."""
    y = np.asarray(values, dtype=float)
    finite = np.isfinite(y)
    if not finite.any():
        return [None] * len(y)
    top = float(np.max(np.abs(y[finite])))
    decimals = max(0, sig - 1 - int(np.floor(np.log10(top)))) if top > 0 else sig
    r = np.round(y, decimals).tolist()
    if finite.all():
        return r
    return [v if f else None for v, f in zip(r, finite.tolist(), strict=True)]


def _axis(**extra) -> dict:
    return {
        "gridcolor": GRID,
        "zerolinecolor": "#444",
        "linecolor": "#444",
        "tickfont": {"size": 10},
        **extra,
    }


def base_layout(*, height: int, uirevision: str, title: str | None = None, **extra) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 56, "r": 40, "t": 30 if title else 10, "b": 28},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#1b1b1b",
        "font": {"size": 11, "family": FONT, "color": TEXT},
        "uirevision": uirevision,
        "hovermode": "x unified",
        "hoverlabel": {"bgcolor": "#262626", "bordercolor": "#555", "font": {"color": "#eee"}},
        "showlegend": True,
        "legend": {
            "orientation": "h",
            "x": 0,
            "y": 1.02,
            "yanchor": "bottom",
            "font": {"size": 10},
            "bgcolor": "rgba(0,0,0,0)",
        },
        "dragmode": "zoom",
        "xaxis": _axis(type="date", hoverformat=HOVER_TIME),
        "yaxis": _axis(),
    }
    if title:
        layout["title"] = {"text": title, "x": 0.01, "y": 0.98, "font": {"size": 12}}
    layout.update(extra)
    return layout


def _centred_note(text: str) -> dict:
    """One line of grey text in the middle of an axis-less chart."""
    return {
        "text": text,
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
        "showarrow": False,
        "font": {"size": 12, "color": "#8a8f94"},
    }


def empty_figure(*, height: int, uirevision: str, text: str = "waiting for bars…") -> dict:
    """Placeholder until the first draw: no axes, one centred line of text."""
    layout = base_layout(height=height, uirevision=uirevision)
    layout["xaxis"].update(visible=False)
    layout["yaxis"].update(visible=False)
    layout["annotations"] = [_centred_note(text)]
    return {"data": [], "layout": layout}


def _has_points(trace) -> bool:
    get = trace.get if isinstance(trace, dict) else lambda k: getattr(trace, k, None)
    for attr in ("x", "y", "z", "close"):
        v = get(attr)
        if v is not None and len(v) > 0:
            return True
    return False


def mark_empty(fig, text: str = "no data for this selection"):
    """A figure with no point to draw gets hidden axes and one centred line of text.

    Why: plotly.js draws an empty ``date`` axis as 2000-01-01 .. 2001-01-01, a range a
    trader may read as data. Works on figure dicts and ``go.Figure`` alike; a figure
    with any point (or an explicit x range) is returned unchanged."""
    is_dict = isinstance(fig, dict)
    data = fig["data"] if is_dict else fig.data
    layout = fig["layout"] if is_dict else fig.layout
    xaxis = layout.get("xaxis", {}) if is_dict else layout.xaxis
    has_range = (xaxis.get("range") if is_dict else xaxis.range) is not None
    if any(_has_points(t) for t in data) or has_range:
        return fig
    note = _centred_note(text)
    if is_dict:
        for key in list(layout):
            if key.startswith(("xaxis", "yaxis")):
                layout[key] = {**layout[key], "visible": False}
        layout.setdefault("xaxis", {})["visible"] = False
        layout.setdefault("yaxis", {})["visible"] = False
        layout["annotations"] = [*layout.get("annotations", []), note]
        layout["shapes"] = []
    else:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(shapes=[], annotations=[*(layout.annotations or ()), note])
    return fig


def hline(
    fig: dict,
    y: float,
    *,
    color: str,
    dash: str = "dot",
    label: str | None = None,
    label_pos: str = "right",
) -> None:
    """A horizontal reference line across the plot (and an optional label)."""
    layout = fig["layout"]
    layout.setdefault("shapes", []).append(
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "yref": "y",
            "y0": y,
            "y1": y,
            "line": {"color": color, "width": 1, "dash": dash},
            "layer": "below",
        }
    )
    if label:
        right = label_pos == "right"
        layout.setdefault("annotations", []).append(
            {
                "xref": "paper",
                "x": 1.0 if right else 0.0,
                "yref": "y",
                "y": y,
                "text": label,
                "showarrow": False,
                "xanchor": "left" if right else "left",
                "yanchor": "middle" if right else "bottom",
                "font": {"size": 9, "color": color},
            }
        )


def apply_x_range(fig: dict, x_range: tuple[float, float] | None) -> dict:
    """Set the panel's shared visible range (None: autorange) on the x axis; a zoom
    into a span without bars keeps its (dated) axes so the trader can zoom out."""
    if x_range is not None:
        fig["layout"]["xaxis"].update(
            range=[float(x_range[0]), float(x_range[1])], autorange=False, visible=True
        )
        fig["layout"].setdefault("yaxis", {})["visible"] = True
    return fig


def _line(ts, y, *, name: str, color: str, fmt: str, width: float = 1.3, **extra) -> dict:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": _x(ts),
        "y": _y(y),
        "name": name,
        "line": {"color": color, "width": width},
        "hovertemplate": f"{name} %{{y:{fmt}}}<extra></extra>",
        **extra,
    }


def line_figure(
    ts: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    uirevision: str,
    color: str = COLOR_A,
    height: int = 190,
    fmt: str = ".4f",
    hlines: tuple[float, ...] = (),
) -> dict:
    """One line (rolling correlation, hedge ratio) with optional reference lines."""
    fig = {
        "data": [_line(ts, y, name=name, color=color, fmt=fmt)],
        "layout": base_layout(height=height, uirevision=uirevision),
    }
    for h in hlines:
        hline(fig, h, color="#666")
    return mark_empty(fig)


def zscore_figure(
    ts: np.ndarray,
    z: np.ndarray,
    *,
    entry: float,
    uirevision: str,
    live: tuple[float, float] | None = None,
    alert_lines: list[tuple[str, float]] | None = None,
    height: int = 230,
) -> dict:
    """z-score line, ±entry and zero lines, alert thresholds, and the live tick z marker
    (trace ``Z_TRACES["live"]``, one point, moved every 500 ms by extendData)."""
    lx, ly = ([live[0]], [live[1]]) if live is not None else ([], [])
    fig = {
        "data": [
            _line(ts, z, name="z (bar close)", color=COLOR_A, fmt=".4f"),
            {
                "type": "scatter",
                "mode": "markers",
                "x": lx,
                "y": ly,
                "name": "live z (tick)",
                "marker": {
                    "color": "#f1c40f",
                    "size": 9,
                    "symbol": "diamond",
                    "line": {"color": "#000", "width": 1},
                },
                "hovertemplate": "live z %{y:.4f}<extra></extra>",
            },
        ],
        "layout": base_layout(height=height, uirevision=uirevision),
    }
    hline(fig, entry, color=DOWN, dash="dash", label=f"{entry:+g}")
    hline(fig, -entry, color=UP, dash="dash", label=f"{-entry:+g}")
    hline(fig, 0.0, color="#777", dash="solid")
    for metric, threshold in alert_lines or ():
        hline(
            fig,
            threshold,
            color=ALERT_COLOR,
            label=f"alert {metric} {threshold:g}",
            label_pos="left",
        )
    return mark_empty(fig)


def spread_figure(
    ts: np.ndarray,
    spread: np.ndarray,
    mean: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    *,
    k: float,
    uirevision: str,
    height: int = 230,
) -> dict:
    """Spread with its rolling mean and ±k σ bands (same window as the z-score)."""
    band = {"color": BAND_COLOR, "width": 1, "dash": "dash"}
    data = [
        _line(ts, spread, name="spread", color=SPREAD_COLOR, fmt=".6g", width=1.2),
        _line(ts, mean, name="rolling mean", color="#95a5a6", fmt=".6g", width=1),
        {**_line(ts, upper, name=f"+{k:g}σ", color="", fmt=".6g"), "line": band},
        {**_line(ts, lower, name=f"−{k:g}σ", color="", fmt=".6g"), "line": band},
    ]
    return mark_empty({"data": data, "layout": base_layout(height=height, uirevision=uirevision)})


def overlay_figure(
    ts: np.ndarray,
    norm_a: np.ndarray,
    norm_b: np.ndarray,
    *,
    a: str,
    b: str,
    uirevision: str,
    height: int = 300,
) -> dict:
    """Both legs rebased to 100 at the first bar of the series (a normalized overlay)."""
    return mark_empty(
        {
            "data": [
                _line(ts, norm_a, name=f"{a} (=100)", color=COLOR_A, fmt=".4f"),
                _line(ts, norm_b, name=f"{b} (=100)", color=COLOR_B, fmt=".4f"),
            ],
            "layout": base_layout(height=height, uirevision=uirevision),
        }
    )


def candles_figure(
    legs: list[tuple[str, dict[str, np.ndarray]]],
    *,
    uirevision: str,
    height: int = 420,
) -> dict:
    """Candles of each leg (one panel each) over their quote volume (USDT), one shared
    time axis (so zoom and pan move all panels together)."""
    n = len(legs)
    vol_top = 0.2
    span = (1.0 - vol_top - 0.03 * n) / n
    layout = base_layout(height=height, uirevision=uirevision, barmode="group", bargap=0.1)
    layout["xaxis"].update(rangeslider={"visible": False}, anchor=f"y{n + 1}")
    data = []
    for row, (sym, c) in enumerate(legs):
        yname = "y" if row == 0 else f"y{row + 1}"
        top = 1.0 - row * (span + 0.03)
        layout["yaxis" if row == 0 else f"yaxis{row + 1}"] = _axis(
            domain=[top - span, top], title={"text": sym, "font": {"size": 10}}
        )
        x = _x(c["ts"])
        data.append(
            {
                "type": "candlestick",
                "x": x,
                "open": _y(c["open"], 9),
                "high": _y(c["high"], 9),
                "low": _y(c["low"], 9),
                "close": _y(c["close"], 9),
                "name": sym,
                "yaxis": yname,
                "increasing": {"line": {"color": UP, "width": 1}, "fillcolor": UP},
                "decreasing": {"line": {"color": DOWN, "width": 1}, "fillcolor": DOWN},
                "showlegend": False,
            }
        )
        data.append(
            {
                "type": "bar",
                "x": x,
                "y": _y(c["volume"], 6),
                "name": f"{sym} vol (USDT)",
                "yaxis": f"y{n + 1}",
                "opacity": 0.8,
                "marker": {"color": COLOR_A if row == 0 else COLOR_B},
                "hovertemplate": f"{sym} vol %{{y:,.0f}} USDT<extra></extra>",
            }
        )
    layout[f"yaxis{n + 1}"] = _axis(domain=[0.0, vol_top])
    return mark_empty({"data": data, "layout": layout})


def heatmap_text(m: np.ndarray) -> list[list[str]]:
    return [["–" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in m]


def correlation_heatmap(
    symbols: list[str], matrix: np.ndarray, *, title: str | None, uirevision: str = "heatmap"
) -> dict:
    """Correlation matrix of returns, annotated with the values, fixed −1..1 scale."""
    m = np.asarray(matrix, dtype=float)
    z = [[None if not np.isfinite(v) else float(v) for v in row] for row in m]
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z,
                "x": list(symbols),
                "y": list(symbols),
                "zmin": -1,
                "zmax": 1,
                "colorscale": HEAT_SCALE,
                "text": heatmap_text(m),
                "texttemplate": "%{text}",
                "textfont": {"size": 11},
                "hovertemplate": "%{y} vs %{x}: ρ = %{z:.4f}<extra></extra>",
                "colorbar": {"thickness": 10, "len": 0.9},
            }
        ],
        "layout": {
            "height": 300,
            "margin": {"l": 70, "r": 10, "t": 30 if title else 10, "b": 50},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "font": {"color": TEXT, "family": FONT, "size": 11},
            **({"title": {"text": title, "x": 0.01, "font": {"size": 12}}} if title else {}),
            "uirevision": uirevision,
            "yaxis": {"autorange": "reversed", "automargin": True},
        },
    }


#: Session breaks (replay loop seam, outage): dashed vertical lines, and gaps in lines.
BREAK_COLOR = "#f1c40f"
BREAK_SHAPE_NAME = "session break"


def mark_breaks(fig: dict, breaks_ms) -> dict:
    """Show session breaks on a time chart (pure, in place; returns ``fig``).

    ``breaks_ms``: the first bucket (epoch ms) of each new session inside the data
    (``PairSnapshot.breaks``). Each becomes a dashed vertical line (a layout shape named
    :data:`BREAK_SHAPE_NAME`), and every line trace gets a ``None`` point inserted at
    the break, so plotly does not draw a segment from the last point of one session to
    the first of the next (the jump at a replay loop seam is not a price move).
    Breaks outside a trace's x span leave it unchanged.
    """
    import bisect

    br = sorted({int(b) for b in breaks_ms})
    if not br:
        return fig
    for tr in fig.get("data", []):
        if tr.get("type", "scatter") != "scatter":
            continue
        x, y = tr.get("x"), tr.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
            continue
        for b in reversed(br):  # from the last: earlier insertion points stay valid
            i = bisect.bisect_left(x, b)
            if 0 < i < len(x):
                x.insert(i, b)
                y.insert(i, None)
    shapes = fig.setdefault("layout", {}).setdefault("shapes", [])
    for b in br:
        shapes.append(
            {
                "type": "line",
                "name": BREAK_SHAPE_NAME,
                "xref": "x",
                "x0": b,
                "x1": b,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": BREAK_COLOR, "width": 1, "dash": "dash"},
                "layer": "above",
            }
        )
    return fig
