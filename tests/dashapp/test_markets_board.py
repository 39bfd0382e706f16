"""Versioned boards (dashapp.board): full, then only the changed cells; shared builds;
a refresh never waits for a build; sparklines for the visible rows only."""

from __future__ import annotations

import json
import threading
import time

from analytics.board import CELL_FIELDS
from dashapp.board import BoardCache, build_rows, spark_message
from tests.dashapp.dash_fakes import FakeServices

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _wait_version(cache: BoardCache, version: int) -> None:
    deadline = time.monotonic() + 10
    while cache.current().version < version:
        assert time.monotonic() < deadline, "no background build"
        time.sleep(0.01)


def _apply(rows: dict, names: list, msg: dict) -> dict:
    """What assets/markets_board.js does with a message (the reference client)."""
    if msg.get("full"):
        return {r["name"]: dict(r) for r in msg["rows"]}
    out = {n: dict(r) for n, r in rows.items()}
    for field, cells in msg["set"].items():
        for i in range(0, len(cells), 2):
            out[names[cells[i]]][field] = cells[i + 1]
    for r in msg["add"]:
        out[r["name"]] = dict(r)
    return out


def test_full_then_changed_cells_only_and_the_client_rebuilds_the_board():
    svc = FakeServices(900, SYMS)
    clock = Clock()
    cache = BoardCache(svc, clock=clock, first_version=1)
    first = json.loads(json.dumps(cache.message(None)))  # the browser round trip
    assert first["full"] and first["names"] == list(SYMS) and first["v"] == 1
    assert [r["name"] for r in first["rows"]] == list(SYMS)
    assert cache.message(1) == {"v": 1, "from": 1, "set": {}, "add": []}

    svc.advance(1, drift=1e-3)
    clock.t += 0.6  # stale: the next ask starts a build and is served the old board
    assert cache.message(1)["v"] == 1
    _wait_version(cache, 2)
    diff = json.loads(json.dumps(cache.message(1)))
    assert not diff.get("full") and diff["from"] == 1 and diff["v"] == 2
    assert set(diff["set"]) <= set(CELL_FIELDS) and "last" in diff["set"]
    assert all(isinstance(i, int) for i in diff["set"]["last"][::2])
    rows = _apply({r["name"]: r for r in first["rows"]}, first["names"], diff)
    assert rows == build_rows(svc)
    assert len(json.dumps(diff)) < len(json.dumps(first)) / 2
    assert cache.message(1) is cache.message(1)  # one diff per version, for every tab
    assert cache.message(999)["full"] and cache.message("x")["full"]  # unknown: full


def test_rows_read_from_bar_tails_equal_rows_from_every_bar():
    """The board reads the last 180 1 s bars (a day holds 86,400); its rows equal those
    computed from all bars held."""
    from analytics.board import board_row, row_cells

    svc = FakeServices(3_600, SYMS)
    svc.advance(30, drift=2e-4)  # bars after the last closed minute
    svc.set_quote("ETHUSDT", 2_680.0, 2_680.5)
    now = svc.exchange_now_ms()
    for name, row in build_rows(svc).items():
        q = svc.quote(name)
        full = board_row(name, name, "spot", svc.bars(name, 60_000), svc.bars(name, 1_000),
                         svc.last_tick(name).price, now,
                         None if q is None else q.bid, None if q is None else q.ask)
        assert row == row_cells(full)
        assert row["volume"] > 0 and row["trades_per_min"] > 0


def test_a_new_process_does_not_know_an_old_processes_versions():
    svc = FakeServices(300, SYMS)
    old, new = BoardCache(svc), BoardCache(svc)
    assert old.current().version != new.current().version
    assert new.message(old.current().version)["full"]


def test_unchanged_market_keeps_its_version():
    svc = FakeServices(300, SYMS)
    clock = Clock()
    cache = BoardCache(svc, clock=clock, first_version=1)
    v = cache.current().version
    clock.t += 1
    board = cache.build_now()
    assert board.version == v and cache.message(v)["set"] == {}


def test_a_refresh_does_not_wait_for_a_slow_build():
    svc = FakeServices(300, SYMS)
    clock = Clock()
    cache = BoardCache(svc, clock=clock, first_version=1)
    cache.current()
    gate = threading.Event()
    names = svc.names

    def slow_names():
        gate.wait(5)
        return names()

    svc.names = slow_names
    clock.t += 1
    t0 = time.perf_counter()
    for _ in range(20):
        assert cache.message(1)["v"] == 1
    assert time.perf_counter() - t0 < 0.5  # served while the build waits on the gate
    gate.set()


def test_new_instruments_join_as_added_rows_and_old_versions_fall_back_to_full():
    svc = FakeServices(300, SYMS)
    listed = {"BTCUSDT", "ETHUSDT"}  # SOLUSDT lists later (Runtime.add_instruments)
    real = svc.names
    svc.names = lambda: tuple(n for n in real() if n in listed)
    clock = Clock()
    cache = BoardCache(svc, clock=clock, keep=3, first_version=1)
    assert cache.current().names == ("BTCUSDT", "ETHUSDT")
    listed.add("SOLUSDT")
    clock.t += 1
    board = cache.build_now()
    msg = cache.message(1)
    assert not msg.get("full") and [r["name"] for r in msg["add"]] == ["SOLUSDT"]
    assert board.names == SYMS
    for _ in range(4):  # push version 1 out of the kept history
        svc.advance(1, drift=1e-3)
        clock.t += 1
        cache.build_now()
    assert cache.message(1)["full"]
    listed.discard("ETHUSDT")  # a row gone (never in a run today): a full board
    clock.t += 1
    v = cache.current().version
    cache.build_now()
    assert cache.message(v)["full"]


def test_sparklines_only_for_visible_rows_and_only_what_is_new():
    svc = FakeServices(900, SYMS)
    first = spark_message(svc, {"BTCUSDT": None}, 1_000)
    assert list(first) == ["BTCUSDT"]
    ts, full, *closes = first["BTCUSDT"]
    assert full == 1 and len(closes) == 60
    bars = svc.bars("BTCUSDT", 1_000)
    assert ts == int(bars.ts[-1]) and closes[-1] == float(f"{bars.close[-1]:.6g}")
    assert spark_message(svc, {"BTCUSDT": ts}, 1_000) == {}
    svc.advance(2)
    more = spark_message(svc, {"BTCUSDT": ts, "NOPE": None, 3: None}, 1_000)
    assert list(more) == ["BTCUSDT"] and more["BTCUSDT"][1] == 0
    assert len(more["BTCUSDT"]) - 2 == 2
    assert spark_message(svc, "forged", 1_000) == {}
    # whole lines are capped per refresh (top rows first); appends are not
    capped = spark_message(svc, dict.fromkeys(SYMS), 1_000, max_full=2)
    assert list(capped) == list(SYMS[:2])
    rest = spark_message(svc, {**{n: capped[n][0] for n in capped}, "SOLUSDT": None},
                         1_000, max_full=2)
    assert list(rest) == ["SOLUSDT"] and rest["SOLUSDT"][1] == 1
