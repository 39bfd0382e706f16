"""Alerts `/alerts`: the rules (enable/disable, edit, delete), the event log, CSV export.

Rules are evaluated by the engine-side service (``Runtime.alerts``), never here: the
page only lists, edits and reads. Adding and editing go through the shell's rule modal
(:mod:`dashapp.components.alert_modal`), opened by writing ``ids.Shell.ALERT_PREFILL``.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update

from dashapp import ids
from dashapp.alerts_api import events_frame, iso
from dashapp.downloads import file_stem, send_frame
from dashapp.services import get_services

dash.register_page(__name__, path="/alerts", name="Alerts", order=40)

EVENT_ROWS = 200


def layout(**_query) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id=ids.Alerts.REFRESH, interval=2000),
            dcc.Download(id=ids.Alerts.DOWNLOAD),
            dbc.Row(
                [
                    dbc.Col(html.H4("Alert rules", className="mb-0"), width="auto"),
                    dbc.Col(dbc.Button("New rule", id=ids.Alerts.NEW, color="primary",
                                       size="sm"), width="auto"),
                    dbc.Col(dbc.Switch(id=ids.Alerts.NOTIFY_SWITCH, value=False,
                                       label="Browser notifications", persistence=True),
                            width="auto", className="ms-auto"),
                ],
                className="align-items-center g-3 mb-2",
            ),
            html.Div(
                "Evaluated server-side on every tick batch (≤ 100 ms) and every bar "
                "close, whether or not a page is open; events persist across restarts.",
                id=ids.Alerts.PAGE_NOTE, className="text-muted small mb-2",
            ),
            html.Div(id=ids.Alerts.RULES),
            dbc.Row(
                [
                    dbc.Col(html.H4("Event log", className="mb-0"), width="auto"),
                    dbc.Col(dbc.Button("Download CSV", id=ids.Alerts.DOWNLOAD_BUTTON,
                                       color="secondary", size="sm"), width="auto"),
                ],
                className="align-items-center g-3 mt-4 mb-2",
            ),
            html.Div(id=ids.Alerts.EVENTS),
        ]
    )


def rules_table(rules: list[dict]) -> dbc.Table | html.Div:
    if not rules:
        return html.Div("No rules yet: add one with “New rule”, or from a pair page.",
                        className="text-muted")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "#", "Rule", "Cooldown", "State", "Last value", "Last fired (data time)", "On", "")]))
    rows = []
    for r in rules:
        st = r["status"]
        state = "error" if st["error"] else ("armed" if st["armed"] else "fired, re-arming")
        rows.append(html.Tr([
            html.Td(r["id"]),
            html.Td(r["description"], className="font-monospace small"),
            html.Td(f"{r['cooldown_s']:g} s"),
            html.Td(html.Span(state, title=st["error"] or "",
                              className="text-danger" if st["error"] else "")),
            html.Td("–" if st["last_value"] is None else f"{st['last_value']:.8g}",
                    className="font-monospace"),
            html.Td(iso(st["last_fired_ms"]) or "–", className="font-monospace small"),
            html.Td(dbc.Switch(id=ids.Alerts.enable(r["id"]), value=r["enabled"])),
            html.Td([
                dbc.Button("Edit", id=ids.Alerts.edit(r["id"]), size="sm",
                           color="secondary", className="me-1"),
                dbc.Button("Delete", id=ids.Alerts.delete(r["id"]), size="sm",
                           color="danger", outline=True),
            ]),
        ]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True,
                     className="align-middle")


def events_table(events) -> dbc.Table | html.Div:
    if not events:
        return html.Div("No alert has fired yet.", className="text-muted")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Event", "Rule", "Data time (UTC)", "Stored (UTC)", "Value", "Threshold")]))
    rows = [
        html.Tr([
            html.Td(e.id), html.Td(f"#{e.rule_id} {e.description}", className="small"),
            html.Td(iso(e.data_ts), className="font-monospace small"),
            html.Td(iso(e.fired_ms), className="font-monospace small"),
            html.Td(f"{e.value:.10g}", className="font-monospace"),
            html.Td(f"{e.threshold:.10g}", className="font-monospace"),
        ])
        for e in reversed(events)
    ]
    return dbc.Table([head, html.Tbody(rows)], size="sm", striped=True,
                     className="alerts-events")


@callback(
    Output(ids.Alerts.RULES, "children"),
    Output(ids.Alerts.EVENTS, "children"),
    Input(ids.Alerts.REFRESH, "n_intervals"),
    Input(ids.Alerts.CHANGED, "data"),
)
def refresh_tables(_n, _changed):
    """Rule states and the log change as the service evaluates: re-read both."""
    svc = get_services().alerts
    return rules_table(svc.rules_json()), events_table(svc.events(limit=EVENT_ROWS))


@callback(
    Output(ids.Shell.ALERT_PREFILL, "data", allow_duplicate=True),
    Input(ids.Alerts.NEW, "n_clicks"),
    Input({"type": "alerts-edit", "index": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def open_editor(_new, _edits):
    """New rule: an empty prefill; Edit: the stored rule (with its id)."""
    if not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update
    if ctx.triggered_id == ids.Alerts.NEW:
        return {}
    return get_services().alerts.rule_json(int(ctx.triggered_id["index"]))


@callback(
    Output(ids.Alerts.CHANGED, "data", allow_duplicate=True),
    Input({"type": "alerts-enable", "index": ALL}, "value"),
    Input({"type": "alerts-delete", "index": ALL}, "n_clicks"),
    State(ids.Alerts.CHANGED, "data"),
    prevent_initial_call=True,
)
def change_rule(_enabled, _deletes, changed):
    """Enable/disable or delete one rule (the service restarts its state)."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered:
        return no_update
    svc, value, rid = get_services().alerts, ctx.triggered[0]["value"], int(trig["index"])
    try:
        if trig["type"] == "alerts-delete" and value:
            svc.delete(rid)
        elif trig["type"] == "alerts-enable" and bool(value) != svc.rule(rid).enabled:
            svc.update(rid, {"enabled": bool(value)}, partial=True)
        else:
            return no_update
    except KeyError:  # deleted in another tab meanwhile
        pass
    return (changed or 0) + 1


@callback(
    Output(ids.Alerts.DOWNLOAD, "data"),
    Input(ids.Alerts.DOWNLOAD_BUTTON, "n_clicks"),
    prevent_initial_call=True,
)
def download_events(_n):
    """The event log as CSV (ISO-8601 UTC times), through the downloads module."""
    events = get_services().alerts.events(limit=10_000)
    stem = file_stem("alerts", [], None, [e.data_ts for e in events])
    return send_frame(events_frame(events), stem, "csv")


clientside_callback(
    """
    function(on) {
        if (on && ("Notification" in window) && Notification.permission === "default") {
            try { Notification.requestPermission(); } catch (e) {}
        }
        return !!on;
    }
    """,
    Output(ids.Alerts.NOTIFY_ENABLED, "data"),
    Input(ids.Alerts.NOTIFY_SWITCH, "value"),
)
