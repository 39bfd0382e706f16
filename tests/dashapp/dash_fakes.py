"""A small in-memory market for the dashboard tests: a real MarketEngine holding
synthetic cointegrated 1 s bars, real TickRings, and :class:`FakeServices`, a
:class:`dashapp.facade.MarketData` over them (``tests/dashapp/test_facade.py`` checks
that it implements every member with the facade's signature)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from analytics.bars import Bars
from analytics.engine import MarketEngine, PairKey
from analytics.instruments import Universe
from dashapp.facade import AlertsReadOnly, ChannelNotFound, DatasetError, RuleNotFound
from ingest.delivery.channels import channel_json, parse_channel
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
    """:class:`dashapp.facade.AlertsData` with no rules but the thresholds a test sets
    in ``lines`` (edits are refused as on a read-only DB)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, float]] = []
        #: channels are kept in memory, validated and masked as the live ones
        #: (``ingest.delivery.channels``); a test sets ``delivery_log`` (newest first)
        #: and ``test_outcome``
        self._channels: dict[int, object] = {}
        self._next_channel = 1
        self.delivery_log: list[dict] = []
        self.test_outcome = {"ok": True, "status": 200, "error": None, "latency_ms": 1.0}

    def rules(self) -> list:
        return []

    def rule(self, rule_id: int):
        raise RuleNotFound(rule_id)

    def rule_json(self, rule_id: int) -> dict:
        raise RuleNotFound(rule_id)

    def rules_json(self) -> list[dict]:
        return []

    def create(self, data) -> dict:
        raise AlertsReadOnly("fake alerts: read-only")

    def update(self, rule_id: int, data, *, partial: bool = False) -> dict:
        raise AlertsReadOnly("fake alerts: read-only")

    def delete(self, rule_id: int) -> dict:
        raise AlertsReadOnly("fake alerts: read-only")

    def restore(self, deleted: dict) -> dict:
        raise AlertsReadOnly("fake alerts: read-only")

    def events(
        self,
        *,
        since_ms: int | None = None,
        after_id: int | None = None,
        rule_id: int | None = None,
        limit: int = 1000,
    ) -> list:
        return []

    def last_event_id(self) -> int:
        return 0

    def active_thresholds(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> list[tuple[str, float]]:
        return list(self.lines)

    def channels(self) -> list[dict]:
        return [channel_json(c) for _, c in sorted(self._channels.items())]

    def channel(self, channel_id: int) -> dict:
        if channel_id not in self._channels:
            raise ChannelNotFound(channel_id)
        return channel_json(self._channels[channel_id])

    def _stored(self, cid: int, spec, created_ms: int):
        from types import SimpleNamespace

        return SimpleNamespace(id=cid, kind=spec.kind, name=spec.name, url=spec.url,
                               secret=spec.secret, created_ms=created_ms,
                               updated_ms=created_ms)

    def add_channel(self, data) -> dict:
        spec = parse_channel(data)
        cid, self._next_channel = self._next_channel, self._next_channel + 1
        self._channels[cid] = self._stored(cid, spec, T0)
        return self.channel(cid)

    def update_channel(self, channel_id: int, data) -> dict:
        old = self._channels.get(channel_id)
        if old is None:
            raise ChannelNotFound(channel_id)
        spec = parse_channel(data, old=old)
        self._channels[channel_id] = self._stored(channel_id, spec, old.created_ms)
        return self.channel(channel_id)

    def delete_channel(self, channel_id: int) -> dict:
        if self._channels.pop(channel_id, None) is None:
            raise ChannelNotFound(channel_id)
        return {"id": channel_id, "deleted": True}

    def test_channel(self, channel_id: int) -> dict:
        self.channel(channel_id)
        return dict(self.test_outcome)

    def deliveries(
        self,
        *,
        rule_id: int | None = None,
        channel_id: int | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[dict]:
        rows = [d for d in self.delivery_log
                if (rule_id is None or d["rule_id"] == rule_id)
                and (channel_id is None or d["channel_id"] == channel_id)
                and (status is None or d["status"] == status)]
        return rows[:limit]


class FakeDatasets:
    """:class:`dashapp.facade.DatasetsData` holding no dataset (uploads refused)."""

    def list(self) -> list:
        return []

    def get(self, name: str):
        return None

    def bars(self, name: str, symbol: str) -> Bars:
        raise KeyError(name)

    def store(self, name: str, upload):
        raise DatasetError(["fake datasets: uploads are not stored here"])

    def remove(self, name: str) -> bool:
        return False


class FakeServices:
    """A :class:`dashapp.facade.MarketData` over a real engine and rings (no store:
    no stored trades)."""

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
        self.datasets = FakeDatasets()
        self.quotes: dict = {}  # name -> BookTicker (set_quote)

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

    # ------------------------------------------------------------- MarketData
    def names(self) -> tuple[str, ...]:
        return tuple(self.ingestor.rings)

    def resolve(self, text: str) -> str:
        universe = Universe.parse(self.names())
        return universe.name(universe.resolve(text))

    def instrument(self, name: str):
        return Universe.parse(self.names()).by_name(name)

    def timeframes(self) -> tuple[int, ...]:
        return tuple(self.engine.timeframes_ms)

    def bars(self, name: str, tf_ms: int) -> Bars:
        return self.engine.bars(name, tf_ms)

    def bars_of(self, names: Iterable[str], tf_ms: int) -> dict[str, Bars]:
        return {s: self.engine.bars(s, tf_ms) for s in names}

    def recent_bars_of(self, names: Iterable[str], tf_ms: int, n: int) -> dict[str, Bars]:
        return {s: self.engine.bars_tail(s, tf_ms, n) for s in names}

    def final_ms(self, tf_ms: int) -> int | None:
        return self.engine.final_ms(tf_ms)

    def open_bar(self, name: str, tf_ms: int):
        return self.engine.open_bar(name, tf_ms)

    def book_bars(self, name: str, tf_ms: int):
        return self.engine.book_bars(name, tf_ms)

    def breaks(self, name: str) -> np.ndarray:
        return self.engine.breaks(name)

    def pair(self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
             source: str = "trade"):
        return self.engine.pair(a, b, tf_ms, window, regression, prices, source)

    def tracked_pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ):
        return self.engine.tracked_snapshot(
            PairKey(a, b, tf_ms, window, regression, prices, source))

    def tracked_pairs(self) -> list:
        return self.engine.tracked_pairs()

    def last_tick(self, name: str):
        return self.ingestor.rings[name].last()

    def quote(self, name: str):
        """The latest quote a test set with :meth:`set_quote` (None before one)."""
        return self.quotes.get(name)

    def set_quote(self, name: str, bid: float, ask: float, bid_qty: float = 1.0,
                  ask_qty: float = 1.0, time_ms: int | None = None) -> None:
        """A best bid/ask update of ``name``: the live widgets' quote (the engine's
        book bars are fed by the tests that need them)."""
        from ingest.models import BookTicker

        t = self.now_ms if time_ms is None else int(time_ms)
        self.quotes[name] = BookTicker(name.rsplit(":", 1)[-1], t, bid, bid_qty, ask, ask_qty,
                                       t, t)

    def ticks_since(self, name: str, seq: int):
        return self.ingestor.rings[name].since(seq)

    def ticks_window(self, name: str, start_ms: int):
        return self.ingestor.rings[name].window(start_ms)

    def trade_rate(self, name: str) -> float:
        return self.ingestor.rate(name)

    def exchange_now_ms(self) -> int | None:
        return self.ingestor.exchange_now_ms()

    def stored_trades(self, name: str, start_ms: int, end_ms: int, limit: int):
        raise KeyError(f"{name}: the fake market stores no trades")

    def stored_trade_span(self, name: str) -> tuple[int, int] | None:
        return None

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
