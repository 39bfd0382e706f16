"""The alerts page's delivery parts (#20): the channel modal (write-only secrets, field
messages, Test toast), the rule modal's channels, the delivery log and the notes the
browser notifications claim. Callbacks run against FakeServices, whose channels are
validated and masked by the real ``ingest.delivery.channels``."""

from __future__ import annotations

import json
from contextvars import copy_context

import dash
import pytest
from dash import no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict

from dashapp import ids
from dashapp.components import channel_modal as cm
from dashapp.components import delivery_log as dl
from dashapp.services import set_services
from tests.dashapp.dash_fakes import FakeServices

SECRET = "s3cr3t-hmac-key-do-not-show"
TOKEN_URL = "https://hooks.example.com/services/T0123ABCD/B0456EFGH/xoxbTokenValue99?key=k9Q7z"


@pytest.fixture
def svc():
    services = FakeServices(30)
    set_services(services)
    dash.Dash(__name__, use_pages=True, pages_folder="")  # registry for register_page
    return services


def _run(prop_id: str, value, fn, *args):
    """Run callback ``fn`` as if ``prop_id`` (an id string or a pattern dict) fired."""
    if isinstance(prop_id, dict):
        prop_id = json.dumps(prop_id, separators=(",", ":"), sort_keys=True) + ".n_clicks"

    def run():
        context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop_id, "value": value}]))
        return fn(*args)

    return copy_context().run(run)


def _save(values: dict, edit_id=None, url_shown=None, changed=0):
    ordered = [values.get(k) for k in cm.CHANNEL_FIELDS]
    return _run(f"{ids.Alerts.CHANNEL_SAVE}.n_clicks", 1, cm.save_channel, 1, None, edit_id,
                url_shown, changed, ordered)


def _html(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json(),
                      ensure_ascii=False)


# ------------------------------------------------------------------ pure helpers
def test_payload_sends_the_url_unless_the_masked_one_is_left_and_a_secret_only_if_typed():
    new = cm.channel_payload({"kind": "webhook", "name": "desk", "url": "http://127.0.0.1:9/x",
                              "secret": ""}, editing=False, url_shown=None)
    assert new == {"kind": "webhook", "name": "desk", "url": "http://127.0.0.1:9/x"}
    shown = "https://hooks.example.com/services/****/****"
    kept = cm.channel_payload({"kind": "webhook", "name": "desk", "url": shown, "secret": ""},
                              editing=True, url_shown=shown)
    assert kept == {"kind": "webhook", "name": "desk"}, "the mask is never sent as a URL"
    changed = cm.channel_payload({"kind": "webhook", "name": "d", "url": "http://h/y",
                                  "secret": "k"}, editing=True, url_shown=shown)
    assert changed["url"] == "http://h/y" and changed["secret"] == "k"
    # only a webhook signs: another kind sends no secret and drops a stored one
    tg = cm.channel_payload({"kind": "telegram", "name": "t", "url": "tgram://a/b",
                             "secret": "typed before the kind changed"}, editing=True,
                            url_shown="tgram://****")
    assert tg == {"kind": "telegram", "name": "t", "url": "tgram://a/b", "secret": None}
    assert cm.url_hint("telegram")[2] == {"display": "none"} and cm.url_hint("webhook")[2] == {}


def test_outcome_text_says_ok_status_error_and_latency():
    assert cm.outcome_text("desk", {"ok": True, "status": 200, "error": None,
                                    "latency_ms": 12.6}) == (
        "Test of “desk”", "delivered, HTTP 200, 13 ms", "success")
    header, body, icon = cm.outcome_text("desk", {"ok": False, "status": None,
                                                  "error": "connection refused",
                                                  "latency_ms": 3})
    assert body == "failed, 3 ms: connection refused" and icon == "danger"


def test_channel_feedback_maps_fields_and_keeps_the_rest():
    invalid, messages, other = cm.channel_feedback({"url": "has no host", "body": "bad",
                                                    "": "no such alert channel: 4"})
    assert invalid == [False, False, True, False]
    assert messages[cm.CHANNEL_FIELDS.index("url")] == "has no host"
    assert other == "body: bad; no such alert channel: 4"


