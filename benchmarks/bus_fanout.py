"""Live bus fan-out: one Redis Streams publisher, N worker processes following it.

``python -m benchmarks.bus_fanout [--bus redis://HOST:PORT/N] [--readers 4]
[--trades 200000] [--rate 2000] [--seconds 10]``

Without ``--bus`` it starts a throw-away ``redis-server`` (``benchmarks/_servers.py``: free
port, no persistence). Each reader is its own process doing what a ``--no-ingest
--bus`` worker does: a ``RedisFollower`` (``XREAD BLOCK``) feeding a real ``Ingestor``
(ring + engine, 1 s / 1 m / 5 m bars) through ``BusFeed``; a trade is *visible* when
``Ingestor.on_trade`` has returned (a page's next 500 ms read would see it).

Two phases, each on fresh streams (its own key prefix):

1. **throughput**: the publisher queues ``--trades`` trades (2 instruments) as fast
   as ``RedisPublisher.trade`` takes them; timed until the last reader holds the last
   one. Trades/s per reader, and messages/s delivered (trades x readers / s).
2. **latency**: ``--rate`` trades/s for ``--seconds`` seconds, each stamped with the
   wall clock when handed to the publisher (``event_ms``); each reader records
   visible - stamped per trade. p50/p99/max over all readers (1 ms resolution: the
   stamp is whole ms, so figures read up to 1 ms high). Goal: p99 <= 50 ms.

Output: a readable table, then as the LAST line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from ingest.models import Trade

SYMBOLS = ("BTCUSDT", "ETHUSDT")
P99_GOAL_MS = 50.0


# ------------------------------------------------------------------------ reader
def reader(url: str, prefix: str, expect: int, timeout_s: float) -> dict:
    from analytics.engine import MarketEngine
    from analytics.instruments import DEFAULT_VENUE, Instrument
    from ingest.bus import open_follower
    from ingest.bus.follow import BusFeed
    from ingest.pipeline import Ingestor

    ing = Ingestor(list(SYMBOLS), None, MarketEngine(list(SYMBOLS)), write=False,
                   ring_capacity=max(1_000, expect + 10))
    ing.external_clock = True
    lat: list[float] = []
    seen = [0]
    first_ms: list[float] = []
    on_trade = ing.on_trade

    def visible(t: Trade) -> None:
        on_trade(t)
        now = time.time() * 1000
        seen[0] += 1
        if t.event_ms == 0:  # the warm-up trades that made the streams exist
            return
        lat.append(now - t.event_ms)
        if not first_ms:
            first_ms.append(now)

    ing.on_trade = visible
    fol = open_follower(url, prefix=prefix, start_back_ms=10**12, refresh_s=0.05)
    feed = BusFeed(ing, fol, lambda *a: [], name_of=lambda i: i.symbol,
                   resolve=lambda n: Instrument(DEFAULT_VENUE, "spot", n))
    fol.connect()
    print("ready", flush=True)
    deadline = time.monotonic() + timeout_s
    while seen[0] < expect and time.monotonic() < deadline:
        feed.apply(fol.read(100))
    last_ms = time.time() * 1000
    fol.close()
    return {"seen": seen[0], "first_ms": first_ms[0] if first_ms else None,
            "last_ms": last_ms, "lat": [round(x, 3) for x in lat]}


# ------------------------------------------------------------------------ driver
def _start_readers(url: str, prefix: str, n: int, expect: int, timeout_s: float) -> list:
    procs = []
    for _ in range(n):
        p = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bus_fanout", "--reader", "--bus", url,
             "--prefix", prefix, "--expect", str(expect), "--timeout", str(timeout_s)],
            stdout=subprocess.PIPE, text=True,
        )
        procs.append(p)
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"reader failed to start: {line!r}")
    return procs


def _collect(procs: list) -> list[dict]:
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=600)
        out.append(json.loads(text.strip().splitlines()[-1]))
    return out


def _publisher(url: str, prefix: str):
    from analytics.instruments import DEFAULT_VENUE, Instrument
    from ingest.bus import open_publisher

    return open_publisher(url, prefix=prefix,
                          resolve=lambda n: Instrument(DEFAULT_VENUE, "spot", n)).start()


def _trade(i: int, stamp_ms: int) -> Trade:
    sym = SYMBOLS[i % 2]
    return Trade(sym, 1 + i // 2, 1_700_000_000_000 + i * 3, 30_000.0 + (i % 97) * 0.5,
                 0.001 * (i % 11 + 1), i % 3 == 0, stamp_ms)


def throughput(url: str, readers: int, n: int) -> dict:
    prefix = f"bench:tp:{time.time_ns()}"
    procs = _start_readers(url, prefix, readers, n, 300)
    pub = _publisher(url, prefix)
    t0 = time.time() * 1000
    now = int(t0)
    for i in range(n):
        pub.trade(_trade(i, now))
    pub.flush(300)
    pub_s = (time.time() * 1000 - t0) / 1000
    res = _collect(procs)
    pub.close()
    end = max(r["last_ms"] for r in res)
    secs = (end - t0) / 1000
    return {"readers": readers, "trades": n, "publish_s": round(pub_s, 3),
            "seconds": round(secs, 3), "all_delivered": all(r["seen"] == n for r in res),
            "trades_per_s_per_reader": round(n / secs),
            "messages_per_s": round(n * readers / secs),
            "published_per_s": round(n / pub_s)}


def latency(url: str, readers: int, rate: float, seconds: float) -> dict:
    prefix = f"bench:lat:{time.time_ns()}"
    n = int(rate * seconds)
    pub = _publisher(url, prefix)
    # the streams exist before the readers start (a worker joins a running bus)
    pub.trades([_trade(i, 0) for i in (-2, -1)])
    pub.flush(10)
    procs = _start_readers(url, prefix, readers, n + 2, seconds + 120)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pub.trade(_trade(i, int(time.time() * 1000)))
    pub.flush(60)
    res = _collect(procs)
    pub.close()
    lat = np.concatenate([np.asarray(r["lat"], dtype=float) for r in res])
    return {"readers": readers, "rate": rate, "seconds": seconds, "trades": n,
            "all_delivered": all(r["seen"] == n + 2 for r in res),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
            "p99_goal_ms": P99_GOAL_MS,
            "p99_ok": bool(np.percentile(lat, 99) <= P99_GOAL_MS)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bus_fanout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bus", help="redis://HOST:PORT/N (default: start a redis-server)")
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=2_000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=300, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.reader:
        print(json.dumps(reader(a.bus, a.prefix, a.expect, a.timeout)), flush=True)
        return 0
    if a.readers < 1 or a.trades < 1 or a.rate <= 0 or a.seconds <= 0:
        ap.error("--readers, --trades, --rate and --seconds must be positive")
    server = None
    url = a.bus
    if url is None:
        from benchmarks._servers import start_redis

        server = start_redis()
        url = server.url(0)
    try:
        tp = throughput(url, a.readers, a.trades)
        lat = latency(url, a.readers, a.rate, a.seconds)
    finally:
        if server is not None:
            server.stop()
    print(f"bus fan-out on {url}: 1 publisher -> {a.readers} reader processes "
          f"(each a RedisFollower + BusFeed + Ingestor)")
    print(f"{'phase':<12}{'trades':>10}{'seconds':>10}{'per reader/s':>14}"
          f"{'messages/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(f"{'throughput':<12}{tp['trades']:>10,}{tp['seconds']:>10.2f}"
          f"{tp['trades_per_s_per_reader']:>14,}{tp['messages_per_s']:>12,}"
          f"{'':>9}{'':>9}{'':>9}")
    print(f"{'latency':<12}{lat['trades']:>10,}{lat['seconds']:>10.2f}"
          f"{round(lat['rate']):>14,}{round(lat['rate'] * a.readers):>12,}"
          f"{lat['p50_ms']:>9.2f}{lat['p99_ms']:>9.2f}{lat['max_ms']:>9.2f}")
    print(f"every trade delivered to every reader: "
          f"{tp['all_delivered'] and lat['all_delivered']}; p99 <= {P99_GOAL_MS:g} ms: "
          f"{lat['p99_ok']}")
    print(json.dumps({"benchmark": "bus_fanout", "throughput": tp, "latency": lat}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
