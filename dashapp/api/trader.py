"""HTTP API of the trader tools: backtest, screener, lead-lag.

=======================  ===================================================================
``GET /api/backtest``    ``a, b, timeframe=1s, window=60, regression, prices, entry=2,
                         exit=0, stop, max_hold, fee_bps=0, slippage_bps=0, dataset,
                         source=trade|mid, fills=last|quote, curve=0|1``: trades (ISO
                         times), total_pnl, gross_pnl, total_spread_cost, sharpe, ...
                         (and the per-bar equity curve with ``curve=1``)
``GET /api/screener``    ``timeframe=1s, window=60, regression, prices, lookback, source``: every
                         pair of ingested symbols, ranked (coint p-value, half-life, |z|,
                         correlation, liquidity)
``GET /api/leadlag``     ``a, b, timeframe=1s, max_lag=10, lookback``: correlation of
                         returns at lags -k..k (positive lag = A leads B)
=======================  ===================================================================

Same conventions as :mod:`dashapp.api`: a bad parameter is a 400 naming it, too little
data a 409 with ``needed``/``have`` (both handled by the blueprint's error handlers,
registered for this blueprint too).
"""

from __future__ import annotations

import logging

import flask
import numpy as np

from dashapp import heavy, job_sizes
from dashapp import trader_queries as tq
from dashapp.api import params
from dashapp.api.market import answer_query_errors, json_response
from dashapp.api.params import BadParam

log = logging.getLogger(__name__)
bp = flask.Blueprint("trader_api", __name__, url_prefix="/api")


_json = json_response


answer_query_errors(bp)


def _flag(args, name: str) -> bool:
    return params.choice(args, name, ("0", "1", "false", "true"), "0") in ("1", "true")


@bp.route("/backtest")
def backtest():
    args = flask.request.args
    pair, bt = tq.backtest_args(args)
    curve = _flag(args, "curve")
    est = job_sizes.pair_job("backtest", **pair, extra_row_us=heavy.BACKTEST_ROW_US)
    result = heavy.run_heavy(est, lambda: tq.backtest(**pair, bt=bt))
    return _json(tq.backtest_payload(result, pair, curve=curve))


@bp.route("/screener")
def screener():
    args = tq.screen_args(flask.request.args)
    result = heavy.run_heavy(job_sizes.screen_job(**args), lambda: tq.screen(**args))
    return _json(tq.screen_payload(result, args.get("source", "trade")))


@bp.route("/leadlag")
def leadlag():
    a = flask.request.args
    tf = tq.screen_args(a)  # dataset= too: its symbols
    known = set(tq.source_symbols(tf.get("dataset")))
    sym_a, sym_b = params.symbol(a, "a", known), params.symbol(a, "b", known)
    if sym_a == sym_b:
        raise BadParam("b", "must differ from a")
    k = tq.max_lag_arg(a)
    ds = tf.get("dataset")
    est = job_sizes.leadlag_job(sym_a, sym_b, tf["tf_ms"], k, tf["max_bars"], ds)
    ll = heavy.run_heavy(
        est, lambda: tq.lead_lag(sym_a, sym_b, tf["tf_ms"], k, tf["max_bars"], ds))
    return _json({
        "a": sym_a, "b": sym_b, "timeframe": tq.format_timeframe(tf["tf_ms"]), "max_lag": k,
        "convention": "corr(r_A[t], r_B[t+lag]); positive lag = A leads B",
        "lags": ll.lags.tolist(),
        "corr": [float(c) if np.isfinite(c) else None for c in ll.corr],
        "peak_lag": ll.peak_lag, "peak_corr": ll.peak_corr, "nobs": ll.nobs,
    })


def register(server: flask.Flask) -> None:
    server.register_blueprint(bp)
