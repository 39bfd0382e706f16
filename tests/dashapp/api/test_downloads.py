"""dashapp.api.downloads: formula-safe CSV, numbers untouched, file names, Parquet round trip."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pandas as pd
import pytest

from dashapp.api import downloads


def read_csv_cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_text_cells_starting_with_a_formula_character_are_neutralised(prefix):
    payload = f'{prefix}HYPERLINK("http://x","y")'
    frame = pd.DataFrame({"symbol": [payload, "BTCUSDT"], "z": [-1.5, 2.0]})
    rows = read_csv_cells(downloads.frame_bytes(frame, "csv"))
    assert rows[1][0] == "'" + payload
    assert rows[2][0] == "BTCUSDT"


def test_numbers_are_untouched_and_column_names_are_cells_too():
    frame = pd.DataFrame(
        {
            "zscore": [-1.5, 0.25, np.nan],
            "trades": [-3, 0, 7],
            "ok": [True, False, True],
            "=cmd": ["a", "b", "c"],
        }
    )
    rows = read_csv_cells(downloads.frame_bytes(frame, "csv"))
    assert rows[0] == ["zscore", "trades", "ok", "'=cmd"]
    assert [r[0] for r in rows[1:]] == ["-1.5", "0.25", ""]
    assert [r[1] for r in rows[1:]] == ["-3", "0", "7"]
    back = pd.read_csv(
        io.BytesIO(downloads.frame_bytes(frame[["zscore", "trades"]], "csv"))
    )
    np.testing.assert_array_equal(back.trades, frame.trades)
    np.testing.assert_allclose(back.zscore, frame.zscore, equal_nan=True)


def test_neutralise_leaves_the_input_alone():
    frame = pd.DataFrame({"s": ["=1+1"]})
    out = downloads.neutralise_formulas(frame)
    assert frame.s[0] == "=1+1" and out.s[0] == "'=1+1"


def test_ts_becomes_iso_utc_milliseconds():
    frame = pd.DataFrame(
        {"ts": np.array([1723161255000, 1723161256123], dtype=np.int64)}
    )
    rows = read_csv_cells(downloads.frame_bytes(frame, "csv"))
    assert rows[1:] == [["2024-08-08T23:54:15.000Z"], ["2024-08-08T23:54:16.123Z"]]


def test_file_names_carry_kind_symbols_timeframe_and_utc_range():
    ts = np.array([1723161255000, 1723161905000], dtype=np.int64)
    assert downloads.file_stem("pair", ["BTCUSDT", "ETHUSDT"], 1000, ts) == (
        "pair_BTCUSDT-ETHUSDT_1s_20240808T235415Z-20240809T000505Z"
    )
    assert downloads.file_stem("ticks", ["BTCUSDT"], None, ts[::-1]) == (
        "ticks_BTCUSDT_20240808T235415Z-20240809T000505Z"
    )
    assert downloads.file_stem(
        "bars", ["ETHUSDT"], 300_000, np.array([], np.int64)
    ) == ("bars_ETHUSDT_5m_empty")


def test_parquet_round_trip_keeps_types_and_values():
    assert downloads.parquet_available()
    frame = pd.DataFrame(
        {
            "ts": np.array([1, 2, 3], dtype=np.int64),
            "price": [61000.5, np.nan, 61001.25],
            "symbol": ["=X", "BTCUSDT", "ETHUSDT"],
            "maker": [True, False, True],
        }
    )
    back = pd.read_parquet(io.BytesIO(downloads.frame_bytes(frame, "parquet")))
    pd.testing.assert_frame_equal(back, frame)  # Parquet is data, not a spreadsheet


def test_send_frame_is_a_dcc_download_payload():
    frame = pd.DataFrame({"a": [1]})
    out = downloads.send_frame(frame, "bars_BTCUSDT_1s_x", "csv")
    assert out["filename"] == "bars_BTCUSDT_1s_x.csv" and out["base64"] is True
    assert base64.b64decode(out["content"]) == b"a\n1\n"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format must be one of csv, parquet"):
        downloads.frame_bytes(pd.DataFrame({"a": [1]}), "xlsx")
