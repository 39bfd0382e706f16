"""HTTP API: the ``/api/*`` routes on the Dash (Flask) server, for researchers and downloads.

One Flask blueprint per group of routes, answering from the same :mod:`dashapp.queries`
and :mod:`dashapp.trader_queries` the pages call, so both show the same numbers:

* :mod:`~dashapp.api.market`   ``/api/health``, ``/api/bars``, ``/api/pair``, ``/api/adf``;
* :mod:`~dashapp.api.trader`   ``/api/backtest``, ``/api/screener``, ``/api/leadlag``;
* :mod:`~dashapp.api.datasets` ``/api/upload``, ``/api/datasets``;
* :mod:`~dashapp.api.alerts`   ``/api/alerts``, ``/api/alerts/<id>``, ``/api/alerts/events``;
* :mod:`~dashapp.api.basis`    ``/api/basis`` (a perp against its spot);
* :mod:`~dashapp.api.market_screen` ``/api/market-screen`` (the top N, pairs ranked);

and what they share: :mod:`~dashapp.api.params` (validation: a bad value is a 400 naming
it), :mod:`~dashapp.api.downloads` (file names, formula-safe CSV, Parquet) and
:mod:`~dashapp.api.webguard` (Origin/Host checks, JSON errors of the HTTP server).
``docs/api.md`` is the reference.
"""

from __future__ import annotations

import flask


def register(server: flask.Flask) -> None:
    """Mount every route, the shared error handlers and the JSON 404 of ``/api``."""
    from dashapp import heavy
    from dashapp.api import alerts, basis, datasets, market, market_screen, trader, webguard

    webguard.register(server)  # Origin/Host checks on state-changing requests, JSON 414
    server.register_error_handler(heavy.TooHeavy, market.too_heavy)  # every blueprint's
    server.register_error_handler(heavy.Busy, market.busy)  # heavy routes (dashapp.heavy)
    server.register_blueprint(market.bp)
    trader.register(server)  # /api/backtest, /api/screener, /api/leadlag
    datasets.register(server)  # /api/upload, /api/datasets
    alerts.register(server)  # /api/alerts, /api/alerts/<id>, /api/alerts/events
    basis.register(server)  # /api/basis
    market_screen.register(server)  # /api/market-screen

    # Dash's page router catches every path (``/<path:path>`` -> 200 HTML); this more
    # specific rule keeps unknown /api URLs a JSON 404 in the full app too.
    @server.route("/api/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def _unknown_api(_rest):
        return market.json_response({"error": f"no such endpoint: {flask.request.path}"}, 404)

    @server.errorhandler(404)
    def _not_found(exc):  # JSON 404 under /api, Dash handles the rest
        if flask.request.path.startswith("/api/"):
            return market.json_response(
                {"error": f"no such endpoint: {flask.request.path}"}, 404
            )
        return exc
