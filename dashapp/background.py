"""Where the pages' background callbacks (ADF, backtests, screens) run.

Without ``--bus`` (one process): Dash's diskcache manager forks each job from the app
(:func:`dashapp.heavy.bounded_background_manager`), as before.

With ``--bus redis://…`` (several dashboard workers): Dash's :class:`~dash.CeleryManager`
with the bus's Redis as Celery broker and result backend. Why: a forked job lives
and dies with the one web process that forked it; a Celery job is queued in Redis, run
by whichever Celery worker takes it, and its result read back by any dashboard worker,
so heavy work leaves the web processes (never on the 500 ms path) and is shared by all.

The Celery worker needs the same market data the pages read. :func:`start_worker`
starts it with the app (``python -m dashapp.celery_worker`` + the app's own flags, as a
child stopped with the app), so ``python app.py --no-ingest --bus …`` stays one
command. That process builds a ``--no-ingest`` runtime of its own (restore from the
store, follow the bus: the same numbers as every worker) and runs jobs in
``PAIRS_HEAVY_SLOTS`` threads (Celery's ``threads`` pool: a prefork child would hold a
frozen copy of the rings taken at fork time).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: Result lifetime, as the diskcache manager's.
EXPIRE_S = 3600
#: Celery's own keys, apart from the bus's ``pairs:v1:*`` streams in the same database.
QUEUE = "pairs-background"
#: The app's pid, given to its Celery worker: the worker stops when the app is gone
#: (``kill -9`` of the app must not leave an orphan following the bus forever).
PARENT_ENV = "PAIRS_CELERY_PARENT"


def celery_app(bus_url: str):
    """A Celery app on the bus's Redis (broker and results), tasks on :data:`QUEUE`."""
    from celery import Celery

    app = Celery("pairs-desk", broker=bus_url, backend=bus_url)
    app.conf.update(
        task_default_queue=QUEUE,
        result_expires=EXPIRE_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,  # a long screen does not hold queued jobs back
        task_acks_late=False,
    )
    return app


def manager(cache_dir: str | Path, bus: str | None):
    """The background-callback manager: Celery on ``bus``, else forked diskcache jobs."""
    if bus:
        import dash

        return dash.CeleryManager(celery_app(bus), expire=EXPIRE_S)
    import diskcache

    from dashapp.heavy import bounded_background_manager

    return bounded_background_manager(
        diskcache.Cache(str(cache_dir)), lock_dir=Path(cache_dir) / "heavy-slots",
        expire=EXPIRE_S,
    )


def start_worker(argv: list[str]) -> subprocess.Popen:
    """``python -m dashapp.celery_worker ARGV`` (the app's own flags), a child of the app;
    its log lines go to the app's stderr."""
    log.info("starting the Celery worker for background callbacks")
    return subprocess.Popen(
        [sys.executable, "-m", "dashapp.celery_worker", *argv], cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())},
    )


def exit_with_parent(poll_s: float = 1.0) -> None:
    """In the Celery worker: SIGTERM itself (Celery's warm shutdown) once the app that
    started it (``PAIRS_CELERY_PARENT``) is no longer its parent."""
    import signal
    import threading
    import time

    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(poll_s)
        log.warning("the app (pid %s) is gone: stopping its Celery worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="celery-parent-watch", daemon=True).start()


def stop_worker(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    """SIGTERM (Celery's warm shutdown: running jobs finish), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
