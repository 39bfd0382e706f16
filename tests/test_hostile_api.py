"""Every ``/api/*`` route, discovered from Flask's url_map, under hostile parameters.

The app is built once for the module on a real :class:`~ingest.runtime.Runtime` (the
bundled tape replayed at full speed into a temporary DB) and hit through
``app.server.test_client()``.

How the parameters of a route are found without a hand-kept list: the request class
records every query key a view reads (``args.get``, ``args[...]``, ``in args``). A GET
is sent with no parameters, then again with a valid value for every key the view read,
until the set stops growing (required parameters come to light one by one). Then each
of those parameters in turn gets absurd, huge, negative, unicode and injection values
while the others stay valid.

The contract checked, for every request:

* never a 5xx, and under ``/api`` always JSON (or, for a download, the asked format);
* a 4xx carries a non-empty ``error``; if it names a ``param``, it is the one we broke;
* a value that cannot be valid for any parameter (NaN, infinities, 10^30, injection
  strings, control characters, 5,000 characters) is refused with a 400 naming the
  parameter, unless the parameter is free text (it also takes plain unicode words).

Bodies of POST/PUT/PATCH routes and path parameters (``<int:rule_id>``, ``<name>``)
get the same treatment.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import flask
import orjson
import pytest
from werkzeug.datastructures import ImmutableMultiDict

from ingest.config import parse_config

ROOT = Path(__file__).resolve().parents[1]

# Values that no parameter should accept.
ABSURD = [
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "99999999999999999999999999999",
    "-99999999999999999999",
    "' OR 1=1--",
    '"; DROP TABLE trades;--',
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00",
    "\x00",
    "\x1b[31m",
    "x" * 5000,
    "1;SELECT 1",
]
# Values a free-text parameter may accept, anything else must refuse (never crash).
SOFT = ["", " ", "-1", "-0.5", "0", "БТК", "💥", "\u202e", "[]", "{}", "null"]
# Valid values to satisfy a route's other parameters.
VALID = {
    "symbol": "spot:BTCUSDT",
    "a": "spot:BTCUSDT",
    "b": "perp:ETHUSDT",
    "timeframe": "1m",
    "tf": "1m",
    "window": "20",
    "regression": "ols",
    "prices": "raw",
    "format": "json",
    "limit": "10",
    "lookback": "3600",
    "after_id": "0",
    "max_lag": "5",
    "max_hold": "10",
    "entry": "2",
    "exit": "0.5",
    "stop": "4",
    "perp": "perp:BTCUSDT",
    "spot": "spot:BTCUSDT",
    "source": "trade",
    "fills": "last",
}
DEFAULT_VALID = "1"


class RecordingArgs(ImmutableMultiDict):
    """Query args that remember which keys the view looked at."""

    seen: list[str] = []

    def get(self, key, default=None, type=None):
        RecordingArgs.seen.append(key)
        return super().get(key, default, type)

    def __getitem__(self, key):
        RecordingArgs.seen.append(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        RecordingArgs.seen.append(key)
        return super().__contains__(key)

    def getlist(self, key, type=None):
        RecordingArgs.seen.append(key)
        return super().getlist(key, type)


class RecordingRequest(flask.Request):
    parameter_storage_class = RecordingArgs


def api_rules() -> list[tuple[str, str]]:
    """(rule, method) of every /api route, from a bare Flask app with the API mounted
    (the same blueprints create_app mounts)."""
    from dashapp import api

    server = flask.Flask("discover")
    api.register(server)
    out = []
    for rule in server.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out.append((rule.rule, method))
    return sorted(out)


RULES = api_rules()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app over the bundled spot AND perp tapes (``--replay`` without files): every
    route is hit with instrument names (``spot:BTCUSDT``), and the basis has its legs.
    One app per module: the Dash callbacks read process-global services."""
    yield from _client(tmp_path_factory, [])


