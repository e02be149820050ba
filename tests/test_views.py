"""The control plane's views of rooms and connections, from the hub."""

from __future__ import annotations

from fakes import hub_with, message, publish, subscriber
from partysubd.control.views import Clock, connections_view, find_room, room_view, rooms_view


def test_views() -> None:
    hub = hub_with(seed=3)
    party = hub.registry.parties["pubsub"]
    a = subscriber("a", "US")
    room = hub.registry.join(party, "lobby", a, "US", ["chat:*", "x"]).room
    publish(hub, room, message("x", 1), None, now=11.0)
    clock = Clock(monotonic=12.0, wall=1000.0)
    listing = rooms_view(hub)
    assert listing["totals"] == {
        "connections": 1,
        "rooms": 1,
        "nodes": 1,
        "messages_in": 1,
        "messages_out": 1,
        "bytes_in": 24,
        "bytes_out": 24,
    }
    detail = room_view(room, clock)
    assert detail["nodes"] == [{"id": "wnam-0", "location": "wnam", "connections": 1}]
    assert detail["patterns"] == [
        {"pattern": "chat:*", "connections": 1},
        {"pattern": "x", "connections": 1},
    ]
    assert detail["recent_topics"] == [{"topic": "x", "count": 1, "last_seen": 999.0}]
    [conn] = connections_view(room, clock)["connections"]
    assert conn == {
        "id": "a",
        "peer": "127.0.0.1:1",
        "node": "wnam-0",
        "country": "US",
        "topics": ["chat:*", "x"],
        "buffered_bytes": 24,
        "age": 2.0,
    }
    assert find_room(hub, "nope", "lobby") == "no party 'nope' (parties: pub-sub, pubsub)"
    assert "has no connections" in str(find_room(hub, "pubsub", "empty"))
