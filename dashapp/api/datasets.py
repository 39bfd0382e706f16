"""Upload and dataset routes (``/api/upload``, ``/api/datasets``), and the upload service
the data page calls too.

=============================  ===============================================================
``POST /api/upload``           multipart: ``file`` (the CSV, or a zip holding one), optional
                               ``symbol`` and ``dataset``; 200 ``{"dataset", "symbols",
                               "added", "rows", "inserted", "identical", "start", "end",
                               "timeframe"}`` or 400 ``{"error", "problems": [...]}``; 413
                               over the size cap. To an existing dataset name: adds
                               symbols, or appends to a symbol held (identical
                               overlapping bars merge, a conflicting bar is refused)
``GET /api/datasets``          ``{"datasets": [{"dataset", "timeframe", "symbols", "rows",
                               "start", "end", "created", "files"}]}``
``DELETE /api/datasets/NAME``  200 ``{"removed": NAME}`` or 404
=============================  ===============================================================

A refused file changes nothing: parsing and validation (:mod:`analytics.upload`) finish
before storage is touched, and the store's insert is one transaction
(:mod:`ingest.store`).
"""

from __future__ import annotations

import logging
import re

import flask
import orjson
from werkzeug.exceptions import RequestEntityTooLarge

from analytics.upload import MAX_UPLOAD_BYTES, OhlcUpload, UploadError, parse_ohlc_csv
from dashapp.facade import DATASET_RE, DatasetError, iso_utc
from dashapp.services import get_services

log = logging.getLogger(__name__)
bp = flask.Blueprint("data_api", __name__, url_prefix="/api")

#: The whole multipart request may exceed the file cap by this much (headers, fields).
MULTIPART_OVERHEAD = 64 * 1024


def _json(payload, status: int = 200) -> flask.Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return flask.Response(body, status=status, mimetype="application/json")


def _refused(error: str, problems: list[str], status: int = 400) -> flask.Response:
    return _json({"error": error, "problems": problems}, status)


def default_dataset_name(filename: str | None, symbols: tuple[str, ...]) -> str:
    """A dataset name from the file name (``BTCUSDT-1m-2024-01-01``) or the symbols."""
    stem = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = re.sub(r"\.(csv|zip|txt)$", "", stem, flags=re.IGNORECASE)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")[:64]
    if stem and DATASET_RE.match(stem):
        return stem
    return "-".join(symbols)[:64] or "upload"


def store_upload(
    content: bytes,
    *,
    filename: str | None = None,
    symbol: str | None = None,
    dataset: str | None = None,
) -> dict:
    """Parse, validate and store one uploaded file; the 200 summary of ``/api/upload``.

    Raises
    ------
    UploadError, DatasetError
        With ``.problems``; nothing is stored then.
    """
    return store_parsed(parse_upload(content, filename=filename, symbol=symbol), dataset)


def parse_upload(
    content: bytes, *, filename: str | None = None, symbol: str | None = None
) -> OhlcUpload:
    """Parse and validate one file (:class:`UploadError` if refused); stores nothing."""
    return parse_ohlc_csv(
        content, filename=filename, symbol=symbol, max_bytes=MAX_UPLOAD_BYTES
    )


def store_parsed(upload: OhlcUpload, dataset: str | None = None) -> dict:
    """Store a parsed upload under ``dataset`` (default: from its file name): a new
    dataset, new symbols of one, or the next part of a symbol it holds (identical
    overlapping bars merge; ``inserted`` counts the new bars, ``identical`` the merged)."""
    name = (dataset or "").strip() or default_dataset_name(upload.filename, upload.symbols)
    stored = get_services().datasets.store(name, upload)
    info = stored.info
    return {
        "dataset": info.name,
        "symbols": list(info.symbols),
        "added": list(upload.symbols),
        "rows": upload.rows,
        "inserted": sum(stored.inserted.values()),
        "identical": sum(stored.identical.values()),
        "start": iso_utc(upload.start_ms),
        "end": iso_utc(upload.end_ms),
        "timeframe": upload.timeframe,
        "kind": upload.kind,
        "filename": upload.filename,
    }


@bp.route("/upload", methods=["POST"])
def upload():
    req = flask.request
    cap = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    too_large = [f"the upload is over the cap of {MAX_UPLOAD_BYTES:,} bytes per file"]
    if req.content_length is not None and req.content_length > cap:
        return _refused("file too large", too_large, 413)
    # Also bounds a chunked body with no Content-Length (werkzeug stops reading at cap).
    req.max_content_length = cap
    try:
        fh = req.files.get("file")
        form = req.form
    except RequestEntityTooLarge:
        return _refused("file too large", too_large, 413)
    if fh is None:
        return _refused(
            "file: is required",
            [
                "send the CSV as multipart/form-data in the field 'file' "
                "(curl -F file=@BTCUSDT-1m-2024-01-01.csv)"
            ],
        )
    content = fh.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        return _refused("file too large", too_large, 413)
    try:
        summary = store_upload(
            content,
            filename=fh.filename or None,
            symbol=form.get("symbol"),
            dataset=form.get("dataset"),
        )
    except UploadError as exc:
        log.info("upload: refused %s: %s", fh.filename, exc)
        return _refused("file refused", exc.problems)
    except DatasetError as exc:
        log.info("upload: refused %s: %s", fh.filename, exc)
        return _refused("file refused", exc.problems, exc.status)
    return _json(summary)


@bp.route("/datasets", methods=["GET"])
def datasets():
    return _json({"datasets": [d.as_dict() for d in get_services().datasets.list()]})


@bp.route("/datasets/<name>", methods=["DELETE"])
def delete_dataset(name: str):
    try:
        removed = get_services().datasets.remove(name)
    except DatasetError as exc:
        return _refused("cannot remove", exc.problems, exc.status)
    if not removed:
        return _json(
            {"error": f"dataset: no such dataset: {name[:64]!r}", "param": "dataset"},
            404,
        )
    return _json({"removed": name})


def register(server: flask.Flask) -> None:
    server.register_blueprint(bp)

    @server.errorhandler(405)
    def _method_not_allowed(exc):  # JSON 405 under /api (e.g. GET /api/upload)
        if flask.request.path.startswith("/api/"):
            return _json(
                {
                    "error": f"method {flask.request.method} not allowed on "
                    f"{flask.request.path[:80]}"
                },
                405,
            )
        return exc
