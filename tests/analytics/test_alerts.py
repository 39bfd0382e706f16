"""Alert rules: validation messages per field, and the evaluator's exact semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.alerts import (
    OPS,
    AlertRule,
    RuleError,
    RuleState,
    evaluate_series,
    parse_rule,
    rule_to_json,
    step,
)

PAIR = {
    "metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT", "timeframe": "1s", "window": 60,
    "regression": "ols", "prices": "raw", "op": "crosses_above", "threshold": 2.0,
    "hysteresis": 0, "cooldown_s": 0,
}


def test_issue_example_round_trips():
    rule = parse_rule(PAIR)
    assert rule.pair_key == ("BTCUSDT", "ETHUSDT", 1000, 60, "ols", "raw", "trade")
    assert rule.kind == "bar" and rule.enabled
    assert parse_rule(rule_to_json(rule)) == rule


def test_source_mid_is_a_pair_field():
    rule = parse_rule({**PAIR, "source": "MID"})
    assert rule.source == "mid" and rule.pair_key[-1] == "mid"
    assert rule_to_json(rule)["source"] == "mid"
    assert parse_rule(rule_to_json(rule)) == rule
    assert rule != parse_rule(PAIR)  # another selection than the trade pair
    with pytest.raises(RuleError) as exc:
        parse_rule({"metric": "price", "symbol": "BTCUSDT", "op": "gt", "threshold": 1,
                    "source": "mid"})
    assert "source" in exc.value.fields


def test_symbol_metric_takes_symbol():
    rule = parse_rule({"metric": "price", "symbol": "btcusdt", "op": "gt", "threshold": 1})
    assert rule.symbol == "BTCUSDT" and rule.kind == "live" and rule.a is None
    assert "a" not in rule_to_json(rule)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"threshold": "2"}, "threshold", "must be a number"),
        ({"threshold": None}, "threshold", "is required"),
        ({"threshold": float("nan")}, "threshold", "finite"),
        ({"threshold": True}, "threshold", "must be a number"),
        ({"metric": "rsi"}, "metric", "is not one of"),
        ({"op": ">"}, "op", "is not one of"),
        ({"window": 2}, "window", "between 3 and 86400"),
        ({"window": 1.5}, "window", "integer"),
        ({"timeframe": "7x"}, "timeframe", ""),
        ({"timeframe": "15m"}, "timeframe", "not tracked live"),
        ({"regression": "lasso"}, "regression", "is not one of"),
        ({"prices": "pct"}, "prices", "is not one of"),
        ({"source": "bid"}, "source", "is not one of"),
        ({"b": "BTCUSDT"}, "b", "must differ from a"),
        ({"b": None}, "b", "is required"),
        ({"a": "BTC-USDT"}, "a", "is not a symbol"),
        ({"hysteresis": -1}, "hysteresis", "between 0"),
        ({"cooldown_s": -5}, "cooldown_s", "between 0"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"symbol": "BTCUSDT"}, "symbol", "not used by zscore"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_field_is_named(change, field, fragment):
    with pytest.raises(RuleError) as info:
        parse_rule({**PAIR, **change})
    assert field in info.value.fields
    assert fragment in info.value.fields[field]
    assert info.value.field == next(iter(info.value.fields))


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(RuleError) as info:
        parse_rule({"metric": "zscore", "a": "BTCUSDT", "op": "up", "threshold": "x"})
    assert set(info.value.fields) == {"b", "op", "threshold"}


def test_unknown_symbol_refused_when_symbols_known():
    with pytest.raises(RuleError) as info:
        parse_rule({**PAIR, "b": "DOGEUSDT"}, symbols={"BTCUSDT", "ETHUSDT"})
    assert "not ingested" in info.value.fields["b"]


def test_not_a_dict():
    with pytest.raises(RuleError) as info:
        parse_rule(["zscore"])
    assert info.value.field == "rule"


def rule(op, k=2.0, h=0.0, cooldown_s=0.0):
    return AlertRule(metric="zscore", op=op, threshold=k, a="A1", b="B1",
                     hysteresis=h, cooldown_s=cooldown_s)


def fold(r, values, ts=None, state=None):
    state = state or RuleState()
    ts = list(range(len(values))) if ts is None else ts
    out = []
    for t, v in zip(ts, values, strict=True):
        state, f = step(r, state, t, v)
        if f:
            out.append(f.data_ts)
    return state, out


def test_crosses_above_fires_once_per_crossing():
    z = [1.0, 2.5, 3.0, 1.0, 2.0, 2.1, np.nan, 3.0, 1.9, 2.2]
    #     -   fire  -    -    -   fire  nan   no(prev nan) -  fire
    _, fired = fold(rule("crosses_above"), z)
    assert fired == [1, 5, 9]


def test_hysteresis_band_rearms_only_after_clearing():
    z = [1.0, 2.5, 1.9, 2.5, 1.4, 2.5]
    assert fold(rule("crosses_above", h=0.5), z)[1] == [1, 5]
    assert fold(rule("crosses_above", h=0.0), z)[1] == [1, 3, 5]
    assert fold(rule("gt", h=0.5), [3, 1.8, 3, 1.5, 3])[1] == [0, 4]
    assert fold(rule("lt", k=-2, h=0.5), [-3, -1.8, -3, -1.5, -3])[1] == [0, 4]


def test_level_ops_and_crosses_below():
    v = [0.0, 2.0, 2.0, 1.0, 3.0]
    assert fold(rule("ge"), v)[1] == [1, 4]
    assert fold(rule("gt"), v)[1] == [4]
    assert fold(rule("le", k=1.0), v)[1] == [0, 3]
    assert fold(rule("crosses_below", k=1.5), [2, 1, 2, 1.5, 1])[1] == [1, 4]


def test_cooldown_in_data_time_drops_crossings_but_stays_armed():
    z = [1, 3, 1, 3, 1, 3]
    ts = [0, 1000, 2000, 3000, 4000, 12_000]
    st, fired = fold(rule("crosses_above", cooldown_s=10), z, ts)
    assert fired == [1000, 12_000]


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(OPS),
    k=st.sampled_from([-1.0, 0.0, 0.5]),
    h=st.sampled_from([0.0, 0.3]),
    cooldown=st.sampled_from([0.0, 0.002]),
    values=st.lists(
        st.one_of(st.sampled_from([-1.0, 0.0, 0.5, 0.8, math.nan]),
                  st.floats(-2, 2, allow_nan=False)),
        max_size=60,
    ),
    armed=st.booleans(),
    last=st.sampled_from([math.nan, -1.0, 0.5, 1.0]),
)
def test_vectorised_evaluation_equals_the_scalar_fold(op, k, h, cooldown, values, armed, last):
    r = rule(op, k=k, h=h, cooldown_s=cooldown)
    start = RuleState(armed=armed, last_value=last, frontier_ts=-1, last_fired_ts=None)
    ts = np.arange(len(values), dtype=np.int64)
    want_state, want = fold(r, values, list(ts), start)
    got_state, got = evaluate_series(r, start, ts, np.array(values, dtype=float))
    assert [f.data_ts for f in got] == want
    if values:
        assert got_state.armed == want_state.armed
        assert got_state.frontier_ts == want_state.frontier_ts
        assert got_state.last_fired_ts == want_state.last_fired_ts
        np.testing.assert_equal(got_state.last_value, want_state.last_value)


def test_no_crossing_across_a_session_break():
    """The first point after a break has no previous value: the jump at a replay loop
    seam is not a crossing; level ops still see the value itself."""
    from analytics.alerts import new_sessions

    z = [1.0, 1.5, 2.5, 1.0, 2.5]
    ts = np.array([0, 1000, 2000, 3000, 4000], dtype=np.int64)
    r = rule("crosses_above")
    assert [f.data_ts for f in evaluate_series(r, RuleState(), ts, np.array(z))[1]] == [
        2000, 4000]
    _, got = evaluate_series(r, RuleState(), ts, np.array(z), breaks=[2000])
    assert [f.data_ts for f in got] == [4000]
    # a break between the state's frontier and the first point
    st = RuleState(last_value=1.0, frontier_ts=1000)
    _, got = evaluate_series(r, st, ts[2:], np.array(z[2:]), breaks=[1500])
    assert [f.data_ts for f in got] == [4000]
    _, got = evaluate_series(rule("gt"), RuleState(), ts, np.array(z), breaks=[2000])
    assert [f.data_ts for f in got] == [2000, 4000]
    # the scalar step agrees
    flags = new_sessions(None, ts, [2000])
    state, fired = RuleState(), []
    for t, v, new in zip(ts, z, flags, strict=True):
        state, f = step(r, state, int(t), v, new_session=bool(new))
        if f:
            fired.append(f.data_ts)
    assert fired == [4000]
