"""The delivery log on the alerts page: one row per (event, channel) of the outbox.

The rows come from :meth:`dashapp.facade.AlertsData.deliveries` (the same rows as
``GET /api/alerts/deliveries``): status (pending | retrying | delivered | failed),
attempts, the last error and HTTP status, and the latency from the event's storage
to its delivery. Read every :data:`REFRESH_MS` (5 s: deliveries are retried on a
seconds scale, so a faster refresh would show nothing new), newest first, at most
:data:`ROWS` rows, optionally one status only. The table is sent only when a row changed
(:func:`signature` of the rows read, kept in a store): an idle log costs a read of the
outbox and a few bytes, not a redraw.
"""

from __future__ import annotations

import hashlib

import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from dashapp import ids
from dashapp.api.alerts import iso
from dashapp.services import get_services

REFRESH_MS = 5_000
ROWS = 50
STATUSES = ("pending", "retrying", "delivered", "failed")
#: Bootstrap colour of each status badge.
BADGE = {"pending": "secondary", "retrying": "warning", "delivered": "success",
         "failed": "danger"}
MAX_ERROR_CHARS = 160


def signature(rows: list[dict], status: str | None) -> str:
    """A short digest of what the table shows (the filter and each row's changing
    fields): equal digests, nothing to redraw."""
    keys = ("id", "status", "attempts", "last_error", "last_status", "channel_name",
            "delivered_ms")
    text = repr((status, [tuple(d.get(k) for k in keys) for d in rows]))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def status_filter(value) -> str | None:
    """The status the select asks for (None: all; anything else forged: all)."""
    return value if value in STATUSES else None


def latency_text(ms) -> str:
    """Event stored -> delivered, ``"850 ms"`` or ``"12.4 s"`` (``–`` while undelivered)."""
    if ms is None:
        return "–"
    ms = float(ms)
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def short_error(text) -> str:
    if not text:
        return ""
    text = str(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def deliveries_table(rows: list[dict], status: str | None = None) -> dbc.Table | html.Div:
    if not rows:
        text = (f"No {status} deliveries." if status
                else "No deliveries yet: attach a channel to a rule.")
        return html.Div(text, className="text-muted alerts-deliveries-empty")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Event", "Rule", "Channel", "Status", "Attempts", "Last error", "Latency",
        "Time (UTC)")]))
    body = []
    for d in rows:
        status = d.get("status")
        error = short_error(d.get("last_error"))
        if d.get("last_status") is not None and status != "delivered":
            error = f"HTTP {d['last_status']}" + (f": {error}" if error else "")
        when = d.get("delivered_ms") or d.get("created_ms")
        body.append(html.Tr([
            html.Td(d.get("event_id")),
            html.Td(f"#{d.get('rule_id')}"),
            html.Td(d.get("channel_name") or f"#{d.get('channel_id')} (deleted)"),
            html.Td(dbc.Badge(status, color=BADGE.get(status, "light"),
                              className=f"delivery-status delivery-{status}")),
            html.Td(d.get("attempts")),
            html.Td(error, className="small text-break", title=str(d.get("last_error") or "")),
            html.Td(latency_text(d.get("latency_ms")), className="font-monospace small"),
            html.Td(iso(when) or "–", className="font-monospace small"),
        ], className="delivery-row"))
    return dbc.Table([head, html.Tbody(body)], size="sm", striped=True,
                     className="alerts-deliveries align-middle")


def section() -> html.Div:
    return html.Div([
        dbc.Row(
            [
                dbc.Col(html.H4("Delivery log", className="mb-0"), width="auto"),
                dbc.Col(dbc.Select(
                    id=ids.Alerts.DELIVERY_STATUS, value="all", size="sm",
                    options=[{"label": "all statuses", "value": "all"},
                             *({"label": s, "value": s} for s in STATUSES)]),
                    width="auto"),
            ],
            className="align-items-center g-3 mt-4 mb-2",
        ),
        dcc.Interval(id=ids.Alerts.DELIVERY_REFRESH, interval=REFRESH_MS),
        dcc.Store(id=ids.Alerts.DELIVERY_SIG),
        html.Div(id=ids.Alerts.DELIVERIES),
    ])


@callback(
    Output(ids.Alerts.DELIVERIES, "children"),
    Output(ids.Alerts.DELIVERY_SIG, "data"),
    Input(ids.Alerts.DELIVERY_REFRESH, "n_intervals"),
    Input(ids.Alerts.DELIVERY_STATUS, "value"),
    State(ids.Alerts.DELIVERY_SIG, "data"),
)
def refresh_deliveries(_n, status, shown):
    """The newest :data:`ROWS` deliveries (of one status if chosen), when changed."""
    status = status_filter(status)
    rows = get_services().alerts.deliveries(status=status, limit=ROWS)
    sig = signature(rows, status)
    if sig == shown:
        return no_update, no_update
    return deliveries_table(rows, status), sig
