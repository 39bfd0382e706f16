"""The local exchange: recorded trades replayed over Binance's WebSocket and REST protocols.

A WebSocket server that Binance clients cannot tell from Binance, with Binance's REST
trade history beside it, so tests and demos never need the internet. One server plays
spot and USD-M futures recordings together on one clock, and ``@bookTicker`` (best
bid/ask) from raw captures in order with the trades (docs/replay.md).

Clients connect exactly as they would to Binance (only the host differs)::

    ws://127.0.0.1:PORT/stream?streams=btcusdt@trade/ethusdt@trade   wrapped frames
    ws://127.0.0.1:PORT/ws/btcusdt@trade/btcusdt@bookTicker          bare events
    ws://127.0.0.1:PORT/ws  or  /stream                              then SUBSCRIBE
    the same under /market/... (USD-M futures since 2026) and /public/...: the
    futures events of a tape holding both markets (a one-market tape: every path)

One module per job:

==============  ===============================================================
``tapes``       recordings -> one time-ordered :class:`Tape` (formats, aggregation)
``protocol``    URL paths, stream names, sessions, control requests and replies
``frames``      events pre-encoded as bare / wrapped frames
``loop``        loop passes: how ids and times move from one pass to the next
``faults``      :class:`FaultPlan` and the fault injection the player fires
``server``      :class:`ReplayServer`: the shared player, fan-out, backpressure
``rest``        Binance's REST trade endpoints over what has been played, and listings
``listings``    exchangeInfo and the 24 h ticker computed from the tape
``wide``        :func:`wide_tape`: hundreds of instruments derived from the real tapes
``__main__``    ``python -m ingest.replay FILE…`` (``--help`` for the flags)
==============  ===============================================================
"""

from ingest.replay.faults import FaultPlan, garbage_frames
from ingest.replay.frames import exact_bytes
from ingest.replay.loop import APP_LOOP_SEAM_IDS
from ingest.replay.protocol import MAX_STREAMS, PROFILES, Route, canonical_stream, parse_path
from ingest.replay.server import MAX_GAP_S, ReplayServer

__all__ = [
    "APP_LOOP_SEAM_IDS",
    "MAX_GAP_S",
    "MAX_STREAMS",
    "PROFILES",
    "FaultPlan",
    "ReplayServer",
    "Route",
    "canonical_stream",
    "exact_bytes",
    "garbage_frames",
    "parse_path",
]
