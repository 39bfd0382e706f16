#!/usr/bin/env python3
"""Architecture diagram of the app, generated from ONE model so its exports cannot drift.

    python diagrams/build.py                 # writes diagrams/architecture.{drawio,svg,png}
    python diagrams/build.py OUT_DIR         # writes the three files into OUT_DIR
    python diagrams/build.py OUT_DIR --no-png   # .drawio + .svg only (stdlib, no browser)

Edit the MODEL below (nodes, lanes, edges, grid positions), never the outputs. The layout is
computed here, deterministically (a grid whose column widths and row heights come from the
text), and both renderers draw the same boxes and the same edge polylines:

* ``architecture.drawio``: uncompressed draw.io XML. Every node that stands for a Python
  module is an ``<object module="ingest/feed.py" ...>`` so tests/test_diagram.py can check
  the diagram against the source tree. Edges carry explicit exit/entry points and waypoints,
  so draw.io shows the routing of the SVG.
* ``architecture.svg``: the same model and geometry, drawn directly (no draw.io needed).
* ``architecture.png``: the SVG rasterised by headless Chromium (``/usr/bin/chromium``, or
  ``$CHROMIUM``). A ``tEXt`` chunk ``svg-sha256`` records which SVG it was made from; the
  test compares it with the SVG generated now, without needing a browser.

``check_layout()`` refuses overlapping boxes, labels on top of boxes or of each other, and
edges that run through a box they do not connect; the build and the test both call it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
STEM = "architecture"

# --------------------------------------------------------------------------- text metrics
# Advance widths (1/1000 em) of Helvetica/Arial, which Liberation Sans matches metrically;
# used to size boxes and labels without a font library. Characters 32..126.
_W_REG = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]
_W_BOLD = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611,
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556,
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611,
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
]
_W_OTHER = {"·": 278, "→": 1000, "≤": 549, "×": 584, "–": 556, "—": 1000, "…": 1000,
            "β": 570, "α": 580, "µ": 556, "↔": 1000}

FONT = "Liberation Sans, Arial, Helvetica, sans-serif"


def text_width(text: str, size: float, bold: bool = False) -> float:
    table = _W_BOLD if bold else _W_REG
    units = 0
    for ch in text:
        o = ord(ch)
        units += table[o - 32] if 32 <= o <= 126 else _W_OTHER.get(ch, 650)
    return units * size / 1000.0


# --------------------------------------------------------------------------- styles
TITLE_SIZE = 13  # node title (bold)
BODY_SIZE = 11  # node body lines
LABEL_SIZE = 11  # edge labels
LINE_H = 1.25  # line height factor

LANE_STYLE = {
    # fill, header fill, stroke, node stroke
    "external": ("#f5f5f5", "#e0e0e0", "#9e9e9e", "#757575"),
    "ingest": ("#f1f8e9", "#dcedc8", "#7cb342", "#558b2f"),
    "analytics": ("#f3e5f5", "#e1bee7", "#8e24aa", "#7b1fa2"),
    "tools": ("#f3e5f5", "#e1bee7", "#8e24aa", "#7b1fa2"),
    "dashapp": ("#fff8e1", "#ffecb3", "#ffa000", "#e65100"),
}

EDGE_STYLE = {
    # color, width, dash (SVG/draw.io pattern or None), label color, legend text
    "flow": ("#263238", 1.6, None, "#263238", "data / control flow (arrow = direction)"),
    "tick": ("#e65100", 2.4, "7 4", "#bf360c", "500 ms path: dcc.Interval → tick widgets"),
    "bar": ("#1565c0", 2.4, "10 4 2 4", "#0d47a1", "bar-close path: 1 s bar closes"),
    "alt": ("#6d4c41", 1.5, "2 4", "#4e342e", "restart / --no-ingest paths"),
    "uses": ("#9e9e9e", 1.2, None, "#616161", "wiring: creates / registers / calls"),
}


# --------------------------------------------------------------------------- model
@dataclass
class Node:
    id: str
    title: str
    lines: tuple[str, ...]
    lane: str | None  # None: outside every lane
    col: int | tuple[int, int]  # column, or (first, last) to span columns
    row: int
    module: str | None = None  # repo-relative path of the module this node stands for
    kind: str = "module"  # module | class | external | file | entry
    # computed by layout()
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def cols(self) -> tuple[int, int]:
        return self.col if isinstance(self.col, tuple) else (self.col, self.col)


@dataclass
class Lane:
    id: str
    title: str
    subtitle: str
    cols: tuple[int, int]
    rows: tuple[int, int]
    title_align: str = "left"  # left | center | right
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


@dataclass
class Edge:
    id: str
    src: str
    dst: str
    label: str
    style: str
    exit: tuple[str, float | None]  # side (l r t b), fraction along it (None: line up)
    entry: tuple[str, float]
    route: object = None  # callable(Layout) -> list of channel coordinates, alternating axes
    # label anchor: None = middle of the path; (segment index, fraction); or ("between", row):
    # on the vertical segment that crosses the gap below `row`, between the two lanes
    label_at: tuple | None = None
    label_side: str = "center"  # center | left | right | above | below (of the anchor)
    label_dx: float = 0.0
    label_dy: float = 0.0
    points: list[tuple[float, float]] = field(default_factory=list)  # computed
    label_xy: tuple[float, float] = (0.0, 0.0)  # computed: label centre
    label_t: float = 0.0  # computed: position along the path, 0..1


# Grid: columns 0..9, rows -1 (External band), 0..5 (ingest | dashapp), 6..10 (analytics).
# ingest/ = columns 0-3 (rows 0-4); dashapp/ = columns 4-9, one row per feature (shell,
# markets, views, alerts, pair + trader tools, service functions); analytics/ below it: the
# engine and its building blocks (columns 4-6) and the tools (columns 7-9).
LANES = [
    Lane("external", "External", "outside this repo's code", (0, 9), (-1, -1)),
    Lane("ingest", "ingest/", "trades in: feed, back-fill, rings, SQLite, alerts, restart",
         (0, 3), (0, 4), "right"),
    Lane("dashapp", "dashapp/", "Dash pages, components, view builders + HTTP API (read-only)",
         (4, 10), (0, 5), "center"),
    Lane("analytics", "analytics/", "pure, no I/O: the engine, the blocks it composes",
         (4, 6), (6, 10), "right"),
    Lane("tools", "analytics/", "pure tools: trader, data, alerts",
         (7, 9), (6, 8), "center"),
]

N = Node
NODES = [
    # External
    N("ext_tapes", "sample_data/", ("recorded Binance trade tapes",
      "ws-trade .jsonl.gz · trades CSV"), "external", 0, -1, kind="external"),
    N("ext_binance", "Binance (live)", ("WebSocket wss://fstream.binance.com/market",
      "· wss://stream.binance.com:9443", "REST historicalTrades / aggTrades (back-fill)"),
      "external", (2, 3), -1, kind="external"),
    N("ext_browser", "Browser / researcher", ("Dash pages in a browser;",
      "curl or notebooks on /api/*"), "external", (4, 10), -1, kind="external"),
    # ingest/
    N("tapes", "tapes.py", ("load_tape(): recorded formats",
      "→ one time-ordered Tape"), "ingest", 0, 0, "ingest/tapes.py"),
    N("replay", "replay.py", ("ReplayServer (--replay): local", "Binance-protocol WS server,",
      "fault switches"), "ingest", 1, 0, "ingest/replay.py"),
    N("feed", "feed.py", ("TradeFeed: websocket-client thread", "backoff · watchdog ·",
      "gap detection"), "ingest", 2, 0, "ingest/feed.py"),
    N("main", "__main__.py", ("python -m ingest: a Runtime", "without the dashboard"),
      "ingest", 3, 0, "ingest/__main__.py", kind="entry"),
    N("binance", "binance.py", ("stream_url() · parse_frame()", "pure: URLs + frame parsing"),
      "ingest", 0, 1, "ingest/binance.py"),
    N("replay_rest", "replay_rest.py", ("the replay's REST port:",
      "/api/v3/historicalTrades,", "/fapi/v1/aggTrades (429/418)"),
      "ingest", 1, 1, "ingest/replay_rest.py"),
    N("pipeline", "pipeline.py", ("Ingestor: feed → ring + store", "+ engine; bar clock thread;",
      "restore() on restart"), "ingest", 2, 1, "ingest/pipeline.py"),
    N("ring", "ring.py", ("TickRing per symbol: numpy", "ring, one writer, copy reads"),
      "ingest", 3, 1, "ingest/ring.py"),
    N("follower", "DbFollower", ("in pipeline.py · --no-ingest:", "polls another process's DB"),
      "ingest", 0, 2, "ingest/pipeline.py", kind="class"),
    N("backfill", "backfill.py", ("Backfiller thread: fetches", "missing trade ids by REST,",
      "Binance or the replay's"), "ingest", 1, 2, "ingest/backfill.py"),
    N("store", "store.py", ("TickStore: queue + ONE writer", "thread; WAL; readers open",
      "their own connections"), "ingest", 2, 2, "ingest/store.py"),
    N("runtime", "runtime.py", ("Runtime: builds store, engine,", "Ingestor, source, back-fill,",
      "alerts, datasets; health()"), "ingest", 3, 2, "ingest/runtime.py"),
    N("models", "models.py", ("Trade · ControlReply ·", "ServerShutdown · BadFrame"),
      "ingest", 0, 3, "ingest/models.py"),
    N("datasets", "datasets.py", ("DatasetStore: uploaded OHLC", "sets, never mixed into",
      "the live ticks"), "ingest", 1, 3, "ingest/datasets.py"),
    N("sqlite", "SQLite file", ("data/market.db (--db)", "trades · bars_1s · gaps ·",
      "alert_* · dataset_*"), "ingest", 2, 3, kind="file"),
    N("alert_store", "alert_store.py", ("AlertStore: rules, state,", "events in the DB file",
      "(own connection, WAL)"), "ingest", 3, 3, "ingest/alert_store.py"),
    N("memory", "memory.py", ("HeapTrimmer (Runtime starts it):", "malloc_trim every 30 s,",
      "RSS → health \"process\""), "ingest", 1, 4, "ingest/memory.py"),
    N("alert_service", "alert_service.py", ("AlertService thread: rules", "on new ticks + every",
      "closed bar (alerts.py)"), "ingest", 3, 4, "ingest/alert_service.py"),
    N("writer_lock", "writer_lock.py", ("WriterLock: one ingesting", "process per DB (flock),",
      "names the holder"), "ingest", 0, 4, "ingest/writer_lock.py"),
    # outside the packages
    N("app", "app.py",
      ("composition root: CLI →", "build_services → create_app", "→ app.run()"),
      None, 0, 6, "app.py", kind="entry"),
    # dashapp/, row 0: the shell
    N("init", "__init__.py", ("create_app(services):", "Dash use_pages + API"),
      "dashapp", 4, 0, "dashapp/__init__.py"),
    N("layout", "layout.py", ("page shell: navbar,", "feed badge, alert parts"),
      "dashapp", 5, 0, "dashapp/layout.py"),
    N("status", "status.py", ("feed badge / card builders", "(pure, from health JSON)"),
      "dashapp", 6, 0, "dashapp/status.py"),
    N("ids", "ids.py", ("every component id,", "one class per page"), "dashapp", 7, 0,
      "dashapp/ids.py"),
    N("params", "params.py", ("request validation", "→ 400 BadParam"), "dashapp", 8, 0,
      "dashapp/params.py"),
    N("api", "api.py", ("Flask /api/health, bars,", "pair, adf + mounts the", "blueprints below"),
      "dashapp", 9, 0, "dashapp/api.py"),
    # row 1: markets page
    N("p_markets", "pages/markets.py", ("Markets \"/\": symbol cards,", "heatmap, feed card"),
      "dashapp", 4, 1, "dashapp/pages/markets.py"),
    N("marketsview", "marketsview.py", ("one markets refresh", "from services (no Dash)"),
      "dashapp", 5, 1, "dashapp/marketsview.py"),
    N("symbol_card", "components/symbol_card.py", ("markets widgets:", "symbol card, feed strip"),
      "dashapp", 6, 1, "dashapp/components/symbol_card.py"),
    N("kpi", "components/kpi.py", ("KPI card: label over", "a monospace value"),
      "dashapp", 7, 1, "dashapp/components/kpi.py"),
    N("downloads", "downloads.py", ("every download: CSV,", "Parquet, formula-safe"),
      "dashapp", 8, 1, "dashapp/downloads.py"),
    N("alerts_api", "alerts_api.py", ("/api/alerts: rules CRUD,", "/api/alerts/events"),
      "dashapp", 9, 1, "dashapp/alerts_api.py"),
    # row 2: services + pure builders
    N("services", "services.py", ("set/get_services():", "the shared Runtime"),
      "dashapp", 4, 2, "dashapp/services.py"),
    N("figures", "figures.py", ("pure figure builders:", "arrays → plotly dicts"),
      "dashapp", 5, 2, "dashapp/figures.py"),
    N("updates", "updates.py", ("500 ms payloads: Patch,", "extendData, card numbers"),
      "dashapp", 6, 2, "dashapp/updates.py"),
    N("downsample", "downsample.py", ("min-max downsampling,", "OHLC buckets, zoom slice"),
      "dashapp", 7, 2, "dashapp/downsample.py"),
    N("pair_panel", "components/pair_panel.py", ("one pair panel: controls,", "KPIs, charts"),
      "dashapp", 8, 2, "dashapp/components/pair_panel.py"),
    N("trader_api", "trader_api.py", ("/api/backtest,", "/api/screener, /api/leadlag"),
      "dashapp", 8, 5, "dashapp/trader_api.py"),
    # row 3: alerts
    N("alert_modal", "components/alert_modal.py", ("shell: rule modal, toasts,",
      "browser notifications"), "dashapp", 4, 3, "dashapp/components/alert_modal.py"),
    N("p_alerts", "pages/alerts.py", ("Alerts \"/alerts\": rules,", "event log, CSV"),
      "dashapp", 5, 3, "dashapp/pages/alerts.py"),
    N("p_screener", "pages/screener.py", ("Screener \"/screener\": pairs", "ranked + lead-lag"),
      "dashapp", 6, 4, "dashapp/pages/screener.py"),
    N("backtest_view", "components/backtest_view.py", ("backtest + screener", "cards, figures, grids"),
      "dashapp", 7, 3, "dashapp/components/backtest_view.py"),
    N("data_table", "components/data_table.py", ("features table: ag-grid", "filter/sort → pandas"),
      "dashapp", 8, 4, "dashapp/components/data_table.py"),
    N("data_downloads", "components/data_downloads.py", ("data page downloads", "and uploads"),
      "dashapp", 9, 3, "dashapp/components/data_downloads.py"),
    # row 4: pair page, backtest, data
    N("pairlive", "pairlive.py", ("one pair refresh: live z,", "extendData or full redraw"),
      "dashapp", 4, 4, "dashapp/pairlive.py"),
    N("p_pair", "pages/pair.py", ("Pair \"/pair\": tabs of pairs,", "URL = selection"),
      "dashapp", 5, 4, "dashapp/pages/pair.py"),
    N("p_backtest", "pages/backtest.py", ("Backtest \"/backtest\":", "z-score rule, costs"),
      "dashapp", 7, 4, "dashapp/pages/backtest.py"),
    N("p_data", "pages/data.py", ("Data \"/data\": features", "table, downloads, upload"),
      "dashapp", 8, 3, "dashapp/pages/data.py"),
    # row 5: service functions over analytics
    N("pairview", "pairview.py", ("panel from the engine:", "cached_snapshot, payloads"),
      "dashapp", 4, 5, "dashapp/pairview.py"),
    N("queries", "queries.py", ("bars_frame · pair_frame ·", "adf_report (pages + API)"),
      "dashapp", 5, 5, "dashapp/queries.py"),
    N("trader_queries", "trader_queries.py", ("backtest · screen · lead-lag", "(API + pages)"),
      "dashapp", 7, 5, "dashapp/trader_queries.py"),
    N("data_api", "data_api.py", ("POST /api/upload,", "/api/datasets"),
      "dashapp", 9, 5, "dashapp/data_api.py"),
    # column 10: guards, budgets and shared page helpers
    N("webguard", "webguard.py", ("Origin / Host check for", "state-changing requests"),
      "dashapp", 10, 0, "dashapp/webguard.py"),
    N("stores", "stores.py", ("browser stores validated", "like any input"),
      "dashapp", 10, 1, "dashapp/stores.py"),
    N("url_query", "components/url_query.py", ("address bar in step", "with a page's controls"),
      "dashapp", 10, 2, "dashapp/components/url_query.py"),
    N("dataset_select", "components/dataset_select.py", ("Source select: live", "or any dataset"),
      "dashapp", 10, 3, "dashapp/components/dataset_select.py"),
    N("heavy", "heavy.py", ("bounded pool: size, queue", "and time budgets (413/503)"),
      "dashapp", 10, 4, "dashapp/heavy.py"),
    N("job_sizes", "job_sizes.py", ("cost model of each", "heavy job"),
      "dashapp", 10, 5, "dashapp/job_sizes.py"),
    N("pairbuilds", "pairbuilds.py", ("pair builds off the", "refresh path, superseded"),
      "dashapp", 6, 3, "dashapp/pairbuilds.py"),
    # analytics/: the engine and its blocks
    N("engine", "engine.py", ("MarketEngine: bars per symbol × 1 s/1 m/5 m;",
      "PairTracker → frozen PairSnapshot"), "analytics", (4, 5), 6, "analytics/engine.py"),
    N("live", "live.py", ("IncrementalPair: β, α, spread,", "z, corr in O(1) per bar"),
      "analytics", 6, 6, "analytics/live.py"),
    N("bars", "bars.py", ("BarBuilder · bars_from_ticks", "· resample_bars"), "analytics", 4, 7,
      "analytics/bars.py"),
    N("align", "align.py", ("PairAligner · align_pair:", "union grid, carry forward"),
      "analytics", 5, 7, "analytics/align.py"),
    N("pair", "pair.py", ("pair_series: the same", "statistics, batch"), "analytics", 6, 7,
      "analytics/pair.py"),
    N("hedge", "hedge.py", ("OLS · rolling OLS ·", "Huber · Theil-Sen"), "analytics", 4, 8,
      "analytics/hedge.py"),
    N("kalman", "kalman.py", ("KalmanHedge: filtered", "β, α (no look-ahead)"), "analytics", 5, 8,
      "analytics/kalman.py"),
    N("stationarity", "stationarity.py",
      ("ADF · Engle-Granger coint ·", "half-life (statsmodels)"),
      "analytics", 6, 8, "analytics/stationarity.py"),
    N("series", "series.py", ("ColumnBuffer: bounded,", "append-only columns"), "analytics", 4, 9,
      "analytics/series.py"),
    N("spread", "spread.py", ("spread · rolling z-score", "· rolling correlation"),
      "analytics", 5, 9, "analytics/spread.py"),
    N("rolling", "rolling.py", ("window moments + O(1)", "incremental twins"), "analytics", 6, 9,
      "analytics/rolling.py"),
    N("pricestats", "pricestats.py", ("per-symbol price stats", "(KPI cards)"), "analytics", 4, 10,
      "analytics/pricestats.py"),
    N("timeframes", "timeframes.py", ("parse / format bar", "timeframes"), "analytics", 5, 10,
      "analytics/timeframes.py"),
    N("errors", "errors.py", ("AnalyticsError ·", "InsufficientData"), "analytics", 6, 10,
      "analytics/errors.py"),
    # analytics/: tools
    N("backtest", "backtest.py", ("z-score mean reversion:", "fills at t+1, costs, PnL"),
      "tools", 7, 6, "analytics/backtest.py"),
    N("features", "features.py", ("per-bar feature table", "(trailing only)"),
      "tools", 8, 6, "analytics/features.py"),
    N("upload", "upload.py", ("OHLC CSV: parse, validate,", "every problem listed"),
      "tools", 9, 6, "analytics/upload.py"),
    N("screener", "screener.py", ("every pair ranked: coint p,", "half-life, |z|, liquidity"),
      "tools", 7, 7, "analytics/screener.py"),
    N("leadlag", "leadlag.py", ("cross-correlation of", "returns at lags −k..k"),
      "tools", 8, 7, "analytics/leadlag.py"),
    N("signals", "signals.py", ("signal summary: long /", "short / flat + reasons"),
      "tools", 9, 7, "analytics/signals.py"),
    N("alerts", "alerts.py", ("alert rules: parse_rule,", "evaluate_series (pure)"),
      "tools", 7, 8, "analytics/alerts.py"),
    N("robust", "robust.py", ("exact Huber + textbook", "Theil-Sen, vectorised"),
      "tools", 8, 8, "analytics/robust.py"),
    N("sessions", "sessions.py", ("session breaks: segments,", "no window spans one"),
      "tools", 9, 8, "analytics/sessions.py"),
]
del N


# Channel helpers for routes: L.gx(i, f) is an x inside the gap right of column i,
# L.gy(r, f) a y inside the gap below row r; L.n(id) is a laid-out node.
E = Edge
EDGES = [
    # sources of trades
    E("e_tapes_in", "ext_tapes", "tapes", "files", "flow", ("b", .5), ("t", .5),
      label_at=("between", -1)),
    E("e_tape", "tapes", "replay", "Tape", "flow", ("r", .5), ("l", .5)),
    E("e_replay_ws", "replay", "feed", "WebSocket frames\n(ws://127.0.0.1)", "flow",
      ("r", .5), ("l", .5)),
    E("e_live_ws", "ext_binance", "feed", "WebSocket frames (wss)", "flow", ("b", None), ("t", .5),
      label_at=("between", -1)),
    E("e_replay_rest", "replay", "replay_rest", "same tape:\nplayed trades", "uses",
      ("b", .5), ("t", .5)),
    # hot path
    E("e_trade", "feed", "pipeline", "Trade → on_trade()\ngap → on_gap() → back-fill", "flow",
      ("b", .5), ("t", .5)),
    E("e_ring", "pipeline", "ring", "append\n(recent ticks)", "flow", ("r", .3), ("l", .3)),
    E("e_store", "pipeline", "store", "trades + closed\n1 s bars", "flow",
      ("b", .5), ("t", .5), label_side="left"),
    E("e_restore", "store", "pipeline", "restart:\nrestore()", "alt", ("t", .85), ("b", .85),
      label_side="right"),
    E("e_db", "store", "sqlite", "batches, one\ntransaction (WAL)", "flow",
      ("b", .5), ("t", .5)),
    E("e_datasets_db", "datasets", "sqlite", "upload:\none txn", "flow", ("r", .5), ("l", .5)),
    E("e_engine", "pipeline", "engine", "on_trade() + bar clock 100 ms\n→ closed bars", "flow",
      ("r", .9), ("l", .3), route=lambda L: [L.gx(2, .3)], label_at=(2, .45)),
    # gap back-fill
    E("e_rest", "backfill", "replay_rest", "--replay: GET\nhistoricalTrades", "flow",
      ("t", .5), ("b", .5)),
    E("e_backfill", "backfill", "pipeline", "on_backfill()", "flow", ("r", .3), ("l", .4),
      route=lambda L: [L.gx(1, .3)], label_at=(1, .5)),
    # --no-ingest
    E("e_follow", "follower", "pipeline", "--no-ingest:\non_trade()", "alt", ("b", .5), ("l", .8),
      route=lambda L: [L.gy(2, .5), L.gx(1, .7)], label_at=(1, .3)),
    # alert flow
    E("e_clock", "pipeline", "alert_service", "bar clock:\nclock_listeners\n100 ms", "bar",
      ("r", .6), ("l", .5), route=lambda L: [L.gx(2, .7)], label_at=(1, .55)),
    E("e_alert_store", "alert_service", "alert_store", "events + state\n(one txn)", "flow",
      ("t", .5), ("b", .5)),
    E("e_toasts", "alert_store", "alert_modal", "1 s: new events\n→ toasts", "flow",
      ("r", .5), ("l", .5)),
    # 500 ms path: page -> services -> Runtime.health() -> rings
    E("e_tick_page", "p_markets", "services", "500 ms dcc.Interval:\ntick widgets", "tick",
      ("b", .5), ("t", .5)),
    E("e_health", "services", "runtime", "health() · rings", "tick", ("l", .5), ("r", .5)),
    E("e_ring_read", "runtime", "ring", "ring.last()", "tick", ("t", .5), ("b", .5)),

    E("e_main", "main", "runtime", "", "uses", ("r", .5), ("t", .85),
      route=lambda L: [L.gx(3, .22), L.gy(1, .5)]),
    E("e_mview", "p_markets", "marketsview", "refresh()", "uses", ("r", .5), ("l", .5)),
    # pair page: 500 ms live z, bar-close extendData
    E("e_pair_tick", "p_pair", "pairlive", "500 ms:\nrefresh()", "tick", ("l", .5), ("r", .5)),
    E("e_pairview", "pairlive", "pairview", "payloads", "tick", ("b", .5), ("t", .5)),
    E("e_snapshot", "pairview", "engine", "cached_snapshot()", "tick", ("b", None), ("t", .1)),
    E("e_redraw", "engine", "pairview", "bar close:\nextendData", "bar", ("t", None),
      ("b", .8)),
    # browser and app wiring
    E("e_http", "ext_browser", "init", "HTTP: pages + callbacks", "flow", ("b", None), ("t", .5),
      label_at=("between", -1)),
    E("e_http_api", "ext_browser", "api", "HTTP /api/* (JSON / CSV)", "flow", ("b", None),
      ("t", .5), label_at=("between", -1)),
    E("e_pages", "init", "p_markets", "use_pages", "uses", ("b", .5), ("t", .5)),
    E("e_layout", "init", "layout", "app.layout", "uses", ("r", .5), ("l", .5)),
    E("e_api_p", "api", "params", "validate", "uses", ("l", .5), ("r", .5)),
    E("e_q_engine", "queries", "engine", "engine.bars() / pair():\nimmutable snapshots",
      "flow", ("b", None), ("t", .8)),
    # trader tools, data
    E("e_bt_page", "p_backtest", "trader_queries", "run", "flow", ("b", .5), ("t", .5)),
    E("e_tq", "trader_queries", "backtest", "run_backtest ·\nscreen · lead_lag", "flow",
      ("b", .5), ("t", .5)),
    E("e_data_page", "p_data", "data_table", "rows", "flow", ("b", .5), ("t", .5)),
    E("e_features", "data_table", "features", "features_for()", "flow", ("r", .5), ("r", .5),
      route=lambda L: [L.gx(8, .5)], label_at=(1, .62)),
    E("e_dd", "data_downloads", "data_api", "store_upload()", "flow", ("b", .5), ("t", .5)),
    E("e_screen_page", "p_screener", "trader_queries", "screen", "flow", ("b", .5), ("l", .5)),
    E("e_tapi", "trader_api", "trader_queries", "same\nnumbers", "flow", ("l", .5), ("r", .5)),
    E("e_blueprints", "api", "alerts_api", "blueprints", "uses", ("b", .5), ("t", .5)),
    E("e_upload", "data_api", "upload", "parse_ohlc_csv()", "flow", ("b", .5), ("t", .5)),
    # inside analytics
    E("e_live", "engine", "live", "bar close:\npair series", "bar", ("r", .5), ("l", .5)),
    E("e_builders", "engine", "bars", "BarBuilder\nper tf", "uses", ("b", None), ("t", .5)),
]
del E


# --------------------------------------------------------------------------- layout
MARGIN = 20
TOP = 64  # title block
PAD = 14  # lane inner padding
HEADER = 30  # lane header strip
NODE_PAD_X = 10
NODE_PAD_Y = 8
MIN_COL_W = 176


def node_lines(n: Node) -> list[tuple[str, float, bool]]:
    return [(n.title, TITLE_SIZE, True)] + [(t, BODY_SIZE, False) for t in n.lines]


def label_lines(e: Edge) -> list[str]:
    return e.label.split("\n")


def label_box_size(e: Edge) -> tuple[float, float]:
    lines = label_lines(e)
    w = max(text_width(t, LABEL_SIZE) for t in lines) * 1.04 + 8
    h = len(lines) * LABEL_SIZE * LINE_H + 4
    return w, h


# Gaps between columns (right of column i) and rows (below row r): the base value; layout()
# widens a gap so that the label of a straight edge crossing it fits.
COL_GAP = {0: 56, 1: 150, 2: 200, 3: 96, 4: 60, 5: 60, 6: 60, 7: 60, 8: 60, 9: 60}
ROW_GAP = {-1: 20 + 2 * PAD + HEADER + 12, 0: 54, 1: 80, 2: 60, 3: 54, 4: 54,
           5: 2 * PAD + HEADER + 70, 6: 40, 7: 40, 8: 40, 9: 40}
# app.py and the legend sit below ingest/, left of analytics/, in no lane.


class Layout:
    def __init__(self, nodes: list[Node], lanes: list[Lane], edges: list[Edge]) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.lanes = {ln.id: ln for ln in lanes}
        self.edges = edges
        self.cols = sorted({c for n in nodes for c in range(n.cols[0], n.cols[1] + 1)})
        self.rows = sorted({n.row for n in nodes})
        self._size_nodes()
        self._grid()
        self._place()
        for e in edges:
            self._route(e)
        self.legend = self._legend()
        self.width = math.ceil(max(
            [ln.x + ln.w for ln in self.lanes.values()]
            + [n.x + n.w for n in self.nodes.values()]
            + [self.legend[0] + self.legend[2]]) + MARGIN)
        self.height = math.ceil(max(
            [ln.y + ln.h for ln in self.lanes.values()]
            + [n.y + n.h for n in self.nodes.values()]
            + [self.legend[1] + self.legend[3]]) + MARGIN)

    # sizes --------------------------------------------------------------------
    def _size_nodes(self) -> None:
        self.col_w = {c: MIN_COL_W for c in self.cols}
        self.row_h = {r: 0.0 for r in self.rows}
        for n in self.nodes.values():
            lines = node_lines(n)
            w = max(text_width(t, s, b) for t, s, b in lines) + 2 * NODE_PAD_X
            h = sum(s * LINE_H for _, s, _ in lines) + 2 * NODE_PAD_Y
            n.w, n.h = w, h
            if n.cols[0] == n.cols[1]:
                self.col_w[n.col] = max(self.col_w[n.col], math.ceil(w))
            self.row_h[n.row] = max(self.row_h[n.row], math.ceil(h))

    def _grid(self) -> None:
        col_gap = dict(COL_GAP)
        row_gap = dict(ROW_GAP)
        # straight edges between neighbouring cells: make room for their labels
        for e in self.edges:
            if e.route is not None or e.label_at is not None:
                continue
            a, b = self.nodes[e.src], self.nodes[e.dst]
            lw, lh = label_box_size(e)
            if e.exit[0] in "lr" and a.row == b.row:
                i = min(a.cols[1], b.cols[1])  # the gap right of the left-hand node
                col_gap[i] = max(col_gap.get(i, 0), math.ceil(lw + 16))
            if e.exit[0] in "tb" and a.row != b.row:
                r = min(a.row, b.row)
                row_gap[r] = max(row_gap.get(r, 0), math.ceil(lh + 16))
        self.col_gap, self.row_gap = col_gap, row_gap
        x = MARGIN + PAD
        self.col_x = {}
        for c in self.cols:
            self.col_x[c] = x
            x += self.col_w[c] + col_gap.get(c, 0)
        y = TOP + PAD + HEADER
        self.row_y = {}
        for r in self.rows:
            self.row_y[r] = y
            y += self.row_h[r] + row_gap.get(r, 0)

    def _place(self) -> None:
        for n in self.nodes.values():
            c0, c1 = n.cols
            x0 = self.col_x[c0]
            x1 = self.col_x[c1] + self.col_w[c1]
            n.w = x1 - x0  # a node fills its column(s)
            n.x = round(x0 + (x1 - x0 - n.w) / 2)
            n.w = round(n.w)
            n.h = self.row_h[n.row]
            n.y = self.row_y[n.row]
        for ln in self.lanes.values():
            members = [n for n in self.nodes.values() if n.lane == ln.id]
            x0 = min(n.x for n in members) - PAD
            x1 = max(n.x + n.w for n in members) + PAD
            y0 = self.row_y[ln.rows[0]] - HEADER - PAD
            y1 = self.row_y[ln.rows[1]] + self.row_h[ln.rows[1]] + PAD
            ln.x, ln.y, ln.w, ln.h = x0, y0, x1 - x0, y1 - y0

    # channels for routes ------------------------------------------------------
    def gx(self, col: int, f: float) -> float:
        x0 = self.col_x[col] + self.col_w[col]
        return round(x0 + f * self.col_gap[col])

    def gy(self, row: int, f: float) -> float:
        y0 = self.row_y[row] + self.row_h[row]
        return round(y0 + f * self.row_gap[row])

    def n(self, node_id: str) -> Node:
        return self.nodes[node_id]

    # routing ------------------------------------------------------------------
    @staticmethod
    def port(n: Node, side: str, f: float) -> tuple[float, float]:
        if side == "l":
            return (n.x, round(n.y + f * n.h))
        if side == "r":
            return (n.x + n.w, round(n.y + f * n.h))
        if side == "t":
            return (round(n.x + f * n.w), n.y)
        return (round(n.x + f * n.w), n.y + n.h)

    def _route(self, e: Edge) -> None:
        a, b = self.nodes[e.src], self.nodes[e.dst]
        if e.exit[1] is None:  # straight: line up with the entry port
            p1 = self.port(b, *e.entry)
            p0 = (p1[0], self.port(a, e.exit[0], 0)[1]) if e.exit[0] in "tb" else \
                (self.port(a, e.exit[0], 0)[0], p1[1])
        else:
            p0 = self.port(a, *e.exit)
            p1 = self.port(b, *e.entry)
        channels = e.route(self) if e.route else []
        pts = [p0]
        horizontal = e.exit[0] in "lr"
        cur = p0
        for c in channels:
            cur = (c, cur[1]) if horizontal else (cur[0], c)
            pts.append(cur)
            horizontal = not horizontal
        # finish: one move along the current axis, then the last one into the target
        cur = (p1[0], cur[1]) if horizontal else (cur[0], p1[1])
        pts.append(cur)
        pts.append(p1)
        pts = _simplify(pts)
        last_horizontal = pts[-2][1] == pts[-1][1]
        if last_horizontal != (e.entry[0] in "lr"):
            how = "sideways" if e.entry[0] in "lr" else "vertically"
            raise ValueError(f"{e.id}: route does not end {how} into {e.dst}")
        first_horizontal = pts[0][1] == pts[1][1]
        if first_horizontal != (e.exit[0] in "lr"):
            raise ValueError(f"{e.id}: route does not leave {e.src} through its {e.exit[0]} side")
        e.points = pts
        # label position: along the whole polyline, as draw.io measures it
        lengths = [_dist(pts[i], pts[i + 1]) for i in range(len(pts) - 1)]
        total = sum(lengths)
        if e.label_at is None:
            s = total / 2
        elif e.label_at[0] == "between":
            row = e.label_at[1]
            y0 = self.row_y[row] + self.row_h[row] + PAD
            y1 = self.row_y[row] + self.row_h[row] + self.row_gap[row] - HEADER - PAD
            target = (y0 + y1) / 2
            s = 0.0
            for k in range(len(pts) - 1):
                (xa, ya), (xb, yb) = pts[k], pts[k + 1]
                if xa == xb and min(ya, yb) <= target <= max(ya, yb):
                    s += abs(target - ya)
                    break
                s += lengths[k]
            else:
                raise ValueError(f"{e.id}: no vertical segment crosses the gap below row {row}")
        else:
            k, f = e.label_at
            s = sum(lengths[:k]) + f * lengths[k]
        e.label_t = s / total
        x, y = _point_at(pts, lengths, s)
        if e.label in ("", None):
            dx = dy = 0.0
        else:
            lw, lh = label_box_size(e)
            dx = {"left": -(lw / 2 + 5), "right": lw / 2 + 5}.get(e.label_side, 0.0)
            dy = {"above": -(lh / 2 + 3), "below": lh / 2 + 3}.get(e.label_side, 0.0)
        e.label_dx = round(dx + e.label_dx, 1)
        e.label_dy = round(dy + e.label_dy, 1)
        e.label_xy = (round(x + e.label_dx, 1), round(y + e.label_dy, 1))

    # legend ------------------------------------------------------------------
    def _legend(self) -> tuple[float, float, float, float]:
        # below app.py, left of SQLite
        app = self.nodes["app"]
        x = self.lanes["ingest"].x
        y = app.y + app.h + 24
        w = max(text_width(t, BODY_SIZE) for _, _, t in legend_items()) + 62 + 12
        h = 34 + len(legend_items()) * 20 + 4
        return (x, y, w, h)


def _dist(p, q) -> float:
    return math.hypot(q[0] - p[0], q[1] - p[1])


def _point_at(pts, lengths, s):
    for i, seg in enumerate(lengths):
        if s <= seg or i == len(lengths) - 1:
            f = 0 if seg == 0 else min(1.0, s / seg)
            return (pts[i][0] + f * (pts[i + 1][0] - pts[i][0]),
                    pts[i][1] + f * (pts[i + 1][1] - pts[i][1]))
        s -= seg
    return pts[-1]


def _simplify(pts):
    out = []
    for p in pts:
        if out and out[-1] == p:
            continue
        if len(out) >= 2:
            a, b = out[-2], out[-1]
            if (a[0] == b[0] == p[0]) or (a[1] == b[1] == p[1]):
                out[-1] = p
                continue
        out.append(p)
    return out


# --------------------------------------------------------------------------- checks
def _overlap(a, b, gap=0.0) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + gap and bx < ax + aw + gap and ay < by + bh + gap and by < ay + ah + gap


def _seg_hits_box(p, q, box, shrink=1.0) -> bool:
    x, y, w, h = box
    x0, y0, x1, y1 = x + shrink, y + shrink, x + w - shrink, y + h - shrink
    if p[0] == q[0]:
        lo, hi = sorted((p[1], q[1]))
        return x0 < p[0] < x1 and lo < y1 and hi > y0
    lo, hi = sorted((p[0], q[0]))
    return y0 < p[1] < y1 and lo < x1 and hi > x0


def label_box(e: Edge) -> tuple[float, float, float, float]:
    w, h = label_box_size(e)
    return (e.label_xy[0] - w / 2, e.label_xy[1] - h / 2, w, h)


def lane_title_box(ln: Lane) -> tuple[float, float, float, float]:
    w = text_width(ln.title, 14, True) + 10 + text_width(ln.subtitle, 11)
    if ln.title_align == "left":
        x = ln.x + 8
    elif ln.title_align == "right":
        x = ln.x + ln.w - 8 - w
    else:
        x = ln.x + (ln.w - w) / 2
    return (x, ln.y + 4, w, HEADER - 6)


def check_layout(L: Layout) -> list[str]:
    """Every problem found: overlapping boxes, labels on boxes/labels, edges through boxes."""
    problems = []
    nodes = list(L.nodes.values())
    boxes = {n.id: (n.x, n.y, n.w, n.h) for n in nodes}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if _overlap(boxes[a.id], boxes[b.id], gap=8):
                problems.append(f"nodes {a.id} and {b.id} overlap or touch")
    lanes = list(L.lanes.values())
    for i, a in enumerate(lanes):
        for b in lanes[i + 1:]:
            if _overlap((a.x, a.y, a.w, a.h), (b.x, b.y, b.w, b.h)):
                problems.append(f"lanes {a.id} and {b.id} overlap")
    for n in nodes:
        for ln in lanes:
            inside = _overlap(boxes[n.id], (ln.x, ln.y, ln.w, ln.h))
            if inside != (n.lane == ln.id):
                problems.append(f"node {n.id} {'in' if inside else 'outside'} lane {ln.id}")
    legend = L.legend
    for n in nodes:
        if _overlap(boxes[n.id], legend, gap=8):
            problems.append(f"legend overlaps node {n.id}")
    for ln in lanes:
        if _overlap((ln.x, ln.y, ln.w, ln.h), legend, gap=4):
            problems.append(f"legend overlaps lane {ln.id}")
    titles = {ln.id: lane_title_box(ln) for ln in lanes}
    for ln in lanes:
        if titles[ln.id][2] > ln.w - 16:
            problems.append(f"lane title of {ln.id} is wider than the lane")
    labels = {e.id: label_box(e) for e in L.edges if e.label}
    for e in L.edges:
        lb = labels.get(e.id)
        for n in nodes:
            if lb and _overlap(lb, boxes[n.id], gap=2):
                problems.append(f"label of {e.id} overlaps node {n.id}")
        for k, t in titles.items():
            if lb and _overlap(lb, t, gap=2):
                problems.append(f"label of {e.id} overlaps the title of lane {k}")
        if lb and _overlap(lb, legend, gap=2):
            problems.append(f"label of {e.id} overlaps the legend")
        for ln in lanes:
            if lb and _overlap(lb, (ln.x, ln.y, ln.w, HEADER)):
                problems.append(f"label of {e.id} sits on the header of lane {ln.id}")
        for p, q in zip(e.points, e.points[1:]):
            for n in nodes:
                if n.id in (e.src, e.dst):
                    continue
                if _seg_hits_box(p, q, boxes[n.id], shrink=-4):
                    problems.append(f"edge {e.id} runs through node {n.id}")
            for k, t in titles.items():
                if _seg_hits_box(p, q, t, shrink=-2):
                    problems.append(f"edge {e.id} crosses the title of lane {k}")
            if _seg_hits_box(p, q, legend, shrink=-2):
                problems.append(f"edge {e.id} crosses the legend")
        # a label must not hide a different edge
        for f in L.edges:
            if f is e or not lb:
                continue
            for p, q in zip(f.points, f.points[1:]):
                if _seg_hits_box(p, q, lb, shrink=1):
                    problems.append(f"label of {e.id} covers edge {f.id}")
                    break
    ids = sorted(labels)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if _overlap(labels[a], labels[b], gap=2):
                problems.append(f"labels of {a} and {b} overlap")
    # edges must not cross each other
    segs = [(e.id, p, q) for e in L.edges for p, q in zip(e.points, e.points[1:])]
    for i, (ea, p, q) in enumerate(segs):
        for eb, r, s in segs[i + 1:]:
            if ea != eb and _cross(p, q, r, s):
                problems.append(f"edges {ea} and {eb} cross")
    return sorted(set(problems))


def _cross(p, q, r, s) -> bool:
    """Proper crossing of an axis-parallel segment pq with another one rs (not touching)."""
    ph, rh = p[1] == q[1], r[1] == s[1]
    if ph == rh:
        return False
    h0, h1, v0, v1 = (p, q, r, s) if ph else (r, s, p, q)
    x0, x1 = sorted((h0[0], h1[0]))
    y0, y1 = sorted((v0[1], v1[1]))
    return x0 < v0[0] < x1 and y0 < h0[1] < y1


# --------------------------------------------------------------------------- draw.io
def _attr(v: str) -> str:
    return escape(v, {'"': "&quot;", "\n": "&#10;"})


def _html(text: str) -> str:
    return escape(text)


def node_html(n: Node) -> str:
    body = "<br>".join(_html(t) for t in n.lines)
    return (f'<b style="font-size:{TITLE_SIZE}px">{_html(n.title)}</b>'
            + (f"<br>{body}" if body else ""))


def node_colors(n: Node) -> tuple[str, str]:
    """(fill, stroke) of a node, shared by both renderers."""
    if n.kind in ("file", "entry"):
        return ("#ffffff" if n.kind == "file" else "#fafafa", "#455a64")
    if n.kind == "external":
        return ("#ffffff", "#616161")
    return ("#ffffff", LANE_STYLE[n.lane or "ingest"][3])


def node_style(n: Node) -> str:
    fill, stroke = node_colors(n)
    if n.kind == "file":
        return ("shape=cylinder3;html=1;boundedLbl=1;size=6;"
                f"fillColor={fill};strokeColor={stroke};strokeWidth=1.3;fontSize={BODY_SIZE};"
                "fontColor=#212121;")
    style = (f"rounded=1;arcSize=8;html=1;fillColor={fill};strokeColor={stroke};"
             f"strokeWidth=1.3;fontSize={BODY_SIZE};fontColor=#212121;verticalAlign=middle;")
    if n.kind == "class":
        style += "dashed=1;dashPattern=5 3;"
    return style


def edge_style_str(e: Edge, L: Layout) -> str:
    color, width, dash, label_color, _ = EDGE_STYLE[e.style]
    a, b = L.nodes[e.src], L.nodes[e.dst]
    p0, p1 = e.points[0], e.points[-1]
    ex, ey = (p0[0] - a.x) / a.w, (p0[1] - a.y) / a.h
    nx, ny = (p1[0] - b.x) / b.w, (p1[1] - b.y) / b.h
    s = (f"html=1;rounded=0;endArrow=block;endFill=1;endSize=7;strokeColor={color};"
         f"strokeWidth={width};fontSize={LABEL_SIZE};fontColor={label_color};"
         "labelBackgroundColor=#ffffff;"
         f"exitX={ex:.4g};exitY={ey:.4g};exitDx=0;exitDy=0;exitPerimeter=0;"
         f"entryX={nx:.4g};entryY={ny:.4g};entryDx=0;entryDy=0;entryPerimeter=0;")
    if dash:
        s += f"dashed=1;dashPattern={dash};"
    return s


def _fmt(v: float) -> str:
    return f"{v:.10g}"


def _geo(x: float, y: float, w: float, h: float, indent: int = 10) -> str:
    return (" " * indent + f'<mxGeometry x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(w)}" '
            f'height="{_fmt(h)}" as="geometry"/>')


def render_drawio(L: Layout) -> str:
    out = [
        '<mxfile host="diagrams/build.py" agent="diagrams/build.py" version="24.0.0">',
        '  <diagram id="architecture" name="Architecture">',
        f'    <mxGraphModel dx="{L.width}" dy="{L.height}" grid="1" gridSize="10" guides="1" '
        'tooltips="1" connect="1" arrows="1" fold="1" page="1" pageScale="1" '
        f'pageWidth="{L.width}" pageHeight="{L.height}" math="0" shadow="0">',
        "      <root>",
        '        <mxCell id="0"/>',
        '        <mxCell id="1" parent="0"/>',
    ]
    w = out.append
    title, subtitle = TITLE
    title_html = (f"<b>{_html(title)}</b><br>"
                  f'<span style="font-size:11px;color:#616161">{_html(subtitle)}</span>')
    w(f'        <mxCell id="title" value="{_attr(title_html)}" '
      'style="text;html=1;align=left;verticalAlign=top;fontSize=18;fontColor=#212121;" '
      'vertex="1" parent="1">')
    w(_geo(MARGIN, 14, L.width - 2 * MARGIN, 44))
    w("        </mxCell>")
    for ln in L.lanes.values():
        fill, head, stroke, _ = LANE_STYLE[ln.id]
        value = (f'<b style="font-size:14px">{_html(ln.title)}</b>'
                 '&nbsp;&nbsp;<span style="font-weight:normal;font-size:11px">'
                 f'{_html(ln.subtitle)}</span>')
        w(f'        <mxCell id="lane_{ln.id}" value="{_attr(value)}" '
          f'style="swimlane;html=1;startSize={HEADER};horizontal=1;container=1;collapsible=0;'
          f'rounded=1;arcSize=2;fillColor={head};swimlaneFillColor={fill};strokeColor={stroke};'
          f'fontColor=#212121;align={ln.title_align};spacingLeft=8;spacingRight=8;" '
          'vertex="1" parent="1">')
        w(_geo(ln.x, ln.y, ln.w, ln.h))
        w("        </mxCell>")
    for n in L.nodes.values():
        parent = f"lane_{n.lane}" if n.lane else "1"
        ox, oy = (L.lanes[n.lane].x, L.lanes[n.lane].y) if n.lane else (0, 0)
        attrs = f'label="{_attr(node_html(n))}" kind="{n.kind}"'
        if n.module:
            attrs += f' module="{_attr(n.module)}"'
        w(f'        <object id="{n.id}" {attrs}>')
        w(f'          <mxCell style="{_attr(node_style(n))}" vertex="1" parent="{parent}">')
        w(_geo(n.x - ox, n.y - oy, n.w, n.h, indent=12))
        w("          </mxCell>")
        w("        </object>")
    for e in L.edges:
        value = "<br>".join(_html(t) for t in label_lines(e))
        style = _attr(edge_style_str(e, L))
        w(f'        <mxCell id="{e.id}" value="{_attr(value)}" style="{style}" '
          f'edge="1" parent="1" source="{e.src}" target="{e.dst}">')
        dx, dy = e.label_dx, e.label_dy
        rel = _fmt(round(2 * e.label_t - 1, 4))  # label position along the edge, -1..1
        w(f'          <mxGeometry x="{rel}" relative="1" as="geometry">')
        if len(e.points) > 2:
            w('            <Array as="points">')
            for x, y in e.points[1:-1]:
                w(f'              <mxPoint x="{_fmt(x)}" y="{_fmt(y)}"/>')
            w("            </Array>")
        if dx or dy:
            w(f'            <mxPoint x="{_fmt(dx)}" y="{_fmt(dy)}" as="offset"/>')
        w("          </mxGeometry>")
        w("        </mxCell>")
    # legend: a container with line samples (vertices, not edges) and captions
    lx, ly, lw, lh = L.legend
    w('        <mxCell id="legend" value="&lt;b&gt;Legend&lt;/b&gt;" style="swimlane;html=1;'
      'startSize=26;container=1;collapsible=0;rounded=1;arcSize=2;fillColor=#ffffff;'
      'swimlaneFillColor=#ffffff;strokeColor=#9e9e9e;fontSize=12;align=left;spacingLeft=8;" '
      'vertex="1" parent="1">')
    w(_geo(lx, ly, lw, lh))
    w("        </mxCell>")
    for i, item in enumerate(legend_items()):
        yy = 34 + i * 20
        kind, key, text = item
        if kind == "line":
            color, width, dash, _, _ = EDGE_STYLE[key]
            st = f"line;html=1;strokeColor={color};strokeWidth={width};"
            if dash:
                st += f"dashed=1;dashPattern={dash};"
            w(f'        <mxCell id="legend_{key}" value="" style="{_attr(st)}" vertex="1" '
              'parent="legend">')
            w(f'          <mxGeometry x="10" y="{yy + 1}" width="44" height="10" as="geometry"/>')
            w("        </mxCell>")
        else:
            st = node_style(_legend_node(key))
            w(f'        <mxCell id="legend_{key}" value="" style="{_attr(st)}" vertex="1" '
              'parent="legend">')
            w(f'          <mxGeometry x="18" y="{yy - 1}" width="28" height="14" as="geometry"/>')
            w("        </mxCell>")
        w(f'        <mxCell id="legend_{key}_text" value="{_attr(_html(text))}" '
          'style="text;html=1;align=left;verticalAlign=middle;'
          f'fontSize={BODY_SIZE};fontColor=#212121;" '
          'vertex="1" parent="legend">')
        w(_geo(62, yy - 3, lw - 70, 18))
        w("        </mxCell>")
    w("      </root>")
    w("    </mxGraphModel>")
    w("  </diagram>")
    w("</mxfile>")
    return "\n".join(out) + "\n"


TITLE = (
    "Pair-trading analytics — architecture",
    "python app.py: ingest + dashboard in one process · python -m ingest: ingest only · "
    "generated by diagrams/build.py (edit the model there, not the exports)",
)


def _legend_node(kind: str) -> Node:
    return Node("legend", "", (), "ingest", 0, 0, kind=kind)


def legend_items() -> list[tuple[str, str, str]]:
    items = [("line", k, v[4]) for k, v in EDGE_STYLE.items()]
    items += [
        ("box", "module", "module (its path: lane + name)"),
        ("box", "class", "class inside a module"),
        ("box", "entry", "entry point"),
    ]
    return items


# --------------------------------------------------------------------------- SVG
def _svg_text_lines(cx: float, cy: float, lines, color="#212121") -> list[str]:
    total = sum(s * LINE_H for _, s, _ in lines)
    y = cy - total / 2
    out = []
    for text, size, bold in lines:
        base = y + size * LINE_H / 2 + size * 0.35
        weight = ' font-weight="bold"' if bold else ""
        out.append(f'<text x="{cx:.1f}" y="{base:.1f}" font-size="{size}"{weight} '
                   f'fill="{color}" text-anchor="middle">{escape(text)}</text>')
        y += size * LINE_H
    return out


def render_svg(L: Layout) -> str:
    W, H = L.width, L.height
    o = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'font-family="{FONT}">',
        "<defs>",
    ]
    for key, (color, *_rest) in EDGE_STYLE.items():
        o.append(f'<marker id="arrow-{key}" viewBox="0 0 10 10" refX="10" refY="5" '
                 'markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" orient="auto">'
                 f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>')
    o.append("</defs>")
    o.append(f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>')
    title, subtitle = TITLE
    o.append(f'<text x="{MARGIN}" y="34" font-size="18" font-weight="bold" fill="#212121">'
             f'{escape(title)}</text>')
    o.append(f'<text x="{MARGIN}" y="52" font-size="11" fill="#616161">{escape(subtitle)}</text>')
    # lanes
    for ln in L.lanes.values():
        fill, head, stroke, _ = LANE_STYLE[ln.id]
        o.append(f'<rect x="{ln.x}" y="{ln.y}" width="{ln.w}" height="{ln.h}" rx="4" '
                 f'fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>')
        o.append(f'<path d="M{ln.x + 4},{ln.y} H{ln.x + ln.w - 4} Q{ln.x + ln.w},{ln.y} '
                 f'{ln.x + ln.w},{ln.y + 4} V{ln.y + HEADER} H{ln.x} V{ln.y + 4} '
                 f'Q{ln.x},{ln.y} {ln.x + 4},{ln.y} z" fill="{head}" stroke="{stroke}" '
                 'stroke-width="1.2"/>')
        tx, ty, tw, th = lane_title_box(ln)
        o.append(f'<text x="{tx:.1f}" y="{ln.y + 20}" fill="#212121">'
                 f'<tspan font-size="14" font-weight="bold">{escape(ln.title)}</tspan>'
                 f'<tspan font-size="11" dx="10">{escape(ln.subtitle)}</tspan></text>')
    # nodes
    for n in L.nodes.values():
        fill, stroke = node_colors(n)
        dash = ' stroke-dasharray="5 3"' if n.kind == "class" else ""
        if n.kind == "file":
            ry = 6
            o.append(f'<path d="M{n.x},{n.y + ry} V{n.y + n.h - ry} '
                     f'A{n.w / 2},{ry} 0 0 0 {n.x + n.w},{n.y + n.h - ry} V{n.y + ry} '
                     f'A{n.w / 2},{ry} 0 0 0 {n.x},{n.y + ry} z" fill="{fill}" '
                     f'stroke="{stroke}" stroke-width="1.3"/>')
            o.append(f'<path d="M{n.x},{n.y + ry} A{n.w / 2},{ry} 0 0 0 {n.x + n.w},{n.y + ry}" '
                     f'fill="none" stroke="{stroke}" stroke-width="1.3"/>')
        else:
            o.append(f'<rect x="{n.x}" y="{n.y}" width="{n.w}" height="{n.h}" rx="6" '
                     f'fill="{fill}" stroke="{stroke}" stroke-width="1.3"{dash}/>')
        cy = n.y + n.h / 2 + (3 if n.kind == "file" else 0)
        o.extend(_svg_text_lines(n.x + n.w / 2, cy, node_lines(n)))
    # edges, then labels on top
    for e in L.edges:
        color, width, dash, _, _ = EDGE_STYLE[e.style]
        d = "M" + " L".join(f"{x},{y}" for x, y in e.points)
        da = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{da} '
                 f'marker-end="url(#arrow-{e.style})"/>')
    for e in L.edges:
        if not e.label:
            continue
        _, _, _, lcolor, _ = EDGE_STYLE[e.style]
        x, y, w, h = label_box(e)
        o.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2" '
                 'fill="#ffffff" fill-opacity="0.92"/>')
        lines = [(t, LABEL_SIZE, False) for t in label_lines(e)]
        o.extend(_svg_text_lines(e.label_xy[0], e.label_xy[1], lines, lcolor))
    # legend
    lx, ly, lw, lh = L.legend
    o.append(f'<rect x="{lx}" y="{ly}" width="{lw}" height="{lh}" rx="4" fill="#ffffff" '
             'stroke="#9e9e9e" stroke-width="1.2"/>')
    o.append(f'<text x="{lx + 8}" y="{ly + 18}" font-size="12" font-weight="bold" '
             'fill="#212121">Legend</text>')
    for i, (kind, key, text) in enumerate(legend_items()):
        yy = ly + 34 + i * 20
        if kind == "line":
            color, width, dash, _, _ = EDGE_STYLE[key]
            da = f' stroke-dasharray="{dash}"' if dash else ""
            o.append(f'<path d="M{lx + 10},{yy + 6} H{lx + 54}" stroke="{color}" '
                     f'stroke-width="{width}"{da} marker-end="url(#arrow-{key})"/>')
        else:
            fill, stroke = node_colors(_legend_node(key))
            dash = ' stroke-dasharray="5 3"' if key == "class" else ""
            o.append(f'<rect x="{lx + 18}" y="{yy - 1}" width="28" height="14" rx="3" '
                     f'fill="{fill}" stroke="{stroke}" stroke-width="1.3"{dash}/>')
        o.append(f'<text x="{lx + 62}" y="{yy + 10}" font-size="{BODY_SIZE}" fill="#212121">'
                 f'{escape(text)}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


# --------------------------------------------------------------------------- PNG
def find_chromium() -> str | None:
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def png_add_text(png: bytes, key: str, value: str) -> bytes:
    """Insert a tEXt chunk right after IHDR."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ihdr_len = struct.unpack(">I", png[8:12])[0]
    cut = 8 + 12 + ihdr_len
    data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    return png[:cut] + chunk + png[cut:]


