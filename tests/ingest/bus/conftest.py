"""Fixtures of the bus tests: a real ``redis-server`` per test (tests restart and kill
it), started by :func:`tests.servers.start_redis` on a free port; a machine without
the binary FAILS these tests with "install redis-server" (CI installs it)."""

from __future__ import annotations

import shutil

import pytest

from tests.servers import RedisServer, start_redis


@pytest.fixture
def redis_server() -> RedisServer:
    server = start_redis()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
