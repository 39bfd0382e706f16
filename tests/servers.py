"""Real database servers for tests: started by the test, on a free port, in a temp dir.

The procedure lives once, in :mod:`benchmarks._servers` (the benchmarks start the same
servers without pytest). Here a missing binary or a server that will not start FAILS the
test through ``pytest.fail`` with a message naming the package to install: never a skip,
since a skipped backend test is a backend nobody tested. CI installs the binaries
(``.ci/run``).

PostgreSQL: ``initdb`` refuses to run as root, so when the tests run as root the server
runs as the ``postgres`` user (``runuser -u postgres --``) in a temp directory owned by
it; trust authentication on 127.0.0.1 and a Unix socket in that directory only.

Redis (the live bus, ``ingest/bus``): ``redis-server`` from Debian's ``redis-server``
package, in the foreground, no persistence, on a free loopback port;
:meth:`RedisServer.restart` brings it back on the same port, empty.
"""

from __future__ import annotations

import pytest

from benchmarks import _servers
from benchmarks._servers import PostgresServer, RedisServer, ServerMissing, free_port

__all__ = ["PostgresServer", "RedisServer", "free_port", "start_postgres", "start_redis"]


def start_postgres(*, durable: bool = False) -> PostgresServer:
    try:
        return _servers.start_postgres(durable=durable)
    except ServerMissing as exc:
        pytest.fail(str(exc.code), pytrace=False)


def start_redis() -> RedisServer:
    try:
        return _servers.start_redis()
    except ServerMissing as exc:
        pytest.fail(str(exc.code), pytrace=False)