# ------------------------------------------------------------------ channel modal callbacks
def test_a_bad_url_is_refused_under_its_field_and_nothing_is_lost(svc):
    out = _save({"kind": "webhook", "name": "desk", "url": "ftp://127.0.0.1/x",
                 "secret": SECRET})
    assert out["is_open"] is True and out["changed"] is no_update
    url_i = cm.CHANNEL_FIELDS.index("url")
    assert out["invalid"][url_i] is True and "ftp" in out["feedback"][url_i]
    assert out["secret"] is no_update, "what was typed stays in the form"
    assert svc.alerts.channels() == []
    out = _save({"kind": "pager", "name": "", "url": "http://127.0.0.1/x"})
    flagged = {k for k, bad in zip(cm.CHANNEL_FIELDS, out["invalid"], strict=True) if bad}
    assert flagged == {"kind", "name"}


def test_saved_channel_is_listed_masked_and_its_secret_never_shown(svc):
    out = _save({"kind": "webhook", "name": "desk", "url": TOKEN_URL, "secret": SECRET},
                changed=4)
    assert out["is_open"] is False and out["changed"] == 5 and out["secret"] == ""
    [channel] = svc.alerts.channels()
    assert channel["has_secret"] is True
    page = _html(cm.refresh_channels(5))
    for hidden in (SECRET, "T0123ABCD", "B0456EFGH", "xoxbTokenValue99", "k9Q7z"):
        assert hidden not in page
    assert channel["url"] in page and "hooks.example.com" in page


def test_edit_opens_masked_with_an_empty_secret_and_keeps_both_when_left(svc):
    _save({"kind": "webhook", "name": "desk", "url": TOKEN_URL, "secret": SECRET})
    [channel] = svc.alerts.channels()
    out = _run(ids.Alerts.channel_edit(channel["id"]), 1, cm.open_channel_modal, None, [1])
    values = dict(zip(cm.CHANNEL_FIELDS, out["values"], strict=True))
    assert out["is_open"] is True and out["edit_id"] == channel["id"]
    assert values == {"kind": "webhook", "name": "desk", "url": channel["url"], "secret": ""}
    assert "secret is stored" in out["note"] and SECRET not in json.dumps(out, default=str)
    # rename only: URL left as shown (masked), secret left empty -> both kept
    saved = _save({**values, "name": "desk 2"}, edit_id=channel["id"],
                  url_shown=out["url_shown"])
    assert saved["is_open"] is False, saved
    stored = svc.alerts._channels[channel["id"]]
    assert stored.name == "desk 2" and stored.url == TOKEN_URL and stored.secret == SECRET


def test_a_webhook_turned_telegram_loses_its_secret_not_its_name(svc):
    _save({"kind": "webhook", "name": "desk", "url": "http://127.0.0.1:9/hook",
           "secret": SECRET})
    cid = svc.alerts.channels()[0]["id"]
    bot = "tgram://123456789:ABCdefGhIJKlmnoPQRstuVWxyz/-100123456"
    out = _save({"kind": "telegram", "name": "desk", "url": bot, "secret": ""}, edit_id=cid,
                url_shown="http://127.0.0.1:9/hook")
    assert out["is_open"] is False, out
    [channel] = svc.alerts.channels()
    assert (channel["kind"], channel["url"], channel["has_secret"]) == (
        "telegram", "tgram://****", False)
    assert "ABCdefGhIJKlmnoPQRstuVWxyz" not in _html(cm.refresh_channels(1))


