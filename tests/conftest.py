"""Suite-wide test markers.

``browser`` tests (everything under ``tests/browser/``) drive headless Chromium against a
running app; they are also ``slow``. Modules listed in :data:`SLOW_MODULES` start the app
or the replay server in subprocesses, replay tapes in real time or fuzz at length: the whole
module is ``slow``. ``python -m pytest -m "not slow"`` is the fast inner loop; CI runs all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Modules (relative to tests/) whose every test is slow.
SLOW_MODULES = frozenset({
    "test_app.py",
    "test_hostile_api.py",
    "test_diagram.py",
    "ingest/test_faults.py",
    "ingest/test_backfill.py",
    "ingest/test_fuzz.py",
    "ingest/test_memory.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        if rel.startswith("browser/"):
            item.add_marker(pytest.mark.browser)
        if rel.startswith("browser/") or rel in SLOW_MODULES or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
