"""Service functions of the trader tools (backtest, screener, lead-lag), shared by the
HTTP API (:mod:`dashapp.api.trader`) and the pages, so both show the same numbers.

Parameter parsing lives here too: :func:`backtest_args` / :func:`screen_args` take a
mapping (Flask's ``request.args`` or a dict built from a page's controls) and raise
:class:`~dashapp.api.params.BadParam` naming the parameter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.align import align_pair
from analytics.backtest import (
    MAX_BPS,
    MAX_Z,
    BacktestParams,
    BacktestResult,
    Quotes,
    quoted_rows,
    run_backtest,
)
from analytics.backtest import trades_frame as _trades_frame
from analytics.errors import InsufficientData, NoQuotes
from analytics.leadlag import MAX_LAG, LeadLag, LeadLagMatrix, cross_correlation, lead_lag_matrix
from analytics.pair import requirements
from analytics.screener import ScreenResult, screen_pairs
from analytics.sessions import last_session
from analytics.timeframes import bars_per_day, format_timeframe
from dashapp import queries
from dashapp.api import params
from dashapp.api.downloads import iso_ms
from dashapp.api.params import BadParam, number
from dashapp.services import get_services

log = logging.getLogger(__name__)

MAX_HOLD_BARS = 86_400
MAX_DATASET_LEN = 200
TRADE_COLUMNS = (
    "side", "signal_ts", "entry_ts", "exit_ts", "entry_a", "entry_b", "exit_a", "exit_b",
    "beta", "hedge", "pnl_a", "pnl_b", "gross", "fees", "slippage", "pnl", "exit_reason",
)
#: With ``fills=quote``, after :data:`TRADE_COLUMNS`: each leg's fill and the quote it
#: crossed (bid and ask of that bar), and the trade's spread cost.
QUOTE_TRADE_COLUMNS = (
    "entry_fill_a", "entry_bid_a", "entry_ask_a", "entry_fill_b", "entry_bid_b",
    "entry_ask_b", "exit_fill_a", "exit_bid_a", "exit_ask_a", "exit_fill_b", "exit_bid_b",
    "exit_ask_b", "spread_cost",
)
METRICS = (
    "total_pnl", "gross_pnl", "total_fees", "total_slippage", "total_spread_cost",
    "open_pnl", "capital",
    "total_return", "sharpe", "max_drawdown", "max_drawdown_return", "hit_rate",
    "avg_holding_bars", "avg_holding_seconds", "turnover", "n_trades", "n_bars",
)


# ---------------------------------------------------------------- parameter parsing
def _known() -> set[str]:
    return set(get_services().names())


def pair_args(args: Mapping) -> dict:
    """``a, b, tf_ms, window, regression, prices, dataset, source`` of a pair request."""
    dataset = args.get("dataset")
    dataset = None if dataset is None or str(dataset).strip() == "" else str(dataset).strip()
    if dataset is not None and len(dataset) > MAX_DATASET_LEN:
        raise BadParam("dataset", f"at most {MAX_DATASET_LEN} characters")
    if dataset is None:
        known = _known()
        a = params.symbol(args, "a", known, get_services().resolve)
        b = params.symbol(args, "b", known, get_services().resolve)
        tf_ms = params.timeframe(args)
    else:  # an uploaded dataset: its own symbols, its timeframe by default
        info = queries.dataset_info(dataset)
        a = params.symbol(args, "a", info.symbols)
        b = params.symbol(args, "b", info.symbols)
        tf_ms = params.timeframe(args, default=format_timeframe(info.tf_ms))
    if a == b:
        raise BadParam("b", "must differ from a")
    if dataset is None:
        tracked = get_services().timeframes()
        if tf_ms not in tracked:
            names = ", ".join(format_timeframe(t) for t in tracked)
            raise BadParam("timeframe", f"live pair series exist for {names}, got "
                                        f"{format_timeframe(tf_ms)}")
    source = params.source(args)
    if dataset is not None:
        queries.no_book_in_dataset(source)
    return dict(a=a, b=b, tf_ms=tf_ms, window=params.window(args),
                regression=params.regression(args), prices=params.prices(args),
                dataset=dataset, source=source)


def backtest_args(args: Mapping) -> tuple[dict, BacktestParams]:
    """Pair arguments and :class:`BacktestParams` from request-style arguments."""
    pair = pair_args(args)
    entry = number(args, "entry", 2.0, 0.0, MAX_Z, lo_open=True)
    ex = number(args, "exit", 0.0, -MAX_Z, MAX_Z)
    if ex >= entry:
        raise BadParam("exit", f"must be below entry ({entry:g}), got {ex:g}")
    stop = number(args, "stop", None, 0.0, MAX_Z, lo_open=True)
    if stop is not None and stop <= entry:
        raise BadParam("stop", f"must be above entry ({entry:g}), got {stop:g}")
    raw_hold = args.get("max_hold")
    max_hold = None
    if raw_hold is not None and str(raw_hold).strip() != "":
        max_hold = params.integer(args, "max_hold", 0, 1, MAX_HOLD_BARS)
    fee = number(args, "fee_bps", 0.0, 0.0, MAX_BPS)
    slip = number(args, "slippage_bps", 0.0, 0.0, MAX_BPS)
    fills = params.fills(args)
    if fills == "quote" and pair["dataset"] is not None:
        raise BadParam("fills", "an uploaded dataset has no bid and ask: use fills=last")
    return pair, BacktestParams(entry=entry, exit=ex, stop=stop, max_hold=max_hold,
                                fee_bps=fee, slippage_bps=slip, fills=fills)


# ---------------------------------------------------------------- backtest
def backtest(
    a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    bt: BacktestParams, dataset: str | None = None,
    since_ts: int | None = None, until_ts: int | None = None, source: str = "trade",
) -> BacktestResult:
    """Backtest over the pair series (``/api/pair`` numbers, of ``source``), optionally
    cut to ``[since_ts, until_ts]`` (a page re-running the exact range it showed).

    ``fills=quote``: the legs' bid and ask per row (:func:`dashapp.queries.pair_quotes`)
    from the first row both legs are quoted on (409 naming the book before that)."""
    from dashapp import heavy, job_sizes  # the size budget, for the page's job too

    heavy.check(job_sizes.pair_job(
        "backtest", a=a, b=b, tf_ms=tf_ms, window=window, regression=regression,
        prices=prices, dataset=dataset, extra_row_us=heavy.BACKTEST_ROW_US, source=source))
    # the first z-score plus the bar its entry fills at
    need = requirements(window, regression)["zscore"] + 1
    what = f"backtest (z-score w={window}, {regression})"
    try:
        frame = queries.pair_frame(
            a, b, tf_ms, window, regression, prices, dataset=dataset,
            start=since_ts, end=until_ts, source=source,
        )
    except NoQuotes:
        raise  # no quote at all: say so, not "too few bars"
    except InsufficientData as exc:  # say what the backtest needs, not the first hedge
        raise InsufficientData(what, need, exc.have) from None
    quotes = None
    if bt.fills == "quote":
        q = queries.pair_quotes(a, b, tf_ms, frame["ts"].to_numpy(np.int64))
        first = quoted_rows(*q.values())
        if first == len(frame):
            bare = [n for n, leg in ((a, "a"), (b, "b"))
                    if not np.isfinite(q[f"bid_{leg}"]).any()] or [a, b]
            raise NoQuotes(" and ".join(bare), "fills=quote")
        frame = frame.iloc[first:].reset_index(drop=True)
        quotes = Quotes(**{k: v[first:] for k, v in q.items()})
        what += ", on quoted bars"
    if len(frame) < need:
        raise InsufficientData(what, need, len(frame))
    return run_backtest(
        frame["ts"].to_numpy(np.int64), frame["price_a"].to_numpy(), frame["price_b"].to_numpy(),
        frame["beta"].to_numpy(), frame["zscore"].to_numpy(), params=bt, tf_ms=tf_ms,
        prices=prices, breaks=queries.frame_breaks(frame), quotes=quotes,
    )


def _clean(v):
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def trade_columns(result: BacktestResult) -> tuple[str, ...]:
    """The trades table's columns: the fills and quotes too with ``fills=quote``."""
    if result.params.fills == "quote":
        return TRADE_COLUMNS + QUOTE_TRADE_COLUMNS
    return TRADE_COLUMNS


