"""A local webhook receiver: see what the app delivers, check its signature.

``python -m ingest.delivery.receiver [--port 9000] [--secret S] [--status 200]``
prints one line per request (event id, ``Idempotency-Key``, whether the
``X-Signature-SHA256`` matches ``--secret``) and answers ``--status``. Tests and
``benchmarks/alerts.py`` use :class:`Receiver` in a thread: it records every request
and answers what ``behaviour`` says (status, headers, delay), e.g. 503 with
``Retry-After`` for a while, or 5 s per request.
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ingest.delivery.senders import signature

__all__ = ["Received", "Receiver"]

#: (index of the request, 0-based) -> (status, extra headers, delay in seconds)
Behaviour = Callable[[int], tuple[int, dict, float]]


@dataclass(frozen=True)
class Received:
    """One request as it arrived (``t``: wall time when it was read)."""

    path: str
    headers: dict
    body: bytes
    t: float
    answered: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A request header, whatever its case (``headers`` keys are lower case)."""
        return self.headers.get(name.lower())

    def signed_by(self, secret: str) -> bool:
        return hmac.compare_digest(self.header("X-Signature-SHA256") or "",
                                   signature(secret, self.body))


@dataclass
class Receiver:
    """An HTTP server on a free loopback port recording every POST (module notes)."""

    behaviour: Behaviour = field(default=lambda i: (200, {}, 0.0))
    port: int = 0
    records: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer._lock:
                    i = outer._count
                    outer._count += 1
                status, headers, delay = outer.behaviour(i)
                if delay:
                    time.sleep(delay)
                with outer._lock:
                    outer.records.append(Received(self.path,
                                                  {k.lower(): v for k, v in self.headers.items()},
                                                  body, time.time(), status))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, str(v))
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender timed out and left: it will retry

            def log_message(self, *args):  # quiet: tests grep the app's log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.records if 200 <= r.answered < 300]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ingest.delivery.receiver",
                                description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--secret", default=None)
    p.add_argument("--status", type=int, default=200)
    a = p.parse_args(argv)
    rec = Receiver(behaviour=lambda i: (a.status, {}, 0.0), port=a.port).start()
    print(f"listening on {rec.url} (any path)", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            for r in rec.records[seen:]:
                sig = "" if a.secret is None else (
                    " signature ok" if r.signed_by(a.secret) else " signature BAD")
                print(f"{r.path} key={r.header('Idempotency-Key')}{sig} "
                      f"{r.body[:200].decode(errors='replace')}", flush=True)
            seen = len(rec.records)
    except KeyboardInterrupt:
        rec.stop()


if __name__ == "__main__":
    main()
