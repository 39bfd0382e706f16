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
        events = requests.get(f"{live_app}/api/alerts/events", timeout=5).json()
        assert events and events[0]["rule_id"] == rules[0]["id"]
        assert events[0]["value"] > 61666.19
        page.locator(".alerts-events").wait_for()
        shot(page, "alerts")
        # the toast is in the shell: another page shows the next one too
        page.get_by_role("link", name="Markets").click()
        page.locator(".alerts-toast").first.wait_for(timeout=90_000)
    finally:
        requests.delete(f"{live_app}/api/alerts/{rules[0]['id']}", timeout=5)
