"""Alert latency: from the crossing tick's arrival to the stored event, 50 rules active.

``python -m benchmarks.alerts [--speed 4] [--warmup-s 300]``

The real pipeline, minus the socket: ``SqliteTradeStore`` (writer thread) + ``MarketEngine`` +
``Ingestor`` (its real 100 ms bar-clock thread) + ``AlertService`` (its real thread,
hooked into ``clock_listeners``), on one SQLite file. A driver thread plays the real
tape of ``sample_data/`` (rebased to now) into ``Ingestor.on_trade``: the first
``warmup`` seconds as fast as possible (so the 60-bar z-scores are defined), the rest
at ``speed`` x the recorded pace. The driver notes the wall time each trade is handed
over (the ring append is the first thing ``on_trade`` does).

50 rules: 20 on prices (levels spread over the tape's range, both directions), 10 on
the live z-score, 16 on bar metrics (z, spread, corr, beta on 1 s pairs; volume,
change %), 2 on trades/s and 2 ADF p-values.

Figures (each event of the paced part):

* tick metrics (price, live z): ``fired_at`` (stored, wall ms) minus the arrival of the
  first trade of the crossing millisecond (``data_ts``);
* bar metrics: ``fired_at`` minus the moment the bar ended (``ts + tf`` mapped to
  wall time by the pacing); this includes the engine's 250 ms close delay for late
  trades, by design;
* the duration of one evaluation pass with 50 rules.

Target: p99 tick -> stored <= 500 ms. Nothing is asserted; the last line is JSON.

Delivery (#20): the run is made twice, without channels and with every rule notifying
a real local webhook receiver that takes ``--slow-receiver-s`` (5 s) per request,
through the real outbox worker (own thread, own SQLite connection, 4 requests in
flight at most). Deliveries never run on the evaluation path, so the second run's
tick -> stored p99 must equal the first's within noise (``slow_receiver_p99_delta_ms``).
``--slow-receiver-s 0`` skips the second run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from analytics.engine import MarketEngine
from ingest.alert_service import AlertService
from ingest.delivery.receiver import Receiver
from ingest.delivery.worker import DeliverySettings, DeliveryWorker
from ingest.feeds.binance import parse_event
from ingest.models import Trade
from ingest.pipeline import Ingestor
from ingest.replay.tapes import default_sample_files, load_tape
from ingest.store.sqlite_alerts import SqliteAlertStore
from ingest.store.sqlite_trades import SqliteTradeStore

A, B = "BTCUSDT", "ETHUSDT"
TARGET_P99_MS = 500.0


def rules_for(prices: dict[str, np.ndarray]) -> list[dict]:
    rules = []
    for sym in (A, B):
        for q in np.linspace(0.1, 0.9, 5):
            level = float(np.quantile(prices[sym], q))
            for op in ("crosses_above", "crosses_below"):
                rules.append({"metric": "price", "symbol": sym, "op": op, "threshold": level})
    pair = {"a": A, "b": B, "timeframe": "1s", "regression": "ols", "prices": "raw"}
    for window, k in ((30, 1.0), (30, -1.0), (60, 1.5), (60, -1.5), (20, 0.5)):
        for op in ("crosses_above", "crosses_below"):
            rules.append({**pair, "metric": "live_zscore", "window": window, "op": op,
                          "threshold": k})
    for window in (20, 30, 60):
        for k, op in ((1.0, "crosses_above"), (-1.0, "crosses_below")):
            rules.append({**pair, "metric": "zscore", "window": window, "op": op,
                          "threshold": k})
    for metric, k, op in (("corr", 0.5, "crosses_below"), ("corr", 0.7, "crosses_above"),
                          ("beta", 0.0, "gt"), ("beta", 5.0, "lt"),
                          ("spread", 0.0, "crosses_above"), ("spread", 0.0, "crosses_below")):
        rules.append({**pair, "metric": metric, "window": 30, "op": op, "threshold": k})
    for sym in (A, B):
        rules.append({"metric": "volume", "symbol": sym, "timeframe": "1s", "op": "gt",
                      "threshold": 2.0 if sym == A else 30.0})
        rules.append({"metric": "change_pct", "symbol": sym, "timeframe": "1s",
                      "window": 30, "op": "crosses_above", "threshold": 0.03})
        rules.append({"metric": "trades_per_s", "symbol": sym, "op": "ge", "threshold": 150})
    for window in (30, 60):
        rules.append({**pair, "metric": "adf_pvalue", "window": window, "op": "lt",
                      "threshold": 0.05})
    return rules


def pct(values, q) -> float | None:
    return None if len(values) == 0 else round(float(np.percentile(values, q)), 1)


def run(speed: float, warmup_s: float, tmp: Path, receiver_delay_s: float | None = None
        ) -> dict:
    tape = load_tape(default_sample_files("spot"))
    trades = [parse_event(ev.data) for ev in tape]
    t0_wall = time.time() * 1000 + 500
    shift = int(t0_wall) - trades[0].time_ms
    trades = [Trade(t.symbol, t.trade_id, t.time_ms + shift, t.price, t.qty,
                    t.buyer_is_maker, t.event_ms + shift) for t in trades]
    prices = {s: np.array([t.price for t in trades if t.symbol == s]) for s in (A, B)}
    db = tmp / "alerts-bench.db"
    store = SqliteTradeStore(db).start()
    engine = MarketEngine([A, B])
    ing = Ingestor([A, B], store, engine)
    svc = AlertService(engine, ing, db)
    specs = rules_for(prices)
    receiver = worker = None
    if receiver_delay_s is not None:  # every rule notifies a receiver this slow
        receiver = Receiver(behaviour=lambda i: (200, {}, receiver_delay_s)).start()
        ch = svc.add_channel({"kind": "webhook", "name": "slow", "url": receiver.url})
        specs = [{**spec, "channels": [ch["id"]]} for spec in specs]
        worker = DeliveryWorker(lambda: SqliteAlertStore(db),
                                DeliverySettings(timeout_s=receiver_delay_s + 5))
        svc.delivery = worker
        worker.start()
    for spec in specs:
        svc.create(spec)
    kinds = {r.id: r.kind if r.metric not in ("price", "live_zscore") else "tick"
             for r in svc.rules()}
    eval_ms: list[float] = []
    evaluate = svc.evaluate

    def timed(now_ms):
        t = time.perf_counter()
        out = evaluate(now_ms)
        eval_ms.append((time.perf_counter() - t) * 1000)
        return out

    svc.evaluate = timed
    ing.start_clock()
    svc.start()
    arrival: dict[tuple[str, int], float] = {}
    warm_end = trades[0].time_ms + int(warmup_s * 1000)
    first_paced = next(i for i, t in enumerate(trades) if t.time_ms >= warm_end)
    for t in trades[:first_paced]:
        ing.on_trade(t)
    # The paced part starts now: exchange time T maps to wall w0 + (T - T_start) / speed.
    w0 = time.time() * 1000
    t_start = trades[first_paced].time_ms

    def drive():
        for t in trades[first_paced:]:
            due = w0 + (t.time_ms - t_start) / speed
            delay = due / 1000 - time.time()
            if delay > 0:
                time.sleep(delay)
            arrival.setdefault((t.symbol, t.time_ms), time.time() * 1000)
            ing.on_trade(t)

    driver = threading.Thread(target=drive, name="bench-driver")
    driver.start()
    paced_s = (trades[-1].time_ms - t_start) / speed / 1000
    print(f"alerts benchmark: {len(specs)} rules; warm-up {first_paced:,} trades, then "
          f"{len(trades) - first_paced:,} trades over {paced_s:.0f} s at {speed:g}x", flush=True)
    driver.join()
    time.sleep(2.0)
    errors = {r["id"]: r["status"]["error"] for r in svc.rules_json() if r["status"]["error"]}
    delivery = {}
    if worker is not None:
        log = svc.store.deliveries(limit=10_000)
        delivery = {
            "receiver_delay_s": receiver_delay_s,
            "deliveries": len(log),
            "delivered": sum(d.status == "delivered" for d in log),
            "requests_received": len(receiver.records),
        }
        worker.stop()
        receiver.stop()
    svc.stop()
    ing.stop()
    store.close()
    tick_lat, bar_lat = [], []
    n_events = 0
    store2 = svc.store.__class__(db)
    for ev in store2.events(limit=10_000):
        if ev.data_ts < t_start:
            continue
        n_events += 1
        if kinds[ev.rule_id] == "tick":
            arr = [arrival[k] for k in ((A, ev.data_ts), (B, ev.data_ts)) if k in arrival]
            if arr:
                tick_lat.append(ev.fired_ms - min(arr))
        else:
            rule = next(r for r in svc.rules() if r.id == ev.rule_id)
            if rule.metric == "trades_per_s":
                continue  # data_ts is the clock's time, not a tick or a bar
            end_wall = w0 + (ev.data_ts + rule.tf_ms - t_start) / speed
            bar_lat.append(ev.fired_ms - end_wall)
    store2.close()
    return {
        "rules": len(specs),
        "speed": speed,
        "paced_trades": len(trades) - first_paced,
        "events": n_events,
        "tick_events": len(tick_lat),
        "tick_to_stored_p50_ms": pct(tick_lat, 50),
        "tick_to_stored_p99_ms": pct(tick_lat, 99),
        "tick_to_stored_max_ms": pct(tick_lat, 100),
        "bar_events": len(bar_lat),
        "bar_end_to_stored_p50_ms": pct(bar_lat, 50),
        "bar_end_to_stored_p99_ms": pct(bar_lat, 99),
        "evaluations": len(eval_ms),
        "evaluation_p50_ms": pct(eval_ms, 50),
        "evaluation_p99_ms": pct(eval_ms, 99),
        "rules_with_errors": errors,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(tick_lat) and pct(tick_lat, 99) <= TARGET_P99_MS,
        **delivery,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.alerts", description=__doc__.split("\n")[0]
    )
    p.add_argument("--speed", type=float, default=4.0, help="pace of the timed part (x recorded)")
    p.add_argument("--warmup-s", type=float, default=300.0, help="tape seconds fed at once first")
    p.add_argument("--slow-receiver-s", type=float, default=5.0,
                   help="second run: every rule notifies a webhook this slow (0: skip)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.speed, args.warmup_s, Path(tmp))
    if args.slow_receiver_s > 0:
        with tempfile.TemporaryDirectory() as tmp:
            slow = run(args.speed, args.warmup_s, Path(tmp), args.slow_receiver_s)
        res["slow_receiver"] = {k: slow[k] for k in (
            "events", "tick_events", "tick_to_stored_p50_ms", "tick_to_stored_p99_ms",
            "tick_to_stored_max_ms", "bar_end_to_stored_p99_ms", "evaluation_p99_ms",
            "receiver_delay_s", "deliveries", "delivered", "requests_received")}
        a, b = res["tick_to_stored_p99_ms"], slow["tick_to_stored_p99_ms"]
        res["slow_receiver_p99_delta_ms"] = None if a is None or b is None else round(b - a, 1)
    rows = [
        ("rules active", res["rules"], ""),
        ("events in the timed part", res["events"], ""),
        ("tick -> stored p50 (ms)", res["tick_to_stored_p50_ms"], f"n={res['tick_events']}"),
        ("tick -> stored p99 (ms)", res["tick_to_stored_p99_ms"],
         f"target <= {TARGET_P99_MS:g}"),
        ("tick -> stored max (ms)", res["tick_to_stored_max_ms"], ""),
        ("bar end -> stored p50 (ms)", res["bar_end_to_stored_p50_ms"],
         f"n={res['bar_events']}; closed by the next trade or the clock (+250 ms)"),
        ("bar end -> stored p99 (ms)", res["bar_end_to_stored_p99_ms"], ""),
        (f"one evaluation, {res['rules']} rules p50 (ms)", res["evaluation_p50_ms"],
         f"{res['evaluations']} passes"),
        (f"one evaluation, {res['rules']} rules p99 (ms)", res["evaluation_p99_ms"], ""),
    ]
    if "slow_receiver" in res:
        sr = res["slow_receiver"]
        rows += [
            (f"with a {sr['receiver_delay_s']:g} s receiver: tick p99", sr[
                "tick_to_stored_p99_ms"], f"delta {res['slow_receiver_p99_delta_ms']} ms"),
            ("  deliveries enqueued / delivered", f"{sr['deliveries']}/{sr['delivered']}",
             "the rest still in the slow receiver's queue (never on the eval path)"),
        ]
    print(f"{'measure':<36} {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<36} {value!s:>10}  {note}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
