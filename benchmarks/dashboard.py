"""Dashboard benchmark: server time and bytes per 500 ms refresh, bar-close redraw time.

``python -m benchmarks.dashboard [--refreshes 120] [--quick]``

Data: a **synthetic** day (86,400 one-second bars) of 5 cointegrated symbols from
:mod:`benchmarks._data` (ticks at 10-40 trades/s, aggregated to 1 s bars with
:func:`analytics.bars.bars_from_ticks` and loaded into a real
:class:`~analytics.engine.MarketEngine`, which resamples 1 m / 5 m), followed by a live
segment at 40 trades/s per symbol that is fed, 500 ms of exchange time per refresh, in
100 ms steps, through a real :class:`~ingest.pipeline.Ingestor` (rings + engine; no
store writes) with the bar clock closing bars 250 ms late, as ``ingest.pipeline`` does.

Measured through the real Dash app (``dashapp.create_app`` with every page) and Flask's
test client on ``POST /_dash-update-component``: request bodies are built from
``/_dash-dependencies`` exactly as the browser's renderer builds them (outputs resolved
for MATCH / ALL, inputs, state, ``changedPropIds``), and each response's state (the
``DRAWN`` / ``STATE`` stores) is fed into the next request, as a browser tab does.

* **markets page**: ``refresh_markets`` (the grid's changed cells, sparklines, feed strip) every 500 ms;
* **pair page** (BTCUSDT/ETHUSDT, 1 s, w=60, OLS): the panel's ``refresh`` every
  500 ms, split into refreshes without a bar close (live z only) and with one (bars
  appended by extendData, KPIs, signal);
* **bar-close redraw**: a whole redraw of the pair panel (what a zoom or a new selection
  triggers; on bar close the charts are extended, not redrawn): overlay and candles
  modes, over the day.

Server time = wall time of the POST (Werkzeug test client, in process), bytes = the
response body. Median and p95 over the refreshes. Targets: <= 10 ms and <= 10 kB per
refresh; redraw <= 200 ms. Output: a table, then one JSON object as the LAST line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from benchmarks._data import DAY_START_MS, SPECS, Market
from ingest.models import Trade
from ingest.pipeline import Ingestor

DAY_S = 86_400
REFRESH_MS = 500
CLOCK_MS = 100
CLOSE_DELAY_MS = 250
TARGET_MS, TARGET_BYTES, TARGET_REDRAW_MS = 10.0, 10_000, 200.0


class NoAlerts:
    """No alert rules (the pair page asks for the thresholds to draw)."""

    def rules(self) -> list:
        return []

    def active_thresholds(self, a, b, tf_ms, window, regression, prices, source="trade") -> list:
        return []


class BenchServices:
    """The runtime's reader surface the pages' facade reads
    (``dashapp.facade.LiveMarketData`` wraps it, as it wraps the ``Runtime``)."""

    def __init__(self, engine: MarketEngine, ingestor: Ingestor) -> None:
        self.engine, self.ingestor = engine, ingestor
        self.alerts = NoAlerts()
        self.market = "spot"

    def feed_health(self) -> dict:
        return self.health()["feed"]

    def health(self) -> dict:
        now = self.ingestor.exchange_now_ms()
        return {
            "feed": {
                "url": "bench",
                "connected": True,
                "messages": 0,
                "msgs_per_s": 200.0,
                "bad_frames": 0,
                "reconnects": 0,
                "gaps": 0,
                "last_message_ms": int(time.time() * 1000),
                "lag_ms": 5,
                "error": None,
                "now": now,
            },
            "symbols": {},
        }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_market(seconds: int, live_s: int):
    symbols = [s.symbol for s in SPECS[:5]]
    market = Market(seconds + live_s, n_symbols=5, live_from=seconds, live_rate=40.0)
    engine = MarketEngine(symbols)
    ingestor = Ingestor(symbols, None, engine, ring_capacity=2**16, write=False)
    live = {}
    end_ms = DAY_START_MS + seconds * 1000
    for sym in symbols:
        t = market.ticks(sym)
        day = t.between(DAY_START_MS, end_ms)
        engine.load_bars(
            sym,
            bars_from_ticks(
                day.time_ms, day.trade_id, day.price, day.qty, day.buyer_is_maker, tf_ms=1000
            ),
        )
        ingestor.rings[sym].extend(
            day.time_ms[-5000:],
            day.trade_id[-5000:],
            day.price[-5000:],
            day.qty[-5000:],
            day.buyer_is_maker[-5000:],
        )
        live[sym] = t.between(end_ms, end_ms + live_s * 1000)
        log(f"  {sym}: {len(day):,} ticks -> {len(engine.bars(sym, 1000)):,} 1 s bars")
    return symbols, engine, ingestor, live, end_ms


class Feeder:
    """Replays the live ticks through the Ingestor, 100 ms of exchange time per step."""

    def __init__(self, engine, ingestor, live, start_ms) -> None:
        self.engine, self.ingestor, self.live, self.now = engine, ingestor, live, start_ms
        self.pos = dict.fromkeys(live, 0)

    def advance(self, ms: int) -> None:
        for _ in range(ms // CLOCK_MS):
            self.now += CLOCK_MS
            for sym, t in self.live.items():
                j = int(np.searchsorted(t.time_ms, self.now, side="left"))
                for i in range(self.pos[sym], j):
                    self.ingestor.on_trade(
                        Trade(
                            sym,
                            int(t.trade_id[i]),
                            int(t.time_ms[i]),
                            float(t.price[i]),
                            float(t.qty[i]),
                            bool(t.buyer_is_maker[i]),
                            int(t.time_ms[i]),
                        )
                    )
                self.pos[sym] = j
            self.engine.on_clock(self.now - CLOSE_DELAY_MS)


# ----------------------------------------------------------------- Dash requests
class DashClient:
    """Builds ``/_dash-update-component`` bodies from ``/_dash-dependencies``."""

    def __init__(self, app) -> None:
        self.client = app.server.test_client()
        r = self.client.get("/_dash-dependencies")
        self.deps = r.get_json()

    def dep(self, needle: str) -> dict:
        hits = [d for d in self.deps if needle in d["output"]]
        if len(hits) != 1:
            raise LookupError(f"{len(hits)} callbacks output {needle!r}")
        return hits[0]

    @staticmethod
    def _split_output(output: str) -> list[tuple[str, str]]:
        parts = output[2:-2].split("...") if output.startswith("..") else [output]
        return [tuple(p.rsplit(".", 1)) for p in parts]

    @staticmethod
    def _resolve(id_str: str, match, all_ids: dict):
        if not id_str.startswith("{"):
            return id_str
        spec = json.loads(id_str)
        if any(v == ["ALL"] for v in spec.values()):
            return [dict(i) for i in all_ids[spec["type"]]]
        return {k: (match if v == ["MATCH"] else v) for k, v in spec.items()}

    def call(
        self, needle: str, values: dict, changed: str, *, match=None, all_ids: dict | None = None
    ) -> tuple[dict, float, int]:
        """POST one callback; ``values[(type_or_id, prop)]`` give inputs and state."""
        d = self.dep(needle)
        all_ids = all_ids or {}

        def key(id_str: str) -> str:
            return json.loads(id_str)["type"] if id_str.startswith("{") else id_str

        outputs = []
        for id_str, prop in self._split_output(d["output"]):
            rid = self._resolve(id_str, match, all_ids)
            outputs.append(
                [{"id": i, "property": prop} for i in rid]
                if isinstance(rid, list)
                else {"id": rid, "property": prop}
            )

        def items(group):
            out = []
            for x in d[group]:
                rid = self._resolve(x["id"], match, all_ids)
                v = values.get((key(x["id"]), x["property"]))
                if isinstance(rid, list):
                    out.append([{"id": i, "property": x["property"], "value": v} for i in rid])
                else:
                    out.append({"id": rid, "property": x["property"], "value": v})
            return out

        ins, state = items("inputs"), items("state")
        changed_ids = []
        for x in ins:
            if (
                isinstance(x, dict)
                and key(json.dumps(x["id"]) if isinstance(x["id"], dict) else x["id"]) == changed
            ):
                ident = x["id"]
                ident = (
                    json.dumps(ident, separators=(",", ":"), sort_keys=True)
                    if isinstance(ident, dict)
                    else ident
                )
                changed_ids.append(f"{ident}.{x['property']}")
        body = {
            "output": d["output"],
            "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": ins,
            "state": state,
            "changedPropIds": changed_ids,
        }
        t0 = time.perf_counter()
        r = self.client.post("/_dash-update-component", json=body)
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code == 204:
            return {}, ms, 0
        if r.status_code != 200:
            raise RuntimeError(f"{needle}: HTTP {r.status_code}: {r.get_data(as_text=True)[:500]}")
        data = r.get_data()
        return json.loads(data).get("response", {}), ms, len(data)


def prop(resp: dict, type_: str, name: str):
    for k, v in resp.items():
        if (f'"type":"{type_}"' in k or k == type_) and name in v:
            return v[name]
    return None


def stats(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "median": None, "p95": None, "max": None}
    s = sorted(xs)
    return {
        "n": len(s),
        "median": round(statistics.median(s), 3),
        "p95": round(s[min(len(s) - 1, int(0.95 * len(s)))], 3),
        "max": round(s[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard")
    p.add_argument("--refreshes", type=int, default=120)
    p.add_argument("--quick", action="store_true", help="2 h of bars instead of a day")
    args = p.parse_args(argv)
    seconds = 7_200 if args.quick else DAY_S
    live_s = args.refreshes + 30  # 500 ms per refresh, two pages, plus warm-up
    log(f"building {seconds:,} s of 1 s bars x 5 symbols ...")
    symbols, engine, ingestor, live, end_ms = build_market(seconds, live_s)
    feeder = Feeder(engine, ingestor, live, end_ms)
    feeder.advance(1000)

    from dashapp import create_app
    from dashapp.facade import LiveMarketData
    from dashapp.ids import Markets, Pair

    app = create_app(LiveMarketData(BenchServices(engine, ingestor)),
                     cache_dir=tempfile.mkdtemp())
    dash = DashClient(app)
    syms = sorted(symbols)
    from dashapp.components.symbol_card import FEED_BADGES

    markets_all = {Markets.feed("")["type"]: [Markets.feed(b) for b in FEED_BADGES]}
    pair_all = {
        Pair.COLLECTING: [
            {"chart": c, "index": 0, "type": Pair.COLLECTING}
            for c in ("price", "z", "spread", "corr", "beta", "adf")
        ]
    }

    # ---- markets
    log("markets page ...")
    mstate, m_ms, m_bytes = None, [], []
    resp, first_ms, first_bytes = dash.call(
        Markets.FEED_DETAIL,
        {(Markets.TIMEFRAME, "value"): "1s", (Markets.TICK_INTERVAL, "n_intervals"): None},
        Markets.TICK_INTERVAL,
        all_ids=markets_all,
    )
    mstate = prop(resp, Markets.STATE, "data")
    # the browser's side of the grid (assets/markets_board.js): it holds the board's
    # version and the sparklines of the rows on screen (all five) up to their last bar
    sparks: dict = {}

    def client_of(board: dict | None) -> dict | None:
        if not board:
            return None
        sparks.update({n: s[0] for n, s in board.get("spark", {}).items()})
        return {"v": board["v"], "tf": board["tf"], "vis": {s: sparks.get(s) for s in syms}}

    mclient = client_of(prop(resp, Markets.BOARD, "data"))
    for n in range(args.refreshes):
        feeder.advance(REFRESH_MS)
        resp, ms, nbytes = dash.call(
            Markets.FEED_DETAIL,
            {
                (Markets.TIMEFRAME, "value"): "1s",
                (Markets.STATE, "data"): mstate,
                (Markets.CLIENT, "data"): mclient,
                (Markets.TICK_INTERVAL, "n_intervals"): n + 1,
            },
            Markets.TICK_INTERVAL,
            all_ids=markets_all,
        )
        mstate = prop(resp, Markets.STATE, "data") or mstate
        mclient = client_of(prop(resp, Markets.BOARD, "data")) or mclient
        m_ms.append(ms)
        m_bytes.append(nbytes)

    # ---- pair
    log("pair page ...")
    controls = {
        (Pair.A, "value"): "BTCUSDT",
        (Pair.B, "value"): "ETHUSDT",
        (Pair.TF, "value"): "1s",
        (Pair.WINDOW, "value"): 60,
        (Pair.REG, "value"): "ols",
        (Pair.PRICES, "value"): "raw",
        (Pair.PRICE_MODE, "value"): "overlay",
        (Pair.K, "value"): 2,
        (Pair.ENTRY, "value"): 2,
    }
    resp, select_ms, _ = dash.call(Pair.ERROR, controls, Pair.A, match=0)
    sel = prop(resp, Pair.SELECTION, "data")
    pair_needle = f'"type":"{Pair.DRAWN}"'

    def pair_refresh(sel_data, drawn, changed, n, view=None):
        vals = {
            (Pair.SELECTION, "data"): sel_data,
            (Pair.DRAWN, "data"): drawn,
            (Pair.VIEW, "data"): view,
            (Pair.TICK_INTERVAL, "n_intervals"): n,
        }
        return dash.call(pair_needle, vals, changed, match=0, all_ids=pair_all)

    resp, full_ms, full_bytes = pair_refresh(sel, None, Pair.SELECTION, None)
    drawn = prop(resp, Pair.DRAWN, "data")
    live_ms, live_b, close_ms, close_b = [], [], [], []
    for n in range(args.refreshes):
        feeder.advance(REFRESH_MS)
        resp, ms, nbytes = pair_refresh(sel, drawn, Pair.TICK_INTERVAL, n + 1)
        new = prop(resp, Pair.DRAWN, "data")
        bar_closed = new is not None and new.get("seq") != drawn.get("seq")
        (close_ms if bar_closed else live_ms).append(ms)
        (close_b if bar_closed else live_b).append(nbytes)
        drawn = new or drawn

    # ---- whole redraws (zoom / selection change), overlay and candles
    redraw = {}
    for mode in ("overlay", "candles"):
        s2 = {**sel, "mode": mode}
        times, sizes = [], []
        for _ in range(5):
            resp, ms, nbytes = pair_refresh(s2, drawn, Pair.SELECTION, None)
            times.append(ms)
            sizes.append(nbytes)
        redraw[mode] = {"ms": stats(times), "bytes": int(statistics.median(sizes))}
    t0 = time.perf_counter()
    engine.pair("SOLUSDT", "BNBUSDT", 1000, 60, "ols", "raw")
    build_ms = (time.perf_counter() - t0) * 1000

    res = {
        "bars_per_symbol": len(engine.bars("BTCUSDT", 1000)),
        "symbols": len(symbols),
        "markets_refresh_ms": stats(m_ms),
        "markets_refresh_bytes": stats(m_bytes),
        "markets_first_ms": round(first_ms, 2),
        "markets_first_bytes": first_bytes,
        "pair_live_refresh_ms": stats(live_ms),
        "pair_live_refresh_bytes": stats(live_b),
        "pair_barclose_refresh_ms": stats(close_ms),
        "pair_barclose_refresh_bytes": stats(close_b),
        "pair_redraw_overlay_ms": redraw["overlay"]["ms"],
        "pair_redraw_overlay_bytes": redraw["overlay"]["bytes"],
        "pair_redraw_candles_ms": redraw["candles"]["ms"],
        "pair_redraw_candles_bytes": redraw["candles"]["bytes"],
        "pair_first_full_ms": round(full_ms, 2),
        "pair_first_full_bytes": full_bytes,
        "pair_select_build_ms": round(select_ms, 2),
        "new_pair_build_ms": round(build_ms, 2),
        "targets": {
            "refresh_ms": TARGET_MS,
            "refresh_bytes": TARGET_BYTES,
            "redraw_ms": TARGET_REDRAW_MS,
        },
    }
    worst_ms = max(
        res["markets_refresh_ms"]["p95"],
        res["pair_live_refresh_ms"]["p95"],
        res["pair_barclose_refresh_ms"]["p95"] or 0,
    )
    worst_b = max(
        res["markets_refresh_bytes"]["p95"],
        res["pair_live_refresh_bytes"]["p95"],
        res["pair_barclose_refresh_bytes"]["p95"] or 0,
    )
    worst_redraw = max(redraw["overlay"]["ms"]["p95"], redraw["candles"]["ms"]["p95"])
    res["meets_targets"] = bool(
        worst_ms <= TARGET_MS and worst_b <= TARGET_BYTES and worst_redraw <= TARGET_REDRAW_MS
    )

    rows = [
        ("markets, every 500 ms", res["markets_refresh_ms"], res["markets_refresh_bytes"]),
        ("pair, 500 ms, no bar close", res["pair_live_refresh_ms"], res["pair_live_refresh_bytes"]),
        (
            "pair, 500 ms, bar closed",
            res["pair_barclose_refresh_ms"],
            res["pair_barclose_refresh_bytes"],
        ),
    ]
    print(
        f"Dashboard benchmark: {res['symbols']} symbols x {res['bars_per_symbol']:,} 1 s bars "
        f"in memory, {args.refreshes} refreshes per page (Flask test client)"
    )
    print(
        f"{'refresh':<30}{'n':>5}{'ms median':>11}{'ms p95':>9}{'bytes med':>11}{'bytes p95':>11}"
    )
    for name, t, b in rows:
        print(
            f"{name:<30}{t['n']:>5}{t['median']:>11.2f}{t['p95']:>9.2f}"
            f"{b['median']:>11,.0f}{b['p95']:>11,.0f}"
        )
    print(f"targets: <= {TARGET_MS:g} ms and <= {TARGET_BYTES:,} bytes per refresh")
    for mode in ("overlay", "candles"):
        r = redraw[mode]
        print(
            f"whole redraw of the pair panel ({mode}, a day, downsampled): "
            f"median {r['ms']['median']:.1f} ms, p95 {r['ms']['p95']:.1f} ms, "
            f"{r['bytes']:,} bytes (target <= {TARGET_REDRAW_MS:g} ms)"
        )
    print(
        f"first markets refresh {first_ms:.1f} ms / {first_bytes:,} bytes; selection "
        f"callback (day build) {select_ms:.1f} ms; another pair's first build {build_ms:.1f} ms"
    )
    print(f"meets targets: {res['meets_targets']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
