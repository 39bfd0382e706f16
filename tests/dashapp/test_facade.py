"""The market facade (dashapp/facade.py): the one door from pages to the runtime.

* no dashapp module but the facade reaches into the runtime (``.ingestor``, ``.rings``,
  ``.store``, ``.engine``) or imports ``ingest``;
* :class:`LiveMarketData` and the tests' :class:`FakeServices` implement every member of
  :class:`MarketData` and its sub-facades with the protocol's parameters;
* every member of :class:`LiveMarketData` answers over a real small Runtime fed by hand.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dashapp.facade import (
    AlertsData,
    DatasetsData,
    LiveAlerts,
    LiveDatasets,
    LiveMarketData,
    MarketData,
    RuleNotFound,
)
from tests.dashapp.dash_fakes import FakeAlerts, FakeDatasets, FakeServices

DASHAPP = Path(__file__).resolve().parents[2] / "dashapp"
#: The runtime's insides: only the facade may name them.
RUNTIME_INSIDES = {"ingestor", "rings", "store", "engine"}
#: Modules allowed to import ``ingest``: the facade (re-exports, types) and the
#: services registry (``build_services``, app.py's hook that builds the Runtime).
MAY_IMPORT_INGEST = {"facade.py", "services.py"}


def _modules():
    for path in sorted(DASHAPP.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def test_no_dashapp_module_reaches_into_the_runtime():
    offenders = []
    for path, tree in _modules():
        if path.name == "facade.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr not in RUNTIME_INSIDES:
                continue
            # ``market.datasets.store(name, upload)`` is the datasets facade's method
            if node.attr == "store" and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "datasets":
                continue
            offenders.append(f"{path.relative_to(DASHAPP.parent)}:{node.lineno} .{node.attr}")
    assert offenders == [], "ask dashapp.facade.MarketData instead:\n" + "\n".join(offenders)


def test_only_the_facade_imports_ingest():
    offenders = []
    for path, tree in _modules():
        if path.name in MAY_IMPORT_INGEST and path.parent == DASHAPP:
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name == "ingest" or name.startswith("ingest."):
                    offenders.append(f"{path.relative_to(DASHAPP.parent)}:{node.lineno} {name}")
    assert offenders == [], "import these from dashapp.facade:\n" + "\n".join(offenders)


# ------------------------------------------------------------------ signatures
def _members(protocol) -> list[str]:
    return sorted(n for n in vars(protocol) if not n.startswith("_"))


def _params(func) -> list[tuple]:
    """Parameters as (name, kind, default): annotations may be spelled differently."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


SUB_FACADES = {"alerts": AlertsData, "datasets": DatasetsData}


def test_protocols_declare_what_pages_need():
    members = set(_members(MarketData))
    assert {"alerts", "datasets", "bars", "open_bar", "timeframes", "pair", "breaks",
            "names", "resolve", "last_tick", "ticks_since", "ticks_window", "trade_rate",
            "exchange_now_ms", "stored_trades", "health", "feed_health"} <= members
    assert {"create", "update", "delete", "rules_json", "events", "last_event_id",
            "restore", "active_thresholds"} <= set(_members(AlertsData))
    assert {"list", "get", "bars", "store", "remove"} == set(_members(DatasetsData))


@pytest.mark.parametrize(
    ("protocol", "impl"),
    [
        (MarketData, LiveMarketData),
        (MarketData, FakeServices),
        (AlertsData, LiveAlerts),
        (AlertsData, FakeAlerts),
        (DatasetsData, LiveDatasets),
        (DatasetsData, FakeDatasets),
    ],
    ids=lambda x: x.__name__,
)
def test_implementation_has_every_member_with_the_protocols_parameters(protocol, impl):
    for name in _members(protocol):
        if name in SUB_FACADES:
            continue  # checked below on instances (a property or an attribute)
        assert callable(getattr(impl, name, None)), f"{impl.__name__} lacks {name}"
        assert _params(getattr(impl, name)) == _params(getattr(protocol, name)), (
            f"{impl.__name__}.{name}{inspect.signature(getattr(impl, name))} differs from "
            f"{protocol.__name__}.{name}{inspect.signature(getattr(protocol, name))}"
        )


def test_fake_and_live_markets_carry_both_sub_facades():
    fake = FakeServices(30)
    assert isinstance(fake, MarketData)
    assert isinstance(fake.alerts, AlertsData) and isinstance(fake.datasets, DatasetsData)
    live = LiveMarketData(SimpleNamespace(alerts=fake.alerts, datasets=fake.datasets))
    assert isinstance(live, MarketData)


# ------------------------------------------------------------ live smoke test
def _trades(n_seconds: int, t0: int):
    from ingest.models import Trade

    for i in range(n_seconds):
        for k, (sym, p0) in enumerate((("BTCUSDT", 61_000.0), ("ETHUSDT", 2_680.0))):
            price = p0 * (1 + 1e-4 * np.sin(i / 7 + k) + 1e-5 * i)
            yield Trade(sym, 1_000 + i, t0 + i * 1_000 + 10 * k, price, 0.01, i % 2 == 0,
                        t0 + i * 1_000 + 10 * k)


