"""Issue 13.13: the Data page's remove button must not report "Removed dataset 'x'" for a
dataset that is not there (removed meanwhile from another tab or through the API)."""

from __future__ import annotations

from contextvars import copy_context
from types import SimpleNamespace

import dash
from dash._callback_context import context_value
from dash._utils import AttributeDict

from dashapp import ids
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.store.sqlite_datasets import SqliteDatasetStore
from tests.analytics.conftest import SAMPLE_DIR


def _click_delete(page, source: str):
    def run():
        context_value.set(AttributeDict(
            triggered_inputs=[{"prop_id": f"{ids.Data.DELETE}.n_clicks", "value": 1}]
        ))
        return page.change_datasets(None, 1, None, None, None, source, {"n": 3})

    return copy_context().run(run)


def test_removing_a_dataset_that_is_not_there_says_so(tmp_path):
    from analytics.upload import parse_ohlc_csv

    store = SqliteDatasetStore(tmp_path / "d.db")
    set_services(LiveMarketData(SimpleNamespace(datasets=store)))
    dash.Dash(__name__, use_pages=True, pages_folder="")  # registry for register_page
    from dashapp.pages import data as page

    path = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"
    store.add("real", parse_ohlc_csv(path.read_bytes(), filename=path.name))
    try:
        alert, _ = _click_delete(page, "real")
        assert "Removed dataset 'real'" in alert.children
        alert, _ = _click_delete(page, "real")  # gone now
        assert "Removed" not in alert.children
        assert "No dataset named 'real'" in alert.children
    finally:
        store.close()
