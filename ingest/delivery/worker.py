"""The outbox worker: sends stored deliveries, retries them, survives restarts.

Runs in the ingesting process on its own thread (``alert-delivery``) with its OWN
alert-store connection, so a send never touches the evaluation thread or its
connection: evaluation and storage never wait for a receiver. Rows are enqueued by
the alert store in the transaction that stores their event; the worker is woken when
events are stored and otherwise polls every ``poll_s``.

Lanes. The open rows (``pending``/``retrying``) are grouped into lanes, one per
``(rule_id, channel_id)``, each in row order (= event order). A lane is sent by ONE
task at a time, head first, and stops at the first row that is not delivered: so a
rule's later event never reaches a channel before its earlier one. A channel has at
most ``per_channel`` lanes in flight, the pool has ``threads`` threads: a receiver
that takes 5 s per request holds at most ``per_channel`` threads, other channels go on.

Retry. After a failed attempt ``n`` (1, 2, ...) the row is due again after

    delay = Retry-After                                if the receiver sent one
    delay = uniform(0, min(cap_s, base_s * 2**(n-1)))  otherwise ("full jitter")

and is ``failed`` when ``now + delay`` passes ``created + max_age_s`` (or the receiver
refused it for good: a 4xx but 408/425/429). Nothing is kept only in memory: after a
restart (``kill -9`` included) the open rows are due again, a row that was in flight is
sent again (at-least-once; ``Idempotency-Key`` lets the receiver drop the duplicate).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ingest.delivery.senders import Outcome, send

__all__ = ["DeliverySettings", "DeliveryWorker", "backoff_s"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Knobs of the worker (CLI: ``--delivery-max-age``, ``--delivery-timeout``,
    ``--delivery-backoff-cap``)."""

    max_age_s: float = 3600.0
    timeout_s: float = 10.0
    base_s: float = 1.0
    cap_s: float = 300.0
    per_channel: int = 4
    threads: int = 16
    poll_s: float = 0.5
    batch: int = 5000


def backoff_s(attempts: int, base_s: float, cap_s: float, rng=random) -> float:
    """Full-jitter exponential backoff after ``attempts`` failed attempts."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** max(0, attempts - 1)))


class DeliveryWorker:
    """The outbox worker (module notes). ``open_store`` opens the worker's own alert
    store connection (called once, on the worker thread's start)."""

    def __init__(self, open_store: Callable, settings: DeliverySettings | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._open_store = open_store
        self.settings = settings or DeliverySettings()
        self._clock = clock
        self._store = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[tuple[int, int]] = set()
        self._per_channel: dict[int, int] = defaultdict(int)
        self.sent = 0
        self.delivered = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._store = self._open_store()
        self._pool = ThreadPoolExecutor(self.settings.threads,
                                        thread_name_prefix="alert-delivery-send")
        self._thread = threading.Thread(target=self._run, name="alert-delivery",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        t_end = time.monotonic() + min(timeout_s, 1.0)
        while self.status()["lanes_in_flight"] and time.monotonic() < t_end:
            time.sleep(0.02)  # a lane ends after its request (it checks the stop flag)
        if self._store is not None and not self.status()["lanes_in_flight"]:
            try:
                self._store.close()
            except Exception:  # closing on the way out: nothing left to save
                log.debug("delivery: closing its store failed", exc_info=True)

    def wake(self) -> None:
        """Events were stored: look for due rows now (called by the alert service)."""
        self._wake.set()

    def status(self) -> dict:
        with self._lock:
            lanes = len(self._busy)
        return {"running": self._thread is not None and self._thread.is_alive(),
                "lanes_in_flight": lanes, "attempts": self.sent,
                "delivered": self.delivered, "last_error": self.last_error}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch()
            except Exception as exc:  # a DB hiccup: logged, tried again next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("delivery: %s", self.last_error)
            self._wake.wait(self.settings.poll_s)
            self._wake.clear()

    # ------------------------------------------------------------------ dispatch
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def dispatch(self) -> int:
        """Start a task for every due lane not in flight (within the per-channel
        limit); returns how many were started."""
        store, s = self._store, self.settings
        # Lanes busy before the read may finish during it: their rows read here can be
        # stale (a row just delivered would go twice), so they wait for the next round.
        with self._lock:
            busy_before = set(self._busy)
        rows = store.open_deliveries(s.batch)
        if not rows:
            return 0
        channels = {c.id: c for c in store.channels()}
        lanes: dict[tuple[int, int], list] = {}
        for r in rows:
            lanes.setdefault((r.rule_id, r.channel_id), []).append(r)
        now, started = self._now_ms(), 0
        for key, lane in lanes.items():
            if lane[0].next_attempt_ms > now:
                continue
            channel = channels.get(key[1])
            with self._lock:
                if (key in self._busy or key in busy_before
                        or self._per_channel[key[1]] >= s.per_channel):
                    continue
                self._busy.add(key)
                self._per_channel[key[1]] += 1
            if channel is None:  # deleted since the read
                self._pool.submit(self._give_up, key, lane, "channel deleted")
            else:
                self._pool.submit(self._send_lane, key, lane, channel)
            started += 1
        return started

    def _release(self, key: tuple[int, int]) -> None:
        with self._lock:
            self._busy.discard(key)
            self._per_channel[key[1]] -= 1
        self._wake.set()

    def _give_up(self, key, lane, why: str) -> None:
        try:
            for r in lane:
                self._store.record_attempt(r.id, status="failed", attempts=r.attempts,
                                           last_error=why, last_status=r.last_status,
                                           next_attempt_ms=self._now_ms())
        finally:
            self._release(key)

    def _send_lane(self, key, lane, channel) -> None:
        try:
            for r in lane:
                if self._stop.is_set() or r.next_attempt_ms > self._now_ms():
                    return
                if not self._attempt(r, channel):
                    return  # the lane waits for its head: order per rule kept
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("delivery: lane rule %d channel %d: %s", key[0], key[1],
                        self.last_error)
        finally:
            self._release(key)

    def _attempt(self, row, channel) -> bool:
        """Send one row and store the outcome; True when delivered."""
        s = self.settings
        payload = json.loads(row.payload)
        out: Outcome = send(channel.kind, channel.url, channel.secret, payload,
                            row.payload.encode(), s.timeout_s)
        self.sent += 1
        attempts, now = row.attempts + 1, self._now_ms()
        if out.ok:
            self.delivered += 1
            self._store.record_attempt(
                row.id, status="delivered", attempts=attempts, last_error=None,
                last_status=out.status, next_attempt_ms=now, delivered_ms=now,
                latency_ms=float(now - row.created_ms))
            return True
        delay = out.retry_after_s if out.retry_after_s is not None else backoff_s(
            attempts, s.base_s, s.cap_s)
        due = now + int(1000 * delay)
        expired = due > row.created_ms + int(1000 * s.max_age_s)
        status = "failed" if out.permanent or expired else "retrying"
        error = out.error
        if status == "failed" and not out.permanent:
            error = f"gave up after {attempts} attempts (max age {s.max_age_s:g} s): {error}"
        self._store.record_attempt(row.id, status=status, attempts=attempts,
                                   last_error=error, last_status=out.status,
                                   next_attempt_ms=due if status == "retrying" else now)
        if attempts == 1 or status == "failed":
            log.warning("delivery: event %d to channel %d (%s) %s: %s", row.event_id,
                        channel.id, channel.name, "failed" if status == "failed"
                        else "will be retried", error)
        return False
