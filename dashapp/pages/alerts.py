"""Alerts `/alerts`: the rules (enable/disable, edit, delete), the event log, CSV export.

Deleting asks first ("Delete rule #N?") and can be undone for a while ("Undo" puts the
rule back under its id with its state: :meth:`ingest.alert_service.AlertService.restore`).
Disabling only pauses a rule: its last value and last firing stay on show.

Rules are evaluated by the engine-side service (``Runtime.alerts``), never here: the
page only lists, edits and reads. Adding and editing go through the shell's rule modal
(:mod:`dashapp.components.alert_modal`), opened by writing ``ids.Shell.ALERT_PREFILL``.

Alerts leave the app through **channels** (webhook, Slack, Discord, Telegram, e-mail:
:mod:`dashapp.components.channel_modal`), which a rule names in its modal; the
**delivery log** (:mod:`dashapp.components.delivery_log`) shows each (event, channel)
of the outbox the backend worker sends. The **browser notifications** switch asks the
Notification permission; showing is clientside (``assets/notifications.js``).
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import (
    ALL,
    ClientsideFunction,
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

from dashapp import ids, stores
from dashapp.api.alerts import events_frame, iso
from dashapp.api.downloads import file_stem, send_frame
from dashapp.components import channel_modal, delivery_log
from dashapp.services import get_services

dash.register_page(__name__, path="/alerts", name="Alerts", order=40)

EVENT_ROWS = 200


def layout(**_query) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id=ids.Alerts.REFRESH, interval=2000),
            dcc.Download(id=ids.Alerts.DOWNLOAD),
            dcc.Store(id=ids.Alerts.DELETE_PENDING),
            dcc.Store(id=ids.Alerts.UNDO),
            dbc.Modal(
                [
                    dbc.ModalHeader(dbc.ModalTitle("Delete alert rule?")),
                    dbc.ModalBody(id=ids.Alerts.DELETE_TEXT),
                    dbc.ModalFooter([
                        dbc.Button("Cancel", id=ids.Alerts.DELETE_CANCEL, color="secondary",
                                   size="sm"),
                        dbc.Button("Delete rule", id=ids.Alerts.DELETE_CONFIRM,
                                   color="danger", size="sm"),
                    ]),
                ],
                id=ids.Alerts.DELETE_MODAL, is_open=False, centered=True,
            ),
            dbc.Alert(
                [
                    html.Span(id=ids.Alerts.UNDO_TEXT, className="me-3"),
                    dbc.Button("Undo", id=ids.Alerts.UNDO_BUTTON, color="light", size="sm"),
                ],
                id=ids.Alerts.UNDO_BAR, is_open=False, dismissable=True, duration=30_000,
                color="secondary", className="d-flex align-items-center py-2",
            ),
            dbc.Row(
                [
                    dbc.Col(html.H4("Alert rules", className="mb-0"), width="auto"),
                    dbc.Col(dbc.Button("New rule", id=ids.Alerts.NEW, color="primary",
                                       size="sm"), width="auto"),
                    dbc.Col(dbc.Switch(id=ids.Alerts.NOTIFY_SWITCH, value=False,
                                       label="Browser notifications", persistence=True),
                            width="auto", className="ms-auto"),
                    dbc.Col(html.Span(id=ids.Alerts.NOTIFY_STATE,
                                      className="text-muted small"), width="auto"),
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
            channel_modal.section(),
            delivery_log.section(),
        ]
    )


def channels_text(channel_ids, names: dict[int, str]) -> str:
    """A rule's channels by name ("–": none; a deleted one by its id)."""
    if not channel_ids:
        return "–"
    return ", ".join(names.get(c, f"#{c}") for c in channel_ids)


