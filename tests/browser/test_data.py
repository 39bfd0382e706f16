"""The data page in a real browser on ``python app.py --replay``: upload two real Binance
kline files as one dataset, load its features table, filter it in the grid, download the
table and check the file holds exactly the filtered rows; a bad file is refused with its
message, and a file over the upload cap is named in the page."""

from __future__ import annotations

import io
import time

import pandas as pd
import requests
from playwright.sync_api import expect

from tests.analytics.conftest import SAMPLE_DIR

FILES = [SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv", SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv"]
GRID = "data-grid"


def test_upload_load_filter_download(page, live_app, shot, tmp_path):
    page.goto("/data")
    expect(page.locator("#data-grid")).to_be_visible()
    page.fill("#data-upload-dataset", "browser-pair")
    page.set_input_files("#data-upload input[type=file]", [str(p) for p in FILES])
    expect(page.locator(".upload-accepted")).to_have_count(2, timeout=30_000)
    expect(page.locator("#data-upload-result")).to_contain_text(
        "744 1h bars of ETHUSDT"
    )
    # the new dataset is selected as the source; its symbols and timeframe follow
    expect(page.locator("#data-source")).to_have_value("browser-pair")
    expect(page.locator("#data-a")).to_have_value("BTCUSDT")
    expect(page.locator("#data-tf")).to_have_value("1h")
    page.fill("#data-window", "24")
    page.click("#data-load")
    expect(page.locator("#data-status")).to_contain_text(
        "744 rows of 1h bars", timeout=30_000
    )
    expect(page.locator(".ag-header-cell-text", has_text="Signal")).to_be_visible()
    first = page.locator(".ag-pinned-left-cols-container .ag-row[row-index='0']")
    expect(first).to_contain_text("2021-01-01T00:00:00.000Z")
    row0 = page.evaluate(
        f"() => dash_ag_grid.getApi('{GRID}').getDisplayedRowAtIndex(0).data"
    )
    assert row0["a_open"] == 28923.63 and row0["b_open"] == 736.42  # 2021-01-01 00:00

    # filter in the grid (server side): short-spread signals with z above 1
    page.evaluate(
        f"""() => dash_ag_grid.getApi('{GRID}').setFilterModel({{
            signal: {{filterType: 'number', type: 'equals', filter: -1}},
            zscore: {{filterType: 'number', type: 'greaterThan', filter: 1}}}})"""
    )
    page.wait_for_function(
        f"() => {{ const a = dash_ag_grid.getApi('{GRID}');"
        " const n = a.getDisplayedRowCount();"
        " return a.isLastRowIndexKnown() && n > 1 && n < 744; }",
        timeout=20_000,
    )
    shown = page.evaluate(
        f"() => dash_ag_grid.getApi('{GRID}').getDisplayedRowCount()"
    )
    shot(page, "data")

    with page.expect_download() as dl:
        page.click("#data-download-table")
    download = dl.value
    name = download.suggested_filename
    # symbols, timeframe and the UTC range of the rows in the file
    assert name.startswith("data_BTCUSDT-ETHUSDT_1h_202101") and name.endswith("Z.csv")
    path = tmp_path / name
    download.save_as(path)
    table = pd.read_csv(path)
    assert len(table) == shown
    assert (table.signal == -1).all() and (table.zscore > 1).all()
    # the same rows the API computes for this dataset
    pair = requests.get(
        f"{live_app}/api/pair?dataset=browser-pair&a=BTCUSDT&b=ETHUSDT"
        "&window=24&format=csv",
        timeout=10,
    )
    ref = pd.read_csv(io.StringIO(pair.text)).set_index("ts")
    pd.testing.assert_series_equal(
        table.set_index("ts").zscore,
        ref.loc[table.ts, "zscore"],
        check_names=False,
        rtol=1e-8,
    )


def test_bad_file_is_refused_with_its_problems(page, tmp_path):
    bad = tmp_path / "BTCUSDT-1h-bad.csv"
    lines = FILES[0].read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    bad.write_text("\n".join(lines) + "\n")
    page.goto("/data")
    page.fill("#data-upload-dataset", "bad-one")
    page.set_input_files("#data-upload input[type=file]", str(bad))
    alert = page.locator(".upload-refused")
    expect(alert).to_contain_text("refused, nothing was stored", timeout=30_000)
    expect(alert).to_contain_text("times not sorted ascending: line 4")
    names = [d["dataset"] for d in page.request.get("/api/datasets").json()["datasets"]]
    assert "bad-one" not in names


