"""The markets board refresh at 300 instruments (issue #19, section ``board`` of
``python -m benchmarks.market``).

``python -m benchmarks._market_board [--quick]`` runs this section alone.

What plays: :func:`ingest.replay.wide.wide_tape` (``n=300``, perp: BTCUSDT and
ETHUSDT the REAL bundled tapes, 298 instruments DERIVED from them with a heavy head and
a Zipf-like tail, ``docs/replay.md``), fed trade by trade into a real
:class:`analytics.engine.MarketEngine` and one :class:`ingest.ring.TickRing` per
instrument, the bar clock ticking every second, at the tape's own pace (1x) in tape
time. Then every 500 ms of tape time one markets refresh, exactly the page's server
path:

* the board build (:meth:`dashapp.board.BoardCache.build_now`: every instrument's row
  from its bars, last trade and quote; in the app it runs once per 500 ms for all tabs
  in a background thread, never in a refresh);
* the refresh itself (:func:`dashapp.pages.markets.marketsview.board_refresh`: the
  changed cells since the version the tab holds, plus the sparkline closes of the 25
  rows on screen, which the tab then holds, as ``assets/markets_board.js`` does), timed
  in-process (the server time: wall clock, and the thread's CPU time, which the
  other processes on a shared machine cannot inflate), and its JSON size in bytes (the payload; Dash's
  envelope and the feed badges add about 300 bytes).

The first refresh of a tab is the full board (reported apart: it is sent once per page
load). Goals per steady refresh at 300 instruments: server time <= 10 ms, <= 10 KB;
``meets_goal`` judges the refresh's CPU time p99 and the largest payload (the wall
clock p99 is reported too, with the machine's load: on a shared 2-core machine other
processes' work lands in it).
This process holds the market in-process; no RSS is measured here. The full run then
does the same through a real app over HTTP (:func:`app_refreshes`: the whole answer's
bytes, with Dash's envelope and the feed strip, and the round trip).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

N_INSTRUMENTS = 300
VISIBLE_ROWS = 25
REFRESH_MS = 500
GOAL_SERVER_MS = 10.0
GOAL_BYTES = 10_240


class TapeMarket:
    """The reads the markets page makes of the market facade, over a real engine and
    rings fed from a tape (what :class:`dashapp.facade.LiveMarketData` reads of a
    runtime)."""

    def __init__(self, names: list[str], market: str) -> None:
        from analytics.engine import MarketEngine
        from analytics.instruments import Universe
        from ingest.ring import TickRing

        self.engine = MarketEngine(list(names))
        self.rings = {n: TickRing() for n in names}
        self.universe = Universe.parse(names, market)
        self.now_ms: int | None = None

    def names(self) -> tuple[str, ...]:
        return tuple(self.rings)

    def instrument(self, name: str):
        return self.universe.by_name(name)

    def bars(self, name: str, tf_ms: int):
        return self.engine.bars(name, tf_ms)

    def bars_of(self, names, tf_ms: int) -> dict:
        with self.engine.lock:
            return {n: self.engine.bars(n, tf_ms) for n in names}

    def recent_bars_of(self, names, tf_ms: int, n: int) -> dict:
        with self.engine.lock:
            return {s: self.engine.bars_tail(s, tf_ms, n) for s in names}

    def last_tick(self, name: str):
        return self.rings[name].last()

    def quote(self, name: str):
        return None  # the wide tape is trades only (no book)

    def exchange_now_ms(self) -> int | None:
        return self.now_ms


class Player:
    """Feeds a tape's trades into a :class:`TapeMarket` up to a time, the bar clock
    ticking each second."""

    def __init__(self, tape, market: TapeMarket) -> None:
        ev = [e for e in tape.events if e.kind in ("trade", "aggTrade")]
        self.t = np.array([e.time_ms for e in ev], dtype=np.int64)
        self.name = [tape.name_of(e) for e in ev]
        self.tid = [e.trade_id for e in ev]
        self.px = [float(e.data["p"]) for e in ev]
        self.qty = [float(e.data["q"]) for e in ev]
        self.m = [bool(e.data["m"]) for e in ev]
        self.i = 0
        self.market = market
        self.clock_ms = int(self.t[0]) // 1000 * 1000

    def play_until(self, end_ms: int) -> None:
        eng, rings, j = self.market.engine, self.market.rings, self.i
        stop = int(np.searchsorted(self.t, end_ms, side="left"))
        while j < stop:
            t = int(self.t[j])
            while self.clock_ms + 1000 <= t:
                self.clock_ms += 1000
                eng.on_clock(self.clock_ms)
            n = self.name[j]
            rings[n].append(t, self.tid[j], self.px[j], self.qty[j], self.m[j])
            eng.on_trade(n, t, self.tid[j], self.px[j], self.qty[j], self.m[j])
            j += 1
        self.i = j
        while self.clock_ms + 1000 <= end_ms:
            self.clock_ms += 1000
            eng.on_clock(self.clock_ms)
        self.market.now_ms = end_ms


def app_refreshes(n: int, speed: str = "1") -> dict:
    """The same refresh through a real app: ``python app.py --replay --replay-universe
    300 --market futures`` in a subprocess, its markets callback posted every 500 ms over
    HTTP as the browser's renderer builds it (:class:`benchmarks._dash_client.DashPage`),
    the tab's store fed back as ``assets/markets_board.js`` does (version held, the
    sparklines of the 25 top rows by volume). Bytes = the whole HTTP answer (Dash's
    envelope, the board, the feed strip); ms = the round trip."""
    import subprocess
    import tempfile
    from pathlib import Path

    import requests

    from benchmarks._dash_client import DashPage, http_fetch
    from benchmarks._servers import free_port
    from dashapp.ids import Markets

    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="market-board-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--replay", "--replay-universe", str(N_INSTRUMENTS),
         "--market", "futures", "--replay-speed", speed, "--db", str(tmp / "b.db"),
         "--port", str(port)],
        cwd=root, stdout=(tmp / "app.log").open("w"), stderr=subprocess.STDOUT)
    session = requests.Session()
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited: {(tmp / 'app.log').read_text()[-2000:]}")
            try:
                h = session.get(f"{base}/api/health", timeout=2).json()
                traded = sum(1 for k, v in h["symbols"].items()
                             if ":" in k and v.get("last_trade_id") is not None)
                if traded >= 250:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("app not ready (250 instruments traded) in 180 s")
            time.sleep(0.5)
        page = DashPage(http_fetch(session, base), "/")
        sparks: dict = {}
        vis: list[str] = []
        sizes, rtts = [], []
        first = None
        for k in range(n + 1):
            t0 = time.perf_counter()
            size = page.tick(Markets.TICK_INTERVAL)
            rtt = (time.perf_counter() - t0) * 1000
            board = page.get_prop(Markets.BOARD, "data")
            if board.get("full"):
                vis = [r["name"] for r in sorted(board["rows"],
                                                 key=lambda r: -(r["volume"] or 0))][:VISIBLE_ROWS]
            sparks.update({nm: sp[0] for nm, sp in board.get("spark", {}).items()})
            page.set_prop(Markets.CLIENT, "data", {
                "v": board["v"], "tf": board["tf"], "vis": {nm: sparks.get(nm) for nm in vis}})
            if k == 0:
                first = size
            else:
                sizes.append(size)
                rtts.append(rtt)
            time.sleep(max(0.0, REFRESH_MS / 1000 - (time.perf_counter() - t0)))
        return {"app_refreshes": len(sizes), "app_bytes_p50": int(_pct(sizes, 50)),
                "app_bytes_max": int(max(sizes)), "app_first_bytes": first,
                "app_rtt_ms_p50": round(_pct(rtts, 50), 2),
                "app_rtt_ms_p99": round(_pct(rtts, 99), 2), "app_replay_speed": speed}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pct(xs, q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else float("nan")


def run(quick: bool = False) -> tuple[list[tuple[str, str]], dict]:
    from dashapp.board import BoardCache, board_cache
    from dashapp.pages.markets.marketsview import board_refresh
    from ingest.replay.wide import wide_tape

    t_start = time.perf_counter()
    tape = wide_tape(N_INSTRUMENTS, market="perp")
    names = list(tape.symbols)
    market = TapeMarket(names, "perp")
    player = Player(tape, market)
    warm_s = 60 if quick else 180
    refreshes = 40 if quick else 240
    t0 = int(player.t[0])
    player.play_until(t0 + warm_s * 1000)
    cache: BoardCache = board_cache(market)
    cache.build_now()

    client: dict = {"v": None, "tf": "1s", "vis": {}}
    sparks: dict = {}
    server_ms, cpu_ms, sizes, builds, cells = [], [], [], [], []
    full_bytes = None
    end = t0 + warm_s * 1000
    for k in range(refreshes + 1):
        end += REFRESH_MS
        player.play_until(end)
        b0 = time.perf_counter()
        board = cache.build_now()
        builds.append((time.perf_counter() - b0) * 1000)
        s0, c0 = time.perf_counter(), time.thread_time()
        msg = board_refresh(market, client, "1s")
        elapsed = (time.perf_counter() - s0) * 1000
        cpu = (time.thread_time() - c0) * 1000
        size = len(json.dumps(msg, separators=(",", ":")))
        if msg.get("full"):
            full_bytes = size
        if k:  # the first is the page load's full board
            server_ms.append(elapsed)
            cpu_ms.append(cpu)
            sizes.append(size)
            cells.append(sum(len(v) // 2 for v in msg.get("set", {}).values()))
        # the tab: holds the version, and the sparklines of the rows on screen (the
        # default sort: volume, descending)
        for name, s in msg["spark"].items():
            sparks[name] = s[0]
        top = sorted(board.rows.values(), key=lambda r: -(r["volume"] or 0))[:VISIBLE_ROWS]
        client = {"v": msg["v"], "tf": "1s",
                  "vis": {r["name"]: sparks.get(r["name"]) for r in top}}
    figures = {
        "instruments": len(names),
        "refreshes": len(server_ms),
        "server_ms_p50": round(_pct(server_ms, 50), 3),
        "server_ms_p99": round(_pct(server_ms, 99), 3),
        "cpu_ms_p50": round(_pct(cpu_ms, 50), 3),
        "cpu_ms_p99": round(_pct(cpu_ms, 99), 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "bytes_p50": int(_pct(sizes, 50)),
        "bytes_max": int(max(sizes)),
        "cells_changed_p50": int(_pct(cells, 50)),
        "full_board_bytes": full_bytes,
        "build_ms_p50": round(_pct(builds, 50), 2),
        "build_ms_p99": round(_pct(builds, 99), 2),
        "goal_server_ms": GOAL_SERVER_MS,
        "goal_bytes": GOAL_BYTES,
        # the goal on the refresh's own work (CPU p99) and payload; the wall p99 is
        # reported as is (on the shared 2-core machine other processes inflate it)
        "meets_goal": bool(_pct(cpu_ms, 99) <= GOAL_SERVER_MS and max(sizes) <= GOAL_BYTES),
        "wall_p99_within_goal": bool(_pct(server_ms, 99) <= GOAL_SERVER_MS),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    if not quick:  # the real app over HTTP (a minute more)
        figures.update(app_refreshes(120))
        figures["meets_goal"] = bool(figures["meets_goal"]
                                     and figures["app_bytes_max"] <= GOAL_BYTES)
    rows = [
        ("board: instruments · refreshes", f"{len(names)} · {len(server_ms)} "
                                           f"(every 500 ms of tape, 1x pace)"),
        ("board refresh server ms p50 / p99", f"{figures['server_ms_p50']:.2f} / "
                                              f"{figures['server_ms_p99']:.2f} (goal <= 10)"),
        ("board refresh CPU ms p50 / p99", f"{figures['cpu_ms_p50']:.2f} / "
                                           f"{figures['cpu_ms_p99']:.2f} (machine load "
                                           f"{figures['load_avg_1m']})"),
        ("board refresh bytes p50 / max", f"{figures['bytes_p50']:,} / {figures['bytes_max']:,} "
                                          f"(goal <= 10,240)"),
        ("board cells changed per refresh p50", f"{figures['cells_changed_p50']:,}"),
        ("board full (page load) bytes", f"{full_bytes:,}" if full_bytes else "–"),
        ("board build ms p50 / p99 (background, shared)",
         f"{figures['build_ms_p50']:.1f} / {figures['build_ms_p99']:.1f}"),
        *([("app over HTTP: bytes p50 / max (whole answer)",
            f"{figures['app_bytes_p50']:,} / {figures['app_bytes_max']:,} "
            f"(first {figures['app_first_bytes']:,})"),
           ("app over HTTP: round trip ms p50 / p99",
            f"{figures['app_rtt_ms_p50']:.1f} / {figures['app_rtt_ms_p99']:.1f}")]
          if "app_bytes_p50" in figures else []),
        ("board meets goal (CPU p99, bytes max)", "yes" if figures["meets_goal"] else "NO"),
    ]
    return rows, figures


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    rows, figures = run(quick=args.quick)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    sys.stdout.flush()
    print(json.dumps({"board": figures}))


if __name__ == "__main__":
    main()
