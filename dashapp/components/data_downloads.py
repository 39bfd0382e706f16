"""Downloads and uploads of the data page, as plain functions the callbacks call.

Every file goes through :mod:`dashapp.downloads` (CSV always, Parquet where pyarrow
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

from analytics.timeframes import format_timeframe, parse_timeframe
from analytics.upload import UploadError
from dashapp import downloads, queries
from dashapp.components.data_table import LIVE, Selection, export_frame, features_for
from dashapp.data_api import store_upload
from dashapp.params import BadParam
from dashapp.services import get_services
from ingest.datasets import DatasetError

log = logging.getLogger(__name__)

#: Ticks per download (a liquid symbol-day is 3-6 M trades; read them with the API or
#: SQLite directly instead).
MAX_TICKS = 1_000_000
MAX_TICK_RANGE_MS = 86_400_000
#: Coarser timeframes a dataset can be resampled to (those that are multiples of its own).
DATASET_TFS = ("5s", "15s", "1m", "5m", "15m", "1h", "4h", "1d")
BAR_EXPORT_COLUMNS = ("symbol", *queries.BAR_COLUMNS)


def table_file(sel: Selection, request: dict | None, fmt: str) -> dict:
    """The features table exactly as the grid filters and sorts it."""
    frame = export_frame(features_for(sel), sel, request)
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
    if symbol not in get_services().ingestor.rings:
        raise BadParam(
            "symbol", f"{symbol} is not ingested (ticks exist for live symbols only)"
        )
    if end_ms <= start_ms:
        raise BadParam("end", "must be after start")
    if end_ms - start_ms > MAX_TICK_RANGE_MS:
        raise BadParam("end", "at most one day of ticks per download")
    cols = get_services().store.read_trades(symbol, start_ms, end_ms, limit=MAX_TICKS)
    return pd.DataFrame(
        {
            "ts": np.asarray(cols.time_ms, dtype=np.int64),
            "trade_id": cols.trade_id,
            "price": cols.price,
            "qty": cols.qty,
            "buyer_is_maker": cols.buyer_is_maker,
        }
    )


def ticks_file(symbol: str, start: str, end: str, fmt: str) -> dict:
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


def upload_files(
    contents: list[str], filenames: list[str], symbol: str | None, dataset: str | None
) -> tuple[list, str | None]:
    """Store each uploaded file; (one alert per file, the dataset to select)."""
    alerts, selected = [], None
    for data, name in zip(contents, filenames, strict=True):
        try:
            s = store_upload(
                decode_upload(data),
                filename=name,
                symbol=symbol or None,
                dataset=dataset or None,
            )
        except (UploadError, DatasetError) as exc:
            alerts.append(
                dbc.Alert(
                    [
                        html.Strong(f"{name}: refused, nothing was stored."),
                        html.Ul(
                            [html.Li(p) for p in exc.problems], className="mb-0 mt-1"
                        ),
                    ],
                    color="danger",
                    className="py-2 upload-refused",
                )
            )
            continue
        selected = s["dataset"]
        alerts.append(
            dbc.Alert(
                f"{name}: {s['rows']:,} {s['timeframe']} bars of {', '.join(s['added'])} "
                f"({s['start']} → {s['end']}) stored in dataset {s['dataset']!r} "
                f"(symbols: {', '.join(s['symbols'])}).",
                color="success",
                className="py-2 upload-accepted",
            )
        )
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
    opts = [{"label": "Live feed", "value": LIVE}]
    for d in get_services().datasets.list():
        opts.append(
            {"label": f"Dataset {d.name} ({', '.join(d.symbols)})", "value": d.name}
        )
    return opts


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
    if not source or source == LIVE:
        symbols, tfs = sorted(get_services().ingestor.rings), list(live_tfs)
    else:
        info = get_services().datasets.get(source)
        if info is None:
            return None
        symbols = list(info.symbols)
        tfs = [format_timeframe(info.tf_ms)] + [
            t
            for t in DATASET_TFS
            if (ms := parse_timeframe(t)) > info.tf_ms and ms % info.tf_ms == 0
        ]
    a = a if a in symbols else (symbols[0] if symbols else None)
    b = b if b in symbols and b != a else next((s for s in symbols if s != a), None)
    return symbols, a, b, tfs, tf if tf in tfs else tfs[0]
