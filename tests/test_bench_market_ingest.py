"""The checks behind ``benchmarks/_market_ingest.py`` (the hour of 300), on their own:

* the loss check finds every lost, extra and duplicate id and every instrument stored that
  the tape lacks (a table without the primary key lets the test plant a duplicate);
* the activity mix it prints equals pandas' count of the wide tape's trades by rank;
* the RSS summary's peak, end and slope equal numpy on the samples.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from benchmarks import _market_ingest as mi
from ingest.replay.wide import wide_tape


def _db(tmp_path, rows, gaps=()):
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE trades (venue TEXT, market TEXT, symbol TEXT, trade_id INTEGER)")
    con.execute("CREATE TABLE gaps (venue TEXT, market TEXT, symbol TEXT, first_id INTEGER, "
                "last_id INTEGER, detected_ms INTEGER, filled_ms INTEGER)")
    con.executemany("INSERT INTO trades VALUES ('binance', ?, ?, ?)", rows)
    con.executemany("INSERT INTO gaps VALUES ('binance', 'perp', ?, ?, ?, 0, ?)", gaps)
    con.commit()
    con.close()
    return db


def test_stored_vs_tape_counts_every_kind_of_difference(tmp_path):
    expected = {"perp:AUSDT": np.arange(1, 11), "perp:BUSDT": np.arange(100, 105)}
    exact = [("perp", "AUSDT", i) for i in range(1, 11)] + \
        [("perp", "BUSDT", i) for i in range(100, 105)]
    ok = mi.stored_vs_tape(_db(tmp_path, exact), expected)
    assert ok["zero_loss"] and ok["stored"] == ok["tape_trades"] == 15

    (tmp_path / "t.db").unlink()
    bad_rows = [r for r in exact if r != ("perp", "AUSDT", 4)]  # one lost
    bad_rows += [("perp", "BUSDT", 101), ("perp", "BUSDT", 999), ("perp", "CUSDT", 1)]
    bad = mi.stored_vs_tape(_db(tmp_path, bad_rows, gaps=[("AUSDT", 4, 4, None)]), expected)
    assert (bad["lost"], bad["extra"], bad["duplicates"], bad["unfilled_gaps"]) == (1, 1, 1, 1)
    assert bad["instruments_with_loss"] == ["perp:AUSDT", "perp:BUSDT"]
    assert bad["stored_instruments_not_on_tape"] == ["perp:CUSDT"]
    assert not bad["zero_loss"]


def test_tape_mix_is_pandas_count_by_rank():
    tape = wide_tape(40, market="perp", minutes=1)
    mix = mi.tape_mix(tape)
    df = pd.DataFrame([(ev.symbol, ev.data["T"]) for ev in tape.events if ev.kind == "trade"],
                      columns=["symbol", "T"])
    span_s = (df["T"].max() - df["T"].min()) / 1e3
    counts = df.symbol.value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert mix["instruments"] == 40 and mix["trades"] == len(df)
    assert mix["trades_per_s"] == round(len(df) / span_s, 2)
    for rank in (1, 2, 3, 10, 30):
        sym, n = ranked[rank - 1]
        got = mix["rank_trades_per_s"][str(rank)]
        assert got == {"symbol": f"perp:{sym}", "per_s": round(n / span_s, 3)}
    assert "100" not in mix["rank_trades_per_s"]  # only ranks the tape has
    assert mix["head_share_top10"] == round(sum(n for _, n in ranked[:10]) / len(df), 3)


def test_rss_summary_peak_end_and_slope():
    s = mi.RssSampler(pid=0)
    t = np.arange(0.0, 120.0, 0.5)
    mb = 100 + 0.25 * t  # 15 MB a minute
    mb[10] = 500  # a spike early on: the peak, outside the slope's half
    s.samples = list(zip(t.tolist(), mb.tolist(), strict=True))
    out = s.summary(0.0, 100.0, t_end=110.0)
    assert out["peak_mb"] == 500
    assert out["end_mb"] == round(100 + 0.25 * 110, 1)
    sel = (t >= 50) & (t <= 100)
    assert out["slope_mb_per_min"] == round(float(np.polyfit(t[sel] / 60, mb[sel], 1)[0]), 2)
    assert out["slope_mb_per_min"] == 15.0