def test_test_button_shows_the_outcome(svc):
    _save({"kind": "webhook", "name": "desk", "url": "http://127.0.0.1:9/hook"})
    cid = svc.alerts.channels()[0]["id"]
    svc.alerts.test_outcome = {"ok": False, "status": 503, "error": "Service Unavailable",
                               "latency_ms": 41.2}
    assert _run(ids.Alerts.channel_test(cid), 1, cm.run_channel_test, [1]) == (
        "Test of “desk”", "failed, HTTP 503, 41 ms: Service Unavailable", "danger", True)
    svc.alerts.delete_channel(cid)  # meanwhile, in another tab
    header, body, icon, _ = _run(ids.Alerts.channel_test(cid), 1, cm.run_channel_test, [1])
    assert icon == "danger" and body == f"no such alert channel: {cid}"


def test_delete_asks_first_naming_the_rules_then_removes(svc, monkeypatch):
    _save({"kind": "webhook", "name": "desk", "url": "http://127.0.0.1:9/hook"})
    cid = svc.alerts.channels()[0]["id"]
    monkeypatch.setattr(svc.alerts, "rules_json", lambda: [
        {"id": 3, "channels": [cid]}, {"id": 4, "channels": []}, {"id": 7, "channels": [cid]}])
    pending, is_open, body = _run(ids.Alerts.channel_delete(cid), 1, cm.ask_delete_channel, [1])
    assert (pending, is_open) == (cid, True)
    text = _html(body[0]) + _html(body[1])
    assert f"Delete channel #{cid} “desk”?" in text
    assert "Rules #3, #7 will stop notifying it." in text
    cancel = f"{ids.Alerts.CHANNEL_DELETE_CANCEL}.n_clicks"
    assert _run(cancel, 1, cm.confirm_delete_channel, None, 1, cid, 2)[0] is False
    assert len(svc.alerts.channels()) == 1, "cancel deletes nothing"
    confirm = f"{ids.Alerts.CHANNEL_DELETE_CONFIRM}.n_clicks"
    is_open, header, _, _, toast_open, changed = _run(
        confirm, 1, cm.confirm_delete_channel, 1, None, cid, 2)
    assert (is_open, header, toast_open, changed) == (False, "Channel “desk” deleted", True, 3)
    assert svc.alerts.channels() == []
    # confirmed twice (a stale modal): says so, no 500; a forged pending id deletes nothing
    _, _, body, icon, _, _ = _run(confirm, 1, cm.confirm_delete_channel, 1, None, cid, 3)
    assert icon == "danger" and f"no such alert channel: {cid}" in body
    assert _run(confirm, 1, cm.confirm_delete_channel, 1, None, "1; drop", 3)[1] is no_update


def test_a_list_redraw_is_not_a_click(svc):
    out = _run(ids.Alerts.channel_edit(1), None, cm.open_channel_modal, None, [None])
    assert out["is_open"] is no_update
    assert _run(ids.Alerts.channel_test(1), None, cm.run_channel_test, [None]) == (
        no_update,) * 4
    assert _run(ids.Alerts.channel_delete(1), None, cm.ask_delete_channel, [None]) == (
        no_update,) * 3


# ------------------------------------------------------------------ rule modal: channels
def test_rule_form_sends_its_channels_and_drops_deleted_ones():
    from analytics.alerts import parse_rule
    from dashapp.components.alert_modal import (
        field_feedback,
        form_rule,
        prefill_channels,
        prefill_values,
    )

    values = prefill_values({"metric": "price", "op": "gt", "threshold": 1}, ["BTCUSDT"])
    rule = form_rule(values, True, [2, 5])
    assert rule["channels"] == [2, 5]
    assert form_rule(values, True, None)["channels"] == [], "an edit can remove them all"
    assert parse_rule(rule).channels == (2, 5)
    assert prefill_channels({"channels": [1, 2, 9, "x"]}, [1, 2, 3]) == [1, 2]
    assert prefill_channels({"channels": "forged"}, [1]) == []
    assert field_feedback({"channels": "unknown channel 9"})[2] == ""


def test_rules_table_names_the_channels():
    from dashapp.pages.alerts import channels_text

    assert channels_text([1, 7], {1: "desk", 2: "tg"}) == "desk, #7"
    assert channels_text([], {1: "desk"}) == "–"


