"""Pairs on mid prices (``source=mid``) and backtests that pay the spread
(``fills=quote``), on REAL recorded data: the committed raw captures of USDT-M futures
BTCUSDT and ETHUSDT (trades and ``@bookTicker``, 2 minutes) are fed through a real
:class:`~analytics.engine.MarketEngine` in capture order, and the HTTP API's answers are
checked against an independent pandas computation from the raw frames (futures book
updates are bucketed by their transaction time ``T``).

Must show (#17): ``/api/pair?...&source=mid`` equals the pair definition applied to
the mid closes.
"""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.backtest import BacktestParams, Quotes, run_backtest
from analytics.bars import Bars
from analytics.engine import MarketEngine
from analytics.midprice import MidCloser, mid_bars
from analytics.pair import pair_series
from analytics.screener import screen_pairs
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.conftest import SAMPLE_DIR

RAW = "hftbacktest-rawcapture-trade-book_um_{}_20240808_2354-2356.gz"
SYMS = ("BTCUSDT", "ETHUSDT")
W = 20
BASE = f"a=BTCUSDT&b=ETHUSDT&timeframe=1s&window={W}"


def load_raw(sym: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The capture's trades and book updates (``recv`` = the capture's receive ns)."""
    trades, book = [], []
    with gzip.open(SAMPLE_DIR / RAW.format(sym), "rt") as fh:
        for line in fh:
            recv, frame = line.split(" ", 1)
            d = json.loads(frame)["data"]
            if d.get("e") == "trade":
                trades.append((int(recv), d["T"], d["t"], float(d["p"]), float(d["q"]),
                               bool(d["m"])))
            elif d.get("e") == "bookTicker":
                book.append((int(recv), d["T"], float(d["b"]), float(d["a"]),
                             float(d["B"]), float(d["A"])))
    return (pd.DataFrame(trades, columns=["recv", "T", "id", "p", "q", "m"]),
            pd.DataFrame(book, columns=["recv", "T", "bid", "ask", "bid_qty", "ask_qty"]))


@pytest.fixture(scope="module")
def raw():
    return {s: load_raw(s) for s in SYMS}


def _events(raw) -> list[tuple]:
    ev = []
    for s in SYMS:
        trades, book = raw[s]
        ev += [(r.recv, 0, s, r) for r in trades.itertuples()]
        ev += [(r.recv, 1, s, r) for r in book.itertuples()]
    ev.sort(key=lambda e: (e[0], e[1]))
    return ev


def feed(engine: MarketEngine, events, *, book: bool = True) -> None:
    """Events in capture order; the bar clock 2 s behind the data (bars close on their
    own next tick or quote, the clock closes silent ones; nothing arrives late)."""
    clock = None
    for _, kind, sym, r in events:
        if kind == 0:
            engine.on_trade(sym, r.T, r.id, r.p, r.q, r.m)
        elif book:
            engine.on_book(sym, r.T, r.bid, r.ask, r.bid_qty, r.ask_qty)
        sec = r.T // 1000 * 1000 - 2000
        if clock is None or sec > clock:
            clock = sec
            engine.on_clock(clock)


def _runtime(engine: MarketEngine) -> SimpleNamespace:
    return SimpleNamespace(engine=engine, market="futures",
                           ingestor=SimpleNamespace(rings=dict.fromkeys(SYMS)))


@pytest.fixture(scope="module")
def engine(raw):
    """Fed everything, a source=mid pair tracked from the 50th second on (so its rows
    after that are the live, incremental path) and the clock run past the end."""
    eng = MarketEngine(list(SYMS))
    events = _events(raw)
    cut = events[0][0] + 50 * 10**9
    feed(eng, [e for e in events if e[0] < cut])
    early = eng.pair("BTCUSDT", "ETHUSDT", 1_000, W, "ols", "raw", "mid")
    feed(eng, [e for e in events if e[0] >= cut])
    last_t = max(int(raw[s][1]["T"].max()) for s in SYMS)
    eng.on_clock(last_t + 5_000)
    eng.early_len = len(early.series)
    return eng


@pytest.fixture
def client(engine):
    set_services(LiveMarketData(_runtime(engine)))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


# ------------------------------------------------------------ independent (pandas)
def book_end_of_second(book: pd.DataFrame) -> pd.DataFrame:
    """The last quote of each second it changed in, by ``T`` (index: bucket start)."""
    b = book.assign(ts=book["T"] // 1000 * 1000)
    return b.groupby("ts")[["bid", "ask"]].last()


def independent_mid_pair(raw) -> pd.DataFrame:
    """Outer-join the legs' end-of-second mids, carry forward, start at both."""
    legs = {}
    for s, col in zip(SYMS, ("a", "b"), strict=True):
        q = book_end_of_second(raw[s][1])
        legs[col] = (q["bid"] + q["ask"]) / 2
    frame = pd.concat(legs, axis=1).sort_index().ffill().dropna()
    return frame.rename_axis("ts").reset_index()


