"""Gap back-fill: fetch exactly the missing trade ids from the venue's REST, in id order.

The feed detects a gap when a trade id jumps (a reconnect, a restart, ids the server
skipped). It calls :meth:`Backfiller.submit` (O(1), never blocks the socket thread);
this worker thread then pages through the REST endpoint the feed's protocol names
(``FeedProtocol.rest_trades_url``) by id, e.g. on Binance::

    GET {base}/api/v3/historicalTrades?symbol=S&fromId=F&limit=min(1000, L-F+1)  spot
    GET {base}/fapi/v1/aggTrades?symbol=S&fromId=F&limit=...                     perp

and hands every page, in id order, to ``deliver(symbol, trades)`` (the ingestor's
back-fill path: store, engine, counts). When the last id of a gap is in, it calls
``on_filled(symbol, gap_first_id, filled_ms)`` (the store sets ``gaps.filled_ms``).

Faults it survives, without ever dropping the gap:

* HTTP 429 / 418: waits ``Retry-After`` seconds (Binance's rule: keep hammering after
  a 429 and the IP gets banned, 418, from 2 minutes to 3 days);
* the REST base unreachable, timeouts, 5xx, malformed pages, a page that does not
  start at the asked id yet (the server has not got that far): jittered exponential
  backoff (``base * 2**attempt`` capped, as the feed's), the error visible in
  :meth:`status` until a page succeeds;
* ids the server never had (it answers with a later id first): those few ids are
  retried ``MAX_HOLE_ATTEMPTS`` times, then reported as unrecoverable and kept in the
  still-missing count; nothing is marked filled that is not.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from ingest.feeds.base import FeedProtocol
from ingest.feeds.client import GapRange, backoff_delay
from ingest.models import BadFrame, Trade

log = logging.getLogger(__name__)

MAX_HOLE_ATTEMPTS = 5
DEFAULT_RETRY_AFTER_S = 60.0  # a 429 without Retry-After: wait a full weight window
USER_AGENT = "pairs-desk-backfill/1"


@dataclass(slots=True)
class _Job:
    symbol: str
    gap_first: int  # the store's key of the gap this job belongs to
    next_id: int
    last_id: int
    hole_attempts: int = 0

    @property
    def missing(self) -> int:
        return self.last_id - self.next_id + 1


@dataclass(frozen=True, slots=True)
class BackfillStatus:
    """What ``/api/health`` shows under ``feed`` (``gaps``, ``gaps_filled``, ...)."""

    url: str | None
    missing: int  # ids still missing (queued, in progress or unrecoverable)
    filled: int  # ids recovered so far
    submitted: int  # ids ever submitted
    ranges: tuple[GapRange, ...]  # the still-missing ranges
    unrecoverable: tuple[GapRange, ...]
    requests: int
    pages: int
    rate_limited: int
    errors: int
    error: str | None
    retry_at_ms: int | None
    gaps_filled: int  # gaps completely filled (marked in the store)

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "missing": self.missing,
            "filled": self.filled,
            "submitted": self.submitted,
            "requests": self.requests,
            "pages": self.pages,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "error": self.error,
            "retry_at_ms": self.retry_at_ms,
            "gaps_completed": self.gaps_filled,
            "unrecoverable": [_range_dict(g) for g in self.unrecoverable],
        }


def _range_dict(g: GapRange) -> dict:
    return {"symbol": g.symbol, "first_id": g.first_id, "last_id": g.last_id}


class RateLimited(Exception):
    def __init__(self, status: int, retry_after_s: float) -> None:
        super().__init__(f"HTTP {status}: rate limited, Retry-After {retry_after_s:g}s")
        self.status, self.retry_after_s = status, retry_after_s


def http_get(url: str, timeout_s: float) -> bytes:
    """GET ``url``; raise :class:`RateLimited` on 429/418, ``OSError`` otherwise."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()[:300]
        if exc.code in (429, 418):
            raw = exc.headers.get("Retry-After")
            try:
                retry = float(raw) if raw is not None else DEFAULT_RETRY_AFTER_S
            except ValueError:
                retry = DEFAULT_RETRY_AFTER_S
            raise RateLimited(exc.code, max(0.0, retry)) from None
        raise OSError(f"HTTP {exc.code}: {body.decode('utf-8', 'replace')}") from None


