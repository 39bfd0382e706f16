"""align_pair vs a pandas oracle, and PairAligner vs align_pair at every step."""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.align import AlignedPair, PairAligner, align_pair
from analytics.bars import Bar, BarBuilder, Bars, resample_bars
from analytics.timeframes import bars_per_day


def pandas_align(bars_a: Bars, bars_b: Bars) -> pd.DataFrame:
    """Oracle: outer join on ts, forward-fill, drop rows before both first bars."""
    a = pd.Series(bars_a.close, index=bars_a.ts, name="a")
    b = pd.Series(bars_b.close, index=bars_b.ts, name="b")
    df = pd.concat([a, b], axis=1, join="outer").sort_index()
    df["a_has_bar"], df["b_has_bar"] = df["a"].notna(), df["b"].notna()
    df[["a", "b"]] = df[["a", "b"]].ffill()
    return df.loc[max(bars_a.ts[0], bars_b.ts[0]):]


def points(pair: AlignedPair) -> list[tuple[int, float, float]]:
    return list(zip(pair.ts.tolist(), pair.a.tolist(), pair.b.tolist(), strict=True))


def make_bars(ts, closes, tf_ms=1_000) -> Bars:
    ts = np.asarray(ts, dtype=np.int64)
    c = np.asarray(closes, dtype=float)
    one = np.ones(len(ts))
    return Bars(ts=ts, open=c, high=c, low=c, close=c, volume=one, quote_volume=c,
                trades=one.astype(np.int64), buy_volume=one * 0, first_id=ts,
                last_id=ts, tf_ms=tf_ms)


