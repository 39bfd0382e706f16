"""Loading recorded Binance data into tapes, and deriving aggTrades."""

from __future__ import annotations

import gzip
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from ingest.feeds.binance import parse_frame
from ingest.models import Trade
from ingest.replay.tapes import (
    Tape,
    TapeEvent,
    aggregate_trades,
    aggregate_trades_indexed,
    default_sample_files,
    load_tape,
)

SPOT_ETH = (
    "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"
)
SPOT_2023 = (
    "binance-spot-ws-trade_BTCUSDT_2023-04-04T235959Z_2023-04-05T000654Z.jsonl.gz"
)
UM_BTC = "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz"
ETH_CSV = "binance-spot-trades_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.csv.gz"
RAW = "hftbacktest-rawcapture_spot_ETHUSDT_20240809_first3000.gz"


def test_default_sample_files_exist() -> None:
    files = default_sample_files("spot")
    assert [f.name.split("_")[1] for f in files] == ["BTCUSDT", "ETHUSDT"]
    assert all(f.is_file() for f in files)
    both = default_sample_files()
    assert [(f.name.split("-")[1], f.name.split("_")[1]) for f in both] == [
        ("spot", "BTCUSDT"), ("spot", "ETHUSDT"), ("um", "BTCUSDT"), ("um", "ETHUSDT")
    ]
    assert all(f.is_file() for f in both)
    assert default_sample_files("futures") == default_sample_files("perp")
    with pytest.raises(ValueError, match="invalid market"):
        default_sample_files("margin")


def test_spot_tape_matches_readme_figures(spot_tape: Tape) -> None:
    assert len(spot_tape) == 19_904 + 14_515
    assert spot_tape.symbols == ("BTCUSDT", "ETHUSDT")
    assert spot_tape.kinds == ("trade",)
    assert spot_tape.counts == {"BTCUSDT": 19_904, "ETHUSDT": 14_515}
    assert spot_tape.first_id == {"BTCUSDT": 3735683259, "ETHUSDT": 1520538925}
    assert spot_tape.last_id == {"BTCUSDT": 3735703162, "ETHUSDT": 1520553439}
    assert spot_tape.missing_ids == {"BTCUSDT": 0, "ETHUSDT": 0}
    # 23:54:15.342 -> 00:05:05.800 UTC
    assert spot_tape.first_time_ms == 1723161255342
    assert spot_tape.last_time_ms == 1723161905800
    assert spot_tape.duration_ms == 1723161905800 - 1723161255342
    assert len(spot_tape.source_files) == 2 and spot_tape.duplicates == 0


def test_tape_is_interleaved_by_trade_time(spot_tape: Tape) -> None:
    keys = [(e.time_ms, e.recv_ns, e.symbol, e.trade_id) for e in spot_tape]
    assert keys == sorted(keys)
    first_symbols = {e.symbol for e in spot_tape.events[:50]}
    assert first_symbols == {"BTCUSDT", "ETHUSDT"}
    # within each symbol the ids stay contiguous and in order
    last: dict[str, int] = {}
    for ev in spot_tape:
        if ev.symbol in last:
            assert ev.trade_id == last[ev.symbol] + 1
        last[ev.symbol] = ev.trade_id


def test_events_are_the_recorded_objects_byte_for_byte(
    spot_tape: Tape, sample_dir: Path
) -> None:
    recorded: dict[bytes, int] = {}
    for path in default_sample_files("spot"):
        with gzip.open(path, "rb") as fh:
            for line in fh:
                recv, frame = line.rstrip(b"\n").split(b" ", 1)
                recorded[frame] = int(recv)
    for ev in spot_tape:
        frame = orjson.dumps({"stream": f"{ev.symbol.lower()}@trade", "data": ev.data})
        assert recorded[frame] == ev.recv_ns
        assert ev.kind == "trade" and ev.trade_id == ev.data["t"]
        assert ev.time_ms == ev.data["T"]


def test_csv_rebuilds_the_exact_event_objects(sample_dir: Path) -> None:
    from_csv = load_tape(sample_dir / ETH_CSV)
    from_ws = load_tape(sample_dir / SPOT_ETH)
    assert len(from_csv) == len(from_ws) == 14_515
    for a, b in zip(from_csv, from_ws, strict=True):
        assert orjson.dumps(a.data) == orjson.dumps(b.data)  # key order and text too
        assert a.recv_ns == b.recv_ns
    assert from_csv.events[0].data["p"] == "2683.80000000"


def test_same_trades_from_two_files_are_kept_once(sample_dir: Path) -> None:
    tape = load_tape([sample_dir / SPOT_ETH, sample_dir / ETH_CSV])
    assert len(tape) == 14_515 and tape.duplicates == 14_515


