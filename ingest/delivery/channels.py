"""Alert channels: where a rule's events are sent, validated once, shown masked.

A channel is ``{"kind", "name", "url", "secret"?}``:

==========  ============================================================================
kind        url
==========  ============================================================================
webhook     ``http://`` or ``https://`` (loopback included: local relays, tests); the
            optional ``secret`` signs each body: ``X-Signature-SHA256: sha256=<hex
            HMAC-SHA256(secret, body)>``
slack       an apprise URL ``slack://…`` (or Slack's own ``https://hooks.slack.com/…``)
discord     ``discord://…`` (or ``https://discord.com/api/webhooks/…``)
telegram    ``tgram://bottoken/chat_id``
email       ``mailto://user:pass@host`` / ``mailtos://…``
==========  ============================================================================

Secrets are write-only. The ``secret`` never leaves the store; a URL is shown through
:func:`mask_url`: an apprise URL keeps only its scheme (``slack://****``: the whole rest
is tokens), a webhook URL keeps scheme, host, port and the path segments that cannot be
a token (lower-case letters, ``-``, ``_``, ``.``, at most 24 characters), and masks
user info, every other path segment and every query value
(``https://hooks.example.com/services/****/****?token=****``). :func:`scrub` removes a
channel's URL, its pieces and its secret from any text (an exception's message names
the URL it failed on) before it is stored as ``last_error`` or logged.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "APPRISE_KINDS",
    "KINDS",
    "ChannelError",
    "ChannelNotFound",
    "ChannelSpec",
    "channel_json",
    "is_loopback",
    "mask_url",
    "parse_channel",
    "scrub",
]

KINDS = ("webhook", "slack", "discord", "telegram", "email")
#: Apprise URL schemes per kind (the native https forms are recognised by apprise).
APPRISE_KINDS: dict[str, tuple[str, ...]] = {
    "slack": ("slack",),
    "discord": ("discord",),
    "telegram": ("tgram",),
    "email": ("mailto", "mailtos"),
}
_NATIVE_HOSTS = {"slack": ("hooks.slack.com",),
                 "discord": ("discord.com", "discordapp.com")}
MAX_NAME = 80
MAX_URL = 2048
MAX_SECRET = 512
MASK = "****"
_PLAIN_SEGMENT = re.compile(r"^[a-z_.\-]{1,24}$")
_FIELDS = ("kind", "name", "url", "secret")


class ChannelError(ValueError):
    """An invalid channel: ``fields`` maps each bad field to its message (the API
    answers 400 ``{"error", "fields"}``)."""

    def __init__(self, field: str, message: str) -> None:
        self.fields: dict[str, str] = {field: message}
        super().__init__(f"{field}: {message}")

    @classmethod
    def of(cls, fields: dict[str, str]) -> ChannelError:
        first = next(iter(fields))
        err = cls(first, fields[first])
        err.fields = dict(fields)
        err.args = ("; ".join(f"{k}: {v}" for k, v in fields.items()),)
        return err


class ChannelNotFound(KeyError):
    def __init__(self, channel_id: int) -> None:
        super().__init__(channel_id)
        self.channel_id = channel_id

    def __str__(self) -> str:
        return f"no such alert channel: {self.channel_id}"


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A validated channel (``secret`` None: none; the webhook kind only)."""

    kind: str
    name: str
    url: str
    secret: str | None = None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook_url(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme[:20] or "(none)"
        return f"scheme {shown!r} is not allowed for a webhook (http or https)"
    if not parts.hostname:
        return "has no host"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    return None


def _apprise_url(kind: str, url: str) -> str | None:
    """Why ``url`` is not an apprise URL of ``kind``, or None."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    native = scheme == "https" and (parts.hostname or "") in _NATIVE_HOSTS.get(kind, ())
    if scheme not in APPRISE_KINDS[kind] and not native:
        allowed = ", ".join(f"{s}://" for s in APPRISE_KINDS[kind])
        return f"scheme {parts.scheme[:20] or '(none)'!r} is not a {kind} URL ({allowed})"
    import apprise  # optional at import time: only channels of these kinds need it

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return f"is not a valid {kind} URL (apprise cannot parse it)"
    return None


def parse_channel(data, *, old: ChannelSpec | None = None) -> ChannelSpec:
    """Validate a channel's JSON. On an edit (``old``), a missing or empty ``secret``
    keeps the old one and ``"secret": null`` removes it; a missing ``kind``, a missing
    ``url`` or the masked URL sent back as shown keeps the stored one (the page only
    ever sees it masked); every bad field is named."""
    if not isinstance(data, dict):
        raise ChannelError("body", "must be a JSON object")
    errors: dict[str, str] = {}
    for key in data:
        if key not in _FIELDS and key not in ("id", "has_secret", "created_ms", "updated_ms"):
            errors[str(key)[:40]] = "unknown field"
    kind = data.get("kind")
    if kind is None and old is not None:
        kind = old.kind  # an edit may leave the kind out
    if not isinstance(kind, str) or not kind.strip():
        errors["kind"] = f"is required (one of {', '.join(KINDS)})"
        kind = None
    else:
        kind = kind.strip().lower()
        if kind not in KINDS:
            errors["kind"] = f"{kind[:40]!r} is not one of {', '.join(KINDS)}"
            kind = None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "is required"
    elif len(name.strip()) > MAX_NAME:
        errors["name"] = f"at most {MAX_NAME} characters"
    url = data.get("url")
    if old is not None and ("url" not in data or (
            isinstance(url, str) and kind == old.kind
            and url.strip() == mask_url(old.kind, old.url))):
        url = old.url  # an edit that leaves the masked URL as shown keeps the stored one
    if not isinstance(url, str) or not url.strip():
        errors["url"] = "is required"
    elif len(url.strip()) > MAX_URL:
        errors["url"] = f"at most {MAX_URL} characters"
    elif kind is not None:
        why = _webhook_url(url.strip()) if kind == "webhook" else _apprise_url(kind, url.strip())
        if why:
            errors["url"] = why
    secret = data.get("secret", "")
    if secret is None:
        secret = None
    elif not isinstance(secret, str):
        errors["secret"] = "must be a string"
    elif len(secret) > MAX_SECRET:
        errors["secret"] = f"at most {MAX_SECRET} characters"
    elif secret == "":
        secret = old.secret if old is not None else None
    if secret and kind not in (None, "webhook"):
        errors["secret"] = "only a webhook signs with a secret (apprise URLs carry their tokens)"
    if errors:
        raise ChannelError.of(errors)
    return ChannelSpec(kind, name.strip(), url.strip(), secret or None)


def mask_url(kind: str, url: str) -> str:
    """The URL as shown anywhere (module notes): tokens replaced by ``****``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if kind != "webhook":
        return f"{parts.scheme}://{MASK}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (f"{MASK}@" if parts.username or parts.password else "") + host
    if port is not None:
        netloc += f":{port}"
    segments = [s if (s == "" or _PLAIN_SEGMENT.match(s)) else MASK
                for s in parts.path.split("/")]
    out = f"{parts.scheme}://{netloc}{'/'.join(segments)}"
    if parts.query:
        out += "?" + "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query,
                                                                   keep_blank_values=True))
    return out


