"""Append-only column buffers bounded to a number of rows, safe to read while appending.

The live engine appends one row per closed bar (or aligned pair point) and readers in
other threads take *views* of the first ``n`` rows. That is safe without a lock because

* a row is fully written before ``n`` is advanced, and ``(arrays, start, n)`` is
  published as ONE tuple swapped by a single reference assignment, so a reader never
  combines the arrays of before a compaction with the bounds of after it, and
* rows below ``n`` are never written again: when the buffer is full it is compacted
  into **new** arrays (the last ``max_rows`` rows) and the reference swapped, so a
  view taken earlier keeps pointing at the old, unchanged arrays.

Capacity is ``2 * max_rows``: a compaction copies ``max_rows`` rows once every
``max_rows`` appends, i.e. amortised O(1) per append.

**Growing** (``initial_rows``): the arrays start at ``initial_rows`` and a full buffer
that holds fewer than ``max_rows`` rows is copied into arrays twice its rows (geometric
growth: a row is copied O(1) times on average, so appends stay amortised O(1)), up to
the fixed ``2 * max_rows``. A growth is a compaction: new arrays, one published tuple,
rows below ``n`` never written again, so the reader-safety argument above is unchanged.
Memory follows the rows held: at most about twice them (plus ``initial_rows``). An
instrument that never trades costs ``initial_rows`` rows per timeframe instead of two
days of them (a day of 1 s bars at 2 x 86,400 x 88 bytes = 15.2 MB was what every idle
instrument paid before); a quiet one that trades in 10,000 of a day's seconds, 1.4 MB.

Why a soak stays flat. The arrays are written through (zero-filled) when allocated, so
their memory is committed at once, never page by page as rows arrive: capacity, and
with it memory, changes only at a growth. There are a bounded number of them (about
``log2(2 * max_rows / initial_rows)``: 12 for a day of 1 s bars from 64 rows), the last
when the buffer first holds a day (``max_rows`` rows), and from then on it stays at
``2 * max_rows`` as every buffer did before: steady state within a day of data. Until
then the growth is by design and measured (``nbytes``; the app reports the sum as
``buffers_mb`` in ``/api/health`` ``process``, and ``benchmarks/soak.py`` checks the RSS
growth that the buffers do not explain).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _committed(n: int, dtype: np.dtype) -> np.ndarray:
    """An array of ``n`` zeros whose pages are really written (``np.zeros`` is lazy)."""
    return np.full(n, 0, dtype=dtype)


class ColumnBuffer:
    """Named numpy columns holding at most the last ``max_rows`` appended rows."""

    __slots__ = (
        "names", "dtypes", "max_rows", "_cols", "_start", "_n", "appended", "_state", "_initial",
    )

    def __init__(
        self, columns: Mapping[str, np.dtype | type], max_rows: int,
        *, initial_rows: int | None = None,
    ) -> None:
        """``initial_rows``: start that small and double as rows come (up to the
        fixed ``2 * max_rows``), for buffers most instruments never fill (the top of
        book: a quiet or book-less instrument holds a few rows, not a day's worth)."""
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.names: tuple[str, ...] = tuple(columns)
        self.dtypes = {k: np.dtype(v) for k, v in columns.items()}
        self.max_rows = int(max_rows)
        self._initial = 2 * self.max_rows if initial_rows is None else max(1, int(initial_rows))
        cap = min(2 * self.max_rows, self._initial)
        self._cols = {k: _committed(cap, self.dtypes[k]) for k in self.names}
        self._start = 0
        self._n = 0  # rows written into the current arrays (from index 0)
        self.appended = 0  # total rows ever appended
        self._state = (self._cols, 0, 0)  # what readers see

    def __len__(self) -> int:
        return self._n - self._start

    def append(self, row: Sequence) -> None:
        """Append one row, values in :attr:`names` order."""
        cols = self._cols
        if self._n == len(next(iter(cols.values()))):
            self._compact()
            cols = self._cols
        i = self._n
        for name, value in zip(self.names, row):
            cols[name][i] = value
        self._n = i + 1
        self.appended += 1
        if self._n - self._start > self.max_rows:
            self._start += 1
        self._state = (cols, self._start, self._n)

    def extend(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append many rows at once (e.g. a batch-computed history)."""
        n = len(columns[self.names[0]])
        if n == 0:
            return
        keep = min(n, self.max_rows)
        old = len(self)
        total = min(old + keep, self.max_rows)
        cap = max(self._capacity(total), total)
        new = {}
        for name in self.names:
            arr = _committed(cap, self.dtypes[name])
            head = total - keep
            if head:
                cur = self._cols[name][self._n - head : self._n]
                arr[:head] = cur
            arr[head:total] = np.asarray(columns[name])[n - keep :]
            new[name] = arr
        self._cols, self._start, self._n = new, 0, total
        self.appended += n
        self._state = (new, 0, total)

    def _capacity(self, keep: int) -> int:
        """Arrays' length for ``keep`` rows: the fixed ``2 * max_rows``, or while
        growing (``initial_rows``) twice the rows kept."""
        return min(2 * self.max_rows, max(2 * keep, self._initial))

    @property
    def capacity(self) -> int:
        """Rows the current arrays have room for (memory held: ``capacity x row bytes``)."""
        return len(self._state[0][self.names[0]])

    @property
    def nbytes(self) -> int:
        """Bytes of the current arrays."""
        cols = self._state[0]
        return sum(a.nbytes for a in cols.values())

    def _compact(self) -> None:
        keep = self._n - self._start
        cap = self._capacity(keep)
        new = {}
        for name in self.names:
            arr = _committed(cap, self.dtypes[name])
            arr[:keep] = self._cols[name][self._start : self._n]
            new[name] = arr
        self._cols, self._start, self._n = new, 0, keep

    def view(self) -> dict[str, np.ndarray]:
        """Read-only views of the held rows (consistent: one read of the bounds)."""
        cols, start, n = self._state
        out = {}
        for name in self.names:
            v = cols[name][start:n]
            v.flags.writeable = False
            out[name] = v
        return out

    def last(self) -> dict[str, object] | None:
        if len(self) == 0:
            return None
        cols, start, n = self._state
        if n == start:
            return None
        return {name: cols[name][n - 1].item() for name in self.names}
