"""Dash application factory (nothing heavy at import time).

``create_app(market)`` registers the market facade (:class:`dashapp.facade.MarketData`,
``LiveMarketData(runtime)`` in the app), builds a multi-page Dash app whose
pages live in ``dashapp/pages`` (``dash.register_page``), serves the offline theme from
``assets/``, and mounts the HTTP API (``dashapp/api/``) on the same Flask server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dash

from dashapp import api, layout
from dashapp.facade import MarketData
from dashapp.services import set_services

ROOT = Path(__file__).resolve().parent.parent


def background_manager(cache_dir: str | Path, bus: str | None = None):
    """Background callbacks (ADF, backtests, screens) never run on the 500 ms path:
    without ``bus`` in forked processes through diskcache (at most
    ``PAIRS_HEAVY_SLOTS``, 2, at once, the others wait: :mod:`dashapp.heavy`); with
    ``--bus`` on Celery over the bus's Redis, shared by every dashboard worker
    (:mod:`dashapp.background`). Results expire after an hour."""
    from dashapp.background import manager

    return manager(cache_dir, bus)


def create_app(market: MarketData, *, cache_dir: str | Path | None = None,
               bus: str | None = None) -> dash.Dash:
    set_services(market)
    if cache_dir is None:
        cache_dir = Path(tempfile.gettempdir()) / f"pairs-desk-cache-{os.getpid()}"
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).parent / "pages"),
        assets_folder=str(ROOT / "assets"),
        title="Pairs desk",
        update_title=None,
        suppress_callback_exceptions=True,
        background_callback_manager=background_manager(cache_dir, bus),
    )
    app.layout = layout.shell
    api.register(app.server)
    return app
