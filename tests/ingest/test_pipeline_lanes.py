"""The bar clock over several connections of ONE market (lanes, ingest/feeds/pool.py):
each connection is in order only on its own, so a busy connection must not close a
bucket a quieter connection of the same market is still delivering."""

from __future__ import annotations

from analytics.engine import MarketEngine
from analytics.instruments import Universe
from ingest.models import Trade
from ingest.pipeline import Ingestor


class _Store:  # no writes; names as a store with the universe would give
    def name(self, inst):
        return inst.symbol


def _trade(symbol: str, tid: int, t_ms: int, price: float) -> Trade:
    return Trade(symbol, tid, t_ms, price, 1.0, False, t_ms, "perp", "binance")


def test_bars_close_at_the_slowest_connection_of_a_market() -> None:
    universe = Universe.parse(["BTCUSDT", "ETHUSDT"], "perp")
    engine = MarketEngine(list(universe.names))
    ing = Ingestor(list(universe.names), _Store(), engine, write=False, universe=universe)
    fast, slow = ing.lane_sink("perp#0"), ing.lane_sink("perp#1")
    ing.use_quiet_probes({"perp#0": lambda: False, "perp#1": lambda: True})
    t0 = 1_723_161_600_000
    for k in range(50):
        fast(_trade("BTCUSDT", 100 + k, t0 + 200 * k, 60.0))  # 0 .. 9.8 s
    for k in range(4):
        slow(_trade("ETHUSDT", 500 + k, t0 + 200 * k, 3.0))  # 0 .. 0.6 s
    # the close clock is the slow connection's: D_slow - delay, not 9.8 s
    assert ing.close_clock_ms() == t0 + 600 - ing.bar_close_delay_ms
    assert ing.clock_tick(0.1) == []  # ETHUSDT's bucket t0 stays open
    slow(_trade("ETHUSDT", 504, t0 + 950, 3.5))  # still bucket t0: not late
    assert ing.late_trades == {} and engine.late_ticks("ETHUSDT") == 0
    slow(_trade("ETHUSDT", 505, t0 + 1_400, 3.6))
    bar = engine.bars("ETHUSDT", 1_000)
    assert bar.ts.tolist() == [t0] and bar.trades.tolist() == [5]
    assert bar.close.tolist() == [3.5]
    # without lanes (one connection) the one market clock would have closed 9 s
    single = Ingestor(list(universe.names), _Store(), MarketEngine(list(universe.names)),
                      write=False, universe=universe)
    for k in range(50):
        single.on_trade(_trade("BTCUSDT", 100 + k, t0 + 200 * k, 60.0))
    assert single.close_clock_ms() == t0 + 9_800 - single.bar_close_delay_ms
