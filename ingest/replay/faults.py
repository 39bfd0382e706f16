"""Fault injection for the replay exchange: what to break, when, and how.

A :class:`FaultPlan` names positions of the shared player ("after N tape events") at
which to drop connections, withhold ids, send garbage, go silent, announce a
``serverShutdown``, resend events or forge one. :class:`FaultInjection` is the part of
:class:`~ingest.replay.server.ReplayServer` that fires them; the player calls
``_fire_faults(pos)`` at every planned position, so the ingest path's reconnect and
gap handling can be tested against a real socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from websockets.asyncio.server import broadcast

from ingest.replay.frames import Item, encode_frame, wrap

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults to inject, each fired once at a position of the shared player.

    A position N means "after N tape events have been processed" (played or
    skipped), counted across loop passes; N=0 is before the first event.

    drop_after:     close every connection (close code 1000) after event N.
    skip:           (N, K) do not play tape events N+1..N+K: clients see a gap of
                    exactly those ids (recorded in ``status()["skipped_ids"]``).
    garbage:        (N, K) after event N send K malformed frames to every client.
    silence:        (N, SECONDS) after event N send nothing and answer nothing for
                    SECONDS (connections stay open; at speed 0 the player waits).
    shutdown_after: after event N send ``serverShutdown`` to every client, stop
                    feeding them and close them 1 s later.
    drop_every:     close every connection after each N events (N, 2N, 3N, ...).
    duplicate:      (N, K) after event N send the K events before it again
                    (clients see K duplicate ids).
    bad_id:         (N, D) after event N send one copy of event N with its id + D
                    (a valid-looking frame with a poisoned id; REST never has it).
    future_time:    (N, MS) after event N send one copy of event N with id + 1 and
                    T and E moved MS ms ahead (the genuine id + 1 follows).
    """

    drop_after: int | None = None
    skip: tuple[int, int] | None = None
    garbage: tuple[int, int] | None = None
    silence: tuple[int, float] | None = None
    shutdown_after: int | None = None
    drop_every: int | None = None
    duplicate: tuple[int, int] | None = None
    bad_id: tuple[int, int] | None = None
    future_time: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("drop_after", "shutdown_after"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"FaultPlan.{name} must be an int >= 0, got {value!r}")
        every = self.drop_every
        if every is not None and (type(every) is not int or every < 1):
            raise ValueError(f"FaultPlan.drop_every must be an int >= 1, got {every!r}")
        for name in ("skip", "garbage", "silence", "duplicate", "bad_id", "future_time"):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) != 2 or type(value[0]) is not int or value[0] < 0:
                raise ValueError(f"FaultPlan.{name} must be (position >= 0, amount)")
            if not value[1] > 0:
                raise ValueError(
                    f"FaultPlan.{name}: amount must be > 0, got {value[1]}"
                )
            if name != "silence" and type(value[1]) is not int:
                raise ValueError(f"FaultPlan.{name}: count must be an int")


def garbage_frames(
    data: dict, stream: str, count: int, *, combined: bool
) -> list[bytes]:
    """``count`` malformed frames modelled on a real event; none parses as a trade.

    A mix of invalid JSON, truncated JSON and valid JSON with missing or
    wrong-typed fields (price "abc", id as a string, negative qty, ...), which a
    robust feed must count and skip.
    """
    id_key = "a" if data.get("e") == "aggTrade" else "t"

    def variant(i: int) -> bytes | dict:
        ev = dict(data)
        match i % 12:
            case 0:
                return encode_frame(data, stream, combined)[: 40 + i % 7]
            case 1:
                return b"this is not json: " + str(i).encode()
            case 2:
                ev["p"] = "abc"
            case 3:
                ev[id_key] = str(ev[id_key])
            case 4:
                del ev["p"]
            case 5:
                ev["q"] = "-1.5"
            case 6:
                ev["m"] = "yes"
            case 7:
                return b"[1,2,3]"
            case 8:
                ev["T"] = ev["T"] + 0.5
            case 9:
                ev["p"] = "NaN"
            case 10:
                ev["s"] = ""
            case _:
                if combined:
                    return orjson.dumps({"stream": stream, "data": None})
                return b'{"e":"trade","E":1}'
        return ev

    out: list[bytes] = []
    for i in range(count):
        item = variant(i)
        out.append(item if isinstance(item, bytes) else encode_frame(item, stream, combined))
    return out


