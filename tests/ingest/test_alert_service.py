"""AlertService: persistence across restarts, disabled rules, edits, every metric kind."""

from __future__ import annotations

import time

import numpy as np
import pytest

from analytics.alerts import RuleError
from analytics.engine import MarketEngine
from ingest.alert_service import AlertService, RuleNotFound
from ingest.models import Trade
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.ingest.test_alert_replay import RULE, Pipeline

A, B = "BTCUSDT", "ETHUSDT"


def make(db):
    store = SqliteTradeStore(db)
    engine = MarketEngine([A, B])
    ing = Ingestor([A, B], store, engine, ring_capacity=10_000, write=False)
    return store, ing, AlertService(engine, ing, db, rules_poll_s=1e9)


def trade(sym, tid, ms, px):
    return Trade(sym, tid, ms, px, 1.0, False, ms)


def price_rule(**kw):
    return {"metric": "price", "symbol": A, "op": "crosses_above", "threshold": 100.0, **kw}


def test_restart_keeps_rules_events_and_state(tmp_path):
    db = tmp_path / "x.db"
    store, ing, svc = make(db)
    r1 = svc.create(price_rule())
    r2 = svc.create({**RULE, "threshold": 1.5, "enabled": False})
    svc.evaluate(0)  # initialise
    for i, px in enumerate([99.0, 101.0, 99.0, 102.0]):
        ing.on_trade(trade(A, i, 1_000 + i, px))
    fired = svc.evaluate(2_000)
    assert [(e.rule_id, e.data_ts, e.value) for e in fired] == [
        (r1["id"], 1001, 101.0), (r1["id"], 1003, 102.0)]
    svc.stop()
    store.close()

    store, ing, svc = make(db)
    assert [r["id"] for r in svc.rules_json()] == [r1["id"], r2["id"]]
    assert svc.rule_json(r2["id"])["enabled"] is False
    assert svc.rule(r1["id"]) == svc.rule(r1["id"])
    events = svc.events()
    assert [(e.rule_id, e.data_ts, e.value, e.threshold) for e in events] == [
        (r1["id"], 1001, 101.0, 100.0), (r1["id"], 1003, 102.0, 100.0)]
    assert all(e.fired_ms > 0 and "price crosses above 100" in e.description for e in events)
    st = svc.rule_json(r1["id"])["status"]
    assert st["armed"] is False and st["last_fired_ms"] == 1003 and st["last_value"] == 102.0
    svc.stop()
    store.close()


def test_disabled_rule_never_fires_and_reenabling_skips_the_past(tmp_path):
    store, ing, svc = make(tmp_path / "d.db")
    on = svc.create(price_rule())
    off = svc.create(price_rule(enabled=False))
    svc.evaluate(0)
    for i, px in enumerate([99.0, 101.0, 99.0, 101.0]):
        ing.on_trade(trade(A, i, 1_000 + i, px))
    svc.evaluate(2_000)
    svc.update(off["id"], {"enabled": True}, partial=True)
    svc.evaluate(2_100)  # initialises at the ring's end: the old crossings are past
    ing.on_trade(trade(A, 10, 3_000, 99.0))
    ing.on_trade(trade(A, 11, 3_001, 105.0))
    svc.evaluate(3_100)
    by_rule = {}
    for e in svc.events():
        by_rule.setdefault(e.rule_id, []).append(e.data_ts)
    assert by_rule == {on["id"]: [1001, 1003, 3001], off["id"]: [3001]}
    svc.update(on["id"], {"enabled": False}, partial=True)
    ing.on_trade(trade(A, 12, 4_000, 99.0))
    ing.on_trade(trade(A, 13, 4_001, 105.0))
    assert [e.rule_id for e in svc.evaluate(4_100)] == [off["id"]]
    svc.stop()
    store.close()