def check_against_oracle(bars_a: Bars, bars_b: Bars) -> None:
    got, want = align_pair(bars_a, bars_b), pandas_align(bars_a, bars_b)
    np.testing.assert_array_equal(got.ts, want.index.to_numpy())
    for col in ("a", "b", "a_has_bar", "b_has_bar"):
        np.testing.assert_array_equal(
            getattr(got, col), want[col].to_numpy(), err_msg=col
        )
    frame = got.to_frame()
    assert list(frame.columns) == ["a", "b", "a_has_bar", "b_has_bar"]
    assert frame.index.name == "ts" and str(frame.index.tz) == "UTC"
    np.testing.assert_array_equal(frame.index.asi8 // 1_000, got.ts)  # us -> ms


# -- batch -----------------------------------------------------------------------------
@pytest.mark.parametrize("tf_ms", [1_000, 5_000, 60_000])
def test_align_pair_matches_pandas_on_tape(sample_bars_1s, tf_ms):
    btc = resample_bars(sample_bars_1s["BTCUSDT"], tf_ms=tf_ms)
    eth = resample_bars(sample_bars_1s["ETHUSDT"], tf_ms=tf_ms)
    check_against_oracle(btc, eth)
    check_against_oracle(eth, btc)
    pair = align_pair(btc, eth)
    if tf_ms == 1_000:  # the real tape has seconds where only one leg traded
        assert (~pair.a_has_bar).any() and (~pair.b_has_bar).any()
    assert (pair.a_has_bar | pair.b_has_bar).all()  # union grid: someone traded


def test_align_pair_rules():
    a = make_bars([1_000, 2_000, 5_000, 6_000], [1.0, 2.0, 5.0, 6.0])
    b = make_bars([3_000, 5_000, 8_000], [30.0, 50.0, 80.0])
    pair = align_pair(a, b)
    # Starts at b's first bar; a carried from 2_000 into 3_000; b carried to 6_000.
    assert points(pair) == [(3_000, 2.0, 30.0), (5_000, 5.0, 50.0), (6_000, 6.0, 50.0),
                            (8_000, 6.0, 80.0)]
    assert pair.a_has_bar.tolist() == [False, True, True, False]
    assert pair.b_has_bar.tolist() == [True, True, False, True]
    check_against_oracle(a, b)
    check_against_oracle(b, a)
    # max_bars keeps the last N, still carrying values from before the window.
    assert points(align_pair(a, b, max_bars=2)) == points(pair)[-2:]
    assert points(align_pair(a, b, max_bars=1)) == [(8_000, 6.0, 80.0)]
    assert len(align_pair(a, b, max_bars=0)) == 0
    assert points(align_pair(a, b, max_bars=100)) == points(pair)
    assert points(pair.tail(2)) == points(pair)[-2:]
    # Identical grids, disjoint grids, and a leg that ends before the other starts.
    check_against_oracle(a, a)
    check_against_oracle(make_bars([1_000, 3_000], [1, 3]),
                         make_bars([2_000, 4_000], [2, 4]))
    early = make_bars([0, 1_000], [7.0, 8.0])
    assert points(align_pair(early, b)) == [(3_000, 8.0, 30.0), (5_000, 8.0, 50.0),
                                            (8_000, 8.0, 80.0)]
    # Empty legs.
    assert len(align_pair(Bars.empty(1_000), b)) == 0
    assert len(align_pair(a, Bars.empty(1_000))) == 0
    assert align_pair(a, Bars.empty(1_000)).to_frame().empty
    with pytest.raises(ValueError, match="tf_ms differ"):
        align_pair(a, Bars.empty(60_000))
    with pytest.raises(ValueError, match="max_bars"):
        align_pair(a, b, max_bars=-1)


def test_align_pair_max_bars_one_day(sample_bars_1s):
    btc, eth = sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"]
    full = align_pair(btc, eth)
    day = bars_per_day(1_000)
    assert len(align_pair(btc, eth, max_bars=day)) == len(full)  # the tape is < 1 day
    assert points(align_pair(btc, eth, max_bars=50)) == points(full)[-50:]
    with pytest.raises(ValueError, match="read-only"):
        full.a[0] = 0.0


# -- incremental -----------------------------------------------------------------------
class Recorder:
    """Feeds an aligner and checks the emitted points after every event."""

    def __init__(self, tf_ms: int, delay: int, final: list) -> None:
        self.aligner = PairAligner(tf_ms, close_delay_ms=delay)
        self.tf_ms, self.delay, self.final = tf_ms, delay, final
        self.final_ts = [p[0] for p in final]
        self.delivered: dict[str, list[Bar]] = {"a": [], "b": []}
        self.emitted: list = []

    def bar(self, leg: str, bar: Bar | None) -> None:
        if bar is not None:
            self.delivered[leg].append(bar)
            self._check(self.aligner.on_bar(leg, bar))

    def clock(self, now: int) -> None:
        self._check(self.aligner.on_clock(now))
        # Liveness: every point whose deadline has passed is out.
        due = bisect.bisect_right(self.final_ts, now - self.tf_ms - self.delay)
        assert len(self.emitted) >= due

    def _check(self, new: list) -> None:
        if not new:
            return
        self.emitted.extend(new)
        n = len(self.emitted)
        # Never a point that a later bar would change: a prefix of the final result...
        assert self.emitted[n - len(new):] == self.final[n - len(new):n]
        # ...and of the batch alignment of exactly the bars received so far.
        so_far = align_pair(Bars.from_rows(self.delivered["a"], self.tf_ms),
                            Bars.from_rows(self.delivered["b"], self.tf_ms))
        assert points(so_far)[:n] == self.emitted


@pytest.mark.parametrize(("tf_ms", "delay"), [(1_000, 0), (1_000, 300), (5_000, 0),
                                              (60_000, 1_000)])
def test_pair_aligner_equals_align_pair_on_tape(
    sample_ticks, sample_bars_1s, tf_ms, delay
):
    """Live path: two BarBuilders on the merged tape, clocks in between, every step."""
    final = points(align_pair(resample_bars(sample_bars_1s["BTCUSDT"], tf_ms=tf_ms),
                              resample_bars(sample_bars_1s["ETHUSDT"], tf_ms=tf_ms)))
    legs = {"a": "BTCUSDT", "b": "ETHUSDT"}
    events = sorted(
        (int(t), leg, k)
        for leg, sym in legs.items()
        for k, t in enumerate(sample_ticks[sym]["time_ms"])
    )
    builders = {leg: BarBuilder(tf_ms, close_delay_ms=delay) for leg in legs}
    rec = Recorder(tf_ms, delay, final)
    rng = np.random.default_rng(5)
    prev = events[0][0]
    for t, leg, k in events:
        if rng.random() < 0.2:  # an engine clock tick somewhere since the last trade
            now = int(rng.integers(prev, t + 1))
            for lg in legs:
                rec.bar(lg, builders[lg].on_clock(now))
            rec.clock(now)
        cols = sample_ticks[legs[leg]]
        rec.bar(leg, builders[leg].on_tick(
            t, int(cols["trade_id"][k]), float(cols["price"][k]), float(cols["qty"][k]),
            bool(cols["buyer_is_maker"][k])))
        prev = t
    for lg in legs:
        rec.bar(lg, builders[lg].flush())
    rec.clock(prev + 10 * tf_ms + delay)
    assert rec.emitted == final and len(final) > 0
    assert rec.aligner.late_bars == 0 and rec.aligner.pending == 0
    assert all(b.late_ticks == 0 for b in builders.values())


@st.composite
def bar_streams(draw):
    tf = draw(st.sampled_from([1_000, 5_000]))
    grid = st.lists(st.integers(-20, 60), min_size=0, max_size=25, unique=True)
    out = {}
    for leg in ("a", "b"):
        ks = sorted(draw(grid))
        closes = [float(draw(st.integers(1, 9))) for _ in ks]
        out[leg] = [Bar(k * tf, c, c, c, c, 1.0, c, 1, 0.0, k, k)
                    for k, c in zip(ks, closes, strict=True)]
    return tf, out


@settings(max_examples=200, deadline=None)
@given(streams=bar_streams(), delay=st.sampled_from([0, 1, 700, 4_000]), data=st.data())
def test_pair_aligner_equals_align_pair_random(streams, delay, data):
    """Bars delivered between their close and their deadline, clocks anywhere."""
    tf, bars = streams
    legs = (Bars.from_rows(bars["a"], tf), Bars.from_rows(bars["b"], tf))
    final = points(align_pair(*legs))
    events = []  # (time, kind order: bars before clocks at equal time, payload)
    for leg, legbars in bars.items():
        last = None
        for bar in legbars:
            at = bar.ts + tf + data.draw(st.integers(0, delay))
            at = at if last is None else max(at, last)  # a builder emits in order
            events.append((at, 0, leg, bar))
            last = at
    for now in data.draw(st.lists(st.integers(-30 * tf, 70 * tf), max_size=20)):
        events.append((now, 1, "", None))
    events.sort(key=lambda e: (e[0], e[1]))
    rec = Recorder(tf, delay, final)
    for now, kind, leg, bar in events:
        if kind == 0:
            rec.bar(leg, bar)
        else:
            rec.clock(now)
    rec.clock(10**9)
    assert rec.emitted == final
    assert rec.aligner.late_bars == 0 and rec.aligner.pending == 0


def test_pair_aligner_emission_and_errors():
    al = PairAligner(1_000)
    bar = lambda ts, c: Bar(ts, c, c, c, c, 1.0, c, 1, 0.0, 1, 1)  # noqa: E731
    assert al.on_bar("a", bar(1_000, 1.0)) == []  # b unknown yet
    assert al.on_bar("a", bar(2_000, 2.0)) == []
    assert al.on_bar("b", bar(2_000, 20.0)) == [(2_000, 2.0, 20.0)]  # 1_000: before b
    assert al.on_bar("b", bar(3_000, 30.0)) == []  # a may still send 3_000
    assert al.pending == 1
    assert al.on_clock(3_999) == []
    assert al.on_clock(4_000) == [(3_000, 2.0, 30.0)]  # a's 3_000 deadline passed
    pts = al.on_bar("a", bar(5_000, 5.0))
    assert pts == [] and al.on_bar("b", bar(6_000, 60.0)) == [(5_000, 5.0, 30.0)]
    # A bar for an emitted bucket (clock ran ahead of the builder) is only carried.
    al.on_clock(10_000)
    assert al.on_bar("a", bar(5_000 + 1_000, 6.0)) == [] and al.late_bars == 1
    assert al.on_bar("b", bar(11_000, 110.0)) == []
    assert al.on_bar("a", bar(12_000, 12.0)) == [(11_000, 6.0, 110.0)]
    with pytest.raises(ValueError, match="increasing"):
        al.on_bar("a", bar(12_000, 1.0))
    with pytest.raises(ValueError, match="leg"):
        al.on_bar("c", bar(20_000, 1.0))
    with pytest.raises(ValueError, match="multiple"):
        al.on_bar("b", bar(20_500, 1.0))
    with pytest.raises(ValueError, match=">= 0"):
        PairAligner(1_000, close_delay_ms=-5)
