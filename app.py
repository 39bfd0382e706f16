"""Composition root: config -> runtime and services -> Dash app -> web server.

``python app.py``             live Binance USDT-M futures aggTrade feed (needs internet)
``python app.py --replay``    the built-in Binance-protocol replay server on the bundled tape
``python app.py --no-ingest --db data/market.db``  dashboard over a DB another process writes

The flags and the ``Config`` they make are declared once in ``ingest/config.py`` (shared
with ``python -m ingest``). Nothing starts at import time; ``main()`` does it all in order:
logging -> store -> engine -> ingestor (+ restore) -> feed (or replay + feed, or DB follower)
-> services -> Dash app -> ``app.run`` (no debug, no reloader) -> orderly shutdown.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from ingest.config import configure_logging, parse_config

log = logging.getLogger("app")


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM (``docker stop``, ``systemctl stop``) stops the app as Ctrl-C does: the
    server loop ends and ``services.stop()`` flushes the last batch and open bars."""
    log.info("signal %d: stopping", signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    configure_logging(cfg.log_level)

    from dashapp import create_app
    from dashapp.facade import LiveMarketData
    from dashapp.services import build_services

    services = build_services(cfg)
    app = create_app(LiveMarketData(services))  # pages see the facade only
    from dashapp.api import webguard

    hosts = webguard.allowed_hosts(cfg.host, cfg.allowed_hosts)
    webguard.allow_hosts(app.server, hosts)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: the dashboard and its API are reachable from the network, "
            "with no authentication; the pages' callbacks and other POST/PUT/PATCH/DELETE "
            "are accepted only for Host %s (add names with --allowed-hosts)", cfg.host, ", ".join(hosts),
        )
    try:
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
        services.stop()
    return 0


if __name__ == "__main__":
    Path("data").mkdir(exist_ok=True)
    sys.exit(main())
