"""Downloads and uploads of the data page, as plain functions the callbacks call.

Every file goes through :mod:`dashapp.api.downloads` (CSV always, Parquet where pyarrow
is installed; names ``kind_SYMBOLS_tf_STARTZ-ENDZ``; formula-safe CSV).
"""

from __future__ import annotations

import base64
import binascii
import logging

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import html

from analytics.upload import OhlcUpload, UploadError
from dashapp import queries
from dashapp.api import downloads
from dashapp.api.datasets import parse_upload, store_parsed
from dashapp.api.params import BadParam
from dashapp.components import dataset_select
from dashapp.components.data_table import Table, export_frame, features_for
from dashapp.facade import DATASET_RE, DatasetError
from dashapp.selection import Selection
from dashapp.services import get_services

log = logging.getLogger(__name__)

#: Ticks per download (a liquid symbol-day is 3-6 M trades; read them with the API or
#: SQLite directly instead).
MAX_TICKS = 1_000_000
MAX_TICK_RANGE_MS = 86_400_000
#: The tick download's default range: the last minutes held of the symbol.
DEFAULT_TICK_MINUTES = 5
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def table_file(table: Table, request: dict | None, fmt: str) -> dict:
    """The features table exactly as the grid filters and sorts it."""
    sel = table.sel
    frame = export_frame(features_for(table), sel, request)
    ts = frame["ts"].to_numpy()
    return downloads.send_frame(
        frame, downloads.file_stem("data", [sel.a, sel.b], sel.tf_ms, ts), fmt
    )


def bars_file(sel: Selection, fmt: str) -> dict:
    """Both legs' bars in one long table (``symbol`` column): uploadable again as is."""
    parts = []
    for sym in (sel.a, sel.b):
        f = queries.bars_frame(sym, sel.tf_ms, dataset=sel.dataset)
        f.insert(0, "symbol", sym)
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True)
    stem = downloads.file_stem(
        "bars", [sel.a, sel.b], sel.tf_ms, frame["ts"].to_numpy()
    )
    return downloads.send_frame(frame, stem, fmt)


def pair_file(sel: Selection, fmt: str) -> dict:
    frame = queries.pair_frame(
        sel.a,
        sel.b,
        sel.tf_ms,
        sel.window,
        sel.regression,
        sel.prices,
        dataset=sel.dataset,
    )
    stem = downloads.file_stem(
        "pair", [sel.a, sel.b], sel.tf_ms, frame["ts"].to_numpy()
    )
    return downloads.send_frame(frame, stem, fmt)


