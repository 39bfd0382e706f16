"""The outbox worker against real local HTTP receivers and a real SQLite alert store
(ingest/delivery/worker.py): retries, Retry-After, order per rule, max age, a slow
channel beside a fast one, a restart, a burst."""

from __future__ import annotations

import random
import socket
import time

import numpy as np
import pytest

from ingest.delivery.receiver import Receiver
from ingest.delivery.worker import DeliverySettings, DeliveryWorker, backoff_s
from ingest.store.interface import NewEvent
from ingest.store.sqlite_alerts import SqliteAlertStore

T0 = 1_723_161_600_000
FAST = DeliverySettings(base_s=0.05, cap_s=0.2, poll_s=0.05, timeout_s=5.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "alerts.db"
    store = SqliteAlertStore(path)
    yield path, store
    store.close()


def _rule(store, channels, symbol="BTCUSDT"):
    return store.insert_rule({"metric": "price", "symbol": symbol, "op": "gt",
                              "threshold": 1.0, "channels": channels}, True)


def _fire(store, rule_id, n, start=0):
    return store.save({}, [NewEvent(rule_id, T0 + start + k, 2.0 + k, 1.0, f"e{k}")
                           for k in range(n)])


def _wait(cond, timeout_s, step=0.05):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _worker(path, settings=FAST):
    w = DeliveryWorker(lambda: SqliteAlertStore(path), settings)
    w.start()
    return w


def _first_arrivals(rec):
    seen, order = set(), []
    for r in rec.delivered():
        eid = r.json["event_id"]
        if eid not in seen:
            seen.add(eid)
            order.append(r.json)
    return order


def test_full_jitter_backoff_is_uniform_below_the_doubling_cap():
    rng = random.Random(3)
    for n, hi in ((1, 1.0), (2, 2.0), (4, 8.0), (12, 60.0)):
        draws = np.array([backoff_s(n, 1.0, 60.0, rng) for _ in range(4000)])
        assert draws.min() >= 0 and draws.max() <= hi
        assert abs(draws.mean() - hi / 2) < 0.05 * hi  # uniform(0, hi): mean hi/2
        assert draws.max() > 0.95 * hi


def test_retries_honour_retry_after_and_keep_order_per_rule(db):
    path, store = db
    # the first 4 requests answer 503 with Retry-After: 1, then 200
    with Receiver(behaviour=lambda i: (503, {"Retry-After": "1"}, 0.0) if i < 4
                  else (200, {}, 0.0)) as rec:
        ch = store.insert_channel("webhook", "desk", rec.url, "k")
        r1, r2 = _rule(store, [ch.id]), _rule(store, [ch.id], "ETHUSDT")
        stored = _fire(store, r1.id, 5) + _fire(store, r2.id, 5)
        w = _worker(path)
        try:
            assert _wait(lambda: len(store.deliveries(status="delivered")) == 10, 20)
        finally:
            w.stop()
    arrivals = _first_arrivals(rec)
    assert {a["event_id"] for a in arrivals} == {e.id for e in stored}
    for rid in (r1.id, r2.id):
        ids = [a["event_id"] for a in arrivals if a["rule_id"] == rid]
        assert ids == sorted(ids)  # a later event never before an earlier one
    # a 503 said Retry-After: 1: that lane's next try came at least ~1 s later
    first = rec.records[0]
    again = next(r for r in rec.records[1:]
                 if r.json["rule_id"] == first.json["rule_id"])
    assert again.t - first.t >= 0.9
    log = store.deliveries()
    assert all(d.signed_by("k") for d in rec.records)
    assert sum(d.attempts for d in log) == len(rec.records)
    assert all(d.latency_ms >= 0 and d.delivered_ms >= d.created_ms for d in log)


def test_given_up_after_max_age_and_a_permanent_refusal_fails_at_once(db):
    path, store = db
    with Receiver(behaviour=lambda i: (503, {}, 0.0)) as down, \
            Receiver(behaviour=lambda i: (404, {}, 0.0)) as gone:
        c1 = store.insert_channel("webhook", "down", down.url, None)
        c2 = store.insert_channel("webhook", "gone", gone.url, None)
        r = _rule(store, [c1.id, c2.id])
        _fire(store, r.id, 2)
        w = _worker(path, DeliverySettings(max_age_s=1.0, base_s=0.05, cap_s=0.2,
                                           poll_s=0.05))
        try:
            assert _wait(lambda: len(store.deliveries(status="failed")) == 4, 15)
        finally:
            w.stop()
    first = min(d.event_id for d in store.deliveries())
    for d in store.deliveries():
        if d.channel_id == c2.id:  # 404: not retried, the next event still went
            assert d.attempts == 1 and d.last_status == 404
            assert d.last_error.startswith("HTTP 404")
        else:  # retried until 1 s old (the second waited behind the first)
            assert d.attempts >= (2 if d.event_id == first else 1)
            assert d.last_status == 503 and d.last_error.startswith("gave up after")
    assert len(gone.records) == 2


@pytest.mark.slow  # 2 s requests on the slow receiver
def test_a_slow_channel_does_not_hold_up_a_fast_one(db):
    path, store = db
    # the slow receiver answers after 4 s: the fast one must be done well before
    with Receiver(behaviour=lambda i: (200, {}, 4.0)) as slow, Receiver() as fast:
        cs = store.insert_channel("webhook", "slow", slow.url, None)
        cf = store.insert_channel("webhook", "fast", fast.url, None)
        rules = [_rule(store, [cs.id, cf.id], f"S{k}USDT") for k in range(12)]
        for r in rules:
            _fire(store, r.id, 3)
        t0 = time.monotonic()
        w = _worker(path)
        try:
            assert _wait(lambda: len(fast.delivered()) == 36, 10), (
                len(fast.delivered()), len(slow.records), w.status(),
                [(d.channel_id, d.status, d.attempts) for d in store.deliveries()][:12])
            fast_done = time.monotonic() - t0
            # the slow receiver holds at most per_channel (4) requests at a time
            assert len(slow.records) <= 4 and fast_done < 3.5
            # the slow lanes (<= per_channel) plus at most the fast channel's last one,
            # still finishing its bookkeeping when the receiver counted its request
            assert w.status()["lanes_in_flight"] <= 4 + 1
        finally:
            w.stop()


def test_pending_deliveries_survive_a_restart(db):
    path, store = db
    port = _free_port()  # nothing listens yet: the receiver is down
    ch = store.insert_channel("webhook", "desk", f"http://127.0.0.1:{port}/hook", None)
    r = _rule(store, [ch.id])
    stored = _fire(store, r.id, 3)
    w = _worker(path)
    assert _wait(lambda: store.deliveries()[-1].attempts >= 2, 10)
    w.stop()
    assert {d.status for d in store.deliveries()} == {"pending", "retrying"}
    with Receiver(port=port) as rec:
        w2 = _worker(path)  # a new process would open the same file: same state
        try:
            assert _wait(lambda: len(store.deliveries(status="delivered")) == 3, 10)
        finally:
            w2.stop()
    assert [a["event_id"] for a in _first_arrivals(rec)] == [e.id for e in stored]


def test_a_burst_of_1000_events_is_delivered_in_order(db):
    path, store = db
    with Receiver() as rec:
        ch = store.insert_channel("webhook", "desk", rec.url, None)
        rules = [_rule(store, [ch.id], f"R{k}USDT") for k in range(4)]
        stored = []
        for r in rules:
            stored += _fire(store, r.id, 250)
        t0 = time.monotonic()
        w = _worker(path)
        try:
            assert _wait(lambda: len({x.json["event_id"] for x in rec.delivered()}) == 1000,
                         60)
        finally:
            w.stop()
        took = time.monotonic() - t0
    arrivals = _first_arrivals(rec)
    assert sorted(a["event_id"] for a in arrivals) == sorted(e.id for e in stored)
    for r in rules:
        ids = [a["event_id"] for a in arrivals if a["rule_id"] == r.id]
        assert ids == sorted(ids) and len(ids) == 250
    assert took < 60


def test_the_worker_logs_and_stores_failures_without_tokens_or_secret(db, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    path, store = db
    port = _free_port()  # refused
    url = f"http://user:Pw0rd77@127.0.0.1:{port}/in/Tok3nAbc99?key=QueryT0k"
    ch = store.insert_channel("webhook", "desk", url, "whS3cret")
    _fire(store, _rule(store, [ch.id]).id, 2)
    w = _worker(path, DeliverySettings(max_age_s=0.5, base_s=0.05, cap_s=0.1, poll_s=0.05))
    try:
        assert _wait(lambda: len(store.deliveries(status="failed")) == 2, 10)
    finally:
        w.stop()
    texts = [r.getMessage() for r in caplog.records] + [
        d.last_error for d in store.deliveries()]
    assert any("refused" in t.lower() for t in texts), texts  # the cause is kept...
    for secret in ("Pw0rd77", "Tok3nAbc99", "QueryT0k", "whS3cret"):
        assert not [t for t in texts if secret in t]  # ...never a token
