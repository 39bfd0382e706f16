"""``GET /api/basis``: a perp against its spot on the pair grid (:mod:`analytics.basis`).

=====================  =====================================================================
``GET /api/basis``     ``perp=perp:BTCUSDT, spot=spot:BTCUSDT, timeframe=1s, window=60,
                       max_lag=10, source=trade|mid, start, end, limit, format=json|csv``
=====================  =====================================================================

Columns (CSV, and the JSON ``rows``), one row per point of the aligned grid:
``ts, price_perp, price_spot, basis, basis_bps, mean_bps, std_bps, zscore, halflife,
session`` (:data:`analytics.basis.BASIS_COLUMNS`), times ISO-8601 UTC with milliseconds,
NaN as ``null`` in JSON and empty in CSV, exactly as ``/api/pair``. The JSON is an
object: the query (``perp``, ``spot`` with their ``*_label``, ``timeframe``, ``window``),
``columns``, ``rows``, ``last`` (the latest row) and ``leadlag`` (``corr(r_perp[t],
r_spot[t+lag])`` at lags ``-max_lag..max_lag`` on the last session; positive
``peak_lag`` = the perp moves first, ``leader`` says it in words).

Each bad parameter is a 400 naming it: an unknown instrument, a bare symbol ingested on
two markets (the message lists the choices), ``perp`` naming a spot instrument and the
reverse, a timeframe the engine does not track, a bad window/range/format/source.
``source=mid`` computes the basis on the legs' mid prices (top of book, as
``/api/pair?source=mid``); without quotes yet a 409 saying so.
``start``/``end``/``limit`` pick rows as in ``/api/pair`` (statistics are trailing, so a
cut equals the same rows of the whole).
"""

from __future__ import annotations

import flask
import numpy as np
import orjson

from analytics.errors import InsufficientData
from analytics.timeframes import format_timeframe
from dashapp import basis_queries
from dashapp.api import params
from dashapp.api.downloads import file_stem, iso_ms
from dashapp.api.market import _bad_param, _insufficient, json_records, table_response
from dashapp.api.params import BadParam
from dashapp.queries import rows_in

bp = flask.Blueprint("basis_api", __name__, url_prefix="/api")


@bp.route("/basis")
def basis():
    a = flask.request.args
    fmt = params.fmt(a)
    start, end, limit = params.row_range(a)
    args = basis_queries.basis_args(a)
    series = basis_queries.basis_of(**args)
    frame = series.frame(rows_in(series.ts, start, end, limit))
    if fmt == "csv":
        stem = file_stem("basis", [args["perp"], args["spot"]], args["tf_ms"],
                         frame["ts"].to_numpy())
        return table_response(frame, fmt, stem)
    last = series.last()
    if last:
        last["ts"] = str(iso_ms(np.array([last["ts"]]))[0])
    head = orjson.dumps({
        "perp": args["perp"], "spot": args["spot"],
        "perp_label": basis_queries.leg_label(args["perp"]),
        "spot_label": basis_queries.leg_label(args["spot"]),
        "timeframe": format_timeframe(args["tf_ms"]), "window": args["window"],
        "source": args["source"],
        "definition": "basis = perp - spot; basis_bps = 1e4 * (perp - spot) / spot",
        "columns": list(frame.columns), "last": last or None,
        "leadlag": {"convention": "corr(r_perp[t], r_spot[t+lag]); positive lag = perp "
                                  "moves first", **series.leadlag.as_dict()},
    })

    def body():
        yield head[:-1] + b',"rows":'
        yield from json_records(frame)
        yield b"}"

    if len(frame) <= 4096:
        return flask.Response(b"".join(body()), mimetype="application/json")
    return flask.Response(body(), mimetype="application/json")


bp.register_error_handler(BadParam, _bad_param)  # 400 {"error", "param"}
bp.register_error_handler(InsufficientData, _insufficient)  # 409 {"error", "needed", "have"}


def register(server: flask.Flask) -> None:
    server.register_blueprint(bp)
