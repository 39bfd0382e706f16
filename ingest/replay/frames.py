"""Event frames as the replay exchange sends them: pre-encoded once, bare or wrapped.

A bare frame is the event's JSON (``/ws/...`` connections); a wrapped frame is
``{"stream":"btcusdt@trade","data":<bare>}`` (``/stream?streams=...``). The player
keeps every tape event encoded both ways (:class:`Item`), so sending costs no JSON work.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ingest.replay.tapes import TapeEvent


@dataclass(slots=True)
class Item:
    """One pre-encoded event: what the player sends for it.

    ``route`` = ``(market, stream)``: the fan-out key (a spot ``btcusdt@trade`` is not
    the perp one); ``name`` is the tape's name of the instrument (ids spans are keyed
    by it)."""

    stream: str
    bare: bytes
    wrapped: bytes
    event: TapeEvent
    name: str = ""
    route: tuple[str, str] = ("spot", "")


def encode_event(ev: TapeEvent, name: str | None = None) -> Item:
    """The :class:`Item` of a tape event, its bytes held at their exact size.

    A recorded object re-encodes to the recorded bytes (orjson keeps key order and
    writes compact JSON, as Binance does), so the frame is the one that was received."""
    stream = f"{ev.symbol.lower()}@{ev.kind}"
    bare = exact_bytes(orjson.dumps(ev.data))
    return Item(
        stream, bare, wrap(stream.encode(), bare), ev, name or ev.symbol, (ev.market, stream)
    )


def encode_frame(data: dict, stream: str, combined: bool) -> bytes:
    """One event dict as a wrapped (``combined``) or bare frame."""
    bare = orjson.dumps(data)
    return wrap(stream.encode(), bare) if combined else bare


def exact_bytes(data: bytes) -> bytes:
    """A copy of ``data`` in an allocation of its own size.

    orjson (3.13) returns bytes that keep its ~4 KB write buffer: harmless for a frame
    sent and dropped, but the player keeps every event of the tape pre-encoded (34,419
    events of the bundled tape: 134 MB of buffers for 5 MB of JSON). Measured with
    ``tracemalloc``; ``tests/ingest/replay/test_server.py`` holds it to its size.
    """
    return bytes(memoryview(data))


def wrap(stream: bytes, bare: bytes) -> bytes:
    """``{"stream":"<stream>","data":<bare>}`` without decoding ``bare``."""
    return b'{"stream":"' + stream + b'","data":' + bare + b"}"
