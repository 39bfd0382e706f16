"""TickRing: sequence numbers, clamping, wrap-around against a list model, windows,
and one writer racing several readers."""

from __future__ import annotations

import random
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ring import LastTick, TickBatch, TickRing


def tick(k: int, time_ms: int | None = None) -> tuple:
    """Tick number k with every column derived from k, so a torn tick is detectable."""
    t = k * 10 if time_ms is None else time_ms
    return (t, 1000 + k, 100.0 + k / 8, k / 4, k % 3 == 0)


def columns(ticks: list[tuple]) -> tuple[np.ndarray, ...]:
    if not ticks:
        return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0),
                np.empty(0), np.empty(0, bool))
    t, i, p, q, m = zip(*ticks, strict=True)
    return (np.array(t, np.int64), np.array(i, np.int64), np.array(p), np.array(q),
            np.array(m, bool))


def as_ticks(batch: TickBatch) -> list[tuple]:
    cols = (batch.time_ms, batch.trade_id, batch.price, batch.qty, batch.buyer_is_maker)
    return list(zip(*(c.tolist() for c in cols), strict=True))


class Model:
    """The obvious list implementation of the ring's contract."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.all: list[tuple] = []

    @property
    def oldest(self) -> int:
        return max(0, len(self.all) - self.capacity)

    def since(self, cursor: int) -> tuple[int, int, list[tuple]]:
        seq = len(self.all)
        if cursor > seq:
            start, dropped = self.oldest, 0
        else:
            cursor = max(cursor, 0)
            start = max(cursor, self.oldest)
            dropped = start - cursor
        return start, dropped, self.all[start:]

    def window(self, start_ms: int) -> list[tuple]:
        return [t for t in self.all[self.oldest:] if t[0] >= start_ms]


# ---------------------------------------------------------------------- basics
def test_empty_ring():
    ring = TickRing(4)
    assert (ring.seq, len(ring), ring.capacity) == (0, 0, 4)
    assert ring.last() is None
    assert ring.last_price is None and ring.last_trade_id is None
    batch = ring.since(0)
    assert (len(batch), batch.start_seq, batch.end_seq, batch.dropped) == (0, 0, 0, 0)
    assert batch.time_ms.dtype == np.int64 and batch.buyer_is_maker.dtype == np.bool_
    assert len(ring.window(0)) == 0


def test_rejects_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        TickRing(0)


def test_append_since_last():
    ring = TickRing(8)
    for k in range(5):
        assert ring.append(*tick(k)) == k + 1
    assert (ring.seq, len(ring)) == (5, 5)
    assert ring.last() == LastTick(40, 1004, 100.5, 1.0, False, 4)
    assert ring.last_price == 100.5 and ring.last_trade_id == 1004
    batch = ring.since(2)
    assert (batch.start_seq, batch.end_seq, batch.dropped, len(batch)) == (2, 5, 0, 3)
    assert as_ticks(batch) == [tick(2), tick(3), tick(4)]
    assert len(ring.since(5)) == 0


def test_batch_is_a_copy():
    ring = TickRing(4)
    ring.append(*tick(0))
    batch = ring.since(0)
    for k in range(1, 9):
        ring.append(*tick(k))
    assert as_ticks(batch) == [tick(0)]


def test_stale_cursor_is_clamped_and_counts_dropped():
    ring = TickRing(8)
    for k in range(20):
        ring.append(*tick(k))
    batch = ring.since(0)
    assert (batch.start_seq, batch.end_seq, batch.dropped) == (12, 20, 12)
    assert as_ticks(batch) == [tick(k) for k in range(12, 20)]
    batch = ring.since(10)
    assert (batch.start_seq, batch.dropped, len(batch)) == (12, 2, 8)
    assert ring.since(-3).dropped == 12  # negative behaves like 0


def test_cursor_from_the_future_resets():
    ring = TickRing(8)
    for k in range(20):
        ring.append(*tick(k))
    batch = ring.since(1_000)
    assert (batch.start_seq, batch.end_seq, batch.dropped, len(batch)) == (12, 20, 0, 8)
    assert batch.start_seq < 1_000  # how a client notices the reset


def test_extend_wraps_and_longer_than_capacity():
    ring = TickRing(5)
    ring.extend(*columns([tick(k) for k in range(3)]))
    assert ring.extend(*columns([tick(k) for k in range(3, 7)])) == 7
    assert as_ticks(ring.since(0)) == [tick(k) for k in range(2, 7)]
    assert ring.extend(*columns([tick(k) for k in range(7, 30)])) == 30
    batch = ring.since(7)
    assert (batch.start_seq, batch.dropped) == (25, 18)
    assert as_ticks(batch) == [tick(k) for k in range(25, 30)]
    ring.append(*tick(30))
    assert as_ticks(ring.since(26)) == [tick(k) for k in range(26, 31)]
    assert ring.extend(*columns([])) == 31


def test_extend_rejects_ragged_columns():
    ring = TickRing(5)
    with pytest.raises(ValueError, match="lengths"):
        ring.extend([1, 2], [1], [1.0, 2.0], [1.0, 2.0], [True, False])
    assert ring.seq == 0


def test_window_sorted_and_wrapped():
    ring = TickRing(10)
    for k in range(25):  # wraps: holds ticks 15..24, times 150..240
        ring.append(*tick(k))
    assert as_ticks(ring.window(0)) == [tick(k) for k in range(15, 25)]
    batch = ring.window(201)
    assert as_ticks(batch) == [tick(k) for k in range(21, 25)]
    assert (batch.start_seq, batch.end_seq) == (21, 25)
    assert as_ticks(ring.window(200)) == [tick(k) for k in range(20, 25)]
    assert len(ring.window(241)) == 0
    assert len(ring.window(10**15)) == 0


def test_window_equal_times_returns_all_of_them():
    ring = TickRing(16)
    for k in range(12):
        ring.append(*tick(k, time_ms=100 + k // 4))
    assert [t[1] for t in as_ticks(ring.window(101))] == [1004 + k for k in range(8)]


def test_window_out_of_order_falls_back_to_exact_mask():
    ring = TickRing(8)
    times = [10, 20, 30, 5, 40, 50]  # one late tick
    for k, t in enumerate(times):
        ring.append(*tick(k, time_ms=t))
    assert [t[0] for t in as_ticks(ring.window(25))] == [30, 40, 50]
    assert [t[0] for t in as_ticks(ring.window(6))] == [10, 20, 30, 40, 50]
    # Once the late tick has scrolled out, results stay exact (search path again).
    for k in range(6, 14):
        ring.append(*tick(k, time_ms=100 + k))
    assert [t[0] for t in as_ticks(ring.window(110))] == [110, 111, 112, 113]


# ---------------------------------------------------------------------- vs a model
def check_against_model(capacity: int, ops: list[tuple], initial: int | None = None) -> None:
    """``initial``: the ring's first allocation (None: full capacity at once, no growth);
    a growing ring must answer exactly like the model at every step too."""
    ring = TickRing(capacity, initial=capacity if initial is None else initial)
    model = Model(capacity)
    k = 0
    for op in ops:
        kind = op[0]
        if kind == "append":
            t = tick(k, time_ms=op[1](k))
            assert ring.append(*t) == k + 1
            model.all.append(t)
            k += 1
        elif kind == "extend":
            ticks = [tick(j, time_ms=op[2](j)) for j in range(k, k + op[1])]
            assert ring.extend(*columns(ticks)) == k + op[1]
            model.all.extend(ticks)
            k += op[1]
        elif kind == "since":
            cursor = op[1](len(model.all))
            start, dropped, expected = model.since(cursor)
            batch = ring.since(cursor)
            assert (batch.start_seq, batch.end_seq, batch.dropped) == (
                start, len(model.all), dropped)
            assert as_ticks(batch) == expected
        else:
            held = model.all[model.oldest:]
            start_ms = op[1](held)
            assert as_ticks(ring.window(start_ms)) == model.window(start_ms)
            assert ring.window(start_ms).end_seq == len(model.all)
        assert (ring.seq, len(ring)) == (len(model.all), min(len(model.all), capacity))
        # grows only before it wraps: room for every tick so far, at most capacity
        assert min(len(model.all), capacity) <= ring.allocated <= capacity
        if len(model.all) > capacity:
            assert ring.allocated == capacity
        last = ring.last()
        if model.all:
            assert last is not None and last.seq == len(model.all) - 1
            assert (last.time_ms, last.trade_id, last.price, last.qty,
                    last.buyer_is_maker) == model.all[-1]
        else:
            assert last is None


def seeded_ops(
    rng: random.Random, n: int, capacity: int, disorder: float
) -> list[tuple]:
    def time_of(k: int) -> int:
        return rng.randrange(0, 20 * k + 1) if rng.random() < disorder else 10 * k

    def cursor(seq: int) -> int:
        return rng.choice([0, seq, seq + 1, seq + 50, -1,
                           rng.randrange(0, seq + 1), max(0, seq - capacity)])

    def start_ms(held: list[tuple]) -> int:
        if not held or rng.random() < 0.2:
            return rng.randrange(-10, 10**6)
        return rng.choice(held)[0] + rng.choice([-1, 0, 1])

    ops: list[tuple] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            ops.append(("append", time_of))
        elif r < 0.6:
            ops.append(("extend", rng.choice([0, 1, capacity - 1, capacity,
                                               capacity + 1, 3 * capacity + 2,
                                               rng.randrange(0, 2 * capacity + 1)]),
                        time_of))
        elif r < 0.85:
            ops.append(("since", cursor))
        else:
            ops.append(("window", start_ms))
    return ops


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 16, 100])
@pytest.mark.parametrize("disorder", [0.0, 0.05])
@pytest.mark.parametrize("initial", [None, 1, 3])
def test_matches_list_model_seeded(capacity, disorder, initial):
    rng = random.Random(capacity * 1000 + int(disorder * 100))
    check_against_model(capacity, seeded_ops(rng, 1500, capacity, disorder), initial)


@settings(max_examples=250, deadline=None)
@given(capacity=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       n=st.integers(1, 120), disorder=st.sampled_from([0.0, 0.1, 1.0]),
       initial=st.one_of(st.none(), st.integers(1, 12)))
def test_matches_list_model_hypothesis(capacity, seed, n, disorder, initial):
    rng = random.Random(seed)
    check_against_model(capacity, seeded_ops(rng, n, capacity, disorder), initial)


def test_growth_doubles_up_to_capacity_then_wraps():
    ring = TickRing(20, initial=3)
    sizes = [ring.allocated]
    for k in range(50):
        ring.append(*tick(k))
        if ring.allocated != sizes[-1]:
            sizes.append(ring.allocated)
            assert ring.seq == sizes[-2]  # grew right after filling, before any wrap
    assert sizes == [3, 6, 12, 20]
    assert as_ticks(ring.since(0)) == [tick(k) for k in range(30, 50)]
    assert ring.nbytes == 20 * 33
    big = TickRing(2**21)
    assert big.allocated == 1024 and big.capacity == 2**21  # an idle ring: 34 kB
    big.extend(*columns([tick(k) for k in range(10_000)]))
    assert big.allocated == 16_384 and as_ticks(big.since(9_998)) == [tick(9_998), tick(9_999)]


# ---------------------------------------------------------------------- threads
def check_batch(batch: TickBatch, cursor: int | None) -> None:
    """Invariants when the writer writes tick k with trade_id 1000 + k (see tick())."""
    n = len(batch)
    assert batch.end_seq - batch.start_seq == n  # contiguous on these paths
    expected = np.arange(batch.start_seq, batch.end_seq)
    np.testing.assert_array_equal(batch.trade_id, 1000 + expected)  # consecutive ids
    np.testing.assert_array_equal(batch.time_ms, expected * 10)
    np.testing.assert_array_equal(batch.price, 100.0 + expected / 8)
    np.testing.assert_array_equal(batch.qty, expected / 4)
    np.testing.assert_array_equal(batch.buyer_is_maker, expected % 3 == 0)
    if cursor is not None:
        assert batch.start_seq == cursor + batch.dropped


@pytest.mark.parametrize("initial", [512, 1])
def test_concurrent_writer_and_readers_never_see_torn_ticks(initial):
    """``initial=1``: the readers race the writer through every growth (1, 2, 4, ...,
    512) as well as the wraps."""
    capacity, total = 512, 150_000
    ring = TickRing(capacity, initial=initial)
    errors: list[BaseException] = []
    done = threading.Event()
    stats = {"batches": 0, "ticks": 0, "dropped": 0}

    def writer() -> None:
        k = 0
        rng = random.Random(1)
        while k < total:
            if rng.random() < 0.02:  # an occasional bulk write, up to 2 laps
                n = rng.randrange(1, 2 * capacity)
                ring.extend(*columns([tick(j) for j in range(k, k + n)]))
                k += n
            else:
                ring.append(*tick(k))
                k += 1
        done.set()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        cursor = 0
        try:
            while not done.is_set():
                batch = ring.since(cursor)
                check_batch(batch, cursor)
                cursor = batch.end_seq
                stats["batches"] += 1
                stats["ticks"] += len(batch)
                stats["dropped"] += batch.dropped
                last = ring.last()
                if last is not None:
                    assert last.trade_id == 1000 + last.seq
                    assert last.time_ms == 10 * last.seq
                check_batch(ring.window(rng.randrange(0, 10 * (cursor + 1))), None)
        except BaseException as exc:
            errors.append(exc)
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, including mid-copy
    try:
        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        writer()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    assert stats["batches"] > 0 and stats["ticks"] > 0
    check_batch(ring.since(0), None)


def test_concurrent_readers_during_growth_see_every_tick_exactly():
    """Rings growing from 1 slot to 2**13 (13 growths each, 40 rings) while three
    readers copy with since() / window() / last(): no torn or missing tick, ever; a
    reader whose cursor kept up sees every tick once (nothing is dropped before the
    first wrap)."""
    rings: list[TickRing] = []
    errors: list[BaseException] = []
    done = threading.Event()
    seen = {"ticks": 0}

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                if not rings:
                    continue
                ring = rings[-1]
                cursor = 0
                while ring.seq < ring.capacity and not done.is_set():
                    batch = ring.since(cursor)
                    check_batch(batch, cursor)
                    assert batch.dropped == 0 and batch.start_seq == cursor
                    cursor = batch.end_seq
                    seen["ticks"] += len(batch)
                    last = ring.last()
                    if last is not None:
                        assert last.trade_id == 1000 + last.seq
                    check_batch(ring.window(rng.randrange(0, 10 * (cursor + 1))), None)
        except BaseException as exc:
            errors.append(exc)
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    try:
        for t in threads:
            t.start()
        rng = random.Random(7)
        for _ in range(40):
            ring = TickRing(2**13, initial=1)
            rings.append(ring)
            k = 0
            while k < 2**13 and not done.is_set():
                if rng.random() < 0.01:
                    n = min(rng.randrange(1, 300), 2**13 - k)
                    ring.extend(*columns([tick(j) for j in range(k, k + n)]))
                    k += n
                else:
                    ring.append(*tick(k))
                    k += 1
        done.set()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    assert seen["ticks"] > 0
