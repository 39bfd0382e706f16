"""The page shell: navbar with the live feed badge, the page container."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from dashapp import ids
from dashapp.components import alert_modal
from dashapp.services import get_services
from dashapp.status import feed_badge


def shell() -> html.Div:
    links = [
        dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"], active="exact"))
        for page in dash.page_registry.values()
    ]
    return html.Div(
        [
            dbc.Navbar(
                dbc.Container(
                    [
                        dbc.NavbarBrand("Pairs desk", href="/", className="fw-bold"),
                        dbc.Nav(links, navbar=True, className="me-auto"),
                        html.Div(id=ids.Shell.FEED_BADGE),
                    ],
                    fluid=True,
                ),
                color="dark",
                dark=True,
                className="mb-3 border-bottom border-secondary",
            ),
            dcc.Interval(id=ids.Shell.STATUS_INTERVAL, interval=1000),
            dcc.Store(id=ids.Shell.ALERT_PREFILL),
            *alert_modal.shell_parts(),  # rule modal, alert toasts, notifications
            dbc.Container(dash.page_container, fluid=True),
        ]
    )


@callback(
    Output(ids.Shell.FEED_BADGE, "children"),
    Input(ids.Shell.STATUS_INTERVAL, "n_intervals"),
)
def refresh_feed_badge(_n):
    """Every page shows whether the feed is live, in the navbar."""
    return feed_badge(get_services().feed_health())
