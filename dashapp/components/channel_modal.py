"""Delivery channels on the alerts page: the list, the add/edit modal, Test and Delete
(which asks first, naming the rules that would stop notifying the channel).

A channel is where an alert event goes when it leaves the app (issue 20): a JSON
webhook, or Slack, Discord, Telegram, e-mail through apprise URLs. The page talks
only to the facade (:class:`dashapp.facade.AlertsData`: ``channels()``,
``add_channel``, ``update_channel``, ``delete_channel``, ``test_channel``), which
validates and stores; this module only lays out and maps answers to the form.

Secrets are **write-only**. The list shows the URL as the API answers it (tokens
masked) and "secret set" rather than any secret. The edit form opens with the masked
URL and an *empty* secret field: leaving the URL as it was shown keeps the stored URL
(the masked text is never sent back as a URL), and an empty secret keeps the stored
secret. A bad value gets its message under the field (``invalid`` + ``FormFeedback``)
and the modal stays open with everything typed.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from dashapp import ids, stores
from dashapp.services import get_services

#: Channel kinds (``POST /api/alerts/channels`` ``kind``), in the select's order.
KINDS = ("webhook", "slack", "discord", "telegram", "email")
KIND_LABELS = {
    "webhook": "Webhook (JSON POST)", "slack": "Slack", "discord": "Discord",
    "telegram": "Telegram", "email": "E-mail",
}
#: What the URL field expects per kind (placeholder and help line).
URL_HINTS = {
    "webhook": "https://relay.example.com/alerts (http or https; loopback allowed)",
    "slack": "https://hooks.slack.com/services/T…/B…/… or slack://TokenA/TokenB/TokenC",
    "discord": "https://discord.com/api/webhooks/ID/TOKEN or discord://ID/TOKEN",
    "telegram": "tgram://BOT_TOKEN/CHAT_ID",
    "email": "mailtos://user:password@smtp.example.com?to=desk@example.com",
}
SECRET_HELP = "Optional: signs each body, header X-Signature-SHA256: sha256=<HMAC-SHA256>."
URL_HELP = {"webhook": "Tokens in the path or query are stored, and shown masked."}
URL_HELP_APPRISE = "Tokens in the URL are stored, never shown again."
#: Form inputs, in the order of the callbacks' outputs.
CHANNEL_FIELDS = ("kind", "name", "url", "secret")
CHANNEL_LABELS = {"kind": "Kind", "name": "Name", "url": "URL", "secret": "Secret"}


# ------------------------------------------------------------------ pure helpers
def channel_payload(values: dict, *, editing: bool, url_shown: str | None) -> dict:
    """The JSON the form sends (``add_channel`` / ``update_channel``).

    Editing: the URL is sent only when it differs from the masked URL the form opened
    with (sending the mask back would store asterisks); the secret only when typed
    (empty keeps the stored one). A new channel sends its URL always, its secret when
    given. Only a webhook signs with a secret: for the other kinds the (hidden) secret
    field is not sent and ``"secret": null`` drops a webhook's secret on a change of kind."""
    out = {"kind": values.get("kind"), "name": values.get("name")}
    url = values.get("url")
    if not editing or url != url_shown:
        out["url"] = url
    secret = values.get("secret")
    if values.get("kind") in KINDS and values.get("kind") != "webhook":
        out["secret"] = None
    elif isinstance(secret, str) and secret != "":
        out["secret"] = secret
    return out


def error_fields(exc: Exception) -> dict[str, str]:
    """Field -> message of a refused channel (``exc.fields`` when the backend names
    fields, else the message under ``""``)."""
    fields = getattr(exc, "fields", None)
    if isinstance(fields, dict) and fields:
        return {str(k): str(v) for k, v in fields.items()}
    text = str(exc)
    if isinstance(exc, KeyError) and type(exc).__str__ is KeyError.__str__ and exc.args:
        text = str(exc.args[0])  # a bare KeyError quotes its key
    return {"": text}


def channel_feedback(fields: dict[str, str]) -> tuple[list[bool], list[str], str]:
    """Invalid flags and messages per form field, and the messages of other fields."""
    invalid = [name in fields for name in CHANNEL_FIELDS]
    messages = [fields.get(name, "") for name in CHANNEL_FIELDS]
    other = "; ".join(f"{k}: {v}" if k else v for k, v in fields.items()
                      if k not in CHANNEL_FIELDS)
    return invalid, messages, other


