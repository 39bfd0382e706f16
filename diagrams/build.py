#!/usr/bin/env python3
"""The architecture diagram, generated from the code: its declared parts and their imports.

    python diagrams/build.py                    # writes diagrams/architecture.{json,svg,png}
    python diagrams/build.py OUT_DIR            # the three files into OUT_DIR
    python diagrams/build.py OUT_DIR --no-png   # .json + .svg only (stdlib, no browser)
    python diagrams/build.py --check            # exit 1, naming what changed, if the
                                                # committed architecture.json is stale

Nothing here is placed by hand; a new subpackage shows up without an edit to this file.

*Parts.* A part is a package or subpackage of the repo (every directory under a top-level
package that holds ``.py`` files: ``ingest``, ``ingest.feeds``, ``dashapp.pages`` ...; a
top-level package is a directory with an ``__init__.py``, ``tests/`` excepted) or a
top-level script (``app.py``, the composition root). A part *declares itself* with the
first sentence of its ``__init__.py`` docstring (the module docstring for a script); its
modules are the ``.py`` files directly inside it.

*Edges.* ``A -> B`` when a module of part A imports (anywhere in the file, function-level
imports included) a module of part B; its ``count`` is the number of distinct
(importing module, imported module) pairs. Imports inside a part are not edges; tests are
not scanned.

*Outputs.* ``architecture.json`` (parts with their modules, edges with counts, sorted);
``architecture.svg`` drawn from that JSON alone (lanes = top-level packages, stacked by
layer so that importers sit above what they import; parts as boxes; edges as arrows);
``architecture.png``, the SVG rasterised by headless Chromium (``/usr/bin/chromium`` or
``$CHROMIUM``), carrying the SHA-256 of its SVG in a ``tEXt`` chunk so a test can tell a
stale PNG without a browser. Without Chromium the build fails unless ``--no-png`` is given.

``tests/test_diagram.py`` regenerates the graph from the code and compares parts and edges
with the committed JSON (modules and counts are informative: adding or renaming a module
inside a part, or editing code, does not make the diagram stale).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEM = "architecture"
REGENERATE = "python diagrams/build.py"

#: Top-level directories that are never parts (tests are not architecture).
NOT_PARTS = frozenset({"tests", "diagrams", "docs", "assets", "data", "sample_data"})


# =========================================================================== the graph
@dataclass(frozen=True)
class Part:
    """One declared part: ``name`` is dotted (``ingest.feeds``), ``path`` repo-relative."""

    name: str
    path: str
    description: str
    modules: tuple[str, ...]

    @property
    def lane(self) -> str:
        """The top-level package (or script) the part belongs to."""
        return self.name.split(".")[0]


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target``; ``count`` distinct (module, imported module) pairs."""

    source: str
    target: str
    count: int


@dataclass(frozen=True)
class Graph:
    parts: tuple[Part, ...]
    edges: tuple[Edge, ...]

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    def to_json(self) -> str:
        doc = {
            "generated_by": REGENERATE,
            "parts": [
                {"name": p.name, "path": p.path, "description": p.description,
                 "modules": list(p.modules)}
                for p in self.parts
            ],
            "edges": [{"from": e.source, "to": e.target, "count": e.count} for e in self.edges],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Graph:
        doc = json.loads(text)
        parts = tuple(Part(p["name"], p["path"], p["description"], tuple(p["modules"]))
                      for p in doc["parts"])
        edges = tuple(Edge(e["from"], e["to"], int(e["count"])) for e in doc["edges"])
        return cls(parts, edges)


@dataclass(frozen=True)
class Scan:
    """The graph plus what each module imports (for the rules of the house)."""

    graph: Graph
    #: repo-relative module path -> dotted names it imports: project modules as found,
    #: anything else by its top-level name (``numpy``, ``sqlite3``).
    imports: dict[str, frozenset[str]] = field(default_factory=dict)
    #: repo-relative module path -> its part's name
    part_of: dict[str, str] = field(default_factory=dict)


def summary(path: Path) -> str:
    """The docstring's first sentence (of its first paragraph): how a part declares itself.

    A summary that wraps in the source (as long ones do at 100 columns) is joined back;
    reStructuredText's double back-quotes are dropped.
    """
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError):
        return ""
    first = " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "")
    end = first.find(". ")
    return first[: end + 1] if end >= 0 else first