# ------------------------------------------------------------------ delivery log
ROWS = [
    {"id": 3, "event_id": 12, "rule_id": 1, "channel_id": 2, "channel_name": "desk",
     "status": "retrying", "attempts": 2, "last_error": "Service Unavailable",
     "last_status": 503, "created_ms": 1_723_161_600_000, "delivered_ms": None,
     "latency_ms": None, "next_attempt_ms": 1_723_161_604_000},
    {"id": 2, "event_id": 11, "rule_id": 1, "channel_id": 2, "channel_name": "desk",
     "status": "delivered", "attempts": 1, "last_error": None, "last_status": 200,
     "created_ms": 1_723_161_599_000, "delivered_ms": 1_723_161_599_850,
     "latency_ms": 850, "next_attempt_ms": None},
]


def test_delivery_log_rows_badges_and_status_filter(svc):
    svc.alerts.delivery_log = ROWS
    table, sig = dl.refresh_deliveries(0, "all", None)
    page = _html(table)
    assert page.count("delivery-row") == 2
    assert "HTTP 503: Service Unavailable" in page and "850 ms" in page
    assert "2024-08-08T23:59:59.850Z" in page, "a delivered row shows its delivery time"
    only = _html(dl.refresh_deliveries(0, "delivered", sig)[0])
    assert only.count("delivery-row") == 1 and "delivery-delivered" in only
    assert _html(dl.refresh_deliveries(0, {"forged": 1}, None)[0]).count("delivery-row") == 2
    svc.alerts.delivery_log = [{**ROWS[1], "channel_name": None}]  # the channel deleted
    assert "#2 (deleted)" in _html(dl.refresh_deliveries(0, "all", sig)[0])
    svc.alerts.delivery_log = []
    assert "No deliveries yet" in _html(dl.refresh_deliveries(0, "all", None)[0])
    assert "No failed deliveries." in _html(dl.refresh_deliveries(0, "failed", None)[0])
    assert dl.latency_text(12_345) == "12.3 s" and dl.latency_text(None) == "–"


def test_delivery_log_is_sent_only_when_a_row_changed(svc):
    svc.alerts.delivery_log = [dict(r) for r in ROWS]
    _, sig = dl.refresh_deliveries(0, "all", None)
    assert dl.refresh_deliveries(1, "all", sig) == (no_update, no_update), "idle: nothing sent"
    svc.alerts.delivery_log[0].update(status="delivered", attempts=3, delivered_ms=1, latency_ms=9)
    table, sig2 = dl.refresh_deliveries(2, "all", sig)
    assert sig2 != sig and "delivery-retrying" not in _html(table)
    assert dl.refresh_deliveries(3, "failed", sig2)[1] != sig2, "another filter redraws"


# ------------------------------------------------------------------ notifications
def test_notification_notes_carry_the_event_id_the_tabs_claim():
    from types import SimpleNamespace

    from dashapp.components.alert_modal import notification_notes

    ev = SimpleNamespace(id=41, rule_id=3, description="BTCUSDT price > 1", value=61000.5,
                         threshold=1.0)
    assert notification_notes([ev]) == [{
        "id": 41, "title": "Alert #3 fired",
        "body": "BTCUSDT price > 1: 61000.5 (threshold 1)"}]


def test_the_page_lays_out_channels_log_and_the_notification_state(svc):
    from dashapp.pages import alerts as page

    laid = _html(page.layout())
    for part in (ids.Alerts.CHANNELS, ids.Alerts.CHANNEL_MODAL, ids.Alerts.CHANNEL_DELETE_MODAL,
                 ids.Alerts.DELIVERIES, ids.Alerts.DELIVERY_STATUS, ids.Alerts.NOTIFY_STATE,
                 ids.Alerts.channel_field("secret")):
        assert f'"{part}"' in laid, part
    assert '"type": "password"' in laid, "the secret is typed into a password field"
    assert f'"interval": {dl.REFRESH_MS}' in laid and dl.REFRESH_MS >= 2000
