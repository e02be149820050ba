"""Parties, rooms and their virtual nodes, and delivery of one message to a room.

A room is spread over nodes laid out by the binding's placement (as the
original spreads it over Durable Objects); each node indexes its own
subscribers. A publish on any node reaches every node of the room in the same
call, so every subscriber gets it exactly once and, per publisher, in publish
order. Nodes exist while they hold connections; a room with no connections is
released.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .config import Binding, Config
from .outbox import Outbox
from .topics import SubscriptionIndex


class Subscriber(Hashable, Protocol):
    """What delivery needs of a connection: somewhere to put bytes."""

    out: Outbox


@dataclass(eq=False, slots=True)
class Node:
    id: str
    location: str
    index: SubscriptionIndex[Subscriber] = field(default_factory=SubscriptionIndex[Subscriber])


@dataclass(eq=False, slots=True)
class Room:
    party: Party
    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    messages_in: int = 0
    messages_out: int = 0

    @property
    def connections(self) -> int:
        return sum(len(node.index) for node in self.nodes.values())

    def subscribers(self) -> Iterator[Subscriber]:
        for node in self.nodes.values():
            yield from node.index.subscribers()


@dataclass(eq=False, slots=True)
class Party:
    binding: Binding
    rooms: dict[str, Room] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Membership:
    room: Room
    node: Node


class Hub:
    """Every party and live room of the daemon, and the list of outboxes to flush."""

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.parties: dict[str, Party] = {}
        self.parties_by_binding: dict[str, Party] = {}
        for binding in config.bindings:
            party = Party(binding)
            self.parties_by_binding[binding.name] = party
            for name in binding.party_names:
                self.parties[name] = party
        # Subscribers whose outbox has something to send (or must close);
        # the I/O layer takes this list once per scheduler tick.
        self.dirty: list[Subscriber] = []

    def room(self, party: Party, name: str) -> Room:
        room = party.rooms.get(name)
        if room is None:
            room = party.rooms[name] = Room(party, name)
        return room

    def place(self, party: Party, country: str | None) -> str:
        """The node id a client from ``country`` lands on."""
        return party.binding.layout.choose(country, self.rng)

    def join(
        self,
        party: Party,
        room_name: str,
        subscriber: Subscriber,
        node_id: str,
        patterns: Iterable[str],
    ) -> Membership:
        room = self.room(party, room_name)
        node = room.nodes.get(node_id)
        if node is None:
            node = room.nodes[node_id] = Node(node_id, party.binding.layout.location_of(node_id))
        node.index.set_patterns(subscriber, patterns)
        return Membership(room, node)

    def leave(self, subscriber: Subscriber, membership: Membership) -> None:
        room, node = membership.room, membership.node
        node.index.remove(subscriber)
        if not len(node.index) and room.nodes.get(node.id) is node:
            del room.nodes[node.id]
            if not room.nodes and room.party.rooms.get(room.name) is room:
                del room.party.rooms[room.name]

    def publish(self, room: Room, topic: str, frame: bytes) -> int:
        """Queue ``frame`` for every subscriber of ``topic`` on every node; the count reached.

        This is the fan-out hot path: no awaiting, no copying, one append per
        subscriber.
        """
        dirty = self.dirty
        delivered = 0
        for node in room.nodes.values():
            targets = node.index.match(topic)
            for subscriber in targets:
                if subscriber.out.push(frame):
                    dirty.append(subscriber)
            delivered += len(targets)
        room.messages_in += 1
        room.messages_out += delivered
        return delivered

    def take_dirty(self) -> list[Subscriber]:
        dirty = self.dirty
        self.dirty = []
        return dirty

    def schedule(self, subscriber: Subscriber) -> None:
        if subscriber.out.schedule():
            self.dirty.append(subscriber)