def png_text(png: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG."""
    out, i = {}, 8
    while i < len(png):
        n = struct.unpack(">I", png[i:i + 4])[0]
        kind = png[i + 4:i + 8]
        if kind == b"tEXt":
            k, _, v = png[i + 8:i + 8 + n].partition(b"\0")
            out[k.decode("latin-1")] = v.decode("latin-1")
        if kind == b"IEND":
            break
        i += 12 + n
    return out


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def render_png(svg_path: Path, png_path: Path, width: int, height: int, svg_sha: str) -> None:
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (set $CHROMIUM); use --no-png to skip the PNG")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-extensions", "--no-first-run", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--user-data-dir={tmp}/profile",
               f"--screenshot={shot}", f"--window-size={width},{height}",
               svg_path.resolve().as_uri()]
        subprocess.run(cmd, check=True, timeout=120, capture_output=True)
        png = shot.read_bytes()
    if png_size(png) != (width, height):
        raise SystemExit(f"Chromium made a {png_size(png)} PNG, expected {(width, height)}")
    png_path.write_bytes(png_add_text(png, "svg-sha256", svg_sha))


# --------------------------------------------------------------------------- main
def build_layout() -> Layout:
    return Layout(NODES, LANES, EDGES)


def generate(out_dir: Path, png: bool = True) -> dict[str, Path]:
    L = build_layout()
    problems = check_layout(L)
    if problems:
        raise SystemExit("layout problems:\n  " + "\n  ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{STEM}.{ext}" for ext in ("drawio", "svg", "png")}
    paths["drawio"].write_text(render_drawio(L), encoding="utf-8")
    svg = render_svg(L)
    paths["svg"].write_text(svg, encoding="utf-8")
    if png:
        sha = hashlib.sha256(svg.encode("utf-8")).hexdigest()
        render_png(paths["svg"], paths["png"], L.width, L.height, sha)
    else:
        del paths["png"]
    return paths


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    png = "--no-png" not in args
    rest = [a for a in args if a != "--no-png"]
    if any(a.startswith("-") for a in rest) or len(rest) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(rest[0]) if rest else HERE
    for p in generate(out_dir, png=png).values():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
