from __future__ import annotations

import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.series import ColumnBuffer


def test_bounded_append_and_extend_keep_last_rows():
    buf = ColumnBuffer({"ts": np.int64, "x": np.float64}, max_rows=7)
    model = []
    for i in range(40):
        buf.append((i, i / 3))
        model.append((i, i / 3))
        v = buf.view()
        assert v["ts"].tolist() == [r[0] for r in model[-7:]]
    buf.extend({"ts": np.arange(100, 104), "x": np.ones(4)})
    assert buf.view()["ts"].tolist() == [37, 38, 39, 100, 101, 102, 103]
    buf.extend({"ts": np.arange(200, 220), "x": np.ones(20)})
    assert buf.view()["ts"].tolist() == list(range(213, 220))
    assert buf.appended == 40 + 4 + 20
    assert buf.last()["ts"] == 219


def test_views_are_read_only_and_stable_across_compaction():
    buf = ColumnBuffer({"ts": np.int64}, max_rows=5)
    for i in range(5):
        buf.append((i,))
    old = buf.view()["ts"]
    for i in range(5, 50):
        buf.append((i,))
    assert old.tolist() == [0, 1, 2, 3, 4]
    assert not old.flags.writeable


def test_concurrent_reader_sees_consecutive_rows():
    buf = ColumnBuffer({"ts": np.int64}, max_rows=100)
    stop = threading.Event()
    bad = []

    def read():
        while not stop.is_set():
            ts = buf.view()["ts"]
            if len(ts) > 1 and not np.all(np.diff(ts) == 1):
                bad.append(ts.copy())

    t = threading.Thread(target=read)
    t.start()
    for i in range(200_000):
        buf.append((i,))
    stop.set()
    t.join()
    assert not bad


def test_a_growing_buffer_starts_small_and_behaves_like_a_fixed_one():
    grow = ColumnBuffer({"ts": np.int64}, max_rows=100, initial_rows=4)
    fixed = ColumnBuffer({"ts": np.int64}, max_rows=100)
    assert len(grow._cols["ts"]) == 4 and len(fixed._cols["ts"]) == 200
    views = []
    for i in range(450):
        grow.append((i,))
        fixed.append((i,))
        views.append((i, grow.view()["ts"]))
        assert grow.view()["ts"].tolist() == fixed.view()["ts"].tolist()
        assert len(grow._cols["ts"]) <= 200  # never past the fixed capacity
    for i, v in views:  # a view taken before a growth or compaction is unchanged
        assert v.tolist() == list(range(max(0, i - 99), i + 1))
    small = ColumnBuffer({"ts": np.int64}, max_rows=1000, initial_rows=4)
    small.extend({"ts": np.arange(10)})
    assert small.capacity == 20 and small.view()["ts"].tolist() == list(range(10))


def test_growth_doubles_up_to_the_fixed_size_and_stays():
    """Capacities: initial, doubling with the rows held, then 2 * max_rows for good
    once a day is held (series.py: why a soak stays flat)."""
    buf = ColumnBuffer({"ts": np.int64}, max_rows=86_400, initial_rows=64)
    seen = [buf.capacity]
    for i in range(3 * 86_400):
        buf.append((i,))
        if buf.capacity != seen[-1]:
            seen.append(buf.capacity)
            assert len(buf) == min(seen[-2] + 1, 86_400)  # grew only when full
    assert seen == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16_384, 32_768, 65_536,
                    131_072, 172_800]
    assert buf.nbytes == 172_800 * 8
    assert buf.view()["ts"].tolist() == list(range(2 * 86_400, 3 * 86_400))


@settings(max_examples=120, deadline=None)
@given(max_rows=st.integers(1, 300), initial=st.integers(1, 40),
       ops=st.lists(st.one_of(st.just(1), st.integers(0, 700)), min_size=1, max_size=60))
def test_growing_buffer_equals_a_batch_slice_at_every_step(max_rows, initial, ops):
    """A growing buffer fed appends and extends holds exactly the last max_rows rows of
    everything fed (a numpy slice of the concatenation), at every step; views taken
    earlier never change; capacity stays within [rows held, 2 * max_rows]."""
    buf = ColumnBuffer({"ts": np.int64, "x": np.float64}, max_rows, initial_rows=initial)
    fed = np.empty(0, np.int64)
    views = []
    jumped = False
    for k, op in enumerate(ops):
        if op == 1 and k % 2:
            v = len(fed)
            buf.append((v, v / 7))
            fed = np.append(fed, v)
        else:
            new = np.arange(len(fed), len(fed) + op)
            buf.extend({"ts": new, "x": new / 7})
            fed = np.concatenate([fed, new])
        want = fed[-max_rows:] if len(fed) else fed
        got = buf.view()
        np.testing.assert_array_equal(got["ts"], want)
        np.testing.assert_array_equal(got["x"], want / 7)
        assert buf.appended == len(fed)
        assert len(buf) <= buf.capacity <= 2 * max_rows
        if jumped:
            assert buf.capacity == 2 * max_rows  # never shrinks back
        jumped = jumped or buf.capacity == 2 * max_rows
        if len(buf) > initial:
            assert buf.capacity <= 2 * len(buf)  # memory follows the rows held
        views.append((got["ts"], want.copy()))
    for v, want in views:
        np.testing.assert_array_equal(v, want)


def test_concurrent_reader_during_growth_sees_consecutive_rows():
    buf = ColumnBuffer({"ts": np.int64, "y": np.int64}, max_rows=50_000, initial_rows=1)
    stop = threading.Event()
    bad = []

    def read():
        while not stop.is_set():
            v = buf.view()
            ts = v["ts"]
            if len(ts) and (np.any(np.diff(ts) != 1) or np.any(v["y"] != 2 * ts)):
                bad.append(ts.copy())

    t = threading.Thread(target=read)
    t.start()
    for i in range(120_000):
        buf.append((i, 2 * i))
    stop.set()
    t.join()
    assert not bad and buf.capacity == 100_000
