"""The Celery worker that runs background callbacks when the app has ``--bus``.

``python -m dashapp.celery_worker FLAGS`` takes the app's own flags (``app.py`` starts
it with its argv: :func:`dashapp.background.start_worker`). It is a follower whatever the
app is (``--no-ingest``, no replay: the app process owns the feed), builds the same
facade the pages read, creates the Dash app with the Celery manager (that registers
every background callback as a Celery task, under the same names the web processes
send), then serves the queue in ``PAIRS_HEAVY_SLOTS`` threads until SIGTERM, or until
the app that started it is gone (``kill -9`` of the app leaves no orphan).
"""

from __future__ import annotations

import os
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    from dashapp.services import follower_config

    cfg = follower_config(argv)
    if not cfg.bus:
        raise SystemExit("error: --bus: the Celery worker needs the bus (redis://HOST:PORT/N)")

    from dashapp import create_app
    from dashapp.background import QUEUE, exit_with_parent
    from dashapp.facade import LiveMarketData
    from dashapp.heavy import limits_from_env
    from dashapp.services import build_services

    services = build_services(cfg)
    app = create_app(LiveMarketData(services), bus=cfg.bus,
                     cache_dir=tempfile.gettempdir())
    celery = app._background_manager.handle
    services.start()
    exit_with_parent()
    try:
        celery.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(limits_from_env().slots),
            "--queues", QUEUE, "--hostname", f"pairs-{os.getpid()}@%h",
            "--loglevel", cfg.log_level, "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ])
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
