"""The fan-out: one encoding per variant in use, skip-self, relays, a fault kept to one
subscriber."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from fakes import FakeSubscriber, hub_with, message, publish
from partysubd.core import protocol
from partysubd.core.clustering import NoCluster
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.envelope import Envelope, Origin
from partysubd.core.hub import Hub
from partysubd.core.outbox import Outbox
from partysubd.core.protocol import (
    Publish,
    Variant,
    dumps,
    message_frame,
)
from partysubd.core.registry import Party


def test_bytes_reach_json_subscribers_marked_base64() -> None:
    assert dumps({"data": b"\x00\xff"}) == b'{"data":{"__bytes":"AP8="}}'
    frame = message_frame(message("t", {"k": b"hi"}), "e:1", Variant.JSON_IDS)
    assert frame[2:] == b'{"topic":"t","data":{"k":{"__bytes":"aGk="}},"id":"e:1"}'
    packed = message_frame(message("t", b"hi"), "e:1", Variant.MSGPACK)
    assert packed[0] == 0x82
    assert msgpack.unpackb(packed[2:]) == {"topic": "t", "data": b"hi"}


def test_each_variant_in_use_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import partysubd.core.fanout as rooms

    calls: list[int] = []
    real: Callable[..., bytes] = protocol.encode_message

    def counting(message: Publish, cursor: str | None, variant: int) -> bytes:
        calls.append(variant)
        return real(message, cursor, variant)

    monkeypatch.setattr(rooms, "encode_message", counting)
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    conns = [FakeSubscriber(f"j{i}") for i in range(5)]
    conns += [FakeSubscriber(f"m{i}", Variant.MSGPACK_IDS) for i in range(5)]
    room = None
    for conn in conns:
        room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert room is not None
    assert publish(hub, room, message("t", 1), None, 1.0) == 10
    assert sorted(calls) == [Variant.JSON, Variant.MSGPACK_IDS]
    assert len({id(c.out.chunks[0]) for c in conns}) == 2, "one bytes object per variant"


def test_skip_self_leaves_out_every_socket_of_the_publisher() -> None:
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    tab1, tab2 = FakeSubscriber("u", skip_self=True), FakeSubscriber("u", skip_self=True)
    echo, other = FakeSubscriber("v"), FakeSubscriber("w")
    room = None
    for conn in (tab1, tab2, echo, other):
        room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert room is not None
    assert publish(hub, room, message("t", 1), "u", 1.0) == 2
    assert tab1.frames() == [] and tab2.frames() == [] and len(other.frames()) == 1
    assert publish(hub, room, message("t", 2), "v", 1.0) == 4, "v did not ask to skip itself"
    assert publish(hub, room, message("t", 3), "w", 1.0, skip_publisher=True) == 3


class RecordingCluster(NoCluster):
    """The cluster hooks, writing down what the core asked of them."""

    active = True

    def __init__(self) -> None:
        self.relayed: list[tuple[str, str, Any, str | None, bool]] = []
        self.wanted: list[tuple[str, bool]] = []

    def relay(self, party: Party, room_name: str, envelope: Envelope) -> None:
        m = envelope.message
        self.relayed.append(
            (party.binding.name, room_name, m.data, envelope.publisher, envelope.skip_publisher)
        )

    def interest(self, party: Party, room_name: str, wanted: bool) -> None:
        self.wanted.append((room_name, wanted))


def test_hub_relays_local_publishes_only_and_reports_interest() -> None:
    cluster = RecordingCluster()
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML, "t"), cluster, random.Random(2))
    party = hub.registry.parties["pubsub"]
    a, b = FakeSubscriber("a"), FakeSubscriber("b", skip_self=True)
    membership = hub.registry.join(party, "r", a, None, ["*"])
    membership_b = hub.registry.join(party, "r", b, None, ["*"])
    assert cluster.wanted == [("r", True)], "once, for the room's first connection"
    publish(hub, membership.room, message("t", 1), "a", 1.0)
    relayed = Envelope(message("t", 2), "b", origin=Origin.RELAYED)
    assert hub.fanout.deliver(party, "r", relayed, 2.0) == 1
    elsewhere = Envelope(message("t", 3), origin=Origin.RELAYED)
    assert hub.fanout.deliver(party, "nobody-here", elsewhere, 2.0) == 0
    empty = Envelope(message("t", 4), "x", skip_publisher=True)
    assert hub.fanout.deliver(party, "empty", empty, 3.0) == 0
    assert cluster.relayed == [("PubSub", "r", 1, "a", False), ("PubSub", "empty", 4, "x", True)]
    hub.registry.leave(a, membership)
    assert cluster.wanted == [("r", True)]
    hub.registry.leave(b, membership_b)
    assert cluster.wanted == [("r", True), ("r", False)], "once, for its last"


def test_a_publish_into_a_room_kept_idle_for_its_history_is_kept_for_the_return() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 10\n')
    party = hub.registry.parties["pubsub"]
    gone = FakeSubscriber("gone")
    membership = hub.registry.join(party, "r", gone, None, ["*"])
    publish(hub, membership.room, message("t", 1), None, 1.0)
    hub.registry.leave(gone, membership, 2.0)
    idle = party.rooms["r"]
    assert publish(hub, idle, message("t", 2), None, 3.0) == 0, "nobody to deliver to"
    assert [
        e.message.data for e in idle.history.since(idle.history.cursor(0), lambda e: True).entries
    ] == [1, 2]
    back = FakeSubscriber("back")
    assert hub.registry.join(party, "r", back, None, ["*"]).room is idle


def test_a_publish_into_a_room_nobody_opened_opens_nothing() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 10\n')
    party = hub.registry.parties["pubsub"]
    assert hub.fanout.deliver(party, "nobody", Envelope(message("t", 1)), 1.0) == 0
    assert "nobody" not in party.rooms


class Broken(FakeSubscriber):
    """A subscriber whose outbox fails, as a bug in one connection's state would."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.out = BrokenOutbox(1000)


class BrokenOutbox(Outbox):
    def push(self, frame: bytes) -> bool:
        raise RuntimeError("a bug in this subscriber's outbox")


def test_a_fault_in_one_subscriber_ends_it_alone_and_the_others_receive() -> None:
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    first, broken, last = FakeSubscriber("first"), Broken("broken"), FakeSubscriber("last")
    room = None
    for conn in (first, broken, last):
        room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert room is not None
    for n in range(3):
        publish(hub, room, message("t", n), "someone", float(n))
    assert broken.closed == (1011, "internal error")
    assert len(first.frames()) == 3 and len(last.frames()) == 3
    assert hub.events.internal_errors["fanout"] >= 1
