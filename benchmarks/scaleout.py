"""Scale-out on real engines (issue #18): PostgreSQL ingest, Redis fan-out, N workers.

``python -m benchmarks.scaleout [--quick] [--trades N] [--latency-seconds S]
[--tabs 50] [--tab-seconds S] [--workers 4]``

Starts its own throw-away servers on free ports (:mod:`benchmarks._servers`: PostgreSQL
with the server's default durability, ``redis-server`` without persistence) and real
processes; nothing outside a temp dir is touched. Three measurements:

(a) **ingest into PostgreSQL**: ``--trades`` synthetic trades through the real store
    writer (:func:`benchmarks.store_postgres.run`: ``add_trade`` as the feed thread
    does, until ``flush()``), then exact loss checks (count, ids per instrument, a
    re-delivered 10 % ignored). Goal >= 50,000 trades/s, zero loss.
(b) **fan-out latency**: the replay exchange (the bundled tape at recorded speed, times
    shifted to now, looping) feeds ``python -m ingest --db postgresql://… --bus
    redis://…`` (the real feed, ingestor, store writer and publisher); a separate probe
    process does what a ``--no-ingest --bus`` worker does (``RedisFollower`` +
    ``BusFeed`` + a real ``Ingestor``) AND holds a second WebSocket connection to the
    exchange. Per trade: visible in the probe's ``Ingestor`` (``on_trade`` returned)
    minus the moment the same frame arrived on its own connection, i.e. trade received
    (the ingest process reads the same frame at the same moment, loopback) -> visible
    in a worker; one clock. Goal p99 <= 50 ms.
(c) **50 tabs polling the pair page** every 500 ms (the page's interval) with real
    Dash callback requests (:class:`benchmarks._dash_client.DashPage`: the select
    callback once, then the refresh callback per tick), spread round-robin over 1
    and then ``--workers`` ``python app.py --no-ingest --db … --bus …`` processes,
    while the ingest of (b) keeps publishing (each app.py with ``--bus`` also
    starts its Celery worker for background callbacks, as deployed). p50/p99 of the refresh round trip per
    setup, and the ratio 1 worker / N workers. Any answer other than 200/204 is an
    error and fails the run.

Defaults: 1,000,000 trades, 60 s for (b) and per setup of (c) (~6 minutes);
``--quick``: 200,000 trades and 10 s windows (~70 s). Each part records the machine's
1-minute load average (a 2-core box shared with other jobs: read figures with it).

Output: a readable table, then as the LAST line one JSON object (figures, goals,
baselines, ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTCUSDT", "ETHUSDT")  # the bundled spot tape's
INGEST_GOAL = 50_000  # trades/s, zero loss
P99_GOAL_MS = 50.0
TAB_POLL_S = 0.5  # the pair page's dcc.Interval
#: Earlier figures on this machine kind (docs/scaleout.md): the store alone
#: (benchmarks.store_postgres, 1M trades) and the bus alone (benchmarks.bus_fanout,
#: 4 readers at 2,000 trades/s).
BASELINES = {"store_postgres_ticks_per_s": 145_325, "bus_fanout_p99_ms": 4.43}


# ------------------------------------------------------------- the exchange
def replay_main() -> int:
    """The replay exchange on the bundled tape, times shifted to now (as ``app.py
    --replay`` does), looping, on a free port; prints its ``ws://`` base."""
    from ingest.replay import APP_LOOP_SEAM_IDS, ReplayServer
    from ingest.replay.tapes import default_sample_files, load_tape, shift_times

    tape = load_tape(default_sample_files("spot"))
    tape = shift_times(tape, int(time.time() * 1000) - tape.first_time_ms)
    server = ReplayServer(tape, port=0, speed=1.0, loop=True, profile="spot",
                          loop_seam_ids=APP_LOOP_SEAM_IDS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(server.ws_base, flush=True)
    stop.wait()
    server.stop()
    return 0


# ------------------------------------------------------------------ (b) the probe
def probe_main(url: str, ws_base: str, seconds: float) -> int:
    """A worker's follow path without the web server, and a second client of the
    exchange: per trade, visible in the worker's ``Ingestor`` minus received from the
    exchange (the ingest process reads the same frames at the same moment)."""
    import orjson
    import websocket

    from ingest.feeds import feed_protocol

    received: dict[tuple[str, int], float] = {}
    ws = websocket.create_connection(
        feed_protocol(market="spot").stream_url(SYMBOLS, "trade", ws_base), timeout=10)

    def listen() -> None:
        while True:
            try:
                frame = ws.recv()
            except Exception:
                return
            now = time.time() * 1000
            d = orjson.loads(frame).get("data") or {}
            if "t" in d:
                received[(d["s"], d["t"])] = now

    threading.Thread(target=listen, daemon=True).start()
    from analytics.engine import MarketEngine
    from analytics.instruments import DEFAULT_VENUE, Instrument
    from ingest.bus import open_follower
    from ingest.bus.follow import BusFeed
    from ingest.pipeline import Ingestor

    ing = Ingestor(list(SYMBOLS), None, MarketEngine(list(SYMBOLS)), write=False,
                   ring_capacity=200_000)
    ing.external_clock = True
    lat: list[float] = []
    on_trade = ing.on_trade

    def visible(t) -> None:
        on_trade(t)
        got = received.get((t.symbol, t.trade_id))
        if got is not None:  # not the 60 s a follower reads back on joining
            lat.append(time.time() * 1000 - got)

    ing.on_trade = visible
    fol = open_follower(url, refresh_s=0.05)
    feed = BusFeed(ing, fol, lambda *a: [], name_of=lambda i: i.symbol,
                   resolve=lambda n: Instrument(DEFAULT_VENUE, "spot", n))
    fol.connect()
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        feed.apply(fol.read(100))
    fol.close()
    ws.close()
    print(json.dumps({"lat": [round(x, 3) for x in lat], "received": len(received)}),
          flush=True)
    return 0


# ------------------------------------------------------------- (c) a tab client
def tabs_main(urls: list[str], first: int, count: int, seconds: float) -> int:
    """``count`` tabs (global numbers ``first``…), tab i on ``urls[i % len(urls)]``,
    each loading ``/pair`` and selecting; then "ready", and from the start time the
    driver writes on stdin (once every client is ready) a tick every 500 ms."""
    import requests

    from benchmarks._dash_client import DashPage, http_fetch
    from dashapp.ids import Pair

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    pages: list = []

    def setup(i: int) -> None:
        s = requests.Session()
        url = urls[i % len(urls)]
        try:
            s.get(url + "/pair", timeout=60).raise_for_status()
            page = DashPage(http_fetch(s, url, timeout=30), "/pair")
            page.call(page.callback(output=f'"type":"{Pair.ERROR}"'),
                      ({"type": Pair.A, "index": 0}, "value"), match=0)
            page.call(page.callback(input_id=Pair.TICK_INTERVAL, prop="n_intervals"),
                      ({"type": Pair.SELECTION, "index": 0}, "data"), match=0)
            with lock:
                pages.append(page)
        except Exception as exc:
            with lock:
                errors.append(f"setup tab {i}: {type(exc).__name__}: {str(exc)[:200]}")

    threads = [threading.Thread(target=setup, args=(first + k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def poll(k: int, page) -> None:
        next_t = start_at + (k % 10) * TAB_POLL_S / 10  # tabs not in lock step
        end = start_at + seconds
        while True:
            delay = next_t - time.time()
            if delay > 0:
                time.sleep(delay)
            if time.time() >= end:
                return
            t0 = time.perf_counter()
            try:
                page.tick(Pair.TICK_INTERVAL, match=0)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    lat.append(ms)
            except Exception as exc:  # counted; a browser would poll on
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            next_t += TAB_POLL_S
            if next_t < time.time():  # an interval does not queue missed ticks
                next_t = time.time()

    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    threads = [threading.Thread(target=poll, args=(first + k, p)) for k, p in enumerate(pages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"tabs": len(pages), "lat": [round(x, 3) for x in lat],
                      "errors": len(errors), "first_errors": errors[:3]}), flush=True)
    return 0


# --------------------------------------------------------------------- driver
class Procs:
    """Every process the benchmark starts, ended (by its own pid) at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, *args], cwd=ROOT,
                             stderr=(self.tmp / log).open("w"),
                             env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def _ready_line(p: subprocess.Popen, what: str, log: Path) -> None:
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise SystemExit(f"{what} failed to start: {line!r}\n{log.read_text()[-3000:]}")


def _pct(xs, q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 2) if len(xs) else None


def _load() -> float:
    """The machine's 1-min load average: on a shared 2-core box, what else ran."""
    return round(os.getloadavg()[0], 2)


def _wait_stored(db_url: str, n: int, timeout_s: float = 120) -> int:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                got = c.execute("SELECT count(*) FROM trades").fetchone()[0]
            if got >= n:
                return got
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the ingest process stored fewer than {n} trades in "
                             f"{timeout_s:.0f} s (log: ingest.log)")
        time.sleep(0.5)


def _start_workers(procs: Procs, n: int, db: str, bus: str) -> tuple[list, list[str]]:
    import requests

    from benchmarks._servers import free_port

    ps, urls = [], []
    for k in range(n):
        port = free_port()
        ps.append(procs.start(
            ["app.py", "--no-ingest", "--db", db, "--bus", bus, "--market", "spot",
             "--symbols", ",".join(SYMBOLS), "--ring-capacity", "200000",
             "--log-level", "WARNING", "--port", str(port)],
            f"worker-{n}-{k}.log", stdout=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 180
    for k, (p, url) in enumerate(zip(ps, urls, strict=True)):
        while True:
            if p.poll() is not None:
                raise SystemExit(f"worker {url} exited {p.returncode}:\n"
                                 f"{(procs.tmp / f'worker-{n}-{k}.log').read_text()[-3000:]}")
            try:
                h = requests.get(url + "/api/health", timeout=5)
                if h.status_code == 200 and (h.json().get("bus") or {}).get("connected"):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {url} not ready in 180 s")
            time.sleep(0.5)
    return ps, urls


def run_tabs(procs: Procs, urls: list[str], tabs: int, seconds: float,
             clients: int = 5) -> dict:
    per = [tabs // clients + (k < tabs % clients) for k in range(clients)]
    ps, first = [], 0
    for k, cnt in enumerate(per):
        ps.append(procs.start(
            ["-m", "benchmarks.scaleout", "--tabs-client", ",".join(urls), "--first",
             str(first), "--count", str(cnt), "--seconds", str(seconds)],
            f"tabs-{len(urls)}-{k}.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True))
        first += cnt
    for k, p in enumerate(ps):  # every tab has loaded its page and selected
        _ready_line(p, "tab client", procs.tmp / f"tabs-{len(urls)}-{k}.log")
    start_at = time.time() + 1.0  # one clock for all clients
    for p in ps:
        p.stdin.write(f"{start_at!r}\n")
        p.stdin.flush()
    res = []
    for p in ps:
        out, _ = p.communicate(timeout=seconds + 300)
        res.append(json.loads(out.strip().splitlines()[-1]))
    lat = np.concatenate([np.asarray(r["lat"], dtype=float) for r in res])
    return {"workers": len(urls), "tabs": sum(r["tabs"] for r in res), "seconds": seconds,
            "requests": int(len(lat)), "requests_per_s": round(len(lat) / seconds, 1),
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "max_ms": round(float(lat.max()), 2) if len(lat) else None,
            "errors": sum(r["errors"] for r in res),
            "first_errors": [e for r in res for e in r["first_errors"]][:3]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1.5 minutes: smaller runs")
    ap.add_argument("--trades", type=int, help="(a) trades (default 1,000,000; quick 200,000)")
    ap.add_argument("--latency-seconds", type=float, help="(b) seconds (default 60; quick 10)")
    ap.add_argument("--tabs", type=int, default=50, help="(c) simulated tabs (default 50)")
    ap.add_argument("--tab-seconds", type=float, help="(c) seconds per setup (default 60; quick 10)")
    ap.add_argument("--workers", type=int, default=4, help="(c) the many-workers setup (default 4)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--replay-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bus", help=argparse.SUPPRESS)
    ap.add_argument("--tabs-client", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.replay_server:
        return replay_main()
    if a.probe:
        return probe_main(a.bus, a.probe, a.seconds)
    if a.tabs_client:
        return tabs_main(a.tabs_client.split(","), a.first, a.count, a.seconds)
    def default(v, quick, full):
        return (quick if a.quick else full) if v is None else v

    trades = default(a.trades, 200_000, 1_000_000)
    lat_s = default(a.latency_seconds, 10.0, 60.0)
    tab_s = default(a.tab_seconds, 10.0, 60.0)
    if trades < 1000:
        ap.error("--trades must be >= 1000")
    if lat_s <= 0 or tab_s <= 0:
        ap.error("--latency-seconds and --tab-seconds must be > 0")
    if a.tabs < 1 or a.workers < 2:
        ap.error("--tabs must be >= 1 and --workers >= 2")

    from benchmarks import store_postgres
    from benchmarks._servers import start_postgres, start_redis

    tmp = Path(tempfile.mkdtemp(prefix="scaleout-"))
    procs = Procs(tmp)
    pg = start_postgres(durable=True)
    redis = None
    try:
        redis = start_redis()
        bus = redis.url(0)
        # (a)
        print(f"(a) {trades:,} trades into PostgreSQL …", file=sys.stderr, flush=True)
        load = {"a": _load()}
        ingest = store_postgres.run(pg.create_db("bench_ingest"), trades)
        # (b): the ingest process, then the probe
        live_db = pg.create_db("bench_live")
        print("(b) python -m ingest --db … --bus … on the replay exchange, a probe following",
              file=sys.stderr,
              flush=True)
        rep = procs.start(["-m", "benchmarks.scaleout", "--replay-server"], "replay.log",
                          stdout=subprocess.PIPE, text=True)
        ws_base = rep.stdout.readline().strip()
        if not ws_base.startswith("ws://"):
            raise SystemExit(f"replay failed: {(tmp / 'replay.log').read_text()[-3000:]}")
        ing = procs.start(["-m", "ingest", "--feed-url", ws_base, "--rest-url", "off",
                           "--market", "spot", "--symbols", ",".join(SYMBOLS), "--stream",
                           "trade", "--db", live_db, "--bus", bus, "--log-level", "WARNING"],
                          "ingest.log", stdout=subprocess.DEVNULL)
        _wait_stored(live_db, 100)
        probe = procs.start(["-m", "benchmarks.scaleout", "--probe", ws_base, "--bus", bus,
                             "--seconds", str(lat_s)], "probe.log",
                            stdout=subprocess.PIPE, text=True)
        _ready_line(probe, "probe", tmp / "probe.log")
        load["b"] = _load()
        out, _ = probe.communicate(timeout=lat_s + 120)
        lat = np.asarray(json.loads(out.strip().splitlines()[-1])["lat"], dtype=float)
        fan = {"trades": int(len(lat)), "seconds": lat_s,
               "trades_per_s": round(len(lat) / lat_s, 1),
               "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
               "max_ms": round(float(lat.max()), 2) if len(lat) else None,
               "goal_p99_ms": P99_GOAL_MS,
               "ok": bool(len(lat) and np.percentile(lat, 99) <= P99_GOAL_MS)}
        # (c)
        tabs = {}
        for n in (1, a.workers):
            print(f"(c) {a.tabs} tabs on {n} worker(s) …", file=sys.stderr, flush=True)
            ws, urls = _start_workers(procs, n, live_db, bus)
            try:
                load[f"c{n}"] = _load()
                tabs[n] = run_tabs(procs, urls, a.tabs, tab_s)
            finally:
                for w in ws:
                    procs.stop(w)
        if ing.poll() is not None:
            raise SystemExit(f"the ingest process died:\n{(tmp / 'ingest.log').read_text()[-3000:]}")
    finally:
        procs.stop_all()
        if redis is not None:
            redis.stop()
        pg.stop()

    ins, redo = ingest["insert"], ingest["redelivered"]
    loss_free = bool(ins["stored"] == ins["trades"] == ins["rows_written"] and ins["ids_exact"]
                     and redo["stored_after"] == ins["trades"]
                     and redo["ignored"] == redo["trades"])
    one, many = tabs[1], tabs[a.workers]

    def ratio(x, y):
        return round(x / y, 2) if x and y else None

    ratios = {"p50_1_over_n": ratio(one["p50_ms"], many["p50_ms"]),
              "p99_1_over_n": ratio(one["p99_ms"], many["p99_ms"])}
    print("scale-out on real engines (PostgreSQL 15, redis-server, real processes)"
          + (" --quick" if a.quick else ""))
    def row(label: str, figure: str, goal: str, result: str) -> None:
        print(f"{label:<44}{figure:>18}{goal:>15}  {result}")

    row("measurement", "figure", "goal", "result")
    row("(a) ingest into PostgreSQL, trades/s", f"{ins['ticks_per_s']:,}",
        f">= {INGEST_GOAL:,}", f"{ins['trades']:,} trades, stored {ins['stored']:,}, ids "
        f"exact {ins['ids_exact']}, re-delivered ignored {redo['ignored']:,}/{redo['trades']:,}")
    row("(b) fan-out received -> visible p50/p99", f"{fan['p50_ms']} / {fan['p99_ms']} ms",
        f"p99 <= {P99_GOAL_MS:g} ms",
        f"{fan['trades']:,} trades over {lat_s:g} s, max {fan['max_ms']} ms")
    for n, r in tabs.items():
        row(f"(c) {r['tabs']} tabs on {n} worker(s), p50/p99",
            f"{r['p50_ms']} / {r['p99_ms']} ms", "",
            f"{r['requests']:,} refreshes ({r['requests_per_s']}/s), errors {r['errors']}")
    row(f"(c) ratio 1 worker / {a.workers}, p50/p99",
        f"{ratios['p50_1_over_n']} / {ratios['p99_1_over_n']}", "", "")
    ok = {"ingest": bool(ins["ticks_per_s"] >= INGEST_GOAL and loss_free),
          "fanout_p99": fan["ok"], "tabs_no_errors": not one["errors"] and not many["errors"]}
    print("machine load (1-min average, 2 cores shared) at the start of each: "
          + ", ".join(f"{k} {v}" for k, v in load.items()))
    print(f"goals met: {ok}")
    print(json.dumps({
        "benchmark": "scaleout", "quick": a.quick,
        "ingest": {**ins, "loss_free": loss_free, "redelivered": redo,
                   "goal_ticks_per_s": INGEST_GOAL,
                   "ratio_to_goal": round(ins["ticks_per_s"] / INGEST_GOAL, 2),
                   "baseline_ticks_per_s": BASELINES["store_postgres_ticks_per_s"],
                   "ratio_to_baseline": round(ins["ticks_per_s"]
                                              / BASELINES["store_postgres_ticks_per_s"], 2)},
        "fanout": {**fan, "baseline_p99_ms": BASELINES["bus_fanout_p99_ms"],
                   "ratio_to_goal": ratio(fan["p99_ms"], P99_GOAL_MS)},
        "tabs": {str(n): r for n, r in tabs.items()}, "tab_ratios": ratios,
        "goals_met": ok, "loadavg_1min": load, "cpus": os.cpu_count(),
    }, separators=(",", ":")), flush=True)
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
