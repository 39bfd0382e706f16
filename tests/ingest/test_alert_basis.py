"""The ``basis_bps`` alert metric on the real spot + perp BTCUSDT tapes, through the real
ingestor, engine and alert service, against the basis computed offline with pandas."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pandas as pd
import pytest

from analytics.alerts import RuleError, parse_rule
from analytics.engine import MarketEngine
from analytics.instruments import Universe
from ingest.alert_service import AlertService
from ingest.models import Trade
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.analytics.conftest import SAMPLE_DIR
from tests.analytics.test_basis import PERP_TAPE, SPOT_TAPE

PERP, SPOT = "perp:BTCUSDT", "spot:BTCUSDT"


def read_trades(path, market: str) -> list[Trade]:
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            d = orjson.loads(line.split(b" ", 1)[1])["data"]
            out.append(Trade(d["s"], d["t"], d["T"], float(d["p"]), float(d["q"]), d["m"],
                             d["E"], market))
    return out


@pytest.fixture(scope="module")
def trades():
    both = read_trades(SAMPLE_DIR / PERP_TAPE, "perp") + read_trades(SAMPLE_DIR / SPOT_TAPE,
                                                                       "spot")
    return sorted(both, key=lambda t: (t.time_ms, t.market, t.trade_id))


def offline_bps(trades) -> pd.Series:
    """basis_bps on the aligned grid, by pandas from the trades alone."""
    closes = {}
    for market in ("perp", "spot"):
        df = pd.DataFrame([(t.time_ms, t.trade_id, t.price) for t in trades
                           if t.market == market], columns=["T", "id", "p"])
        df = df.sort_values(["T", "id"])
        closes[market] = df.groupby(df["T"] // 1000 * 1000)["p"].last()
    al = pd.concat(closes, axis=1).sort_index().ffill()
    al = al[al.index >= max(s.index[0] for s in closes.values())]
    return 1e4 * (al["perp"] - al["spot"]) / al["spot"]


def test_basis_bps_fires_exactly_the_offline_crossings(tmp_path, trades):
    bps = offline_bps(trades)
    k = float(np.round(bps.median(), 2))
    prev, cur = bps.to_numpy()[:-1], bps.to_numpy()[1:]
    expected = bps.index.to_numpy()[1:][(prev >= k) & (cur < k)]
    assert len(expected) >= 3

    universe = Universe.parse([SPOT, PERP])
    store = SqliteTradeStore(tmp_path / "b.db", flush_interval_s=0.05).start()
    engine = MarketEngine(list(universe.names))
    ing = Ingestor(list(universe.names), store, engine, ring_capacity=50_000, write=False,
                   universe=universe)
    alerts = AlertService(engine, ing, tmp_path / "b.db", rules_poll_s=1e9)
    rule = alerts.create({"metric": "basis_bps", "a": PERP, "b": SPOT, "timeframe": "1s",
                          "op": "crosses_below", "threshold": k})
    events, clock = [], None
    for t in trades + [None]:
        stop = (t.time_ms if t is not None else clock + 10_000)
        if clock is None:
            clock = stop - stop % 100
        while clock + 100 <= stop:
            clock += 100
            engine.on_clock(clock - ing.bar_close_delay_ms)
            events += alerts.evaluate(clock)
        if t is not None:
            ing.on_trade(t)
    got = [e.data_ts for e in events]
    np.testing.assert_array_equal(got, expected)
    for e in events:
        assert e.value == pytest.approx(bps.loc[e.data_ts], rel=1e-12)
        assert e.value < k
    assert alerts.rule_json(rule["id"])["status"]["error"] is None
    alerts.stop()
    store.close()


def test_basis_rule_legs_named_by_market():
    base = {"metric": "basis_bps", "timeframe": "1s", "op": "gt", "threshold": 1.0}
    names = {PERP, SPOT, "ETHUSDT"}
    rule = parse_rule({**base, "a": "Perp:btcusdt", "b": SPOT}, symbols=names)
    assert (rule.a, rule.b) == (PERP, SPOT)
    with pytest.raises(RuleError) as exc:
        parse_rule({**base, "a": SPOT, "b": PERP}, symbols=names)
    assert set(exc.value.fields) == {"a", "b"}
    with pytest.raises(RuleError) as exc:  # a bare symbol on two markets: the choices
        parse_rule({**base, "a": "BTCUSDT", "b": SPOT}, symbols=names)
    assert "perp:BTCUSDT, spot:BTCUSDT" in exc.value.fields["a"]
    # a bare symbol on one market is that instrument
    assert parse_rule({**base, "metric": "zscore", "a": "ethusdt", "b": PERP},
                      symbols=names).a == "ETHUSDT"
