"""The market routes of the HTTP API: health, bars, pair series and ADF.

=====================  =====================================================================
``GET /api/health``    feed, per-symbol and store status (JSON)
``GET /api/bars``      ``symbol, timeframe=1s, format=json|csv``: closed bars of the last day,
                       ``analytics.registry.BAR_COLUMNS`` (the trades' OHLCV, then the top
                       of book as of each bucket's end: bid, ask, ..., spread_bps_twa)
``GET /api/pair``      ``a, b, timeframe=1s, window=60, regression=ols|huber|theilsen|kalman,
                       prices=raw|log, source=trade|mid, format=json|csv``: the pair
                       columns (on the legs' mids with ``source=mid``) declared in
                       ``analytics.registry.PAIR_COLUMNS`` (ts, price_a, price_b, alpha,
                       beta, spread, zscore, corr, ...), then session
``GET /api/adf``       ``a, b, timeframe=1s, window=60, regression, prices``: ADF of the spread,
                       Engle-Granger cointegration p-value, half-life (JSON)
=====================  =====================================================================

Times are ISO-8601 UTC with milliseconds (``2024-08-08T23:54:15.000Z``). A bad parameter
is a 400 ``{"error": "...", "param": "..."}``; too little data yet is a 409 with
``needed``/``have``. The routes only validate and format: the numbers come from
:mod:`dashapp.queries`, which the pages call too.

``/api/bars`` and ``/api/pair`` also take ``start`` and ``end`` (inclusive, on ``ts``;
epoch ms or ISO-8601, UTC if no offset) and ``limit`` (1-1,000,000: the latest that many
rows). A client polling ``limit=600`` gets the same 600 rows' worth of work whether the
day held has an hour or 24 in it; cut rows equal the same rows of the whole series (all
statistics are trailing). All three take ``dataset=NAME`` for an uploaded dataset
(its own timeframe by default). Live ``/api/pair`` and ``/api/adf`` exist at the
engine's tracked timeframes (1s, 1m, 5m): another is a 400 naming ``timeframe``
(``/api/bars`` resamples any multiple of 1 s, complete buckets only).

Heavy routes (``/api/pair``, ``/api/adf`` and the trader routes) run under
:mod:`dashapp.heavy`: over the size budget a 413 ``{"error", "param", "estimated_s",
"limit_s", "rows"}`` before any work; all slots busy or the time budget spent a 503
with ``Retry-After``. State-changing requests from a foreign ``Origin`` or ``Host``
are a 403 ``{"error", "reason"}`` (:mod:`dashapp.api.webguard`)."""

from __future__ import annotations

import logging

import flask
import orjson
import pandas as pd

from analytics.errors import InsufficientData
from analytics.timeframes import format_timeframe
from dashapp import heavy, job_sizes, queries
from dashapp.api import params
from dashapp.api.downloads import file_stem, frame_bytes, iso_ms
from dashapp.api.params import BadParam
from dashapp.services import get_services

log = logging.getLogger(__name__)
bp = flask.Blueprint("api", __name__, url_prefix="/api")


def json_response(payload, status: int = 200) -> flask.Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return flask.Response(body, status=status, mimetype="application/json")


JSON_CHUNK_ROWS = 4096


def json_records(frame: pd.DataFrame, chunk_rows: int = JSON_CHUNK_ROWS):
    """``frame`` (an int ``ts`` column of epoch ms) as a JSON array of records, ``ts`` as
    ISO-8601, yielded ``chunk_rows`` records at a time.

    A day of 1 s pair rows is 86,400 dicts: built whole, that is ~50 MB of Python objects
    for one request, and the allocator keeps the high-water mark. Chunked (the ISO
    strings too), a pull of any size costs one chunk's worth and starts sending at once.
    NaN and inf are written as ``null`` (orjson's rule), which is what "not defined
    yet" means here.
    """
    names = list(frame.columns)
    columns = [frame[c].to_numpy() for c in names]
    ts_at = names.index("ts")
    n = len(frame)
    yield b"["
    for lo in range(0, n, chunk_rows):
        part = [c[lo : lo + chunk_rows] for c in columns]
        part[ts_at] = iso_ms(part[ts_at])
        rows = zip(*(c.tolist() for c in part))
        body = orjson.dumps([dict(zip(names, row)) for row in rows])
        yield (b"," if lo else b"") + body[1:-1]
    yield b"]"


