"""Who may change state, and JSON for the errors the HTTP server answers itself.

**Origin and Host on state-changing requests.** ``POST /api/upload``, the alert routes,
``DELETE /api/datasets/...`` and Dash's own ``/_dash-update-component`` are POSTs,
PUTs, PATCHes or DELETEs. Served to any ``Host`` and any ``Origin``, a page on another
site (or a DNS-rebinding name pointing at 127.0.0.1) could upload, delete and create
rules in the user's dashboard. One ``before_request`` hook refuses, with a 403 JSON
``{"error", "reason": "host" | "origin"}``:

* a ``Host`` whose name is not allowed: by default the loopback names ``localhost``,
  ``127.0.0.1``, ``::1`` and the address the app is bound to; more with
  ``--allowed-hosts a,b`` (``PAIRS_ALLOWED_HOSTS``), ``*`` for any;
* an ``Origin`` that is not the same origin as the request (scheme, host and port of
  ``Host``), including ``Origin: null``. The pages' own callbacks are same-origin, so
  they pass; a client that sends no ``Origin`` (curl, scripts, test clients) is not a
  browser page and passes when its ``Host`` is allowed.

GET and HEAD are never refused here: they change nothing.

**JSON 414 (and every other error the server sends before Flask sees the request).**
Werkzeug's development server answers a request line over 64 KiB with
``http.server``'s HTML error page. :class:`JsonErrorRequestHandler` sends the same
status with ``{"error": ..., "status": ...}`` instead; ``app.py`` serves with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import urlsplit

import flask
import orjson
from werkzeug.serving import WSGIRequestHandler

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
CONFIG_KEY = "PAIRS_ALLOWED_HOSTS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _json(payload, status: int) -> flask.Response:
    return flask.Response(orjson.dumps(payload), status=status, mimetype="application/json")


def split_host(netloc: str, scheme: str = "http") -> tuple[str, int | None]:
    """``"[::1]:8050"`` -> ``("::1", 8050)``; the scheme's default port when absent;
    ``("", None)`` for anything unparsable."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal...
        return "", None
    return host.rstrip("."), port if port is not None else _DEFAULT_PORTS.get(scheme)


def allowed_hosts(bound_host: str | None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Loopback names, the bound address (unless it is a wildcard) and ``extra``."""
    names = list(LOOPBACK_HOSTS)
    if bound_host and bound_host not in ("0.0.0.0", "::", ""):
        names.append(bound_host.strip("[]").lower())
    names += [h.strip().strip("[]").lower() for h in extra if h.strip()]
    return tuple(dict.fromkeys(names))


def allow_hosts(server: flask.Flask, hosts: Iterable[str]) -> None:
    server.config[CONFIG_KEY] = tuple(hosts)


def refusal(method: str, host_header: str, origin: str | None, scheme: str,
            allowed: Iterable[str]) -> tuple[str, str] | None:
    """``(reason, message)`` if this request may not change state, else None."""
    if method not in STATE_CHANGING:
        return None
    allowed = tuple(allowed)
    host, port = split_host(host_header, scheme)
    if "*" not in allowed and host not in allowed:
        return "host", (
            f"Host {host_header[:80]!r} is not allowed to change state here (allowed: "
            f"{', '.join(allowed)}; start the app with --allowed-hosts to add names)"
        )
    if origin is None:
        return None  # not a browser page: curl, scripts, test clients
    o = urlsplit(origin) if origin != "null" else None
    if o is None or o.scheme not in _DEFAULT_PORTS:
        return "origin", f"Origin {origin[:80]!r} may not change state here"
    if split_host(o.netloc, o.scheme) != (host, port) or o.scheme != scheme:
        return "origin", (
            f"cross-origin request refused: Origin {origin[:80]!r} is not this site "
            f"({scheme}://{host_header[:80]})"
        )
    return None


def check_request():
    req = flask.request
    allowed = flask.current_app.config.get(CONFIG_KEY) or LOOPBACK_HOSTS
    bad = refusal(req.method, req.host, req.headers.get("Origin"), req.scheme, allowed)
    if bad is None:
        return None
    reason, message = bad
    return _json({"error": message, "reason": reason}, 403)


def register(server: flask.Flask) -> None:
    """The Origin/Host hook, on every route of ``server`` (Dash's included)."""
    if check_request not in server.before_request_funcs.get(None, []):
        server.before_request(check_request)


class JsonErrorRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler with JSON bodies for the errors ``http.server`` sends
    itself (414 URI too long, 431 header too long, 400 bad request line, ...)."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        try:
            short, long = self.responses[code]
        except KeyError:
            short, long = "???", "???"
        message = message or short
        explain = explain or long
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        self.send_header("Connection", "close")
        body = None
        if code >= 200 and code not in (
            HTTPStatus.NO_CONTENT, HTTPStatus.RESET_CONTENT, HTTPStatus.NOT_MODIFIED
        ):
            body = orjson.dumps({"error": f"{message}: {explain}", "status": code})
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
