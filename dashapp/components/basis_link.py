"""A "basis view" link on a pair panel whose legs are one symbol on two markets.

``perp:BTCUSDT`` against ``spot:BTCUSDT`` is the basis: the panel then links to
``/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=..&window=..`` (the basis page,
:mod:`dashapp.pages.basis`). A clientside callback keeps the link in step with the A/B
pickers (no server round trip); any other pair hides it.
"""

from __future__ import annotations

from dash import MATCH, Input, Output, clientside_callback, html

from dashapp.ids import Pair

KIND = "pair-basis-link"


def link(i: int) -> html.A:
    return html.A("basis view", id=Pair.pid(KIND, i), href="/basis",
                  className="small ms-2", style={"display": "none"},
                  title="this pair is one symbol on two markets: its basis")


clientside_callback(
    """function (a, b, tf, w) {
        const split = (n) => (typeof n === "string" && n.includes(":"))
            ? [n.slice(0, n.lastIndexOf(":")), n.slice(n.lastIndexOf(":") + 1)] : null;
        const pa = split(a), pb = split(b);
        if (!pa || !pb || pa[1] !== pb[1] || pa[0] === pb[0]) {
            return ["/basis", {"display": "none"}];
        }
        const perp = pa[0].endsWith("perp") ? a : b;
        const spot = perp === a ? b : a;
        const q = new URLSearchParams({perp: perp, spot: spot, timeframe: tf || "1s",
                                       window: w || "60"});
        return ["/basis?" + q.toString(), {"display": "inline"}];
    }""",
    Output(Pair.pid(KIND, MATCH), "href"),
    Output(Pair.pid(KIND, MATCH), "style"),
    Input(Pair.pid(Pair.A, MATCH), "value"),
    Input(Pair.pid(Pair.B, MATCH), "value"),
    Input(Pair.pid(Pair.TF, MATCH), "value"),
    Input(Pair.pid(Pair.WINDOW, MATCH), "value"),
)
