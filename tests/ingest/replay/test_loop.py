"""Loop passes as pure functions (ingest/replay/loop.py): no socket, no clock.

Pass k moves T and E by k × (duration + 1 s), trade ids by k × (span + seam) and an
aggregate's f/l by k × its sub span; the end-to-end twin over a real connection is
``test_server.py::test_loop_shifts_ids_and_times_monotonic``.
"""

from __future__ import annotations

import pytest

from ingest.replay.loop import (
    APP_LOOP_SEAM_IDS,
    aggtrade_sub_spans,
    id_range_spans,
    pass_time_shift_ms,
    shift_event,
    trade_id_spans,
)
from ingest.replay.tapes import Tape, aggregate_trades

PASSES = 4


def _played(tape: Tape, seam: int) -> list[dict]:
    """Every trade event of ``PASSES`` loop passes, as the player sends them."""
    spans = trade_id_spans(tape, seam)
    shift = pass_time_shift_ms(tape)
    return [
        shift_event(ev.data, k, time_shift_ms=shift, id_span=spans[ev.symbol], sub_span=0)
        for k in range(PASSES)
        for ev in tape.events
    ]


@pytest.mark.parametrize("seam", [0, APP_LOOP_SEAM_IDS])
def test_passes_continue_the_ids_after_the_seam_and_move_time_forward(
    small_tape: Tape, seam: int
) -> None:
    tape = Tape(small_tape.events[:300])
    played = _played(tape, seam)
    assert pass_time_shift_ms(tape) == tape.duration_ms + 1000
    for symbol in tape.symbols:
        rows = [d for d in played if d["s"] == symbol]
        n = tape.counts[symbol]
        first = tape.first_id[symbol]
        assert len(rows) == PASSES * n
        want = [first + k * (n + seam) + i for k in range(PASSES) for i in range(n)]
        assert [d["t"] for d in rows] == want  # contiguous within a pass, seam between
        times = [d["T"] for d in rows]
        assert times == sorted(times)
        for k in range(1, PASSES):
            assert times[k * n] - times[k * n - 1] >= 1000  # a later pass, strictly
            assert times[k * n] == times[0] + k * (tape.duration_ms + 1000)
        assert all(d["E"] - d["T"] == e.data["E"] - e.data["T"]  # E moves with T
                   for d, e in zip(rows, [e for e in tape.events if e.symbol == symbol] * PASSES,
                                   strict=True))


def test_pass_zero_is_the_tape_as_is_and_a_copy(small_tape: Tape) -> None:
    data = small_tape.events[0].data
    out = shift_event(data, 0, time_shift_ms=10**6, id_span=10**6, sub_span=10**6)
    assert out == data and out is not data
    later = shift_event(data, 2, time_shift_ms=5, id_span=7, sub_span=11)
    assert later["t"] == data["t"] + 14 and later["T"] == data["T"] + 10
    assert data == small_tape.events[0].data  # the tape is never modified


def test_aggregates_move_their_own_ids_and_their_trade_range(small_tape: Tape) -> None:
    tape = Tape(small_tape.events[:300])
    aggs = aggregate_trades(tape.events)
    agg_tape = Tape(aggs)
    subs = aggtrade_sub_spans(agg_tape.events, 0)
    spans = trade_id_spans(agg_tape, 0)
    for symbol in tape.symbols:
        # an aggregate tape's f..l covers exactly the trades it was built from
        assert subs[symbol] == tape.counts[symbol]
        assert spans[symbol] == sum(1 for a in aggs if a.symbol == symbol)
    assert aggtrade_sub_spans(agg_tape.events, 1000) == {s: v + 1000 for s, v in subs.items()}
    assert aggtrade_sub_spans(tape.events, 0) == {}  # a trade tape has no f/l to move
    shift = pass_time_shift_ms(agg_tape)
    for symbol in tape.symbols:
        played = [
            shift_event(a.data, k, time_shift_ms=shift, id_span=spans[symbol],
                        sub_span=subs[symbol])
            for k in range(PASSES) for a in aggs if a.symbol == symbol
        ]
        ids = [d["a"] for d in played]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous across seams
        covered = [t for d in played for t in range(d["f"], d["l"] + 1)]
        assert covered == list(range(covered[0], covered[0] + len(covered)))


def test_id_range_spans_count_the_seam() -> None:
    assert id_range_spans({"A": 10, "B": 1}, {"A": 19, "B": 1}, 0) == {"A": 10, "B": 1}
    assert id_range_spans({"A": 10}, {"A": 19}, APP_LOOP_SEAM_IDS) == {"A": 1010}
