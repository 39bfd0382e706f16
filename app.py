"""Composition root: config -> runtime and services -> Dash app -> web server.

``python app.py``             live Binance USDT-M futures aggTrade feed (needs internet)
``python app.py --replay``    the built-in Binance-protocol replay server on the bundled tape
``python app.py --no-ingest --db data/market.db``  dashboard over a DB another process writes
``PAIRS_NO_INGEST=1 PAIRS_DB=... PAIRS_BUS=... gunicorn -w 4 'app:wsgi_app()'``  N workers

The flags and the ``Config`` they make are declared once in ``ingest/config.py`` (shared
with ``python -m ingest``). Nothing starts at import time; ``main()`` does it all in order:
logging -> store -> engine -> ingestor (+ restore) -> feed (or replay + feed, or DB follower)
-> services -> Dash app -> ``app.run`` (no debug, no reloader) -> orderly shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ingest.config import configure_logging, parse_config

log = logging.getLogger("app")


def _without_notebook_support() -> None:
    """Dash imports IPython (0.5 s here, a fifth of a cold start's imports) only to run
    inside a notebook; a server never does. Marking it absent before Dash is imported
    makes Dash take its no-notebook branch (``dash/_jupyter.py`` catches the
    ImportError). Not when IPython is already loaded."""
    sys.modules.setdefault("IPython", None)


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM (``docker stop``, ``systemctl stop``) stops the app as Ctrl-C does: the
    server loop ends and ``services.stop()`` flushes the last batch and open bars."""
    log.info("signal %d: stopping", signum)
    raise KeyboardInterrupt


def wsgi_app(argv: list[str] | None = None):
    """The WSGI app of one dashboard worker, for ``gunicorn -w N 'app:wsgi_app()'``.

    Each gunicorn worker calls this after its fork (never use ``--preload``: the
    runtime's threads would stay in the master), so each builds its own runtime:
    restore from ``--db``, then follow ``--bus`` (docs/scaleout.md#workers). The
    settings come from ``PAIRS_*`` variables as the flags do (``ingest/config.py``);
    ``argv`` (``'app:wsgi_app(["--no-ingest"])'``) adds flags. Workers never ingest:
    N ingesting workers would be N writers of one store, so without ``--no-ingest`` /
    ``PAIRS_NO_INGEST=1`` this stops with a message. ``--host``/``--port`` are
    gunicorn's ``-b``; the runtime stops when the worker exits (``atexit``)."""
    import atexit

    cfg = parse_config(list(argv or []))
    if cfg.ingest:
        raise SystemExit(
            "app:wsgi_app(): gunicorn workers only serve: set PAIRS_NO_INGEST=1 (and "
            "PAIRS_DB, PAIRS_BUS) and run the ingest once, in `python -m ingest`"
        )
    configure_logging(cfg.log_level)
    from dashapp import create_app
    from dashapp.api import webguard
    from dashapp.facade import LiveMarketData
    from dashapp.services import build_services

    services = build_services(cfg)
    # with --bus, background callbacks are queued to Celery on the bus's Redis, shared by
    # the pool: run ONE `python -m dashapp.celery_worker` with the same PAIRS_* beside
    # gunicorn (app.py starts its own; N gunicorn workers must not start N of them)
    app = create_app(LiveMarketData(services), bus=cfg.bus)
    webguard.allow_hosts(app.server, webguard.allowed_hosts(cfg.host, cfg.allowed_hosts))
    services.start()
    atexit.register(services.stop)
    log.info("worker %d: serving %s (bus %s)", os.getpid(),
             services.store.status()["path"], cfg.bus or "none")  # password as ***
    return app.server


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    configure_logging(cfg.log_level)

    from dashapp import create_app
    from dashapp.facade import LiveMarketData
    from dashapp.services import build_services

    services = build_services(cfg)
    # pages see the facade only; with --bus, background callbacks go to Celery
    app = create_app(LiveMarketData(services), bus=cfg.bus)
    from dashapp.api import webguard

    hosts = webguard.allowed_hosts(cfg.host, cfg.allowed_hosts)
    webguard.allow_hosts(app.server, hosts)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: the dashboard and its API are reachable from the network, "
            "with no authentication; the pages' callbacks and other POST/PUT/PATCH/DELETE "
            "are accepted only for Host %s (add names with --allowed-hosts)", cfg.host, ", ".join(hosts),
        )
    celery_worker = None
    try:
        if cfg.bus:  # the worker that runs background callbacks, stopped with the app
            from dashapp.background import start_worker

            celery_worker = start_worker(sys.argv[1:] if argv is None else list(argv))
        services.start()
        url = f"http://{'127.0.0.1' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{cfg.port}"
        print(f"Dashboard: {url}  (feed: {services.feed_url or 'none, --no-ingest'})",
              flush=True)
        app.run(
            host=cfg.host,
            port=cfg.port,
            debug=False,
            use_reloader=False,
            request_handler=webguard.JsonErrorRequestHandler,  # JSON 414/431/400
            dev_tools_silence_routes_logging=True,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if celery_worker is not None:
            from dashapp.background import stop_worker

            stop_worker(celery_worker)
        services.stop()
    return 0


if __name__ == "__main__":
    Path("data").mkdir(exist_ok=True)
    _without_notebook_support()  # the script only: an importer keeps its modules
    sys.exit(main())