def independent_quotes(raw, ts: np.ndarray) -> dict[str, np.ndarray]:
    """Each leg's bid and ask as of the end of each bucket ``ts`` (carried)."""
    out = {}
    for s, leg in zip(SYMS, ("a", "b"), strict=True):
        q = book_end_of_second(raw[s][1]).reindex(ts, method="ffill")
        out[f"bid_{leg}"], out[f"ask_{leg}"] = q["bid"].to_numpy(), q["ask"].to_numpy()
    return out


def iso(ts: np.ndarray) -> list[str]:
    return [pd.Timestamp(t, unit="ms").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            for t in ts]


# ------------------------------------------------------------------------ tests
def test_api_pair_on_mids_equals_the_pair_definition_on_the_mid_closes(client, raw, engine):
    r = client.get(f"/api/pair?{BASE}&source=mid")
    assert r.status_code == 200, r.json
    got = pd.DataFrame(r.json)
    ref = independent_mid_pair(raw)
    assert len(got) == len(ref) > 100
    assert engine.early_len < len(got) - 50  # most rows came through the live path
    assert got["ts"].tolist() == iso(ref["ts"].to_numpy())
    np.testing.assert_array_equal(got["price_a"], ref["a"])
    np.testing.assert_array_equal(got["price_b"], ref["b"])
    # the pair definition (the registry's batch functions) on those closes
    series = pair_series(ref["ts"].to_numpy(np.int64), ref["a"].to_numpy(), ref["b"].to_numpy(),
                         window=W, regression="ols", prices="raw", tf_ms=1_000)
    for col in ("alpha", "beta", "spread", "zscore", "corr"):
        want = np.asarray(getattr(series, col), dtype=float)
        have = got[col].astype(float).to_numpy()
        np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-9, equal_nan=True)
    # and independently of the analytics: rolling OLS of A on B, pandas
    a, b = ref["a"], ref["b"]
    beta = a.rolling(W).cov(b) / b.rolling(W).var()
    ok = beta.notna() & got["beta"].notna()
    assert ok.sum() > 80
    np.testing.assert_allclose(got["beta"][ok].astype(float), beta[ok], rtol=1e-6)
    spread = a - (a.rolling(W).mean() - beta * b.rolling(W).mean()) - beta * b
    z = (spread - spread.rolling(W).mean()) / spread.rolling(W).std()
    okz = z.notna() & got["zscore"].notna()
    assert okz.sum() > 60
    np.testing.assert_allclose(got["zscore"][okz].astype(float), z[okz], rtol=1e-5, atol=1e-6)


def test_mid_differs_from_trade_and_trade_stays_the_default(client):
    default = client.get(f"/api/pair?{BASE}").json
    trade = client.get(f"/api/pair?{BASE}&source=trade").json
    mid = client.get(f"/api/pair?{BASE}&source=mid").json
    assert default == trade
    assert [r["price_a"] for r in trade[:50]] != [r["price_a"] for r in mid[:50]]


