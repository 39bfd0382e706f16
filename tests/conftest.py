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
    "dashapp/test_heavy_fork.py",
})


#: Single tests (module::name, parameters ignored) that take more than a few seconds.
SLOW_TESTS = frozenset({
    "ingest/test_feed.py::test_faults_drop_skip_garbage_and_40s_silence",
    "ingest/test_exactness.py::test_far_future_frame_is_rejected_and_counted",
    "ingest/test_exactness.py::test_unrecoverable_ids_mark_a_break_at_the_first_trade_after_them",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        if rel.startswith("browser/"):
            item.add_marker(pytest.mark.browser)
        name = f"{rel}::{item.originalname or item.name}"
        if (rel.startswith("browser/") or rel in SLOW_MODULES or name in SLOW_TESTS
                or item.get_closest_marker("browser")):
            item.add_marker(pytest.mark.slow)
