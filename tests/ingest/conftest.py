"""Fixtures for the ingest tests: the committed real tapes in sample_data/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.replay import ReplayServer
from ingest.replay.tapes import Tape, default_sample_files, load_tape

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def spot_tape() -> Tape:
    """BTCUSDT + ETHUSDT spot trades, 2024-08-08 23:54 -> 00:05 (34,419 events)."""
    return load_tape(default_sample_files("spot"))


@pytest.fixture(scope="session")
def small_tape(spot_tape: Tape) -> Tape:
    """The first 3,000 interleaved events: enough for fault tests, fast to stream."""
    return Tape(spot_tape.events[:3000], source_files=spot_tape.source_files)


@pytest.fixture
def make_server() -> Iterator:
    """Factory for started ReplayServers (stopped after the test)."""
    servers: list[ReplayServer] = []

    def factory(tape: Tape, **kwargs: object) -> ReplayServer:
        kwargs.setdefault("rate_limit", None)  # tests send bursts of control messages
        server = ReplayServer(tape, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()