def trades_frame(result: BacktestResult) -> pd.DataFrame:
    """The trades table in the API's column order (times epoch ms)."""
    return _trades_frame(result)[list(trade_columns(result))]


def backtest_payload(result: BacktestResult, pair: dict, *, curve: bool = False) -> dict:
    """JSON body of ``/api/backtest``: trades (ISO times), metrics, parameters."""
    trades = []
    columns = trade_columns(result)
    for tr in result.trades:
        row = {c: _clean(getattr(tr, c)) for c in columns}
        for c in ("signal_ts", "entry_ts", "exit_ts"):
            if row[c] is not None:
                row[c] = str(iso_ms(np.array([row[c]]))[0])
        trades.append(row)
    p = result.params
    out = {
        "a": pair["a"], "b": pair["b"], "timeframe": format_timeframe(result.tf_ms),
        "window": pair["window"], "regression": pair["regression"], "prices": result.prices,
        "dataset": pair.get("dataset"), "source": pair.get("source", "trade"),
        "params": {"entry": p.entry, "exit": p.exit, "stop": p.stop, "max_hold": p.max_hold,
                   "fee_bps": p.fee_bps, "slippage_bps": p.slippage_bps, "fills": p.fills},
        "first_ts": str(iso_ms(result.ts[:1])[0]), "last_ts": str(iso_ms(result.ts[-1:])[0]),
        "trades": trades,
    }
    out.update({m: _clean(getattr(result, m)) for m in METRICS})
    if curve:
        out["equity"] = {
            "ts": iso_ms(result.ts).tolist(), "position": result.position.tolist(),
            "equity": result.equity.tolist(), "drawdown": result.drawdown.tolist(),
        }
    return out


