from __future__ import annotations

import threading

import numpy as np

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
    small = ColumnBuffer({"ts": np.int64}, max_rows=100, initial_rows=4)
    small.extend({"ts": np.arange(10)})
    assert len(small._cols["ts"]) == 20 and small.view()["ts"].tolist() == list(range(10))
