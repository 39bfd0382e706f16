"""Pair builds off the request path: the day's batch build of a live pair, or the batch
pair of an uploaded dataset, each in its own worker thread.

Why: a robust (Huber, Theil-Sen) or Kalman build over a day of bars takes seconds.
Run inside a callback it freezes the panel: the previous selection's numbers stay on
screen unmarked and nothing says what is happening (issue 14.3). Here the selection
callback only *asks* for a build (:meth:`Builds.live`, :meth:`Builds.dataset`), which
returns at once; the 500 ms refresh reads the state (``building`` + seconds elapsed)
and draws the pair as soon as it exists.

Superseding: a build is keyed by what it computes, so a new choice starts its own
build at once, never queued behind the previous one; the page draws only the build
of the current choice. A superseded build finishes in the background (CPU work in a
thread cannot be interrupted) and its result is simply kept: the live engine tracks
it (and evicts it like any unused pair), a dataset pair goes to a small LRU cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from analytics.engine import PairColumns
from analytics.errors import AnalyticsError
from analytics.registry import PAIR_COLUMNS, STATISTICS
from dashapp.api.params import BadParam

#: Dataset pairs kept (each a few columns of the dataset's length).
DATASET_CACHE = 8
#: A failed live build is retried after this many seconds (not on every 500 ms refresh).
RETRY_S = 10.0


@dataclass(frozen=True, slots=True)
class BuildState:
    """What the panel says about a build: running since ``started`` (monotonic s), or
    failed with ``error`` (a sentence for the trader)."""

    label: str
    started: float
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.error is None

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started


@dataclass(frozen=True, slots=True)
class DatasetSnapshot:
    """A dataset pair as the panel draws it: the same attributes the live
    :class:`analytics.engine.PairSnapshot` offers the figures and KPIs (``series``,
    ``needs``, ``bar_seq``), no live z (no ticks: ``live_zscore`` is always None)."""

    series: PairColumns
    needs: dict
    bar_seq: int
    bars_a: object
    bars_b: object

    def live_zscore(self, price_a, price_b):
        return None


class Builds:
    """Build threads and their states (thread-safe; one instance per app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[tuple, BuildState] = {}
        self._datasets: OrderedDict[tuple, DatasetSnapshot] = OrderedDict()
        self._dataset_state: dict[tuple, BuildState] = {}

    # ------------------------------------------------------------------ live pairs
    def live(self, market, args: tuple, label: str) -> BuildState:
        """Start building the live pair ``args`` (``Selection.engine_args()``) unless
        that build runs already; its state. The market (its engine) tracks the result."""
        with self._lock:
            state = self._live.get(args)
            if state is not None and (state.running or state.elapsed() < RETRY_S):
                return state  # running, or failed a moment ago: say so, do not respin
            state = BuildState(label, time.monotonic())
            self._live[args] = state
        threading.Thread(
            target=self._build_live, args=(market, args, state), name="pair-build", daemon=True
        ).start()
        return state

    def live_state(self, args: tuple) -> BuildState | None:
        with self._lock:
            return self._live.get(args)

    def _build_live(self, market, args: tuple, state: BuildState) -> None:
        error = None
        try:
            market.pair(*args)
        except (AnalyticsError, KeyError, ValueError) as exc:
            error = f"could not build: {exc}"
        except Exception as exc:  # noqa: BLE001 - a thread must report, never vanish
            error = f"build failed: {type(exc).__name__}: {exc}"
        with self._lock:
            if error is None:
                self._live.pop(args, None)
            else:
                self._live[args] = BuildState(state.label, time.monotonic(), error)

    # ------------------------------------------------------------------ datasets
    def dataset(self, key: tuple, compute, label: str):
        """(snapshot, state) of the dataset pair ``key``: the cached snapshot (state
        None), or None and the state of its build (started here if needed).
        ``compute()`` returns the :class:`DatasetSnapshot` (runs in the thread)."""
        with self._lock:
            snap = self._datasets.get(key)
            if snap is not None:
                self._datasets.move_to_end(key)
                return snap, None
            state = self._dataset_state.get(key)
            if state is not None:
                return None, state
            state = BuildState(label, time.monotonic())
            self._dataset_state[key] = state
        threading.Thread(
            target=self._build_dataset, args=(key, compute, state), name="dataset-pair",
            daemon=True,
        ).start()
        return None, state

    def _build_dataset(self, key: tuple, compute, state: BuildState) -> None:
        try:
            snap = compute()
        except (AnalyticsError, BadParam, KeyError, ValueError) as exc:
            with self._lock:
                self._dataset_state[key] = BuildState(state.label, state.started, str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._dataset_state[key] = BuildState(
                    state.label, state.started, f"{type(exc).__name__}: {exc}"
                )
            return
        with self._lock:
            self._dataset_state.pop(key, None)
            self._datasets[key] = snap
            while len(self._datasets) > DATASET_CACHE:
                self._datasets.popitem(last=False)


#: The app's builds (the pages import this one).
BUILDS = Builds()


def dataset_snapshot(bars_a, bars_b, window: int, regression: str, prices: str):
    """Batch pair of two datasets legs' bars, as a :class:`DatasetSnapshot`: the same
    :func:`analytics.features.pair_from_bars` as the dataset API."""
    from analytics.features import pair_from_bars
    from analytics.pair import requirements

    _, series = pair_from_bars(bars_a, bars_b, window=window, regression=regression,
                               prices=prices)
    cols = PairColumns(**{f: np.asarray(getattr(series, f)) for f in PAIR_COLUMNS})
    req = requirements(window, regression)
    n = len(cols)
    needs = {f.name: max(0, req[f.name] - n) for f in STATISTICS}
    return DatasetSnapshot(cols, needs, n, bars_a, bars_b)