def test_bad_rules_are_refused_naming_the_field(tmp_path):
    store, ing, svc = make(tmp_path / "b.db")
    with pytest.raises(RuleError) as info:
        svc.create({**RULE, "b": "DOGEUSDT"})
    assert "not ingested" in info.value.fields["b"]
    with pytest.raises(RuleError) as info:
        svc.create({**RULE, "threshold": "high"})
    assert info.value.fields == {"threshold": "must be a number"}
    assert svc.rules() == [] and svc.store.rules() == []
    r = svc.create(RULE)
    with pytest.raises(RuleError) as info:
        svc.update(r["id"], {"window": 1}, partial=True)
    assert "window" in info.value.fields
    assert svc.rule_json(r["id"])["window"] == 60  # unchanged
    with pytest.raises(RuleNotFound):
        svc.delete(999)
    svc.delete(r["id"])
    assert svc.rules() == []
    svc.stop()
    store.close()


def test_patch_switching_metric_kind_drops_the_old_subject(tmp_path):
    store, ing, svc = make(tmp_path / "p.db")
    r = svc.create(RULE)
    out = svc.update(r["id"], {"metric": "price", "symbol": A, "threshold": 1.0}, partial=True)
    assert out["symbol"] == A and "a" not in out and out["op"] == "crosses_above"
    svc.stop()
    store.close()


def test_active_thresholds(tmp_path):
    store, ing, svc = make(tmp_path / "t.db")
    svc.create(RULE)
    svc.create({**RULE, "metric": "live_zscore", "op": "crosses_below", "threshold": -2.0})
    svc.create({**RULE, "threshold": 3.0, "enabled": False})
    svc.create({**RULE, "window": 30, "threshold": 1.0})
    svc.create({**RULE, "metric": "spread", "threshold": 1.0})
    got = svc.active_thresholds(A, B, 1000, 60, "ols", "raw")
    assert sorted(got) == [("live_zscore", -2.0), ("zscore", 2.0)]
    svc.stop()
    store.close()


@pytest.fixture(scope="module")
def trades():
    from ingest.feeds.binance import parse_event
    from ingest.replay.tapes import default_sample_files, load_tape

    return [parse_event(ev.data) for ev in load_tape(default_sample_files("spot"))]


def test_other_metrics_on_the_tape(tmp_path, trades):
    p = Pipeline(tmp_path / "m.db", eval_every_ms=100)
    p.alerts.adf_interval_ms = 60_000
    ids = {
        name: p.alerts.create(spec)["id"]
        for name, spec in {
            "volume": {"metric": "volume", "symbol": A, "timeframe": "1s", "op": "gt",
                       "threshold": 5.0},
            "change": {"metric": "change_pct", "symbol": A, "timeframe": "1s", "window": 30,
                       "op": "lt", "threshold": -0.05},
            "tps": {"metric": "trades_per_s", "symbol": A, "op": "ge", "threshold": 150},
            "livez": {**RULE, "metric": "live_zscore", "op": "gt", "threshold": 2.5},
            "adf": {**RULE, "metric": "adf_pvalue", "op": "le", "threshold": 1.0},
            "corr": {**RULE, "metric": "corr", "op": "crosses_below", "threshold": 0.45},
        }.items()
    }
    p.feed(trades)
    p.finish()
    deadline = time.monotonic() + 30
    while not any(e.rule_id == ids["adf"] for e in p.events) and time.monotonic() < deadline:
        time.sleep(0.05)
        p.tick(p.clock)
    got = {}
    for e in p.events:
        got.setdefault(e.rule_id, []).append(e)
    for name, rid in ids.items():
        assert got.get(rid), f"{name} never fired"
        assert p.alerts.rule_json(rid)["status"]["error"] is None, name
    # volume > 5 BTC: fires on the first bar of every run of bars above 5 (gt re-arms
    # on a bar <= 5), every closed bar evaluated from the first one
    bars = p.engine.bars(A, 1000)
    above = bars.volume > 5.0
    starts = bars.ts[above & ~np.concatenate([[False], above[:-1]])]
    assert [e.data_ts for e in got[ids["volume"]]] == list(starts)
    close = bars.close
    chg = 100 * (close[30:] / close[:-30] - 1)
    below = chg < -0.05
    starts = bars.ts[30:][below & ~np.concatenate([[False], below[:-1]])]
    assert [e.data_ts for e in got[ids["change"]]] == list(starts)
    assert [e.value <= 1.0 for e in got[ids["adf"]]] == [True]
    assert all(e.value < 0.45 for e in got[ids["corr"]])
    p.close()


