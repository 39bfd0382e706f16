"""One attempt to deliver one body to one channel, with a timeout; never raises.

* ``webhook``: ``POST`` of the JSON body, headers ``Content-Type: application/json``,
  ``Idempotency-Key: <event_id>`` (a receiver drops the rare duplicate of at-least-once
  delivery), and with a secret ``X-Signature-SHA256: sha256=<hex>`` where
  ``hex = HMAC-SHA256(secret, body)`` over the exact body bytes. A 2xx is delivered;
  ``Retry-After`` (seconds or an HTTP date) of a 429/503 is passed back to the worker;
  a 4xx other than 408, 425 and 429 is permanent (retrying cannot help). A loopback
  URL bypasses any proxy of the environment.
* ``slack``, ``discord``, ``telegram``, ``email``: through apprise (the plugin's own
  timeouts set to ours); apprise answers only sent / not sent, so a failure is
  retried, with apprise's log lines (scrubbed) as the error.

Every error text goes through :func:`ingest.delivery.channels.scrub`, so no URL token or
secret reaches ``last_error``, the API or a log line.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import io
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from ingest.delivery.channels import is_loopback, scrub

__all__ = ["Outcome", "parse_retry_after", "send", "signature"]

log = logging.getLogger(__name__)
USER_AGENT = "pair-analytics-alerts/1"
_RETRYABLE_4XX = (408, 425, 429)
_MAX_ERROR = 300


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave: ``ok`` (2xx / apprise sent), the HTTP ``status`` (None:
    no answer), the scrubbed ``error``, the wall ``latency_ms``, the receiver's
    ``Retry-After`` in seconds, and ``permanent`` (do not retry)."""

    ok: bool
    status: int | None
    error: str | None
    latency_ms: float
    retry_after_s: float | None = None
    permanent: bool = False

    def as_json(self) -> dict:
        return {"ok": self.ok, "status": self.status, "error": self.error,
                "latency_ms": round(self.latency_ms, 1)}


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, body)>`` (the ``X-Signature-SHA256`` value)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date (RFC 9110
    10.2.3); None when absent or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urlsplit(url).hostname
    if is_loopback(host):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def send_webhook(url: str, secret: str | None, body: bytes, idempotency_key: str,
                 timeout_s: float) -> Outcome:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Idempotency-Key": idempotency_key}
    if secret:
        headers["X-Signature-SHA256"] = signature(secret, body)
    target = url
    parts = urlsplit(url)
    if parts.username is not None:  # user:pass@host: HTTP Basic (urllib takes no userinfo)
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        host = parts.netloc.rsplit("@", 1)[1]
        target = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    req = urllib.request.Request(target, data=body, method="POST", headers=headers)
    t0 = time.perf_counter()
    try:
        with _opener(url).open(req, timeout=timeout_s) as resp:
            resp.read(65_536)
            status = int(resp.status)
        ms = 1e3 * (time.perf_counter() - t0)
        if 200 <= status < 300:
            return Outcome(True, status, None, ms)
        return Outcome(False, status, f"HTTP {status}", ms)
    except urllib.error.HTTPError as exc:
        ms = 1e3 * (time.perf_counter() - t0)
        status = int(exc.code)
        retry = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
        reason = _short(f"HTTP {status} {exc.reason or ''}".strip())
        return Outcome(False, status, scrub(reason, "webhook", url, secret), ms, retry,
                       permanent)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        ms = 1e3 * (time.perf_counter() - t0)
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = _short(f"{type(why).__name__}: {why}" if str(why) else type(why).__name__)
        return Outcome(False, None, scrub(text, "webhook", url, secret), ms)


def _apprise_logger() -> logging.Logger:
    # Apprise's own lines are captured per attempt (they become last_error, scrubbed);
    # they never reach the app's log handlers, where a plugin might print a token.
    lg = logging.getLogger("apprise")
    lg.propagate = False
    return lg


def send_apprise(kind: str, url: str, payload: dict, timeout_s: float) -> Outcome:
    import apprise

    lg = _apprise_logger()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.WARNING)
    lg.addHandler(handler)
    if lg.level == logging.NOTSET or lg.level > logging.WARNING:
        lg.setLevel(logging.WARNING)
    t0 = time.perf_counter()
    try:
        ap = apprise.Apprise()
        sep = "&" if "?" in url else "?"
        t = f"{max(1.0, float(timeout_s)):g}"
        if not ap.add(f"{url}{sep}cto={t}&rto={t}"):
            return Outcome(False, None, f"not a valid {kind} URL", 0.0, permanent=True)
        value = payload.get("value")
        title = f"Alert: {payload.get('description', '')}"
        body = (f"value {value} (threshold {payload.get('threshold')}) at "
                f"{payload.get('data_ts')}; rule {payload.get('rule_id')}, "
                f"event {payload.get('event_id')}")
        ok = bool(ap.notify(title=title, body=body))
    except Exception as exc:  # a plugin bug must not kill the worker thread
        ok = False
        buf.write(f"{type(exc).__name__}: {exc}")
    finally:
        lg.removeHandler(handler)
    ms = 1e3 * (time.perf_counter() - t0)
    if ok:
        return Outcome(True, None, None, ms)
    text = _short(buf.getvalue().strip().splitlines()[-1] if buf.getvalue().strip()
                  else f"{kind}: not sent")
    return Outcome(False, None, scrub(text, kind, url), ms)


def send(kind: str, url: str, secret: str | None, payload: dict, body: bytes,
         timeout_s: float) -> Outcome:
    """One attempt to a channel of ``kind`` (see the module notes)."""
    if kind == "webhook":
        return send_webhook(url, secret, body, str(payload.get("event_id")), timeout_s)
    return send_apprise(kind, url, payload, timeout_s)
