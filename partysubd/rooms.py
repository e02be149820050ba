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
from .placement import NodeLayout
from .stats import Events, LatencyHistogram, RecentTopics, Traffic
from .topics import SubscriptionIndex


class Subscriber(Hashable, Protocol):
    """A connection as rooms see it: somewhere to put bytes, and what to show of it."""

    out: Outbox
    id: str
    peer: str
    country: str | None
    created: float


@dataclass(eq=False, slots=True)
class Node:
    id: str
    location: str
    index: SubscriptionIndex[Subscriber] = field(default_factory=SubscriptionIndex[Subscriber])


@dataclass(eq=False, slots=True)
class Room:
    party: Party
    name: str
    # Fixed when the room is created: a reload may change the binding's
    # layout, but the connections of a live room stay on its nodes.
    layout: NodeLayout
    nodes: dict[str, Node] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)
    topics: RecentTopics = field(default_factory=RecentTopics)

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
    # Totals over the daemon's life, rooms that are gone included.
    traffic: Traffic = field(default_factory=Traffic)


@dataclass(frozen=True, slots=True)
class Membership:
    room: Room
    node: Node


class Hub:
    """Every party and live room of the daemon, and the list of outboxes to flush."""

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.parties: dict[str, Party] = {}
        self.parties_by_binding: dict[str, Party] = {}
        self.config = config
        self.apply(config)
        # Subscribers whose outbox has something to send (or must close);
        # the I/O layer takes this list once per scheduler tick.
        self.dirty: list[Subscriber] = []
        self.events = Events()
        self.flush_latency = LatencyHistogram()
        # When the oldest publish not yet flushed was made (publish-to-flush latency).
        self.unflushed_since: float | None = None

    def apply(self, config: Config) -> None:
        """Run with ``config`` from now on: new bindings become parties, changed ones update."""
        self.config = config
        for binding in config.bindings:
            party = self.parties_by_binding.get(binding.name)
            if party is None:
                party = self.parties_by_binding[binding.name] = Party(binding)
            party.binding = binding
            for name in binding.party_names:
                self.parties[name] = party

    def place(self, party: Party, room_name: str, country: str | None) -> str:
        """The node id a client from ``country`` lands on in this room."""
        room = party.rooms.get(room_name)
        layout = party.binding.layout if room is None else room.layout
        return layout.choose(country, self.rng)

    def join(
        self,
        party: Party,
        room_name: str,
        subscriber: Subscriber,
        country: str | None,
        patterns: Iterable[str],
    ) -> Membership:
        room = party.rooms.get(room_name)
        if room is None:
            room = party.rooms[room_name] = Room(party, room_name, party.binding.layout)
        node_id = room.layout.choose(country, self.rng)
        node = room.nodes.get(node_id)
        if node is None:
            node = room.nodes[node_id] = Node(node_id, room.layout.location_of(node_id))
        node.index.set_patterns(subscriber, patterns)
        return Membership(room, node)

    def leave(self, subscriber: Subscriber, membership: Membership) -> None:
        room, node = membership.room, membership.node
        node.index.remove(subscriber)
        if not len(node.index) and room.nodes.get(node.id) is node:
            del room.nodes[node.id]
            if not room.nodes and room.party.rooms.get(room.name) is room:
                del room.party.rooms[room.name]

    def publish(self, room: Room, topic: str, frame: bytes, now: float) -> int:
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
        size = len(frame)
        room.traffic.add(size, delivered)
        room.party.traffic.add(size, delivered)
        room.topics.seen(topic, now)
        if self.unflushed_since is None and delivered:
            self.unflushed_since = now
        return delivered

    def take_dirty(self) -> list[Subscriber]:
        dirty = self.dirty
        self.dirty = []
        return dirty

    def flushed(self, now: float) -> None:
        """Everything published so far is with the kernel: record how long that took."""
        if self.unflushed_since is not None:
            self.flush_latency.observe(now - self.unflushed_since)
            self.unflushed_since = None

    def schedule(self, subscriber: Subscriber) -> None:
        if subscriber.out.schedule():
            self.dirty.append(subscriber)
