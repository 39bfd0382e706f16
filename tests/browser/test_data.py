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
        "() => dash_ag_grid.getApi('{}').getDisplayedRowAtIndex(0).data".format(GRID)
    )
    assert row0["a_open"] == 28923.63 and row0["b_open"] == 736.42  # 2021-01-01 00:00

    # filter in the grid (server side): short-spread signals with z above 1
    page.evaluate(
        """() => dash_ag_grid.getApi('{}').setFilterModel({{
            signal: {{filterType: 'number', type: 'equals', filter: -1}},
            zscore: {{filterType: 'number', type: 'greaterThan', filter: 1}}}})""".format(
            GRID
        )
    )
    page.wait_for_function(
        "() => {{ const a = dash_ag_grid.getApi('{}');"
        " const n = a.getDisplayedRowCount();"
        " return a.isLastRowIndexKnown() && n > 1 && n < 744; }}".format(GRID),
        timeout=20_000,
    )
    shown = page.evaluate(
        "() => dash_ag_grid.getApi('{}').getDisplayedRowCount()".format(GRID)
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
    assert set(app_health()["symbols"]) >= {"BTCUSDT", "ETHUSDT"}
