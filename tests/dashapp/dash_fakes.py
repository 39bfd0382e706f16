"""A small in-memory market for the dashboard tests: a real MarketEngine holding
synthetic cointegrated 1 s bars, real TickRings, and a services object shaped like
``ingest.runtime.Runtime`` (engine, ingestor.rings/rate/exchange_now_ms, health())."""

from __future__ import annotations

import numpy as np

from analytics.bars import Bars
from analytics.engine import MarketEngine
from ingest.ring import TickRing

T0 = 1_723_161_600_000  # 2024-08-09 00:00:00 UTC (a 5-minute boundary)
P0 = {"BTCUSDT": 61_000.0, "ETHUSDT": 2_680.0, "SOLUSDT": 152.0}


def synthetic_bars(n: int, symbols=("BTCUSDT", "ETHUSDT"), seed: int = 7) -> dict[str, Bars]:
    """``n`` 1 s bars per symbol: log prices load on a common random walk plus a
    mean-reverting residual (cointegrated legs)."""
    rng = np.random.default_rng(seed)
    f = np.cumsum(rng.normal(0, 1.2e-4, n))
    out = {}
    for k, sym in enumerate(symbols):
        u = np.zeros(n)
        eps = rng.normal(0, 2e-4, n)
        for i in range(1, n):
            u[i] = 0.97 * u[i - 1] + eps[i]
        close = P0[sym] * np.exp((0.8 + 0.2 * k) * f + u)
        open_ = np.concatenate(([close[0]], close[:-1]))
        spread = np.abs(rng.normal(0, 1e-4, n)) * close
        trades = rng.integers(5, 40, n)
        volume = trades * 0.01 * (1 + k)
        ts = T0 + np.arange(n, dtype=np.int64) * 1000
        first = 1_000_000 * (k + 1) + np.concatenate(([0], np.cumsum(trades)[:-1]))
        out[sym] = Bars.from_columns(
            {
                "ts": ts,
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": volume,
                "quote_volume": volume * close,
                "trades": trades,
                "buy_volume": volume / 2,
                "first_id": first,
                "last_id": first + trades - 1,
            },
            tf_ms=1000,
        )
    return out


class FakeIngestor:
    def __init__(self, symbols, now_ms: int) -> None:
        self.rings = {s: TickRing(10_000) for s in symbols}
        self.now_ms = now_ms
        self.next_id = 10**9

    def rate(self, symbol: str) -> float:
        return 17.5

    def exchange_now_ms(self) -> int:
        return self.now_ms


class FakeAlerts:
    def __init__(self) -> None:
        self.lines: list[tuple[str, float]] = []

    def active_thresholds(self, a, b, tf_ms, window, regression, prices):
        return list(self.lines)


class FakeServices:
    """What pages read from ``get_services()``."""

    def __init__(self, n_bars: int = 1_200, symbols=("BTCUSDT", "ETHUSDT")) -> None:
        self.engine = MarketEngine(list(symbols))
        bars = synthetic_bars(n_bars, symbols)
        for sym, b in bars.items():
            self.engine.load_bars(sym, b)
        self.now_ms = int(T0 + n_bars * 1000)
        self.ingestor = FakeIngestor(symbols, self.now_ms)
        for sym, b in bars.items():  # the last trade of the history, ring only
            self.ingestor.rings[sym].append(self.now_ms - 1, 1, float(b.close[-1]), 0.01, False)
        self.alerts = FakeAlerts()

    def tick(self, symbol: str, price: float, time_ms: int) -> None:
        """One trade: into the ring (live widgets) and the engine (bars)."""
        ing = self.ingestor
        ing.next_id += 1
        ing.rings[symbol].append(time_ms, ing.next_id, price, 0.01, False)
        self.engine.on_trade(symbol, time_ms, ing.next_id, price, 0.01, False)
        ing.now_ms = max(ing.now_ms, time_ms)

    def advance(self, seconds: int, drift: float = 1e-4) -> None:
        """Trade every symbol once per second for ``seconds`` s and close the bars."""
        for _ in range(seconds):
            self.now_ms += 1000
            for sym, ring in self.ingestor.rings.items():
                self.tick(sym, ring.last().price * (1 + drift), self.now_ms)
        self.engine.on_clock(self.now_ms + 1000)

    def feed_health(self) -> dict:
        return self.health()["feed"]

    def health(self) -> dict:
        return {
            "feed": {
                "connected": True,
                "msgs_per_s": 35.0,
                "lag_ms": 12,
                "reconnects": 0,
                "gaps": 0,
                "last_message_ms": self.now_ms,
                "url": "ws://test",
                "messages": 100,
                "bad_frames": 0,
                "error": None,
            },
            "symbols": {},
        }