def test_events_survive_a_locked_database(tmp_path):
    """An event whose commit fails (DB locked past busy_timeout) is kept and stored
    at the next pass, once."""
    import sqlite3

    db = tmp_path / "l.db"
    store, ing, svc = make(db)
    svc.store._busy_timeout_ms = 50
    svc.store._conn.execute("PRAGMA busy_timeout=50")
    r = svc.create(price_rule())
    svc.evaluate(0)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    ing.on_trade(trade(A, 1, 1_000, 99.0))
    ing.on_trade(trade(A, 2, 1_001, 101.0))
    assert svc.evaluate(1_100) == []
    assert "locked" in svc.last_error
    blocker.execute("ROLLBACK")
    blocker.close()
    stored = svc.evaluate(1_200)
    assert [(e.rule_id, e.data_ts) for e in stored] == [(r["id"], 1001)]
    assert [(e.rule_id, e.data_ts) for e in svc.events()] == [(r["id"], 1001)]
    svc.stop()
    store.close()


def test_disabling_keeps_last_value_and_last_fired(tmp_path):
    """Disabling only pauses a rule: its status still shows its last value and last
    firing (also after a restart); re-enabling restarts it without forgetting when it
    last fired."""
    db = tmp_path / "k.db"
    store, ing, svc = make(db)
    r = svc.create(price_rule())
    for i, px in enumerate([99.0, 101.0, 99.5]):
        ing.on_trade(trade(A, i, 1_000 + i, px))
    svc.evaluate(2_000)
    before = svc.rule_json(r["id"])["status"]
    assert before["last_fired_ms"] == 1001 and before["last_value"] == 99.5
    svc.update(r["id"], {"enabled": False}, partial=True)
    after = svc.rule_json(r["id"])["status"]
    assert after["last_fired_ms"] == 1001 and after["last_value"] == 99.5
    svc.stop()
    store.close()
    store, ing, svc = make(db)
    st = svc.rule_json(r["id"])["status"]
    assert st["last_fired_ms"] == 1001 and st["last_value"] == 99.5
    svc.update(r["id"], {"enabled": True}, partial=True)
    assert svc.rule_json(r["id"])["status"]["last_fired_ms"] == 1001
    svc.stop()
    store.close()


def test_no_crossing_is_taken_across_a_session_break(tmp_path):
    """A replay loop seam: the price snaps from 99 back to the tape's start at 101.
    The crossing 99 -> 101 spans the break and does not fire; the same crossing inside
    a session does."""
    store, ing, svc = make(tmp_path / "s.db")
    r = svc.create(price_rule())
    ing.on_trade(trade(A, 1, 1_000, 99.0))
    svc.engine.mark_break(A, 1_500, "replay loop")
    ing.on_trade(trade(A, 2, 1_500, 101.0))
    assert svc.evaluate(2_000) == []
    ing.on_trade(trade(A, 3, 2_500, 99.0))
    ing.on_trade(trade(A, 4, 2_600, 101.0))
    assert [(e.rule_id, e.data_ts) for e in svc.evaluate(3_000)] == [(r["id"], 2_600)]
    svc.stop()
    store.close()


