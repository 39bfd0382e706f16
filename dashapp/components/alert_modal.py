"""The alert-rule modal, the alert toasts and browser notifications (in the shell).

Every page carries these (see :func:`shell_parts`, placed by ``dashapp.layout``):

* The **rule modal** (``dbc.Modal``) opens when ``ids.Shell.ALERT_PREFILL`` receives
  a partial rule dict in the JSON format of ``POST /api/alerts`` (the pair page's
  "alert on this" button, the alerts page's "New rule" and "Edit" buttons); a dict
  with ``id`` edits that rule. Saving validates through
  :func:`analytics.alerts.parse_rule` (via ``Runtime.alerts``); every bad field gets
  ``invalid=True`` and its message in a ``dbc.FormFeedback``; nothing is lost.
* A **toast** on every page for each newly stored event: a 1 s interval reads the
  events after the id this tab has seen (``ids.Alerts.CURSOR``). A new tab starts at
  the current last event, so old events do not pop up again.
* An optional **browser notification** (Notification API, clientside in
  ``assets/notifications.js``), opt-in on the alerts page and remembered in
  localStorage; each event id is claimed under a Web Lock in localStorage before it is
  shown, so with several tabs open an event is shown once.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import (
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

from analytics.alerts import METRIC_LABELS, METRICS, OP_LABELS, OPS, PAIR_METRICS, RuleError
from analytics.pair import PRICE_MODES, REGRESSIONS, SOURCES
from analytics.timeframes import SUPPORTED_UI
from dashapp import ids, stores
from dashapp.services import get_services

#: Form inputs, in the order of the callbacks' outputs.
FORM_FIELDS = (
    "metric", "symbol", "a", "b", "timeframe", "window", "regression", "prices", "op",
    "threshold", "hysteresis", "cooldown_s", "source",
)
#: The rule's delivery channels: a checklist outside FORM_FIELDS (it has no ``invalid``
#: prop; its message goes to its own feedback line).
CHANNELS = "channels"
DEFAULTS = {
    "metric": "zscore", "timeframe": "1s", "window": 60, "regression": "ols",
    "prices": "raw", "op": "crosses_above", "threshold": None, "hysteresis": 0,
    "cooldown_s": 0, "enabled": True, "source": "trade",
}
LABELS = {
    "metric": "Metric", "symbol": "Symbol", "a": "Leg A", "b": "Leg B",
    "timeframe": "Timeframe", "window": "Window (bars)", "regression": "Regression",
    "prices": "Prices", "op": "Condition", "threshold": "Threshold",
    "hysteresis": "Re-arm band", "cooldown_s": "Cooldown (s)", "source": "Price",
}
MAX_TOASTS = 3
SOURCE_LABELS = {"trade": "last trade", "mid": "mid (bid+ask)/2"}


# ------------------------------------------------------------------ pure helpers
def prefill_values(prefill: dict | None, symbols: list[str]) -> dict:
    """Form values for a (partial) rule: the rule's values over the defaults."""
    values = {**DEFAULTS, "symbol": symbols[0] if symbols else None,
              "a": symbols[0] if symbols else None,
              "b": symbols[1] if len(symbols) > 1 else None}
    for key, value in (prefill or {}).items():
        if key in values or key in FORM_FIELDS:
            values[key] = value
    return values


def prefill_channels(prefill: dict | None, known: list[int]) -> list[int]:
    """The channel ids a (partial) rule names that still exist (a deleted channel
    drops out of the select rather than failing the save)."""
    chosen = (prefill or {}).get(CHANNELS) or []
    if not isinstance(chosen, list):
        return []
    return [c for c in chosen if type(c) is int and c in known]


def form_rule(values: dict, enabled: bool, channels=None) -> dict:
    """The JSON rule the form describes (only the fields its metric uses), with the
    channels it notifies (``[]``: none; always sent, so an edit can remove them)."""
    metric = values.get("metric")
    rule = {"metric": metric}
    if metric in PAIR_METRICS:
        keys = ("a", "b", "timeframe", "window", "regression", "prices", "source")
    elif metric == "change_pct":
        keys = ("symbol", "timeframe", "window")
    elif metric == "volume":
        keys = ("symbol", "timeframe")
    else:
        keys = ("symbol",)
    for key in (*keys, "op", "threshold", "hysteresis", "cooldown_s"):
        rule[key] = values.get(key)
    rule["enabled"] = bool(enabled)
    rule[CHANNELS] = [c for c in (channels or []) if type(c) is int]
    return rule


