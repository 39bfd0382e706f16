"""The stored 1 s top-of-book bar (``book_bars``), as every backend reads it back.

One row per instrument and second that had at least one best bid/ask update
(``analytics.book.BOOK_FIELDS``: ts, bid, ask, bid_qty, ask_qty, spread_bps_twa,
updates; docs/book.md). The backends share the column list, the dtypes and the frame
they return, so a SQLite file and a PostgreSQL database read back the same frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.book import BOOK_DTYPES, BOOK_FIELDS

__all__ = ["BOOK_COLUMN_LIST", "BOOK_ROW_DTYPE", "book_frame", "empty_book_frame"]

#: ``ts, bid, ask, ...`` for the SQL texts (a module constant: no runtime value).
BOOK_COLUMN_LIST = ", ".join(BOOK_FIELDS)
#: A stored row as a numpy record (rows stream straight from a cursor into it).
BOOK_ROW_DTYPE = np.dtype([(f, BOOK_DTYPES[f]) for f in BOOK_FIELDS])


def book_frame(rows) -> pd.DataFrame:
    """Rows ``(ts, bid, ask, bid_qty, ask_qty, spread_bps_twa, updates)`` (an iterable,
    e.g. a cursor) -> the frame ``read_book_bars`` returns."""
    rows = list(rows)
    try:
        arr = np.fromiter(rows, dtype=BOOK_ROW_DTYPE, count=len(rows))
    except TypeError:  # a NULL: SQLite stores a NaN as NULL; read it back as NaN
        arr = np.fromiter(
            (tuple(np.nan if v is None else v for v in row) for row in rows),
            dtype=BOOK_ROW_DTYPE, count=len(rows))
    return pd.DataFrame({f: np.ascontiguousarray(arr[f]) for f in BOOK_FIELDS})


def empty_book_frame() -> pd.DataFrame:
    return book_frame(())
