"""Keep a page's address bar in step with its controls, so the URL is a link to share.

:func:`sync_query` registers one clientside callback: whenever one of the given controls
changes, the query string becomes ``?name=value&...`` of the controls in the given order
(empty values left out: an absent ``dataset`` means the live feed), written with
``history.replaceState``. No navigation happens, so the pages router does not rebuild
the page and no server round trip is made.
"""

from __future__ import annotations

import json

from dash import Input, Output, clientside_callback

__all__ = ["sync_query"]


def sync_query(
    path: str, sink_id: str, fields: dict[str, str], omit: dict[str, str] | None = None
) -> None:
    """Write ``fields`` (URL parameter -> component id whose ``value`` it carries) to the
    query string of ``path`` on every change; ``sink_id`` is a ``dcc.Store`` that gets
    the query string (a callback needs an output). ``omit`` maps a parameter to the value
    that is left out of the URL (the live feed's ``dataset``)."""
    names = json.dumps(list(fields))
    skip = json.dumps(omit or {})
    clientside_callback(
        """function (...values) {
            const names = %s;
            const omit = %s;
            if (!window.location.pathname.endsWith(%s)) {
                return window.dash_clientside.no_update;
            }
            const q = new URLSearchParams();
            names.forEach((name, i) => {
                const v = values[i];
                if (v !== null && v !== undefined && String(v).trim() !== ""
                        && omit[name] !== String(v)) {
                    q.set(name, String(v).trim());
                }
            });
            const search = q.toString();
            // replaceState: no navigation, so the pages router does not rebuild the page
            window.history.replaceState(window.history.state, "",
                window.location.pathname + (search ? "?" + search : ""));
            return search;
        }""" % (names, skip, json.dumps(path)),
        Output(sink_id, "data"),
        *(Input(cid, "value") for cid in fields.values()),
        prevent_initial_call=True,
    )