def _is_py(path: Path) -> bool:
    return path.is_file() and path.suffix == ".py"


def discover_parts(root: Path = ROOT) -> list[Part]:
    """Every part of the repo at ``root``, sorted by name."""
    parts: list[Part] = []
    for top in sorted(root.iterdir()):
        if top.name.startswith((".", "_")) or top.name in NOT_PARTS:
            continue
        if _is_py(top):
            parts.append(Part(top.stem, top.name, summary(top), (top.name,)))
        elif top.is_dir() and (top / "__init__.py").is_file():
            for folder in sorted([top, *(d for d in top.rglob("*") if d.is_dir())]):
                rel = folder.relative_to(root)
                if any(s.startswith((".", "_")) for s in rel.parts):
                    continue  # __pycache__, hidden
                modules = tuple(sorted(p.relative_to(root).as_posix()
                                       for p in folder.iterdir() if _is_py(p)))
                if not modules:
                    continue
                init = folder / "__init__.py"
                desc = summary(init) if init.is_file() else ""
                parts.append(Part(".".join(rel.parts), rel.as_posix(), desc, modules))
    return sorted(parts, key=lambda p: p.name)


def module_name(path: str) -> str:
    """``ingest/feeds/__init__.py`` -> ``ingest.feeds``; ``app.py`` -> ``app``."""
    dotted = path[:-3].replace("/", ".")
    return dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted


