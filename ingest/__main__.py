"""``python -m ingest --db X --symbols BTCUSDT,ETHUSDT``: ingest without the dashboard.

Takes the same flags as ``app.py`` (``ingest/config.py``; host and port are not used); a
dashboard can follow the same DB from another process with ``python app.py --no-ingest
--db X``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading

log = logging.getLogger("ingest")


def main(argv: list[str] | None = None) -> int:
    from ingest.config import configure_logging, parse_config
    from ingest.runtime import Runtime

    cfg = parse_config(argv)
    if not cfg.ingest:
        print("python -m ingest: --no-ingest makes no sense here", file=sys.stderr)
        return 2
    configure_logging(cfg.log_level)
    runtime = Runtime(cfg)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    runtime.start()
    # the store's own name for itself: a database URL's password shows as ***
    print(f"ingest: {runtime.feed_url} -> {runtime.store.status()['path']}", flush=True)
    try:
        while not done.wait(10):
            h = runtime.health()
            log.info(
                "ingest: %s msgs, %.0f msg/s, %d stored, %d pending, %d ids missing, "
                "%d back-filled, reconnects %d%s",
                h["feed"]["messages"], h["feed"]["msgs_per_s"], h["store"]["rows"],
                h["store"]["pending"], h["feed"]["gaps"], h["feed"].get("gaps_filled", 0),
                h["feed"]["reconnects"],
                "" if h["store"]["writable"] else f"; STORE NOT WRITING: "
                f"{h['store']['last_error']}",
            )
            if h["bus"] is not None:  # what a worker's /api/health says of its bus
                b = h["bus"]
                log.info("ingest: bus %s %s, %s trades published, %s pending, lag %s ms%s",
                         b.get("url"), "connected" if b.get("connected") else "NOT CONNECTED",
                         b.get("published"), b.get("pending"), b.get("lag_ms"),
                         f"; {b['error']}" if b.get("error") else "")
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
        print(json.dumps(runtime.health()["store"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