def field_feedback(fields: dict[str, str]) -> tuple[list[bool], list[str], str]:
    """Invalid flags and messages per form field, and the messages of other fields."""
    invalid = [name in fields for name in FORM_FIELDS]
    messages = [fields.get(name, "") for name in FORM_FIELDS]
    other = "; ".join(f"{k}: {v}" for k, v in fields.items()
                      if k not in FORM_FIELDS and k != CHANNELS)
    return invalid, messages, other


def subject_styles(metric: str | None) -> tuple[dict, dict, dict, dict]:
    """Show the pair or the symbol inputs (and window/pair options) for a metric."""
    hide, show = {"display": "none"}, {}
    pair = metric in PAIR_METRICS
    window = pair or metric == "change_pct"
    tf = pair or metric in ("change_pct", "volume")
    return (show if pair else hide, hide if pair else show, show if window else hide,
            show if tf else hide)


# ------------------------------------------------------------------ layout
def _input(name: str, options=None) -> html.Div:
    if options is None:
        control = dbc.Input(id=ids.Alerts.field(name), type="number", step="any",
                            debounce=False)
    else:
        control = dbc.Select(id=ids.Alerts.field(name), options=options)
    return html.Div(
        [dbc.Label(LABELS[name], html_for=ids.Alerts.field(name), className="small mb-1"),
         control, dbc.FormFeedback(id=ids.Alerts.feedback(name), type="invalid")],
        className="mb-2",
    )


def _opts(values, labels=None):
    return [{"label": (labels or {}).get(v, v), "value": v} for v in values]


def modal(symbols: list[str]) -> dbc.Modal:
    from dashapp.components.dataset_select import labelled

    sym = labelled(symbols)  # "BTCUSDT · perp" where a symbol is on two markets
    body = [
        dbc.Row([dbc.Col(_input("metric", _opts(METRICS, METRIC_LABELS)), md=6),
                 dbc.Col(_input("op", _opts(OPS, OP_LABELS)), md=6)]),
        html.Div(_input("symbol", sym), id=ids.Alerts.SYMBOL_GROUP),
        html.Div(
            [dbc.Row([dbc.Col(_input("a", sym), md=6), dbc.Col(_input("b", sym), md=6)]),
             dbc.Row([dbc.Col(_input("regression", _opts(REGRESSIONS)), md=4),
                      dbc.Col(_input("prices", _opts(PRICE_MODES)), md=4),
                      dbc.Col(_input("source", _opts(SOURCES, SOURCE_LABELS)), md=4)])],
            id=ids.Alerts.PAIR_GROUP,
        ),
        dbc.Row([
            dbc.Col(html.Div(_input("timeframe", _opts(SUPPORTED_UI)),
                             id=ids.Alerts.field("timeframe-group")), md=6),
            dbc.Col(html.Div(_input("window"), id=ids.Alerts.field("window-group")), md=6),
        ]),
        dbc.Row([dbc.Col(_input("threshold"), md=4), dbc.Col(_input("hysteresis"), md=4),
                 dbc.Col(_input("cooldown_s"), md=4)]),
        html.Div(
            [dbc.Label("Notify channels", html_for=ids.Alerts.field(CHANNELS),
                       className="small mb-1"),
             dbc.Checklist(id=ids.Alerts.field(CHANNELS), options=[], value=[], inline=True,
                           className="alerts-channels-select"),
             html.Div("Each event is sent to every checked channel (channels are set "
                      "up on the Alerts page); none: it stays in the app.",
                      className="form-text mt-0"),
             html.Div(id=ids.Alerts.feedback(CHANNELS), className="text-danger small")],
            className="mb-2",
        ),
        dbc.Switch(id=ids.Alerts.field("enabled"), label="Enabled", value=True),
        dbc.Alert(id=ids.Alerts.FORM_ERROR, color="danger", is_open=False, className="mt-2"),
    ]
    return dbc.Modal(
        [
            dbc.ModalHeader(dbc.ModalTitle("New alert rule", id=ids.Alerts.MODAL_TITLE)),
            dbc.ModalBody(body),
            dbc.ModalFooter([
                dbc.Button("Cancel", id=ids.Alerts.CANCEL, color="secondary"),
                dbc.Button("Save", id=ids.Alerts.SAVE, color="primary"),
            ]),
        ],
        id=ids.Alerts.MODAL, is_open=False, size="lg",
    )


