"""The registry: parties, rooms and nodes; join, leave, autoscaling, the room cap."""

from __future__ import annotations

from fakes import FakeSubscriber, hub_with, message, publish
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config


def test_autoscaling_grows_and_shrinks_per_location() -> None:
    hub = hub_with(
        '[[pubsub]]\nbinding = "PubSub"\nnodes = "auto"\nmax_connections_per_node = 2\n'
        "locations = { wnam = 1, weur = 1 }\n"
    )
    party = hub.registry.parties["pubsub"]
    members = [
        hub.registry.join(party, "r", FakeSubscriber(f"c{i}"), "US", ["*"], now=float(i))
        for i in range(5)
    ]
    room = members[0].room
    assert sorted(room.nodes) == ["wnam-0", "wnam-1", "wnam-2"]
    assert max(len(n.index) for n in room.nodes.values()) == 2
    eu = hub.registry.join(party, "r", FakeSubscriber("e"), "DE", ["*"])
    assert eu.node.id == "weur-0"
    for i, membership in enumerate(members[:4]):
        hub.registry.leave(
            next(iter(membership.node.index.subscribers())), membership, now=10.0 + i
        )
    assert len(room.nodes) <= 3
    assert [count for _, count in room.node_counts][:4] == [1, 2, 3, 4]


def test_history_keeps_an_empty_room_until_it_expires() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 10\nhistory_seconds = 5\n')
    party = hub.registry.parties["pubsub"]
    conn = FakeSubscriber("a")
    membership = hub.registry.join(party, "r", conn, None, ["*"])
    publish(hub, membership.room, message("t", 1), None, 1.0)
    hub.registry.leave(conn, membership, 2.0)
    assert "r" in party.rooms, "kept for a client that comes back"
    hub.registry.expire(3.0)
    assert "r" in party.rooms
    hub.registry.expire(7.0)
    assert "r" not in party.rooms


def test_the_last_to_leave_frees_a_room_without_a_history_at_once() -> None:
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    a, b = FakeSubscriber("a"), FakeSubscriber("b")
    first = hub.registry.join(party, "r", a, None, ["*"])
    second = hub.registry.join(party, "r", b, None, ["*"])
    hub.registry.leave(a, first)
    assert "r" in party.rooms
    hub.registry.leave(b, second)
    assert "r" not in party.rooms and not party.idle
    hub.registry.leave(b, second)  # twice: nothing happens


def test_the_room_cap_forgets_the_room_idle_longest_then_refuses() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 5\nmax_rooms = 2\n')
    party = hub.registry.parties["pubsub"]
    for name in ("old", "newer"):
        conn = FakeSubscriber(name)
        membership = hub.registry.join(party, name, conn, None, ["*"])
        publish(hub, membership.room, message("t", name), None, 1.0)
        hub.registry.leave(conn, membership, 2.0)
    assert list(party.idle) == [party.rooms["old"], party.rooms["newer"]]
    assert party.has_room_for("third")
    hub.registry.join(party, "third", FakeSubscriber("c"), None, ["*"])
    assert sorted(party.rooms) == ["newer", "third"], "the idle room left longest went first"
    hub.registry.join(party, "fourth", FakeSubscriber("d"), None, ["*"])
    assert sorted(party.rooms) == ["fourth", "third"]
    assert not party.has_room_for("fifth"), "no idle room to forget: the next is refused"
    assert party.has_room_for("third"), "an open room always takes more"


def test_a_reload_changes_the_history_of_rooms_already_open() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 5\n')
    party = hub.registry.parties["pubsub"]
    room = hub.registry.join(party, "r", FakeSubscriber("a"), None, ["*"]).room
    hub.registry.apply(
        parse_config(
            DEFAULT_BINDING_TOML
            + '[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 9\nhistory_seconds = 7\n',
            "t",
        )
    )
    assert (room.history.max_messages, room.history.max_age) == (9, 7.0)