def _client(tmp_path_factory, market_args: list[str]):
    from dashapp import create_app
    from dashapp.facade import LiveMarketData
    from ingest.runtime import Runtime

    db = tmp_path_factory.mktemp("hostile") / "m.db"
    cfg = parse_config(
        [
            "--replay",
            *market_args,
            "--replay-speed",
            "0",
            "--replay-once",
            "--db",
            str(db),
            "--rest-url",
            "off",
            "--port",
            "8999",
        ]
    )
    rt = Runtime(cfg)
    app = create_app(LiveMarketData(rt), cache_dir=tmp_path_factory.mktemp("cache"))
    rt.start()
    total = len(rt.replay.tape)
    deadline = time.monotonic() + 90
    while rt.ingestor.total_ticks() < total and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the bar clock closes the last bars
    app.server.request_class = RecordingRequest
    try:
        yield app.server.test_client()
    finally:
        rt.stop()


def check(resp, where: str, broken: str | None = None) -> list[str]:
    """Problems with one response (empty list = fine)."""
    problems = []
    if resp.status_code >= 500:
        problems.append(
            f"{where}: HTTP {resp.status_code} {resp.get_data(as_text=True)[:200]}"
        )
        return problems
    ctype = resp.headers.get("Content-Type", "")
    if resp.status_code >= 400:
        if "json" not in ctype:
            problems.append(f"{where}: {resp.status_code} is not JSON ({ctype})")
            return problems
        body = resp.get_json(silent=True) or {}
        if not isinstance(body.get("error"), str) or not body["error"].strip():
            problems.append(
                f"{where}: {resp.status_code} without an error message: {body}"
            )
        named = body.get("param")
        if broken is not None and named is not None and named != broken:
            problems.append(
                f"{where}: error names {named!r}, we broke {broken!r}: {body}"
            )
    return problems


def discover_params(client, rule: str) -> tuple[dict[str, str], list[str]]:
    """Grow a valid query for ``rule`` from the keys its view reads.

    Returns the query (keys with a known valid value, or that turned out required)
    and every key the view read (optional ones are left out of the query). A 400
    naming one of them moves that key on to its next candidate value."""
    query: dict[str, str] = {}
    read: list[str] = []
    tried: dict[str, int] = {}
    for _ in range(40):
        RecordingArgs.seen = []
        sent = dict(query)
        resp = client.get(rule, query_string=sent)
        new = [k for k in dict.fromkeys(RecordingArgs.seen) if k not in read]
        read += new
        for k in new:
            if k in VALID:
                query[k], tried[k] = VALID[k], 0
        body = resp.get_json(silent=True) if resp.status_code == 400 else None
        named = (body or {}).get("param")
        if named in read and (named in sent or named not in query):
            cands = ([VALID[named]] if named in VALID else []) + REQUIRED_CANDIDATES
            i = tried.get(named, -1) + 1
            if i >= len(cands):
                break
            query[named], tried[named] = cands[i], i
            continue
        if not new:
            break
    return query, read


REQUIRED_CANDIDATES = ["1", "10", "60", "300", "spot:BTCUSDT", "ols", "json"]


def _fill_path(rule: str, value: str) -> str:
    import re

    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", value, rule)


GET_RULES = [(r, m) for r, m in RULES if m == "GET" and "<" not in r]
BODY_RULES = [(r, m) for r, m in RULES if m in ("POST", "PUT", "PATCH")]
PATH_RULES = [(r, m) for r, m in RULES if "<" in r]


def test_routes_are_discovered():
    names = {r for r, _ in RULES}
    assert {"/api/health", "/api/bars", "/api/pair", "/api/adf"} <= names