def rules_table(rules: list[dict], channel_names: dict[int, str] | None = None
                ) -> dbc.Table | html.Div:
    names = channel_names or {}
    if not rules:
        return html.Div("No rules yet: add one with “New rule”, or from a pair page.",
                        className="text-muted")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "#", "Rule", "Cooldown", "State", "Last value", "Last fired (data time)", "On",
        "Channels", "")]))
    rows = []
    for r in rules:
        st = r["status"]
        state = "error" if st["error"] else ("armed" if st["armed"] else "fired, re-arming")
        if not r["enabled"]:
            state = "paused"  # last value and last firing stay on show
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
            html.Td(channels_text(r.get("channels"), names), className="small"),
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
    Input(ids.Alerts.CHANNELS_CHANGED, "data"),
)
def refresh_tables(_n, _changed, _channels_changed):
    """Rule states and the log change as the service evaluates: re-read both."""
    svc = get_services().alerts
    names = channel_modal.channel_names(svc.channels())
    return rules_table(svc.rules_json(), names), events_table(svc.events(limit=EVENT_ROWS))


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
    State(ids.Alerts.CHANGED, "data"),
    prevent_initial_call=True,
)
def change_rule(_enabled, changed):
    """Enable/disable one rule (disabling keeps its last value and firing; enabling
    restarts it at the data clock now)."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered:
        return no_update
    svc, value, rid = get_services().alerts, ctx.triggered[0]["value"], int(trig["index"])
    try:
        if bool(value) == svc.rule(rid).enabled:
            return no_update
        svc.update(rid, {"enabled": bool(value)}, partial=True)
    except KeyError:  # deleted in another tab meanwhile
        pass
    return stores.counter(changed) + 1


@callback(
    Output(ids.Alerts.DELETE_PENDING, "data"),
    Output(ids.Alerts.DELETE_MODAL, "is_open"),
    Output(ids.Alerts.DELETE_TEXT, "children"),
    Input({"type": "alerts-delete", "index": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def ask_delete(_clicks):
    """Delete asks first: which rule, and that its events stay in the log."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update, no_update, no_update  # a table redraw, not a click
    rid = int(trig["index"])
    try:
        text = get_services().alerts.rule_json(rid)["description"]
    except KeyError:
        return None, False, no_update
    body = [html.P([f"Delete rule #{rid}: ", html.Code(text), "?"]),
            html.P("Its events stay in the log; you can undo this for 30 s.",
                   className="text-muted small mb-0")]
    return rid, True, body


@callback(
    Output(ids.Alerts.DELETE_MODAL, "is_open", allow_duplicate=True),
    Output(ids.Alerts.UNDO, "data"),
    Output(ids.Alerts.UNDO_BAR, "is_open"),
    Output(ids.Alerts.UNDO_TEXT, "children"),
    Output(ids.Alerts.CHANGED, "data", allow_duplicate=True),
    Input(ids.Alerts.DELETE_CONFIRM, "n_clicks"),
    Input(ids.Alerts.DELETE_CANCEL, "n_clicks"),
    State(ids.Alerts.DELETE_PENDING, "data"),
    State(ids.Alerts.CHANGED, "data"),
    prevent_initial_call=True,
)
def confirm_delete(_ok, _cancel, rid, changed):
    """Confirmed: delete, keep what undo needs, offer "Undo"."""
    rid = stores.int_id(rid)  # a browser store: forged values mean nothing to delete
    if ctx.triggered_id != ids.Alerts.DELETE_CONFIRM or rid is None:
        return False, no_update, no_update, no_update, no_update
    try:
        deleted = get_services().alerts.delete(int(rid))
    except KeyError:  # deleted in another tab meanwhile
        return False, no_update, no_update, no_update, stores.counter(changed) + 1
    text = f"Rule #{rid} deleted ({deleted['description']})."
    return False, deleted, True, text, stores.counter(changed) + 1


@callback(
    Output(ids.Alerts.CHANGED, "data", allow_duplicate=True),
    Output(ids.Alerts.UNDO_BAR, "is_open", allow_duplicate=True),
    Output(ids.Alerts.UNDO, "data", allow_duplicate=True),
    Input(ids.Alerts.UNDO_BUTTON, "n_clicks"),
    State(ids.Alerts.UNDO, "data"),
    State(ids.Alerts.CHANGED, "data"),
    prevent_initial_call=True,
)
def undo_delete(clicks, deleted, changed):
    """Undo: the rule comes back under its id, with its state and its events."""
    if not clicks or not deleted or not isinstance(deleted, dict):
        return no_update, False, None
    from analytics.alerts import RuleError

    try:
        get_services().alerts.restore(deleted)
    except RuleError:  # restored already (another tab)
        pass
    return stores.counter(changed) + 1, False, None


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
    # assets/notifications.js: asks the permission when switched on; the opt-in is kept
    # in localStorage (read by every tab's shell)
    ClientsideFunction(namespace="alerts", function_name="toggle"),
    Output(ids.Alerts.NOTIFY_ENABLED, "data"),
    Output(ids.Alerts.NOTIFY_STATE, "children"),
    Input(ids.Alerts.NOTIFY_SWITCH, "value"),
)
