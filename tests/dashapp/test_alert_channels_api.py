"""``/api/alerts/channels`` and ``/api/alerts/deliveries`` through a Flask test client on
a real AlertService (tmp SQLite), a real local webhook receiver and the real outbox
worker; secrets never in a response or a log line."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import flask
import pytest

from analytics.engine import MarketEngine
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.alert_service import AlertService
from ingest.delivery.receiver import Receiver
from ingest.delivery.worker import DeliverySettings, DeliveryWorker
from ingest.pipeline import Ingestor
from ingest.store import open_alert_store
from ingest.store.interface import NewEvent
from ingest.store.sqlite_trades import SqliteTradeStore

A, B = "BTCUSDT", "ETHUSDT"
RULE = {"metric": "price", "symbol": A, "op": "gt", "threshold": 1.0}
SECRET = "whsec-S3cr3tValue-91"
TOKEN = "Tok3nInPath77"


@pytest.fixture
def env(tmp_path):
    db = tmp_path / "api.db"
    store = SqliteTradeStore(db)
    engine = MarketEngine([A, B])
    ing = Ingestor([A, B], store, engine, ring_capacity=1000, write=False)
    svc = AlertService(engine, ing, db, rules_poll_s=1e9)
    set_services(LiveMarketData(SimpleNamespace(engine=engine, ingestor=ing, alerts=svc)))
    app = flask.Flask(__name__)
    api.register(app)
    yield SimpleNamespace(client=app.test_client(), svc=svc, db=db)
    svc.stop()
    store.close()


def test_channel_crud_masks_tokens_and_never_returns_the_secret(env, caplog):
    caplog.set_level(logging.DEBUG)
    c = env.client
    url = f"https://relay.example.com/in/{TOKEN}?token=abc123"
    r = c.post("/api/alerts/channels",
               json={"kind": "webhook", "name": "desk", "url": url, "secret": SECRET})
    assert r.status_code == 201
    ch = r.get_json()
    assert r.headers["Location"] == f"/api/alerts/channels/{ch['id']}"
    assert ch["url"] == "https://relay.example.com/in/****?token=****"
    assert ch["has_secret"] is True and ch["kind"] == "webhook" and ch["name"] == "desk"
    assert set(ch) >= {"id", "kind", "name", "url", "has_secret", "created_ms"}
    assert c.get("/api/alerts/channels").get_json() == [ch]
    assert c.get(f"/api/alerts/channels/{ch['id']}").get_json() == ch
    # an edit without a secret keeps it; null removes it
    r = c.put(f"/api/alerts/channels/{ch['id']}",
              json={"kind": "webhook", "name": "desk2", "url": url})
    assert r.status_code == 200 and r.get_json()["has_secret"] is True
    assert r.get_json()["name"] == "desk2"
    slack = c.post("/api/alerts/channels", json={
        "kind": "slack", "name": "team",
        "url": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"})
    assert slack.status_code == 201 and slack.get_json()["url"] == "slack://****"
    bodies = [c.get("/api/alerts/channels").data, c.get(f"/api/alerts/channels/{ch['id']}").data]
    for body in bodies + [r.data, slack.data]:
        for secret in (SECRET, TOKEN, "abc123", "TIiajkdnlazkcOXrIdevi7FQ", "A1BRTD4JD"):
            assert secret.encode() not in body
    r = c.put(f"/api/alerts/channels/{ch['id']}",
              json={"kind": "webhook", "name": "desk2", "url": url, "secret": None})
    assert r.get_json()["has_secret"] is False
    assert c.delete(f"/api/alerts/channels/{ch['id']}").get_json() == {
        "id": ch["id"], "deleted": True}
    r = c.delete(f"/api/alerts/channels/{ch['id']}")
    assert r.status_code == 404 and str(ch["id"]) in r.get_json()["error"]
    assert c.get("/api/alerts/channels/999").status_code == 404
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "channel" in logged  # the log does name what happened...
    for secret in (SECRET, TOKEN, "abc123", "TIiajkdnlazkcOXrIdevi7FQ"):
        assert secret not in logged  # ...never with a token


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"kind": "webhook", "name": "x", "url": "ftp://h/x"}, "url", "'ftp' is not allowed"),
    ({"kind": "webhook", "name": "x", "url": "http//broken"}, "url", "not allowed"),
    ({"kind": "gopher", "name": "x", "url": "http://h/"}, "kind", "not one of"),
    ({"kind": "webhook", "url": "http://h/"}, "name", "is required"),
    ({"kind": "discord", "name": "x", "url": "discord://nope"}, "url", "apprise"),
])
def test_bad_channels_are_400_naming_the_field_and_nothing_is_stored(env, body, field,
                                                                     fragment):
    r = env.client.post("/api/alerts/channels", json=body)
    assert r.status_code == 400
    j = r.get_json()
    assert field in j["fields"] and fragment in j["fields"][field] and field in j["error"]
    assert env.client.get("/api/alerts/channels").get_json() == []


def test_not_json_is_400_not_500(env):
    r = env.client.post("/api/alerts/channels", data="x", content_type="text/plain")
    assert r.status_code == 400 and "body" in r.get_json()["fields"]
    r = env.client.put("/api/alerts/channels/1", json=[1])
    assert r.status_code == 400


def test_rules_name_existing_channels_only(env):
    c = env.client
    r = c.post("/api/alerts", json={**RULE, "channels": [42]})
    assert r.status_code == 400 and "no such channel: 42" in r.get_json()["fields"]["channels"]
    r = c.post("/api/alerts", json={**RULE, "channels": "7"})
    assert r.status_code == 400 and "channels" in r.get_json()["fields"]
    ch = c.post("/api/alerts/channels", json={"kind": "webhook", "name": "d",
                                              "url": "http://127.0.0.1:9/h"}).get_json()
    rule = c.post("/api/alerts", json={**RULE, "channels": [ch["id"]]}).get_json()
    assert rule["channels"] == [ch["id"]]
    # re-routing keeps the rule's evaluation state (only its channels changed)
    before = env.svc._states.get(rule["id"])
    r = c.patch(f"/api/alerts/{rule['id']}", json={"channels": []})
    assert r.get_json()["channels"] == [] and env.svc._states.get(rule["id"]) == before
    c.patch(f"/api/alerts/{rule['id']}", json={"channels": [ch["id"]]})
    c.delete(f"/api/alerts/channels/{ch['id']}")
    time.sleep(1.05)  # the channel-id cache of rule_json
    assert c.get(f"/api/alerts/{rule['id']}").get_json()["channels"] == []


def test_test_button_sends_a_signed_sample_and_says_what_happened(env, caplog):
    caplog.set_level(logging.DEBUG)
    c = env.client
    with Receiver() as ok, Receiver(behaviour=lambda i: (503, {}, 0.0)) as down:
        good = c.post("/api/alerts/channels", json={"kind": "webhook", "name": "ok",
                                                    "url": ok.url, "secret": SECRET})
        bad = c.post("/api/alerts/channels", json={
            "kind": "webhook", "name": "down", "url": down.url + f"/{TOKEN}"})
        r1 = c.post(f"/api/alerts/channels/{good.get_json()['id']}/test").get_json()
        r2 = c.post(f"/api/alerts/channels/{bad.get_json()['id']}/test").get_json()
    assert r1["ok"] is True and r1["status"] == 200 and r1["error"] is None
    assert r1["latency_ms"] > 0
    assert ok.records[0].signed_by(SECRET) and ok.records[0].json["test"] is True
    assert r2 == {"ok": False, "status": 503, "error": r2["error"],
                  "latency_ms": r2["latency_ms"]}
    assert r2["error"].startswith("HTTP 503")
    assert c.post("/api/alerts/channels/999/test").status_code == 404
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert SECRET not in logged and TOKEN not in logged


def test_deliveries_log_filters_and_bad_params(env):
    c = env.client
    with Receiver() as rec:
        ch = c.post("/api/alerts/channels", json={"kind": "webhook", "name": "desk",
                                                  "url": rec.url}).get_json()
        rule = c.post("/api/alerts", json={**RULE, "channels": [ch["id"]]}).get_json()
        stored = env.svc.store.save({}, [NewEvent(rule["id"], 1_000 + k, 2.0, 1.0, "d")
                                         for k in range(3)])
        log = c.get("/api/alerts/deliveries").get_json()
        assert [d["event_id"] for d in log] == [e.id for e in reversed(stored)]
        assert {d["status"] for d in log} == {"pending"}
        assert set(log[0]) == {"id", "event_id", "rule_id", "channel_id", "channel_name",
                               "status", "attempts", "last_error", "last_status",
                               "created_ms", "delivered_ms", "latency_ms",
                               "next_attempt_ms"}
        w = DeliveryWorker(lambda: open_alert_store(env.db),
                           DeliverySettings(poll_s=0.05))
        w.start()
        try:
            t_end = time.monotonic() + 10
            while time.monotonic() < t_end and len(c.get(
                    "/api/alerts/deliveries?status=delivered").get_json()) < 3:
                time.sleep(0.05)
        finally:
            w.stop()
    done = c.get("/api/alerts/deliveries?status=delivered").get_json()
    assert len(done) == 3 and all(d["attempts"] == 1 for d in done)
    assert all(d["channel_name"] == "desk" and d["last_status"] == 200 for d in done)
    assert all(d["delivered_ms"] >= d["created_ms"] for d in done)
    assert all(d["latency_ms"] == d["delivered_ms"] - d["created_ms"] for d in done)
    assert len(c.get(f"/api/alerts/deliveries?rule_id={rule['id']}&limit=2").get_json()) == 2
    assert c.get(f"/api/alerts/deliveries?channel_id={ch['id'] + 1}").get_json() == []
    for q, param in (("status=sent", "status"), ("limit=0", "limit"),
                     ("rule_id=x", "rule_id"), ("channel_id=-1", "channel_id")):
        r = c.get(f"/api/alerts/deliveries?{q}")
        assert r.status_code == 400 and r.get_json()["param"] == param