def table_response(frame: pd.DataFrame, fmt: str, filename: str) -> flask.Response:
    """A frame with an int ``ts`` (epoch ms) column as JSON records or CSV."""
    if fmt == "csv":
        resp = flask.Response(frame_bytes(frame, "csv"), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return resp
    if len(frame) <= JSON_CHUNK_ROWS:  # one piece: a Content-Length, no chunked encoding
        return flask.Response(b"".join(json_records(frame)), mimetype="application/json")
    return flask.Response(json_records(frame, JSON_CHUNK_ROWS), mimetype="application/json")


@bp.errorhandler(BadParam)
def _bad_param(exc: BadParam):
    return json_response({"error": str(exc), "param": exc.param}, 400)


@bp.errorhandler(InsufficientData)
def _insufficient(exc: InsufficientData):
    return json_response({"error": str(exc), "needed": exc.needed, "have": exc.have}, 409)


@bp.route("/health")
def health():
    return json_response(get_services().health())


def _known(dataset: str | None = None) -> set[str]:
    if dataset is not None:  # an uploaded dataset's symbols, never the live rings
        return set(queries.dataset_info(dataset).symbols)
    return set(get_services().names())


def _resolver(dataset: str | None):
    """The facade's instrument resolution for live data (``spot:BTCUSDT`` in a run
    that names it ``BTCUSDT``); a dataset's symbols are matched as typed."""
    return None if dataset is not None else get_services().resolve


def _dataset(a) -> str | None:
    """``dataset=NAME`` (an uploaded dataset) or None for live data."""
    raw = a.get("dataset")
    if raw is None or str(raw).strip() == "":
        return None
    return queries.dataset_info(str(raw).strip()).name


def _timeframe(a, dataset: str | None) -> int:
    """``timeframe``; for a dataset it defaults to the dataset's own timeframe."""
    if dataset is not None and not str(a.get("timeframe") or "").strip():
        return queries.dataset_info(dataset).tf_ms
    return params.timeframe(a)


@bp.route("/bars")
def bars():
    a = flask.request.args
    dataset = _dataset(a)
    symbol = params.symbol(a, "symbol", _known(dataset), _resolver(dataset))
    tf = _timeframe(a, dataset)
    fmt = params.fmt(a)
    start, end, limit = params.row_range(a)
    frame = queries.bars_frame(symbol, tf, dataset=dataset, start=start, end=end, limit=limit)
    return table_response(frame, fmt, file_stem("bars", [symbol], tf, frame["ts"].to_numpy()))


def _pair_args(a, *, dataset: str | None = None) -> dict:
    known = _known(dataset)
    sym_a = params.symbol(a, "a", known, _resolver(dataset))
    sym_b = params.symbol(a, "b", known, _resolver(dataset))
    if sym_a == sym_b:
        raise BadParam("b", "must differ from a")
    tf_ms = _timeframe(a, dataset)
    if dataset is None:  # live pairs are tracked at the engine's timeframes only
        tracked = get_services().timeframes()
        if tf_ms not in tracked:
            names = ", ".join(format_timeframe(t) for t in tracked)
            raise BadParam(
                "timeframe",
                f"live pair series exist for {names}, got {format_timeframe(tf_ms)} "
                "(bars of any multiple of 1s: /api/bars)",
            )
    return dict(
        a=sym_a,
        b=sym_b,
        tf_ms=tf_ms,
        window=params.window(a),
        regression=params.regression(a),
        prices=params.prices(a),
        source=params.source(a),
    )


@bp.route("/pair")
def pair():
    a = flask.request.args
    dataset = _dataset(a)
    args = _pair_args(a, dataset=dataset)
    fmt = params.fmt(a)
    start, end, limit = params.row_range(a)
    est = job_sizes.pair_job("pair series", **args, dataset=dataset)
    frame = heavy.run_heavy(
        est,
        lambda: queries.pair_frame(**args, dataset=dataset, start=start, end=end, limit=limit),
    )
    kind = "pair" if args["source"] == "trade" else f"pair_{args['source']}"
    return table_response(
        frame, fmt, file_stem(kind, [args["a"], args["b"]], args["tf_ms"], frame["ts"].to_numpy())
    )


@bp.route("/adf")
def adf():
    a = flask.request.args
    dataset = _dataset(a)
    args = _pair_args(a, dataset=dataset)
    est = job_sizes.pair_job("ADF", **args, dataset=dataset, extra_row_us=heavy.ADF_ROW_US)
    return json_response(heavy.run_heavy(est, lambda: queries.adf_report(**args, dataset=dataset)))


@bp.errorhandler(heavy.TooHeavy)  # before the blueprint's BadParam handler (a subclass)
def too_heavy(exc: heavy.TooHeavy):
    est = exc.estimate
    return json_response({"error": str(exc), "param": exc.param, "estimated_s": round(est.seconds, 3),
                  "limit_s": exc.limits.max_cost_s, "rows": est.rows}, 413)


def answer_query_errors(blueprint: flask.Blueprint) -> None:
    """Register on ``blueprint`` the answers of a heavy analytics route's errors: a job
    over the size budget 413 (:func:`too_heavy`; found before the BadParam handler, of
    which it is a subclass), a bad parameter 400 naming it, too little data 409 with
    ``needed``/``have``."""
    blueprint.register_error_handler(heavy.TooHeavy, too_heavy)
    blueprint.register_error_handler(
        BadParam, lambda exc: json_response({"error": str(exc), "param": exc.param}, 400))
    blueprint.register_error_handler(InsufficientData, lambda exc: json_response(
        {"error": str(exc), "needed": exc.needed, "have": exc.have}, 409))


def busy(exc: heavy.Busy):
    resp = json_response({"error": str(exc), "retry_after_s": exc.retry_after_s}, 503)
    resp.headers["Retry-After"] = str(exc.retry_after_s)
    return resp