def test_a_file_over_the_cap_is_named_in_the_page_and_a_good_one_clears_it(page, tmp_path):
    from analytics.upload import MAX_UPLOAD_BYTES

    big = tmp_path / "BTCUSDT-1s-huge.csv"
    with big.open("wb") as fh:  # sparse: over the cap without writing 32 MB
        fh.truncate(MAX_UPLOAD_BYTES + 1)
    page.goto("/data")
    page.fill("#data-upload-dataset", "too-big")
    page.set_input_files("#data-upload input[type=file]", str(big))
    msg = page.locator("#data-upload-too-big")
    expect(msg).to_contain_text("Not uploaded, over the cap of 32.0 MB per file")
    expect(msg).to_contain_text("BTCUSDT-1s-huge.csv (32.0 MB)")
    names = [d["dataset"] for d in page.request.get("/api/datasets").json()["datasets"]]
    assert "too-big" not in names
    page.fill("#data-upload-dataset", "after-big")
    page.set_input_files("#data-upload input[type=file]", str(FILES[0]))
    expect(page.locator(".upload-accepted")).to_have_count(1, timeout=30_000)
    expect(msg).to_be_empty()


def test_live_table_pages_from_the_server(page, app_health):
    page.goto("/data")
    status = page.locator("#data-status")
    deadline = time.monotonic() + 40
    while "rows of 1s bars" not in (status.text_content() or ""):
        assert time.monotonic() < deadline, status.text_content()
        page.wait_for_timeout(1000)
        page.click("#data-load")  # live bars keep arriving: rebuild until warm
        page.wait_for_timeout(500)
    page.wait_for_function(
        "() => { const a = dash_ag_grid.getApi('%s');"
        " return a.isLastRowIndexKnown() && a.getDisplayedRowCount() > 60; }" % GRID,
        timeout=20_000,
    )
    n = page.evaluate("() => dash_ag_grid.getApi('%s').getDisplayedRowCount()" % GRID)
    # paged: the browser holds one or two 100-row blocks, not the table
    held = page.evaluate(
        "() => { let k = 0; dash_ag_grid.getApi('%s').forEachNode(r => { if (r.data) k++; });"
        " return k; }" % GRID
    )
    assert held <= 200 and held <= n
    row = page.evaluate(
        "() => dash_ag_grid.getApi('%s').getDisplayedRowAtIndex(0).data" % GRID
    )
    assert row["ts"].startswith("20") and row["ts"].endswith("Z")
    # each leg's top of book follows its bars (null where the run has no book yet)
    assert {"a_bid", "a_ask", "a_spread_bps_twa", "b_bid", "b_spread_bps_twa"} <= set(row)
    assert page.evaluate(  # a grid column (its header cell renders when scrolled to)
        "() => dash_ag_grid.getApi('%s').getColumn('a_spread_bps_twa') !== null" % GRID)
    assert set(app_health()["symbols"]) >= {"BTCUSDT", "ETHUSDT"}


# -- datasets from the page: multi-file drops, appended months, links (issue 14.4-14.8) ----
def _upload_api(live_app: str, name: str, paths) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            r = requests.post(f"{live_app}/api/upload", files={"file": (p.name, fh)},
                              data={"dataset": name}, timeout=30)
        assert r.status_code == 200, r.text


def _dataset(page, name: str) -> dict | None:
    found = [d for d in page.request.get("/api/datasets").json()["datasets"]
             if d["dataset"] == name]
    return found[0] if found else None


def _month_parts(tmp_path):
    """Two consecutive parts of the real BTCUSDT 1 h file ("October", "November"),
    overlapping by 24 identical bars; and "November" with one conflicting row."""
    lines = FILES[0].read_text().splitlines()
    oct_ = tmp_path / "BTCUSDT-1h-2021-01-part1.csv"
    nov = tmp_path / "BTCUSDT-1h-2021-01-part2.csv"
    oct_.write_text("\n".join(lines[:400]) + "\n")
    nov.write_text("\n".join(lines[376:]) + "\n")
    bad_lines = lines[376:]
    cells = bad_lines[3].split(",")
    cells[5] = "1.5"  # file line 4: another volume than the stored bar of that hour
    bad_lines[3] = ",".join(cells)
    bad = tmp_path / "BTCUSDT-1h-2021-01-part2b.csv"
    bad.write_text("\n".join(bad_lines) + "\n")
    return oct_, nov, bad


def test_a_multi_file_drop_without_a_name_makes_one_dataset(page):
    page.goto("/data")
    expect(page.locator("#data-grid")).to_be_visible()
    page.set_input_files("#data-upload input[type=file]", [str(p) for p in FILES])
    expect(page.locator(".upload-accepted")).to_have_count(2, timeout=30_000)
    ds = _dataset(page, "BTCUSDT-ETHUSDT-1h")
    assert ds is not None, page.request.get("/api/datasets").json()
    # one drop uploads its files concurrently: the dataset lists them in upload order
    assert sorted(ds["symbols"]) == ["BTCUSDT", "ETHUSDT"]
    assert _dataset(page, "BTCUSDT-1h-2021-01") is None
    expect(page.locator("#data-source")).to_have_value("BTCUSDT-ETHUSDT-1h")
    expect(page.locator("#data-b")).to_have_value(ds["symbols"][1])


