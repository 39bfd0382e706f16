"""The one place pages and API routes get the market from.

``app.py`` builds the :class:`~ingest.runtime.Runtime`, wraps it in a
:class:`~dashapp.facade.LiveMarketData` and hands that to ``create_app``, which registers
it here; callbacks call :func:`get_services` and see only the
:class:`~dashapp.facade.MarketData` protocol (copies and immutable snapshots).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dashapp.facade import MarketData
    from ingest.runtime import Runtime

_services: MarketData | None = None


def set_services(services: MarketData) -> None:
    global _services
    _services = services


def get_services() -> MarketData:
    if _services is None:
        raise RuntimeError("services are not set: call set_services() before create_app()")
    return _services


def build_services(cfg) -> Runtime:
    """The runtime of ``cfg`` (app.py's composition root calls this; tests replace it)."""
    from ingest.runtime import Runtime

    return Runtime(cfg)


def follower_config(argv: list[str] | None):
    """The app's flags (``argv``) for a helper process that serves the same numbers
    without owning the feed (the Celery worker, ``dashapp/celery_worker.py``): always
    ``--no-ingest``, never a replay; logging configured as the app's."""
    import dataclasses

    from ingest.config import configure_logging, parse_config

    cfg = dataclasses.replace(parse_config(argv), ingest=False, replay=None)
    configure_logging(cfg.log_level)
    return cfg
