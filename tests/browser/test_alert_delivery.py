"""Alerts leave the app (#20), in Chromium against ``python app.py --replay``:

* a webhook channel created in the page's modal (URL of a real local HTTP receiver this
  test starts, with an HMAC secret), its Test button, attached to a rule in the rule
  modal; the rule fires on the replay, the receiver gets the event (signed, with its
  ``Idempotency-Key``) and the delivery log shows it ``delivered``; the secret appears
  nowhere in the page;
* browser notifications (permission granted by Playwright): with two tabs open, every
  event is shown by exactly one tab.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.browser.conftest import IGNORED_CONSOLE

SECRET = "browser-test-hmac-secret-5d1e"
# Median BTCUSDT price of the bundled tape (tests/browser/test_alerts.py): the looped
# replay crosses it upwards about 17 times per pass (a pass takes ~65 s at 10x).
LEVEL = 61666.19


class Receiver:
    """A real HTTP server on a free loopback port that records every POST."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[tuple[dict, dict, bytes]]:
        """(payload, headers, raw body) of every event POST (the Test sample included)."""
        out = []
        for _, headers, body in list(self.requests):
            try:
                out.append((json.loads(body), headers, body))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _symbol(live_app: str, bare: str) -> str:
    """The run's name of ``bare`` on spot: ``BTCUSDT``, or ``spot:BTCUSDT`` when the run
    has the symbol on two markets (contract C1), asked of the API's own validation."""
    probe = {"metric": "price", "op": "gt", "threshold": 1e12, "enabled": False}
    for name in (bare, f"spot:{bare}"):
        r = requests.post(f"{live_app}/api/alerts", json={**probe, "symbol": name}, timeout=5)
        if r.status_code == 201:
            requests.delete(f"{live_app}/api/alerts/{r.json()['id']}", timeout=5)
            return name
    raise AssertionError(f"neither {bare} nor spot:{bare} is a symbol of the run: {r.text}")


