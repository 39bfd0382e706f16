"""With ``--bus``, background callbacks run on Celery over the bus's Redis.

One command (``python app.py --no-ingest --db X --bus redis://…``) starts the web
process AND its Celery worker (``dashapp/background.py``); the pair page's ADF, posted
over Dash's callback HTTP protocol as the renderer does (POST, then poll with the
signed ``cacheKey``/``job`` handles), is run by that worker to completion, on the
numbers of the bundled tape. A real ``redis-server`` is started by the test
(:func:`tests.servers.start_redis`; without it the test FAILS, "install redis-server").
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from benchmarks._dash_client import DashPage, http_fetch
from dashapp.ids import Pair
from dashapp.selection import Selection
from tests.servers import free_port, start_redis

ROOT = Path(__file__).resolve().parents[2]
TAPE_TRADES = 34_419  # the bundled spot tape, BTCUSDT + ETHUSDT


def _wait(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.3)


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM trades").fetchone()[0]
    except sqlite3.Error:
        return 0


def _fill(db: Path, log: Path) -> None:
    """The bundled tape into a SQLite store, as fast as it reads."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--replay", "--market", "spot", "--replay-speed", "0",
         "--replay-once",
         "--db", str(db), "--log-level", "WARNING"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        def done() -> bool:
            assert proc.poll() is None or _stored(db) >= TAPE_TRADES, log.read_text()[-2000:]
            return _stored(db) >= TAPE_TRADES

        _wait(done, 180, "the tape stored")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _background(page: DashPage, dep: dict, trigger, match, timeout_s: float) -> dict:
    """One background callback over HTTP as the renderer runs it: POST -> signed
    handles -> POST again with them until the answer holds ``response``."""
    body = page.body(dep, trigger, match)
    status, data, _ = page.fetch("POST", "/_dash-update-component", body)
    assert status == 200 and isinstance(data, dict) and "cacheKey" in data, (status, data)
    query = "?" + "&".join(f"{k}={requests.utils.quote(str(data[k]))}"
                           for k in ("cacheKey", "job"))
    deadline = time.monotonic() + timeout_s
    while True:
        status, out, _ = page.fetch("POST", "/_dash-update-component" + query, body)
        assert status in (200, 202, 204), (status, out)
        if isinstance(out, dict) and "response" in out:
            return out["response"]
        assert not (isinstance(out, dict) and "background_callback_error" in str(out)), out
        if time.monotonic() > deadline:
            raise AssertionError(f"background callback not done in {timeout_s:.0f} s: {out}")
        time.sleep(0.25)


