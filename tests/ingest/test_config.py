"""The command line, declared once (ingest/config.py) for ``app.py`` and ``python -m ingest``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.config import DEFAULT_SYMBOLS, Config, build_parser, parse_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_pairs_env(monkeypatch):
    for name in [k for k in os.environ if k.startswith("PAIRS_")]:
        monkeypatch.delenv(name)


def test_the_flags_defaults_are_the_config_defaults():
    assert parse_config([]) == Config()
    assert Config().symbols == DEFAULT_SYMBOLS and Config().market == "futures"


def test_environment_variables_set_the_flags(monkeypatch):
    monkeypatch.setenv("PAIRS_SYMBOLS", "btcusdt, ethusdt")
    monkeypatch.setenv("PAIRS_PORT", "8060")
    monkeypatch.setenv("PAIRS_MARKET", "spot")
    cfg = parse_config([])
    assert cfg.symbols == ("BTCUSDT", "ETHUSDT") and cfg.symbols_given
    assert cfg.port == 8060 and cfg.market == "spot" and cfg.market_given
    assert parse_config(["--port", "8070"]).port == 8070  # the flag wins


def test_flags_map_to_the_config():
    cfg = parse_config([
        "--replay", "a.jsonl", "b.csv", "--replay-speed", "0", "--replay-once",
        "--replay-keep-times", "--no-ingest", "--watchdog", "5", "--rest-url", "off",
        "--allowed-hosts", "box.lan, ,10.0.0.5",
    ])
    assert cfg.replay == ("a.jsonl", "b.csv") and cfg.replay_speed == 0
    assert not cfg.replay_loop and not cfg.replay_rebase and not cfg.ingest
    assert cfg.watchdog_s == 5 and cfg.rest_url == "off"
    assert cfg.allowed_hosts == ("box.lan", "10.0.0.5")
    assert parse_config(["--replay"]).replay == ()  # the bundled sample


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "--port must be in 1..65535"),
        (["--symbols", ","], "--symbols: give at least one symbol"),
        (["--symbols", "BTC/USDT"], "--symbols: invalid symbol 'BTC/USDT'"),
        (["--rest-url", "ftp://x"], "--rest-url must start with http:// or https://"),
        (["--replay-speed", "-1"], "--replay-speed must be >= 0"),
        (["--ring-capacity", "5"], "--ring-capacity must be at least 1000"),
        (["--market", "perp"], "argument --market: invalid choice: 'perp'"),
        (["--debug"], "unrecognized arguments: --debug"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python app.py") and message in err


def test_python_m_ingest_uses_the_same_flags_without_importing_app(monkeypatch):
    code = (
        "import sys\n"
        "from ingest.__main__ import main\n"
        "rc = main(['--no-ingest'])\n"
        "print(rc, 'app' in sys.modules, 'dash' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert "--no-ingest makes no sense here" in out.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "ingest", "--help"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={"COLUMNS": "100"},
    ).stdout
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    assert help_text == build_parser().format_help()
    assert "--replay-keep-times" in help_text and "PAIRS_<FLAG>" in help_text


# ------------------------------------------------------------------ instruments (#16)
def test_symbols_take_instruments_in_any_mix_and_bare_symbols_take_the_market():
    cfg = parse_config(["--symbols", "spot:btcusdt, perp:BTCUSDT,futures:ETHUSDT,SOLUSDT",
                        "--market", "spot"])
    assert cfg.symbols == ("spot:BTCUSDT", "perp:BTCUSDT", "perp:ETHUSDT", "SOLUSDT")
    u = cfg.universe
    assert [i.key for i in u] == ["spot:BTCUSDT", "perp:BTCUSDT", "perp:ETHUSDT",
                                  "spot:SOLUSDT"]
    # a symbol on two markets is named by key, one on one market stays bare
    assert u.names == ("spot:BTCUSDT", "perp:BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert u.markets == ("spot", "perp")
    # one market, bare symbols: the names and the universe of today
    one = parse_config(["--symbols", "BTCUSDT,ETHUSDT"]).universe
    assert one.names == ("BTCUSDT", "ETHUSDT") and one.markets == ("perp",)


@pytest.mark.parametrize("bad, words", [
    ("xx:BTCUSDT", ["--symbols", "unknown market 'xx'", "spot, perp"]),
    ("spot:BTC-USDT", ["--symbols", "invalid symbol 'BTC-USDT'"]),
    ("a:b:c:d", ["--symbols", "invalid instrument"]),
    (",", ["--symbols", "at least one"]),
])
def test_a_bad_instrument_is_a_clear_error_naming_the_flag(bad, words, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--symbols", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_urls_per_market():
    two = ["--symbols", "spot:BTCUSDT,perp:BTCUSDT"]
    cfg = parse_config([*two, "--feed-url", "spot=ws://h:1,perp=ws://h:2/market",
                        "--rest-url", "spot=http://h:3,futures=off"])
    assert cfg.feed_url_for("spot") == "ws://h:1"
    assert cfg.feed_url_for("perp") == cfg.feed_url_for("futures") == "ws://h:2/market"
    assert cfg.rest_url_for("spot") == "http://h:3" and cfg.rest_url_for("perp") == "off"
    # a market not named keeps the venue's default
    cfg = parse_config([*two, "--feed-url", "perp=ws://h:2"])
    assert cfg.feed_url_for("spot") is None
    # one market: one URL, as before
    cfg = parse_config(["--feed-url", "ws://h:9", "--rest-url", "http://h:8"])
    assert cfg.feed_url_for("perp") == "ws://h:9" and cfg.rest_url_for("perp") == "http://h:8"


@pytest.mark.parametrize("args, words", [
    (["--feed-url", "ws://h:1"], ["--feed-url", "2 markets", "spot=URL,perp=URL"]),
    (["--rest-url", "http://h:1"], ["--rest-url", "2 markets"]),
    (["--rest-url", "spot=ftp://h"], ["--rest-url must start with http://"]),
    (["--feed-url", "moon=ws://h"], ["--feed-url", "unknown market 'moon'"]),
    (["--feed-url", "spot="], ["--feed-url", "is not MARKET=URL"]),
])
def test_one_url_for_two_markets_or_a_bad_pair_is_an_error(args, words, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--symbols", "spot:BTCUSDT,perp:BTCUSDT", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_replay_without_symbols_checks_urls_against_both_bundled_markets(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--replay", "--feed-url", "ws://h:1"])
    assert "2 markets" in capsys.readouterr().err
    assert parse_config(["--replay", "--market", "spot", "--feed-url", "ws://h:1"]).replay == ()


# -- symbol universes (ingest/universe.py): selectors in --symbols, refresh, wide replay

def test_symbols_take_selectors_on_the_market_or_their_own():
    from ingest.universe import Selector

    cfg = parse_config(["--symbols", "perp:top:50,spot:BTCUSDT,all", "--market", "spot"])
    spec = cfg.universe_spec
    assert spec.dynamic and spec.instruments == ("spot:BTCUSDT",)
    assert spec.selectors == (Selector("perp", "top", 50), Selector("spot", "all", None))
    assert cfg.universe.names == ("BTCUSDT",)  # the explicit instruments only
    assert cfg.universe_refresh_s == 86_400.0
    only = parse_config(["--symbols", "top:5", "--universe-refresh", "60"])
    assert only.universe_spec.selectors == (Selector("perp", "top", 5),)
    assert only.symbols == () and only.universe_refresh_s == 60.0
    assert not parse_config([]).universe_spec.dynamic


@pytest.mark.parametrize("argv, message", [
    (["--symbols", "top:0"], "--symbols: 'top:0': N must be at least 1"),
    (["--symbols", "BTCUSDT,perp:top"], "--symbols: 'perp:top': expected top:N"),
    (["--symbols", "bogus:all"], "--symbols: 'bogus:all': unknown market 'bogus'"),
    (["--symbols", "top:5", "--universe-refresh", "5"],
     "--universe-refresh must be between 10"),
    (["--replay-universe", "300"], "--replay-universe needs --replay"),
    (["--replay", "x.gz", "--replay-universe", "300"], "give --replay no FILE"),
    (["--replay", "--replay-universe", "1"], "--replay-universe must be 0 (off) or 2.."),
])
def test_bad_selectors_and_universe_flags_exit_2_naming_them(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_replay_universe_is_a_config_value():
    cfg = parse_config(["--replay", "--replay-universe", "300", "--market", "futures"])
    assert cfg.replay == () and cfg.replay_universe == 300
