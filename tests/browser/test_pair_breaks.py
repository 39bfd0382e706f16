"""The pair charts show a session break (a replay loop seam) in headless Chromium.

Its own ``app.py --replay`` at 60x the tape (a seam every ~11 s; the built-in
replay's REST answers "no such ids" for a seam, final at once). Once ``/api/pair`` reports a
break, the pair page's charts draw a dashed "session break" line there and no line
segment across it (a null point at the break).
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from tests.browser.conftest import SCREENSHOTS, _health, running_app
from tests.browser.test_pair import graph_js, pid, wait_for


@pytest.fixture(scope="module")
def looping_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("breaks-app")
    with running_app(
        ["--replay", "--market", "spot", "--replay-speed", "60", "--db", str(tmp / "breaks.db")],
        tmp,
        ready=lambda base: _health(base) is not None and bool(session_starts(base)),
        timeout=90, what="a session break",
    ) as base:
        yield base


def session_starts(base: str) -> list[str]:
    """ISO ``ts`` of the /api/pair rows that start a new session."""
    try:
        rows = requests.get(
            f"{base}/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=20", timeout=5
        ).json()
    except (requests.RequestException, ValueError):
        return []
    if not isinstance(rows, list):
        return []
    return [r["ts"] for p, r in zip(rows, rows[1:]) if r["session"] != p["session"]]


def break_state(page, kind: str) -> dict | None:
    return page.evaluate(
        "() => { const g = " + graph_js(kind) + "; if (!g || !g.data) return null;"
        " const lines = (g.layout.shapes || []).filter(s => s.name === 'session break')"
        "   .map(s => s.x0);"
        " const d = g.data[0]; const gaps = []; if (!d || !d.x) return {lines, gaps};"
        " for (let i = 1; i < d.x.length; i++) if (d.y[i] === null && lines.includes(d.x[i]))"
        "   gaps.push(d.x[i]);"
        " return {lines: lines, gaps: gaps}; }"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_pair_charts_show_the_session_break(browser, looping_app):
    starts = session_starts(looping_app)
    assert starts, "the replay must have looped"
    first_ms = int(pd.Timestamp(starts[0]).value // 1_000_000)
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  base_url=looping_app)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/pair?a=BTCUSDT&b=ETHUSDT&tf=1s&w=20&reg=ols&prices=raw")
        page.wait_for_selector(pid("pair-live-z"))
        for kind in ("pair-price-graph", "pair-spread-graph", "pair-z-graph"):
            st = wait_for(
                lambda k=kind: (s := break_state(page, k)) and first_ms in s["lines"] and s,
                timeout=40, what=f"a session break on {kind}",
            )
            # the line has a gap exactly at the break (prices: the seam's snap back is
            # not drawn as a move)
            if kind == "pair-price-graph":
                assert first_ms in st["gaps"], st
        page.screenshot(path=str(SCREENSHOTS / "pair-session-break.png"))
    finally:
        context.close()
    assert not errors, errors
