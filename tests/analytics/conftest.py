"""Fixtures on the real recorded Binance spot tape (sample_data/, ~34 k trades).

``sample_ticks[symbol]`` is a dict of read-only numpy columns named like the
parameters of :func:`analytics.bars.bars_from_ticks`, so
``bars_from_ticks(**sample_ticks["BTCUSDT"], tf_ms=1000)`` works. Rows are in
file order, which on these tapes is ``(T, trade_id)`` order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.bars import Bars, bars_from_ticks

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
_TAPE = "binance-spot-ws-trade_{}_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"


def load_trade_tape(path: Path) -> dict[str, np.ndarray]:
    """Read a ``<recv_ns> <combined-stream trade frame>`` jsonl.gz into columns.

    Uses Binance's trade time ``T`` (not ``E`` or the receive clock).
    """
    t, ids, px, qty, maker = [], [], [], [], []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            _recv_ns, frame = line.split(b" ", 1)
            d = orjson.loads(frame)["data"]
            t.append(d["T"])
            ids.append(d["t"])
            px.append(float(d["p"]))
            qty.append(float(d["q"]))
            maker.append(d["m"])
    cols = {
        "time_ms": np.array(t, dtype=np.int64),
        "trade_id": np.array(ids, dtype=np.int64),
        "price": np.array(px, dtype=np.float64),
        "qty": np.array(qty, dtype=np.float64),
        "buyer_is_maker": np.array(maker, dtype=np.bool_),
    }
    for arr in cols.values():
        arr.flags.writeable = False  # session fixture: no test may mutate it
    return cols


@pytest.fixture(scope="session")
def sample_ticks() -> dict[str, dict[str, np.ndarray]]:
    """symbol -> {time_ms, trade_id, price, qty, buyer_is_maker}; BTC/ETH USDT spot."""
    return {s: load_trade_tape(SAMPLE_DIR / _TAPE.format(s)) for s in SYMBOLS}


@pytest.fixture(scope="session")
def sample_bars_1s(sample_ticks) -> dict[str, Bars]:
    """symbol -> 1 s :class:`Bars` of the sample tape."""
    return {s: bars_from_ticks(**cols, tf_ms=1_000) for s, cols in sample_ticks.items()}
