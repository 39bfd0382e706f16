"""Soak test: the real app for N minutes under a looped 2,000 msgs/s replay and a client
polling like an open browser tab; memory must stay flat and latency must not drift.

``python -m benchmarks.soak --minutes 30`` (not in CI; ``--minutes 1`` for a quick check)

* the app is ``python app.py --replay --replay-speed S`` in its own process (the bundled
  tape looped, ids and times shifted each pass, so the stream never ends), ``S`` chosen
  from the tape's own pacing for ``--rate`` msgs/s (default 2,000);
* ``--ring-capacity`` defaults to what fills within the warm-up (``rate x warm-up x
  0.25`` ticks per symbol: 150,000 for 30 minutes at 2,000 msgs/s; the app's default
  is 2,097,152): a ring grows (doubling) as ticks come until it holds its capacity,
  so with the full size the rings would still be growing (RSS climbing ~4 MB a minute
  by design) long after any warm-up. A ring that fills and wraps within the warm-up
  leaves the flat-memory check to see leaks, not a buffer filling up. The engine's bar
  series grow too (doubling, up to a day: at ~38x a day of 1 s bars takes ~38 min):
  their bytes are in the health (``buffers_mb``) and the verdict takes them out;
* a headless Chromium tab keeps the markets page open (its callbacks fire every
  500 ms, the navbar badge every second, timed from the browser), and this process
  calls ``GET /api/health`` every 500 ms and, every 5 s, the latest 500 1 m bars and
  the latest 600 rows of the 1 s pair (``limit=``), as a researcher's poller would:
  fixed-size requests, whose latency must not drift;
* once a minute it also pulls the whole day of the 1 s pair (``/api/pair`` without
  ``limit``), reported apart with its row count: that request grows with the day held
  (at ~38x replay speed a day of 1 s bars fills in ~38 minutes), so its latency rises
  by design and is not a drift; it is there so the memory check sees its peak too;
* every minute (every 15 s for runs under 5 minutes) it prints the app's RSS
  (``/proc/PID/status`` VmRSS), msgs/s, stored rows, gaps, and p50/p99/max latency of
  the fixed-size API requests, of the page's callbacks, and the day pull's.

Verdicts: memory growth over the last 20 minutes (or the part of the run after the
warm-up, if shorter) below 5 %, net of what the market data buffers grew by (``buffers_mb``
in ``/api/health`` ``process``: the bar series and rings grow with the data they hold,
by design, until a day is held: ``analytics/series.py``); latency not drifting: the pooled p99 of the last third
of the post-warm-up intervals within 2x (or +20 ms) of the first third's, for the
fixed-size API requests and for the page's callbacks alike. The LAST line is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5
GROWTH_LIMIT = 0.05
DRIFT_RATIO = 2.0
DRIFT_FLOOR_MS = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Poller(threading.Thread):
    """A browser tab on ``/`` plus an API client, both every 500 ms, latencies kept.

    The tab is headless Chromium (Playwright on ``/usr/bin/chromium``) with the markets
    page open: its own ``dcc.Interval`` fires the page's callbacks every 500 ms and the
    navbar badge's every second, exactly as for a user. Each ``/_dash-update-component``
    round trip is timed from the browser's request timing. Beside it, this thread
    calls ``GET /api/health`` every 500 ms, the latest bars and pair rows every 5 s,
    and the whole day's pair once a minute (kept apart in ``day_pulls``).
    """

    def __init__(self, url: str) -> None:
        super().__init__(name="soak-poller", daemon=True)
        import requests

        self.url = url
        self.s = requests.Session()
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # API, ms
        self.callback_latencies: list[float] = []  # Dash callbacks in the browser, ms
        self.day_pulls: list[tuple[float, int]] = []  # whole-day pair: (ms, rows)
        self.errors: list[str] = []
        self.requests = 0
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.health: dict = {}
        self.browser_thread = threading.Thread(
            target=self._browse, name="soak-browser", daemon=True
        )

    def take(self) -> tuple[list[float], list[float], list[tuple[float, int]], list[str]]:
        with self.lock:
            out = self.latencies, self.callback_latencies, self.day_pulls, self.errors
            self.latencies, self.callback_latencies, self.errors = [], [], []
            self.day_pulls = []
        return out

    def _error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def _browse(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page()

            def finished(req) -> None:
                if "_dash-update-component" not in req.url:
                    return
                t = req.timing
                if t.get("responseEnd", -1) > 0:
                    with self.lock:
                        self.callback_latencies.append(
                            t["responseEnd"] - t["requestStart"]
                            if t.get("requestStart", -1) >= 0
                            else t["responseEnd"]
                        )

            def response(resp) -> None:
                # any refused or failed request of the page is an error (a 4xx/5xx
                # callback means the page was not being served as measured)
                if resp.url.startswith(self.url) and resp.status >= 400:
                    self._error(f"browser {resp.url[-40:]}: HTTP {resp.status}")

            def failed(req) -> None:
                if req.url.startswith(self.url):
                    self._error(f"browser {req.url[-40:]}: {req.failure}")

            page.on("requestfinished", finished)
            page.on("response", response)
            page.on("requestfailed", failed)
            page.on(
                "console",
                lambda m: m.type == "error" and self._error(f"console: {m.text[:120]}"),
            )
            page.goto(self.url + "/", wait_until="networkidle", timeout=60_000)
            self.ready.set()
            while not self.stop_event.is_set():
                page.wait_for_timeout(500)  # the page polls itself meanwhile
            browser.close()

    def _hit(self, path: str, day: bool = False):
        t = time.perf_counter()
        try:
            r = self.s.get(self.url + path, timeout=30)
            body = r.content  # a streamed body is timed to its last byte
            dt = (time.perf_counter() - t) * 1000
            with self.lock:
                self.requests += 1
                if r.status_code != 200:
                    self.errors.append(f"{path}: HTTP {r.status_code}")
                elif day:
                    self.day_pulls.append((dt, body.count(b'"ts":')))
                else:
                    self.latencies.append(dt)
            return r
        except Exception as exc:  # counted; polling goes on as a browser's would
            self._error(f"{path}: {type(exc).__name__}: {exc}")
            return None

    def run(self) -> None:
        self.browser_thread.start()
        if not self.ready.wait(90):
            self._error("browser: page did not load")
        tick, next_t = 0, time.monotonic()
        while not self.stop_event.is_set():
            tick += 1
            r = self._hit("/api/health")
            if r is not None and r.status_code == 200:
                self.health = r.json()
            if tick % 10 == 0:
                self._hit("/api/bars?symbol=BTCUSDT&timeframe=1m&limit=500")
                self._hit("/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=60&limit=600")
            if tick % 120 == 60:
                self._hit("/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=60", day=True)
            next_t += POLL_S
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))
        self.browser_thread.join(30)


def _pct(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    a = np.asarray(values)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
        "n": len(a),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument(
        "--rate", type=float, default=2000.0, help="replay msgs/s (default 2000)"
    )
    p.add_argument(
        "--ring-capacity", type=int, default=None,
        help="ticks per symbol (default: what fills within the warm-up at --rate)",
    )
    p.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="default: 5, or a third of a run shorter than 15 minutes",
    )
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    from benchmarks.ingest import tape_pacing

    speed = tape_pacing().speed_for(args.rate)
    warmup_s = 60 * (
        args.warmup_minutes
        if args.warmup_minutes is not None
        else min(5.0, args.minutes / 3)
    )
    interval_s = 60.0 if args.minutes >= 5 else 15.0
    if args.ring_capacity is None:
        # The busiest symbol of the tape carries ~58 % of the trades: its ring is full
        # after about half the warm-up, the others' before its end.
        args.ring_capacity = max(1_000, int(args.rate * warmup_s * 0.25))
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    port = _free_port()
    log = (tmp / "app.log").open("w")
    app = subprocess.Popen(
        [
            sys.executable,
            "app.py",
            "--replay",
            "--market",
            "spot",
            "--replay-speed",
            f"{speed:.3f}",
            "--db",
            str(tmp / "soak.db"),
            "--port",
            str(port),
            "--ring-capacity",
            str(args.ring_capacity),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if app.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"app did not start: {(tmp / 'app.log').read_text()[-2000:]}"
                )
            time.sleep(0.3)
        poller = Poller(url)
        poller.start()
        print(
            f"soak: app pid {app.pid} on {url}, replay speed {speed:.1f} "
            f"(~{args.rate:,.0f} msgs/s), ring {args.ring_capacity:,}/symbol, "
            f"{args.minutes:g} min, warm-up {warmup_s / 60:g} min, logs {tmp}",
            flush=True,
        )
        header = (
            f"{'min':>6} {'rss MB':>8} {'buf MB':>6} {'msgs/s':>8} {'rows':>11} {'gaps':>5} "
            f"{'api n':>6} {'p50':>6} {'p99':>6} {'max':>6} {'cb n':>5} {'cb p50':>6} "
            f"{'cb p99':>6} {'day rows':>8} {'day ms':>7} {'trim MB':>7} {'err':>4}"
            "   (latencies in ms; buf: the bar series and rings; trim: freed heap the app "
            "gave back so far)"
        )
        print(header, flush=True)
        started = time.monotonic()
        end = started + args.minutes * 60
        next_sample = started + interval_s
        while time.monotonic() < end:
            time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
            if app.poll() is not None:
                raise RuntimeError(f"app died: {(tmp / 'app.log').read_text()[-2000:]}")
            lat, cb, day, err = poller.take()
            h = poller.health
            row = {
                "minute": round((time.monotonic() - started) / 60, 2),
                "rss_mb": round(rss_mb(app.pid), 1),
                "msgs_per_s": (h.get("feed") or {}).get("msgs_per_s"),
                "rows": (h.get("store") or {}).get("rows"),
                "gaps": (h.get("feed") or {}).get("gaps"),
                "latency_ms": _pct(lat),
                "callback_ms": _pct(cb),
                "trimmed_mb": ((h.get("process") or {}).get("heap_trim") or {}).get(
                    "released_mb"
                ),
                # what the growable buffers hold (analytics/series.py, ingest/ring.py)
                "buffers_mb": (h.get("process") or {}).get("buffers_mb"),
                "day_pull_rows": day[-1][1] if day else None,
                "day_pull_ms": round(max(d[0] for d in day), 1) if day else None,
                "errors": len(err),
                "error_samples": err[:3],
            }
            row["_lat"], row["_cb"] = lat, cb
            row["_t"] = time.monotonic()
            rows.append(row)
            L, C = row["latency_ms"], row["callback_ms"]
            print(
                f"{row['minute']:>6.2f} {row['rss_mb']:>8.1f} {row['buffers_mb'] or 0:>6.1f} "
                f"{row['msgs_per_s'] or 0:>8.0f} "
                f"{row['rows'] or 0:>11,} {row['gaps'] or 0:>5} {L['n']:>6} "
                f"{L['p50'] or 0:>6.1f} {L['p99'] or 0:>6.1f} {L['max'] or 0:>6.1f} "
                f"{C['n']:>5} {C['p50'] or 0:>6.1f} {C['p99'] or 0:>6.1f} "
                f"{row['day_pull_rows'] or 0:>8,} {row['day_pull_ms'] or 0:>7.1f} "
                f"{row['trimmed_mb'] or 0:>7.1f} {row['errors']:>4}",
                flush=True,
            )
            for e in row["error_samples"]:
                print(f"       error: {e}", flush=True)
            next_sample += interval_s
        poller.stop_event.set()
        poller.join(10)
    finally:
        if app.poll() is None:
            app.terminate()
            try:
                app.wait(20)
            except subprocess.TimeoutExpired:
                app.kill()
        log.close()
    after = [r for r in rows if r["minute"] * 60 >= warmup_s - 1e-6]
    window = [r for r in after if r["minute"] >= rows[-1]["minute"] - 20 - 1e-6]
    growth = buffer_growth = None
    if len(window) >= 2:
        # RSS growth the data buffers' own growth does not explain (module notes)
        first, last = window[0], window[-1]
        buffer_growth = (last["buffers_mb"] or 0.0) - (first["buffers_mb"] or 0.0)
        growth = (last["rss_mb"] - first["rss_mb"] - buffer_growth) / first["rss_mb"]

    def drift(key: str) -> tuple[float | None, float | None, bool | None]:
        """p99 of the first third of the post-warm-up intervals, pooled, against the
        last third: one interval's p99 is close to its max and too noisy alone."""
        if not after:
            return None, None, None
        k = max(1, len(after) // 3)
        first = _pct([v for r in after[:k] for v in r[key]])["p99"]
        last = _pct([v for r in after[-k:] for v in r[key]])["p99"]
        if first is None or last is None:
            return first, last, None
        return first, last, last <= max(DRIFT_RATIO * first, first + DRIFT_FLOOR_MS)

    p99_first, p99_last, api_ok = drift("_lat")
    cb_first, cb_last, cb_ok = drift("_cb")
    drift_ok = (
        None
        if api_ok is None and cb_ok is None
        else bool(api_ok) and cb_ok is not False
    )
    mean_rate = None
    if len(after) >= 2 and after[-1]["rows"] and after[0]["rows"]:
        mean_rate = (after[-1]["rows"] - after[0]["rows"]) / (
            after[-1]["_t"] - after[0]["_t"]
        )
    summary = {
        "minutes": args.minutes,
        "target_msgs_per_s": args.rate,
        "mean_msgs_per_s": None if mean_rate is None else round(mean_rate, 1),
        "ring_capacity": args.ring_capacity,
        "warmup_minutes": round(warmup_s / 60, 2),
        "rss_mb": [r["rss_mb"] for r in rows],
        "rss_growth_window_pct": None if growth is None else round(100 * growth, 2),
        "buffers_mb": [r["buffers_mb"] for r in rows],
        "buffer_growth_window_mb": None if buffer_growth is None else round(buffer_growth, 1),
        "memory_flat": None if growth is None else growth < GROWTH_LIMIT,
        "p99_ms_first_third": p99_first,
        "p99_ms_last_third": p99_last,
        "p99_ms": [r["latency_ms"]["p99"] for r in rows],
        "day_pull_rows": [r["day_pull_rows"] for r in rows],
        "day_pull_ms": [r["day_pull_ms"] for r in rows],
        "heap_trimmed_mb": rows[-1]["trimmed_mb"] if rows else None,
        "callback_p99_ms_first_third": cb_first,
        "callback_p99_ms_last_third": cb_last,
        "callback_p50_ms": [r["callback_ms"]["p50"] for r in rows],
        "callback_p99_ms": [r["callback_ms"]["p99"] for r in rows],
        "latency_not_drifting": drift_ok,
        "api_requests": poller.requests,
        "callbacks": sum(r["callback_ms"]["n"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        # the figures mean something only if every request of the tab and the API
        # client was answered, and the page's callbacks did run
        "requests_ok": sum(r["errors"] for r in rows) == 0
        and sum(r["callback_ms"]["n"] for r in rows) > 0,
        "final_rows": rows[-1]["rows"] if rows else None,
        "final_gaps": rows[-1]["gaps"] if rows else None,
    }
    print(
        f"memory growth after warm-up: {summary['rss_growth_window_pct']} % "
        f"(limit {100 * GROWTH_LIMIT:g} %; beyond the buffers' own "
        f"{summary['buffer_growth_window_mb']} MB); API p99 {p99_first} -> {p99_last} ms; "
        f"callback p99 {cb_first} -> {cb_last} ms; "
        f"errors {summary['errors']}",
        flush=True,
    )
    print(json.dumps(summary), flush=True)
    if not summary["requests_ok"]:
        print(f"FAILED: {summary['errors']} failed requests, {summary['callbacks']} "
              "callbacks answered", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