def test_csv_and_adf_take_source(client):
    csv = client.get(f"/api/pair?{BASE}&source=mid&format=csv")
    assert csv.status_code == 200
    assert 'filename="pair_mid_BTCUSDT-ETHUSDT_1s_' in csv.headers["Content-Disposition"]
    body = client.get(f"/api/pair?{BASE}&source=mid").json
    lines = csv.data.decode().strip().splitlines()
    assert len(lines) == len(body) + 1
    adf = client.get(f"/api/adf?{BASE}&source=mid")
    assert adf.status_code == 200, adf.json
    assert adf.json["source"] == "mid"
    assert adf.json["nobs"] != client.get(f"/api/adf?{BASE}").json["nobs"] or (
        adf.json["stat"] != client.get(f"/api/adf?{BASE}").json["stat"])


@pytest.mark.parametrize("route", ["pair", "adf", "backtest", "screener"])
@pytest.mark.parametrize("query, param", [("source=last", "source"), ("source=", None),
                                          ("fills=ask", "fills")])
def test_bad_source_and_fills_are_400s_naming_them(client, route, query, param):
    if "fills" in query and route != "backtest":
        return  # fills is the backtest's
    r = client.get(f"/api/{route}?{BASE}&{query}")
    if param is None:  # blank: the default
        assert r.status_code == 200, r.json
        return
    assert r.status_code == 400, r.json
    assert r.json["param"] == param and r.json["error"].startswith(param)


def test_source_mid_without_book_data_is_a_clear_409(raw):
    eng = MarketEngine(list(SYMS))
    feed(eng, _events(raw)[:20_000], book=False)  # a run with --no-book
    set_services(LiveMarketData(_runtime(eng)))
    app = flask.Flask(__name__)
    api.register(app)
    c = app.test_client()
    assert c.get(f"/api/pair?{BASE}").status_code == 200
    for route in ("pair", "backtest"):
        r = c.get(f"/api/{route}?{BASE}&source=mid")
        assert r.status_code == 409, r.json
        assert "no top-of-book quote of BTCUSDT" in r.json["error"]
        assert "--no-book" in r.json["error"]
    r = c.get(f"/api/backtest?{BASE}&fills=quote")
    assert r.status_code == 409 and "fills=quote" in r.json["error"], r.json


def test_backtest_on_mids_paying_the_spread_equals_run_backtest_on_the_raw_book(client, raw):
    q = f"{BASE}&source=mid&fills=quote&entry=1.0&exit=0.0&fee_bps=1"
    r = client.get(f"/api/backtest?{q}")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["source"] == "mid" and body["params"]["fills"] == "quote"
    ref = independent_mid_pair(raw)
    ts = ref["ts"].to_numpy(np.int64)
    series = pair_series(ts, ref["a"].to_numpy(), ref["b"].to_numpy(), window=W,
                         regression="ols", prices="raw", tf_ms=1_000)
    quotes = independent_quotes(raw, ts)
    want = run_backtest(ts, ref["a"], ref["b"], series.beta, series.zscore,
                        params=BacktestParams(entry=1.0, exit=0.0, fee_bps=1, fills="quote"),
                        tf_ms=1_000, quotes=Quotes(**quotes))
    assert len(body["trades"]) == len(want.trades) >= 2
    for k in ("total_pnl", "gross_pnl", "total_spread_cost", "total_fees"):
        assert body[k] == pytest.approx(getattr(want, k), rel=1e-9, abs=1e-9), k
    # on mids every leg fill pays half its quoted spread: a positive cost
    assert body["total_spread_cost"] > 0
    assert body["total_pnl"] == pytest.approx(
        body["gross_pnl"] - body["total_spread_cost"] - body["total_fees"], abs=1e-9)
    t0, w0 = body["trades"][0], want.trades[0]
    for k in ("entry_fill_a", "entry_bid_a", "entry_ask_a", "entry_fill_b", "exit_fill_b",
              "spread_cost"):
        assert t0[k] == pytest.approx(getattr(w0, k), abs=1e-12), k
    buy_a = t0["side"] == 1
    assert t0["entry_fill_a"] == (t0["entry_ask_a"] if buy_a else t0["entry_bid_a"])
    # fills=last on the same series: same trades, no spread cost, more PnL
    last = client.get(f"/api/backtest?{BASE}&source=mid&entry=1.0&exit=0.0&fee_bps=1").json
    assert last["gross_pnl"] == pytest.approx(body["gross_pnl"], abs=1e-9)
    assert last["total_spread_cost"] == 0.0
    assert last["total_pnl"] > body["total_pnl"]
    assert "entry_fill_a" not in last["trades"][0]