def channel_names(channels: list[dict]) -> dict[int, str]:
    """Channel id -> name (for the rules table and the delivery log)."""
    return {c["id"]: c["name"] for c in channels}


def channel_options(channels: list[dict]) -> list[dict]:
    """Options of the rule modal's channel multi-select: "desk (webhook)"."""
    return [{"label": f"{c['name']} ({c['kind']})", "value": c["id"]} for c in channels]


def outcome_text(name: str, result: dict) -> tuple[str, str, str]:
    """Header, body and icon of the toast after "Test": ok / HTTP status / error /
    latency as ``POST /api/alerts/channels/<id>/test`` answers them."""
    ok = bool(result.get("ok"))
    parts = ["delivered" if ok else "failed"]
    if result.get("status") is not None:
        parts.append(f"HTTP {result['status']}")
    if result.get("latency_ms") is not None:
        parts.append(f"{float(result['latency_ms']):.0f} ms")
    body = ", ".join(parts)
    if result.get("error"):
        body += f": {result['error']}"
    return f"Test of “{name}”", body, "success" if ok else "danger"


# ------------------------------------------------------------------ layout
def channels_table(channels: list[dict]) -> dbc.Table | html.Div:
    if not channels:
        return html.Div("No channels yet: alerts stay in the app until you add one.",
                        className="text-muted")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "#", "Name", "Kind", "URL", "Secret", "")]))
    rows = [
        html.Tr([
            html.Td(c["id"]),
            html.Td(c["name"]),
            html.Td(c["kind"]),
            html.Td(c["url"], className="font-monospace small text-break"),
            html.Td("set" if c.get("has_secret") else "–"),
            html.Td([
                dbc.Button("Test", id=ids.Alerts.channel_test(c["id"]), size="sm",
                           color="info", className="me-1"),
                dbc.Button("Edit", id=ids.Alerts.channel_edit(c["id"]), size="sm",
                           color="secondary", className="me-1"),
                dbc.Button("Delete", id=ids.Alerts.channel_delete(c["id"]), size="sm",
                           color="danger", outline=True),
            ], className="text-nowrap"),
        ], className="alerts-channel-row")
        for c in channels
    ]
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True,
                     className="align-middle alerts-channels")


def _field(name: str, control) -> html.Div:
    return html.Div(
        [dbc.Label(CHANNEL_LABELS[name], html_for=ids.Alerts.channel_field(name),
                   className="small mb-1"),
         control, dbc.FormFeedback(id=ids.Alerts.channel_feedback(name), type="invalid")],
        className="mb-2",
    )


def modal() -> dbc.Modal:
    f = ids.Alerts.channel_field
    body = [
        dbc.Row([
            dbc.Col(_field("kind", dbc.Select(
                id=f("kind"), value="webhook",
                options=[{"label": KIND_LABELS[k], "value": k} for k in KINDS])), md=5),
            dbc.Col(_field("name", dbc.Input(id=f("name"), type="text", maxLength=80,
                                             placeholder="desk relay")), md=7),
        ]),
        _field("url", dbc.Input(id=f("url"), type="text", placeholder=URL_HINTS["webhook"],
                                autoComplete="off")),
        html.Div(id=f("url-help"), className="form-text mt-0 mb-2"),
        html.Div([
            _field("secret", dbc.Input(id=f("secret"), type="password",
                                       autoComplete="new-password", placeholder="optional")),
            html.Div(SECRET_HELP, className="form-text mt-0"),
            html.Div(id=ids.Alerts.CHANNEL_SECRET_NOTE, className="form-text mt-0"),
        ], id=f("secret-group")),
        dbc.Alert(id=ids.Alerts.CHANNEL_ERROR, color="danger", is_open=False, className="mt-2"),
    ]
    return dbc.Modal(
        [
            dbc.ModalHeader(dbc.ModalTitle("New channel", id=ids.Alerts.CHANNEL_MODAL_TITLE)),
            dbc.ModalBody(body),
            dbc.ModalFooter([
                dbc.Button("Cancel", id=ids.Alerts.CHANNEL_CANCEL, color="secondary"),
                dbc.Button("Save channel", id=ids.Alerts.CHANNEL_SAVE, color="primary"),
            ]),
        ],
        id=ids.Alerts.CHANNEL_MODAL, is_open=False,
    )


