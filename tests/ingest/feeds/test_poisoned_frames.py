"""A frame with a poisoned id and one with a trade time ten years ahead, from the
exchange itself (a separate ``python -m ingest.replay`` process with ``--bad-id`` and
``--future-time``), against ``python app.py``: during the run and after a restart on
the same DB, every genuine trade is stored exactly once and in the 1 s bars, the bad
id never reaches the store (so it cannot seed the next run's duplicate check), and
``/api/health`` counts one quarantined and one rejected frame.

Before: the id ``t + 10**9`` became the high-water mark, every later genuine trade of
that symbol was dropped as a duplicate, during the run and after the restart.
"""

from __future__ import annotations

import signal

import pytest

from tests.ingest.test_stall_bars import assert_bars_equal_resample, stored_trades_and_bars
from tests.test_app import db_ids, free_port, source_ids, start, wait_health

BAD_AT, BAD_ADD = 3_000, 10**9
FUTURE_AT, FUTURE_ADD = 3_500, 10 * 365 * 86_400_000


def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def _assert_genuine_prefix(db, src: dict[str, list[int]]) -> dict[str, list[int]]:
    stored = db_ids(db)
    for sym, ids in stored.items():
        assert ids == src[sym][: len(ids)], (
            f"{sym}: stored ids are not the tape's (first foreign: "
            f"{sorted(set(ids) - set(src[sym]))[:3]}, missing: "
            f"{sorted(set(src[sym][: len(ids)]) - set(ids))[:3]})"
        )
    return stored


@pytest.mark.slow
def test_bad_id_and_far_future_frames_leave_every_genuine_trade_stored_and_in_bars(
    tmp_path, spot_tape
):
    ws_port, rest_port, port, db = free_port(), free_port(), free_port(), tmp_path / "m.db"
    replay = start(["-m", "ingest.replay", "--market", "spot", "--port", str(ws_port),
                    "--rest-port", str(rest_port), "--speed", "20", "--rate-limit", "0",
                    "--bad-id", str(BAD_AT), str(BAD_ADD),
                    "--future-time", str(FUTURE_AT), str(FUTURE_ADD)],
                   tmp_path / "replay.log")
    app_args = ["app.py", "--feed-url", f"ws://127.0.0.1:{ws_port}", "--market", "spot",
                "--stream", "trade", "--symbols", "BTCUSDT,ETHUSDT", "--db", str(db),
                "--port", str(port), "--rest-url", f"http://127.0.0.1:{rest_port}"]
    tape = spot_tape
    src = source_ids(tape)
    procs = [replay]
    try:
        app = start(app_args, tmp_path / "app1.log")
        procs.append(app)
        h1 = wait_health(port, lambda h: h["store"]["rows"] > 6_000, 90, "6,000 rows", app)
        _stop(app)
        # During the run: nothing foreign stored, both symbols kept going past the frames.
        stored = _assert_genuine_prefix(db, src)
        assert all(len(v) > 1_500 for v in stored.values()), {
            s: len(v) for s, v in stored.items()}
        trades, bars = stored_trades_and_bars(db)
        assert int(trades["time_ms"].max()) < tape.events[-1].time_ms + 1
        assert_bars_equal_resample(trades, bars)
        assert h1["feed"]["quarantined"] == 1 and h1["feed"]["rejected_times"] == 1
        assert h1["feed"]["quarantine"][0]["rest"] == "disagrees"

        # After a restart on the same DB: the rest of the tape, every gap back-filled.
        app = start(app_args, tmp_path / "app2.log")
        procs.append(app)
        last = {s: v[-1] for s, v in src.items()}

        def done(h: dict) -> bool:
            return (
                all(h["symbols"].get(s, {}).get("last_trade_id") == last[s] for s in src)
                and h["feed"]["gaps"] == 0 and h["store"]["pending"] == 0
            )

        wait_health(port, done, 120, "the whole tape stored after the restart", app)
        _stop(app)
        assert db_ids(db) == src, "every genuine trade, exactly once, nothing else"
        trades, bars = stored_trades_and_bars(db)
        checked = assert_bars_equal_resample(trades, bars)
        assert checked > 500
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
