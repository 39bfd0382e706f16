"""The code base is tidy: ruff-clean (rules in pyproject.toml) and the suite's slow lists are
current. Both run with the test suite, so CI checks them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests import conftest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def test_ruff_finds_nothing():
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_slow_lists_name_tests_that_exist():
    """A moved or renamed test file would silently fall back into the fast inner loop."""
    gone = [m for m in sorted(conftest.SLOW_MODULES) if not (TESTS / m).is_file()]
    for entry in sorted(conftest.SLOW_TESTS):
        rel, _, name = entry.partition("::")
        path = TESTS / rel
        if not path.is_file() or name not in _test_names(path):
            gone.append(entry)
    assert not gone, (
        f"tests/conftest.py marks as slow what no longer exists: {gone}; "
        "update SLOW_MODULES / SLOW_TESTS to the moved or renamed tests"
    )
