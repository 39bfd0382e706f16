"""Issue 13.9: Dash callbacks trust the browser's stores.

Every callback of every page that takes a ``dcc.Store`` (property ``data``) as an input
or state is called through ``POST /_dash-update-component``, the request the browser
makes, with forged store contents: wrong types, missing and extra keys, huge and
non-finite numbers, nested junk. The app must answer each with 200/204 (a clear
message or no update), never a 500. The payloads are built from the app's own callback
map (``/_dash-dependencies``), so a new callback is covered without editing this file.
"""

from __future__ import annotations

import json
import re

import pytest

from ingest.config import parse_config

pytestmark = pytest.mark.slow

FORGED = [
    "x",
    42,
    -1.5,
    True,
    [],
    [1, 2, 3],
    ["a", None, {}],
    {},
    {"key": 5},
    {"a": 1, "b": [2], "tf": {}, "window": "60", "k": None, "seq": "x", "ts": [1]},
    {"a": "BTCUSDT", "b": "BTCUSDT", "tf": "1s", "window": 60, "regression": "ols",
     "prices": "raw", "mode": "overlay", "k": 2.0, "entry": 2.0},
    {"a": "BTCUSDT", "b": "ETHUSDT", "tf": "9y", "window": 10**12, "regression": "x",
     "prices": "raw", "mode": "pie", "k": 1e308, "entry": -1, "dataset": ["d"]},
    {"range": ["a", "b"]},
    {"range": [1, 2, 3]},
    {"key": "a|b", "sel": "x", "seq": None, "ts": "1", "since_full": [], "alerts": "x",
     "view": [None, None], "live": [1], "pending": "x"},
    {"key": "BTCUSDT|ETHUSDT", "pvalue": "0.01", "stat": None, "coint_pvalue": [1]},
    {"n": "x", "select": 5},
    {"n": -1, "select": {"a": 1}},
    {"rows": "x", "at": {}, "bars": -5, "args": [1], "first": "y", "last": None},
    {"id": "1; drop", "last": "x", "events": 7},
    {"metric": 5, "a": ["x"], "threshold": "NaN", "window": {}, "op": None},
    {"prices": {"BTCUSDT": "x"}, "bar": "y", "last": [None]},
    "9" * 5000,
]


def layout_values() -> dict:
    """Property values of every component with an id in the shell and page layouts
    (pattern ids as sorted JSON), so the inputs that are not stores get what a browser
    would send and a 500 here is the forged store's doing."""
    import dash

    from dashapp import layout as shell

    roots = [shell.shell()]
    for page in dash.page_registry.values():
        lay = page["layout"]
        roots.append(lay() if callable(lay) else lay)
    out = {}
    for root in roots:
        comps = [root, *root._traverse()] if hasattr(root, "_traverse") else [root]
        for comp in comps:
            cid = getattr(comp, "id", None)
            if cid is None:
                continue
            key = cid if isinstance(cid, str) else json.dumps(cid, sort_keys=True)
            out[key] = comp.to_plotly_json()["props"]
    return out


VALUES: dict = {}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from dashapp import create_app
    from dashapp.facade import LiveMarketData
    from ingest.runtime import Runtime

    tmp = tmp_path_factory.mktemp("forged")
    cfg = parse_config(
        ["--replay", "--market", "spot", "--replay-speed", "0", "--replay-once",
         "--db", str(tmp / "m.db"),
         "--rest-url", "off", "--port", "8998"]
    )
    rt = Runtime(cfg)
    app = create_app(LiveMarketData(rt), cache_dir=tmp / "cache")
    VALUES.update(layout_values())
    return app.server.test_client()


def _matches(spec: dict) -> list[dict]:
    """Ids in the layouts matching a wildcard id spec (its fixed keys)."""
    fixed = {k: v for k, v in spec.items() if not isinstance(v, list)}
    out = []
    for key in VALUES:
        if key.startswith("{"):
            cid = json.loads(key)
            if set(cid) == set(spec) and all(cid[k] == v for k, v in fixed.items()):
                out.append(cid)
    return out


