"""The cluster's members: heartbeats encoded and decoded, the views summed over daemons."""

from __future__ import annotations

import random

from fakes import FakeSubscriber
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.members import (
    Member,
    cluster_room_view,
    cluster_view,
    decode_member,
    local_rooms,
)


def test_members_encode_decode_and_the_cluster_view() -> None:
    me = Member("a", "eu", "http://h:1", 100.0, 110.0, 3, {"pubsub/lobby": 2, "pubsub/x": 1})
    other = Member("b", "us", "http://h:2", 105.0, 109.5, 2, {"pubsub/lobby": 2})
    assert decode_member(me.encode()) == me
    assert decode_member(None) is None
    assert decode_member(b"{not json") is None
    assert decode_member(b'{"no": "name"}') is None
    view = cluster_view([other, me], "a", 111.0)
    assert [d["name"] for d in view["daemons"]] == ["a", "b"]
    assert view["daemons"][0]["self"] and view["daemons"][1]["last_seen"] == 1.5
    assert view["totals"] == {"daemons": 2, "connections": 5, "rooms": 2}
    assert view["rooms"][0] == {"party": "pubsub", "room": "lobby", "connections": 4, "daemons": 2}


def test_local_rooms_counts_live_connections() -> None:
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML, "t"), rng=random.Random(2))
    party = hub.registry.parties["pubsub"]
    for i in range(3):
        hub.registry.join(party, "r", FakeSubscriber(f"c{i}"), None, ["*"])
    assert local_rooms(hub.registry) == (3, {"pub-sub/r": 3})


def test_cluster_room_view_sums_connections_and_patterns_not_topic_counts() -> None:
    a = Member(
        "a",
        "",
        "",
        0.0,
        0.0,
        2,
        {"p/r": 2},
        details={"p/r": {"patterns": {"*": 1, "x": 1}, "topics": {"t": [5, 10.0]}}},
    )
    b = Member(
        "b",
        "",
        "",
        0.0,
        0.0,
        1,
        {"p/r": 1, "p/other": 4},
        details={"p/r": {"patterns": {"*": 1}, "topics": {"t": [5, 12.0], "u": [1, 11.0]}}},
    )
    view = cluster_room_view([a, b], "p/r")
    assert view == {
        "daemons": ["a", "b"],
        "connections": 3,
        "patterns": [{"pattern": "*", "connections": 2}, {"pattern": "x", "connections": 1}],
        "recent_topics": [
            {"topic": "t", "count": 5, "last_seen": 12.0},
            {"topic": "u", "count": 1, "last_seen": 11.0},
        ],
    }
    assert cluster_room_view([a, b], "p/nowhere") is None
