"""Fixed-capacity in-memory tick ring for one symbol: one writer, many readers.

The feed thread appends every trade; Dash callbacks (Flask threads) read copies of
what they have not seen yet with ``since(cursor)`` or a time window with
``window(start_ms)``. Analytics never need more history than the ring holds because
closed 1 s bars are kept separately (BarBuilder / the store's ``bars_1s`` table).

Concurrency: an optimistic, seqlock-style protocol instead of a lock
--------------------------------------------------------------------
The writer never waits for a reader. Before it touches a slot it *announces* the
highest sequence number it is about to write (``_reserve``); after the slot is fully
written it *publishes* the new ``_seq``. A reader

1. reads ``_seq`` (every tick with a smaller sequence number is fully written),
2. copies the slots it wants (numpy may release the GIL for big copies, so the writer
   can really run meanwhile),
3. reads ``_reserve`` again: any copied tick with sequence number
   ``< _reserve - capacity`` may have been overwritten while it was being copied. Those
   are always the *oldest* ticks of the copy, so the reader cuts them off the front and
   reports them as ``dropped``, exactly as if its cursor had been stale.

So a reader never returns a torn tick or a slot overwritten during its copy, and a
``since(0)`` copy of a full ring (69 MB, tens of ms) never stalls the socket thread
the way holding a lock for that long would. The ordering argument relies on CPython's
GIL (the writer's stores are made while it holds the GIL and the reader re-acquires
it before reading ``_reserve``); on a free-threaded build this class would need a
lock or explicit barriers.

Growth: memory that follows the data
------------------------------------
A ring starts with room for ``initial`` ticks (1,024 = 34 kB) and doubles its arrays
when the writer reaches their end, until they hold ``capacity`` ticks; only then does it
wrap. So it grows only BEFORE it first wraps, while the slot of tick ``k`` is simply
``k``: a growth copies slots ``[0, size)`` into arrays twice as long and goes on
writing at slot ``size``. The arrays and their size are published as ONE tuple
(``_state``) after the copy and before ``_seq`` moves on, and a reader reads ``_seq``
first and ``_state`` second, so the arrays it copies from hold every tick below the
``_seq`` it read: either the arrays the writer was filling then (the writer never
writes them again below that point) or newer ones that received a copy. An array left
behind by a growth is never written again, so a reader holding it copies unchanged
ticks; the overwrite check above (``_reserve - capacity``) is unchanged because ticks
are only overwritten once the ring is at full capacity. Each tick is copied at most
once per doubling: amortised O(1) per append, and the hot path tests one bound, as it
did for the wrap. An instrument that never trades holds 1,024 slots, not 2 Mi.

Only ONE thread may call ``append``/``extend``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# 2 Mi ticks x 33 bytes (int64 time, int64 id, float64 price, float64 qty, bool side)
# = 69 MB per symbol at most, reached by doubling as the ring fills (module notes).
DEFAULT_CAPACITY = 2**21
#: Ticks a ring has room for before its first growth (module notes).
INITIAL_SIZE = 1_024
_COLUMN_DTYPES = (np.int64, np.int64, np.float64, np.float64, np.bool_)


@dataclass(frozen=True, slots=True)
class LastTick:
    """The most recent tick. ``seq`` is that tick's own sequence number
    (``ring.seq - 1`` when nothing was appended since)."""

    time_ms: int
    trade_id: int
    price: float
    qty: float
    buyer_is_maker: bool
    seq: int


@dataclass(frozen=True, slots=True)
class TickBatch:
    """Copies of a run of ticks, oldest first.

    ``start_seq`` is the sequence number of the first tick returned and ``end_seq`` the
    cursor to pass to the next ``since()`` call. ``dropped`` counts ticks the caller
    asked for that had already been overwritten (a stale cursor, or a writer that lapped
    the reader during the copy). A batch whose ``start_seq`` is *below* the cursor that
    was asked for means the ring was reset (cursor from an earlier server lifetime):
    the client should discard what it drew and start over.
    """

    start_seq: int
    end_seq: int
    time_ms: np.ndarray
    trade_id: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    buyer_is_maker: np.ndarray
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.time_ms)


class TickRing:
    """Preallocated numpy ring of the latest ticks of ONE symbol.

    Columns: ``time_ms`` int64, ``trade_id`` int64, ``price`` float64, ``qty`` float64,
    ``buyer_is_maker`` bool. The k-th tick ever appended (0-based) has sequence number
    k; ``seq`` is the sequence number the *next* tick will get (= ticks ever appended).

    Sizing: the default 2**21 = 2,097,152 ticks is 69 MB at most. A liquid futures
    ``@aggTrade`` day is ~1-2 M events, so a whole day fits; a spot ``@trade`` day of
    BTCUSDT is 3-6 M events and does not: the ring then holds the most recent ~half
    day. That is enough because analytics work on closed 1 s bars, which are kept
    separately; the ring only feeds tick charts and the current, still-open bar.
    The arrays start at ``initial`` ticks and double as ticks come (module notes), so
    a quiet symbol costs what it holds, not 69 MB.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, initial: int = INITIAL_SIZE) -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"TickRing capacity must be >= 1, got {capacity}")
        if int(initial) < 1:
            raise ValueError(f"TickRing initial size must be >= 1, got {initial}")
        self._cap = capacity
        self._size = 0
        self._alloc(min(int(initial), capacity), 0)
        self._seq = 0  # published: ticks [0, _seq) are fully written
        self._reserve = 0  # announced: the writer may be writing ticks < _reserve
        self._pos = 0  # slot of tick _seq; kept to avoid a modulo per append
        self._last_time = -(2**63)
        # Largest k with time[k] < time[k-1]. While it is below the oldest held tick,
        # the held ticks are sorted by time and window() may binary-search them.
        self._disorder_seq = -1

    # ------------------------------------------------------------------ writer side
    def _alloc(self, size: int, keep: int) -> None:
        """New arrays of ``size`` ticks holding slots ``[0, keep)`` of the current ones,
        then publish them (writer only; before the ring first wraps)."""
        cols = tuple(np.empty(size, dt) for dt in _COLUMN_DTYPES)
        if keep:
            for dst, src in zip(cols, self._cols, strict=True):
                dst[:keep] = src[:keep]
        self._cols = cols
        # Item assignment through a memoryview skips numpy's scalar machinery: about
        # 0.13 us for the five stores of one tick instead of 0.22 us.
        views = tuple(memoryview(c) for c in cols)
        self._mv_time, self._mv_id, self._mv_price, self._mv_qty, self._mv_maker = views
        self._size = size
        self._state = (cols, views, size)  # what readers see: ONE reference swap

    def _slot_after_end(self) -> int:
        """The writer filled the arrays' last slot: wrap at full capacity, else grow
        (double, at most ``capacity``) and go on at the next slot."""
        size = self._size
        if size == self._cap:
            return 0
        self._alloc(min(2 * size, self._cap), size)
        return size

    def append(
        self,
        time_ms: int,
        trade_id: int,
        price: float,
        qty: float,
        buyer_is_maker: bool,
    ) -> int:
        """Append one tick and return the new ``seq``. Writer thread only."""
        seq = self._seq + 1
        i = self._pos
        self._reserve = seq
        self._mv_time[i] = time_ms
        self._mv_id[i] = trade_id
        self._mv_price[i] = price
        self._mv_qty[i] = qty
        self._mv_maker[i] = buyer_is_maker
        if time_ms < self._last_time:
            self._disorder_seq = seq - 1
        self._last_time = time_ms
        i += 1
        self._pos = self._slot_after_end() if i == self._size else i
        self._seq = seq
        return seq

    def extend(self, time_ms, trade_id, price, qty, buyer_is_maker) -> int:
        """Append many ticks (arrays of equal length) and return the new ``seq``.

        Used to refill the ring from the store on restart. Input longer than the
        capacity advances ``seq`` by its full length but only its last ``capacity``
        ticks are kept, exactly as if they had been appended one by one.
        """
        cols = (
            np.asarray(time_ms, dtype=np.int64).reshape(-1),
            np.asarray(trade_id, dtype=np.int64).reshape(-1),
            np.asarray(price, dtype=np.float64).reshape(-1),
            np.asarray(qty, dtype=np.float64).reshape(-1),
            np.asarray(buyer_is_maker, dtype=np.bool_).reshape(-1),
        )
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError(f"extend: column lengths differ: {[len(c) for c in cols]}")
        start = self._seq
        if n == 0:
            return start
        end = start + n
        times = cols[0]
        disorder = np.flatnonzero(times[1:] < times[:-1])
        disorder_seq = self._disorder_seq
        if times[0] < self._last_time:
            disorder_seq = start
        if disorder.size:
            disorder_seq = start + int(disorder[-1]) + 1
        if end > self._size and self._size < self._cap:  # grow (not wrapped yet)
            size = self._size
            while size < end and size < self._cap:
                size *= 2
            self._alloc(min(size, self._cap), start)
        if n > self._cap:
            cols = tuple(c[n - self._cap :] for c in cols)
            n = self._cap
        size = self._size
        pos = (end - n) % size
        first = min(n, size - pos)  # part that fits before the physical end

        self._reserve = end  # everything below end - capacity may now be overwritten
        for dst, src in zip(self._cols, cols, strict=True):
            dst[pos : pos + first] = src[:first]
            if first < n:
                dst[: n - first] = src[first:]
        self._disorder_seq = disorder_seq
        self._last_time = int(times[-1])
        self._pos = end % size
        if self._pos == 0 and size < self._cap:
            self._pos = self._slot_after_end()  # filled exactly: grow before the next
        self._seq = end
        return end

    # ------------------------------------------------------------------ reader side
    @property
    def capacity(self) -> int:
        """The most ticks the ring holds (its arrays' final size)."""
        return self._cap

    @property
    def allocated(self) -> int:
        """Ticks the current arrays have room for (grows up to :attr:`capacity`)."""
        return self._state[2]

    @property
    def nbytes(self) -> int:
        """Bytes of the current arrays (33 per allocated tick)."""
        return sum(c.nbytes for c in self._state[0])

    @property
    def seq(self) -> int:
        """Ticks ever appended = the next tick's sequence number = a since() cursor."""
        return self._seq

    def __len__(self) -> int:
        return min(self._seq, self._cap)

    def __repr__(self) -> str:
        return f"TickRing(capacity={self._cap}, seq={self._seq}, held={len(self)})"

    def last(self) -> LastTick | None:
        """The most recent tick, or None if nothing was appended yet."""
        while True:
            end = self._seq
            if end == 0:
                return None
            _, views, size = self._state  # after _seq (module notes)
            i = (end - 1) % size
            tick = LastTick(
                views[0][i], views[1][i], views[2][i], views[3][i], views[4][i], end - 1,
            )
            if self._reserve - self._cap <= end - 1:
                return tick
            # The writer lapped the whole ring while we read five values: only possible
            # with a tiny capacity. Read the newer last tick instead.

    @property
    def last_price(self) -> float | None:
        tick = self.last()
        return None if tick is None else tick.price

    @property
    def last_trade_id(self) -> int | None:
        tick = self.last()
        return None if tick is None else tick.trade_id

    def since(self, seq: int) -> TickBatch:
        """Copies of every held tick with sequence number >= ``seq``.

        - ``seq`` older than the oldest held tick (a slow or new client): clamped, and
          ``dropped`` says how many ticks it missed.
        - ``seq`` > ``self.seq`` (a cursor from before a server restart): treated as a
          reset, everything held is returned with ``dropped == 0``; the caller sees
          ``batch.start_seq < seq`` and should redraw from scratch.
        - Negative ``seq`` behaves like 0.
        """
        seq = int(seq)
        end = self._seq
        oldest = end - self._cap if end > self._cap else 0
        if seq > end:
            start, dropped = oldest, 0
        else:
            seq = max(seq, 0)
            start = max(seq, oldest)
            dropped = start - seq
        cols = self._copy(self._state, start, end)
        start, cols, lost = self._validate(start, end, cols)
        return TickBatch(start, end, *cols, dropped=dropped + lost)

    def window(self, start_ms: int) -> TickBatch:
        """Copies of the held ticks with ``time_ms >= start_ms``, oldest first.

        Ticks arrive in trade-time order, so this is normally a binary search on the
        logical order plus one copy. If any held tick is out of time order (the writer
        tracks that for free) it falls back to copying everything held and masking, so
        the answer stays exact. ``end_seq`` is a valid cursor for a following
        ``since()``; on the masked path the batch need not be contiguous in sequence
        numbers. ``dropped`` counts ticks overwritten during the copy (normally 0).
        """
        start_ms = int(start_ms)
        end = self._seq
        oldest = end - self._cap if end > self._cap else 0
        disorder = self._disorder_seq
        state = self._state  # after _seq (module notes)
        if disorder <= oldest:
            first = self._search(state, start_ms, oldest, end)
            cols = self._copy(state, first, end)
            first, cols, lost = self._validate(first, end, cols)
            if self._disorder_seq == disorder:
                # Our copy is private and sorted: re-check the lower bound on it, in
                # case overwritten (newer) slots misled the search on the live buffer.
                k = int(np.searchsorted(cols[0], start_ms, side="left"))
                if k:
                    cols = tuple(c[k:] for c in cols)
                    first += k
                return TickBatch(first, end, *cols, dropped=lost)
            # Out-of-order ticks arrived during the search: take the exact path.
            end = self._seq
            oldest = end - self._cap if end > self._cap else 0
            state = self._state
        cols = self._copy(state, oldest, end)
        oldest, cols, lost = self._validate(oldest, end, cols)
        mask = cols[0] >= start_ms
        cols = tuple(c[mask] for c in cols)
        return TickBatch(oldest, end, *cols, dropped=lost)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _copy(state: tuple, start: int, end: int) -> tuple[np.ndarray, ...]:
        """Copy the slots of ticks [start, end) from ``state`` (read after ``end``);
        requires end - start <= capacity."""
        cols, _, size = state
        n = end - start
        a = start % size
        if a + n <= size:
            return tuple(c[a : a + n].copy() for c in cols)
        b = a + n - size
        return tuple(np.concatenate((c[a:], c[:b])) for c in cols)

    def _validate(
        self, start: int, end: int, cols: tuple[np.ndarray, ...]
    ) -> tuple[int, tuple[np.ndarray, ...], int]:
        """Cut off the front of a copy the writer may have overwritten meanwhile.

        Must be called *after* the copy: any write that could have touched a copied
        slot announced itself in ``_reserve`` before it started.
        """
        unsafe_below = self._reserve - self._cap
        if unsafe_below <= start:
            return start, cols, 0
        lost = min(unsafe_below, end) - start
        return start + lost, tuple(c[lost:] for c in cols), lost

    @staticmethod
    def _search(state: tuple, start_ms: int, start: int, end: int) -> int:
        """First seq in [start, end) with time >= start_ms (times must be sorted)."""
        n = end - start
        if n == 0:
            return start
        times, size = state[0][0], state[2]
        a = start % size
        if a + n <= size:
            seg = times[a : a + n]
            return start + int(np.searchsorted(seg, start_ms, side="left"))
        head = times[a:]
        if start_ms <= head[-1]:
            return start + int(np.searchsorted(head, start_ms, side="left"))
        tail = times[: a + n - size]
        return start + len(head) + int(np.searchsorted(tail, start_ms, side="left"))