def section() -> html.Div:
    """The channels block of the alerts page (list, modal, stores, the Test toast)."""
    return html.Div([
        dbc.Row(
            [
                dbc.Col(html.H4("Channels", className="mb-0"), width="auto"),
                dbc.Col(dbc.Button("New channel", id=ids.Alerts.CHANNEL_NEW, color="primary",
                                   size="sm"), width="auto"),
            ],
            className="align-items-center g-3 mt-4 mb-2",
        ),
        html.Div(id=ids.Alerts.CHANNELS),
        modal(),
        dcc.Store(id=ids.Alerts.CHANNEL_EDIT_ID),
        dcc.Store(id=ids.Alerts.CHANNEL_URL_SHOWN),
        dcc.Store(id=ids.Alerts.CHANNELS_CHANGED, data=0),
        dcc.Store(id=ids.Alerts.CHANNEL_DELETE_PENDING),
        dbc.Modal(
            [
                dbc.ModalHeader(dbc.ModalTitle("Delete channel?")),
                dbc.ModalBody(id=ids.Alerts.CHANNEL_DELETE_TEXT),
                dbc.ModalFooter([
                    dbc.Button("Cancel", id=ids.Alerts.CHANNEL_DELETE_CANCEL, color="secondary",
                               size="sm"),
                    dbc.Button("Delete channel", id=ids.Alerts.CHANNEL_DELETE_CONFIRM,
                               color="danger", size="sm"),
                ]),
            ],
            id=ids.Alerts.CHANNEL_DELETE_MODAL, is_open=False, centered=True,
        ),
        dbc.Toast(id=ids.Alerts.CHANNEL_TOAST, is_open=False, dismissable=True,
                  duration=12_000, className="alerts-channel-toast",
                  style={"position": "fixed", "top": 70, "right": 10, "width": 380,
                         "zIndex": 1090}),
    ])


# ------------------------------------------------------------------ callbacks
_F = ids.Alerts.channel_field
_VALUES = [Output(_F(n), "value", allow_duplicate=True) for n in CHANNEL_FIELDS]
_INVALID = [Output(_F(n), "invalid", allow_duplicate=True) for n in CHANNEL_FIELDS]
_FEEDBACK = [Output(ids.Alerts.channel_feedback(n), "children", allow_duplicate=True)
             for n in CHANNEL_FIELDS]


@callback(
    Output(ids.Alerts.CHANNELS, "children"),
    Input(ids.Alerts.CHANNELS_CHANGED, "data"),
)
def refresh_channels(_changed):
    """The list on load and after every add, edit or delete (channels change only
    through this page or the API, so no interval)."""
    return channels_table(get_services().alerts.channels())


@callback(
    output=dict(
        is_open=Output(ids.Alerts.CHANNEL_MODAL, "is_open"),
        title=Output(ids.Alerts.CHANNEL_MODAL_TITLE, "children"),
        edit_id=Output(ids.Alerts.CHANNEL_EDIT_ID, "data"),
        url_shown=Output(ids.Alerts.CHANNEL_URL_SHOWN, "data"),
        note=Output(ids.Alerts.CHANNEL_SECRET_NOTE, "children"),
        values=_VALUES,
        invalid=_INVALID,
        feedback=_FEEDBACK,
        error_open=Output(ids.Alerts.CHANNEL_ERROR, "is_open", allow_duplicate=True),
        toast=Output(ids.Alerts.CHANNEL_TOAST, "is_open", allow_duplicate=True),
    ),
    inputs=dict(
        _new=Input(ids.Alerts.CHANNEL_NEW, "n_clicks"),
        _edits=Input({"type": "alerts-channel-edit", "index": ALL}, "n_clicks"),
    ),
    prevent_initial_call=True,
)
def open_channel_modal(_new, _edits):
    """New: an empty form (webhook). Edit: the channel as listed (masked URL), the
    secret field empty."""
    n = len(CHANNEL_FIELDS)
    if not ctx.triggered or not ctx.triggered[0]["value"]:  # a list redraw, not a click
        return dict(is_open=no_update, title=no_update, edit_id=no_update,
                    url_shown=no_update, note=no_update, values=[no_update] * n,
                    invalid=[no_update] * n, feedback=[no_update] * n,
                    error_open=no_update, toast=no_update)
    common = dict(is_open=True, invalid=[False] * n, feedback=[""] * n, error_open=False,
                  toast=False)
    if ctx.triggered_id == ids.Alerts.CHANNEL_NEW:
        return dict(common, title="New channel", edit_id=None, url_shown=None, note="",
                    values=["webhook", "", "", ""])
    cid = int(ctx.triggered_id["index"])
    channel = next((c for c in get_services().alerts.channels() if c["id"] == cid), None)
    if channel is None:  # deleted in another tab meanwhile
        return dict(common, is_open=False, title=no_update, edit_id=None, url_shown=None,
                    note=no_update, values=[no_update] * n)
    note = ("A secret is stored: leave this empty to keep it, or type a new one."
            if channel.get("has_secret") else "")
    return dict(common, title=f"Edit channel #{cid}", edit_id=cid, url_shown=channel["url"],
                note=note, values=[channel["kind"], channel["name"], channel["url"], ""])


