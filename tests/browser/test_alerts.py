"""The alerts page in Chromium: a rule created through the modal fires on the replay
and the toast shows (the rule is evaluated server-side, not by the page)."""

from __future__ import annotations

import requests

# Median BTCUSDT price of the bundled tape: the looped replay crosses it upwards
# about 17 times per pass (a pass takes ~65 s at 10x).
LEVEL = "61666.19"


def test_create_rule_in_modal_and_see_toast(page, live_app, shot):
    page.goto("/alerts")
    page.get_by_role("button", name="New rule").click()
    modal = page.locator(".modal.show")
    modal.wait_for()
    page.select_option("#alerts-modal-metric", "price")
    page.select_option("#alerts-modal-symbol", "BTCUSDT")
    page.select_option("#alerts-modal-op", "crosses_above")
    # no threshold: refused with a message on the field, nothing stored
    page.get_by_role("button", name="Save").click()
    page.locator("#alerts-modal-threshold.is-invalid").wait_for()
    assert "is required" in page.locator("#alerts-modal-threshold-feedback").inner_text()
    assert requests.get(f"{live_app}/api/alerts", timeout=5).json() == []
    page.fill("#alerts-modal-threshold", LEVEL)
    page.get_by_role("button", name="Save").click()
    modal.wait_for(state="hidden")
    page.get_by_text("BTCUSDT price crosses above 61666.19").first.wait_for()
    rules = requests.get(f"{live_app}/api/alerts", timeout=5).json()
    assert [(r["metric"], r["symbol"], r["op"], r["threshold"]) for r in rules] == [
        ("price", "BTCUSDT", "crosses_above", 61666.19)]
    try:
        toast = page.locator(".alerts-toast").first
        toast.wait_for(timeout=90_000)
        assert "BTCUSDT price crosses above 61666.19" in toast.inner_text()
        # this rule's events (another test's deleted rules keep theirs in the log)
        events = requests.get(f"{live_app}/api/alerts/events",
                              params={"rule_id": rules[0]["id"]}, timeout=5).json()
        assert events and events[0]["rule_id"] == rules[0]["id"]
        assert events[0]["value"] > 61666.19
        page.locator(".alerts-events").wait_for()
        shot(page, "alerts")
        # the toast is in the shell: another page shows the next one too
        page.get_by_role("link", name="Markets").click()
        page.locator(".alerts-toast").first.wait_for(timeout=90_000)
    finally:
        requests.delete(f"{live_app}/api/alerts/{rules[0]['id']}", timeout=5)


def _sel(kind: str, rid: int) -> str:
    """CSS selector of a pattern-matching id (Dash writes sorted-key JSON)."""
    import json

    return "[id='" + json.dumps({"index": rid, "type": kind}, separators=(",", ":")) + "']"


def _row(page, rid: int):
    return page.locator("tr", has=page.locator(_sel("alerts-delete", rid)))


def test_delete_asks_first_and_can_be_undone(page, live_app):
    rule = requests.post(f"{live_app}/api/alerts", timeout=5, json={
        "metric": "price", "symbol": "ETHUSDT", "op": "gt", "threshold": 1e9}).json()
    rid = rule["id"]
    try:
        page.goto("/alerts")
        page.locator(_sel("alerts-delete", rid)).click()
        modal = page.locator(".modal.show")
        modal.wait_for()
        assert f"Delete rule #{rid}" in modal.inner_text()
        modal.get_by_role("button", name="Cancel").click()
        modal.wait_for(state="hidden")
        ids = [r["id"] for r in requests.get(f"{live_app}/api/alerts", timeout=5).json()]
        assert rid in ids, "cancel deletes nothing"
        page.locator(_sel("alerts-delete", rid)).click()
        page.locator(".modal.show").get_by_role("button", name="Delete rule").click()
        page.get_by_text(f"Rule #{rid} deleted").wait_for()
        ids = [r["id"] for r in requests.get(f"{live_app}/api/alerts", timeout=5).json()]
        assert rid not in ids
        page.get_by_role("button", name="Undo").click()
        _row(page, rid).wait_for()
        back = requests.get(f"{live_app}/api/alerts/{rid}", timeout=5).json()
        assert back["id"] == rid and back["threshold"] == 1e9
        assert back["created_at"] == rule["created_at"]
    finally:
        requests.delete(f"{live_app}/api/alerts/{rid}", timeout=5)


def test_disabling_keeps_last_fired_and_last_value(page, live_app):
    import time

    # fires on the first trade (armed, price > 1) and never re-arms
    rule = requests.post(f"{live_app}/api/alerts", timeout=5, json={
        "metric": "price", "symbol": "ETHUSDT", "op": "gt", "threshold": 1}).json()
    rid = rule["id"]
    try:
        deadline = time.monotonic() + 30
        while True:
            st = requests.get(f"{live_app}/api/alerts/{rid}", timeout=5).json()["status"]
            if st["last_fired_data_ts"] is not None and st["last_value"] is not None:
                break
            assert time.monotonic() < deadline, f"the rule never fired: {st}"
            time.sleep(0.3)
        page.goto("/alerts")
        row = _row(page, rid)
        row.wait_for()
        fired_text = row.locator("td").nth(5).inner_text()
        assert fired_text not in ("", "–")
        page.locator(_sel("alerts-enable", rid)).uncheck()
        deadline = time.monotonic() + 10
        while requests.get(f"{live_app}/api/alerts/{rid}", timeout=5).json()["enabled"]:
            assert time.monotonic() < deadline, "the switch did not disable the rule"
            time.sleep(0.2)
        time.sleep(2.5)  # the table's next refresh
        after = requests.get(f"{live_app}/api/alerts/{rid}", timeout=5).json()["status"]
        assert after["last_fired_data_ts"] == st["last_fired_data_ts"]
        assert after["last_value"] is not None
        row = _row(page, rid)
        assert row.locator("td").nth(5).inner_text() == fired_text
        assert row.locator("td").nth(4).inner_text() not in ("", "–")
    finally:
        requests.delete(f"{live_app}/api/alerts/{rid}", timeout=5)
