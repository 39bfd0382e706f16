"""Loop passes: how a looped tape moves its ids and times so the market never repeats.

A looped replay plays the tape again and again (pass 0, 1, 2, ...). Pass ``k`` plays
every event with

* trade time ``T`` and event time ``E`` moved by ``k × (duration + 1000 ms)``: a later
  pass starts at least one second after the previous one ended;
* its id moved by ``k × span``, ``span = last id − first id + 1 + seam`` per symbol (and
  per stream for aggregates): ids continue where the previous pass stopped, after
  ``seam`` ids nobody ever has. ``python app.py --replay`` leaves
  :data:`APP_LOOP_SEAM_IDS` out, so the seam where prices snap back to the tape's start
  looks like what it is, an outage REST cannot fill, and the client marks a session
  break; the server's default seam 0 keeps the passes' ids contiguous;
* an aggregate's first/last trade ids ``f``/``l`` moved by ``k × sub span`` (the trade
  span for aggregates derived from trades, the tape's ``f``..``l`` range otherwise);
* a bookTicker's update id ``u`` moved by ``k × (last u − first u + 1)`` per instrument
  (``u`` increases but is not contiguous: it only has to keep increasing), its ``T``/``E``
  (futures; spot book updates carry no time) like a trade's.

Pure functions of the tape. The socket's frames are :func:`shift_event`; the REST side
(history) moves its rows by the same spans (``ReplayServer.id_span``, ``sub_span``,
``time_shift_ms``), so a trade looks the same on either.
"""

from __future__ import annotations

from ingest.replay.tapes import BOOK_KIND, Tape, TapeEvent

#: Ids left out between two loop passes by ``python app.py --replay``: the seam where
#: prices snap back to the tape's start then looks like what it is, an outage that
#: cannot be back-filled (the REST side never had those ids), and the client marks a
#: session break there. 0 (the server's default) keeps the passes' ids contiguous.
APP_LOOP_SEAM_IDS = 1_000

#: A later pass starts this long after the previous pass's last trade.
PASS_PAUSE_MS = 1000


def pass_time_shift_ms(tape: Tape) -> int:
    """How far each loop pass moves trade times forward: duration + 1 s."""
    return tape.duration_ms + PASS_PAUSE_MS


def book_id_spans(tape: Tape) -> dict[str, int]:
    """Per instrument name, how far each pass moves bookTicker update ids ``u``."""
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}
    for ev in tape.events:
        if ev.kind == BOOK_KIND:
            name = tape.name_of(ev)
            lo[name] = min(lo.get(name, ev.trade_id), ev.trade_id)
            hi[name] = max(hi.get(name, ev.trade_id), ev.trade_id)
    return {n: hi[n] - lo[n] + 1 for n in lo}


def trade_id_spans(tape: Tape, seam_ids: int) -> dict[str, int]:
    """Per symbol, how far each pass moves the tape's own ids (trade or aggTrade)."""
    first, last = tape.first_id, tape.last_id
    return {s: last[s] - first[s] + 1 + seam_ids for s in tape.symbols}


def aggtrade_sub_spans(
    events: list[TapeEvent], seam_ids: int, name_of=None
) -> dict[str, int]:
    """For aggTrade tapes: per symbol (``name_of(ev)``, default the bare symbol), how
    far each pass moves ``f``/``l``."""
    spans: dict[str, int] = {}
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}
    for ev in events:
        if ev.kind == "aggTrade":
            first, last = ev.data.get("f"), ev.data.get("l")
            if isinstance(first, int) and isinstance(last, int):
                key = ev.symbol if name_of is None else name_of(ev)
                lo[key] = min(lo.get(key, first), first)
                hi[key] = max(hi.get(key, last), last)
    for sym in lo:
        spans[sym] = hi[sym] - lo[sym] + 1 + seam_ids
    return spans


def id_range_spans(
    first: dict[str, int], last: dict[str, int], seam_ids: int
) -> dict[str, int]:
    """Per symbol ``last − first + 1 + seam`` (the spans of derived aggregates)."""
    return {s: last[s] - first[s] + 1 + seam_ids for s in first}


def shift_event(
    data: dict, pass_index: int, *, time_shift_ms: int, id_span: int, sub_span: int
) -> dict:
    """A copy of event ``data`` as loop pass ``pass_index`` plays it.

    ``T``, ``E`` += pass × time_shift_ms; ``t`` (trade), ``a`` (aggTrade) or ``u``
    (bookTicker) += pass × id_span; an aggregate's ``f``, ``l`` += pass × sub_span.
    Pass 0 is the tape as is.
    """
    data = dict(data)
    if not pass_index:
        return data
    shift_ms = pass_index * time_shift_ms
    e = data.get("e")
    if e == BOOK_KIND or (e is None and "u" in data):
        for key in ("T", "E"):
            if key in data:
                data[key] += shift_ms
        data["u"] += pass_index * id_span
        return data
    data["T"] += shift_ms
    data["E"] += shift_ms
    if e == "aggTrade":
        data["a"] += pass_index * id_span
        if "f" in data and "l" in data:
            data["f"] += pass_index * sub_span
            data["l"] += pass_index * sub_span
    else:
        data["t"] += pass_index * id_span
    return data