@callback(
    Output(_F("url"), "placeholder"),
    Output(_F("url-help"), "children"),
    Output(_F("secret-group"), "style"),
    Input(_F("kind"), "value"),
)
def url_hint(kind):
    """What a URL of this kind looks like; the secret field only for a webhook (the
    other kinds carry their tokens in the URL)."""
    hint = URL_HINTS.get(kind, URL_HINTS["webhook"])
    if kind in KINDS and kind != "webhook":
        return hint, URL_HELP_APPRISE, {"display": "none"}
    return hint, URL_HELP["webhook"], {}


@callback(
    output=dict(
        is_open=Output(ids.Alerts.CHANNEL_MODAL, "is_open", allow_duplicate=True),
        invalid=_INVALID,
        feedback=_FEEDBACK,
        error=Output(ids.Alerts.CHANNEL_ERROR, "children"),
        error_open=Output(ids.Alerts.CHANNEL_ERROR, "is_open", allow_duplicate=True),
        changed=Output(ids.Alerts.CHANNELS_CHANGED, "data", allow_duplicate=True),
        secret=Output(_F("secret"), "value", allow_duplicate=True),
    ),
    inputs=dict(
        _save=Input(ids.Alerts.CHANNEL_SAVE, "n_clicks"),
        _cancel=Input(ids.Alerts.CHANNEL_CANCEL, "n_clicks"),
        edit_id=State(ids.Alerts.CHANNEL_EDIT_ID, "data"),
        url_shown=State(ids.Alerts.CHANNEL_URL_SHOWN, "data"),
        changed=State(ids.Alerts.CHANNELS_CHANGED, "data"),
        values=[State(_F(n), "value") for n in CHANNEL_FIELDS],
    ),
    prevent_initial_call=True,
)
def save_channel(_save, _cancel, edit_id, url_shown, changed, values):
    """Validate and store through the facade; bad fields are flagged, the modal stays
    open with what was typed. The secret field is emptied once saved (never kept in
    the page longer than needed)."""
    n = len(CHANNEL_FIELDS)

    def answer(is_open, error="", *, invalid=None, feedback=None, changed_to=no_update,
               secret=no_update):
        return dict(is_open=is_open, invalid=invalid or [False] * n,
                    feedback=feedback or [""] * n, error=error, error_open=bool(error),
                    changed=changed_to, secret=secret)

    if ctx.triggered_id == ids.Alerts.CHANNEL_CANCEL:
        return answer(False, secret="")
    cid = stores.int_id(edit_id)
    if edit_id is not None and cid is None:  # a forged store
        return answer(True, "this form lost its channel id: reopen it")
    shown = url_shown if isinstance(url_shown, str) else None
    data = channel_payload(dict(zip(CHANNEL_FIELDS, values, strict=True)),
                           editing=cid is not None, url_shown=shown)
    svc = get_services().alerts
    try:
        svc.add_channel(data) if cid is None else svc.update_channel(cid, data)
    except (ValueError, KeyError, RuntimeError) as exc:  # invalid, deleted, read-only DB
        invalid, messages, other = channel_feedback(error_fields(exc))
        return answer(True, other, invalid=invalid, feedback=messages)
    return answer(False, changed_to=stores.counter(changed) + 1, secret="")


def rules_naming(rules: list[dict], channel_id: int) -> list[int]:
    """Ids of the rules that notify ``channel_id`` (what deleting it changes)."""
    return [r["id"] for r in rules if channel_id in (r.get("channels") or [])]


