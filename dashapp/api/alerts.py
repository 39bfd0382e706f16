"""HTTP API of the alert rules and events (blueprint mounted by ``dashapp.api.register``).

=================================  ====================================================
``GET /api/alerts``                every rule (JSON list)
``POST /api/alerts``               create from a JSON rule: 201 + the rule with its
                                   ``id``; 400 ``{"error", "fields": {field: message}}``
``GET /api/alerts/<id>``           one rule
``PUT /api/alerts/<id>``           replace (full rule); ``PATCH``: change some fields,
                                   e.g. ``{"enabled": false}``
``DELETE /api/alerts/<id>``        delete (its events stay in the log)
``GET /api/alerts/events``         ``since`` (ISO-8601 or epoch ms: events stored after
                                   it), ``after_id``, ``rule_id``, ``limit`` (1-10000,
                                   default 1000), ``format=json|csv``
``GET|POST /api/alerts/channels``  delivery channels; POST ``{"kind", "name", "url",
                                   "secret"?}`` -> 201 (URL masked, never the secret)
``GET|PUT|DELETE .../channels/ID`` one channel; PUT with an empty ``secret`` keeps it
``POST .../channels/ID/test``      send a sample now: ``{"ok", "status", "error",
                                   "latency_ms"}``
``GET /api/alerts/deliveries``     the delivery log, newest first: ``rule_id``,
                                   ``channel_id``, ``status``, ``limit`` (1-10000, 200)
=================================  ====================================================

A rule: ``{"metric": "zscore", "a": "BTCUSDT", "b": "ETHUSDT", "timeframe": "1s",
"window": 60, "regression": "ols", "prices": "raw", "op": "crosses_above",
"threshold": 2.0, "hysteresis": 0, "cooldown_s": 0}`` (single-symbol metrics take
``symbol``), answered with ``id``, ``enabled``, ``created_at``, ``updated_at``,
``description`` and ``status``. An event: ``{"id", "rule_id", "data_ts", "fired_at",
"value", "threshold"}``, times ISO-8601 UTC with milliseconds. Validation is
:func:`analytics.alerts.parse_rule`; the service is ``Runtime.alerts``.
"""

from __future__ import annotations

import logging
import math

import flask
import numpy as np
import orjson
import pandas as pd

from analytics.alerts import RuleError
from dashapp.api import params
from dashapp.api.downloads import file_stem, frame_bytes, iso_ms
from dashapp.api.params import BadParam
from dashapp.facade import AlertsReadOnly, ChannelError, ChannelNotFound, RuleNotFound
from dashapp.services import get_services

log = logging.getLogger(__name__)
bp = flask.Blueprint("alerts_api", __name__, url_prefix="/api/alerts")


def _json(payload, status: int = 200) -> flask.Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return flask.Response(body, status=status, mimetype="application/json")


def iso(ts_ms: int | None) -> str | None:
    """Epoch ms -> ``2024-08-08T23:54:15.000Z`` (None stays None)."""
    return None if ts_ms is None else str(iso_ms(np.array([ts_ms]))[0])


def rule_payload(rule: dict) -> dict:
    """The service's rule JSON with ISO times (what the API answers)."""
    out = {k: v for k, v in rule.items() if k not in ("created_ms", "updated_ms", "status")}
    out["created_at"], out["updated_at"] = iso(rule["created_ms"]), iso(rule["updated_ms"])
    st = rule["status"]
    out["status"] = {
        "armed": st["armed"],
        "last_value": st["last_value"],
        "evaluated_to": iso(st["evaluated_to_ms"]),
        "last_fired_data_ts": iso(st["last_fired_ms"]),
        "error": st["error"],
    }
    return out


def event_payload(ev) -> dict:
    return {
        "id": ev.id, "rule_id": ev.rule_id, "data_ts": iso(ev.data_ts),
        "fired_at": iso(ev.fired_ms), "value": None if not math.isfinite(ev.value) else ev.value,
        "threshold": ev.threshold,
    }


def events_frame(events) -> pd.DataFrame:
    """Events as a frame for downloads (times ISO-8601 UTC with ms, as in the JSON)."""
    data_ts = np.array([e.data_ts for e in events], dtype=np.int64)
    fired = np.array([e.fired_ms for e in events], dtype=np.int64)
    return pd.DataFrame(
        {
            "id": [e.id for e in events], "rule_id": [e.rule_id for e in events],
            "data_ts": iso_ms(data_ts).astype(object), "fired_at": iso_ms(fired).astype(object),
            "value": [e.value for e in events], "threshold": [e.threshold for e in events],
            "rule": [e.description for e in events],
        }
    )


