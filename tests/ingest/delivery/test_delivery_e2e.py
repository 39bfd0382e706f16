"""Alert delivery end to end: ``python app.py --replay`` in a subprocess, a real local
HTTP receiver, rules that fire every few bars (#20 "Must show").

* the receiver answers 503 for 10 s, then 503 with ``Retry-After`` for 10 s, then
  200: afterwards every stored event arrived at least once, the set of delivered event
  ids equals the stored events, and each rule's events arrived in order;
* ``kill -9`` with deliveries pending (the receiver down), restart with it up: they
  are delivered;
* neither the secret nor the URL token appears in any API answer, the alerts page or
  the app's log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from ingest.delivery.receiver import Receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec-E2eS3cr3t-5521"
TOKEN = "PathTok3n9931"
#: change over one 1 s bar crossing zero: fires every few bars of the real tape
RULES = [{"metric": "change_pct", "symbol": "BTCUSDT", "timeframe": "1s", "window": 1,
          "op": op, "threshold": 0.0} for op in ("crosses_above", "crosses_below")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app(db: Path, log: Path, *extra: str):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--replay", "--market", "spot", "--replay-speed", "4",
         "--db", str(db), "--port", str(port), "--delivery-backoff-cap", "2", *extra],
        cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _rows(base) > 500, 90, "the replay to store 500 trades", proc, log)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _rows(base: str) -> int:
    try:
        return int(requests.get(f"{base}/api/health", timeout=2).json()["store"]["rows"])
    except (requests.RequestException, KeyError, ValueError):
        return 0


def _until(cond, timeout_s: float, what: str, proc=None, log: Path | None = None):
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"app exited {proc.returncode}:\n"
                                 + (log.read_text()[-3000:] if log else ""))
        v = cond()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"not in {timeout_s:.0f} s: {what}")


def _open(base: str) -> list[dict]:
    return [d for s in ("pending", "retrying") for d in
            requests.get(f"{base}/api/alerts/deliveries?status={s}&limit=10000").json()]


def _setup(base: str, url: str) -> tuple[int, list[int]]:
    r = requests.post(f"{base}/api/alerts/channels", json={
        "kind": "webhook", "name": "desk", "url": url, "secret": SECRET}, timeout=5)
    assert r.status_code == 201, r.text
    ch = r.json()["id"]
    rules = []
    for rule in RULES:
        r = requests.post(f"{base}/api/alerts", json={**rule, "channels": [ch]}, timeout=5)
        assert r.status_code == 201, r.text
        rules.append(r.json()["id"])
    return ch, rules


def _stop_rules(base: str, rules: list[int]) -> None:
    for rid in rules:
        assert requests.patch(f"{base}/api/alerts/{rid}", json={"enabled": False},
                              timeout=5).ok


def _first_arrivals(rec: Receiver) -> list[dict]:
    seen, out = set(), []
    for r in rec.delivered():
        if r.json["event_id"] not in seen:
            seen.add(r.json["event_id"])
            out.append(r.json)
    return out


def _no_secrets(base: str, log: Path) -> None:
    texts = [requests.get(f"{base}{p}", timeout=10).text for p in (
        "/api/alerts/channels", "/api/alerts", "/api/alerts/deliveries?limit=10000",
        "/alerts", "/_dash-layout")]
    texts.append(log.read_text())
    for t in texts:
        assert SECRET not in t and TOKEN not in t


def test_503_then_retry_after_for_20s_every_event_arrives_in_order(tmp_path):
    t_up: list[float] = []

    def behaviour(i: int):
        age = time.monotonic() - t_up[0]
        if age < 10:
            return 503, {}, 0.0
        if age < 20:
            return 503, {"Retry-After": "2"}, 0.0
        return 200, {}, 0.0

    log = tmp_path / "app.log"
    with Receiver(behaviour=behaviour) as rec, app(tmp_path / "app.db", log) as (base, _):
        t_up.append(time.monotonic())
        refused_until_ms = (time.time() + 20) * 1000
        ch, rules = _setup(base, f"{rec.url}/{TOKEN}")
        time.sleep(24)  # 20 s refusing, then a few seconds of a healthy receiver
        _stop_rules(base, rules)
        time.sleep(1.5)  # an evaluation in flight when the rules were disabled
        _until(lambda: not _open(base), 60, "every delivery through")
        events = requests.get(f"{base}/api/alerts/events?limit=10000", timeout=5).json()
        log_rows = requests.get(f"{base}/api/alerts/deliveries?limit=10000").json()
        _no_secrets(base, log)
    stored = {e["id"] for e in events}
    assert len(stored) >= 10, f"the rules fired {len(stored)} times only"
    arrivals = _first_arrivals(rec)
    assert {a["event_id"] for a in arrivals} == stored  # each at least once, no other
    for rid in rules:
        ids = [a["event_id"] for a in arrivals if a["rule_id"] == rid]
        assert ids == sorted(ids) and ids, rid
    refused = [r for r in rec.records if r.answered == 503]
    assert refused and any(r.header("Retry-After") is None for r in refused)
    assert all(r.signed_by(SECRET) for r in rec.records)
    assert all(r.header("Idempotency-Key") == str(r.json["event_id"]) for r in rec.records)
    assert {d["status"] for d in log_rows} == {"delivered"} and len(log_rows) == len(stored)
    assert max(d["attempts"] for d in log_rows) >= 2  # the early ones were retried
    # nothing counted as delivered while the receiver refused (same machine clock)
    assert min(d["delivered_ms"] for d in log_rows) >= refused_until_ms - 100
    # each rule's first event headed its lane through the refusals: tried again and again
    heads = [min((d for d in log_rows if d["rule_id"] == rid), key=lambda d: d["event_id"])
             for rid in rules]
    assert all(d["attempts"] >= 2 for d in heads if d["created_ms"] < refused_until_ms - 5_000)
    assert any(d["created_ms"] < refused_until_ms - 5_000 for d in heads)


def test_kill_9_with_deliveries_pending_then_restart_delivers_them(tmp_path):
    port = _free_port()  # the receiver is down: nothing listens on it yet
    db, log = tmp_path / "app.db", tmp_path / "app.log"
    url = f"http://127.0.0.1:{port}/hook/{TOKEN}"
    with app(db, log) as (base, proc):
        ch, rules = _setup(base, url)
        # a lane (rule, channel) retries its head; the later events wait behind it
        _until(lambda: (o := _open(base)) and len(o) >= 4
               and any(d["attempts"] >= 2 for d in o), 60,
               "four deliveries pending, one tried twice")
        _stop_rules(base, rules)
        time.sleep(1.5)
        pending = {d["event_id"] for d in _open(base)}
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no orderly stop
        proc.wait(10)
    assert pending
    with Receiver(port=port) as rec, app(db, log) as (base, _):
        _until(lambda: not _open(base), 60, "the pending deliveries through")
        events = requests.get(f"{base}/api/alerts/events?limit=10000", timeout=5).json()
        _no_secrets(base, log)
    arrivals = _first_arrivals(rec)
    assert {a["event_id"] for a in arrivals} == {e["id"] for e in events}
    assert pending <= {a["event_id"] for a in arrivals}
    for rid in rules:
        ids = [a["event_id"] for a in arrivals if a["rule_id"] == rid]
        assert ids == sorted(ids)
    assert all(json.loads(r.body)["rule_id"] in rules for r in rec.records)
