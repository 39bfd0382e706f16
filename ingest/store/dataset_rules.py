"""Rules of uploaded OHLC datasets that every backend applies (pure: no SQL here).

A dataset is what an accepted upload (:func:`analytics.upload.parse_ohlc_csv`) becomes:
a name, one timeframe, and bars per symbol. Files uploaded under the same name add
their symbols to it (two one-symbol files make a pair), or **append** to a symbol it
already holds (November after October): the bars are the union of both, a bar whose
time is stored already must be identical (every column the file carries; it is then
merged, i.e. skipped) and a different bar for a stored time refuses the whole file,
naming its line. Gaps between the parts are allowed (a pair carries the last close
forward, as within one file). Datasets are **never mixed into the live ticks**: the
feed, the rings, the engine and the trade store never see them.
"""

from __future__ import annotations

import numpy as np

from analytics.bars import BAR_FIELDS
from ingest.store.interface import DATASET_RE, DatasetError

MAX_DATASETS = 200
MAX_SYMBOLS_PER_DATASET = 20
#: Bars cached in memory (pages page through a dataset's table many times).
CACHE_BARS = 2_000_000
#: Conflicting lines named in a refusal.
SHOW_CONFLICTS = 5
#: Columns an appended bar must repeat exactly when its time is stored already.
SAME_ALWAYS = ("open", "high", "low", "close", "volume")
#: Columns compared only when both the stored bar and the file carry them (a generic
#: CSV has no quote volume: NaN; no trade count: 0).
SAME_IF_CARRIED = ("quote_volume", "trades", "buy_volume")
#: Separates the file names of one symbol's parts in the stored file list.
FILE_SEP = "\n"
#: The stored columns of a dataset bar: ``BAR_FIELDS`` without the trade-id range, which
#: an uploaded OHLC file does not have.
BAR_COLS = tuple(f for f in BAR_FIELDS if f not in ("first_id", "last_id"))
#: The same columns as SQL text, and their placeholders in each dialect (constants, so
#: no SQL is ever built from a runtime value).
BAR_COL_LIST = ", ".join(BAR_COLS)
BAR_QMARKS = ", ".join("?" * len(BAR_COLS))
BAR_PYFORMAT = ", ".join(["%s"] * len(BAR_COLS))


def _same(stored: np.ndarray, new: np.ndarray, col: str) -> np.ndarray:
    """Per bar: does the file agree with the stored value of ``col``?"""
    if col in SAME_ALWAYS:
        return stored == new
    if col == "trades":  # 0 = not carried
        return (stored == new) | (stored == 0) | (new == 0)
    return (stored == new) | np.isnan(stored) | np.isnan(new)


def overlap(
    symbol: str, stored: dict[str, np.ndarray], new, lines: np.ndarray | None
) -> tuple[np.ndarray, list[str]]:
    """Which bars of ``new`` (a :class:`Bars`) are not stored yet, and the conflicts.

    ``stored`` holds the stored columns (``BAR_COLS``) of ``symbol`` in the file's time
    range. A bar of the file whose ``ts`` is stored is *identical* when every column in
    :data:`SAME_ALWAYS` is equal (exactly: both come from the same decimal text) and
    every column in :data:`SAME_IF_CARRIED` is equal where both carry it; otherwise it
    is a conflict, reported with its file line (``lines``), time and first differing
    column. Returns ``(is_new, problems)``.
    """
    ts = np.asarray(new.ts)
    pos = np.searchsorted(stored["ts"], ts)
    pos_c = np.minimum(pos, max(len(stored["ts"]) - 1, 0))
    hit = (pos < len(stored["ts"])) & (stored["ts"][pos_c] == ts) if len(stored["ts"]) else (
        np.zeros(len(ts), bool)
    )
    same = np.ones(int(hit.sum()), bool)
    first_diff: list[str | None] = [None] * len(same)
    k = np.flatnonzero(hit)
    for col in SAME_ALWAYS + SAME_IF_CARRIED:
        old_v = np.asarray(stored[col])[pos[k]]
        new_v = np.asarray(getattr(new, col))[k]
        ok = _same(old_v.astype(np.float64), new_v.astype(np.float64), col)
        for j in np.flatnonzero(~ok & same):
            first_diff[j] = f"{col} {new_v[j]:.10g} (stored {old_v[j]:.10g})"
        same &= ok
    bad = np.flatnonzero(~same)
    problems = []
    if len(bad):
        shown = []
        for j in bad[:SHOW_CONFLICTS]:
            i = k[j]
            where = f"line {int(lines[i])} " if lines is not None and len(lines) > i else ""
            shown.append(f"{where}({iso_utc(int(ts[i]))}) has {first_diff[j]}")
        more = f" and {len(bad) - SHOW_CONFLICTS} more" if len(bad) > SHOW_CONFLICTS else ""
        problems.append(
            f"{symbol}: {len(bad)} bar(s) differ from the bars stored for the same times: "
            + "; ".join(shown) + more
        )
    return ~hit, problems


def conflict_error(name: str, problems: list[str]) -> DatasetError:
    """The refusal of an upload whose bars differ from stored ones."""
    return DatasetError(
        [
            *problems,
            f"nothing was stored: identical bars merge, but a stored bar is never "
            f"replaced; to replace the data remove the dataset first "
            f"(DELETE /api/datasets/{name}) or upload under another name",
        ]
    )


def iso_utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = np.datetime64(int(ms), "ms")
    return str(np.datetime_as_string(dt, unit="ms")) + "Z"


def check_name(name: object) -> str:
    """A valid dataset name or :class:`DatasetError`."""
    text = "" if name is None else str(name).strip()
    if text.lower() == "live":  # ?dataset=live in links means the live feed
        raise DatasetError(
            ["dataset name 'live' is reserved (links use dataset=live for the live feed)"]
        )
    if not DATASET_RE.match(text):
        raise DatasetError(
            [
                f"dataset name {text[:40]!r} is invalid: 1-64 letters, digits, '_', '-' or "
                "'.', starting with a letter or digit"
            ]
        )
    return text


def check_room(name: str, count: int) -> None:
    """A new dataset when ``count`` exist: :class:`DatasetError` past the limit."""
    if count >= MAX_DATASETS:
        raise DatasetError(
            [f"too many datasets ({count}, at most {MAX_DATASETS}): remove one first"]
        )


def check_fits(name: str, held_tf_ms: int, held_symbols, upload) -> None:
    """An upload into an existing dataset: same timeframe, symbol limit."""
    from analytics.timeframes import format_timeframe

    problems = []
    if held_tf_ms != upload.tf_ms:
        problems.append(
            f"dataset {name!r} holds {format_timeframe(held_tf_ms)} bars, this file has "
            f"{format_timeframe(upload.tf_ms)} bars: use another dataset name"
        )
    added = [s for s in upload.symbols if s not in held_symbols]
    if len(held_symbols) + len(added) > MAX_SYMBOLS_PER_DATASET:
        problems.append(f"a dataset holds at most {MAX_SYMBOLS_PER_DATASET} symbols")
    if problems:
        raise DatasetError(problems)


READONLY_UPLOAD = "uploads are off: the app follows a database read-only (--no-ingest)"
READONLY_REMOVE = "read-only database (--no-ingest): cannot remove datasets"
