"""The heap trimmer: it trims on its timer, reports what it released, and is a no-op
where the C library has no ``malloc_trim``."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.process import memory
from ingest.process.memory import HeapTrimmer, rss_bytes


def test_rss_is_this_process_resident_set():
    with open("/proc/self/status") as fh:
        vmrss_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    assert rss_bytes() == pytest.approx(vmrss_kb * 1024, rel=0.1)


def test_trim_gives_back_what_threads_freed():
    trimmer = HeapTrimmer()
    assert trimmer.available  # glibc here, as in CI
    trimmer.trim()  # start from a trimmed heap

    def churn() -> None:  # a request's worth of garbage, in a thread of its own arena
        junk = [{"ts": i, "v": str(i) * 8} for i in range(200_000)]
        del junk

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    released = trimmer.trim()
    assert released >= 0 and trimmer.trims == 2
    assert trimmer.released_bytes >= released and trimmer.last_ms is not None
    s = trimmer.status()
    assert s["rss_mb"] > 0 and s["heap_trim"]["trims"] == 2 and s["heap_trim"]["available"]


def test_the_timer_trims_until_stopped():
    trimmer = HeapTrimmer(every_s=0.05).start()
    deadline = time.monotonic() + 5
    while trimmer.trims < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    trimmer.stop()
    done = trimmer.trims
    assert done >= 3
    time.sleep(0.2)
    assert trimmer.trims == done


def test_without_malloc_trim_it_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    trimmer = HeapTrimmer(every_s=0.01).start()
    assert not trimmer.available and trimmer._thread is None
    assert trimmer.trim() == 0 and trimmer.trims == 0
    assert trimmer.status()["heap_trim"]["available"] is False
    trimmer.stop()


def test_a_bad_period_is_refused():
    with pytest.raises(ValueError, match="every_s must be > 0"):
        HeapTrimmer(every_s=0)


def test_tune_malloc_sets_glibc_up_and_is_a_no_op_elsewhere(monkeypatch):
    assert memory.tune_malloc() is True  # glibc here, as in CI
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.tune_malloc() is False