class Backfiller(threading.Thread):
    """One worker thread that fills submitted gaps from REST, first come first served.

    Parameters
    ----------
    protocol : FeedProtocol
        The feed's venue-market: its REST endpoint, page limit and row format.
    stream : str
        The stream whose ids are refilled (``trade`` / ``aggTrade``).
    base_url : str or None
        REST base (``--rest-url``); None = the protocol's ``rest_base``.
    deliver : callable(symbol, list[Trade])
        Called in this thread with each page's missing trades, ascending ids.
    on_filled : callable(symbol, gap_first_id, filled_ms), optional
    on_unrecoverable : callable(symbol, first_id, last_id, next_time_ms), optional
        Called once per range the server does not have; ``next_time_ms`` is the
        time of the server's first trade after it (None if not in the page). The
        runtime marks a session break there (``Ingestor.mark_break``).
    fetch : callable(url, timeout_s) -> bytes
        Injected in tests; default :func:`http_get`.
    """

    def __init__(
        self,
        *,
        protocol: FeedProtocol,
        stream: str,
        base_url: str | None,
        deliver: Callable[[str, list[Trade]], None],
        on_filled: Callable[[str, int, int], None] | None = None,
        on_unrecoverable: Callable[[str, int, int, int | None], None] | None = None,
        page_limit: int | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        hole_attempts: int = MAX_HOLE_ATTEMPTS,
        timeout_s: float = 10.0,
        fetch: Callable[[str, float], bytes] = http_get,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or f"{protocol.venue}-{protocol.market}-backfill", daemon=True)
        # fails now, with the reason, if the protocol has no such endpoint or base
        protocol.rest_trades_url("BTCUSDT", 0, 1, stream, base_url)
        self.protocol, self.stream, self.base_url = protocol, stream, base_url
        self._deliver = deliver
        self._on_filled = on_filled
        self._on_unrecoverable = on_unrecoverable
        self.page_limit = int(protocol.rest_max_limit if page_limit is None else page_limit)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        #: Answers "no such ids" before a hole is unrecoverable (1 for the built-in
        #: replay's REST: it serves the whole tape, so a hole there is final).
        self.hole_attempts = max(1, int(hole_attempts))
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._lock = threading.Lock()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._open_per_gap: collections.Counter[tuple[str, int]] = collections.Counter()
        self._unrecoverable: list[GapRange] = []
        self._unrecoverable_gaps: set[tuple[str, int]] = set()
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        self._in_flight: _Job | None = None
        self.filled = 0
        self.submitted = 0
        self.requests = 0
        self.pages = 0
        self.rate_limited = 0
        self.errors = 0
        self.gaps_filled = 0
        self.error: str | None = None
        self.retry_at_ms: int | None = None
        self._attempt = 0

    # ------------------------------------------------------------------ API
    def submit(
        self, symbol: str, first_id: int, last_id: int, gap_first: int | None = None
    ) -> None:
        """Queue ids ``[first_id, last_id]`` of ``symbol`` (thread-safe, O(1)).

        ``gap_first`` is the first id of the stored gap this range belongs to (when a
        restart resumes a partly filled gap); default ``first_id``.
        """
        if last_id < first_id:
            return
        key = first_id if gap_first is None else gap_first
        with self._lock:
            self._jobs.append(_Job(symbol, key, first_id, last_id))
            self._open_per_gap[(symbol, key)] += 1
            self.submitted += last_id - first_id + 1
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def verify(self, trade: Trade, timeout_s: float = 3.0) -> bool | None:
        """Does the exchange have ``trade`` (same id, time, price, quantity)?

        True / False from REST's answer for that id; None if REST cannot answer now
        (unreachable, rate limited, malformed). Called by the feed for a suspect id
        jump before the jump may move the high-water mark (``ingest/feeds/client.py``).
        """
        url = self.protocol.rest_trades_url(
            trade.symbol, trade.trade_id, 1, self.stream, self.base_url
        )
        try:
            body = self._fetch(url, min(timeout_s, self.timeout_s))
            rows = self.protocol.parse_rest_trades(body, trade.symbol, self.stream)
        except (RateLimited, OSError, BadFrame, ValueError) as exc:
            log.warning("backfill: cannot verify %s id %d: %s",
                        trade.symbol, trade.trade_id, exc)
            return None
        if not rows or rows[0].trade_id != trade.trade_id:
            return False
        got = rows[0]
        return (
            got.time_ms == trade.time_ms
            and got.price == trade.price
            and got.qty == trade.qty
        )

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._jobs and self._in_flight is None

    def status(self) -> BackfillStatus:
        with self._lock:
            jobs = list(self._jobs)
            if self._in_flight is not None and self._in_flight not in jobs:
                jobs.insert(0, self._in_flight)
            unrec = tuple(self._unrecoverable)
        ranges = (
            tuple(
                sorted(
                    (
                        GapRange(j.symbol, j.next_id, j.last_id)
                        for j in jobs
                        if j.missing > 0
                    ),
                    key=lambda g: (g.symbol, g.first_id),
                )
            )
            + unrec
        )
        return BackfillStatus(
            url=self.protocol.rest_trades_url(
                "BTCUSDT", 0, 1, self.stream, self.base_url
            ).split("?")[0],
            missing=sum(g.missing for g in ranges),
            filled=self.filled,
            submitted=self.submitted,
            ranges=ranges,
            unrecoverable=unrec,
            requests=self.requests,
            pages=self.pages,
            rate_limited=self.rate_limited,
            errors=self.errors,
            error=self.error,
            retry_at_ms=self.retry_at_ms,
            gaps_filled=self.gaps_filled,
        )

    # ------------------------------------------------------------------ worker
    def run(self) -> None:
        while not self._stop_event.is_set():
            with self._lock:
                job = self._jobs[0] if self._jobs else None
                self._in_flight = job
            if job is None:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                wait_s = self._step(job)
            except Exception as exc:  # never let the worker die: report and retry
                log.exception("backfill: unexpected failure on %s", job)
                wait_s = self._failed(f"{type(exc).__name__}: {exc}")
            if wait_s:
                self.retry_at_ms = int((time.time() + wait_s) * 1000)
                if self._stop_event.wait(wait_s):
                    break
                self.retry_at_ms = None
        log.info("backfill: stopped")

    def _step(self, job: _Job) -> float:
        """One page of ``job``; returns seconds to wait before the next request."""
        limit = min(self.page_limit, job.missing)
        url = self.protocol.rest_trades_url(
            job.symbol, job.next_id, limit, self.stream, self.base_url
        )
        self.requests += 1
        try:
            body = self._fetch(url, self.timeout_s)
            trades = self.protocol.parse_rest_trades(body, job.symbol, self.stream)
        except RateLimited as exc:
            self.rate_limited += 1
            self.error = str(exc)
            log.warning("backfill: %s; waiting", exc)
            return max(exc.retry_after_s, 0.05)
        except (OSError, BadFrame, ValueError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        wanted = [t for t in trades if job.next_id <= t.trade_id <= job.last_id]
        ids = [t.trade_id for t in trades]
        if any(b <= a for a, b in itertools.pairwise(ids)):
            return self._failed(f"{job.symbol}: page ids not strictly ascending")
        if not wanted or wanted[0].trade_id != job.next_id:
            # The server's first id at or after next_id: ids before it it does not have
            later = [i for i in ids if i > job.next_id]
            if later:
                return self._hole(job, later[0], wanted, trades)
            return self._failed(
                f"{job.symbol}: no trades from id {job.next_id} yet (got {len(trades)})"
            )
        self._accept(job, wanted)
        return 0.0

    def _accept(self, job: _Job, trades: list[Trade]) -> None:
        # Trades after a hole inside the page: deliver the contiguous run only; the
        # next request starts at the hole and so finds it out.
        run = [trades[0]]
        for t in trades[1:]:
            if t.trade_id != run[-1].trade_id + 1:
                break
            run.append(t)
        self._deliver(job.symbol, run)
        self.pages += 1
        self.filled += len(run)
        self._attempt = 0
        if self.error is not None:
            log.info("backfill: recovered after: %s", self.error)
        self.error = None
        with self._lock:
            job.next_id = run[-1].trade_id + 1
            done = job.missing <= 0
            if done:
                self._finish(job)
        if done:
            log.info("backfill: %s ids up to %d filled", job.symbol, job.last_id)

    def _finish(self, job: _Job) -> None:
        """Drop ``job`` (lock held); mark its gap filled if it was the last piece."""
        self._jobs.remove(job)
        self._in_flight = None
        key = (job.symbol, job.gap_first)
        self._open_per_gap[key] -= 1
        if self._open_per_gap[key] <= 0:
            del self._open_per_gap[key]
            if key not in self._unrecoverable_gaps:
                self.gaps_filled += 1
                if self._on_filled is not None:
                    self._on_filled(job.symbol, job.gap_first, int(time.time() * 1000))

    def _hole(
        self, job: _Job, server_first: int, wanted: list[Trade], page: list[Trade] = ()
    ) -> float:
        """The server's first id after ``next_id`` is later: ids it does not have."""
        hole_last = min(server_first - 1, job.last_id)
        job.hole_attempts += 1
        if job.hole_attempts < self.hole_attempts:
            return self._failed(
                f"{job.symbol}: server has no ids {job.next_id}..{hole_last} "
                f"(attempt {job.hole_attempts} of {self.hole_attempts})"
            )
        log.error(
            "backfill: %s ids %d..%d unrecoverable (not on the server)",
            job.symbol,
            job.next_id,
            hole_last,
        )
        if self._on_unrecoverable is not None:
            after = next((t.time_ms for t in page if t.trade_id > hole_last), None)
            try:
                self._on_unrecoverable(job.symbol, job.next_id, hole_last, after)
            except Exception:
                log.exception("backfill: on_unrecoverable failed")
        with self._lock:
            self._unrecoverable.append(GapRange(job.symbol, job.next_id, hole_last))
            self._unrecoverable_gaps.add((job.symbol, job.gap_first))
            job.next_id = hole_last + 1
            job.hole_attempts = 0
            if job.missing <= 0:
                self._finish(job)
                return 0.0
        if wanted:
            self._accept(job, wanted)
        return 0.0

    def _failed(self, message: str) -> float:
        self.errors += 1
        self.error = message
        delay = backoff_delay(
            self._attempt, base=self.backoff_base_s, cap=self.backoff_cap_s
        )
        self._attempt += 1
        if self.errors <= 10 or self.errors % 100 == 0:
            log.warning("backfill: %s; retry in %.1fs", message, delay)
        return delay