def _imported_names(path: Path, dotted: str) -> set[str]:
    """Absolute dotted names a module imports (``from a import b`` gives ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # ``a.b`` resolves to module a.b, else to a
                name = base if alias.name == "*" else f"{base}.{alias.name}"
                out.add(name.strip("."))
    return out


def scan(root: Path = ROOT) -> Scan:
    """Parts and the edges between them, from the code under ``root``."""
    parts = discover_parts(root)
    part_of = {m: p.name for p in parts for m in p.modules}
    by_dotted = {module_name(m): m for m in part_of}
    part_names = {p.name for p in parts}
    tops = {p.lane for p in parts}

    imports: dict[str, frozenset[str]] = {}
    pairs: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for mod, src in sorted(part_of.items()):
        found: set[str] = set()
        names = _imported_names(root / mod, module_name(mod))
        for name in sorted(names):
            head = name.split(".")[0]
            if head not in tops:
                found.add(head)
                continue
            bits = name.split(".")
            target = None
            for k in range(len(bits), 0, -1):
                prefix = ".".join(bits[:k])
                if prefix in by_dotted or prefix in part_names:
                    target = prefix
                    break
            if target is not None:
                found.add(target)
        imports[mod] = frozenset(found)
        for target in found:
            if target in by_dotted:
                dst = part_of[by_dotted[target]]
            elif target in part_names:
                dst = target
            else:
                continue
            if dst != src:
                pairs[(src, dst)].add((mod, target))
    edges = tuple(Edge(s, t, len(v)) for (s, t), v in sorted(pairs.items()))
    return Scan(Graph(tuple(parts), edges), imports, part_of)


def compare(committed: Graph, current: Graph) -> list[str]:
    """What changed in parts (name, description) and edges; [] when the diagram is current.

    Modules inside a part and edge counts are deliberately not compared: adding or renaming
    a module, or editing code, does not change the architecture.
    """
    old = {p.name: p.description for p in committed.parts}
    new = {p.name: p.description for p in current.parts}
    old_e = {(e.source, e.target) for e in committed.edges}
    new_e = {(e.source, e.target) for e in current.edges}
    out = []
    for name in sorted(new.keys() - old.keys()):
        out.append(f"part added: {name} ({new[name]!r})")
    for name in sorted(old.keys() - new.keys()):
        out.append(f"part removed: {name}")
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            out.append(f"part {name} now declares itself {new[name]!r} (was {old[name]!r})")
    for s, t in sorted(new_e - old_e):
        out.append(f"edge added: {s} -> {t}")
    for s, t in sorted(old_e - new_e):
        out.append(f"edge removed: {s} -> {t}")
    return out


# =========================================================================== rules of the house
@dataclass(frozen=True)
class Rule:
    """Modules of ``importer`` (and its subparts) must not import these parts or libraries."""

    name: str
    importer: str
    parts: tuple[str, ...]
    libraries: tuple[str, ...]
    why: str
    exempt: tuple[str, ...] = ()  # modules (repo paths) the rule does not apply to


RULES = (
    Rule("analytics-is-pure", "analytics", ("ingest", "dashapp", "app", "benchmarks"),
         ("dash", "flask", "plotly", "websocket", "websockets", "socket", "sqlite3",
          "psycopg", "psycopg2"),
         "analytics is pure numpy/pandas/statsmodels/sklearn: no Dash, sockets or databases"),
    Rule("pages-use-the-facade", "dashapp.pages", ("ingest",), (),
         "pages ask the typed facade (dashapp/facade.py), never rings, feeds or the store"),
    Rule("components-use-the-facade", "dashapp.components", ("ingest",), (),
         "components are drawn from what the facade returns, never from ingest"),
    Rule("dashapp-uses-the-facade", "dashapp", ("ingest",), (),
         "only the facade (and the services module that builds it) knows the runtime",
         exempt=("dashapp/facade.py", "dashapp/services.py")),
    Rule("ingest-knows-no-dashboard", "ingest", ("dashapp", "app", "benchmarks"), (),
         "the ingest service runs without the dashboard (python -m ingest)"),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(s: Scan, rule: Rule) -> list[str]:
    """``module imports target`` lines that break ``rule``, sorted."""
    out = []
    for mod, names in sorted(s.imports.items()):
        if not _within(s.part_of[mod], rule.importer) or mod in rule.exempt:
            continue
        for name in sorted(names):
            if any(_within(name, p) for p in rule.parts) or name in rule.libraries:
                out.append(f"{mod} imports {name}")
    return out


def breaks_a_rule(source: str, target: str) -> bool:
    """True when every import from part ``source`` of part ``target`` breaks a rule.

    (A rule with exempt modules does not colour the edge: some of its imports are allowed.)
    """
    return any(_within(source, r.importer) and any(_within(target, p) for p in r.parts)
               and not r.exempt for r in RULES)


# =========================================================================== layering
def _sccs(nodes: list[str], succ: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (small graphs; recursion is fine)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def layers(nodes: list[str], weights: dict[tuple[str, str], int]) -> dict[str, int]:
    """Layer of each node, 0 = imports nothing here; an importer sits above what it imports.

    Cycles are broken inside each strongly connected component: members that import more
    (by weight) than they are imported go first; edges from a later member to an earlier
    one are the feedback edges, drawn against the layering. Then longest-path layering.
    """
    succ: dict[str, set[str]] = defaultdict(set)
    for (a, b) in weights:
        if a != b:
            succ[a].add(b)
    rank: dict[str, int] = {}
    comp_of: dict[str, int] = {}
    for c, comp in enumerate(_sccs(nodes, succ)):
        members = set(comp)

        def net(v: str, members=members) -> int:
            out_w = sum(w for (a, b), w in weights.items() if a == v and b in members)
            in_w = sum(w for (a, b), w in weights.items() if b == v and a in members)
            return in_w - out_w

        for i, v in enumerate(sorted(comp, key=lambda v: (net(v), v))):
            rank[v], comp_of[v] = i, c
    dag = {v: {w for w in succ[v] if comp_of[w] != comp_of[v] or rank[v] < rank[w]}
           for v in nodes}
    memo: dict[str, int] = {}

    def height(v: str) -> int:
        if v not in memo:
            memo[v] = 1 + max((height(w) for w in dag[v]), default=-1)
        return memo[v]

    return {v: height(v) for v in nodes}


# =========================================================================== text metrics
# Advance widths (1/1000 em) of Helvetica/Arial, which Liberation Sans matches metrically;
# used to size boxes without a font library. Characters 32..126.
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
            "β": 570, "α": 580, "µ": 556, "↔": 1000, "Ⓢ": 1000}
FONT = "Liberation Sans, Arial, Helvetica, sans-serif"


def text_width(text: str, size: float, bold: bool = False) -> float:
    table = _W_BOLD if bold else _W_REG
    units = 0
    for ch in text:
        o = ord(ch)
        units += table[o - 32] if 32 <= o <= 126 else _W_OTHER.get(ch, 650)
    return units * size / 1000.0


def wrap(text: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(lines[-1] + " " + word, size) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


# =========================================================================== layout
TITLE_SIZE, BODY_SIZE, NOTE_SIZE = 13, 11, 10
LINE_H = 1.3
MARGIN = 24
TOP = 84  # title block
HEADER = 26  # lane header strip
PAD = 16  # lane inner padding
LANE_GAP = 30
ROW_GAP = 46  # minimum free space between two rows of boxes
BOX_GAP = 36
BOX_PAD = 10
DESC_WIDTH = 210
MIN_BOX_W = 150
TRACK = 7  # spacing of parallel routed edges
CHANNEL = 10  # spacing of the vertical channels beside the lanes

#: Lane colours: fill, header, stroke; given to lanes in name order.
PALETTE = [
    ("#e8f5e9", "#c8e6c9", "#43a047"),  # green
    ("#eceff1", "#cfd8dc", "#546e7a"),  # grey
    ("#fff3e0", "#ffe0b2", "#ef6c00"),  # orange
    ("#ede7f6", "#d1c4e9", "#5e35b1"),  # purple
    ("#e3f2fd", "#bbdefb", "#1e88e5"),  # blue
    ("#fce4ec", "#f8bbd0", "#d81b60"),  # pink
    ("#e0f7fa", "#b2ebf2", "#00838f"),  # cyan
    ("#f9fbe7", "#f0f4c3", "#9e9d24"),  # lime
]
RULE_COLOR = "#d32f2f"


@dataclass
class Box:
    part: Part
    lines: list[tuple[str, float, bool, str]]  # text, size, bold, colour
    w: float
    h: float
    x: float = 0.0
    y: float = 0.0
    row: int = 0  # global row index, top to bottom


@dataclass
class Lane:
    name: str
    colors: tuple[str, str, str]
    rows: list[list[str]]
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


@dataclass
class Route:
    edge: Edge
    kind: str  # "down" (adjacent rows), "long" (left channel), "up" (right channel), "side"
    points: list[tuple[float, float]] = field(default_factory=list)
    color: str = "#616161"
    width: float = 1.2


@dataclass
class Layout:
    boxes: dict[str, Box]
    lanes: list[Lane]
    routes: list[Route]
    width: int
    height: int
    legend: tuple[float, float, float, float]


def _box(part: Part) -> Box:
    title = part.path if part.path.endswith(".py") else part.name
    lines = [(title, TITLE_SIZE, True, "#212121")]
    desc = part.description or "(no docstring: declare the part in its __init__.py)"
    lines += [(t, BODY_SIZE, False, "#212121") for t in wrap(desc, BODY_SIZE, DESC_WIDTH)]
    n = len(part.modules)
    lines.append((f"{n} module{'s' if n != 1 else ''}", NOTE_SIZE, False, "#757575"))
    w = max(MIN_BOX_W, max(text_width(t, s, b) for t, s, b, _ in lines) + 2 * BOX_PAD)
    h = sum(s * LINE_H for _, s, _, _ in lines) + 2 * BOX_PAD
    return Box(part, lines, math.ceil(w), math.ceil(h))


def _barycentre(n: str, row: list[str], neighbours: dict[str, list[str]],
                boxes: dict[str, Box]) -> float:
    """Mean centre x of a box's neighbours outside its row (its own centre if none)."""
    xs = [boxes[m].x + boxes[m].w / 2 for m in neighbours[n] if m not in row]
    return round(sum(xs) / len(xs) if xs else boxes[n].x + boxes[n].w / 2, 3)


