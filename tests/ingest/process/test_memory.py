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


def test_status_reports_the_buffers_apart_and_survives_a_failing_count():
    trimmer = HeapTrimmer()
    assert trimmer.status()["buffers_mb"] is None
    trimmer.held = lambda: 3 * 2**20
    assert trimmer.status()["buffers_mb"] == 3.0
    trimmer.held = lambda: 1 / 0
    assert trimmer.status()["buffers_mb"] is None  # health still answers


def test_runtime_buffer_bytes_are_the_series_and_rings_it_holds(tmp_path):
    """An idle run's buffers: the engine's growable series and the rings' first
    arrays, summed independently here (numpy nbytes of every array)."""
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    rt = Runtime(parse_config(["--symbols", "AUSDT,BUSDT,CUSDT", "--feed-url",
                               "ws://127.0.0.1:9", "--rest-url", "off", "--db",
                               str(tmp_path / "m.db")]))
    try:
        want = sum(a.nbytes for ring in rt.ingestor.rings.values() for a in ring._state[0])
        want += sum(a.nbytes for series in rt.engine._series.values()
                    for buf in series.values() for a in buf._state[0].values())
        assert rt._buffer_bytes() == want
        assert want < 3 * 100_000  # ~34 kB of ring + ~17 kB of bars per idle instrument
        assert rt.health()["process"]["buffers_mb"] == round(want / 2**20, 1)
    finally:
        rt.stop()


def test_300_idle_instruments_cost_at_most_150_mb_over_5(tmp_path):
    """The app in its own process, no trade ever arriving (issue 19's goal): RSS with
    300 instruments minus RSS with 5. Measured here: about +15 MB."""
    from benchmarks._market_memory import IDLE_GOAL_MB, idle_rss

    small = idle_rss(5, tmp_path, settle_s=2.0)
    large = idle_rss(300, tmp_path, settle_s=2.0)
    assert large["rss_mb"] - small["rss_mb"] <= IDLE_GOAL_MB, (small, large)