class FaultInjection:
    """The fault side of :class:`~ingest.replay.server.ReplayServer` (a mixin: it
    works on the server's clients, items and fan-out, and records what fired)."""

    def _fault_positions(self) -> set[int]:
        plan = self.faults
        positions = {plan.drop_after, plan.shutdown_after}
        for pair in (plan.garbage, plan.silence, plan.duplicate, plan.bad_id,
                     plan.future_time):
            if pair is not None:
                positions.add(pair[0])
        positions.discard(None)
        return positions  # type: ignore[return-value]

    async def _fire_faults(self, pos: int) -> float:
        """Fire every fault planned at ``pos``; return seconds to shift the clock."""
        plan = self.faults
        fired = {f["fault"] for f in self.faults_fired}
        shift = 0.0
        if plan.garbage and plan.garbage[0] == pos and "garbage" not in fired:
            await self._fault_garbage(pos, plan.garbage[1])
        if plan.silence and plan.silence[0] == pos and "silence" not in fired:
            seconds = float(plan.silence[1])
            self._note_fault("silence", pos, seconds=seconds)
            log.warning("replay: fault silence for %.1fs after event %d", seconds, pos)
            assert self._silence_over is not None
            self._silence_over.clear()
            try:
                await asyncio.sleep(seconds)
            finally:
                self._silence_over.set()
            shift = seconds
        if plan.duplicate and plan.duplicate[0] == pos and "duplicate" not in fired:
            await self._fault_duplicate(pos, plan.duplicate[1])
        if plan.bad_id and plan.bad_id[0] == pos and "bad_id" not in fired:
            await self._fault_forged(pos, "bad_id", id_add=plan.bad_id[1], ms_add=0)
        if plan.future_time and plan.future_time[0] == pos and "future_time" not in fired:
            await self._fault_forged(pos, "future_time", id_add=1,
                                     ms_add=plan.future_time[1])
        if plan.shutdown_after == pos and "shutdown" not in fired:
            self._fault_shutdown(pos)
        if plan.drop_after == pos and "drop" not in fired:
            clients = [c for c in self._clients.values() if not c.closing]
            self._note_fault("drop", pos, clients=len(clients))
            log.warning("replay: fault drop: closing %d connection(s) after event %d",
                        len(clients), pos)
            for client in clients:
                self._close_client(client, 1000, "replay fault: drop")
        return shift

    async def _fault_duplicate(self, pos: int, count: int) -> None:
        n = len(self._items)
        lo = max(0, pos - count)
        self._note_fault("duplicate", pos, count=pos - lo)
        log.warning("replay: fault duplicate: resending events %d..%d", lo + 1, pos)
        for j in range(lo, pos):
            item = self._items[j % n]
            clients = self._fanout.get(item.route)
            if clients:
                await self._deliver(clients, item, j // n, False)
                self.duplicates_sent += 1

    async def _fault_forged(self, pos: int, name: str, *, id_add: int, ms_add: int) -> None:
        """Send one forged copy of event ``pos`` (the last one played): id + id_add,
        T and E + ms_add. Trade tapes only (the ``@trade`` stream)."""
        n = len(self._items)
        j = self._last_trade_index(max(pos - 1, 0))
        item = self._items[j % n]
        data = dict(item.event.data)
        key = "a" if data.get("e") == "aggTrade" else "t"
        data[key] += id_add + (j // n) * self._id_span[item.name]
        data["T"] += ms_add + (j // n) * self._time_shift_ms
        data["E"] += ms_add + (j // n) * self._time_shift_ms
        bare = orjson.dumps(data)
        forged = Item(item.stream, bare, wrap(item.stream.encode(), bare), item.event,
                      item.name, item.route)
        clients = self._fanout.get(item.route, ())
        self._note_fault(name, pos, symbol=item.event.symbol, trade_id=data[key],
                         time_ms=data["T"], clients=len(clients))
        log.warning("replay: fault %s: %s id %d T %d", name, item.event.symbol,
                    data[key], data["T"])
        for client in clients:
            if not client.closing and item.stream in client.subs:
                await self._send(client, forged.wrapped if client.combined else forged.bare,
                                 True)

    def _drop_every(self, pos: int) -> None:
        clients = [c for c in self._clients.values() if not c.closing]
        if not clients:
            return  # nobody connected (the client is reconnecting): nothing to drop
        self.drops += 1
        log.info("replay: fault drop-every: closing %d connection(s) after event %d",
                 len(clients), pos)
        for client in clients:
            self._close_client(client, 1000, "replay fault: drop every")

    def _note_fault(self, name: str, pos: int, **details: object) -> None:
        self.faults_fired.append({"fault": name, "position": pos, **details})

    def _last_trade_index(self, j: int) -> int:
        """``j``, or the nearest earlier position holding a trade event (the forged and
        garbage frames are modelled on a trade; a book update has no trade id)."""
        n = len(self._items)
        for back in range(min(n, j + 1)):
            if self._items[(j - back) % n].event.kind != "bookTicker":
                return j - back
        return j

    async def _fault_garbage(self, pos: int, count: int) -> None:
        item = self._items[self._last_trade_index(pos) % len(self._items)]
        clients = [c for c in self._clients.values() if not c.closing]
        self._note_fault("garbage", pos, count=count, clients=len(clients))
        log.warning(
            "replay: fault garbage: %d bad frames to %d client(s)", count, len(clients)
        )
        for client in clients:
            for frame in garbage_frames(
                item.event.data, item.stream, count, combined=client.combined
            ):
                await self._send(client, frame, True)
                self.garbage_sent += 1

    def _fault_shutdown(self, pos: int) -> None:
        clients = [c for c in self._clients.values() if not c.closing]
        self._note_fault("shutdown", pos, clients=len(clients))
        log.warning("replay: fault serverShutdown to %d client(s)", len(clients))
        now_ms = int(time.time() * 1000)
        for client in clients:
            ev = {"e": "serverShutdown", "E": now_ms * 1000 if client.micro else now_ms}
            if client.combined:
                frame = orjson.dumps({"stream": "!serverShutdown", "data": ev})
            else:
                frame = orjson.dumps(ev)
            conn = client.conn
            broadcast((conn,), frame, text=True)
            self._close_client(client, 1001, "server shutdown", delay=SHUTDOWN_GRACE_S)

    def _record_skip(self, item: Item, index: int) -> None:
        ev = item.event
        if ev.kind != "bookTicker":  # a book update has no trade id to lose
            extend_range(self.skipped_ids, item.name, ev.trade_id)
        if self._aggs is not None and index in self._aggs:
            agg_id = self._aggs[index].event.trade_id
            extend_range(self.skipped_agg_ids, item.name, agg_id)
        if not any(f["fault"] == "skip" for f in self.faults_fired):
            skip = self.faults.skip
            assert skip is not None
            self._note_fault("skip", skip[0], count=skip[1])
            log.warning(
                "replay: fault skip: %d events after event %d", skip[1], skip[0]
            )


def extend_range(ranges: dict[str, list[int]], symbol: str, trade_id: int) -> None:
    """Widen ``symbol``'s ``[lo, hi]`` id range (skipped ids) to cover ``trade_id``."""
    span = ranges.get(symbol)
    if span is None:
        ranges[symbol] = [trade_id, trade_id]
    else:
        span[0] = min(span[0], trade_id)
        span[1] = max(span[1], trade_id)


def copy_ranges(ranges: dict[str, list[int]]) -> dict[str, list[int]]:
    """A copy for ``status()``, safe while the player thread extends the original."""
    return {k: list(v) for k, v in list(ranges.items())}
