"""Control requests answered as Binance does (ingest/replay/protocol.py), without a socket.

The same requests over a real connection: ``test_server.py::test_subscribe_list_unsubscribe``
and ``::test_properties_and_errors``.
"""

from __future__ import annotations

import orjson

from ingest.replay.protocol import (
    MAX_STREAMS,
    Client,
    answer_control,
    canonical_stream,
    parse_path,
)


def _session():
    client = Client(conn=None, cid=1, combined=False, micro=False)
    calls: list[str] = []

    def subscribe(c: Client, names) -> None:
        for name in names:
            c.subs.setdefault(name.lower())
        calls.append("subscribe")

    def ask(request: object) -> dict:
        message = request if isinstance(request, str) else orjson.dumps(request)
        return orjson.loads(answer_control(
            client, message, subscribe=subscribe, unsubscribed=lambda: calls.append("unsub"),
        ))

    return client, calls, ask


def test_subscribe_list_unsubscribe_and_the_combined_property():
    client, calls, ask = _session()
    assert ask({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}) == {
        "result": None, "id": 1}
    assert ask({"method": "LIST_SUBSCRIPTIONS", "id": "a1"}) == {
        "result": ["btcusdt@trade"], "id": "a1"}
    assert ask({"method": "UNSUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 2}) == {
        "result": None, "id": 2}
    assert client.subs == {} and calls == ["subscribe", "unsub"]
    assert ask({"method": "GET_PROPERTY", "params": ["combined"], "id": 3})["result"] is False
    assert ask({"method": "SET_PROPERTY", "params": ["combined", True], "id": 4}) == {
        "result": None, "id": 4}
    assert client.combined is True


def test_errors_carry_binance_codes_and_change_nothing():
    client, calls, ask = _session()
    assert ask("{not json")["code"] == 3
    assert ask([1, 2]) == {"code": 2, "msg": "Invalid request: expected a JSON object"}
    assert ask({"method": "SUBSCRIBE", "id": 1.5})["code"] == 2  # id: int, str or null
    assert ask({"method": "SUBSCRIBE", "id": "x" * 37})["code"] == 2
    assert ask({"id": 7}) == {"code": 2, "msg": "Invalid request: missing field `method`",
                              "id": 7}
    assert ask({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 8})["code"] == 2
    too_many = [f"s{i}@trade" for i in range(MAX_STREAMS + 1)]
    assert ask({"method": "SUBSCRIBE", "params": too_many, "id": 9})["code"] == 2
    assert ask({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 10})[
        "code"] == 1
    assert ask({"method": "GET_PROPERTY", "params": ["other"], "id": 11})["code"] == 0
    assert ask({"method": "PING", "id": 12})["code"] == 2
    assert client.subs == {} and client.combined is False and calls == []


def test_a_path_names_its_market() -> None:
    """Spot streams live at the root, USD-M futures under /market (and /public)."""
    assert parse_path("/stream?streams=btcusdt@trade").market == "spot"
    assert parse_path("/ws/btcusdt@bookTicker").market == "spot"
    assert parse_path("/market/stream?streams=btcusdt@trade").market == "perp"
    assert parse_path("/market/ws").market == "perp"
    assert parse_path("/public/ws/btcusdt@bookTicker").market == "perp"
    route = parse_path("/market/ws/btcusdt@trade/btcusdt@bookTicker")
    assert route.streams == ("btcusdt@trade", "btcusdt@bookTicker") and not route.combined


def test_book_ticker_stream_spelling() -> None:
    assert canonical_stream("BTCUSDT@bookticker") == "btcusdt@bookTicker"
    assert canonical_stream("ethusdt@BOOKTICKER") == "ethusdt@bookTicker"