# ---------------------------------------------------------------- screener, lead-lag
def _dataset_arg(args: Mapping) -> str | None:
    dataset = args.get("dataset")
    dataset = None if dataset is None or str(dataset).strip() == "" else str(dataset).strip()
    if dataset is not None and len(dataset) > MAX_DATASET_LEN:
        raise BadParam("dataset", f"at most {MAX_DATASET_LEN} characters")
    return dataset


def screen_args(args: Mapping) -> dict:
    """``tf_ms, window, regression, prices, max_bars`` of a screen, plus ``dataset`` when
    one is named: its symbols at its timeframe (or a multiple), all its bars by default
    (``lookback`` bars at most when given); live: the last day by default."""
    dataset = _dataset_arg(args)
    if dataset is None:
        tf_ms = params.timeframe(args)
        tracked = get_services().timeframes()
        if tf_ms not in tracked:
            names = ", ".join(format_timeframe(t) for t in tracked)
            raise BadParam("timeframe", f"bars exist for {names}, got {format_timeframe(tf_ms)}")
        max_bars = params.integer(args, "lookback", bars_per_day(tf_ms), 30,
                                  bars_per_day(tf_ms))
    else:
        info = queries.dataset_info(dataset)
        tf_ms = params.timeframe(args, default=format_timeframe(info.tf_ms))
        if tf_ms < info.tf_ms or tf_ms % info.tf_ms:
            raise BadParam("timeframe", f"dataset {dataset!r} has {format_timeframe(info.tf_ms)} "
                                        f"bars: use a multiple of it")
        max_bars = params.integer(args, "lookback", None, 30, 10**8)
    out = dict(tf_ms=tf_ms, window=params.window(args), regression=params.regression(args),
               prices=params.prices(args), max_bars=max_bars)
    if dataset is not None:
        out["dataset"] = dataset
    source = params.source(args)
    if source != "trade":  # the default stays out: every caller's arguments unchanged
        if dataset is not None:
            queries.no_book_in_dataset(source)
        out["source"] = source
    return out


def source_symbols(dataset: str | None = None) -> list[str]:
    """Symbols of the live feed (ingested) or of a dataset, sorted."""
    if dataset is None:
        return sorted(_known())
    return sorted(queries.dataset_info(dataset).symbols)