def test_2023_capture_receive_time_in_microseconds(sample_dir: Path) -> None:
    tape = load_tape(sample_dir / SPOT_2023)
    assert len(tape) == 3144
    first = tape.events[0]
    assert first.recv_ns == 1680652800004107 * 1000  # 16-digit µs -> ns
    assert "a" in first.data and first.trade_id == first.data["t"] == 3071245454


def test_futures_trade_tape(sample_dir: Path) -> None:
    tape = load_tape(sample_dir / UM_BTC)
    assert len(tape) == 21_313
    assert tape.first_id["BTCUSDT"] == 5266583935
    assert tape.last_id["BTCUSDT"] == 5266605247
    assert tape.events[0].data["X"] == "MARKET" and "M" not in tape.events[0].data


def test_raw_capture_keeps_trades_and_book_updates(sample_dir: Path) -> None:
    tape = load_tape(sample_dir / RAW)
    assert len(tape) == 556 + 2252
    assert tape.counts == {"ETHUSDT": 556} and tape.book_counts == {"ETHUSDT": 2252}
    assert tape.skipped == {"depthUpdate": 192}
    assert tape.missing_ids == {"ETHUSDT": 0}
    assert tape.markets == ("spot",)


def test_raw_capture_snapshot_line_is_skipped(tmp_path: Path, sample_dir: Path) -> None:
    with gzip.open(sample_dir / RAW, "rb") as fh:
        lines = fh.readlines()[:40]
    snapshot = (
        b'1723161254152322667 {"lastUpdateId":35346513512,"bids":[["1","2"]],'
        b'"asks":[]}\n'
    )
    path = tmp_path / "capture.gz"
    with gzip.open(path, "wb") as fh:
        fh.writelines([lines[0], snapshot, *lines[1:]])
    tape = load_tape(path)
    assert tape.skipped["snapshot"] == 1
    assert len(tape) == sum(b"@trade" in ln or b"@bookTicker" in ln for ln in lines)
    assert sum(tape.counts.values()) == sum(b"@trade" in line for line in lines)


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def eth_events(sample_dir: Path) -> list[TapeEvent]:
    return list(load_tape(sample_dir / SPOT_ETH).events[:300])


def _dump_rows(events: list[TapeEvent], micro: bool, spot: bool) -> list[str]:
    rows = []
    for ev in events:
        d = ev.data
        t = d["T"] * 1000 if micro else d["T"]
        quote = format(Decimal(d["p"]) * Decimal(d["q"]), "f")
        maker = str(d["m"]) if spot else str(d["m"]).lower()
        row = [str(d["t"]), d["p"], d["q"], quote, str(t), maker]
        if spot:
            row.append("True")
        rows.append(",".join(row))
    return rows


@pytest.mark.parametrize("micro", [False, True])
def test_spot_trades_dump(
    tmp_path: Path, eth_events: list[TapeEvent], micro: bool
) -> None:
    path = _write(
        tmp_path / "ETHUSDT-trades-2024-08-09.csv.gz",
        "\n".join(_dump_rows(eth_events, micro, spot=True)) + "\n",
    )
    tape = load_tape(path)
    assert len(tape) == 300
    for got, want in zip(tape, eth_events, strict=True):
        d = got.data
        assert (d["e"], d["s"], d["t"], d["p"], d["q"], d["T"], d["m"], d["M"]) == (
            "trade", "ETHUSDT", want.data["t"], want.data["p"], want.data["q"],
            want.data["T"], want.data["m"], True,
        )
        assert isinstance(parse_frame(orjson.dumps(d)), Trade)


def test_futures_trades_dump_with_header(
    tmp_path: Path, eth_events: list[TapeEvent]
) -> None:
    header = "id,price,qty,quote_qty,time,is_buyer_maker\n"
    path = _write(
        tmp_path / "ETHUSDT-trades-2024-08-09.csv",
        header + "\n".join(_dump_rows(eth_events, False, spot=False)),
    )
    tape = load_tape(path)
    assert [e.trade_id for e in tape] == [e.trade_id for e in eth_events]
    assert "M" not in tape.events[0].data
    assert tape.events[0].data["p"] == "2683.80000000"