def test_screener_on_mids_ranks_the_mid_bars(client, raw):
    r = client.get("/api/screener?timeframe=1s&window=20&source=mid")
    assert r.status_code == 200, r.json
    assert r.json["source"] == "mid"
    (row,) = r.json["rows"]
    bars = {}
    for s in SYMS:
        q = book_end_of_second(raw[s][1])
        n = len(q)
        mid = ((q["bid"] + q["ask"]) / 2).to_numpy()
        zeros = np.zeros(n)
        bars[s] = Bars.from_columns(
            {"ts": q.index.to_numpy(np.int64), "open": mid, "high": mid, "low": mid,
             "close": mid, "volume": zeros, "quote_volume": zeros,
             "trades": np.ones(n, np.int64), "buy_volume": zeros,
             "first_id": np.zeros(n, np.int64), "last_id": np.zeros(n, np.int64)}, 1_000)
    want = screen_pairs(bars, window=20, regression="ols", prices="raw").rows[0]
    assert row["coint_pvalue"] == pytest.approx(want.coint_pvalue, rel=1e-9)
    trade = client.get("/api/screener?timeframe=1s&window=20").json["rows"][0]
    assert trade["coint_pvalue"] != row["coint_pvalue"]


def test_mid_closer_equals_the_batch_mid_bars_on_the_real_book(raw, engine):
    """The live closer fed the real 1 s book bars (and a clock) emits exactly the rows
    of :func:`mid_bars` at a coarse timeframe."""
    book = engine.book_bars("ETHUSDT", 1_000)
    assert len(book) > 100
    for tf in (1_000, 10_000, 60_000):
        closer, got = MidCloser(tf), []
        for i in range(len(book)):
            t = int(book.ts[i])
            got += closer.on_clock(t)  # the clock reaches each second's start first
            got += closer.on_book_bar(t, float(book.bid[i]), float(book.ask[i]),
                                      int(book.updates[i]))
        got += closer.on_clock(int(book.ts[-1]) + tf)
        want = mid_bars(book.ts, book.bid, book.ask, book.updates, tf)
        assert [b.ts for b in got] == want.ts.tolist()
        assert [b.close for b in got] == want.close.tolist()
        assert [b.trades for b in got] == want.trades.tolist()
    # and the engine's mid bars are those of the raw book, by T
    q = book_end_of_second(raw["ETHUSDT"][1])
    mids = engine.mid_bars("ETHUSDT", 1_000)
    np.testing.assert_array_equal(mids.ts, q.index.to_numpy(np.int64))
    np.testing.assert_array_equal(mids.close, ((q["bid"] + q["ask"]) / 2).to_numpy())


