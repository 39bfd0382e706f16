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
from dashapp.ids import Markets, Pair, Shell
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
        # 200 with a real response: the board (this client never acks a version, so
        # it is the whole board each time) and the feed state
        assert page.tick(Markets.TICK_INTERVAL) > 500
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


def test_a_pair_tab_selects_then_refreshes_through_match_ids(app):
    """The scale-out benchmark's tabs poll the pair page as the renderer does: its
    callbacks use ``MATCH`` pattern ids (one request per panel), which ``DashPage``
    resolves to the panel's index (one app per process: Dash's callback list is global)."""
    page = DashPage(flask_client_fetch(app.server.test_client()), "/pair")
    select = page.callback(output=f'"type":"{Pair.ERROR}"')
    body = page.body(select, ({"type": Pair.A, "index": 0}, "value"), match=0)
    flat = [x for i in body["inputs"] for x in (i if isinstance(i, list) else [i])]
    assert {"id": {"index": 0, "type": Pair.A}, "property": "value",
            "value": "BTCUSDT"} in flat  # MATCH -> the panel's index, with its value
    page.call(select, ({"type": Pair.A, "index": 0}, "value"), match=0)
    sel = page.get_prop({"type": Pair.SELECTION, "index": 0}, "data")
    assert sel["a"] and sel["b"] and sel["tf"]
    refresh = page.callback(input_id=Pair.TICK_INTERVAL, prop="n_intervals")
    body = page.body(refresh, (Pair.TICK_INTERVAL, "n_intervals"), match=0)
    # MATCH ids are the panel's; the (MATCH, ALL) "collecting" outputs expand to a list
    ids = [o["id"] for o in body["outputs"] if isinstance(o, dict)]
    assert ids and all(i["index"] == 0 for i in ids if isinstance(i, dict))
    assert any(isinstance(o, list) for o in body["outputs"])
    for _ in range(3):
        assert page.tick(Pair.TICK_INTERVAL, match=0) > 0  # 200 with a response