def _concrete(spec_id: str):
    """A callback's id spec -> (concrete id(s), is ALL/ALLSMALLER): layout ids where
    the layouts have them (so ALL outputs list the real components), else index 0."""
    if not spec_id.startswith("{"):
        return spec_id, False
    d = json.loads(spec_id)
    multi = any(v in (["ALL"], ["ALLSMALLER"]) for v in d.values())
    found = _matches(d) or [{k: (0 if isinstance(v, list) else v) for k, v in d.items()}]
    return (found, True) if multi else (found[0], False)


def _entry(spec: dict, value):
    cid, multi = _concrete(spec["id"])
    if multi:
        return [{"id": c, "property": spec["property"], "value": value} for c in cid]
    return {"id": cid, "property": spec["property"], "value": value}


def _outputs(output: str) -> list:
    """The outputs of a callback's ``output`` string (``..a.b...c.d..`` or ``a.b``)."""
    text = output[2:-2] if output.startswith("..") else output
    parts = text.split("...") if output.startswith("..") else [text]
    out = []
    for part in parts:
        part = part.split("@")[0]
        spec_id, prop = part.rsplit(".", 1)
        cid, multi = _concrete(spec_id)
        out.append([{"id": c, "property": prop} for c in cid] if multi
                   else {"id": cid, "property": prop})
    return out


def store_callbacks(client) -> list[dict]:
    deps = client.get("/_dash-dependencies").get_json()
    out = []
    for cb in deps:
        if cb.get("clientside_function"):
            continue
        specs = cb["inputs"] + cb["state"]
        if any(s["property"] == "data" for s in specs):
            out.append(cb)
    return out


def _layout_value(spec: dict):
    cid, multi = _concrete(spec["id"])
    if multi:
        return None
    key = cid if isinstance(cid, str) else json.dumps(cid, sort_keys=True)
    return VALUES.get(key, {}).get(spec["property"])


def _post(client, cb: dict, forged_at: int, value):
    specs = cb["inputs"] + cb["state"]
    values = [
        value if i == forged_at else (None if s["property"] == "data" else _layout_value(s))
        for i, s in enumerate(specs)
    ]
    n_in = len(cb["inputs"])
    inputs = [_entry(s, v) for s, v in zip(cb["inputs"], values[:n_in], strict=True)]
    state = [_entry(s, v) for s, v in zip(cb["state"], values[n_in:], strict=True)]
    trigger = specs[forged_at] if forged_at < n_in else cb["inputs"][0]
    tid, multi = _concrete(trigger["id"])
    tid = (tid[0] if tid else {}) if multi else tid
    tid_text = tid if isinstance(tid, str) else json.dumps(tid, sort_keys=True,
                                                            separators=(",", ":"))
    outs = _outputs(cb["output"])
    body = {
        "output": cb["output"],
        "outputs": outs if cb["output"].startswith("..") else outs[0],
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{tid_text}.{trigger['property']}"],
    }
    return client.post("/_dash-update-component", json=body)


def test_every_store_callback_survives_forged_store_contents(client):
    callbacks = store_callbacks(client)
    names = " ".join(cb["output"] for cb in callbacks)
    # all pages with stores are covered (the map is the app's own)
    for page in ("pair-", "data-", "backtest-", "screener-", "markets-", "alerts-"):
        assert page in names, page
    failures, calls = [], 0
    for cb in callbacks:
        specs = cb["inputs"] + cb["state"]
        for i, spec in enumerate(specs):
            if spec["property"] != "data":
                continue
            for value in FORGED:
                resp = _post(client, cb, i, value)
                calls += 1
                if resp.status_code >= 500:
                    text = resp.get_data(as_text=True)
                    err = re.findall(r"(\w+Error[^<\n]{0,120})", text)
                    failures.append(
                        f"{cb['output'][:70]} <- {spec['id'][:50]}={json.dumps(value)[:40]}: "
                        f"{resp.status_code} {err[:1]}"
                    )
    assert calls > 200
    assert not failures, f"{len(failures)} of {calls} forged calls failed:\n" + "\n".join(
        failures[:60]
    )
