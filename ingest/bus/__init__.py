"""The live bus: one ingest process publishes trades, bars, gaps, breaks and feed health; dashboard workers follow.

:mod:`ingest.bus.interface` declares the ONE interface (publisher, follower, events);
:mod:`ingest.bus.redis_bus` implements it on Redis Streams, :mod:`ingest.bus.codec`
names the streams and encodes events, :mod:`ingest.bus.follow` feeds a worker's
``Ingestor`` from a follower. :func:`check_bus_url` is what ``--bus`` accepts;
:func:`open_publisher` / :func:`open_follower` pick the backend by URL scheme.
Without ``--bus`` nothing here is imported: the in-process path is unchanged.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ingest.bus import interface
from ingest.bus.interface import *  # noqa: F403 - the interface's names, declared there once
from ingest.bus.interface import BusFollower, BusPublisher, BusUnavailable

__all__ = [*interface.__all__, "check_bus_url", "open_follower", "open_publisher", "probe"]

SCHEMES = ("redis", "rediss")


def check_bus_url(url: str) -> str:
    """``redis://HOST:PORT/N`` (or ``rediss://``) as given; :class:`BusUnavailable`
    saying what is wrong otherwise (``--bus`` reports it as a usage error)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise BusUnavailable(
            f"{url!r}: use redis://HOST:PORT/N (Redis Streams is the only bus)"
        )
    if not parts.hostname:
        raise BusUnavailable(f"{url!r}: no host (redis://HOST:PORT/N)")
    try:
        port = parts.port
    except ValueError:
        raise BusUnavailable(f"{url!r}: the port is not a number in 1..65535") from None
    if port is not None and not 1 <= port <= 65535:
        raise BusUnavailable(f"{url!r}: the port is not a number in 1..65535")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise BusUnavailable(f"{url!r}: the database after the port must be a number (/0)")
    return url


def probe(url: str) -> None:
    """Reach the bus server now (:class:`BusUnavailable` naming the URL if not)."""
    from ingest.bus.redis_bus import probe as redis_probe

    redis_probe(check_bus_url(url))


def open_publisher(url: str, **kwargs) -> BusPublisher:
    """A publisher for ``url`` (not started); kwargs as ``RedisPublisher``."""
    from ingest.bus.redis_bus import RedisPublisher

    return RedisPublisher(check_bus_url(url), **kwargs)


def open_follower(url: str, **kwargs) -> BusFollower:
    """A follower for ``url`` (not connected); kwargs as ``RedisFollower``."""
    from ingest.bus.redis_bus import RedisFollower

    return RedisFollower(check_bus_url(url), **kwargs)