def _header(headers: dict, name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def test_webhook_channel_in_the_modal_delivers_a_fired_rule(page, live_app, receiver):
    created_rules: list[int] = []
    created_channels: list[int] = []
    try:
        page.goto("/alerts")
        # --- the channel, through its modal: a bad URL first, refused with a message
        page.get_by_role("button", name="New channel").click()
        modal = page.locator(".modal.show")
        modal.wait_for()
        page.fill("#alerts-channel-name", "desk relay")
        page.fill("#alerts-channel-url", "ftp://127.0.0.1/hook")
        page.fill("#alerts-channel-secret", SECRET)
        page.get_by_role("button", name="Save channel").click()
        page.locator("#alerts-channel-url.is-invalid").wait_for()
        assert "ftp" in page.locator("#alerts-channel-url-feedback").inner_text()
        assert not [c for c in requests.get(f"{live_app}/api/alerts/channels", timeout=5).json()
                    if c["name"] == "desk relay"], "a refused channel is not stored"
        assert page.input_value("#alerts-channel-secret") == SECRET, "nothing typed is lost"
        page.fill("#alerts-channel-url", receiver.url)
        page.get_by_role("button", name="Save channel").click()
        modal.wait_for(state="hidden")
        row = page.locator(".alerts-channel-row", has_text="desk relay")
        row.wait_for()
        [channel] = [c for c in requests.get(f"{live_app}/api/alerts/channels", timeout=5).json()
                     if c["name"] == "desk relay"]
        created_channels.append(channel["id"])
        assert channel["kind"] == "webhook" and channel["has_secret"] is True
        assert "set" in row.inner_text()
        # --- Test: a sample reaches the receiver, the toast says how it went
        row.get_by_role("button", name="Test").click()
        toast = page.locator(".alerts-channel-toast")
        toast.get_by_text("delivered, HTTP 200").wait_for()
        assert receiver.requests, "the Test sample never reached the receiver"
        # --- the rule, through the rule modal, naming the channel
        symbol = _symbol(live_app, "BTCUSDT")
        page.get_by_role("button", name="New rule").click()
        modal.wait_for()
        page.select_option("#alerts-modal-metric", "price")
        page.select_option("#alerts-modal-symbol", symbol)
        page.select_option("#alerts-modal-op", "crosses_above")
        page.fill("#alerts-modal-threshold", str(LEVEL))
        page.locator(".alerts-channels-select").get_by_label("desk relay (webhook)").check()
        page.get_by_role("button", name="Save", exact=True).click()
        modal.wait_for(state="hidden")
        [rule] = [r for r in requests.get(f"{live_app}/api/alerts", timeout=5).json()
                  if r.get("symbol") == symbol and r["threshold"] == LEVEL]
        created_rules.append(rule["id"])
        assert rule["channels"] == [channel["id"]]
        rule_row = page.locator("tr", has_text=f"price crosses above {LEVEL}")
        rule_row.get_by_text("desk relay").wait_for()
        # --- it fires on the replay: the delivery log shows it delivered
        delivered = page.locator(".alerts-deliveries .delivery-delivered").first
        delivered.wait_for(timeout=120_000)
        log_row = page.locator(".delivery-row", has=page.locator(".delivery-delivered")).first
        assert "desk relay" in log_row.inner_text() and f"#{rule['id']}" in log_row.inner_text()
        events = requests.get(f"{live_app}/api/alerts/events",
                              params={"rule_id": rule["id"]}, timeout=5).json()
        assert events, "a delivery without a stored event"
        got = {p.get("event_id"): (p, h, b) for p, h, b in receiver.events()
               if p.get("rule_id") == rule["id"]}
        first = events[0]["id"]
        assert first in got, f"event {first} not received: {sorted(got)}"
        payload, headers, body = got[first]
        assert payload["value"] == pytest.approx(events[0]["value"]) and payload["value"] > LEVEL
        assert _header(headers, "Idempotency-Key") == str(first)
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert _header(headers, "X-Signature-SHA256") == f"sha256={expected}"
        rows = requests.get(f"{live_app}/api/alerts/deliveries",
                            params={"rule_id": rule["id"]}, timeout=5).json()
        assert any(d["event_id"] == first and d["status"] == "delivered" for d in rows)
        # the status filter: nothing failed (the receiver answers 200), then all again
        page.select_option("#alerts-delivery-status", "failed")
        page.get_by_text("No failed deliveries.").wait_for()
        page.select_option("#alerts-delivery-status", "all")
        delivered.wait_for()
        # the secret is write-only: nowhere in the page, nor in the edit form
        assert SECRET not in page.content()
        row.get_by_role("button", name="Edit").click()
        modal.wait_for()
        assert page.input_value("#alerts-channel-secret") == ""
        assert SECRET not in page.content()
        # rename only (URL left masked as shown, secret empty): URL and secret are kept,
        # as a new Test proves (it reaches the receiver, signed with the old secret)
        page.fill("#alerts-channel-name", "desk relay 2")
        page.get_by_role("button", name="Save channel").click()
        modal.wait_for(state="hidden")
        row = page.locator(".alerts-channel-row", has_text="desk relay 2")
        row.wait_for()
        after = requests.get(f"{live_app}/api/alerts/channels/{channel['id']}", timeout=5).json()
        assert (after["url"], after["has_secret"]) == (channel["url"], True)
        n_before = len(receiver.requests)
        row.get_by_role("button", name="Test").click()
        toast.get_by_text("delivered, HTTP 200").wait_for()
        deadline = time.monotonic() + 10
        while len(receiver.requests) <= n_before:
            assert time.monotonic() < deadline, "the second Test never reached the receiver"
            time.sleep(0.1)
        path, headers, body = receiver.requests[n_before]
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert path == "/hook" and _header(headers, "X-Signature-SHA256") == f"sha256={expected}"
        # Delete asks first, naming the rule that stops notifying the channel
        row.get_by_role("button", name="Delete").click()
        modal.wait_for()
        assert f"Rule #{rule['id']} will stop notifying it." in modal.inner_text()
        modal.get_by_role("button", name="Delete channel").click()
        modal.wait_for(state="hidden")
        row.wait_for(state="detached")
        assert channel["id"] not in [
            c["id"] for c in requests.get(f"{live_app}/api/alerts/channels", timeout=5).json()]
        created_channels.clear()
        assert requests.get(f"{live_app}/api/alerts/{rule['id']}", timeout=5).json()[
            "channels"] == []
        page.locator(".delivery-row", has_text=f"#{channel['id']} (deleted)").first.wait_for()
        kept = requests.get(f"{live_app}/api/alerts/deliveries",
                            params={"rule_id": rule["id"]}, timeout=5).json()
        assert any(d["event_id"] == first and d["status"] == "delivered" for d in kept), (
            "the delivery log stays")
    finally:
        for rid in created_rules:
            requests.delete(f"{live_app}/api/alerts/{rid}", timeout=5)
        for cid in created_channels:
            requests.delete(f"{live_app}/api/alerts/channels/{cid}", timeout=5)


RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__shown = [];
  class Recorded {
    constructor(title, options) {
      window.__shown.push({title: title, tag: options && options.tag});
      try { new Real(title, options); } catch (e) {}
    }
    static get permission() { return Real.permission; }
    static requestPermission(cb) { return Real.requestPermission(cb); }
  }
  window.Notification = Recorded;
})();
"""


def test_notifications_show_each_event_once_across_two_tabs(browser, live_app):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_app)
    context.grant_permissions(["notifications"], origin=live_app)
    context.add_init_script(RECORD_NOTIFICATIONS)
    errors: list[str] = []
    rid = None
    try:
        tabs = [context.new_page(), context.new_page()]
        for tab in tabs:
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
                s in m.text for s in IGNORED_CONSOLE) else None)
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.set_default_timeout(20_000)
        tabs[0].goto("/alerts")
        tabs[0].locator("#alerts-notify-switch").check()
        tabs[0].get_by_text("notifications allowed").wait_for()
        tabs[1].goto("/")  # any page of the app: the shell polls and notifies
        tabs[1].wait_for_function("window.dash_clientside && window.dash_clientside.alerts")
        time.sleep(2.5)  # both tabs' cursors set (first poll) before the rule exists
        start = requests.get(f"{live_app}/api/alerts/events", timeout=5).json()
        start_id = max((e["id"] for e in start), default=0)
        rule = requests.post(f"{live_app}/api/alerts", timeout=5, json={
            "metric": "price", "symbol": _symbol(live_app, "BTCUSDT"), "op": "crosses_above",
            "threshold": LEVEL}).json()
        rid = rule["id"]
        mine = f"Alert #{rid} fired"  # other tests' rules may fire too: all count for once
        deadline = time.monotonic() + 150
        while True:
            shown = [tab.evaluate("window.__shown") for tab in tabs]
            if sum(n["title"] == mine for s in shown for n in s) >= 3:
                break
            assert time.monotonic() < deadline, f"too few notifications: {shown}"
            time.sleep(1)
        time.sleep(2.5)  # both tabs have polled past the last shown event
        shown = [tab.evaluate("window.__shown") for tab in tabs]
        tags = [n["tag"] for s in shown for n in s]
        assert len(tags) == len(set(tags)), f"an event shown twice: {shown}"
        events = requests.get(f"{live_app}/api/alerts/events", params={"rule_id": rid},
                              timeout=5).json()
        shown_ids = {int(n["tag"].rsplit("-", 1)[1]) for s in shown for n in s
                     if n["title"] == mine}
        stored = {e["id"] for e in events if e["id"] > start_id}
        assert shown_ids <= stored, "a notification is a stored event of the rule it names"
        claimed = set(tabs[1].evaluate(
            "JSON.parse(localStorage.getItem('alerts-notified-ids') || '[]')"))
        up_to = max(shown_ids)
        assert {i for i in stored if i <= up_to} <= claimed, "every event was claimed"
    finally:
        if rid is not None:
            requests.delete(f"{live_app}/api/alerts/{rid}", timeout=5)
        context.close()
    assert not errors, "browser errors:\n" + "\n".join(errors)