def _bus(source: str) -> tuple[str, str]:
    """The key of the shared route of ``source``'s long edges (sorts before part names)."""
    return ("", source)


def build_layout(graph: Graph) -> Layout:
    """Deterministic geometry for ``graph``: lanes stacked by layer, rows inside lanes.

    Routing, so that no edge runs through a box (:func:`check_layout`): an edge to the next
    row down is a curve; a longer one leaves by its source's *bus* (one port, one track
    below the source's row and one channel on the left, shared by the source's long
    edges) and enters its target from its own track above the target's row; an edge
    against the layering (a cycle) goes round by its own channel on the right; an edge
    within a row goes over it.
    """
    boxes = {p.name: _box(p) for p in graph.parts}
    weights = {(e.source, e.target): e.count for e in graph.edges}

    lane_names = sorted({p.lane for p in graph.parts})
    lane_w: dict[tuple[str, str], int] = defaultdict(int)
    for (a, b), w in weights.items():
        la, lb = a.split(".")[0], b.split(".")[0]
        if la != lb:
            lane_w[(la, lb)] += w
    lane_layer = layers(lane_names, lane_w)
    order = sorted(lane_names, key=lambda n: (-lane_layer[n], n))
    lanes = []
    for name in order:
        members = [p.name for p in graph.parts if p.lane == name]
        inner = {k: w for k, w in weights.items() if k[0] in members and k[1] in members}
        lay = layers(members, inner)
        top = max(lay.values())
        rows = [sorted(m for m in members if lay[m] == t) for t in range(top, -1, -1)]
        rows = [r for r in rows if r]
        lanes.append(Lane(name, PALETTE[lane_names.index(name) % len(PALETTE)], rows))
    all_rows = [row for ln in lanes for row in ln.rows]
    for i, row in enumerate(all_rows):
        for name in row:
            boxes[name].row = i
    row_index = {name: boxes[name].row for name in boxes}

    # Route kinds decide how much room the gaps and channels need.
    kinds: dict[tuple[str, str], str] = {}
    for e in graph.edges:
        rs, rt = row_index[e.source], row_index[e.target]
        kinds[(e.source, e.target)] = ("down" if rt == rs + 1 else "long" if rt > rs
                                       else "up" if rt < rs else "side")
    # Long edges of one source share a bus: one port, one track below its row, one channel
    # on the left; they part only in the zone above each target's row.
    bus_sources = sorted({s for (s, _), k in kinds.items() if k == "long"})
    above: dict[int, set[tuple[str, str]]] = defaultdict(set)  # tracks above row i
    below: dict[int, set[tuple[str, str]]] = defaultdict(set)  # tracks below row i
    for (src, dst), k in kinds.items():
        rs, rt = row_index[src], row_index[dst]
        if k == "long":
            below[rs].add(_bus(src))
            above[rt].add((src, dst))
        elif k == "up":
            above[rs].add((src, dst))
            below[rt].add((src, dst))
        elif k == "side":
            above[rs].add((src, dst))
    n_up = sum(1 for k in kinds.values() if k == "up")
    left = MARGIN + (len(bus_sources) + 1) * CHANNEL
    row_w = [sum(boxes[n].w for n in row) + BOX_GAP * (len(row) - 1) for row in all_rows]
    inner_w = max(row_w) + 2 * PAD

    def zone(n: int) -> float:
        return (n + 1) * TRACK

    # x: rows centred, ordered by the barycentre of their neighbours (3 sweeps).
    def place_row(row: list[str]) -> None:
        width = sum(boxes[n].w for n in row) + BOX_GAP * (len(row) - 1)
        x = left + PAD + (inner_w - 2 * PAD - width) / 2
        for n in row:
            boxes[n].x = x
            x += boxes[n].w + BOX_GAP

    for row in all_rows:
        place_row(row)
    neighbours: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        neighbours[e.source].append(e.target)
        neighbours[e.target].append(e.source)
    for _ in range(3):
        for row in all_rows:
            centre = {n: _barycentre(n, row, neighbours, boxes) for n in row}
            row.sort(key=lambda n: (centre[n], n))
            place_row(row)

    # y: lanes top to bottom; zones above and below each row hold routed tracks.
    y = TOP
    for ln in lanes:
        ln.x, ln.y, ln.w = left, y, inner_w
        y += HEADER
        for j, row in enumerate(ln.rows):
            r = boxes[row[0]].row
            top_zone = zone(len(above[r]))
            gap_above = max(PAD, top_zone) if j == 0 else max(0.0, top_zone)
            if j > 0:
                prev = boxes[ln.rows[j - 1][0]].row
                gap_above = max(ROW_GAP - zone(len(below[prev])), top_zone)
            y += gap_above
            height = max(boxes[n].h for n in row)
            for n in row:
                boxes[n].y = y + (height - boxes[n].h) / 2
            y += height + zone(len(below[r]))
        y += PAD
        ln.h = y - ln.y
        y += LANE_GAP
    right = left + inner_w

    def row_top(r: int) -> float:
        return min(boxes[n].y for n in all_rows[r])

    def row_bottom(r: int) -> float:
        return max(boxes[n].y + boxes[n].h for n in all_rows[r])

    # ports: edges on one side of a box are spread along it, ordered by the other end.
    def cx(n: str) -> float:
        return boxes[n].x + boxes[n].w / 2

    ends: dict[tuple[str, str], list[tuple[float, tuple[str, str], str]]] = defaultdict(list)
    for e in graph.edges:
        key = (e.source, e.target)
        k = kinds[key]
        s_side = "bottom" if k in ("down", "long") else "top"
        t_side = "bottom" if k == "up" else "top"
        # long edges arrive from the left channel, up edges leave to the right one
        s_other = 1e6 if k == "up" else cx(e.target)
        t_other = -1e6 if k == "long" else 1e6 if k == "up" else cx(e.source)
        if k == "long":
            if (-1e6, _bus(e.source), "s") not in ends[(e.source, s_side)]:
                ends[(e.source, s_side)].append((-1e6, _bus(e.source), "s"))
        else:
            ends[(e.source, s_side)].append((s_other, key, "s"))
        ends[(e.target, t_side)].append((t_other, key, "t"))
    port: dict[tuple[tuple[str, str], str], float] = {}
    for (name, _side), items in ends.items():
        items.sort()
        b = boxes[name]
        for i, (_, key, end) in enumerate(items):
            port[(key, end)] = round(b.x + b.w * (i + 1) / (len(items) + 1), 1)

    # tracks: each routed edge (or bus) gets its own horizontal line in a zone.
    def tracks(keys: set[tuple[str, str]], start: float) -> dict[tuple[str, str], float]:
        return {key: start + TRACK * (i + 1) for i, key in enumerate(sorted(keys))}

    long_x = {src: MARGIN + CHANNEL * (i + 1) for i, src in enumerate(bus_sources)}
    up_x = {k: right + CHANNEL * (i + 1)
            for i, k in enumerate(sorted(k for k, v in kinds.items() if v == "up"))}
    routes = []
    for e in graph.edges:
        key = (e.source, e.target)
        k = kinds[key]
        sb, tb = boxes[e.source], boxes[e.target]
        sx = port[(_bus(e.source) if k == "long" else key, "s")]
        tx = port[(key, "t")]
        rs, rt = sb.row, tb.row
        if k == "down":
            pts = [(sx, sb.y + sb.h), (tx, tb.y)]
        elif k == "long":
            y1 = tracks(below[rs], row_bottom(rs))[_bus(e.source)]
            y2 = tracks(above[rt], row_top(rt) - zone(len(above[rt])))[key]
            cxl = long_x[e.source]
            pts = [(sx, sb.y + sb.h), (sx, y1), (cxl, y1), (cxl, y2), (tx, y2), (tx, tb.y)]
        elif k == "up":
            y1 = tracks(above[rs], row_top(rs) - zone(len(above[rs])))[key]
            y2 = tracks(below[rt], row_bottom(rt))[key]
            cxr = up_x[key]
            pts = [(sx, sb.y), (sx, y1), (cxr, y1), (cxr, y2), (tx, y2), (tx, tb.y + tb.h)]
        else:
            y1 = tracks(above[rs], row_top(rs) - zone(len(above[rs])))[key]
            pts = [(sx, sb.y), (sx, y1), (tx, y1), (tx, tb.y)]
        lane = next(ln for ln in lanes if ln.name == sb.part.lane)
        color = RULE_COLOR if breaks_a_rule(e.source, e.target) else lane.colors[2]
        width = round(1.0 + 0.45 * math.log2(e.count), 2)
        routes.append(Route(e, k, [(round(x, 1), round(yy, 1)) for x, yy in pts], color, width))

    legend_h = 16 + 20 * len(legend_items())
    legend_w = 70 + max(text_width(t, BODY_SIZE) for _, t in legend_items())
    legend = (MARGIN, y, math.ceil(legend_w), legend_h)
    width = math.ceil(max(right + (n_up + 1) * CHANNEL, MARGIN + legend_w,
                          *(MARGIN + text_width(t, 11) for t in SUBTITLE),
                          MARGIN + text_width(TITLE, 18, bold=True)) + MARGIN)
    height = math.ceil(y + legend_h + MARGIN)
    return Layout(boxes, lanes, routes, width, height, legend)


