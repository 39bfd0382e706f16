"""``/api/alerts`` through a Flask test client on a real AlertService (tmp DB)."""

from __future__ import annotations

from types import SimpleNamespace

import flask
import pytest

from analytics.engine import MarketEngine
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.alert_service import AlertService
from ingest.models import Trade
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore

A, B = "BTCUSDT", "ETHUSDT"
RULE = {
    "metric": "zscore", "a": A, "b": B, "timeframe": "1s", "window": 60,
    "regression": "ols", "prices": "raw", "op": "crosses_above", "threshold": 2.0,
    "hysteresis": 0, "cooldown_s": 0,
}


@pytest.fixture
def env(tmp_path):
    store = SqliteTradeStore(tmp_path / "api.db")
    engine = MarketEngine([A, B])
    ing = Ingestor([A, B], store, engine, ring_capacity=1000, write=False)
    svc = AlertService(engine, ing, tmp_path / "api.db", rules_poll_s=1e9)
    set_services(LiveMarketData(SimpleNamespace(engine=engine, ingestor=ing, alerts=svc)))
    app = flask.Flask(__name__)
    api.register(app)
    yield SimpleNamespace(client=app.test_client(), svc=svc, ing=ing)
    svc.stop()
    store.close()


def test_create_list_edit_delete(env):
    c = env.client
    r = c.post("/api/alerts", json=RULE)
    assert r.status_code == 201
    body = r.get_json()
    rid = body["id"]
    assert r.headers["Location"] == f"/api/alerts/{rid}"
    assert {k: body[k] for k in RULE} == {**RULE, "hysteresis": 0.0, "cooldown_s": 0.0}
    assert body["enabled"] is True and body["created_at"].endswith("Z")
    assert len(body["created_at"]) == len("2024-08-08T23:54:15.000Z")
    assert c.get("/api/alerts").get_json()[0]["id"] == rid
    r = c.patch(f"/api/alerts/{rid}", json={"enabled": False})
    assert r.status_code == 200 and r.get_json()["enabled"] is False
    r = c.put(f"/api/alerts/{rid}", json={**RULE, "threshold": 2.5})
    assert r.get_json()["threshold"] == 2.5 and r.get_json()["enabled"] is True
    assert c.get(f"/api/alerts/{rid}").get_json()["threshold"] == 2.5
    assert c.delete(f"/api/alerts/{rid}").get_json() == {"id": rid, "deleted": True}
    assert c.get("/api/alerts").get_json() == []
    r = c.delete(f"/api/alerts/{rid}")
    assert r.status_code == 404 and str(rid) in r.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULE, "threshold": "two"}, "threshold"),
        ({**RULE, "op": "above"}, "op"),
        ({**RULE, "a": "XXXUSDT"}, "a"),
        ({**RULE, "window": 0}, "window"),
        ({k: v for k, v in RULE.items() if k != "metric"}, "metric"),
    ],
)
def test_bad_rule_is_400_naming_the_field(env, body, field):
    r = env.client.post("/api/alerts", json=body)
    assert r.status_code == 400
    j = r.get_json()
    assert field in j["fields"] and field in j["error"]
    assert env.client.get("/api/alerts").get_json() == []


def test_threshold_message_as_documented(env):
    j = env.client.post("/api/alerts", json={**RULE, "threshold": "x"}).get_json()
    assert j["fields"] == {"threshold": "must be a number"}


def test_not_json_body(env):
    r = env.client.post("/api/alerts", data="metric=zscore")
    assert r.status_code == 400 and "body" in r.get_json()["fields"]
    r = env.client.patch("/api/alerts/1", json={"enabled": False})
    assert r.status_code == 404


def test_events_since_and_formats(env):
    c = env.client
    rid = c.post("/api/alerts", json={"metric": "price", "symbol": A, "op": "gt",
                                      "threshold": 100}).get_json()["id"]
    env.svc.evaluate(0)
    env.ing.on_trade(Trade(A, 1, 1_723_161_255_342, 101.0, 1.0, False, 0))
    stored = env.svc.evaluate(1_723_161_256_000)
    assert len(stored) == 1
    evs = c.get("/api/alerts/events").get_json()
    assert evs == [{
        "id": stored[0].id, "rule_id": rid, "data_ts": "2024-08-08T23:54:15.342Z",
        "fired_at": evs[0]["fired_at"], "value": 101.0, "threshold": 100.0,
    }]
    fired = stored[0].fired_ms
    assert c.get(f"/api/alerts/events?since={fired}").get_json() == []
    assert len(c.get(f"/api/alerts/events?since={fired - 1}").get_json()) == 1
    assert len(c.get("/api/alerts/events?since=2020-01-01T00:00:00Z").get_json()) == 1
    assert c.get("/api/alerts/events?since=2999-01-01T00:00:00.000Z").get_json() == []
    csv = c.get("/api/alerts/events?format=csv")
    assert csv.mimetype == "text/csv" and b"2024-08-08T23:54:15.342Z" in csv.data
    for bad, param in (("since=yesterday-ish", "since"), ("limit=0", "limit"),
                       ("rule_id=x", "rule_id"), ("format=xml", "format")):
        r = c.get(f"/api/alerts/events?{bad}")
        assert r.status_code == 400 and r.get_json()["param"] == param, bad
