"""The one place pages and API routes get shared state from.

``app.py`` builds a :class:`~ingest.runtime.Runtime` and registers it here before the
Dash app is created; callbacks call :func:`get_services`. Callbacks only *read*:
rings give copies, the engine gives immutable snapshots, the store opens its own
read connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.runtime import Runtime

_services: Runtime | None = None


def set_services(services: Runtime) -> None:
    global _services
    _services = services


def get_services() -> Runtime:
    if _services is None:
        raise RuntimeError("services are not set: call set_services() before create_app()")
    return _services


def build_services(cfg) -> Runtime:
    from ingest.runtime import Runtime

    return Runtime(cfg)