def delete_question(name: str, channel_id: int, rule_ids: list[int]) -> list:
    """Body of the "Delete channel?" confirmation."""
    if rule_ids:
        effect = ("Rule" if len(rule_ids) == 1 else "Rules") + " " + ", ".join(
            f"#{r}" for r in rule_ids) + " will stop notifying it. "
    else:
        effect = "No rule notifies it. "
    return [html.P(f"Delete channel #{channel_id} “{name}”?"),
            html.P(effect + "Its delivery log stays.", className="text-muted small mb-0")]


@callback(
    Output(ids.Alerts.CHANNEL_TOAST, "header"),
    Output(ids.Alerts.CHANNEL_TOAST, "children"),
    Output(ids.Alerts.CHANNEL_TOAST, "icon"),
    Output(ids.Alerts.CHANNEL_TOAST, "is_open"),
    Input({"type": "alerts-channel-test", "index": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def run_channel_test(_tests):
    """Test sends a sample now (the backend's short timeout bounds the wait) and says
    how it went."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update, no_update, no_update, no_update  # a list redraw, not a click
    svc, cid = get_services().alerts, int(trig["index"])
    name = channel_names(svc.channels()).get(cid, f"#{cid}")
    try:
        header, body, icon = outcome_text(name, svc.test_channel(cid))
    except (ValueError, KeyError, RuntimeError) as exc:  # deleted meanwhile
        return f"Test of “{name}”", "; ".join(error_fields(exc).values()), "danger", True
    return header, body, icon, True


@callback(
    Output(ids.Alerts.CHANNEL_DELETE_PENDING, "data"),
    Output(ids.Alerts.CHANNEL_DELETE_MODAL, "is_open"),
    Output(ids.Alerts.CHANNEL_DELETE_TEXT, "children"),
    Input({"type": "alerts-channel-delete", "index": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def ask_delete_channel(_clicks):
    """Delete asks first, naming the rules that would stop notifying the channel."""
    trig = ctx.triggered_id
    if not isinstance(trig, dict) or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update, no_update, no_update
    svc, cid = get_services().alerts, int(trig["index"])
    name = channel_names(svc.channels()).get(cid)
    if name is None:  # deleted in another tab meanwhile
        return None, False, no_update
    return cid, True, delete_question(name, cid, rules_naming(svc.rules_json(), cid))


@callback(
    Output(ids.Alerts.CHANNEL_DELETE_MODAL, "is_open", allow_duplicate=True),
    Output(ids.Alerts.CHANNEL_TOAST, "header", allow_duplicate=True),
    Output(ids.Alerts.CHANNEL_TOAST, "children", allow_duplicate=True),
    Output(ids.Alerts.CHANNEL_TOAST, "icon", allow_duplicate=True),
    Output(ids.Alerts.CHANNEL_TOAST, "is_open", allow_duplicate=True),
    Output(ids.Alerts.CHANNELS_CHANGED, "data", allow_duplicate=True),
    Input(ids.Alerts.CHANNEL_DELETE_CONFIRM, "n_clicks"),
    Input(ids.Alerts.CHANNEL_DELETE_CANCEL, "n_clicks"),
    State(ids.Alerts.CHANNEL_DELETE_PENDING, "data"),
    State(ids.Alerts.CHANNELS_CHANGED, "data"),
    prevent_initial_call=True,
)
def confirm_delete_channel(_ok, _cancel, pending, changed):
    """Confirmed: delete (rules stop naming it; its delivery log stays) and say so."""
    cid = stores.int_id(pending)  # a browser store: forged means nothing to delete
    if ctx.triggered_id != ids.Alerts.CHANNEL_DELETE_CONFIRM or cid is None:
        return False, no_update, no_update, no_update, no_update, no_update
    svc = get_services().alerts
    name = channel_names(svc.channels()).get(cid, f"#{cid}")
    bumped = stores.counter(changed) + 1
    try:
        svc.delete_channel(cid)
    except (ValueError, KeyError, RuntimeError) as exc:  # deleted meanwhile, read-only DB
        return (False, f"Channel “{name}”", "; ".join(error_fields(exc).values()), "danger",
                True, bumped)
    return (False, f"Channel “{name}” deleted", "Its delivery log stays.", "secondary", True,
            bumped)
