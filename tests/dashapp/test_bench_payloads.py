"""Issue 13.12: benchmark clients build their Dash requests from the app's own callback
map and page layout, and every one of them must be answered (200, a ``response``).

The old ingest benchmark posted the markets callback with only its interval input;
Dash answered 500 (``IndexError`` grouping the inputs) 65 times out of 65 and the
benchmark still reported ``meets_targets``."""

from __future__ import annotations

import tempfile

import pytest

from benchmarks._dash_client import CallbackFailed, DashPage, flask_client_fetch
from dashapp import create_app
from dashapp.ids import Markets, Shell
from tests.dashapp.dash_fakes import FakeServices


@pytest.fixture(scope="module")
def app():
    return create_app(FakeServices(), cache_dir=tempfile.mkdtemp(prefix="bench-payloads-"))


def test_markets_page_requests_built_from_the_callback_map_are_all_answered(app):
    page = DashPage(flask_client_fetch(app.server.test_client()), "/")
    dep = page.callback(input_id=Markets.TICK_INTERVAL, prop="n_intervals")
    body = page.body(dep, (Markets.TICK_INTERVAL, "n_intervals"))
    # every input and state of the callback is sent, ALL ids expanded from the layout
    assert [i["id"] for i in body["inputs"]] == [x["id"] for x in dep["inputs"]]
    assert len(body["state"]) == len(dep["state"])
    feeds = body["outputs"][0]
    assert isinstance(feeds, list) and len(feeds) >= 3
    for _ in range(3):
        assert page.tick(Markets.TICK_INTERVAL) > 1000  # 200 with a real response
        assert page.tick(Shell.STATUS_INTERVAL) > 10
    assert page.get_prop(Markets.STATE, "data")  # the answer's store fed the page


def test_the_old_hand_built_payload_fails_and_is_reported(app):
    """A payload missing the callback's other inputs (the old benchmark's) is refused by
    Dash; the client raises instead of timing it."""
    page = DashPage(flask_client_fetch(app.server.test_client()), "/")
    dep = page.callback(input_id=Markets.TICK_INTERVAL, prop="n_intervals")
    dep = {**dep, "inputs": dep["inputs"][:1]}  # only the interval, as before
    with pytest.raises(CallbackFailed, match="HTTP 500"):
        page.call(dep, (Markets.TICK_INTERVAL, "n_intervals"))


def test_the_ingest_benchmark_fails_when_any_dash_request_failed():
    from benchmarks.ingest import dash_client_ok

    ok = {k: {"requests": 20} for k in ("markets_callback", "badge_callback", "health")}
    assert dash_client_ok({**ok, "errors": 0})
    assert not dash_client_ok({**ok, "errors": 65})  # the run: 65 of 65 were 500s
    assert not dash_client_ok({**ok, "markets_callback": {"requests": 0}, "errors": 0})
    assert not dash_client_ok(None)