TITLE = "Pair-trading analytics — parts and their imports"
SUBTITLE = (
    f"Generated from the code by {REGENERATE}: a part is a package or subpackage, "
    "described by its __init__.py docstring;",
    "lanes are top-level packages; importers sit above what they import.",
)


def legend_items() -> list[tuple[str, str]]:
    return [
        ("solid", "A → B: modules of A import modules of B (colour of A's lane; "
                  "thicker = more module pairs)"),
        ("dashed", "an import against the layering (a cycle): B sits above A"),
        ("rule", "an import that breaks a rule of the house (see tests/test_diagram.py)"),
    ]


def _seg_hits_box(p, q, box: Box) -> bool:
    """An axis-parallel or short straight segment passing through a box's inside."""
    x0, y0, x1, y1 = box.x + 1, box.y + 1, box.x + box.w - 1, box.y + box.h - 1
    for t in (i / 20 for i in range(21)):
        x, y = p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t
        if x0 < x < x1 and y0 < y < y1:
            return True
    return False


def check_layout(L: Layout) -> list[str]:
    """Overlapping boxes, boxes outside their lane, edges through boxes they do not join."""
    problems = []
    boxes = list(L.boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if (a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h):
                problems.append(f"boxes overlap: {a.part.name} and {b.part.name}")
        lane = next(ln for ln in L.lanes if ln.name == a.part.lane)
        if not (lane.x <= a.x and a.x + a.w <= lane.x + lane.w
                and lane.y + HEADER <= a.y and a.y + a.h <= lane.y + lane.h):
            problems.append(f"box {a.part.name} is outside its lane {lane.name}")
    for r in L.routes:
        for p, q in zip(r.points, r.points[1:]):
            for b in boxes:
                if b.part.name in (r.edge.source, r.edge.target):
                    continue
                if _seg_hits_box(p, q, b):
                    problems.append(f"edge {r.edge.source} -> {r.edge.target} crosses "
                                    f"{b.part.name}")
                    break
    for a, b in zip(L.lanes, L.lanes[1:]):
        if a.y + a.h > b.y:
            problems.append(f"lanes overlap: {a.name} and {b.name}")
    return problems


# =========================================================================== SVG
def _path(r: Route) -> str:
    pts = r.points
    if r.kind == "down":
        (x1, y1), (x2, y2) = pts
        k = (y2 - y1) / 2
        return f"M{x1},{y1} C{x1},{y1 + k:.1f} {x2},{y2 - k:.1f} {x2},{y2}"
    return "M" + " L".join(f"{x},{y}" for x, y in pts)


def render_svg(L: Layout) -> str:
    W, H = L.width, L.height
    colors = sorted({r.color for r in L.routes} | {RULE_COLOR, "#616161"})
    o = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="{FONT}">',
        "<defs>",
    ]
    for c in colors:
        o.append(f'<marker id="arrow-{c[1:]}" viewBox="0 0 10 10" refX="10" refY="5" '
                 'markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" '
                 f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>')
    o.append("</defs>")
    o.append(f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>')
    o.append(f'<text x="{MARGIN}" y="32" font-size="18" font-weight="bold" fill="#212121">'
             f"{escape(TITLE)}</text>")
    for i, line in enumerate(SUBTITLE):
        o.append(f'<text x="{MARGIN}" y="{50 + 14 * i}" font-size="11" fill="#616161">'
                 f"{escape(line)}</text>")
    for ln in L.lanes:
        fill, head, stroke = ln.colors
        o.append(f'<rect x="{ln.x:.1f}" y="{ln.y:.1f}" width="{ln.w:.1f}" height="{ln.h:.1f}" '
                 f'rx="5" fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>')
        o.append(f'<rect x="{ln.x:.1f}" y="{ln.y:.1f}" width="{ln.w:.1f}" height="{HEADER}" '
                 f'rx="5" fill="{head}" stroke="{stroke}" stroke-width="1.2"/>')
        parts = sum(len(r) for r in ln.rows)
        label = f"{ln.name}/" if parts > 1 or not ln.name.startswith("app") else ln.name
        o.append(f'<text x="{ln.x + 10:.1f}" y="{ln.y + 18:.1f}" font-size="13" '
                 f'font-weight="bold" fill="#212121">{escape(label)}</text>')
    for r in L.routes:
        dash = ' stroke-dasharray="6 4"' if r.kind == "up" else ""
        o.append(f'<path d="{_path(r)}" fill="none" stroke="{r.color}" '
                 f'stroke-width="{r.width}"{dash} stroke-linejoin="round" '
                 f'marker-end="url(#arrow-{r.color[1:]})">'
                 f"<title>{escape(r.edge.source)} → {escape(r.edge.target)}: "
                 f"{r.edge.count} module pair{'s' if r.edge.count != 1 else ''}</title></path>")
    for b in L.boxes.values():
        stroke = next(ln.colors[2] for ln in L.lanes if ln.name == b.part.lane)
        o.append(f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w}" height="{b.h}" rx="6" '
                 f'fill="#ffffff" stroke="{stroke}" stroke-width="1.4"/>')
        y = b.y + BOX_PAD
        for text, size, bold, color in b.lines:
            base = y + size * LINE_H / 2 + size * 0.35
            weight = ' font-weight="bold"' if bold else ""
            o.append(f'<text x="{b.x + b.w / 2:.1f}" y="{base:.1f}" font-size="{size}"{weight} '
                     f'fill="{color}" text-anchor="middle">{escape(text)}</text>')
            y += size * LINE_H
    lx, ly, lw, lh = L.legend
    o.append(f'<rect x="{lx}" y="{ly:.1f}" width="{lw}" height="{lh}" rx="4" fill="#ffffff" '
             'stroke="#9e9e9e" stroke-width="1"/>')
    for i, (kind, text) in enumerate(legend_items()):
        yy = ly + 18 + i * 20
        color = RULE_COLOR if kind == "rule" else "#616161"
        dash = ' stroke-dasharray="6 4"' if kind == "dashed" else ""
        o.append(f'<path d="M{lx + 10},{yy - 4:.1f} H{lx + 50}" stroke="{color}" '
                 f'stroke-width="1.6"{dash} marker-end="url(#arrow-{color[1:]})"/>')
        o.append(f'<text x="{lx + 60}" y="{yy:.1f}" font-size="{BODY_SIZE}" fill="#212121">'
                 f"{escape(text)}</text>")
    o.append("</svg>")
    return "\n".join(o) + "\n"


# =========================================================================== PNG
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


# =========================================================================== main
def generate(out_dir: Path, png: bool = True, root: Path = ROOT) -> dict[str, Path]:
    graph = scan(root).graph
    layout = build_layout(graph)
    problems = check_layout(layout)
    if problems:
        raise SystemExit("layout problems:\n  " + "\n  ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{STEM}.{ext}" for ext in ("json", "svg", "png")}
    paths["json"].write_text(graph.to_json(), encoding="utf-8")
    svg = render_svg(layout)
    paths["svg"].write_text(svg, encoding="utf-8")
    if png:
        sha = hashlib.sha256(svg.encode("utf-8")).hexdigest()
        render_png(paths["svg"], paths["png"], layout.width, layout.height, sha)
    else:
        del paths["png"]
    return paths


def check(committed_json: Path, root: Path = ROOT) -> list[str]:
    """What ``--check`` prints when the committed JSON is stale ([] when it is current)."""
    committed = Graph.from_json(committed_json.read_text(encoding="utf-8"))
    changes = compare(committed, scan(root).graph)
    return [*changes, f"{committed_json.name} is stale: run {REGENERATE}"] if changes else []


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--check"]:
        report = check(HERE / f"{STEM}.json", ROOT)
        print("\n".join(report) if report else f"diagrams/{STEM}.json matches the code")
        return 1 if report else 0
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