@pytest.fixture
def live_runtime(tmp_path):
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    cfg = parse_config(["--db", str(tmp_path / "m.db"), "--symbols", "BTCUSDT,ETHUSDT",
                        "--market", "spot", "--rest-url", "off"])
    rt = Runtime(cfg)
    rt.store.start()
    t0 = 1_723_161_600_000
    for t in _trades(120, t0):
        rt.ingestor.on_trade(t)
    rt.engine.on_clock(t0 + 122_000)
    assert rt.store.flush(10.0)
    try:
        yield rt, t0
    finally:
        rt.stop()


def test_every_member_of_live_market_data_answers_over_a_real_runtime(live_runtime):
    rt, t0 = live_runtime
    m = LiveMarketData(rt)
    a, b, w = "BTCUSDT", "ETHUSDT", 20
    args = (a, b, 1_000, w, "ols", "raw")
    calls = {
        "names": lambda: m.names() == ("BTCUSDT", "ETHUSDT"),
        "resolve": lambda: m.resolve("spot:ethusdt") == b and m.resolve("BTCUSDT") == a,
        "instrument": lambda: m.instrument(a).label == "BTCUSDT · spot",
        "timeframes": lambda: m.timeframes() == (1_000, 60_000, 300_000),
        "bars": lambda: len(m.bars(a, 1_000)) >= 100,
        "bars_of": lambda: set(m.bars_of((a, b), 60_000)) == {a, b},
        "recent_bars_of": lambda: all(
            np.array_equal(t.ts, m.bars(s, 1_000).ts[-5:]) and len(t) == 5
            for s, t in m.recent_bars_of((a, b), 1_000, 5).items()),
        # the clock at t0 + 122 s closed every 1 s bucket of the 120 s of trades
        "final_ms": lambda: t0 + 120_000 <= m.final_ms(1_000) <= t0 + 122_000,
        "open_bar": lambda: m.open_bar(a, 300_000) is None or m.open_bar(a, 300_000).ts >= t0,
        "breaks": lambda: len(m.breaks(a)) == 0,
        "tracked_pair": lambda: m.tracked_pair(*args) is None,  # never builds
        "pair": lambda: len(m.pair(*args).series) >= 100,
        "tracked_pairs": lambda: len(m.tracked_pairs()) == 1 and m.tracked_pair(*args),
        "last_tick": lambda: m.last_tick(a).trade_id == 1_119,
        "quote": lambda: m.quote(a) is None,  # no book update fed here
        "book_bars": lambda: m.book_bars(a, 1_000) is None,  # no book here
        "ticks_since": lambda: len(m.ticks_since(a, 100)) == 20,
        "ticks_window": lambda: len(m.ticks_window(b, t0 + 110_000)) == 10,
        "trade_rate": lambda: m.trade_rate(a) >= 0.0,
        "exchange_now_ms": lambda: m.exchange_now_ms() >= t0 + 119_010,
        "stored_trades": lambda: len(m.stored_trades(a, t0, t0 + 10_000, 5)) == 5,
        "stored_trade_span": lambda: m.stored_trade_span(a) == (t0, t0 + 119_000),
        # one market: keyed by instrument and, as before instruments, by bare symbol
        "health": lambda: set(m.health()["symbols"]) == {a, b, f"spot:{a}", f"spot:{b}"},
        "feed_health": lambda: m.feed_health()["connected"] is False,
        "alerts": lambda: m.alerts.rules_json() == [] and m.alerts.last_event_id() == 0,
        "datasets": lambda: m.datasets.list() == [] and m.datasets.get("x") is None,
    }
    assert set(calls) == set(_members(MarketData)), "smoke-test every member"
    failed = [name for name, call in calls.items() if not call()]
    assert failed == []


def test_live_alerts_and_datasets_delegate_every_member(live_runtime):
    rt, _ = live_runtime
    m = LiveMarketData(rt)
    rule = m.alerts.create({"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT",
                            "op": "gt", "threshold": 2.0, "timeframe": "1s", "window": 20})
    rid = rule["id"]
    assert [r.id for r in m.alerts.rules()] == [rid] and m.alerts.rule(rid).id == rid
    assert m.alerts.rule_json(rid)["id"] == rid
    assert m.alerts.update(rid, {"threshold": 2.5}, partial=True)["threshold"] == 2.5
    assert m.alerts.active_thresholds("BTCUSDT", "ETHUSDT", 1_000, 20, "ols", "raw") == [
        ("zscore", 2.5)]
    assert m.alerts.events(limit=10) == []
    deleted = m.alerts.delete(rid)
    with pytest.raises(RuleNotFound):
        m.alerts.rule(rid)
    assert m.alerts.restore(deleted)["id"] == rid
    assert m.datasets.remove("nothing") is False
    with pytest.raises(KeyError):
        m.datasets.bars("nothing", "BTCUSDT")