def shell_parts() -> list:
    """Everything of the alerts the shell carries on every page."""
    symbols = sorted(get_services().names())
    return [
        modal(symbols),
        dcc.Store(id=ids.Alerts.EDIT_ID),
        dcc.Store(id=ids.Alerts.CHANGED, data=0),
        dcc.Store(id=ids.Alerts.CURSOR),
        dcc.Store(id=ids.Alerts.NOTIFY),
        dcc.Store(id=ids.Alerts.NOTIFY_ENABLED, storage_type="local"),
        html.Div(id=ids.Alerts.NOTIFY_SINK, style={"display": "none"}),
        dcc.Interval(id=ids.Alerts.TOAST_INTERVAL, interval=1000),
        html.Div(id=ids.Alerts.TOASTS,
                 style={"position": "fixed", "bottom": 10, "right": 10, "width": 380,
                        "zIndex": 1080}),
    ]


def notification_notes(events) -> list[dict]:
    """What ``assets/notifications.js`` shows: one note per event, keyed by the event
    id (the id is what the tabs claim, so each event is shown once across tabs)."""
    return [{"id": int(e.id), "title": f"Alert #{e.rule_id} fired",
             "body": f"{e.description}: {e.value:.10g} (threshold {e.threshold:.10g})"}
            for e in events]


def toast(event) -> dbc.Toast:
    from dashapp.api.alerts import iso

    return dbc.Toast(
        [html.Div(event.description, className="fw-bold"),
         html.Div(f"value {event.value:.10g} (threshold {event.threshold:.10g}) at "
                  f"{iso(event.data_ts)}", className="small font-monospace")],
        header=f"Alert #{event.rule_id} fired", icon="warning", dismissable=True,
        duration=15_000, is_open=True, className="alerts-toast mb-2",
    )


# ------------------------------------------------------------------ callbacks
_VALUES = [Output(ids.Alerts.field(n), "value") for n in FORM_FIELDS]
_INVALID = [Output(ids.Alerts.field(n), "invalid", allow_duplicate=True) for n in FORM_FIELDS]
_FEEDBACK = [Output(ids.Alerts.feedback(n), "children", allow_duplicate=True)
             for n in FORM_FIELDS]


@callback(
    output=dict(
        is_open=Output(ids.Alerts.MODAL, "is_open"),
        title=Output(ids.Alerts.MODAL_TITLE, "children"),
        edit_id=Output(ids.Alerts.EDIT_ID, "data"),
        enabled=Output(ids.Alerts.field("enabled"), "value"),
        values=_VALUES,
        invalid=_INVALID,
        feedback=_FEEDBACK,
        error_open=Output(ids.Alerts.FORM_ERROR, "is_open", allow_duplicate=True),
        channel_options=Output(ids.Alerts.field(CHANNELS), "options"),
        channels=Output(ids.Alerts.field(CHANNELS), "value"),
        channels_error=Output(ids.Alerts.feedback(CHANNELS), "children", allow_duplicate=True),
    ),
    inputs=dict(prefill=Input(ids.Shell.ALERT_PREFILL, "data")),
    prevent_initial_call=True,
)
def open_modal(prefill):
    """Any page asks for the modal by writing a (partial) rule to the shell store."""
    n = len(FORM_FIELDS)
    if not isinstance(prefill, dict):  # nothing asked, or a forged store
        return dict(is_open=no_update, title=no_update, edit_id=no_update, enabled=no_update,
                    values=[no_update] * n, invalid=[no_update] * n,
                    feedback=[no_update] * n, error_open=no_update,
                    channel_options=no_update, channels=no_update, channels_error=no_update)
    from dashapp.components.channel_modal import channel_options

    values = prefill_values(prefill, sorted(get_services().names()))
    channels = get_services().alerts.channels()
    rule_id = stores.int_id(prefill.get("id"))
    title = f"Edit alert rule #{rule_id}" if rule_id is not None else "New alert rule"
    return dict(is_open=True, title=title, edit_id=rule_id,
                enabled=bool(values.get("enabled", True)),
                values=[values.get(k) for k in FORM_FIELDS], invalid=[False] * n,
                feedback=[""] * n, error_open=False,
                channel_options=channel_options(channels),
                channels=prefill_channels(prefill, [c["id"] for c in channels]),
                channels_error="")