def test_the_next_month_appends_from_the_page_and_a_conflict_names_its_line(page, tmp_path):
    oct_, nov, bad = _month_parts(tmp_path)
    page.goto("/data")
    page.fill("#data-upload-dataset", "btc-months")
    page.set_input_files("#data-upload input[type=file]", str(oct_))
    expect(page.locator(".upload-accepted")).to_have_count(1, timeout=30_000)
    page.set_input_files("#data-upload input[type=file]", str(nov))
    ok = page.locator(".upload-accepted")
    expect(ok).to_contain_text("344 new", timeout=30_000)
    expect(ok).to_contain_text("24 identical bars merged")
    ds = _dataset(page, "btc-months")
    assert ds["rows"] == {"BTCUSDT": 744} and ds["end"] == "2021-01-31T23:00:00.000Z"
    expect(page.locator("#data-datasets")).to_contain_text("BTCUSDT (744)")
    page.set_input_files("#data-upload input[type=file]", str(bad))
    refused = page.locator(".upload-refused")
    expect(refused).to_contain_text("refused, nothing was stored", timeout=30_000)
    expect(refused).to_contain_text("line 4 (2021-01-16T19:00:00.000Z) has volume 1.5")
    assert _dataset(page, "btc-months")["rows"] == {"BTCUSDT": 744}


def test_a_data_link_opens_its_dataset_window_and_settings(page, live_app):
    _upload_api(live_app, "link-1h", FILES)
    page.goto("/data?dataset=link-1h&w=5&reg=huber&prices=log&a=ETHUSDT&b=BTCUSDT")
    expect(page.locator("#data-source")).to_have_value("link-1h")
    expect(page.locator("#data-window")).to_have_value("5")
    expect(page.locator("#data-reg")).to_have_value("huber")
    expect(page.locator("#data-a")).to_have_value("ETHUSDT")
    expect(page.locator("#data-tf")).to_have_value("1h")
    # the source select says what each dataset holds
    expect(page.locator("#data-source option[value='link-1h']")).to_have_text(
        "link-1h · BTCUSDT, ETHUSDT · 1h · 744 bars")
    page.click("#data-load")
    expect(page.locator("#data-status")).to_contain_text("744 rows of 1h bars", timeout=30_000)
    expect(page.locator("#data-status")).to_contain_text("ETHUSDT/BTCUSDT (link-1h)")
    # choosing another source puts it in the address bar (a link to share)
    page.select_option("#data-source", label="Live feed")
    page.wait_for_function("() => !location.search.includes('dataset=')")
    page.select_option("#data-source", "link-1h")
    page.wait_for_function("() => location.search.includes('dataset=link-1h')")


def test_an_unknown_dataset_in_the_link_falls_back_to_live_with_a_note(page):
    page.goto("/data?dataset=nosuch&w=7")
    note = page.locator(".dataset-note")
    expect(note).to_contain_text("No dataset named 'nosuch'; showing the live feed")
    expect(page.locator("#data-source")).to_have_value("(live)")
    # the select shows what it is on, not an empty box
    expect(page.locator("#data-source option:checked")).to_have_text("Live feed")
    expect(page.locator("#data-window")).to_have_value("7")
    page.wait_for_timeout(2_000)  # the page's first callbacks ran: the note is still there
    expect(note).to_contain_text("No dataset named 'nosuch'")


def test_tick_download_defaults_to_the_last_minutes_held(page, tmp_path):
    page.goto("/data")
    start, end = page.locator("#data-ticks-start"), page.locator("#data-ticks-end")
    expect(start).not_to_have_value("")
    expect(end).not_to_have_value("")
    t0 = pd.Timestamp(start.input_value(), tz="UTC")
    t1 = pd.Timestamp(end.input_value(), tz="UTC")
    now = pd.Timestamp.now(tz="UTC")
    # The replay stamps its trades from its start (at 10x the recorded pace, so the data
    # clock runs ahead of the wall clock): the defaults end at the last trade held, today,
    # not in the recording's 2024.
    health = page.request.get("/api/health").json()
    last = pd.Timestamp(max(s["last_trade_ms"] for s in health["symbols"].values()
                            if s.get("last_trade_ms")), unit="ms", tz="UTC")
    assert t1.year == now.year and abs((last - t1).total_seconds()) < 300, (t0, t1, last)
    assert pd.Timedelta(0) < t1 - t0 <= pd.Timedelta(minutes=5)
    assert str(now.year) in (start.get_attribute("placeholder") or "")
    with page.expect_download() as dl:
        page.click("#data-download-ticks")
    name = dl.value.suggested_filename
    assert name.startswith("ticks_BTCUSDT_"), name
    path = tmp_path / name
    dl.value.save_as(path)
    ticks = pd.read_csv(path)
    assert len(ticks) > 0 and {"trade_id", "price", "qty"} <= set(ticks.columns)
    expect(page.locator("#data-download-note")).not_to_contain_text("required")
    # emptied fields mean the default range again, not "start: is required"
    start.fill("")
    end.fill("")
    with page.expect_download():
        page.click("#data-download-ticks")
    expect(page.locator("#data-download-note")).not_to_contain_text("required")
