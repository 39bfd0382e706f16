"""Dash application factory (nothing heavy at import time).

``create_app(services)`` registers the services, builds a multi-page Dash app whose
pages live in ``dashapp/pages`` (``dash.register_page``), serves the offline theme from
``assets/``, and mounts the HTTP API (``dashapp/api.py``) on the same Flask server.
"""

from __future__ import annotations

from pathlib import Path

import dash

from dashapp import api, layout
from dashapp.services import set_services

ROOT = Path(__file__).resolve().parent.parent


def create_app(services) -> dash.Dash:
    set_services(services)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(Path(__file__).parent / "pages"),
        assets_folder=str(ROOT / "assets"),
        title="Pairs desk",
        update_title=None,
        suppress_callback_exceptions=True,
    )
    app.layout = layout.shell
    api.register(app.server)
    return app