@pytest.mark.parametrize(("rule", "method"), GET_RULES)
def test_get_parameters_hostile_values(client, rule, method):
    query, read = discover_params(client, rule)
    problems: list[str] = []
    for param in read:
        free_text = True
        for value in SOFT:
            resp = client.get(rule, query_string={**query, param: value})
            problems += check(resp, f"{rule}?{param}={value!r}", param)
            if value == "БТК" and resp.status_code != 200:
                free_text = False
        for value in ABSURD:
            resp = client.get(rule, query_string={**query, param: value})
            where = f"{rule}?{param}={value[:30]!r}"
            problems += check(resp, where, param)
            if not free_text and resp.status_code == 200:
                problems.append(f"{where}: accepted an absurd value")
            if resp.status_code == 400:
                body = resp.get_json(silent=True) or {}
                text = f"{body.get('param', '')} {body.get('error', '')}"
                if param not in text:
                    problems.append(f"{where}: 400 does not name {param!r}: {body}")
    # unknown junk parameters are ignored, never a crash
    resp = client.get(rule, query_string={**query, "💥": "x" * 5000, "a[b]": "{}"})
    problems += check(resp, f"{rule} with junk keys")
    assert problems == [], "\n".join(problems[:30])


JUNK_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"{",
    b"\xff\xfe\x00",
    b'{"a": ' + b"[" * 5000,
    orjson.dumps({"x": "y" * 100_000}),
]


@pytest.mark.parametrize(("rule", "method"), BODY_RULES)
def test_bodies_hostile(client, rule, method):
    path = _fill_path(rule, "1")
    problems: list[str] = []
    for body in JUNK_BODIES:
        resp = client.open(
            path, method=method, data=body, content_type="application/json"
        )
        problems += check(resp, f"{method} {path} body={body[:20]!r}")
    fields = [
        "name",
        "symbol",
        "a",
        "b",
        "metric",
        "op",
        "threshold",
        "value",
        "timeframe",
        "window",
        "cooldown_s",
        "enabled",
        "regression",
        "prices",
    ]
    for field in fields:
        for value in [*ABSURD, -1, 2**70, 1e308, None, [], {}, True]:
            resp = client.open(path, method=method, json={field: value})
            problems += check(resp, f"{method} {path} {field}={str(value)[:30]!r}")
    if "upload" in rule:
        for content in [
            b"",
            b"\x00" * 1000,
            b"ts,open\n" + b"1,x\n" * 100,
            "ts,open,high,low,close\n💥,1,1,1,1\n".encode(),
        ]:
            resp = client.post(
                path,
                data={"file": (io.BytesIO(content), "x.csv"), "symbol": "' OR 1=1--"},
                content_type="multipart/form-data",
            )
            problems += check(resp, f"POST {path} file={content[:20]!r}")
    assert problems == [], "\n".join(problems[:30])


@pytest.mark.parametrize(("rule", "method"), PATH_RULES)
def test_path_parameters_hostile(client, rule, method):
    problems: list[str] = []
    for value in [
        "0",
        "-1",
        str(2**63),
        str(2**70),
        "99999999999999999999999",
        "%27%20OR%201%3D1--",
        "%F0%9F%92%A5",
        "..%2F..%2Fetc",
        "x" * 2000,
    ]:
        path = _fill_path(rule, value)
        resp = client.open(path, method=method, json={})
        problems += check(resp, f"{method} {path[:60]}")
    assert problems == [], "\n".join(problems[:30])


def test_no_debug_mode_in_the_app(client):
    assert client.application.debug is False
    resp = client.get("/api/no-such-route")
    assert resp.status_code == 404 and resp.is_json


# ---------------------------------------------------------------------- SQL and secrets
SQL_RE = __import__("re").compile(
    r"(?is)\bSELECT\b.+\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b|\b(CREATE|DROP)\s+(TABLE|INDEX|VIEW)\b|\bPRAGMA\s|\bWHERE\s+\w+\s*(=|>|<|IN\b)"
)


def _source_files() -> list[Path]:
    return [
        p
        for d in ("ingest", "dashapp", "analytics", "benchmarks")
        for p in (ROOT / d).rglob("*.py")
    ] + [ROOT / "app.py"]


