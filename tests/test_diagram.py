"""The architecture diagram (``diagrams/``) matches the code and its own generator.

Which files must appear in the diagram (the rule this test applies)
-------------------------------------------------------------------
A *module* is every ``*.py`` file under ``ingest/``, ``analytics/`` and ``dashapp/``,
searched recursively (so ``dashapp/pages/*.py`` count), ``__pycache__`` ignored, with one
exception: an ``__init__.py`` that holds no code (nothing but a docstring, imports,
``__all__`` or ``pass``) is packaging, not a module, and is left out. An ``__init__.py``
that defines something is a module like any other: ``dashapp/__init__.py`` defines
``create_app`` and must be drawn; ``ingest/__init__.py`` and ``analytics/__init__.py``
are empty and must not be required. (If one of them gains code, it must be drawn.)

A diagram node names its module with the ``module`` attribute of its ``<object>`` in
``diagrams/architecture.drawio`` (repo-relative path, e.g. ``module="ingest/feed.py"``;
several nodes may name the same file, e.g. ``DbFollower`` inside ``ingest/pipeline.py``).

The test fails when
* a module is missing from the diagram;
* the diagram names a path that is no file of the repo (a module renamed or deleted);
* ``architecture.drawio`` is not uncompressed draw.io XML (``mxfile > diagram >
  mxGraphModel > root`` with cells ``0`` and ``1``), has duplicate ids, a vertex without
  geometry, or an edge whose source or target is missing;
* the committed ``.drawio`` or ``.svg`` differ from what ``python diagrams/build.py``
  generates now (it is re-run into a temporary directory with ``--no-png``), so nobody
  edits one export or the model without the others;
* ``architecture.png`` was not rendered from the current SVG (the PNG carries the SHA-256
  of its SVG in a ``tEXt`` chunk; checking it needs no browser);
* the generated layout has overlapping boxes or labels, or edges that cross.

Fix a failure by editing the model in ``diagrams/build.py`` and running
``python diagrams/build.py`` (it rewrites all three files). Fast, no network, no browser.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = ROOT / "diagrams"
BUILD = DIAGRAMS / "build.py"
DRAWIO = DIAGRAMS / "architecture.drawio"
SVG = DIAGRAMS / "architecture.svg"
PNG = DIAGRAMS / "architecture.png"
PACKAGES = ("ingest", "analytics", "dashapp")


def _holds_code(init: Path) -> bool:
    """True if an ``__init__.py`` has more than a docstring, imports, ``__all__``, pass."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for i, stmt in enumerate(tree.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Pass)):
            continue
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if all(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                continue
        return True
    return False


def expected_modules() -> set[str]:
    out = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            if path.name == "__init__.py" and not _holds_code(path):
                continue
            out.add(path.relative_to(ROOT).as_posix())
    return out


@pytest.fixture(scope="module")
def tree() -> ET.ElementTree:
    assert DRAWIO.exists(), "run: python diagrams/build.py"
    return ET.parse(DRAWIO)


def diagram_modules(tree: ET.ElementTree) -> set[str]:
    return {el.get("module") for el in tree.iter() if el.get("module")}


def test_module_rule_sees_the_packages():
    mods = expected_modules()
    assert "dashapp/__init__.py" in mods  # defines create_app
    assert "ingest/__init__.py" not in mods and "analytics/__init__.py" not in mods
    assert "dashapp/pages/markets.py" in mods
    assert "ingest/__main__.py" in mods


def test_every_module_is_drawn(tree):
    missing = sorted(expected_modules() - diagram_modules(tree))
    assert not missing, (
        f"modules missing from the diagram: {missing}; add them to the model in "
        "diagrams/build.py and run python diagrams/build.py"
    )


def test_diagram_names_only_existing_files(tree):
    gone = sorted(m for m in diagram_modules(tree) if not (ROOT / m).is_file())
    assert not gone, (
        f"the diagram names files that do not exist: {gone}; update diagrams/build.py "
        "and run python diagrams/build.py"
    )


def test_drawio_structure(tree):
    mxfile = tree.getroot()
    assert mxfile.tag == "mxfile"
    diagrams = mxfile.findall("diagram")
    assert len(diagrams) == 1
    model = diagrams[0].find("mxGraphModel")
    assert model is not None, "the <diagram> must hold an uncompressed <mxGraphModel>"
    root = model.find("root")
    assert root is not None
    cells = list(root)
    assert cells[0].tag == "mxCell" and cells[0].get("id") == "0"
    assert cells[1].get("id") == "1" and cells[1].get("parent") == "0"

    ids: list[str] = []
    vertices, edges = [], []
    for el in cells:
        if el.tag in ("object", "UserObject"):
            cell = el.find("mxCell")
            assert cell is not None, f"<object id={el.get('id')}> without its mxCell"
            ident = el.get("id")
        else:
            assert el.tag == "mxCell", f"unexpected <{el.tag}> in <root>"
            cell, ident = el, el.get("id")
        assert ident, "a cell without id"
        ids.append(ident)
        if cell.get("vertex") == "1":
            vertices.append((ident, cell))
        if cell.get("edge") == "1":
            edges.append((ident, cell))
    assert len(ids) == len(set(ids)), "duplicate cell ids"
    known = set(ids)
    for ident, cell in vertices:
        geo = cell.find("mxGeometry")
        assert geo is not None and float(geo.get("width", 0)) > 0, f"{ident}: no geometry"
        assert cell.get("parent") in known, f"{ident}: unknown parent {cell.get('parent')}"
    assert edges, "the diagram has no edges"
    for ident, cell in edges:
        src, dst = cell.get("source"), cell.get("target")
        assert src in known and dst in known, f"edge {ident}: {src} -> {dst} not both present"
    assert len(vertices) > len(expected_modules())


def test_exports_are_what_build_py_generates(tmp_path):
    run = subprocess.run(
        [sys.executable, str(BUILD), str(tmp_path), "--no-png"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    for committed in (DRAWIO, SVG):
        fresh = (tmp_path / committed.name).read_text(encoding="utf-8")
        assert committed.read_text(encoding="utf-8") == fresh, (
            f"{committed.relative_to(ROOT)} is not what diagrams/build.py generates now: "
            "edit the model in build.py (not the export) and run python diagrams/build.py"
        )


def _load_build():
    spec = importlib.util.spec_from_file_location("diagram_build", BUILD)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    return mod


def test_png_was_rendered_from_the_current_svg():
    build = _load_build()
    png = PNG.read_bytes()
    svg = build.render_svg(build.build_layout())
    text = build.png_text(png)
    assert text.get("svg-sha256") == hashlib.sha256(svg.encode("utf-8")).hexdigest(), (
        "diagrams/architecture.png is stale: run python diagrams/build.py"
    )
    layout = build.build_layout()
    assert build.png_size(png) == (layout.width, layout.height)


def test_layout_is_clean():
    build = _load_build()
    assert build.check_layout(build.build_layout()) == []
