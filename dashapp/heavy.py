"""Bounds on heavy requests: a size budget checked before work starts, a few slots, a
queue-wait budget and a time budget.

Why: a Huber backtest with a one-day window over an uploaded 500k-bar dataset ran for
135 s in a request thread, and four concurrent ``/api/adf`` on it took ~70 s each while
the process grew from 0.65 to 2.97 GB. Every heavy route (``/api/backtest``,
``/api/adf``, ``/api/screener``, ``/api/leadlag``, ``/api/pair``, ``/api/market-screen``)
now goes through :func:`run_heavy`:

1. **Size budget** (413, before anything is computed). A job's cost is estimated from
   the rows it will process and the fits it will make, in *estimated microseconds of one
   core* (:func:`pair_cost` and friends; coefficients measured on the 2-core dev box
   when quiet, deliberately rough: they only need to tell a 2 s job from a 10 min
   one; a loaded machine is what the time budget is for). Over :attr:`HeavyLimits.max_cost_s` the answer is a 413 naming the parameter to
   change and the limit::

       cost(pair)  = n * ROW_US[reg] + fits * FIT_US(reg, w)
       fits        = (n - w) // step + 1, step = analytics.robust.refit_step(w, reg)
                     (Huber, Theil-Sen; 0 for OLS and Kalman, which are recursive)
       FIT_US      = 50 + 0.35 w     (Huber: Newton steps over w points)
                     50 + 0.03 w^2   (Theil-Sen: the w x w slope matrix, partitioned)
                     (+ n * DATASET_ROW_US on an uploaded dataset: read from SQLite)
       cost(adf)   = cost(pair) + n * ADF_ROW_US               (ADF + Engle-Granger)
       cost(bt)    = cost(pair) + n * BACKTEST_ROW_US

2. **Slots** (:attr:`HeavyLimits.slots`, 2 by default; jobs estimated under
   :attr:`HeavyLimits.inline_below_s` run inline): at most that many heavy jobs
   run at once, each in a worker thread of a pool of that size, so memory is bounded by
   ``slots`` jobs whatever the number of clients.

3. **Queue wait** (503 + ``Retry-After``): a request waits at most
   :attr:`HeavyLimits.queue_wait_s` for a slot.

4. **Time budget** (503): the request answers after :attr:`HeavyLimits.time_budget_s`
   at the latest. Python cannot stop a running numpy/statsmodels call, so the job runs
   on to its end in its worker and *keeps its slot* until then: an overrun makes later
   requests wait or get 503s, never piles up more work.

The pages' heavy callbacks (backtest, ADF, screen, market screen) are Dash background
callbacks, each in a forked process: the same service functions check the same size budget
(:func:`check`; the page shows the refusal as a bad parameter), and the app's
background manager (:func:`bounded_background_manager`) runs at most ``slots`` of
them at once (:func:`process_slot`, ``flock`` slots that die with their process);
the others wait.

Limits come from the environment (``PAIRS_HEAVY_SLOTS``, ``PAIRS_HEAVY_QUEUE_S``,
``PAIRS_HEAVY_TIME_S``, ``PAIRS_HEAVY_MAX_COST_S``) or :func:`configure`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from analytics.robust import refit_step
from dashapp.api.params import BadParam

T = TypeVar("T")

#: Per-row cost (µs) of the vectorised part of a pair series (alignment, rolling
#: moments, z-score, correlation; the Kalman filter steps once per row).
ROW_US = {"ols": 3.0, "kalman": 8.0, "huber": 3.0, "theilsen": 3.0}
ADF_ROW_US = 25.0  # adfuller (autolag over <= 12 lags) + Engle-Granger, per row
DATASET_ROW_US = 8.0  # reading an uploaded dataset's two legs from SQLite, per row
BACKTEST_ROW_US = 3.0
SCREEN_PAIR_ROW_US = 25.0  # per pair and row: alignment, OLS, ADF, Engle-Granger
LEADLAG_ROW_LAG_US = 0.05  # per row and lag


def fit_us(regression: str, window: int) -> float:
    """Estimated µs of one robust window fit (0 for OLS/Kalman, which are recursive)."""
    if regression == "huber":
        return 50.0 + 0.35 * window
    if regression == "theilsen":
        return 50.0 + 0.03 * float(window) ** 2
    return 0.0


def robust_fits(rows: int, window: int, regression: str) -> int:
    """Window fits a batch build makes: one every ``refit_step`` bars once the window
    is full (:mod:`analytics.robust`'s schedule)."""
    if regression not in ("huber", "theilsen") or rows < window:
        return 0
    return (rows - window) // refit_step(window, regression) + 1


def pair_cost(rows: int, window: int, regression: str) -> float:
    """Estimated µs of a pair series over ``rows`` aligned bars."""
    return rows * ROW_US.get(regression, 3.0) + robust_fits(rows, window, regression) * fit_us(
        regression, window
    )


@dataclass(frozen=True)
class Estimate:
    """What a job will cost, and which request parameter makes it cost that much."""

    job: str
    cost_us: float
    rows: int
    param: str  # the parameter to change first
    detail: str  # one sentence: what drives the cost

    @property
    def seconds(self) -> float:
        return self.cost_us / 1e6


@dataclass(frozen=True)
class HeavyLimits:
    slots: int = 2
    queue_wait_s: float = 5.0
    time_budget_s: float = 30.0
    max_cost_s: float = 60.0
    #: Jobs estimated below this run inline in the request, without a slot (polling a
    #: tracked live pair must not queue behind a backtest).
    inline_below_s: float = 0.25


class TooHeavy(BadParam):
    """Over the size budget: a 413 naming ``param`` and the limit. A :class:`BadParam`,
    so a page that shows a bad parameter's message shows this one too."""

    def __init__(self, est: Estimate, limits: HeavyLimits) -> None:
        self.estimate, self.limits = est, limits
        super().__init__(
            est.param,
            f"{est.job} too heavy: {est.detail} is an estimated {est.seconds:,.1f} s of "
            f"work, over the budget of {limits.max_cost_s:g} s per request; change "
            f"{est.param} (or use fewer bars: start/end, lookback, a coarser timeframe)",
        )


class Busy(Exception):
    """No slot within the queue wait, or the job overran its time budget: a 503."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


def limits_from_env() -> HeavyLimits:
    def num(name: str, default: float) -> float:
        raw = os.environ.get(f"PAIRS_HEAVY_{name}")
        try:
            value = float(raw) if raw is not None else default
        except ValueError:
            value = default
        return value if math.isfinite(value) and value > 0 else default

    d = HeavyLimits()
    return HeavyLimits(
        slots=max(1, int(num("SLOTS", d.slots))),
        queue_wait_s=num("QUEUE_S", d.queue_wait_s),
        time_budget_s=num("TIME_S", d.time_budget_s),
        max_cost_s=num("MAX_COST_S", d.max_cost_s),
    )


class HeavyGate:
    """``slots`` worker threads behind a semaphore of ``slots`` permits.

    A permit is taken by the request (waiting at most ``queue_wait_s``) and given back
    by the job itself when it finishes, so a job that overran its request's time budget
    still counts against the bound until it really ends.
    """

    def __init__(self, limits: HeavyLimits) -> None:
        self.limits = limits
        self._permits = threading.BoundedSemaphore(limits.slots)
        self._pool = cf.ThreadPoolExecutor(limits.slots, thread_name_prefix="heavy")
        self._lock = threading.Lock()
        self.running = 0
        self.refused = {"size": 0, "queue": 0, "time": 0}

    def check(self, est: Estimate) -> None:
        if est.seconds > self.limits.max_cost_s:
            with self._lock:
                self.refused["size"] += 1
            raise TooHeavy(est, self.limits)

    def run(self, est: Estimate, fn: Callable[[], T]) -> T:
        self.check(est)
        lim = self.limits
        if est.seconds < lim.inline_below_s:
            return fn()
        if not self._permits.acquire(timeout=lim.queue_wait_s):
            with self._lock:
                self.refused["queue"] += 1
            raise Busy(
                f"{est.job}: all {lim.slots} heavy-job slots stayed busy for "
                f"{lim.queue_wait_s:g} s; retry shortly",
                retry_after_s=max(1, math.ceil(lim.queue_wait_s)),
            )
        with self._lock:
            self.running += 1

        def job():
            try:
                return fn()
            finally:
                with self._lock:
                    self.running -= 1
                self._permits.release()

        try:
            future = self._pool.submit(job)
        except BaseException:
            with self._lock:
                self.running -= 1
            self._permits.release()
            raise
        try:
            return future.result(timeout=lim.time_budget_s)
        except cf.TimeoutError:
            with self._lock:
                self.refused["time"] += 1
            raise Busy(
                f"{est.job}: over the time budget of {lim.time_budget_s:g} s per request "
                f"({est.detail}); it finishes in the background and holds a slot until "
                f"then. Narrow it ({est.param}, or fewer bars) or retry later",
                retry_after_s=max(1, math.ceil(lim.time_budget_s)),
            ) from None


_gate: HeavyGate | None = None
_gate_lock = threading.Lock()


def gate() -> HeavyGate:
    global _gate
    with _gate_lock:
        if _gate is None:
            _gate = HeavyGate(limits_from_env())
        return _gate


def configure(limits: HeavyLimits) -> HeavyGate:
    """Replace the process's gate (tests, or ``app.py`` flags). Jobs already running on
    the old gate keep their own slots."""
    global _gate
    with _gate_lock:
        _gate = HeavyGate(limits)
        return _gate


def check(est: Estimate) -> None:
    """The size budget alone (:class:`TooHeavy` if over). The service functions the
    pages' background callbacks call (backtest, ADF, screen) check it too: those jobs
    run in forked processes, outside this process's slots."""
    gate().check(est)


def run_heavy(est: Estimate, fn: Callable[[], T]) -> T:
    """``fn()`` under the process's gate: 413 :class:`TooHeavy` before it starts if
    ``est`` is over budget, 503 :class:`Busy` on a full queue or an overrun."""
    return gate().run(est, fn)


# ---------------------------------------------------------------- the pages' jobs
@contextlib.contextmanager
def process_slot(lock_dir: str | os.PathLike, slots: int, poll_s: float = 0.1):
    """One of ``slots`` machine-wide slots, held by this process until the block ends.

    The pages' heavy callbacks (backtest, ADF, screen) are Dash background callbacks:
    each runs in its own forked process, out of reach of :class:`HeavyGate`'s threads.
    Slot ``i`` is an exclusive ``flock`` on ``lock_dir/slot-i``; the kernel drops it
    when the holder closes it or dies, so a crashed job never leaks a slot. A job with
    no free slot waits (the page shows it running) instead of failing.
    """
    import fcntl

    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    fd = None
    while fd is None:
        for i in range(max(1, slots)):
            f = os.open(os.path.join(lock_dir, f"slot-{i}"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(f)
                continue
            fd = f
            break
        else:
            time.sleep(poll_s)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def release_import_locks_after_fork() -> None:
    """In a forked job process: forget the import locks other threads of the parent held.

    Why: a background job is a ``fork`` of the server, taken while request and build
    threads may be in the middle of an import (plotly imports its figure classes lazily, on
    first use). Only the forking thread exists in the child, so a per-module import lock
    held by another thread at the fork is never released: the job then hangs forever at its
    first figure (seen: the screener's lead-lag heatmap on a freshly started app). Here,
    with no other thread in the child yet, the half-imported modules are dropped from
    ``sys.modules`` (they are imported again, whole) and the stale module locks forgotten.
    """
    import importlib._bootstrap as bootstrap
    import sys

    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "_initializing", False):
            del sys.modules[name]
    bootstrap._module_locks.clear()


def bounded_background_manager(cache, *, lock_dir: str | os.PathLike, slots: int | None = None,
                               **kw):
    """A :class:`dash.DiskcacheManager` whose jobs run at most ``slots`` at a time
    (default: the gate's :attr:`HeavyLimits.slots`), each in its forked process."""
    import dash

    n = slots or limits_from_env().slots

    class BoundedDiskcacheManager(dash.DiskcacheManager):
        def call_job_fn(self, key, job_fn, args, context):
            def bounded(*a):
                release_import_locks_after_fork()
                with process_slot(lock_dir, n):
                    return job_fn(*a)

            return super().call_job_fn(key, bounded, args, context)

    return BoundedDiskcacheManager(cache, **kw)
