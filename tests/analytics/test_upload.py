"""OHLC upload parsing: real Binance kline files, the generic format, and one test per kind
of bad file, each refused with a message naming the problem and the offending lines."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from analytics.upload import MAX_UPLOAD_BYTES, UploadError, parse_ohlc_csv
from tests.analytics.conftest import SAMPLE_DIR

FUT = SAMPLE_DIR / "BTCUSDT-1m-2022-09-05.csv"  # USDT-M futures, header
SPOT = SAMPLE_DIR / "BTCUSDT-1m-2020-01-01.csv"  # spot, no header
H1 = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"

HEADER = "timestamp,open,high,low,close,volume\n"


def generic(rows: list[tuple], header: str = HEADER) -> bytes:
    return (header + "".join(",".join(str(v) for v in r) + "\n" for r in rows)).encode()


def minute_rows(
    n: int, start_ms: int = 1_700_000_040_000, step: int = 60_000
) -> list[tuple]:
    out = []
    for i in range(n):
        p = 100.0 + i
        out.append((start_ms + i * step, p, p + 2, p - 1, p + 1, 10 + i))
    return out


def refused(content: bytes, **kw) -> list[str]:
    with pytest.raises(UploadError) as ei:
        parse_ohlc_csv(content, **kw)
    assert ei.value.problems, "an UploadError must list its problems"
    return ei.value.problems


# -- real files -------------------------------------------------------------------------
def test_binance_futures_file_with_header_matches_pandas():
    up = parse_ohlc_csv(FUT.read_bytes(), filename=FUT.name)
    ref = pd.read_csv(FUT)
    assert up.symbols == ("BTCUSDT",) and up.kind == "binance" and up.time_unit == "ms"
    assert up.tf_ms == 60_000 and up.rows == len(ref) == 1440
    b = up.bars["BTCUSDT"]
    np.testing.assert_array_equal(b.ts, ref.open_time.to_numpy())
    for col in ("open", "high", "low", "close", "volume", "quote_volume"):
        np.testing.assert_array_equal(getattr(b, col), ref[col].to_numpy(float))
    np.testing.assert_array_equal(b.trades, ref["count"].to_numpy())
    np.testing.assert_array_equal(b.buy_volume, ref.taker_buy_volume.to_numpy(float))
    assert up.start_ms == 1662336000000 and up.end_ms == 1662336000000 + 1439 * 60_000


def test_binance_spot_file_without_header():
    up = parse_ohlc_csv(SPOT.read_bytes(), filename=SPOT.name)
    ref = pd.read_csv(SPOT, header=None)
    assert up.rows == 1440 and up.tf_ms == 60_000
    np.testing.assert_array_equal(up.bars["BTCUSDT"].close, ref[4].to_numpy(float))
    assert up.bars["BTCUSDT"].open[0] == 7195.24


def test_binance_microsecond_times_are_detected_by_digit_count():
    ref = pd.read_csv(SPOT, header=None, dtype=str)
    ref[0] = ref[0] + "000"
    ref[6] = ref[6] + "999"  # close_time ...59999 ms -> ...59999999 us
    content = ref.to_csv(header=False, index=False).encode()
    up = parse_ohlc_csv(content, symbol="btcusdt")
    ms = parse_ohlc_csv(SPOT.read_bytes(), filename=SPOT.name)
    assert up.time_unit == "us" and up.tf_ms == 60_000
    np.testing.assert_array_equal(up.bars["BTCUSDT"].ts, ms.bars["BTCUSDT"].ts)


def test_monthly_1h_file_and_its_zip():
    up = parse_ohlc_csv(H1.read_bytes(), filename=H1.name)
    assert up.tf_ms == 3_600_000 and up.rows == 744
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(H1.name, H1.read_bytes())
    zipped = parse_ohlc_csv(buf.getvalue(), filename="BTCUSDT-1h-2021-01.zip")
    np.testing.assert_array_equal(
        zipped.bars["BTCUSDT"].close, up.bars["BTCUSDT"].close
    )


def test_maintenance_bar_with_short_close_time_is_accepted():
    # Binance truncates the bar before a maintenance gap (real: ETHUSDT 2021-02-11 04:00).
    lines = H1.read_text().splitlines()[:10]
    cells = lines[4].split(",")
    cells[6] = str(int(cells[0]) + 1_234_567)  # closed early
    lines[4] = ",".join(cells)
    del lines[5:7]  # two hours missing after it
    up = parse_ohlc_csv(("\n".join(lines) + "\n").encode(), filename=H1.name)
    assert up.tf_ms == 3_600_000 and up.rows == 8


# -- generic ----------------------------------------------------------------------------
def test_generic_epoch_seconds_ms_us_and_iso_agree():
    rows = minute_rows(5)
    ms = parse_ohlc_csv(generic(rows), symbol="AAAUSDT")
    s = parse_ohlc_csv(
        generic([(r[0] // 1000, *r[1:]) for r in rows]), symbol="AAAUSDT"
    )
    us = parse_ohlc_csv(
        generic([(r[0] * 1000, *r[1:]) for r in rows]), symbol="AAAUSDT"
    )
    iso_rows = [
        (pd.Timestamp(r[0], unit="ms").strftime("%Y-%m-%dT%H:%M:%S.000Z"), *r[1:])
        for r in rows
    ]
    iso = parse_ohlc_csv(
        generic(iso_rows, "ts,open,high,low,close,volume\n"), symbol="AAAUSDT"
    )
    for up in (s, us, iso):
        np.testing.assert_array_equal(up.bars["AAAUSDT"].ts, ms.bars["AAAUSDT"].ts)
    assert (ms.time_unit, s.time_unit, us.time_unit, iso.time_unit) == (
        "ms",
        "s",
        "us",
        "iso",
    )
    assert np.isnan(ms.bars["AAAUSDT"].quote_volume).all()  # not in the file: unknown


def test_generic_with_symbol_column_gives_two_symbols():
    rows = []
    for r in minute_rows(4):
        rows.append(("BTCUSDT", *r))
        rows.append(("ETHUSDT", r[0], r[1] / 10, r[2] / 10, r[3] / 10, r[4] / 10, r[5]))
    up = parse_ohlc_csv(generic(rows, "symbol," + HEADER))
    assert up.symbols == ("BTCUSDT", "ETHUSDT") and up.rows == 8
    assert up.bars["ETHUSDT"].close[0] == pytest.approx(10.1)


def test_generic_positional_without_header_and_gaps_allowed():
    rows = minute_rows(6)
    del rows[3]  # one missing minute is a gap, not a second timeframe
    up = parse_ohlc_csv(generic(rows, header=""), filename="SOLUSDT-1m-2023-11-14.csv")
    assert up.symbols == ("SOLUSDT",) and up.tf_ms == 60_000 and up.rows == 5


def test_symbol_sources_and_their_conflicts():
    content = generic(minute_rows(3))
    assert refused(content)[0].startswith("no symbol")
    assert parse_ohlc_csv(content, filename="XRPUSDT-1m-2024-01-01.csv").symbols == (
        "XRPUSDT",
    )
    # the form field wins over the file name
    assert parse_ohlc_csv(
        content, filename="XRPUSDT-1m-x.csv", symbol="bnbusdt"
    ).symbols == ("BNBUSDT",)
    msg = refused(content, filename="XRPUSDT-5m-2024-01-01.csv")
    assert "file name says 5m" in msg[0]
    with_col = generic([("BTCUSDT", *r) for r in minute_rows(3)], "symbol," + HEADER)
    assert "symbol column differs" in refused(with_col, symbol="ETHUSDT")[0]
    assert "is not a symbol" in refused(content, symbol="=cmd|x")[0]


# -- one test per kind of bad file -------------------------------------------------------
def test_wrong_columns():
    msg = refused(b"date,price,size\n2024-01-01,1,2\n", symbol="BTCUSDT")
    assert msg[0].startswith("wrong columns: missing") and "high" in msg[0]
    msg = refused(b"1,2,3,4,5\n6,7,8,9,10\n", symbol="BTCUSDT")
    assert msg[0].startswith("wrong columns: 5 columns and no header")


def test_text_in_a_number_names_the_lines_and_values():
    rows = minute_rows(8)
    rows[2] = (rows[2][0], rows[2][1], "abc", *rows[2][3:])
    rows[6] = (rows[6][0], rows[6][1], rows[6][2], rows[6][3], "1.5x", rows[6][5])
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert any("column 'high': not a number in line 4 ('abc')" == m for m in msg), msg
    assert any("column 'close': not a number in line 8" in m for m in msg), msg


def test_empty_files():
    assert refused(b"") == ["the file is empty (no rows)"]
    assert refused(b"\n\n  \n") == ["the file is empty (no rows)"]
    assert refused(HEADER.encode(), symbol="BTCUSDT") == [
        "the file is empty: a header row but no data rows"
    ]


def test_over_the_cap():
    content = generic(minute_rows(50))
    msg = refused(content, symbol="BTCUSDT", max_bytes=len(content) - 1)
    assert msg[0].startswith("file too large") and f"{len(content):,} bytes" in msg[0]
    assert MAX_UPLOAD_BYTES == 32 * 1024 * 1024
    # a zip is capped by what it inflates to, before inflating it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("BTCUSDT-1m-x.csv", b"0" * 10_000)
    assert "inflates to 10,000 bytes" in refused(buf.getvalue(), max_bytes=5_000)[0]


def test_unsorted_times():
    rows = minute_rows(6)
    rows[3], rows[4] = rows[4], rows[3]
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert len(msg) == 1 and msg[0].startswith("times not sorted ascending: line 6")
    assert "comes after line 5" in msg[0]


def test_duplicate_times():
    rows = minute_rows(6)
    rows[4] = (rows[3][0], *rows[4][1:])
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert len(msg) == 1 and msg[0].startswith("duplicate times: line 6")
    assert "lines 5 and 6" in msg[0]


def test_high_below_low_and_other_bar_inconsistencies():
    rows = minute_rows(6)
    t, o, h, lo, c, v = rows[2]
    rows[2] = (t, o, lo - 5, lo, c, v)  # high < low
    t, o, h, lo, c, v = rows[4]
    rows[4] = (t, o, h, lo, c, -1)  # negative volume
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert "high < low in line 4" in msg
    assert "high below max(open, close) in line 4" in msg
    assert "negative volume in line 6" in msg


def test_mixed_timeframes_binance_by_close_time():
    lines = SPOT.read_text().splitlines()[:40]
    # turn the last 10 one-minute rows into 5-minute bars (close_time says so)
    start = int(lines[30].split(",")[0])
    for k, i in enumerate(range(30, 40)):
        cells = lines[i].split(",")
        cells[0] = str(start + k * 300_000)
        cells[6] = str(start + k * 300_000 + 299_999)
        lines[i] = ",".join(cells)
    msg = refused(("\n".join(lines) + "\n").encode(), filename=SPOT.name)
    assert msg[0].startswith(
        "mixed timeframes (close_time - open_time + 1): 1m bars, but"
    )
    assert "lines 31, 32, 33, 34, 35 and 5 more are 5m bars" in msg[0]


def test_mixed_timeframes_generic_by_runs_of_spacing():
    one = minute_rows(30)
    five = minute_rows(30, start_ms=one[-1][0] + 300_000, step=300_000)
    msg = refused(generic(one + five), symbol="BTCUSDT")
    assert msg[0].startswith("mixed timeframes: 1m bars, and lines 32-61 are 5m bars")
    odd = minute_rows(5)
    odd[4] = (odd[3][0] + 90_000, *odd[4][1:])  # 90 s after a 1 m bar
    msg = refused(generic(odd), symbol="BTCUSDT")
    assert msg[0] == (
        "mixed timeframes: smallest spacing is 1m but line 6 is 90s after the "
        "previous bar (not a whole number of bars)"
    )


def test_malformed_csv_and_binary_are_refused():
    assert (
        "Expected 6 fields in line 3"
        in refused(
            (
                HEADER + "1700000040000,1,2,0.5,1.5,1\n1700000100000,1,2,0.5,1.5,1,9\n"
            ).encode(),
            symbol="BTCUSDT",
        )[0]
    )
    assert "NUL" in refused(b"\x00\x01\x02abc")[0]
    assert "not UTF-8" in refused(b"timestamp,open\n\xff\xfe,1\n")[0]
    assert "is empty" in refused(b"")[0]


def test_every_problem_is_reported_at_once():
    rows = minute_rows(10)
    rows[1] = (rows[1][0], "x", *rows[1][2:])
    rows[5] = (rows[5][0], rows[5][1], rows[5][3] - 3, *rows[5][3:])
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert len(msg) >= 2
    assert any("not a number in line 3" in m for m in msg)
    assert any("high < low in line 7" in m for m in msg)


def test_many_offending_lines_are_summarised():
    rows = [(t, o, lo - 1, lo, c, v) for t, o, h, lo, c, v in minute_rows(40)]
    msg = refused(generic(rows), symbol="BTCUSDT")
    assert "high < low in lines 2, 3, 4, 5, 6 and 35 more" in msg


def test_result_is_frozen():
    up = parse_ohlc_csv(generic(minute_rows(3)), symbol="BTCUSDT")
    with pytest.raises(AttributeError):
        up.rows = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        up.bars["X"] = up.bars["BTCUSDT"]  # type: ignore[index]
    assert not up.bars["BTCUSDT"].close.flags.writeable


# -- corrupt zips (issue 13.8): every one a refusal with a message, never a crash ------
def _zip_of(content: bytes, method=zipfile.ZIP_DEFLATED) -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("BTCUSDT-1h-2021-01.csv", content)
    return bytearray(buf.getvalue())


def _corrupt_deflate() -> bytes:
    """The deflate stream is garbage (zlib.error when inflating)."""
    z = _zip_of(H1.read_bytes())
    start = 30 + len("BTCUSDT-1h-2021-01.csv")
    z[start : start + 64] = b"\xff" * 64
    return bytes(z)


def _bad_crc() -> bytes:
    """Stored (uncompressed) member with one byte changed: a CRC-32 mismatch."""
    z = _zip_of(H1.read_bytes(), zipfile.ZIP_STORED)
    start = 30 + len("BTCUSDT-1h-2021-01.csv")
    z[start + 100] ^= 0x01
    return bytes(z)


def _truncated_member() -> bytes:
    """Central directory intact, member data cut short (EOF while inflating)."""
    z = _zip_of(H1.read_bytes())
    cd = z.rfind(b"PK\x01\x02")
    start = 30 + len("BTCUSDT-1h-2021-01.csv")
    return bytes(z[: start + 200] + z[cd:])


def _encrypted_flag() -> bytes:
    """The member claims to be encrypted (no password can be given)."""
    z = _zip_of(H1.read_bytes())
    z[6] |= 0x01  # local header flag
    cd = z.rfind(b"PK\x01\x02")
    z[cd + 8] |= 0x01  # central directory flag
    return bytes(z)


def _unknown_method() -> bytes:
    """A compression method zipfile does not implement."""
    z = _zip_of(H1.read_bytes())
    z[8:10] = (99).to_bytes(2, "little")
    cd = z.rfind(b"PK\x01\x02")
    z[cd + 10 : cd + 12] = (99).to_bytes(2, "little")
    return bytes(z)


CORRUPT_ZIPS = {
    "corrupt_deflate": _corrupt_deflate,
    "bad_crc": _bad_crc,
    "truncated_member": _truncated_member,
    "encrypted": _encrypted_flag,
    "unknown_method": _unknown_method,
    "cut_in_half": lambda: bytes(_zip_of(H1.read_bytes())[:900]),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT_ZIPS))
def test_corrupt_zip_is_refused_with_a_message(kind):
    problems = refused(CORRUPT_ZIPS[kind](), filename="BTCUSDT-1h-2021-01.zip")
    assert any("zip" in p for p in problems), problems
