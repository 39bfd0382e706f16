"""Real-browser tests: ``python app.py --replay`` in a subprocess, driven by headless Chromium.

The app runs exactly as a user starts it (``app.py`` with the built-in replay server on
the bundled real tape, looped, 10x the recorded pace), once per test session, on a free
loopback port and a fresh DB. Playwright drives Debian's ``/usr/bin/chromium`` (never a
downloaded browser). There is no skip: without Chromium these tests FAIL with a message
saying how to install it, because a browser test that skips proves nothing.

Fixtures
--------
``live_app``   base URL of the running app (``http://127.0.0.1:PORT``)
``wide_app``   base URL of the app replaying 300 perps (``--replay-universe 300``)
``app_health`` callable returning ``/api/health`` JSON
``browser``    a Playwright Chromium browser (session)
``page``       a fresh page per test; console errors and page errors fail the test
``wide_page``  the same against ``wide_app``
``shot(page, name)``  writes ``diagrams/screenshots/NAME.png`` (used by the README)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "diagrams" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
REPLAY_SPEED = "10"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run",
    "--no-default-browser-check", "--disable-quic",
]
# Chromium logs these on a closed network; they are not errors of the page.
IGNORED_CONSOLE = ("favicon.ico", "net::ERR_", "Failed to load resource")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(base: str) -> dict | None:
    try:
        return requests.get(f"{base}/api/health", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


@pytest.fixture(scope="session")
def live_app(tmp_path_factory) -> Iterator[str]:
    """``python app.py --replay`` on a free port; yields its base URL."""
    tmp = tmp_path_factory.mktemp("browser-app")

    def stored_500(base: str) -> bool:
        h = _health(base)
        return h is not None and h["store"]["rows"] > 500

    with running_app(
        ["--replay", "--market", "spot", "--replay-speed", REPLAY_SPEED, "--db", str(tmp / "browser.db")],
        tmp, ready=stored_500, timeout=60, what="app.py ready",
    ) as base:
        yield base


WIDE_UNIVERSE = 300
WIDE_READY_TRADED = 250


def _traded_instruments(health: dict | None) -> int:
    """How many instruments (``market:SYMBOL`` keys of ``/api/health`` ``symbols``) have a
    last trade; bare-name aliases of the same entry are not counted twice."""
    if not health:
        return 0
    return sum(1 for key, s in health.get("symbols", {}).items()
               if ":" in key and s.get("last_trade_id") is not None)


@pytest.fixture(scope="session")
def wide_app(tmp_path_factory) -> Iterator[str]:
    """``python app.py --replay --replay-universe 300 --market futures`` (the wide replay of
    300 perps derived from the real tapes, 10x pace) on a free port; yields its base URL
    once at least 250 instruments have traded."""
    tmp = tmp_path_factory.mktemp("browser-wide")
    with running_app(
        ["--replay", "--replay-universe", str(WIDE_UNIVERSE), "--market", "futures",
         "--replay-speed", REPLAY_SPEED, "--db", str(tmp / "wide.db")],
        tmp, ready=lambda base: _traded_instruments(_health(base)) >= WIDE_READY_TRADED,
        timeout=120, what=f"wide app ({WIDE_UNIVERSE} instruments) ready",
    ) as base:
        yield base


@contextmanager
def running_app(args: list[str], tmp: Path, *, ready: Callable[[str], bool], timeout: float,
                what: str) -> Iterator[str]:
    """``python app.py ARGS --port P`` in a subprocess (log in ``tmp/app.log``): yields its
    base URL once ``ready(base)``; fails with the log if it exits or is not ready in time;
    terminated at the end."""
    port = _free_port()
    log_path = tmp / "app.log"
    proc = subprocess.Popen(
        [sys.executable, "app.py", *args, "--port", str(port)],
        cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"app.py exited {proc.returncode}:\n{log_path.read_text()}")
            if ready(base):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not in {timeout:.0f} s:\n{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_health(live_app: str) -> Callable[[], dict]:
    return lambda: _health(live_app) or {}


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver) or set $CHROMIUM. Browser tests "
            "never skip.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_app: str):
    """A fresh page at 1280x900; any console error or uncaught page error fails the test."""
    yield from _checked_page(browser, live_app)


@pytest.fixture
def wide_page(browser, wide_app: str):
    """As ``page``, against ``wide_app`` (300 instruments)."""
    yield from _checked_page(browser, wide_app)


def _checked_page(browser, base_url: str):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, base_url=base_url
    )
    pg = context.new_page()
    errors: list[str] = []

    def on_console(msg) -> None:
        if msg.type == "error" and not any(s in msg.text for s in IGNORED_CONSOLE):
            errors.append(f"console: {msg.text}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.set_default_timeout(20_000)
    yield pg
    context.close()
    assert not errors, "browser errors:\n" + "\n".join(errors)


@pytest.fixture
def shot() -> Callable:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(pg, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        return path

    return take
