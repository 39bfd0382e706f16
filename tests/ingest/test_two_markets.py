"""Spot and perp side by side (issue #16): one run, two markets, never mixed.

* The same symbol on two markets whose trade ids OVERLAP numerically (real recorded
  spot and USDⓈ-M BTCUSDT rows, the perp ids shifted onto the spot range) goes through
  the real replay server and one feed per market: each market's stored ids are
  contiguous, complete and carry that market's own prices; a restart on the same DB
  resumes each market from its own last id.
* ``python app.py --replay`` (no files) plays the bundled spot AND perp tapes, each
  market in its own protocol: every trade of both is stored once, and the 1 s bars of
  ``spot:BTCUSDT`` and ``perp:BTCUSDT`` served by ``/api/bars`` equal a pandas resample of
  the tape files read here independently (gzip + json, no project code).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from ingest.config import parse_config
from ingest.runtime import Runtime
from tests.test_app import free_port, start, wait_health

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
SPOT_BTC = SAMPLE / "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-08T235959Z.jsonl.gz"
PERP_BTC = SAMPLE / "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz"
#: The bundled overlapping window, per market (what ``--replay`` plays by default).
BUNDLED = {
    "spot": sorted(SAMPLE.glob("binance-spot-ws-trade_*_2024-08-08T235415Z_2024-08-08T235959Z"
                               ".jsonl.gz")),
    "perp": sorted(SAMPLE.glob("binance-um-ws-trade_*_2024-08-08T2354*.jsonl.gz")),
}


def read_lines(path: Path) -> list[tuple[str, dict]]:
    """``<recv ns> <frame>`` lines of a recording: (recv, the frame object)."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.strip():
                recv, frame = line.split(" ", 1)
                out.append((recv, json.loads(frame)))
    return out


def trades_frame(path: Path) -> pd.DataFrame:
    """The trades of one recording, read independently: id, T, price, qty, maker."""
    rows = []
    for _, frame in read_lines(path):
        d = frame.get("data", frame)
        rows.append((d["s"], int(d["t"]), int(d["T"]), float(d["p"]), float(d["q"]),
                     bool(d["m"])))
    return pd.DataFrame(rows, columns=["symbol", "trade_id", "time_ms", "price", "qty",
                                       "maker"])


def write_tape(path: Path, lines: list[tuple[str, dict]]) -> None:
    with gzip.open(path, "wt") as fh:
        for recv, frame in lines:
            fh.write(f"{recv} {json.dumps(frame, separators=(',', ':'))}\n")


def stored(db: Path) -> pd.DataFrame:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return pd.read_sql_query(
            "SELECT market, symbol, trade_id, time_ms, price FROM trades "
            "ORDER BY market, symbol, trade_id", con)
    finally:
        con.close()


def run_replay(files: list[Path], db: Path, expect_rows: int, timeout: float = 90,
               faults=None) -> dict:
    """The app's runtime on ``--replay FILES`` at full speed, once, recorded times;
    returns its health once ``expect_rows`` trades are stored."""
    cfg = parse_config(["--replay", *map(str, files), "--replay-speed", "0", "--replay-once",
                        "--replay-keep-times", "--db", str(db), "--port", "8999"])
    rt = Runtime(cfg)
    if faults is not None:
        rt.replay.faults = faults
    rt.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = rt.health()
            if h["store"]["rows"] >= expect_rows and h["store"]["pending"] == 0:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more may come (a wrong resume would add or drop)
        assert rt.store.flush(10.0)
        h = rt.health()
        h["universe"] = rt.universe.names
        return h
    finally:
        rt.stop()


