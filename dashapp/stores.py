"""Checks of ``dcc.Store`` contents sent back by the browser (issue 13.9).

A store's ``data`` comes back in every request as JSON the browser (or anyone with
``curl``) wrote: a forged store must lead to a clear message or no update, never a
``TypeError``/``KeyError`` -> 500. Callbacks read their stores through these small
checks, which return the value when it has the expected shape and a safe fallback
(``None``, ``{}``, ``0``) otherwise. Page-specific shapes (the pair panel's selection,
drawn and view stores) are checked where they are defined
(:meth:`dashapp.selection.Selection.from_store`, :mod:`dashapp.pages.pair.pairlive`).
"""

from __future__ import annotations

import math

#: Ids and counters are JSON integers well inside SQLite's and JavaScript's range.
MAX_INT = 2**53


def counter(value) -> int:
    """A "bumped" counter store: a non-negative int, else 0."""
    return value if type(value) is int and 0 <= value <= MAX_INT else 0


def int_id(value) -> int | None:
    """A row id kept in a store: a non-negative int (or its decimal string), else None."""
    if type(value) is int:
        return value if 0 <= value <= MAX_INT else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16:
        return int(value)
    return None


def mapping(value) -> dict:
    """A dict store: the dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def number(value) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def str_keyed(value, check=None) -> dict:
    """A dict of str -> value (each value passing ``check`` if given), else {}."""
    if not isinstance(value, dict):
        return {}
    return {
        k: v for k, v in value.items() if isinstance(k, str) and (check is None or check(v))
    }
