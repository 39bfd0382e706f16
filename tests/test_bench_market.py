"""``python -m benchmarks.market``: bad arguments name the flag; the composer prints one
table per section and, as its last line, one JSON object with every section's figures."""

from __future__ import annotations

import json
import sys
import types

import pytest

from benchmarks import market


@pytest.mark.parametrize("argv", [["--only", "nope"], ["--only", ","], ["--only", "memory,x"]])
def test_bad_sections_name_the_flag(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        market.main(argv)
    assert exc.value.code == 2 and "--only" in capsys.readouterr().err


def test_sections_print_a_table_and_one_json_last_line(monkeypatch, capsys):
    calls = []

    def fake(name):
        def run(quick=False):
            calls.append((name, quick))
            return [(f"{name} figure", "1.0 s")], {"figure": len(calls)}
        return types.SimpleNamespace(run=run)

    for name, (module, _title) in market.SECTIONS.items():
        monkeypatch.setitem(sys.modules, module, fake(name))
    assert market.main(["--quick", "--only", "screen,memory"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = json.loads(out[-1])
    assert calls == [("screen", True), ("memory", True)]
    assert last["quick"] is True and last["sections"] == {"screen": {"figure": 1},
                                                          "memory": {"figure": 2}}
    assert any("screen figure" in line for line in out[:-1])
