"""``--streams-per-connection``: how many streams one websocket connection carries."""

from __future__ import annotations

import pytest

from ingest.config import parse_config


def test_default_is_binances_cap_and_the_value_is_kept() -> None:
    assert parse_config([]).streams_per_connection == 1024
    assert parse_config(["--streams-per-connection", "50"]).streams_per_connection == 50
    assert parse_config(["--streams-per-connection", "1", "--no-book"]) \
        .streams_per_connection == 1


@pytest.mark.parametrize("argv, says", [
    (["--streams-per-connection", "1025"], "must be in 1..1024"),
    (["--streams-per-connection", "0"], "must be in 1..1024"),
    (["--streams-per-connection", "1"], ">= 2 with the book"),
    (["--streams-per-connection", "x"], "invalid int value"),
])
def test_bad_values_name_the_flag(argv, says, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--streams-per-connection" in err and says in err


def test_a_market_may_hold_more_than_one_connection_of_symbols() -> None:
    """600 instruments with the book are 1,200 streams: no longer refused at parse
    time (one connection per market was), the pool splits them."""
    symbols = ",".join(f"S{i}USDT" for i in range(600))
    cfg = parse_config(["--symbols", symbols])
    assert len(cfg.universe) == 600
