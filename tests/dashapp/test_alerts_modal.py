"""The rule modal's pure helpers: form <-> JSON rule, field-level error mapping."""

from __future__ import annotations

import pytest

from analytics.alerts import RuleError, parse_rule
from dashapp.components.alert_modal import (
    FORM_FIELDS,
    field_feedback,
    form_rule,
    prefill_values,
    subject_styles,
)

SYMS = ["BTCUSDT", "ETHUSDT"]


def test_prefill_from_pair_page_round_trips_to_a_valid_rule():
    partial = {"metric": "zscore", "a": "ETHUSDT", "b": "BTCUSDT", "timeframe": "1m",
               "window": 30, "regression": "kalman", "prices": "log", "threshold": 2.0}
    values = prefill_values(partial, SYMS)
    assert values["op"] == "crosses_above" and values["hysteresis"] == 0
    rule = parse_rule(form_rule(values, True))
    assert rule.pair_key == ("ETHUSDT", "BTCUSDT", 60_000, 30, "kalman", "log", "trade")
    # a mid-price pair's prefill keeps its source through the form
    mid = parse_rule(form_rule(prefill_values({**partial, "source": "mid"}, SYMS), True))
    assert mid.pair_key[-1] == "mid"


def test_symbol_metric_form_sends_only_its_fields():
    values = prefill_values({"metric": "price", "threshold": 60000, "op": "gt"}, SYMS)
    rule = form_rule(values, False)
    assert rule == {"metric": "price", "symbol": "BTCUSDT", "op": "gt", "threshold": 60000,
                    "hysteresis": 0, "cooldown_s": 0, "enabled": False, "channels": []}
    assert parse_rule(rule).enabled is False


def test_errors_map_to_the_form_fields():
    with pytest.raises(RuleError) as info:
        parse_rule(form_rule(prefill_values({"window": 1}, SYMS), True))
    invalid, messages, other = field_feedback(info.value.fields)
    flagged = {name for name, bad in zip(FORM_FIELDS, invalid, strict=True) if bad}
    assert flagged == {"threshold", "window"}
    assert messages[FORM_FIELDS.index("threshold")] == "is required"
    assert other == ""
    assert field_feedback({"body": "must be a JSON object"})[2] == "body: must be a JSON object"


def test_subject_groups_follow_the_metric():
    pair, symbol, window, tf = subject_styles("zscore")
    assert pair == {} and symbol == {"display": "none"} and window == {} and tf == {}
    pair, symbol, window, tf = subject_styles("price")
    assert pair == {"display": "none"} and symbol == {} and window == {"display": "none"}
    assert subject_styles("change_pct")[2] == {}


def test_open_modal_answers_by_name_and_ignores_a_forged_prefill():
    from dash import no_update

    from dashapp.components.alert_modal import open_modal
    from dashapp.services import set_services
    from tests.dashapp.dash_fakes import FakeServices

    set_services(FakeServices(30))
    n = len(FORM_FIELDS)
    forged = open_modal("not a rule")
    assert forged["values"] == [no_update] * n and forged["is_open"] is no_update
    out = open_modal({"metric": "zscore", "a": "ETHUSDT", "b": "BTCUSDT", "id": 7})
    assert out["is_open"] is True and out["edit_id"] == 7
    assert out["title"] == "Edit alert rule #7" and out["error_open"] is False
    assert dict(zip(FORM_FIELDS, out["values"], strict=True))["a"] == "ETHUSDT"
    assert out["invalid"] == [False] * n and out["feedback"] == [""] * n
