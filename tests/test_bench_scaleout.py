"""``python -m benchmarks.scaleout`` and its servers: bad arguments and a missing server
binary end the run with a message naming what to change or install (the benchmark
itself runs by hand: it takes minutes and starts real servers)."""

from __future__ import annotations

import pytest

from benchmarks import _servers, scaleout


def test_a_missing_redis_server_names_the_package(monkeypatch):
    monkeypatch.setattr(_servers.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="install redis-server"):
        _servers.start_redis()


def test_missing_postgres_binaries_name_the_package(monkeypatch):
    monkeypatch.setattr(_servers, "PG_BIN_DIRS", ("/nonexistent",))
    monkeypatch.setattr(_servers.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="install postgresql-15"):
        _servers.start_postgres()


@pytest.mark.parametrize("argv, flag", [
    (["--trades", "10"], "--trades"),
    (["--tabs", "0"], "--tabs"),
    (["--workers", "1"], "--workers"),
    (["--latency-seconds", "0"], "--latency-seconds"),
    (["--tab-seconds", "-1"], "--tab-seconds"),
])
def test_bad_arguments_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        scaleout.main(argv)
    assert exc.value.code == 2 and flag in capsys.readouterr().err