def all_bars(tf_ms: int, dataset: str | None = None, source: str = "trade") -> dict:
    """Closed bars of every symbol of the source with at least one bar (sorted by symbol):
    the ingested ones, or a dataset's (resampled to ``tf_ms`` exactly); ``source="mid"``:
    the live instruments' mid bars (:func:`analytics.midprice.mid_bars`)."""
    if dataset is not None:
        out = {s: queries.dataset_bars(dataset, s, tf_ms) for s in source_symbols(dataset)}
    elif source == "mid":
        out = queries.mid_bars_of(sorted(_known()), tf_ms)
    else:
        out = get_services().bars_of(sorted(_known()), tf_ms)
    return {s: b for s, b in out.items() if len(b)}


def all_breaks(symbols, dataset: str | None = None) -> dict:
    """Session breaks (ms) of each live symbol (none in an uploaded dataset): the
    screener and lead-lag use each pair's last session only."""
    if dataset is not None:
        return {}
    market = get_services()
    return {s: market.breaks(s) for s in symbols}


def bar_count(tf_ms: int, dataset: str | None = None) -> int:
    """Cheap change marker: total closed bars of the timeframe over all symbols (a
    dataset's: its stored rows, which only an upload changes)."""
    if dataset is not None:
        info = get_services().datasets.get(dataset)
        return -1 if info is None else sum(info.rows.values())
    market = get_services()
    return sum(len(market.bars(s, tf_ms)) for s in sorted(_known()))


def screen(tf_ms: int, window: int, regression: str, prices: str,
           max_bars: int | None = None, dataset: str | None = None,
           source: str = "trade") -> ScreenResult:
    """Every pair ranked (:func:`analytics.screener.screen_pairs`), on the bars' trades
    or, with ``source="mid"``, on their mids (the instruments with quotes)."""
    from dashapp import heavy, job_sizes  # the size budget, for the page's job too

    heavy.check(job_sizes.screen_job(tf_ms, window, regression, prices, max_bars, dataset))
    bars = all_bars(tf_ms, dataset, source)
    if source == "mid" and len(bars) < 2:
        quoted = ", ".join(bars) or "none"
        raise NoQuotes(f"2 instruments (quoted: {quoted})", "the screener on source=mid")
    if len(bars) < 2:
        raise InsufficientData(f"screener ({format_timeframe(tf_ms)} bars of 2 symbols)",
                               2, len(bars))
    return screen_pairs(bars, window=window, regression=regression, prices=prices,
                        max_bars=max_bars, breaks=all_breaks(bars, dataset))


def screen_payload(result: ScreenResult, source: str = "trade") -> dict:
    rows = []
    for i, r in enumerate(result.rows, 1):
        row = {f: _clean(getattr(r, f)) for f in r.__slots__}
        row["rank"] = i
        row["last_ts"] = None if r.last_ts is None else str(iso_ms(np.array([r.last_ts]))[0])
        rows.append(row)
    return {"timeframe": format_timeframe(result.tf_ms), "window": result.window,
            "regression": result.regression, "prices": result.prices, "source": source,
            "symbols": list(result.symbols), "rows": rows}


def lead_lag(a: str, b: str, tf_ms: int, max_lag: int,
             max_bars: int | None = None, dataset: str | None = None) -> LeadLag:
    if dataset is not None:
        ba, bb = queries.dataset_bars(dataset, a, tf_ms), queries.dataset_bars(dataset, b, tf_ms)
    else:
        both = get_services().bars_of((a, b), tf_ms)
        ba, bb = both[a], both[b]
    al = align_pair(ba, bb, max_bars=max_bars)
    brk = all_breaks((a, b), dataset)
    if brk:
        al = last_session(al, brk[a], brk[b])  # no return spans a session break
    if len(al) == 0:
        raise InsufficientData(f"lead-lag {a}/{b}", max_lag + 21, 0)
    return cross_correlation(al.a, al.b, max_lag=max_lag)


def lead_lag_all(tf_ms: int, max_lag: int, max_bars: int | None = None,
                 dataset: str | None = None) -> LeadLagMatrix:
    bars = all_bars(tf_ms, dataset)
    return lead_lag_matrix(bars, max_lag=max_lag, max_bars=max_bars,
                           breaks=all_breaks(bars, dataset))


def max_lag_arg(args: Mapping) -> int:
    return params.integer(args, "max_lag", 10, 1, MAX_LAG)
