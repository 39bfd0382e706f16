"""The gunicorn entry ``app:wsgi_app()`` (docs/scaleout.md#workers): settings from the
``PAIRS_*`` environment like the flags, and it never ingests (N gunicorn workers would be
N writers of one store). Serving over PostgreSQL + Redis is in ``tests/test_scaleout.py``."""

from __future__ import annotations

import pytest

import app
from ingest.config import parse_config


@pytest.mark.parametrize("value, ingest", [("1", False), ("true", False), ("", True),
                                           ("0", True)])
def test_pairs_no_ingest_is_the_no_ingest_flag(monkeypatch, value, ingest):
    monkeypatch.setenv("PAIRS_NO_INGEST", value)
    assert parse_config([]).ingest is ingest
    assert parse_config(["--no-ingest"]).ingest is False


def test_wsgi_app_refuses_to_ingest_naming_the_variable(monkeypatch):
    monkeypatch.delenv("PAIRS_NO_INGEST", raising=False)
    with pytest.raises(SystemExit) as exc:
        app.wsgi_app()
    assert "PAIRS_NO_INGEST=1" in str(exc.value) and "python -m ingest" in str(exc.value)


def test_wsgi_app_takes_flags_as_a_list(monkeypatch, tmp_path):
    """``'app:wsgi_app(["--no-ingest", ...])'``: the flags are parsed as on the command
    line (a missing DB stops with the same message as ``app.py --no-ingest``)."""
    monkeypatch.delenv("PAIRS_NO_INGEST", raising=False)
    missing = tmp_path / "none.db"
    with pytest.raises(SystemExit) as exc:
        app.wsgi_app(["--no-ingest", "--db", str(missing)])
    assert "does not exist" in str(exc.value)
