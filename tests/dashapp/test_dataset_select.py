"""The shared source selector (issue 14.4): options say what each dataset holds, the URL
parameter resolves to a source, an unknown dataset falls back to live with a note."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from analytics.upload import parse_ohlc_csv
from dashapp.components import dataset_select as ds
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.store import DatasetError
from ingest.store.sqlite_datasets import SqliteDatasetStore
from tests.analytics.conftest import SAMPLE_DIR


@pytest.fixture
def store(tmp_path):
    st = SqliteDatasetStore(tmp_path / "app.db")
    for name in ("BTCUSDT-1h-2021-01.csv", "ETHUSDT-1h-2021-01.csv"):
        st.add("m21", parse_ohlc_csv((SAMPLE_DIR / name).read_bytes(), filename=name))
    set_services(LiveMarketData(SimpleNamespace(
        datasets=st, ingestor=SimpleNamespace(rings=dict.fromkeys(["SOLUSDT"])))))
    yield st
    st.close()


def test_options_resolve_and_fallback(store):
    assert ds.options() == [
        {"label": "Live feed", "value": ds.LIVE_VALUE},
        {"label": "m21 · BTCUSDT, ETHUSDT · 1h · 744 bars", "value": "m21"},
    ]
    assert ds.resolve("m21") == ds.Source("m21") and ds.resolve("m21").value == "m21"
    for live in (None, "", " ", "live", ds.LIVE_VALUE):
        assert ds.resolve(live) == ds.Source(None), live
    gone = ds.resolve("nosuch")
    assert gone.is_live and gone.value == ds.LIVE_VALUE
    assert gone.note == "No dataset named 'nosuch'; showing the live feed. Datasets: m21."
    assert ds.symbol_options(None) == ["SOLUSDT"]
    assert ds.symbol_options("m21") == ["BTCUSDT", "ETHUSDT"]
    assert ds.timeframe_options("m21", ("1s",)) == ["1h", "4h", "1d"]
    assert ds.pick_legs(["BTCUSDT", "ETHUSDT"], "ETHUSDT", "ETHUSDT") == ("ETHUSDT", "BTCUSDT")
    assert ds.query(None) == {} and ds.query("m21") == {"dataset": "m21"}
    note = ds.selector("x-source", gone).children[2]
    assert note.id == "x-source-note" and "nosuch" in note.children


def test_live_is_not_a_dataset_name(store):
    with pytest.raises(DatasetError, match="reserved"):
        store.add("Live", parse_ohlc_csv((SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv").read_bytes(),
                                         filename="BTCUSDT-1h-2021-01.csv"))