@pytest.mark.slow
def test_the_pair_pages_adf_runs_on_the_celery_worker_the_app_started(tmp_path):
    redis = start_redis()
    db = tmp_path / "market.db"
    app_log = tmp_path / "app.log"
    app = None
    try:
        _fill(db, tmp_path / "ingest.log")
        port = free_port()
        app = subprocess.Popen(
            [sys.executable, "app.py", "--no-ingest", "--db", str(db), "--bus", redis.url(0),
             "--market", "spot", "--symbols", "BTCUSDT,ETHUSDT", "--ring-capacity", "100000",
             "--port", str(port)],
            cwd=ROOT, stdout=app_log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert app.poll() is None, f"app.py exited:\n{app_log.read_text()[-3000:]}"
            try:
                return requests.get(base + "/api/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(up, 120, "app.py serving")
        session = requests.Session()
        page = DashPage(http_fetch(session, base, timeout=30), "/pair")
        page.call(page.callback(output=f'"type":"{Pair.ERROR}"'),
                  ({"type": Pair.A, "index": 0}, "value"), match=0)
        sel = page.get_prop({"type": Pair.SELECTION, "index": 0}, "data")
        assert sel and sel["a"] == "BTCUSDT" and sel["b"] == "ETHUSDT", sel
        button = {"type": Pair.ADF_BUTTON, "index": 0}
        page.set_prop(button, "n_clicks", 1)
        dep = page.callback(input_id=f'{{"index":["MATCH"],"type":"{Pair.ADF_BUTTON}"}}',
                            prop="n_clicks")
        resp = _background(page, dep, (button, "n_clicks"), 0, timeout_s=120)

        store = resp[f'{{"index":0,"type":"{Pair.ADF_STORE}"}}']["data"]
        assert store["key"] == Selection.from_store(sel).key and store["at"], store
        card = str(resp[f'{{"index":0,"type":"{Pair.ADF_RESULT}"}}']["children"])
        assert "not possible" not in card, card
        # run by the Celery worker (not a job forked from the web process)
        _wait(lambda: "succeeded" in app_log.read_text(), 10, "the Celery task's log line")
        assert "background_callback_" in app_log.read_text()
    finally:
        if app is not None:
            app.terminate()
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait(10)
        redis.stop()
        shutil.rmtree(redis.root, ignore_errors=True)
    # the app stopped its Celery worker with it
    out = subprocess.run(["pgrep", "-f", f"dashapp.celery_worker.*{port}"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "", f"Celery worker left running: {out.stdout}"



def test_the_manager_is_celery_on_the_bus_and_diskcache_without(tmp_path):
    """No server needed: Celery connects lazily. Broker and results on the bus's Redis,
    the app's own queue, results kept as long as the diskcache ones."""
    import dash

    from dashapp import background_manager
    from dashapp.background import EXPIRE_S, QUEUE

    url = "redis://127.0.0.1:1/3"
    mgr = background_manager(tmp_path / "cache", bus=url)
    assert isinstance(mgr, dash.CeleryManager) and mgr.expire == EXPIRE_S
    conf = mgr.handle.conf
    assert conf.broker_url == url and conf.result_backend == url
    assert conf.task_default_queue == QUEUE
    assert type(background_manager(tmp_path / "cache")).__name__ == "BoundedDiskcacheManager"


def test_the_celery_worker_refuses_to_start_without_a_bus():
    from dashapp.celery_worker import main

    with pytest.raises(SystemExit, match="--bus"):
        main(["--no-ingest", "--db", "x.db"])


@pytest.mark.slow
def test_kill_9_of_the_app_leaves_no_celery_worker_behind(tmp_path):
    """The Celery worker watches its parent: an app killed with SIGKILL (no chance to
    stop its child) still leaves no orphan following the bus."""
    from ingest.store import open_store

    redis = start_redis()
    db = tmp_path / "market.db"
    open_store(str(db)).close()  # the schema, as an ingest process makes it
    log = tmp_path / "app.log"
    app = subprocess.Popen(
        [sys.executable, "app.py", "--no-ingest", "--db", str(db), "--bus", redis.url(0),
         "--market", "spot", "--symbols", "BTCUSDT,ETHUSDT", "--ring-capacity", "10000",
         "--port", str(free_port())],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    child: list[int] = []
    try:
        def worker_up() -> bool:
            assert app.poll() is None, log.read_text()[-3000:]
            out = subprocess.run(["pgrep", "-P", str(app.pid), "-f", "dashapp.celery_worker"],
                                 capture_output=True, text=True).stdout.split()
            child[:] = [int(p) for p in out]
            return bool(child) and "ready" in log.read_text()

        _wait(worker_up, 120, "the app's Celery worker ready")
        app.kill()
        app.wait(10)

        def gone() -> bool:
            try:
                os.kill(child[0], 0)
            except ProcessLookupError:
                return True
            # a zombie counts as gone: its parent (the killed app) cannot reap it
            with open(f"/proc/{child[0]}/stat") as fh:
                return fh.read().split(") ", 1)[1].startswith("Z")

        _wait(gone, 30, "the orphaned Celery worker to stop")
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        for pid in child:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        redis.stop()
        shutil.rmtree(redis.root, ignore_errors=True)