@callback(
    output=dict(
        is_open=Output(ids.Alerts.MODAL, "is_open", allow_duplicate=True),
        invalid=_INVALID,
        feedback=_FEEDBACK,
        error=Output(ids.Alerts.FORM_ERROR, "children"),
        error_open=Output(ids.Alerts.FORM_ERROR, "is_open", allow_duplicate=True),
        changed=Output(ids.Alerts.CHANGED, "data"),
        channels_error=Output(ids.Alerts.feedback(CHANNELS), "children", allow_duplicate=True),
    ),
    inputs=dict(
        _save=Input(ids.Alerts.SAVE, "n_clicks"),
        _cancel=Input(ids.Alerts.CANCEL, "n_clicks"),
        edit_id=State(ids.Alerts.EDIT_ID, "data"),
        enabled=State(ids.Alerts.field("enabled"), "value"),
        changed=State(ids.Alerts.CHANGED, "data"),
        values=[State(ids.Alerts.field(n), "value") for n in FORM_FIELDS],
        channels=State(ids.Alerts.field(CHANNELS), "value"),
    ),
    prevent_initial_call=True,
)
def save_rule(_save, _cancel, edit_id, enabled, changed, values, channels):
    """Validate and store the rule; bad fields are flagged and the modal stays open."""
    n = len(FORM_FIELDS)

    def answer(is_open, error="", *, error_open=None, invalid=None, feedback=None,
               changed_to=no_update, channels_error=""):
        return dict(is_open=is_open, invalid=invalid or [False] * n,
                    feedback=feedback or [""] * n, error=error,
                    error_open=bool(error) if error_open is None else error_open,
                    changed=changed_to, channels_error=channels_error)

    if ctx.triggered_id == ids.Alerts.CANCEL:
        return answer(False)
    chosen = channels if isinstance(channels, list) else []
    rule = form_rule(dict(zip(FORM_FIELDS, values, strict=True)), enabled, chosen)
    svc = get_services().alerts
    if edit_id is not None and stores.int_id(edit_id) is None:  # a forged store
        return answer(True, "this form lost its rule id: reopen it", error_open=True)
    try:
        svc.create(rule) if edit_id is None else svc.update(stores.int_id(edit_id), rule)
    except RuleError as exc:
        invalid, messages, other = field_feedback(exc.fields)
        return answer(True, other, invalid=list(invalid), feedback=list(messages),
                      channels_error=exc.fields.get(CHANNELS, ""))
    except (KeyError, RuntimeError) as exc:  # rule deleted meanwhile, read-only DB
        return answer(True, str(exc), error_open=True)
    return answer(False, changed_to=stores.counter(changed) + 1)


@callback(
    Output(ids.Alerts.PAIR_GROUP, "style"),
    Output(ids.Alerts.SYMBOL_GROUP, "style"),
    Output(ids.Alerts.field("window-group"), "style"),
    Output(ids.Alerts.field("timeframe-group"), "style"),
    Input(ids.Alerts.field("metric"), "value"),
)
def show_subject(metric):
    """A pair metric asks for legs A and B, a symbol metric for one symbol."""
    return subject_styles(metric)


@callback(
    Output(ids.Alerts.TOASTS, "children"),
    Output(ids.Alerts.CURSOR, "data"),
    Output(ids.Alerts.NOTIFY, "data"),
    Input(ids.Alerts.TOAST_INTERVAL, "n_intervals"),
    State(ids.Alerts.CURSOR, "data"),
)
def poll_events(_n, cursor):
    """A toast on whatever page is open when an alert fires (events are stored by the
    engine-side service; this only reads the ones this tab has not shown)."""
    svc = get_services().alerts
    cursor = stores.int_id(cursor)  # None (first poll, or a forged store): start now
    if cursor is None:
        return no_update, svc.last_event_id(), no_update
    events = svc.events(after_id=cursor, limit=50)
    if not events:
        return no_update, no_update, no_update
    notes = notification_notes(events)
    return [toast(e) for e in events[-MAX_TOASTS:]], events[-1].id, notes


clientside_callback(
    # assets/notifications.js: claims each event id across tabs, then shows it
    ClientsideFunction(namespace="alerts", function_name="notify"),
    Output(ids.Alerts.NOTIFY_SINK, "children"),
    Input(ids.Alerts.NOTIFY, "data"),
    State(ids.Alerts.NOTIFY_ENABLED, "data"),
    prevent_initial_call=True,
)
