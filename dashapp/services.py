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
