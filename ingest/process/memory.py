"""Process memory: the resident set, and freed heap handed back to the OS on a timer.

Why a trimmer. The web server runs each request in a new thread; glibc gives threads
their own malloc arenas, and memory freed inside an arena (a response's frames and
dicts, a pandas frame) is kept by the arena for reuse rather than returned. Under a
day of polling those free holes add up: in the 30-minute soak the resident set crept
~1.5 MB a minute while every Python allocation (``tracemalloc``) stayed flat. glibc's
``malloc_trim(0)`` walks every arena and ``madvise``-releases the whole free pages in
it; run every ``every_s`` seconds in its own thread (ctypes drops the GIL for the
call), it takes milliseconds and keeps the RSS what the process actually holds.

:func:`tune_malloc` sets the allocator up for such a server in the first place (a fixed
mmap threshold and two arenas, below).

Only where the C library has ``malloc_trim`` (glibc, i.e. Linux); elsewhere
:attr:`HeapTrimmer.available` is False and it does nothing. ``status()`` goes into
``/api/health`` as ``process``.

Buffers that follow the data. The market data buffers (the engine's bar series, the
tick rings) grow with what they hold (``analytics/series.py``, ``ingest/ring.py``):
an idle instrument costs tens of kB, a liquid one grows to its day. That growth is by
design, so ``status()`` reports it apart (``buffers_mb``: :attr:`HeapTrimmer.held`, set
by the runtime) and a soak checks the RSS growth the buffers do not explain.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_EVERY_S = 30.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """This process's resident set size (``/proc/self/statm``), None if not on Linux."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _libc_function(name: str, argtypes: list):
    """``name`` from the C library with its signature set, or None (no such library or
    function: not glibc)."""
    lib = ctypes.util.find_library("c")
    try:
        fn = getattr(ctypes.CDLL(lib), name) if lib else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def _malloc_trim():
    return _libc_function("malloc_trim", [ctypes.c_size_t])


# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD_BYTES = 1 << 20
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Set glibc's allocator for a long-running, thread-per-request server; call once,
    before the threads start. False where there is no glibc ``mallopt``.

    * ``M_MMAP_THRESHOLD`` = 1 MiB, fixed: a block that large (a response's column
      copies, a chunk of JSON) is mmapped and unmapped on free. glibc's default starts
      at 128 KiB and *raises* itself (up to 32 MiB) after such a free, after which big
      transients land in the heaps and leave holes there.
    * ``M_ARENA_MAX`` = 2: request threads share two arenas instead of up to 8 per core,
      so what one request frees the next one reuses (allocation happens under the GIL
      anyway, so the arenas' locks are not contended).
    """
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_ARENA_MAX, ARENA_MAX)
    )


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` every ``every_s`` seconds in a daemon thread."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.every_s = float(every_s)
        self._trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # written by the trimmer thread only
        self.trims = 0
        self.released_bytes = 0  # RSS drop measured around the trims, summed
        self.last_ms: float | None = None  # how long the last trim took
        self.last_released_bytes = 0
        #: Bytes the market data buffers hold now (module notes), or None.
        self.held: Callable[[], int] | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> int:
        """One trim now; returns the bytes the RSS dropped by (0 if unavailable)."""
        if self._trim is None:
            return 0
        before = rss_bytes() or 0
        t = time.perf_counter()
        self._trim(0)
        self.last_ms = (time.perf_counter() - t) * 1000
        after = rss_bytes() or 0
        self.trims += 1
        self.last_released_bytes = max(0, before - after)
        self.released_bytes += self.last_released_bytes
        return self.last_released_bytes

    def start(self) -> HeapTrimmer:
        if self._trim is None or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.trim()
            except Exception:  # never take the app down for housekeeping
                log.exception("heap trim failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def status(self) -> dict:
        rss = rss_bytes()
        held = None
        if self.held is not None:
            try:
                held = round(self.held() / 2**20, 1)
            except Exception:  # health must answer; the figure is a convenience
                log.exception("buffer bytes failed")
        return {
            "rss_mb": None if rss is None else round(rss / 2**20, 1),
            "buffers_mb": held,
            "heap_trim": {
                "available": self.available,
                "every_s": self.every_s,
                "trims": self.trims,
                "last_ms": None if self.last_ms is None else round(self.last_ms, 2),
                "last_released_mb": round(self.last_released_bytes / 2**20, 2),
                "released_mb": round(self.released_bytes / 2**20, 1),
            },
        }