# ------------------------------------------------------------ pages on the same data
def test_backtest_page_shows_gross_spread_fees_and_net_apart(client, engine):
    import dash

    from dashapp.components import backtest_view as view

    dash.Dash(__name__, use_pages=True, pages_folder="")  # registry for register_page
    from dashapp.pages import backtest as page

    args = {name: "" for name in page.ARG_NAMES}
    args.update(a="BTCUSDT", b="ETHUSDT", timeframe="1s", window=str(W), regression="ols",
                prices="raw", entry="1", exit="0", fee_bps="1", slippage_bps="0",
                source="mid", fills="quote")
    note, kpis, _eq, _dd, rows, spec, columns = page.run_spec(args)
    fields = [c["field"] for c in columns]
    assert fields[-9:] == ["spread_cost", "entry_fill_a", "entry_quote_a", "exit_fill_a",
                           "exit_quote_a", "entry_fill_b", "entry_quote_b", "exit_fill_b",
                           "exit_quote_b"]
    assert "spread_cost" not in [c["field"] for c in view.trade_column_defs("last")]
    assert spec["source"] == "mid" and spec["fills"] == "quote"
    assert "mid prices, fills at the quote" in note.children
    api_body = client.get(f"/api/backtest?{BASE}&source=mid&fills=quote&entry=1&exit=0"
                          "&fee_bps=1").json
    shown = view.pnl_breakdown(page.tq.backtest(**page.tq.backtest_args(args)[0],
                                                bt=page.tq.backtest_args(args)[1]))
    assert shown["spread"] == f"{api_body['total_spread_cost']:,.2f}"
    assert shown["net"] == f"{api_body['total_pnl']:+,.2f}"
    assert shown["gross"] == f"{api_body['gross_pnl']:+,.2f}"

    def texts(node):
        if isinstance(node, str):
            return [node]
        kids = getattr(node, "children", None)
        kids = kids if isinstance(kids, list) else [kids] if kids is not None else []
        return [t for k in kids for t in texts(k)]

    flat = " ".join(texts(kpis))
    assert "Gross → net" in flat and "buys at the ask, sells at the bid" in flat
    first = rows[0]
    assert first["entry_fill_a"] == api_body["trades"][0]["entry_fill_a"]
    bid, ask = api_body["trades"][0]["entry_bid_a"], api_body["trades"][0]["entry_ask_a"]
    assert first["entry_quote_a"] == f"{bid:,.8g} × {ask:,.8g}"


def test_pair_page_live_z_on_mid_uses_the_latest_quotes(raw, engine):
    from dashapp import selection
    from dashapp.pages.pair import pairlive

    market = LiveMarketData(_runtime(engine))
    last = {s: raw[s][1].iloc[-1] for s in SYMS}
    quotes = {s: SimpleNamespace(bid=q.bid, ask=q.ask, bid_qty=q.bid_qty, ask_qty=q.ask_qty,
                                 time_ms=int(q["T"])) for s, q in last.items()}
    market.quote = quotes.get  # the ingestor's latest quote (an instance attribute here)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=W, source="mid")
    pa, pb, t = pairlive.last_prices(market, sel)
    assert pa == (last["BTCUSDT"].bid + last["BTCUSDT"].ask) / 2
    assert pb == (last["ETHUSDT"].bid + last["ETHUSDT"].ask) / 2
    assert t == max(int(q["T"]) for q in last.values())
    snap = market.pair(*sel.engine_args())
    assert snap.key.source == "mid"
    z = snap.live_zscore(pa, pb)
    want = ((pa - snap.alpha - snap.beta * pb) - snap.spread_mean) / snap.spread_std
    assert z == pytest.approx(want)


def test_selection_carries_source_in_the_url_and_refuses_it_on_a_dataset():
    from dashapp import selection
    from dashapp.api.params import BadParam

    sel, notes = selection.parse_query({"a": "BTCUSDT", "b": "ETHUSDT", "source": "mid"},
                                       list(SYMS))
    assert sel.source == "mid" and notes == []
    assert sel.query_params()["source"] == "mid" and "|mid" in sel.key
    assert "source" not in selection.Selection("BTCUSDT", "ETHUSDT").query_params()
    bad, notes = selection.parse_query({"source": "ask"}, list(SYMS))
    assert bad.source == "trade" and "source" in notes[0]
    with pytest.raises(BadParam) as exc:
        selection.validate({"a": "BTCUSDT", "b": "ETHUSDT", "w": "20", "k": "2",
                            "entry": "2", "source": "mid"}, list(SYMS), dataset="up1")
    assert exc.value.param == "source"
    assert selection.Selection.from_store({**sel.to_store(), "source": "ask"}) is None
    assert selection.Selection.from_store(sel.to_store()) == sel