def _body():
    try:
        data = flask.request.get_json(silent=True)
    except RecursionError:  # absurdly nested JSON: json's decoder gives up, not silently
        raise RuleError("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise RuleError("body", "must be a JSON object (Content-Type: application/json)")
    return data


@bp.errorhandler(RuleError)
def _rule_error(exc: RuleError):
    return _json({"error": f"invalid rule: {exc}", "fields": exc.fields}, 400)


@bp.errorhandler(BadParam)
def _bad_param(exc: BadParam):
    return _json({"error": str(exc), "param": exc.param}, 400)


@bp.errorhandler(RuleNotFound)
def _not_found(exc: RuleNotFound):
    return _json({"error": str(exc)}, 404)


@bp.errorhandler(ChannelError)
def _channel_error(exc: ChannelError):
    return _json({"error": f"invalid channel: {exc}", "fields": exc.fields}, 400)


@bp.errorhandler(ChannelNotFound)
def _channel_not_found(exc: ChannelNotFound):
    return _json({"error": str(exc)}, 404)


@bp.errorhandler(AlertsReadOnly)
def _read_only(exc: AlertsReadOnly):
    return _json({"error": str(exc)}, 409)


@bp.route("", methods=["GET"])
def list_rules():
    return _json([rule_payload(r) for r in get_services().alerts.rules_json()])


@bp.route("", methods=["POST"])
def create_rule():
    rule = get_services().alerts.create(_body())
    resp = _json(rule_payload(rule), 201)
    resp.headers["Location"] = f"/api/alerts/{rule['id']}"
    return resp


@bp.route("/<int:rule_id>", methods=["GET"])
def get_rule(rule_id: int):
    return _json(rule_payload(get_services().alerts.rule_json(rule_id)))


@bp.route("/<int:rule_id>", methods=["PUT", "PATCH"])
def edit_rule(rule_id: int):
    partial = flask.request.method == "PATCH"
    rule = get_services().alerts.update(rule_id, _body(), partial=partial)
    return _json(rule_payload(rule))


@bp.route("/<int:rule_id>", methods=["DELETE"])
def delete_rule(rule_id: int):
    get_services().alerts.delete(rule_id)
    return _json({"id": rule_id, "deleted": True})


@bp.route("/events", methods=["GET"])
def events():
    a = flask.request.args
    since = params.time_ms(a, "since")
    after_id = params.integer(a, "after_id", None, 0, 2**62)
    rule_id = params.integer(a, "rule_id", None, 0, 2**62)
    limit = params.integer(a, "limit", 1000, 1, 10_000)
    fmt = params.fmt(a)
    evs = get_services().alerts.events(
        since_ms=since, after_id=after_id, rule_id=rule_id, limit=limit
    )
    if fmt == "csv":
        frame = events_frame(evs)
        stem = file_stem("alerts", [], None, np.array([e.data_ts for e in evs], dtype=np.int64))
        resp = flask.Response(frame_bytes(frame, "csv"), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
        return resp
    return _json([event_payload(e) for e in evs])


# ------------------------------------------------------------------ delivery (#20)
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")


def _channel_body() -> dict:
    try:
        data = flask.request.get_json(silent=True)
    except RecursionError:
        raise ChannelError("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ChannelError("body", "must be a JSON object (Content-Type: application/json)")
    return data


@bp.route("/channels", methods=["GET"])
def list_channels():
    return _json(get_services().alerts.channels())


@bp.route("/channels", methods=["POST"])
def create_channel():
    channel = get_services().alerts.add_channel(_channel_body())
    resp = _json(channel, 201)
    resp.headers["Location"] = f"/api/alerts/channels/{channel['id']}"
    return resp


@bp.route("/channels/<int:channel_id>", methods=["GET"])
def get_channel(channel_id: int):
    return _json(get_services().alerts.channel(channel_id))


@bp.route("/channels/<int:channel_id>", methods=["PUT"])
def edit_channel(channel_id: int):
    return _json(get_services().alerts.update_channel(channel_id, _channel_body()))


@bp.route("/channels/<int:channel_id>", methods=["DELETE"])
def delete_channel(channel_id: int):
    return _json(get_services().alerts.delete_channel(channel_id))


@bp.route("/channels/<int:channel_id>/test", methods=["POST"])
def test_channel(channel_id: int):
    return _json(get_services().alerts.test_channel(channel_id))


@bp.route("/deliveries", methods=["GET"])
def deliveries():
    a = flask.request.args
    rule_id = params.integer(a, "rule_id", None, 0, 2**62)
    channel_id = params.integer(a, "channel_id", None, 0, 2**62)
    status = a.get("status")
    if status is not None and status.strip() != "":
        status = status.strip().lower()
        if status not in DELIVERY_STATUSES:
            raise BadParam("status", f"{status[:40]!r} is not one of "
                           f"{', '.join(DELIVERY_STATUSES)}")
    else:
        status = None
    limit = params.integer(a, "limit", 200, 1, 10_000)
    return _json(get_services().alerts.deliveries(
        rule_id=rule_id, channel_id=channel_id, status=status, limit=limit))


def register(server: flask.Flask) -> None:
    server.register_blueprint(bp)
