"""Wide tapes (ingest/replay/wide.py): the real head unchanged, derived instruments with
contiguous ids, Binance-like decimals and the documented Zipf activity mix."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import orjson
import pandas as pd
import pytest

from ingest.replay.tapes import _sort_key, default_sample_files, load_tape
from ingest.replay.wide import ALPHA, BETA, WIDE_SYMBOLS, wide_mix, wide_tape


@pytest.fixture(scope="module")
def perp40():
    return wide_tape(40, market="perp", seed=0)


def _frame(tape) -> pd.DataFrame:
    return pd.DataFrame(
        [(ev.symbol, ev.trade_id, float(ev.data["p"]), float(ev.data["q"]), ev.time_ms)
         for ev in tape.events],
        columns=["symbol", "id", "p", "q", "t"],
    )


def test_symbols_are_real_binance_names_and_unique():
    assert WIDE_SYMBOLS[:2] == ("BTCUSDT", "ETHUSDT")
    assert len(set(WIDE_SYMBOLS)) == len(WIDE_SYMBOLS) >= 400
    assert all(s.endswith("USDT") for s in WIDE_SYMBOLS)


@pytest.mark.parametrize("market", ["perp", "spot"])
def test_head_is_the_real_recording_byte_for_byte(market):
    tape = wide_tape(6, market=market)
    real = load_tape(default_sample_files(market))
    for sym in ("BTCUSDT", "ETHUSDT"):
        mine = [ev for ev in tape.events if ev.symbol == sym]
        rec = [ev for ev in real.events if ev.symbol == sym]
        assert len(mine) == len(rec) > 10_000
        assert [orjson.dumps(e.data) for e in mine] == [orjson.dumps(e.data) for e in rec]
        assert [e.recv_ns for e in mine] == [e.recv_ns for e in rec]


def test_ids_contiguous_times_in_window_and_tape_order(perp40):
    tape = perp40
    assert len(tape.symbols) == 40
    assert all(v == 0 for v in tape.missing_ids.values())
    df = _frame(tape)
    for sym, g in df.groupby("symbol"):
        assert (np.diff(g["id"].to_numpy()) == 1).all(), sym  # in play order too
        assert (np.diff(g["t"].to_numpy()) >= 0).all(), sym
    assert tape.first_time_ms >= load_tape(default_sample_files("perp")).first_time_ms
    events = list(tape.events)
    assert events == sorted(events, key=_sort_key)  # the presorted fast path holds


def test_prices_and_quantities_are_on_their_tick_and_step(perp40):
    plan = {p.symbol: p for p in wide_mix(40)}
    for ev in perp40.events[::7]:
        inst = plan[ev.symbol]
        if not inst.derived:
            continue
        p, q = Decimal(ev.data["p"]), Decimal(ev.data["q"])
        assert p > 0 and q > 0
        assert p % Decimal(inst.tick) == 0 and q % Decimal(inst.step) == 0
        # futures strings carry exactly the tick's decimals
        places = max(0, -Decimal(inst.tick).normalize().as_tuple().exponent)
        assert len(ev.data["p"].partition(".")[2]) == places
        assert list(ev.data) == ["e", "E", "T", "s", "t", "p", "q", "X", "m"]


def test_spot_derived_trades_have_spot_shape():
    tape = wide_tape(5, market="spot")
    ev = next(e for e in tape.events if e.symbol == WIDE_SYMBOLS[2])
    assert list(ev.data) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
    assert len(ev.data["p"].partition(".")[2]) == 8 and ev.market == "spot"


def test_activity_mix_follows_the_documented_zipf_law(perp40):
    """Counts of rank k >= 3 are binomial thinnings with mean rate_1 k^-1.1 × duration
    (checked within 5 sigma), so trades/s fall with rank; quote volume ~ k^-1.5."""
    df = _frame(perp40)
    counts = df.groupby("symbol").size()
    real = load_tape(default_sample_files("perp"))
    span_s = {s: None for s in ("BTCUSDT", "ETHUSDT")}
    for s in span_s:
        t = [ev.time_ms for ev in real.events if ev.symbol == s]
        span_s[s] = (t[-1] - t[0]) / 1000
    rate_1 = counts["BTCUSDT"] / span_s["BTCUSDT"]
    for inst in wide_mix(40)[2:]:
        n_src = real.counts[inst.source]
        expected = rate_1 * inst.rank ** -ALPHA * span_s[inst.source]
        sigma = np.sqrt(n_src * inst.keep_p * (1 - inst.keep_p))
        assert abs(counts[inst.symbol] - expected) < 5 * sigma + 1, inst.symbol
    ranks = np.arange(1, 41)
    by_rank = counts[list(WIDE_SYMBOLS[:40])].to_numpy()
    slope = np.polyfit(np.log(ranks[2:]), np.log(by_rank[2:]), 1)[0]
    assert slope == pytest.approx(-ALPHA, abs=0.1)
    quote = (df["p"] * df["q"]).groupby(df["symbol"]).sum()[list(WIDE_SYMBOLS[:40])]
    qslope = np.polyfit(np.log(ranks[2:]), np.log(quote.to_numpy()[2:]), 1)[0]
    assert qslope == pytest.approx(-(ALPHA + BETA), abs=0.15)
    assert quote.idxmax() == "BTCUSDT"


def test_deterministic_for_a_seed():
    a, b, c = wide_tape(8, seed=1), wide_tape(8, seed=1), wide_tape(8, seed=2)
    assert [e.data for e in a.events] == [e.data for e in b.events]
    assert [e.data for e in a.events] != [e.data for e in c.events]


def test_minutes_extends_with_loop_passes():
    tape = wide_tape(6, minutes=12)
    assert 11.5 * 60_000 < tape.duration_ms < 12 * 60_000
    assert all(v == 0 for v in tape.missing_ids.values())
    real = load_tape(default_sample_files("perp"))
    # head: pass 0 is the recording, pass 1 continues its ids
    assert tape.first_id["BTCUSDT"] == real.first_id["BTCUSDT"]
    assert tape.counts["BTCUSDT"] > 2 * real.counts["BTCUSDT"]


def test_late_listings_start_mid_tape():
    tape = wide_tape(10, late_listings=2)
    late = [inst for inst in wide_mix(10, late_listings=2) if inst.listed_ms is not None]
    assert [i.symbol for i in late] == list(WIDE_SYMBOLS[8:10])
    for inst in late:
        hint = tape.listings[("perp", inst.symbol)]
        assert hint["listed_ms"] == inst.listed_ms
        first = min(ev.time_ms for ev in tape.events if ev.symbol == inst.symbol)
        assert first >= inst.listed_ms
        frac = (inst.listed_ms - tape.first_time_ms) / tape.duration_ms
        assert 0.35 < frac < 0.65


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=10_000), dict(n=5, late_listings=4),
                                 dict(n=5, market="options"), dict(n=5, minutes=0)])
def test_bad_arguments_are_named(bad):
    n = bad.pop("n")
    with pytest.raises(ValueError, match="n must|late_listings|market|minutes"):
        wide_tape(n, **bad)


def test_shift_times_moves_listing_times_and_keeps_the_order():
    from ingest.replay.tapes import shift_times

    tape = wide_tape(6, late_listings=1)
    moved = shift_times(tape, 86_400_000)
    key = next(k for k, h in tape.listings.items() if h["listed_ms"] is not None)
    assert moved.listings[key]["listed_ms"] == tape.listings[key]["listed_ms"] + 86_400_000
    assert moved.listings[key]["tick"] == tape.listings[key]["tick"]
    assert [e.trade_id for e in moved.events] == [e.trade_id for e in tape.events]
    assert list(moved.events) == sorted(moved.events, key=_sort_key)
