"""HTTP API of the market-wide screen.

==========================  =============================================================
``GET /api/market-screen``  ``n=50, timeframe=1m, lookback=1440, min_corr=0.5,
                            max_pairs=2000, prices=log|raw, z_window=60, both=0|1, end,
                            format=json|csv``: the top N instruments by quote volume,
                            return-correlation prefilter, Engle-Granger p-value (equal to
                            statsmodels' ``coint``), half-life and current |z| per
                            candidate, ranked (:mod:`dashapp.market_screen_queries`)
==========================  =============================================================

A bad parameter is a 400 naming it, too little data a 409 with ``needed``/``have``, a
screen over the size budget a 413 naming the parameter to change; it runs under the
heavy-job gate (:mod:`dashapp.heavy`: a few slots, a time budget, 503 when busy).
"""

from __future__ import annotations

import flask

from dashapp import heavy
from dashapp import market_screen_queries as msq
from dashapp.api import params
from dashapp.api.downloads import frame_bytes
from dashapp.api.market import answer_query_errors, json_response

bp = flask.Blueprint("market_screen_api", __name__, url_prefix="/api")


answer_query_errors(bp)


@bp.route("/market-screen")
def market_screen():
    args = flask.request.args
    fmt = params.choice(args, "format", ("json", "csv"), "json")
    parsed = msq.screen_args(args)
    result = heavy.run_heavy(msq.estimate(parsed["p"], parsed["tf_ms"]),
                             lambda: msq.run(**parsed))
    if fmt == "csv":
        resp = flask.Response(frame_bytes(msq.rows_frame(result), "csv"), mimetype="text/csv")
        name = f"market-screen_top{result.params.top_n}_{msq.format_timeframe(result.tf_ms)}"
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return resp
    return json_response(msq.payload(result))


def register(server: flask.Flask) -> None:
    server.register_blueprint(bp)