def test_aggtrades_dumps_spot_and_futures(
    tmp_path: Path, eth_events: list[TapeEvent]
) -> None:
    aggs = aggregate_trades(eth_events)
    spot_rows = [
        f"{a.data['a']},{a.data['p']},{a.data['q']},{a.data['f']},{a.data['l']},"
        f"{a.data['T'] * 1000},{a.data['m']},True"
        for a in aggs
    ]
    fut_rows = [
        f"{a.data['a']},{a.data['p']},{a.data['q']},{a.data['f']},{a.data['l']},"
        f"{a.data['T']},{str(a.data['m']).lower()}"
        for a in aggs
    ]
    fut_header = (
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
        "is_buyer_maker\n"
    )
    spot_path = tmp_path / "ETHUSDT-aggTrades-2025-01-02.csv"  # µs times
    spot = load_tape(_write(spot_path, "\n".join(spot_rows)))
    fut_path = tmp_path / "ETHUSDT-aggTrades-2024-08-09.csv.gz"
    fut = load_tape(_write(fut_path, fut_header + "\n".join(fut_rows)))
    for tape in (spot, fut):
        assert tape.kinds == ("aggTrade",)
        assert [e.trade_id for e in tape] == [a.trade_id for a in aggs]
        for got, want in zip(tape, aggs, strict=True):
            for key in ("a", "p", "q", "f", "l", "T", "m"):
                assert got.data[key] == want.data[key]
    assert spot.events[0].data["M"] is True and "M" not in fut.events[0].data


DUMP = "ETHUSDT-trades-2024-08-09.csv"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("a.jsonl", '17231612540 {"stream":"x@trade","data":{"e":"trade"}}', "line 1"),
        ("b.jsonl", "1723161254087896568 {}\n1723161254087896569 {bad\n", "line 2"),
        (DUMP, "1,2.0,1.0,2.0,1723161255611,True,True\n1,x\n", "line 2"),
        (DUMP, "1,abc,1.0,2.0,1723161255611,True,True\n", "line 1"),
        ("mystery.csv", "10,2.0,1.0\n", "line 1"),
        (
            "trades.csv",
            "symbol,trade_id,price,qty,trade_time_ms,event_time_ms,is_buyer_maker\n"
            "ETHUSDT,1,2.0,1.0,1723161255611,1723161255612,maybe\n",
            "line 2",
        ),
    ],
)
def test_unreadable_file_names_file_and_line(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=rf"{name}.*{where}"):
        load_tape(path)


def test_mixed_kinds_for_one_symbol_rejected(eth_events: list[TapeEvent]) -> None:
    with pytest.raises(ValueError, match="mixes"):
        Tape([*eth_events, *aggregate_trades(eth_events)])


# -------------------------------------------------------------- aggregation


def test_aggregation_conserves_trades_and_quantity(spot_tape: Tape) -> None:
    aggs = aggregate_trades(spot_tape.events)
    by_symbol: dict[str, list[TapeEvent]] = defaultdict(list)
    for agg in aggs:
        by_symbol[agg.symbol].append(agg)
    trades_by_id = {(e.symbol, e.trade_id): e for e in spot_tape}
    for symbol, group in by_symbol.items():
        # ids contiguous from the first trade id; f..l tile the trade ids exactly
        assert [a.trade_id for a in group] == list(
            range(spot_tape.first_id[symbol], spot_tape.first_id[symbol] + len(group))
        )
        assert group[0].data["f"] == spot_tape.first_id[symbol]
        assert group[-1].data["l"] == spot_tape.last_id[symbol]
        for prev, nxt in zip(group, group[1:]):
            assert nxt.data["f"] == prev.data["l"] + 1
        covered = sum(a.data["l"] - a.data["f"] + 1 for a in group)
        assert covered == spot_tape.counts[symbol]
        total = sum(Decimal(a.data["q"]) for a in group)
        assert total == sum(
            Decimal(e.data["q"]) for e in spot_tape if e.symbol == symbol
        )
        for agg in group:
            members = [
                trades_by_id[(symbol, t)]
                for t in range(agg.data["f"], agg.data["l"] + 1)
            ]
            assert {m.data["T"] for m in members} == {agg.data["T"]}
            assert {Decimal(m.data["p"]) for m in members} == {Decimal(agg.data["p"])}
            assert {m.data["m"] for m in members} == {agg.data["m"]}
            assert Decimal(agg.data["q"]) == sum(Decimal(m.data["q"]) for m in members)
    assert len(aggs) < len(spot_tape)
    assert any(a.data["l"] > a.data["f"] for a in aggs)


def test_aggregate_shape_is_binance_like(spot_tape: Tape, sample_dir: Path) -> None:
    agg = aggregate_trades(spot_tape.events[:20])[1]
    assert list(agg.data) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    # 0.0020 + 0.0345 + 0.0020 + 0.0006, Binance's 8 decimals kept
    assert agg.data["q"] == "0.03910000"
    futures = aggregate_trades(load_tape(sample_dir / UM_BTC).events[:50])
    assert list(futures[0].data) == ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"]


def test_aggregate_index_points_at_last_trade(spot_tape: Tape) -> None:
    events = spot_tape.events[:2000]
    for index, agg in aggregate_trades_indexed(events):
        assert events[index].symbol == agg.symbol
        assert events[index].trade_id == agg.data["l"]


def test_aggregate_rejects_aggtrades(eth_events: list[TapeEvent]) -> None:
    with pytest.raises(ValueError, match="only 'trade'"):
        aggregate_trades(aggregate_trades(eth_events))