def test_sql_is_parameterized_only():
    """No SQL text is built from runtime values: no f-string, % or .format() with SQL
    in it, except PRAGMAs fed an int() (SQLite cannot bind PRAGMA arguments)."""
    import ast

    offenders = []
    for path in _source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.JoinedStr):
                parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                text = "".join(str(p) for p in parts)
                dynamic = [v for v in node.values if isinstance(v, ast.FormattedValue)]
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
            ):
                text, dynamic = node.left.value, [node.right]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and isinstance(node.func.value.value, str)
            ):
                text, dynamic = node.func.value.value, node.args
            if not text or not SQL_RE.search(text):
                continue
            if not dynamic:
                continue
            src = ast.get_source_segment(path.read_text(), node) or ""
            # int()-cast PRAGMA values and module constants (SCHEMA_VERSION) are safe
            if "PRAGMA busy_timeout" in src and "_busy_timeout_ms" in src:
                continue
            if all(
                isinstance(d, ast.FormattedValue)
                and isinstance(d.value, ast.Name)
                and d.value.id.isupper()
                for d in dynamic
            ):
                continue
            if (
                text.lstrip().startswith(("CREATE TABLE", "\nCREATE"))
                and "{" not in src
            ):
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {src[:100]}")
    assert offenders == [], "\n".join(offenders)


def test_no_secrets_in_code():
    import re

    pattern = re.compile(
        r"(?i)(api[_-]?key|api[_-]?secret|secret[_-]?key|password|passwd|token)"
        r"\s*[:=]\s*[\"'][A-Za-z0-9/+_\-]{12,}[\"']|-----BEGIN [A-Z ]*PRIVATE KEY"
        r"|X-MBX-APIKEY"
    )
    hits = [
        f"{p.relative_to(ROOT)}: {m.group(0)[:40]}"
        for p in _source_files()
        for m in pattern.finditer(p.read_text())
    ]
    assert hits == []


# ---------------------------------------------------------------------- hostile uploads
CSV_FUZZ_FILES = 1_000


