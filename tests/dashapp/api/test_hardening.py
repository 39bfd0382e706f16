"""Issue 13 hardening of the HTTP API, on the real sample tape's bars (Flask test client):

* 13.6  live ``/api/pair`` and ``/api/adf`` at an untracked timeframe: 400 naming it;
* 13.8  a corrupt zip upload: 400 with a message, nothing stored;
* 13.10 heavy routes: 413 over the size budget (before any work), 503 + Retry-After
  when every slot stays busy or the time budget runs out;
* 13.13 foreign ``Origin``/``Host`` on state-changing requests: 403 JSON naming the
  reason; non-ASCII digits: 400; the server's own 414 is JSON.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
import zipfile

import flask
import pytest
from werkzeug.serving import make_server

from dashapp import api, heavy, queries
from dashapp.api.webguard import JsonErrorRequestHandler, allowed_hosts, refusal
from tests.analytics.conftest import SAMPLE_DIR
from tests.dashapp.api.test_datasets import client, db_state, engine, post, services  # noqa: F401

BTC_1H = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"
ETH_1H = SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv"
PAIR_Q = "a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=30"


@pytest.fixture
def limits():
    """Install a gate with the given limits for one test, then the default again."""
    def install(**kw):
        return heavy.configure(heavy.HeavyLimits(**kw))

    yield install
    heavy.configure(heavy.HeavyLimits())


# -- 13.6 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/pair", "/api/adf"])
@pytest.mark.parametrize("tf", ["5s", "15s", "2m"])
def test_live_pair_at_an_untracked_timeframe_is_a_400_naming_timeframe(client, path, tf):
    r = client.get(f"{path}?a=BTCUSDT&b=ETHUSDT&timeframe={tf}&window=20")
    assert r.status_code == 400, (r.status_code, r.json)
    assert r.json["param"] == "timeframe" and "1s" in r.json["error"]
    # bars of that timeframe exist: /api/bars resamples any multiple of 1 s
    assert client.get(f"/api/bars?symbol=BTCUSDT&timeframe={tf}").status_code == 200


# -- 13.8 ------------------------------------------------------------------------------------
def test_corrupt_zip_upload_is_a_400_with_a_message_and_stores_nothing(client, services):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(BTC_1H.name, BTC_1H.read_bytes())
    z = bytearray(buf.getvalue())
    start = 30 + len(BTC_1H.name)
    z[start : start + 64] = b"\xff" * 64  # the deflate stream is garbage
    before = db_state(services)
    r = post(client, bytes(z), "BTCUSDT-1h-2021-01.zip")
    assert r.status_code == 400, r.data[:300]
    assert "zip" in r.json["problems"][0] and "damaged" in r.json["problems"][0]
    assert db_state(services) == before
    assert client.get("/api/datasets").json == {"datasets": []}


# -- 13.13: digits, Origin/Host, 414 ------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s", "window", "١٢"),  # Arabic-Indic 12
        ("/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s", "window", "１２"),  # fullwidth
        ("/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s", "limit", "१०"),  # Devanagari
        ("/api/bars?symbol=BTCUSDT", "start", "١٧٢٣١٦١٢٥٥٠٠٠"),
        ("/api/bars?symbol=BTCUSDT", "end", "²"),  # a digit int() cannot read
        (f"/api/backtest?{PAIR_Q}", "entry", "٢"),
        (f"/api/backtest?{PAIR_Q}", "max_hold", "٥"),
        ("/api/alerts/events?", "limit", "١٠"),
    ],
)
def test_non_ascii_digits_are_a_400_naming_the_parameter(client, path, param, value):
    r = client.get(f"{path}&{param}={value}")
    assert r.status_code == 400, (r.status_code, r.data[:200])
    assert r.json["param"] == param


def test_ascii_digits_still_work(client):
    assert client.get(f"/api/pair?{PAIR_Q}&limit=10").status_code == 200
    assert client.get("/api/bars?symbol=BTCUSDT&start=1723161255000&limit=5").status_code == 200


def _upload_headers(client, headers, **kw):
    data = {"file": (io.BytesIO(BTC_1H.read_bytes()), BTC_1H.name)}
    return client.post("/api/upload", data=data, content_type="multipart/form-data",
                       headers=headers, **kw)


@pytest.mark.parametrize(
    ("headers", "base_url", "reason"),
    [
        ({"Origin": "http://evil.example"}, None, "origin"),
        ({"Origin": "null"}, None, "origin"),
        ({"Origin": "http://localhost:9999"}, None, "origin"),  # another port: another site
        ({"Origin": "https://localhost"}, None, "origin"),  # another scheme
        ({}, "http://evil.example/", "host"),  # DNS rebinding: a foreign name on our port
        ({"Origin": "http://evil.example"}, "http://evil.example/", "host"),
    ],
)
def test_state_change_from_a_foreign_origin_or_host_is_a_403(
    client, services, headers, base_url, reason
):
    before = db_state(services)
    kw = {"base_url": base_url} if base_url else {}
    r = _upload_headers(client, headers, **kw)
    assert r.status_code == 403, (r.status_code, r.data[:200])
    assert r.mimetype == "application/json"
    assert r.json["reason"] == reason and r.json["error"]
    assert db_state(services) == before
    # deleting and creating alert rules are refused the same way
    r = client.delete("/api/datasets/x", headers=headers, **kw)
    assert r.status_code == 403 and r.json["reason"] == reason
    # reading is never refused
    assert client.get("/api/datasets", headers=headers, **kw).status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Origin": "http://localhost"}, {"Origin": "http://LOCALHOST:80"}]
)
def test_same_origin_and_non_browser_clients_may_upload(client, headers):
    r = _upload_headers(client, headers)
    assert r.status_code == 200, r.json


@pytest.mark.parametrize(
    ("host", "origin", "allowed", "expect"),
    [
        ("127.0.0.1:8050", "http://127.0.0.1:8050", ("127.0.0.1",), None),
        ("[::1]:8050", "http://[::1]:8050", ("::1",), None),
        ("[::1]:8050", "http://127.0.0.1:8050", ("::1", "127.0.0.1"), "origin"),
        ("box.lan:8050", None, allowed_hosts("0.0.0.0", ["box.lan"]), None),
        ("box.lan:8050", None, allowed_hosts("0.0.0.0"), "host"),
        ("10.0.0.5:8050", None, allowed_hosts("10.0.0.5"), None),
        ("anything:1", None, ("*",), None),
        ("127.0.0.1:x", None, ("127.0.0.1",), "host"),  # unparsable port
    ],
)
def test_refusal_rules(host, origin, allowed, expect):
    got = refusal("POST", host, origin, "http", allowed)
    assert (got and got[0]) == expect or (got is None and expect is None), got
    assert refusal("GET", host, "http://evil.example", "http", allowed) is None


def test_the_servers_own_414_is_json(services):
    """A request line over 64 KiB is refused by the HTTP server before Flask: with the
    handler app.py serves with, the 414 is JSON."""
    app = flask.Flask(__name__)
    api.register(app)
    server = make_server("127.0.0.1", 0, app, threaded=True,
                         request_handler=JsonErrorRequestHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", "/api/bars?symbol=" + "X" * 70_000)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 414
        assert resp.getheader("Content-Type") == "application/json"
        import orjson

        assert "URI" in orjson.loads(body)["error"]
    finally:
        server.shutdown()


# -- 13.10 -----------------------------------------------------------------------------------
HEAVY = [
    f"/api/pair?{PAIR_Q}&regression=huber",
    f"/api/adf?{PAIR_Q}",
    f"/api/backtest?{PAIR_Q}",
    "/api/screener?timeframe=1s&window=30",
    "/api/leadlag?a=BTCUSDT&b=ETHUSDT&timeframe=1s",
]


@pytest.mark.parametrize("path", HEAVY)
def test_over_the_size_budget_is_a_413_before_any_work(client, limits, monkeypatch, path):
    limits(max_cost_s=1e-9)
    calls = []
    for name in ("pair_frame", "adf_report"):
        monkeypatch.setattr(queries, name, lambda *a, **k: calls.append(a))
    r = client.get(path)
    assert r.status_code == 413, (r.status_code, r.data[:300])
    body = r.json
    assert body["error"] and body["param"] in ("window", "timeframe", "lookback", "regression")
    assert body["limit_s"] == 1e-9 and body["estimated_s"] >= 0 and body["rows"] > 0
    assert calls == []


def test_the_cost_model_refuses_what_would_run_for_minutes_and_passes_a_day_of_ols():
    """The issue's sizes against the default budget: Theil-Sen with a one-day window
    over 500k bars (one w x w slope matrix per fit: 7.5e9 slopes) is refused naming
    ``window``; Huber w=86,400 on the same bars is a refit every 3,600 bars (seconds);
    a day of 1 s OLS runs inline."""
    lim = heavy.HeavyLimits()
    ts = heavy.Estimate("backtest", heavy.pair_cost(500_000, 86_400, "theilsen"), 500_000,
                        "window", "theilsen w=86400")
    with pytest.raises(heavy.TooHeavy) as ei:
        heavy.HeavyGate(lim).run(ts, lambda: None)
    assert ei.value.param == "window" and "budget" in str(ei.value)
    assert heavy.pair_cost(500_000, 86_400, "huber") / 1e6 < lim.max_cost_s
    assert heavy.pair_cost(86_400, 60, "ols") / 1e6 < lim.inline_below_s * 2


def test_a_theilsen_dataset_backtest_over_budget_names_window(client):
    """End to end on an uploaded dataset (744 1 h bars) with a small budget: Theil-Sen
    w=300 (its w^2 slope matrices) is over it and the 413 names ``window``; OLS on the
    same bars is not."""
    assert post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="h").status_code == 200
    assert post(client, ETH_1H.read_bytes(), ETH_1H.name, dataset="h").status_code == 200
    heavy.configure(heavy.HeavyLimits(max_cost_s=0.015))
    try:
        q = "/api/backtest?dataset=h&a=BTCUSDT&b=ETHUSDT&window=300"
        r = client.get(q + "&regression=theilsen")
        assert r.status_code == 413 and r.json["param"] == "window", r.json
        assert r.json["limit_s"] == 0.015 and r.json["rows"] == 745
        assert client.get(q + "&regression=ols").status_code == 200
    finally:
        heavy.configure(heavy.HeavyLimits())


def _hold_the_only_slot(limits_kw):
    gate = heavy.configure(heavy.HeavyLimits(**limits_kw))
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(30)

    est = heavy.Estimate("blocker", 10e6, 1, "window", "a test job")
    t = threading.Thread(target=lambda: gate.run(est, blocker), daemon=True)
    t.start()
    assert started.wait(10)
    return gate, release, t


@pytest.mark.parametrize("path", HEAVY)
def test_all_slots_busy_is_a_503_with_retry_after(client, limits, path):
    gate, release, t = _hold_the_only_slot(
        dict(slots=1, queue_wait_s=0.2, inline_below_s=0.0)
    )
    try:
        t0 = time.monotonic()
        r = client.get(path)
        assert r.status_code == 503, (r.status_code, r.data[:200])
        assert time.monotonic() - t0 < 5
        assert int(r.headers["Retry-After"]) >= 1
        assert "slot" in r.json["error"] and r.json["retry_after_s"] >= 1
    finally:
        release.set()
        t.join(10)
    assert client.get(path).status_code == 200  # the slot is free again


def test_over_the_time_budget_is_a_503_and_the_slot_stays_held_until_the_job_ends(
    client, limits, monkeypatch
):
    gate = limits(slots=1, queue_wait_s=0.1, time_budget_s=0.3, inline_below_s=0.0)
    release = threading.Event()
    real = queries.adf_report

    def slow(*a, **k):
        release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(queries, "adf_report", slow)
    r = client.get(f"/api/adf?{PAIR_Q}")
    assert r.status_code == 503 and "time budget" in r.json["error"]
    assert r.headers["Retry-After"]
    assert gate.running == 1  # still computing, still counted
    monkeypatch.setattr(queries, "adf_report", real)
    assert client.get(f"/api/pair?{PAIR_Q}").status_code == 503  # no slot: queue full
    release.set()
    deadline = time.monotonic() + 10
    while gate.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gate.running == 0
    assert client.get(f"/api/adf?{PAIR_Q}").status_code == 200
    assert gate.refused == {"size": 0, "queue": 1, "time": 1}


def test_polling_a_tracked_live_pair_never_queues(client, limits, services):
    """A pair the engine tracks costs only its rows: it runs inline, even with every
    slot busy (the 500 ms refresh and API polling are never blocked by a backtest)."""
    client.get(f"/api/pair?{PAIR_Q}")  # now tracked
    gate, release, t = _hold_the_only_slot(dict(slots=1, queue_wait_s=0.2))
    try:
        assert client.get(f"/api/pair?{PAIR_Q}&limit=60").status_code == 200
    finally:
        release.set()
        t.join(10)


def test_the_pages_service_calls_get_the_size_budget_too(client, limits):
    """The backtest, screener and pair pages run these same functions in background
    jobs: over the budget they raise the same refusal, a BadParam the pages show."""
    from dashapp import trader_queries as tq
    from dashapp.api.params import BadParam

    limits(max_cost_s=1e-9)
    pair = dict(a="BTCUSDT", b="ETHUSDT", tf_ms=1000, window=30, regression="ols",
                prices="raw")
    calls = [
        lambda: tq.backtest(**pair, bt=tq.BacktestParams()),
        lambda: queries.adf_report(**pair),
        lambda: tq.screen(1000, 30, "ols", "raw", 600),
    ]
    for call in calls:
        with pytest.raises(BadParam) as ei:
            call()
        assert isinstance(ei.value, heavy.TooHeavy) and "budget" in str(ei.value)


def test_allowed_hosts_flag_and_environment(monkeypatch):
    from ingest.config import parse_config

    assert parse_config([]).allowed_hosts == ()
    cfg = parse_config(["--allowed-hosts", "box.lan, 10.0.0.5,"])
    assert cfg.allowed_hosts == ("box.lan", "10.0.0.5")
    assert allowed_hosts("0.0.0.0", cfg.allowed_hosts) == (
        "localhost", "127.0.0.1", "::1", "box.lan", "10.0.0.5")
    monkeypatch.setenv("PAIRS_ALLOWED_HOSTS", "*")
    assert parse_config([]).allowed_hosts == ("*",)


def _hold(lock_dir, slots, log, i):
    with heavy.process_slot(lock_dir, slots, poll_s=0.02):
        with open(log, "a") as fh:
            fh.write(f"+{i} {time.monotonic()}\n")
        time.sleep(0.4)
        with open(log, "a") as fh:
            fh.write(f"-{i} {time.monotonic()}\n")


def test_page_jobs_in_forked_processes_run_at_most_slots_at_once(tmp_path):
    """The pages' background jobs are separate processes: five of them on two process
    slots never run more than two at a time, and all of them run."""
    import multiprocessing as mp

    log = tmp_path / "log"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hold, args=(tmp_path / "slots", 2, log, i)) for i in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    events = sorted(
        (float(t), ev[0]) for ev, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "+" else -1
        peak = max(peak, running)
    assert peak == 2 and len(events) == 10 and all(p.exitcode == 0 for p in procs)


def test_the_apps_background_manager_is_bounded(tmp_path):
    from dashapp import background_manager

    mgr = background_manager(tmp_path / "cache")
    assert type(mgr).__name__ == "BoundedDiskcacheManager"
    out = tmp_path / "ran"

    def job(key, progress_key, args, context):  # what Dash's job function receives
        out.write_text(f"{key} {args}")

    pid = mgr.call_job_fn("k1", job, (1, 2), {})
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid and out.read_text() == "k1 (1, 2)"
    assert (tmp_path / "cache" / "heavy-slots").is_dir()  # it went through a slot
