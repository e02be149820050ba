"""The live tail without sockets: filtering, the bounded window, the hub's offer."""

from __future__ import annotations

import random

import orjson
from hypothesis import given
from hypothesis import strategies as st

from fakes import FakeSubscriber, message, publish
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.tail import Tail, Tails


def test_tail_keeps_what_its_patterns_match_in_order() -> None:
    tail = Tail("r", ["chat", "news:*"])
    for topic in ("chat", "chatroom", "news:eu", "sport", "news:us"):
        tail.offer(message(topic, topic), None, 1.0)
    batch = tail.take()
    assert batch is not None
    assert [seen.message.topic for seen in batch.messages] == ["chat", "news:eu", "news:us"]
    assert batch.dropped == 0
    assert tail.take() is None, "taking empties the window"


def test_no_patterns_means_everything() -> None:
    tail = Tail("r", [])
    tail.offer(message("any", 1), "e:1", 0.0)
    assert tail.take() is not None


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=60))
def test_a_full_window_drops_the_oldest_and_counts_them(window: int, offered: int) -> None:
    tail = Tail("r", window=window)
    for i in range(offered):
        tail.offer(message("t", i), f"e:{i + 1}", float(i))
    batch = tail.take()
    if offered == 0:
        assert batch is None
        return
    assert batch is not None
    kept = min(window, offered)
    assert [seen.message.data for seen in batch.messages] == list(range(offered - kept, offered))
    assert batch.dropped == offered - kept


def test_wake_fires_only_when_the_window_stops_being_empty() -> None:
    wakes: list[int] = []
    tail = Tail("r", wake=lambda: wakes.append(1))
    tail.offer(message("t", 1), None, 0.0)
    tail.offer(message("t", 2), None, 0.0)
    assert len(wakes) == 1
    tail.take()
    tail.offer(message("t", 3), None, 0.0)
    assert len(wakes) == 2


def test_batch_encodes_bytes_as_marked_base64_and_times_on_the_wall_clock() -> None:
    tail = Tail("r")
    tail.offer(message("t", b"\x00\x01"), "e:7", 10.0)
    tail.offer(message("u", None, has_data=False), "e:8", 11.0)
    batch = tail.take()
    assert batch is not None
    doc = orjson.loads(batch.encode(lambda t: t + 1000.0))
    assert doc == {
        "messages": [
            {"topic": "t", "data": {"__bytes": "AAE="}, "id": "e:7", "time": 1010.0},
            {"topic": "u", "data": None, "id": "e:8", "time": 1011.0},
        ],
        "dropped": 0,
    }


def test_tails_by_room() -> None:
    tails = Tails()
    assert not tails
    a, b = Tail("a"), Tail("b")
    tails.add(a)
    tails.add(b)
    assert len(tails) == 2
    tails.offer("a", message("t", 1), None, 0.0)
    assert a.take() is not None and b.take() is None
    tails.remove(a)
    tails.remove(a)
    tails.remove(b)
    assert not tails


def test_hub_offers_each_publish_with_its_cursor_after_delivering() -> None:
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML, "t"), rng=random.Random(1))
    party = hub.registry.parties["pubsub"]
    watching, other_room = Tail("r", ["t"]), Tail("elsewhere")
    party.tails.add(watching)
    party.tails.add(other_room)
    conn = FakeSubscriber("c")
    room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert publish(hub, room, message("t", 1), None, 5.0) == 1
    assert publish(hub, room, message("u", 2), None, 6.0) == 1
    batch = watching.take()
    assert batch is not None
    assert [(s.message.topic, s.cursor) for s in batch.messages] == [
        ("t", f"{room.history.epoch}:1")
    ]
    assert other_room.take() is None
    assert len(conn.out.chunks) == 2, "subscribers got both, tail or not"
