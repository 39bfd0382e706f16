"""KPI cards: a small muted label over a large monospace value."""

from __future__ import annotations

import math

import dash_bootstrap_components as dbc
from dash import html


def kpi_card(
    label: str,
    value: str,
    *,
    sub: str | None = None,
    value_id=None,
    tone: str | None = None,
    title: str | None = None,
) -> dbc.Card:
    """One KPI; ``tone`` in {"up", "down", "warn", None} colours the value."""
    kw = {"id": value_id} if value_id is not None else {}
    body = [
        html.Div(label, className="kpi-label"),
        html.Div(value, className=f"kpi-value {('kpi-' + tone) if tone else ''}", **kw),
    ]
    if sub:
        body.append(html.Div(sub, className="kpi-sub"))
    card = dbc.Card(dbc.CardBody(body, className="p-2"), className="kpi-card h-100")
    return html.Div(card, title=title, className="h-100") if title else card


def fmt(v: float | None, spec: str = ".4f") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return format(v, spec)