def _secret_pieces(kind: str, url: str, secret: str | None) -> list[str]:
    """Every substring of the URL (and the secret) that the mask hides."""
    pieces = [url]
    if secret:
        pieces.append(secret)
    try:
        parts = urlsplit(url)
    except ValueError:
        return pieces
    if kind != "webhook":
        rest = url.split("://", 1)[-1]
        pieces.append(rest)
        pieces += [p for p in re.split(r"[/:@?&=#]", rest) if len(p) >= 4]
        return pieces
    pieces += [p for p in (parts.username, parts.password) if p]
    pieces += [s for s in parts.path.split("/") if s and not _PLAIN_SEGMENT.match(s)]
    pieces += [v for _, v in parse_qsl(parts.query, keep_blank_values=True) if v]
    if parts.query:
        pieces += [parts.query, parts.path + "?" + parts.query]
    return pieces


def scrub(text: str, kind: str, url: str, secret: str | None = None) -> str:
    """``text`` with the channel's URL, its token-like pieces and its secret masked."""
    if not text:
        return text
    for piece in sorted(set(_secret_pieces(kind, url, secret)), key=len, reverse=True):
        if len(piece) >= 3 and piece not in ("/", MASK):
            text = text.replace(piece, MASK if piece != url else mask_url(kind, url))
    return text


def channel_json(channel) -> dict:
    """What the API answers for a stored channel: no secret, the URL masked."""
    return {
        "id": channel.id, "kind": channel.kind, "name": channel.name,
        "url": mask_url(channel.kind, channel.url), "has_secret": bool(channel.secret),
        "created_ms": channel.created_ms, "updated_ms": channel.updated_ms,
    }
