"""PostgreSQL store benchmark: sustained ticks/s through the real writer, with zero loss.

``python -m benchmarks.store_postgres [--db postgresql://USER@HOST:PORT/DB] [--trades N]
[--batch-size B]``

Without ``--db`` it starts a throw-away PostgreSQL (``benchmarks/_servers.py``: ``initdb`` in a
temp dir as the ``postgres`` user when root, a free port) with the server's DEFAULT
durability (fsync on, synchronous_commit on), and creates a fresh database per run.

What is timed: N synthetic trades (4 instruments, ids contiguous, times spanning two UTC
days so the writer creates partitions mid-run) queued through ``add_trade`` as the feed
thread does, until ``flush()`` returns, i.e. until every trade is committed by the ONE
writer thread (binary COPY into the stage, then the guarded INSERT into the day
partitions). Then loss is checked exactly: stored count, ids per instrument contiguous
and each once. A second pass re-delivers the first 10 % (a back-fill of ids already
stored): every one must be ignored, nothing stored twice.

Output: a readable table, then as the LAST line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ingest.models import Trade
from ingest.store.postgres_trades import PostgresTradeStore

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
TARGET_TICKS_PER_S = 50_000
#: 2023-11-14 12:00 UTC: a run of ~2 days of trade time crosses two midnights.
T0 = 1_699_963_200_000


def synthetic(n: int, seed: int = 0) -> list[Trade]:
    """``n`` trades, round-robin over :data:`SYMBOLS`, contiguous ids per symbol."""
    rng = np.random.default_rng(seed)
    times = (T0 + np.cumsum(rng.integers(0, 350, n))).tolist()  # ~1.6 days for 1M
    prices = (30_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))).tolist()
    qtys = rng.exponential(0.01, n).tolist()
    makers = (rng.random(n) < 0.5).tolist()
    k = len(SYMBOLS)
    return [Trade(SYMBOLS[i % k], 1 + i // k, times[i], prices[i], qtys[i], makers[i],
                  times[i] + 3) for i in range(n)]


def run(url: str, n: int, batch_size: int | None = None) -> dict:
    tape = synthetic(n)
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    st = PostgresTradeStore(url, market="spot", **kwargs).start()
    try:
        t0 = time.perf_counter()
        for t in tape:
            st.add_trade(t)
        queued_s = time.perf_counter() - t0
        ok = st.flush(timeout=600)
        total_s = time.perf_counter() - t0
        stored = st.count_trades()
        exact = all(
            np.array_equal(st.trade_ids(s), np.arange(1, 1 + n // len(SYMBOLS)
                                                      + (i < n % len(SYMBOLS))))
            for i, s in enumerate(SYMBOLS))
        first = {"trades": n, "seconds": round(total_s, 3), "enqueue_seconds":
                 round(queued_s, 3), "ticks_per_s": round(n / total_s),
                 "stored": stored, "rows_written": st.rows_written,
                 "duplicates_ignored": st.duplicates_ignored, "ids_exact": exact,
                 "flushed": ok, "commits": st.commits,
                 "partitions": _partitions(url)}
        again = tape[: n // 10]
        t1 = time.perf_counter()
        for t in again:
            st.add_trade(t)
        st.flush(timeout=600)
        redo_s = time.perf_counter() - t1
        second = {"trades": len(again), "seconds": round(redo_s, 3),
                  "ticks_per_s": round(len(again) / redo_s),
                  "stored_after": st.count_trades(),
                  "ignored": st.duplicates_ignored - first["duplicates_ignored"]}
        status = st.status()
    finally:
        st.close()
    return {"insert": first, "redelivered": second, "partitioning": status["partitioning"],
            "batch_size": st._batch_size}


def _partitions(url: str) -> int:
    import psycopg

    from ingest.store.postgres_schema import day_partitions

    with psycopg.connect(url, autocommit=True) as conn:
        return len(day_partitions(conn))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", help="a PostgreSQL URL (default: start a temp server)")
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="the writer's batch size (default: the store's)")
    args = ap.parse_args()
    if args.trades < 1000:
        ap.error("--trades must be >= 1000")
    if args.batch_size is not None and args.batch_size < 1:
        ap.error("--batch-size must be >= 1")
    server = None
    url = args.db
    if url is None:
        from benchmarks._servers import start_postgres

        server = start_postgres(durable=True)
        url = server.create_db(f"bench{int(time.time())}")
    try:
        res = run(url, args.trades, args.batch_size)
    finally:
        if server is not None:
            server.stop()
    ins, redo = res["insert"], res["redelivered"]
    loss_free = (ins["stored"] == ins["trades"] == ins["rows_written"] and ins["ids_exact"]
                 and ins["duplicates_ignored"] == 0 and redo["stored_after"] == ins["trades"]
                 and redo["ignored"] == redo["trades"])
    print(f"PostgreSQL store, one writer thread, binary COPY, batches of "
          f"{res['batch_size']:,} ({res['partitioning']})")
    print(f"{'pass':<12}{'trades':>10}{'seconds':>10}{'ticks/s':>10}  result")
    print(f"{'insert':<12}{ins['trades']:>10,}{ins['seconds']:>10.2f}{ins['ticks_per_s']:>10,}"
          f"  stored {ins['stored']:,}, ids exact {ins['ids_exact']}, "
          f"{ins['commits']} commits, {ins['partitions']} day partitions")
    print(f"{'redelivered':<12}{redo['trades']:>10,}{redo['seconds']:>10.2f}"
          f"{redo['ticks_per_s']:>10,}  ignored {redo['ignored']:,}, "
          f"stored after {redo['stored_after']:,}")
    print(f"target >= {TARGET_TICKS_PER_S:,} ticks/s with zero loss: "
          f"{'met' if ins['ticks_per_s'] >= TARGET_TICKS_PER_S and loss_free else 'NOT met'}")
    res["meets_target"] = bool(ins["ticks_per_s"] >= TARGET_TICKS_PER_S and loss_free)
    res["loss_free"] = bool(loss_free)
    print(json.dumps(res, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
