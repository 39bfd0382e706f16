"""One delivery attempt against a real local HTTP receiver (ingest/delivery/senders.py)."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import socket
import time

import pytest

from ingest.delivery.payload import dumps, sample_payload
from ingest.delivery.receiver import Receiver
from ingest.delivery.senders import parse_retry_after, send, signature

NOW = 1_723_161_600_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_posts_the_payload_signed_with_an_idempotency_key():
    payload = sample_payload(NOW)
    body = dumps(payload)
    with Receiver() as rec:
        out = send("webhook", rec.url, "k3y", payload, body, 5.0)
    assert out.ok and out.status == 200 and out.error is None and out.latency_ms > 0
    (got,) = rec.records
    assert got.body == body and got.json == payload
    assert got.header("Idempotency-Key") == str(payload["event_id"])
    assert got.header("Content-Type") == "application/json"
    # independent HMAC-SHA256 of the exact body bytes
    want = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert got.header("X-Signature-SHA256") == want == signature("k3y", body)
    assert set(payload) >= {"event_id", "rule_id", "description", "metric", "a", "b",
                            "timeframe", "window", "value", "threshold", "data_ts",
                            "fired_at"}
    assert payload["data_ts"] == "2024-08-09T00:00:00.000Z"


def test_no_secret_no_signature_header():
    payload = sample_payload(NOW)
    with Receiver() as rec:
        assert send("webhook", rec.url, None, payload, dumps(payload), 5.0).ok
    assert rec.records[0].header("X-Signature-SHA256") is None


@pytest.mark.parametrize(("status", "headers", "retry", "permanent"), [
    (503, {"Retry-After": "7"}, 7.0, False),
    (429, {"Retry-After": "0"}, 0.0, False),
    (503, {}, None, False),
    (500, {}, None, False),
    (408, {}, None, False),
    (404, {}, None, True),
    (400, {}, None, True),
])
def test_failures_say_whether_to_retry_and_when(status, headers, retry, permanent):
    payload = sample_payload(NOW)
    with Receiver(behaviour=lambda i: (status, headers, 0.0)) as rec:
        out = send("webhook", rec.url, None, payload, dumps(payload), 5.0)
    assert not out.ok and out.status == status and out.error.startswith(f"HTTP {status}")
    assert out.retry_after_s == retry and out.permanent is permanent


def test_retry_after_as_an_http_date():
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None
    payload = sample_payload(NOW)
    with Receiver(behaviour=lambda i: (503, {"Retry-After": date}, 0.0)) as rec:
        out = send("webhook", rec.url, None, payload, dumps(payload), 5.0)
    assert 25 <= out.retry_after_s <= 31


def test_a_timeout_and_a_refused_connection_are_errors_without_the_token():
    payload = sample_payload(NOW)
    with Receiver(behaviour=lambda i: (200, {}, 2.0)) as rec:
        url = rec.url + "/Tok3nSegment?token=abc123xyz"
        out = send("webhook", url, "s3cr3t", payload, dumps(payload), 0.3)
    assert not out.ok and out.status is None and "timed out" in out.error
    assert out.latency_ms < 1500
    url = f"http://127.0.0.1:{_free_port()}/in/Tok3nSegment?token=abc123xyz"
    out = send("webhook", url, "s3cr3t", payload, dumps(payload), 2.0)
    assert not out.ok and out.status is None and "refused" in out.error.lower()
    for secret in ("Tok3nSegment", "abc123xyz", "s3cr3t"):
        assert secret not in out.error


def test_apprise_path_delivers_through_a_real_plugin():
    """The apprise sender (slack/discord/telegram/email) exercised end to end with
    apprise's generic ``json://`` plugin pointed at the local receiver."""
    payload = sample_payload(NOW)
    with Receiver() as rec:
        out = send("slack", f"json://127.0.0.1:{rec.port}/apprise", None, payload,
                   dumps(payload), 5.0)
    assert out.ok, out.error
    (got,) = rec.records
    assert got.path.startswith("/apprise")
    msg = json.loads(got.body)
    assert payload["description"] in msg["title"] and "threshold 2.0" in msg["message"]


def test_apprise_failure_is_an_error_without_the_token():
    payload = sample_payload(NOW)
    with Receiver(behaviour=lambda i: (500, {}, 0.0)) as rec:
        url = f"json://user:Pa55word9@127.0.0.1:{rec.port}/apprise"
        out = send("slack", url, None, payload, dumps(payload), 5.0)
    assert not out.ok and out.error and "Pa55word9" not in out.error


def test_userinfo_in_a_webhook_url_is_sent_as_http_basic():
    import base64

    payload = sample_payload(NOW)
    with Receiver() as rec:
        url = f"http://relay%40desk:p%3Ass@127.0.0.1:{rec.port}/in"
        assert send("webhook", url, None, payload, dumps(payload), 5.0).ok
    got = rec.records[0]
    assert got.path == "/in"
    assert got.header("Authorization") == "Basic " + base64.b64encode(
        b"relay@desk:p:ss").decode()
