"""A Dash page as the browser's renderer sees it, for benchmark clients.

Requests to ``/_dash-update-component`` are built from the app's own callback map
(``/_dash-dependencies``) and the page's own layout (``/_dash-layout`` plus the pages
router's answer for the path), never from hand-kept payloads: every input and state of
the callback is sent with the value the component holds, pattern-matching ids
(``ALL``) are expanded against the ids in the layout, and each answer's props are
written back into the page (a store's ``data`` feeds the next request) as the renderer
does. A signature change in a callback therefore changes the requests with it.

Any answer other than 200 (or 204, "no update") is a :class:`CallbackFailed`: a
benchmark counts it and fails, it never measures a page that is not being served.

``fetch(method, path, body) -> (status, json_or_None, n_bytes)`` is the transport: a
``requests.Session`` over HTTP (:func:`http_fetch`) or Flask's test client
(:func:`flask_client_fetch`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

Fetch = Callable[[str, str, dict | None], tuple[int, object, int]]


class CallbackFailed(RuntimeError):
    pass


def id_key(ident) -> str:
    """A component id as Dash writes it in prop ids (dict ids: sorted compact JSON)."""
    if isinstance(ident, dict):
        return json.dumps(ident, separators=(",", ":"), sort_keys=True)
    return str(ident)


def http_fetch(session, base_url: str, timeout: float = 10.0) -> Fetch:
    def fetch(method: str, path: str, body: dict | None = None):
        r = session.request(method, base_url + path, json=body, timeout=timeout)
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = None
        return r.status_code, data, len(r.content)

    return fetch


def flask_client_fetch(client) -> Fetch:
    def fetch(method: str, path: str, body: dict | None = None):
        r = client.open(path, method=method, json=body)
        raw = r.get_data()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return r.status_code, data, len(raw)

    return fetch


class DashPage:
    """The components (id -> props) of one page, and its callbacks."""

    def __init__(self, fetch: Fetch, path: str = "/", search: str = "") -> None:
        self.fetch = fetch
        self.deps: list[dict] = self._get("/_dash-dependencies")
        self.props: dict[str, dict] = {}
        self.ids: dict[str, object] = {}  # id_key -> id (str or dict), layout order
        self._walk(self._get("/_dash-layout"))
        # the pages router renders the page for the location, as on a page load
        router = self.find_callback(input_id="_pages_location", prop="pathname")
        if router is not None:
            self.set_prop("_pages_location", "pathname", path)
            self.set_prop("_pages_location", "search", search)
            self.call(router, trigger=("_pages_location", "pathname"))

    # -- layout -----------------------------------------------------------------
    def _get(self, path: str):
        status, data, _ = self.fetch("GET", path, None)
        if status != 200 or data is None:
            raise CallbackFailed(f"GET {path}: HTTP {status}")
        return data

    def _walk(self, node) -> None:
        if isinstance(node, list):
            for x in node:
                self._walk(x)
            return
        if not isinstance(node, dict) or "props" not in node:
            return
        props = node["props"]
        if "id" in props:
            key = id_key(props["id"])
            self.ids[key] = props["id"]
            self.props.setdefault(key, {}).update(
                {k: v for k, v in props.items() if k != "children"}
            )
        for v in props.values():
            if isinstance(v, (dict, list)):
                self._walk(v)

    def set_prop(self, ident, prop: str, value) -> None:
        key = id_key(ident)
        self.ids.setdefault(key, ident)
        self.props.setdefault(key, {})[prop] = value

    def get_prop(self, ident, prop: str):
        return self.props.get(id_key(ident), {}).get(prop)

    # -- callbacks --------------------------------------------------------------
    def find_callback(self, *, input_id: str | None = None, prop: str | None = None,
                      output: str | None = None) -> dict | None:
        hits = [
            d for d in self.deps
            if (output is None or output in d["output"])
            and (input_id is None or any(i["id"] == input_id and (prop is None
                                         or i["property"] == prop) for i in d["inputs"]))
        ]
        if len(hits) > 1:
            raise LookupError(f"{len(hits)} callbacks match input={input_id} output={output}")
        return hits[0] if hits else None

    def callback(self, **kw) -> dict:
        dep = self.find_callback(**kw)
        if dep is None:
            raise LookupError(f"no callback matches {kw} in /_dash-dependencies")
        return dep

    def _resolve(self, id_str: str, match=None) -> list[object] | object:
        """A dependency id: a plain id, or every layout id a wildcard spec matches
        (``MATCH`` is the ``match`` value: the renderer sends one request per panel)."""
        if not id_str.startswith("{"):
            return id_str
        spec = json.loads(id_str)
        if match is not None:
            spec = {k: (match if v == ["MATCH"] else v) for k, v in spec.items()}
        if not any(isinstance(v, list) for v in spec.values()):
            return spec
        out = []
        for ident in self.ids.values():
            if isinstance(ident, dict) and set(ident) == set(spec) and all(
                isinstance(v, list) or ident[k] == v for k, v in spec.items()
            ):
                out.append(ident)
        return out

    @staticmethod
    def _outputs(output: str) -> list[tuple[str, str]]:
        parts = output[2:-2].split("...") if output.startswith("..") else [output]
        return [tuple(p.rsplit(".", 1)) for p in parts]

    def body(self, dep: dict, trigger: tuple[object, str], match=None) -> dict:
        """The request the renderer sends when ``trigger`` (id, prop) changes
        (``match``: the value of ``MATCH`` in pattern ids, e.g. a panel's index)."""
        outputs = []
        for id_str, prop in self._outputs(dep["output"]):
            rid = self._resolve(id_str, match)
            outputs.append([{"id": i, "property": prop} for i in rid]
                           if isinstance(rid, list) else {"id": rid, "property": prop})

        def items(group: str) -> list:
            out = []
            for x in dep[group]:
                rid = self._resolve(x["id"], match)
                ids = rid if isinstance(rid, list) else [rid]
                vals = [{"id": i, "property": x["property"],
                         "value": self.get_prop(i, x["property"])} for i in ids]
                out.append(vals if isinstance(rid, list) else vals[0])
            return out

        body = {
            "output": dep["output"],
            "outputs": outputs if dep["output"].startswith("..") else outputs[0],
            "inputs": items("inputs"),
            "changedPropIds": [f"{id_key(trigger[0])}.{trigger[1]}"],
        }
        if dep["state"]:
            body["state"] = items("state")
        return body

    def call(self, dep: dict, trigger: tuple[object, str], match=None) -> int:
        """POST the callback; write its answer into the page; the body's size."""
        status, data, n = self.fetch("POST", "/_dash-update-component",
                                     self.body(dep, trigger, match))
        if status == 204:
            return n
        if status != 200 or not isinstance(data, dict) or "response" not in data:
            raise CallbackFailed(f"{dep['output'][:60]}: HTTP {status} {str(data)[:200]}")
        for key, props in data["response"].items():
            ident = json.loads(key) if key.startswith("{") else key
            for prop, value in props.items():
                if prop == "children":
                    self._walk(value)
                else:
                    self.set_prop(ident, prop, value)
        return n

    def tick(self, interval_id: str, match=None) -> int:
        """An interval fires: ``n_intervals`` + 1, then its callback."""
        n = (self.get_prop(interval_id, "n_intervals") or 0) + 1
        self.set_prop(interval_id, "n_intervals", n)
        return self.call(self.callback(input_id=interval_id, prop="n_intervals"),
                         (interval_id, "n_intervals"), match)