def test_change_pct_is_undefined_across_a_break(tmp_path):
    store, ing, svc = make(tmp_path / "c.db")
    r = svc.create({"metric": "change_pct", "symbol": A, "timeframe": "1s", "window": 1,
                    "op": "gt", "threshold": 5.0})
    ing.on_trade(trade(A, 1, 1_000, 100.0))
    svc.engine.mark_break(A, 2_000, "replay loop")
    ing.on_trade(trade(A, 2, 2_000, 120.0))  # +20 % across the seam: not a change
    ing.on_trade(trade(A, 3, 3_000, 130.0))  # +8.3 % inside the new session
    svc.engine.on_clock(4_000)
    assert [(e.rule_id, e.data_ts) for e in svc.evaluate(4_000)] == [(r["id"], 3_000)]
    svc.stop()
    store.close()


def test_delete_returns_what_undo_needs_and_restore_brings_the_rule_back(tmp_path):
    store, ing, svc = make(tmp_path / "u.db")
    r = svc.create(price_rule())
    for i, px in enumerate([99.0, 101.0, 99.5]):
        ing.on_trade(trade(A, i, 1_000 + i, px))
    svc.evaluate(2_000)
    before = svc.rule_json(r["id"])
    deleted = svc.delete(r["id"])
    assert svc.rules() == [] and deleted["id"] == r["id"]
    back = svc.restore(deleted)
    assert back["id"] == r["id"] and back["created_ms"] == before["created_ms"]
    assert back["status"] == before["status"]  # last value, last fired, armed
    assert [e.rule_id for e in svc.events()] == [r["id"]]  # its event is its own again
    with pytest.raises(RuleError):
        svc.restore(deleted)  # a second undo: the id is taken
    svc.stop()
    store.close()


def test_alerts_hold_points_after_an_unsettled_gap(tmp_path):
    """A gap goes to the back-fill; until it is settled the trade after it may open a
    new session (a replay seam found by REST), so alerts wait instead of firing on it."""
    store, ing, svc = make(tmp_path / "h.db")
    r = svc.create(price_rule())
    ing.on_trade(trade(A, 1, 1_000, 99.0))
    ing.hold_gap(A, 2, 1_001)  # the feed saw ids 2..1001 missing
    ing.on_trade(trade(A, 1_002, 1_500, 101.0))  # the trade after the seam
    assert ing.unsettled_since_ms(A) == 1_000
    assert svc.evaluate(2_000) == []  # held, not fired
    ing.mark_break(A, 1_500, "ids 2..1001 not recoverable from REST")
    ing.settle_gap(A, 2, 1_001)
    assert ing.unsettled_since_ms(A) is None
    assert svc.evaluate(2_100) == []  # no crossing across the break
    ing.on_trade(trade(A, 1_003, 2_500, 99.0))
    ing.on_trade(trade(A, 1_004, 2_600, 101.0))
    assert [(e.rule_id, e.data_ts) for e in svc.evaluate(3_000)] == [(r["id"], 2_600)]
    # a gap the back-fill fills: the held crossing fires once it is settled
    ing.on_trade(trade(A, 1_005, 3_500, 99.0))
    ing.hold_gap(A, 1_006, 1_010)
    ing.on_trade(trade(A, 1_011, 3_600, 101.0))
    assert svc.evaluate(4_000) == []
    ing.settle_gap(A, 1_006)
    assert [(e.rule_id, e.data_ts) for e in svc.evaluate(4_100)] == [(r["id"], 3_600)]
    svc.stop()
    store.close()


def test_a_rule_problem_is_logged_once_per_kind_not_once_per_count():
    """The warm-up message counts bars ("has 47 (13 more)"): its numbers change every
    bar, its kind does not, and only a new kind is logged again (the e2e scale-out run
    logged 42 lines for one rule's warm-up before)."""
    from ingest.alert_service import _shape

    warm = "pair series (w=60, ols) needs 60 bars, has 1 (59 more)"
    assert _shape(warm) == _shape("pair series (w=60, ols) needs 60 bars, has 47 (13 more)")
    assert _shape(warm) != _shape("symbol XRPUSDT is not ingested")
    assert _shape(None) is None