def _valid_csv(rng, kind: str) -> tuple[bytes, str | None]:
    """A plausible OHLC file: generic (s/ms/iso times) or Binance klines."""
    import datetime as dt

    tf_s = rng.choice([1, 60, 300, 3600])
    n = rng.randint(1, 40)
    t0 = (1_723_161_200 // tf_s) * tf_s
    price = rng.uniform(0.01, 70_000)
    rows, out = [], []
    for i in range(n):
        o = price
        c = max(1e-8, o * (1 + rng.gauss(0, 0.01)))
        h, lo = (
            max(o, c) * (1 + rng.random() * 0.01),
            min(o, c) * (1 - rng.random() * 0.01),
        )
        v = rng.random() * 10
        rows.append((t0 + i * tf_s, o, h, lo, c, v))
        price = c
    if kind == "binance":
        for t, o, h, lo, c, v in rows:
            ms = t * 1000
            out.append(
                f"{ms},{o},{h},{lo},{c},{v},{ms + tf_s * 1000 - 1},{v * o},7,{v / 2},"
                f"{v * o / 2},0"
            )
        return ("\n".join(out) + "\n").encode(), "BTCUSDT-1m-2024-08-08.csv"
    unit = rng.choice(["s", "ms", "iso"])
    out.append(
        "timestamp,open,high,low,close,volume"
        + (",symbol" if rng.random() < 0.3 else "")
    )
    sym_col = out[0].endswith("symbol")
    for t, o, h, lo, c, v in rows:
        ts = {
            "s": str(t),
            "ms": str(t * 1000),
            "iso": dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }[unit]
        out.append(f"{ts},{o},{h},{lo},{c},{v}" + (",ETHUSDT" if sym_col else ""))
    return ("\n".join(out) + "\n").encode(), None


CSV_JUNK = [
    "NaN",
    "inf",
    "-1",
    "0",
    "1e309",
    "-0",
    "",
    " ",
    "💥",
    "'; DROP TABLE x;--",
    "=cmd|'/c calc'!A1",
    "9" * 400,
    "1,2",
    '"',
    "\x00",
    "2024-13-45T99:99:99Z",
]


def _mutate_csv(rng, content: bytes) -> bytes:
    op = rng.randrange(9)
    if op == 0:
        return content
    if op == 1:
        return content[: rng.randrange(len(content) + 1)]
    if op == 2:
        b = bytearray(content)
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    lines = content.decode("utf-8", "replace").split("\n")
    i = rng.randrange(len(lines))
    if op == 3:  # a cell replaced by junk
        cells = lines[i].split(",")
        cells[rng.randrange(len(cells))] = rng.choice(CSV_JUNK)
        lines[i] = ",".join(cells)
    elif op == 4:  # lines swapped / duplicated / dropped
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        if rng.random() < 0.5:
            lines.insert(j, lines[i])
    elif op == 5:  # a column removed everywhere
        k = rng.randrange(6)
        lines = [
            ",".join(c for n, c in enumerate(line.split(",")) if n != k)
            for line in lines
        ]
    elif op == 6:
        return b"\xef\xbb\xbf" + content.replace(b"\n", b"\r\n")
    elif op == 7:  # high below low on a row
        cells = lines[i].split(",")
        if len(cells) >= 5:
            cells[2], cells[3] = cells[3], cells[2]
            lines[i] = ",".join(cells)
    else:
        return rng.choice(
            [
                b"",
                b"\n\n\n",
                b"a,b,c\n1,2,3\n",
                content * 3,
                "ts,open,high,low,close,volume\n".encode("utf-16"),
            ]
        )
    return "\n".join(lines).encode()


def _check_upload(up) -> None:
    import math

    import numpy as np

    assert up.symbols and set(up.symbols) == set(up.bars)
    assert up.tf_ms > 0 and up.tf_ms % 1000 == 0
    total = 0
    for sym in up.symbols:
        b = up.bars[sym]
        n = len(b)
        assert n > 0
        total += n
        assert np.all(np.diff(b.ts) > 0), "times strictly increasing"
        assert np.all(b.ts % up.tf_ms == 0), "on the timeframe grid"
        for col in (b.open, b.high, b.low, b.close, b.volume):
            assert np.all(np.isfinite(col))
        assert np.all(b.low > 0) and np.all(b.volume >= 0)
        assert np.all(b.high >= np.maximum(b.open, b.close))
        assert np.all(b.low <= np.minimum(b.open, b.close)) and np.all(b.high >= b.low)
    assert up.rows == total
    assert up.start_ms == min(int(up.bars[s].ts[0]) for s in up.symbols)
    assert up.end_ms == max(int(up.bars[s].ts[-1]) for s in up.symbols)
    assert not math.isnan(up.start_ms)


def test_csv_upload_fuzz_1000_files():
    """1,000 generated CSVs (valid, then mutated): UploadError or a valid upload."""
    import random

    from analytics.upload import UploadError, parse_ohlc_csv

    rng = random.Random(SEED_CSV)
    accepted = refused = 0
    for i in range(CSV_FUZZ_FILES):
        content, name = _valid_csv(rng, "binance" if i % 3 == 0 else "generic")
        content = _mutate_csv(rng, content)
        try:
            up = parse_ohlc_csv(
                content,
                filename=name,
                symbol=None if name else "BTCUSDT",
                max_bytes=64 * 1024,
            )
        except UploadError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
            refused += 1
            continue
        _check_upload(up)
        accepted += 1
    print(f"csv fuzz: {accepted} accepted, {refused} refused")
    assert accepted > 100 and refused > 100


SEED_CSV = 8


def test_csv_upload_size_cap():
    from analytics.upload import UploadError, parse_ohlc_csv

    with pytest.raises(UploadError) as info:
        parse_ohlc_csv(b"x" * 2_000, symbol="BTCUSDT", max_bytes=1_000)
    assert any(
        "byte" in p.lower() or "large" in p.lower() or "size" in p.lower()
        for p in info.value.problems
    )


# ---------------------------------------------------------------------- issue 13 hardening
def _dash_payload() -> dict:
    return {"output": "x.children", "outputs": {"id": "x", "property": "children"},
            "inputs": [], "changedPropIds": []}


@pytest.mark.parametrize(
    ("headers", "base_url", "reason"),
    [
        ({"Origin": "http://evil.example"}, None, "origin"),
        ({"Origin": "null"}, None, "origin"),
        ({}, "http://rebound.example/", "host"),
    ],
)
def test_state_changing_routes_refuse_a_foreign_origin_or_host(client, headers, base_url,
                                                                reason):
    """Every POST/PUT/PATCH/DELETE route (Dash's callback route too) answers a foreign
    Origin or Host with a 403 JSON naming the reason, before the view runs."""
    kw = {"base_url": base_url} if base_url else {}
    paths = [(m, _fill_path(r, "1")) for r, m in RULES if m in ("POST", "PUT", "PATCH",
                                                                 "DELETE")]
    paths.append(("POST", "/_dash-update-component"))
    problems = []
    for method, path in paths:
        resp = client.open(path, method=method, json=_dash_payload(), headers=headers, **kw)
        body = resp.get_json(silent=True) or {}
        if resp.status_code != 403 or body.get("reason") != reason or not body.get("error"):
            problems.append(f"{method} {path}: {resp.status_code} {body}")
    assert len(paths) >= 5 and problems == [], "\n".join(problems)
    # the page's own callbacks (same origin) and clients without Origin still pass
    resp = client.post("/_dash-update-component", json=_dash_payload(),
                       headers={"Origin": "http://localhost"})
    assert resp.status_code != 403


HEAVY_ROUTES = {
    "/api/backtest": {"a": "spot:BTCUSDT", "b": "perp:ETHUSDT", "timeframe": "1s", "window": "30"},
    "/api/adf": {"a": "spot:BTCUSDT", "b": "perp:ETHUSDT", "timeframe": "1s", "window": "30"},
    "/api/pair": {"a": "spot:BTCUSDT", "b": "perp:ETHUSDT", "timeframe": "1s", "window": "31",
                  "regression": "huber"},
    "/api/screener": {"timeframe": "1s", "window": "30"},
    "/api/leadlag": {"a": "spot:BTCUSDT", "b": "perp:ETHUSDT", "timeframe": "1s"},
    "/api/market-screen": {"n": "4", "timeframe": "1s", "lookback": "120", "min_corr": "0"},
}


def test_heavy_routes_answer_413_over_the_size_budget_and_503_when_busy(client):
    """Each heavy route, on the real replayed tape: 413 naming a parameter and the limit
    when the job is over the size budget; 503 with Retry-After when every slot stays
    busy past the queue wait; 200 again once a slot is free."""
    import threading

    from dashapp import heavy

    assert set(HEAVY_ROUTES) <= {r for r, _ in RULES}
    problems = []
    try:
        heavy.configure(heavy.HeavyLimits(max_cost_s=1e-6))
        for path, query in HEAVY_ROUTES.items():
            resp = client.get(path, query_string=query)
            problems += check(resp, f"{path} (size)")
            body = resp.get_json(silent=True) or {}
            if resp.status_code != 413 or body.get("param") not in query \
                    and body.get("param") != "lookback" or "limit_s" not in body:
                problems.append(f"{path}: expected 413 naming a parameter, got "
                                f"{resp.status_code} {body}")
        gate = heavy.configure(heavy.HeavyLimits(slots=1, queue_wait_s=0.2,
                                                 inline_below_s=0.0))
        release, started = threading.Event(), threading.Event()
        est = heavy.Estimate("blocker", 1e6, 1, "window", "a test job")
        holder = threading.Thread(
            target=lambda: gate.run(est, lambda: (started.set(), release.wait(30))),
            daemon=True,
        )
        holder.start()
        assert started.wait(10)
        try:
            for path, query in HEAVY_ROUTES.items():
                resp = client.get(path, query_string=query)
                body = resp.get_json(silent=True) or {}
                if resp.status_code != 503 or not resp.headers.get("Retry-After") \
                        or not body.get("error"):
                    problems.append(f"{path}: expected 503 + Retry-After, got "
                                    f"{resp.status_code}")
        finally:
            release.set()
            holder.join(10)
        for path, query in HEAVY_ROUTES.items():
            resp = client.get(path, query_string=query)
            if resp.status_code != 200:
                problems.append(f"{path}: {resp.status_code} after the slot was freed")
    finally:
        heavy.configure(heavy.HeavyLimits())
    assert problems == [], "\n".join(problems)