@pytest.mark.slow
def test_same_symbol_on_two_markets_with_overlapping_ids_is_never_mixed(tmp_path):
    n, offset = 3_000, 1_000
    spot = read_lines(SPOT_BTC)[:n]
    perp = read_lines(PERP_BTC)[:n]
    spot_first = spot[0][1]["data"]["t"]
    shift = spot_first + offset - perp[0][1]["data"]["t"]
    for _, frame in perp:  # perp ids onto the spot range: ids overlap by n - offset
        frame["data"]["t"] += shift
    half = [tmp_path / "binance-spot-ws-trade_BTCUSDT_half.jsonl.gz",
            tmp_path / "binance-um-ws-trade_BTCUSDT_half.jsonl.gz"]
    full = [tmp_path / "binance-spot-ws-trade_BTCUSDT_full.jsonl.gz",
            tmp_path / "binance-um-ws-trade_BTCUSDT_full.jsonl.gz"]
    write_tape(half[0], spot[: n // 2])
    write_tape(half[1], perp[: n // 2])
    write_tape(full[0], spot)
    write_tape(full[1], perp)
    want = {
        "spot": {f["data"]["t"]: float(f["data"]["p"]) for _, f in spot},
        "perp": {f["data"]["t"]: float(f["data"]["p"]) for _, f in perp},
    }
    both = set(want["spot"]) & set(want["perp"])
    assert len(both) == n - offset  # the ids really overlap
    # the two markets' prices differ at the same id: a mixed row would show
    assert sum(want["spot"][i] != want["perp"][i] for i in both) > len(both) // 2

    db = tmp_path / "m.db"
    # 1. the first half of each market; 2. a restart on the same DB with all of it:
    #    each market's feed resumes from ITS last id (the spot and perp last ids differ
    #    by `offset`: resuming from the other's would drop or re-gap `offset` ids)
    #    The first run's tape skips 60 events mid-way (both markets' ids): each market's
    #    feed sees its own gap and its own back-fill gets those ids from its market's
    #    REST (the other market's rows at the same ids have other prices).
    from ingest.replay.faults import FaultPlan

    h1 = run_replay(half, db, n, faults=FaultPlan(skip=(600, 60)))
    for market in ("spot", "perp"):
        feed = h1["feed"]["markets"][market]
        assert feed["gaps_detected"] > 0 and feed["gaps_filled"] > 0, (market, feed)
        assert feed["gaps"] == 0, (market, feed)
    h2 = run_replay(full, db, 2 * n)
    for h in (h1, h2):
        assert h["universe"] == ("perp:BTCUSDT", "spot:BTCUSDT")
        assert "BTCUSDT" not in h["symbols"]  # two markets: keyed by instrument only
        assert set(h["feed"]["markets"]) == {"spot", "perp"}
    rows = stored(db)
    for market in ("spot", "perp"):
        got = rows[rows["market"] == market]
        ids = got["trade_id"].tolist()
        assert ids == sorted(want[market]), f"{market}: stored ids are not the tape's"
        assert ids == list(range(ids[0], ids[0] + n)), f"{market}: ids not contiguous"
        prices = np.array([want[market][i] for i in ids])
        np.testing.assert_array_equal(got["price"].to_numpy(), prices,
                                      err_msg=f"{market}: another market's rows")
        feed = h2["feed"]["markets"][market]
        assert feed["gaps"] == 0 and feed["gaps_detected"] == 0, feed  # resumed right
        assert feed["duplicates"] == n // 2, f"{market}: resumed from the wrong id"
        assert h2["symbols"][f"{market}:BTCUSDT"]["ticks"] == n
        assert h2["symbols"][f"{market}:BTCUSDT"]["last_trade_id"] == ids[-1]


def overlapping_tapes(tmp_path: Path, n: int, offset: int) -> tuple[list[Path], dict]:
    """Real spot and perp BTCUSDT rows, the perp ids shifted so they overlap the spot
    ids by ``n - offset``: the two files and each market's {id: price}."""
    spot = read_lines(SPOT_BTC)[:n]
    perp = read_lines(PERP_BTC)[:n]
    shift = spot[0][1]["data"]["t"] + offset - perp[0][1]["data"]["t"]
    for _, frame in perp:
        frame["data"]["t"] += shift
    files = [tmp_path / "binance-spot-ws-trade_BTCUSDT_o.jsonl.gz",
             tmp_path / "binance-um-ws-trade_BTCUSDT_o.jsonl.gz"]
    write_tape(files[0], spot)
    write_tape(files[1], perp)
    return files, {m: {f["data"]["t"]: float(f["data"]["p"]) for _, f in lines}
                   for m, lines in (("spot", spot), ("perp", perp))}


@pytest.mark.slow
def test_live_flags_give_each_market_its_own_url_and_rest(tmp_path):
    """The live path (no --replay): ``--symbols spot:BTCUSDT,perp:BTCUSDT`` with
    ``--feed-url spot=…,perp=…`` and ``--rest-url spot=…,perp=…`` against a Binance-
    protocol exchange (the replay server, two markets, 40 events skipped): each market's
    feed connects on its URL, finds its own gap and back-fills it from its own REST."""
    from ingest.replay import ReplayServer
    from ingest.replay.faults import FaultPlan

    n = 2_000
    files, want = overlapping_tapes(tmp_path, n, 500)
    server = ReplayServer(files, port=0, speed=0, loop=False, rate_limit=None,
                          wait_markets=("spot", "perp"),
                          faults=FaultPlan(skip=(700, 40))).start()
    db, rest = tmp_path / "m.db", server.rest_base
    rt = Runtime(parse_config([
        "--symbols", "spot:BTCUSDT,perp:BTCUSDT", "--stream", "trade", "--db", str(db),
        "--feed-url", f"spot={server.ws_base},perp={server.ws_base}/market",
        "--rest-url", f"spot={rest},perp={rest}",
        "--port", "8999"]))
    try:
        rt.start()
        assert {m: f.url.split("?")[0] for m, f in rt.feeds.items()} == {
            "spot": f"{server.ws_base}/stream", "perp": f"{server.ws_base}/market/stream"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and rt.health()["store"]["rows"] < 2 * n:
            time.sleep(0.2)
        assert rt.store.flush(10.0)
        h = rt.health()
    finally:
        rt.stop()
        server.stop()
    for market in ("spot", "perp"):
        feed = h["feed"]["markets"][market]
        assert feed["gaps_detected"] > 0 and feed["gaps_filled"] > 0, (market, feed)
        assert feed["gaps"] == 0 and rest in feed["backfill"]["url"], feed
    rows = stored(db)
    for market in ("spot", "perp"):
        got = rows[rows["market"] == market]
        assert got["trade_id"].tolist() == sorted(want[market]), market
        np.testing.assert_array_equal(
            got["price"].to_numpy(), [want[market][i] for i in got["trade_id"]],
            err_msg=f"{market}: another market's rows")


def resample_1s(t: pd.DataFrame) -> pd.DataFrame:
    """1 s OHLCV of trades (bucket = floor(T / 1000) * 1000), pandas only."""
    t = t.sort_values("trade_id")
    t = t.assign(ts=t["time_ms"] // 1000 * 1000, quote=t["price"] * t["qty"],
                 buy=np.where(t["maker"], 0.0, t["qty"]))
    g = t.groupby("ts")
    out = pd.DataFrame({
        "open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(),
        "close": g["price"].last(), "volume": g["qty"].sum(),
        "quote_volume": g["quote"].sum(), "trades": g["price"].size(),
        "buy_volume": g["buy"].sum(),
    })
    out["vwap"] = out["quote_volume"] / out["volume"]
    return out


@pytest.mark.slow
def test_app_replays_bundled_spot_and_perp_and_serves_exact_bars_of_both(tmp_path):
    tapes = {m: pd.concat([trades_frame(p) for p in files]) for m, files in BUNDLED.items()}
    assert all(len(files) == 2 for files in BUNDLED.values()), BUNDLED
    total = sum(len(t) for t in tapes.values())
    port, db = free_port(), tmp_path / "m.db"
    proc = start(["app.py", "--replay", "--replay-speed", "0", "--replay-once",
                  "--replay-keep-times", "--db", str(db), "--port", str(port)],
                 tmp_path / "app.log")
    try:
        h = wait_health(
            port, lambda h: h["store"]["rows"] >= total and h["store"]["pending"] == 0,
            180, f"{total} rows", proc)
        assert h["store"]["rows"] == total
        assert set(h["feed"]["markets"]) == {"spot", "perp"}
        for market, t in tapes.items():
            for sym, ts in t.groupby("symbol"):
                assert h["symbols"][f"{market}:{sym}"]["ticks"] == len(ts)
        # every trade of both markets stored once
        rows = stored(db)
        for market, t in tapes.items():
            for sym, ts in t.groupby("symbol"):
                got = rows[(rows["market"] == market) & (rows["symbol"] == sym)]
                assert got["trade_id"].tolist() == sorted(ts["trade_id"]), (market, sym)
        # a bare symbol on two markets is ambiguous: a 400 naming the parameter
        r = requests.get(f"http://127.0.0.1:{port}/api/bars",
                         params={"symbol": "BTCUSDT"}, timeout=30)
        assert r.status_code == 400 and r.json()["param"] == "symbol", r.text
        assert "spot:BTCUSDT" in r.json()["error"] and "perp:BTCUSDT" in r.json()["error"]
        # the 1 s bars served equal the resample (complete buckets: up to the last
        # served; the last bucket of a stream may be open until the app stops)
        for market in ("spot", "perp"):
            t = tapes[market][tapes[market]["symbol"] == "BTCUSDT"]
            want = resample_1s(t)
            deadline = time.monotonic() + 30
            while True:
                r = requests.get(f"http://127.0.0.1:{port}/api/bars",
                                 params={"symbol": f"{market}:BTCUSDT", "timeframe": "1s"},
                                 timeout=60)
                assert r.status_code == 200, r.text
                got = pd.DataFrame(r.json()["rows"] if isinstance(r.json(), dict)
                                   else r.json())
                if len(got) >= len(want) - 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            got["ts"] = ((pd.to_datetime(got["ts"], utc=True) - pd.Timestamp(0, tz="UTC"))
                         // pd.Timedelta(milliseconds=1))
            got = got.set_index("ts")
            assert len(got) >= len(want) - 1, f"{market}: {len(got)} of {len(want)} bars"
            assert got.index.min() == want.index.min(), market
            want = want.loc[want.index <= got.index.max()]
            assert list(got.index) == list(want.index), f"{market}: bucket sets differ"
            for col in ("open", "high", "low", "close", "trades"):
                np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy(),
                                              err_msg=f"{market} {col}")
            for col in ("volume", "quote_volume", "buy_volume", "vwap"):
                np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(),
                                           rtol=1e-9, err_msg=f"{market} {col}")
    finally:
        proc.terminate()
        proc.wait(30)


# ------------------------------------------------------------------ names (fast)
def _trade(market: str, tid: int, t_ms: int, price: float = 100.0, symbol: str = "BTCUSDT"):
    from ingest.models import Trade

    return Trade(symbol, tid, t_ms, price, 1.0, False, t_ms, market)


def test_store_names_follow_the_run_universe_and_never_collide(tmp_path):
    from analytics.instruments import Instrument, Universe
    from ingest.store import open_store

    stores = open_store(str(tmp_path / "m.db"), market="spot")
    store = stores.trades.start()
    try:
        # an earlier run's spot ETHUSDT, and this run's spot + perp BTCUSDT, perp ETHUSDT
        for market, sym, tid in [("spot", "ETHUSDT", 7), ("spot", "BTCUSDT", 10),
                                 ("perp", "BTCUSDT", 10), ("perp", "ETHUSDT", 3)]:
            store.add_trade(_trade(market, tid, 1_000 + tid, symbol=sym))
        assert store.flush(10.0)
        universe = Universe.parse(["spot:BTCUSDT", "perp:BTCUSDT", "perp:ETHUSDT"], "spot")
        assert universe.names == ("spot:BTCUSDT", "perp:BTCUSDT", "ETHUSDT")
        assert store.last_trade_ids()["ETHUSDT"] == 7  # before: bare = default market
        store.use_universe(universe)
        ids = store.last_trade_ids()
        # "ETHUSDT" is now the run's perp ETHUSDT; the old spot one is named by key
        assert ids == {"spot:BTCUSDT": 10, "perp:BTCUSDT": 10, "ETHUSDT": 3,
                       "spot:ETHUSDT": 7}
        for name in ids:  # every name read back resolves to the same instrument
            assert store.name(store.instrument(name)) == name
        assert store.instrument("ETHUSDT") == Instrument("binance", "perp", "ETHUSDT")
        assert store.count_trades("ETHUSDT") == 1
        assert store.read_trades("spot:ETHUSDT").trade_id.tolist() == [7]
    finally:
        stores.close()


def test_ingestor_names_trades_by_market_and_closes_bars_on_the_slowest_market():
    """Spot and perp BTCUSDT with the SAME ids go to two rings; a perp connection far
    ahead in time does not close spot buckets spot has not delivered yet."""
    from analytics.engine import MarketEngine
    from analytics.instruments import Universe
    from ingest.pipeline import Ingestor

    class Store:  # no writes; names as a store with the universe would give
        def name(self, inst):
            return inst.key

    universe = Universe.parse(["spot:BTCUSDT", "perp:BTCUSDT"])
    engine = MarketEngine(list(universe.names))
    ing = Ingestor(list(universe.names), Store(), engine, write=False, universe=universe)
    t0 = 1_723_161_600_000
    for k in range(5):
        ing.on_trade(_trade("spot", 100 + k, t0 + 200 * k, 50.0))  # spot: 0..0.8 s
    for k in range(50):
        ing.on_trade(_trade("perp", 100 + k, t0 + 200 * k, 60.0))  # perp: 0..9.8 s
    assert ing.name_of(_trade("perp", 1, t0)) == "perp:BTCUSDT"
    assert ing.rings["spot:BTCUSDT"].since(0).trade_id.tolist() == list(range(100, 105))
    assert ing.rings["perp:BTCUSDT"].since(0).trade_id.tolist() == list(range(100, 150))
    assert set(ing.rings["spot:BTCUSDT"].since(0).price) == {50.0}
    # the close clock is spot's: D_spot - delay (not perp's 9.8 s)
    assert ing.close_clock_ms() == t0 + 800 - ing.bar_close_delay_ms
    ing.quiet_probe = lambda: True  # data pending: no quiet time anywhere
    assert ing.clock_tick(0.1) == []  # spot's bucket t0 stays open
    ing.on_trade(_trade("spot", 105, t0 + 900, 51.0))  # spot's slower connection
    assert ing.late_trades == {} and engine.late_ticks("spot:BTCUSDT") == 0
    ing.on_trade(_trade("spot", 106, t0 + 1_500, 52.0))  # spot passes bucket t0
    bar = engine.bars("spot:BTCUSDT", 1_000)
    assert bar.ts.tolist() == [t0] and bar.close.tolist() == [51.0]
    assert bar.trades.tolist() == [6]
    # a quiet spot connection (nothing pending, no trade) lets the clock advance:
    # spot's open bucket closes about a second late, never waits forever
    ing.quiet_probes = {"spot": lambda: False, "perp": lambda: True}
    closed = []
    for _ in range(10):
        closed += ing.clock_tick(0.2)
    assert ("spot:BTCUSDT", t0 + 1_000) in {(n, b.ts) for n, b in closed}


def test_a_follower_names_the_writers_instruments_and_follows_both_markets(tmp_path):
    """``--no-ingest`` over a DB holding spot and perp BTCUSDT: the follower's universe
    is the store's instruments, restores and follows each market into its own ring."""
    from ingest.store import open_store

    db = tmp_path / "m.db"
    t0 = 1_723_161_600_000
    writer = open_store(str(db), market="spot")
    store = writer.trades.start()
    for k in range(20):  # same ids, different prices per market
        store.add_trade(_trade("spot", 500 + k, t0 + 100 * k, 50.0 + k))
        store.add_trade(_trade("perp", 500 + k, t0 + 100 * k, 60.0 + k))
    assert store.flush(10.0)
    rt = Runtime(parse_config(["--db", str(db), "--no-ingest", "--market", "spot"]))
    try:
        assert rt.universe.names == ("perp:BTCUSDT", "spot:BTCUSDT")
        rt.start()
        for k in range(20, 30):  # the writer goes on while the follower polls
            store.add_trade(_trade("spot", 500 + k, t0 + 100 * k, 50.0 + k))
            store.add_trade(_trade("perp", 500 + k, t0 + 100 * k, 60.0 + k))
        assert store.flush(10.0)
        deadline = time.monotonic() + 20
        rings = rt.ingestor.rings
        while time.monotonic() < deadline and not all(
                len(rings.get(n, ())) == 30 for n in ("spot:BTCUSDT", "perp:BTCUSDT")):
            time.sleep(0.1)
        assert set(rings) == {"spot:BTCUSDT", "perp:BTCUSDT"}
        for market, base in (("spot", 50.0), ("perp", 60.0)):
            got = rings[f"{market}:BTCUSDT"].since(0)
            assert got.trade_id.tolist() == list(range(500, 530)), market
            assert got.price.tolist() == [base + k for k in range(30)], market
        h = rt.health()
        assert {"spot:BTCUSDT", "perp:BTCUSDT"} <= set(h["symbols"])
        assert "BTCUSDT" not in h["symbols"]
    finally:
        rt.stop()
        writer.close()


def test_restore_replays_trades_whose_bars_were_not_stored_yet(tmp_path):
    """Bars close after their trades are stored (later still on the slowest market's
    clock), so a restore beside a writer can find trades without bars before the open
    5 min bucket: it replays them, and the 1 s bars equal a resample of every trade."""
    from analytics.engine import MarketEngine
    from ingest.pipeline import Ingestor
    from ingest.store import open_store

    db = tmp_path / "m.db"
    t0 = 1_723_161_600_000  # a 5 min boundary
    trades = [_trade("spot", 1 + k, t0 - 60_000 + 400 * k, 100.0 + k % 9) for k in range(200)]
    stores = open_store(str(db), market="spot")
    store = stores.trades.start()
    ing = Ingestor(["BTCUSDT"], store, MarketEngine(["BTCUSDT"]))
    for t in trades:
        ing.on_trade(t)
    assert store.flush(10.0)
    stores.close()
    con = sqlite3.connect(db)  # the bars of the last 30 s before t0 "not written yet"
    with con:
        con.execute("DELETE FROM bars_1s WHERE ts >= ?", (t0 - 30_000,))
    con.close()
    stores = open_store(str(db), readonly=True, market="spot")
    try:
        engine = MarketEngine(["BTCUSDT"])
        Ingestor(["BTCUSDT"], stores.trades, engine, write=False).restore()
        got = engine.bars("BTCUSDT", 1_000)
    finally:
        stores.close()
    frame = pd.DataFrame({"trade_id": [t.trade_id for t in trades],
                          "time_ms": [t.time_ms for t in trades],
                          "price": [t.price for t in trades], "qty": 1.0, "maker": False})
    want = resample_1s(frame)
    want = want[want.index < int(got.ts[-1]) + 1]  # the last bucket may still be open
    assert got.ts.tolist() == list(want.index)
    np.testing.assert_array_equal(got.close, want["close"].to_numpy())
    np.testing.assert_array_equal(got.trades, want["trades"].to_numpy())
