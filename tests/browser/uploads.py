"""Helpers of the browser tests that need a stored dataset: upload real kline files
through ``POST /api/upload`` (the page's own upload is tested in test_data.py)."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.analytics.conftest import SAMPLE_DIR

PAIR_1H = (SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv", SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv")


def upload(base: str, name: str, paths=PAIR_1H) -> None:
    """Store ``paths`` (real kline files) as dataset ``name`` of the running app; a
    dataset of that name already there gets the same bars again (identical: merged)."""
    for p in map(Path, paths):
        with p.open("rb") as fh:
            r = requests.post(f"{base}/api/upload", files={"file": (p.name, fh)},
                              data={"dataset": name}, timeout=30)
        assert r.status_code == 200, r.text