def parse_utc(text: str | None, name: str) -> int:
    """``2024-08-08 23:55:00`` / ISO-8601 (UTC unless an offset is given) -> epoch ms."""
    if text is None or not str(text).strip():
        raise BadParam(name, "is required (UTC, e.g. 2024-08-08 23:55:00)")
    ts = pd.to_datetime(str(text).strip(), errors="coerce", utc=True)
    if pd.isna(ts):
        raise BadParam(
            name, f"{str(text)[:40]!r} is not a time (UTC, e.g. 2024-08-08 23:55:00)"
        )
    return int(ts.value // 1_000_000)


def ticks_frame(symbol: str, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Stored trades of ``symbol`` with ``start <= time < end`` (at most MAX_TICKS)."""
    if symbol not in get_services().names():
        raise BadParam(
            "symbol", f"{symbol} is not ingested (ticks exist for live symbols only)"
        )
    if end_ms <= start_ms:
        raise BadParam("end", "must be after start")
    if end_ms - start_ms > MAX_TICK_RANGE_MS:
        raise BadParam("end", "at most one day of ticks per download")
    cols = get_services().stored_trades(symbol, start_ms, end_ms, MAX_TICKS)
    return pd.DataFrame(
        {
            "ts": np.asarray(cols.time_ms, dtype=np.int64),
            "trade_id": cols.trade_id,
            "price": cols.price,
            "qty": cols.qty,
            "buyer_is_maker": cols.buyer_is_maker,
        }
    )


def tick_span(symbol: str | None) -> tuple[int, int] | None:
    """(first, last) trade time held of ``symbol`` (epoch ms), or None if none is held.

    Two indexed reads: the first and the last trade by id."""
    if not symbol or symbol not in get_services().names():
        return None
    return get_services().stored_trade_span(symbol)


def _utc_text(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime(TIME_FORMAT)


def tick_defaults(symbol: str | None) -> dict:
    """Values and placeholders of the From/To fields for ``symbol``: the last
    :data:`DEFAULT_TICK_MINUTES` minutes held (whole seconds; To is exclusive, so it is
    the second after the last trade), and as placeholders the first and last times held.
    Without ticks: empty values and placeholders saying so."""
    span = tick_span(symbol)
    if span is None:
        return {"start": None, "end": None, "start_ph": "no ticks held yet",
                "end_ph": "no ticks held yet"}
    first, last = span
    end = (last // 1000 + 1) * 1000
    start = max(first // 1000 * 1000, end - DEFAULT_TICK_MINUTES * 60_000)
    return {"start": _utc_text(start), "end": _utc_text(end),
            "start_ph": f"first held {_utc_text(first)}",
            "end_ph": f"last held {_utc_text(last)}"}


def ticks_file(symbol: str, start: str | None, end: str | None, fmt: str) -> dict:
    """Ticks of ``symbol`` in [start, end); empty fields mean the default range
    (:func:`tick_defaults`: the last minutes held)."""
    blank = [v is None or not str(v).strip() for v in (start, end)]
    if any(blank):
        d = tick_defaults(symbol)
        if d["start"] is None:
            raise BadParam("symbol", f"no ticks of {symbol} are held yet")
        start = d["start"] if blank[0] else start
        end = d["end"] if blank[1] else end
    frame = ticks_frame(symbol, parse_utc(start, "start"), parse_utc(end, "end"))
    stem = downloads.file_stem("ticks", [symbol], None, frame["ts"].to_numpy())
    return downloads.send_frame(frame, stem, fmt)


def decode_upload(contents: str) -> bytes:
    """``data:<mime>;base64,<payload>`` (what ``dcc.Upload`` gives) -> bytes."""
    try:
        _, payload = contents.split(",", 1)
        return base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error):
        raise UploadError(
            ["the browser sent an unreadable upload; try again"]
        ) from None


def drop_dataset_name(uploads: list[OhlcUpload]) -> str:
    """The one dataset a multi-file drop without a name goes into: its symbols (sorted,
    so the name does not depend on the order the browser hands the files over) and
    timeframe, ``BTCUSDT-ETHUSDT-1h`` (a pair), ``BTCUSDT-1h`` (months)."""
    symbols = sorted({s for u in uploads for s in u.symbols})
    tfs = list(dict.fromkeys(u.timeframe for u in uploads))
    name = "-".join([*symbols, *tfs])[:64].strip("_.-")
    return name if DATASET_RE.match(name) else "upload"


def _refused(name: str, problems: list[str]) -> dbc.Alert:
    return dbc.Alert(
        [
            html.Strong(f"{name}: refused, nothing was stored."),
            html.Ul([html.Li(p) for p in problems], className="mb-0 mt-1"),
        ],
        color="danger",
        className="py-2 upload-refused",
    )


def _accepted(name: str, s: dict) -> dbc.Alert:
    what = f"{', '.join(s['added'])} ({s['start']} → {s['end']})"
    if s["identical"]:
        bars = (f"{s['inserted']:,} new {s['timeframe']} bars of {what}, "
                f"{s['identical']:,} identical bars merged,")
    else:
        bars = f"{s['rows']:,} {s['timeframe']} bars of {what}"
    return dbc.Alert(
        f"{name}: {bars} stored in dataset {s['dataset']!r} "
        f"(symbols: {', '.join(s['symbols'])}).",
        color="success",
        className="py-2 upload-accepted",
    )


def upload_files(
    contents: list[str], filenames: list[str], symbol: str | None, dataset: str | None
) -> tuple[list, str | None]:
    """Store the dropped files; (one alert per file, the dataset to select).

    Files dropped together go into **one** dataset: the name given, else
    :func:`drop_dataset_name` of them all (two symbols make a pair, two months of one
    symbol append). One file without a name keeps its file-name default. Every file is
    parsed before any is stored, so the name can follow from all of them."""
    parsed: list[tuple[str, OhlcUpload | None, list[str]]] = []
    for data, name in zip(contents, filenames, strict=True):
        try:
            up = parse_upload(decode_upload(data), filename=name, symbol=symbol or None)
            parsed.append((name, up, []))
        except UploadError as exc:
            parsed.append((name, None, exc.problems))
    target = (dataset or "").strip() or None
    good = [u for _, u, _ in parsed if u is not None]
    if target is None and len(parsed) > 1 and good:
        target = drop_dataset_name(good)
    alerts, selected = [], None
    for name, up, problems in parsed:
        if up is None:
            alerts.append(_refused(name, problems))
            continue
        try:
            s = store_parsed(up, target)
        except DatasetError as exc:
            alerts.append(_refused(name, exc.problems))
            continue
        selected = s["dataset"]
        alerts.append(_accepted(name, s))
    return alerts, selected


def datasets_table() -> html.Div:
    items = get_services().datasets.list()
    if not items:
        return html.Div(
            "No datasets yet: upload a kline CSV above.", className="text-muted"
        )
    rows = []
    for d in items:
        info = d.as_dict()
        rows.append(
            html.Tr(
                [
                    html.Td(info["dataset"], className="fw-bold"),
                    html.Td(info["timeframe"]),
                    html.Td(", ".join(f"{s} ({n:,})" for s, n in info["rows"].items())),
                    html.Td(f"{info['start']} → {info['end']}", className="small"),
                ]
            )
        )
    head = html.Thead(
        html.Tr([html.Th(h) for h in ("Dataset", "TF", "Symbols (bars)", "UTC range")])
    )
    return dbc.Table([head, html.Tbody(rows)], size="sm", hover=True, className="mb-0")


def source_options() -> list[dict]:
    """The source select's options (:func:`dataset_select.options`)."""
    return dataset_select.options()


def source_choices(
    source: str | None,
    a: str | None,
    b: str | None,
    tf: str | None,
    live_tfs: tuple[str, ...],
) -> tuple[list[str], str | None, str | None, list[str], str] | None:
    """Symbols, legs, timeframes and timeframe for a source (None: unknown dataset).

    A dataset offers its own symbols, its timeframe and the usual coarser ones that are
    multiples of it (resampled exactly); legs and timeframe are kept when still offered.
    """
    name = dataset_select.dataset_of(source)
    if name is not None and get_services().datasets.get(name) is None:
        return None
    symbols = dataset_select.symbol_options(name)
    tfs = dataset_select.timeframe_options(name, live_tfs)
    a, b = dataset_select.pick_legs(symbols, a, b)
    return symbols, a, b, tfs, tf if tf in tfs else tfs[0]
