"""Parties, their rooms, and each room's virtual nodes: who is where.

A room is spread over nodes laid out by the binding's placement (as the
original spreads it over Durable Objects); each node indexes its own
subscribers. Nodes exist while they hold connections; a room with no
connections is released at once, or kept a while for its history. Delivery is
fanout.py's: this module only knows who is in which room.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .clustering import ClusterHooks
from .config import Binding, Config
from .history import History, HistoryBudget
from .outbox import Outbox
from .placement import NodeLayout
from .protocol import Variant
from .ratelimit import AddressLimiter
from .stats import RecentTopics, Traffic
from .tail import Tails
from .topics import SubscriptionIndex


class Subscriber(Hashable, Protocol):
    """A connection as rooms see it: where its bytes go, how it wants them, what to show."""

    out: Outbox
    id: str
    peer: str
    country: str | None
    created: float
    variant: Variant
    skip_self: bool

    def close(self, code: int, reason: str, now: float) -> None: ...

    def abort(self) -> None: ...

    def fail(self, now: float) -> None:
        """An internal error hit this connection: end it (1011), and only it."""


@dataclass(eq=False, slots=True)
class Node:
    id: str
    location: str
    index: SubscriptionIndex[Subscriber] = field(default_factory=SubscriptionIndex[Subscriber])


NODE_COUNT_SAMPLES = 120
LIMITER_SWEEP_SECONDS = 60.0


@dataclass(eq=False, slots=True)
class Room:
    party: Party
    name: str
    # Fixed when the room is created: a reload may change the binding's
    # layout, but the connections of a live room stay on its nodes.
    layout: NodeLayout
    history: History
    nodes: dict[str, Node] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)
    topics: RecentTopics = field(default_factory=RecentTopics)
    # Connections per frame variant: which encodings a publish must make.
    variants: list[int] = field(default_factory=lambda: [0] * len(Variant))
    # Connections by id (_pk): one client may hold several (tabs), and
    # skip-self means all of them.
    by_id: dict[str, set[Subscriber]] = field(default_factory=dict)
    skip_self_count: int = 0
    # (time, live nodes) each time the count changes: autoscaling, seen over time.
    node_counts: deque[tuple[float, int]] = field(
        default_factory=lambda: deque(maxlen=NODE_COUNT_SAMPLES)
    )

    @property
    def connections(self) -> int:
        return sum(len(node.index) for node in self.nodes.values())


@dataclass(eq=False, slots=True)
class Party:
    binding: Binding
    rooms: dict[str, Room] = field(default_factory=dict)
    # Totals over the daemon's life, rooms that are gone included.
    traffic: Traffic = field(default_factory=Traffic)
    # Per client address: new connections, and HTTP publishes.
    connect_limiter: AddressLimiter = field(init=False)
    # Control-plane viewers of its rooms' messages (the dashboard's live tail).
    tails: Tails = field(default_factory=Tails)
    http_limiter: AddressLimiter = field(init=False)

    # Daemons sharing the per-address limits: in a cluster each enforces its
    # share, so one address gets at most the configured rate from all of them.
    share: int = 1
    # Rooms nobody is in, kept for their history until it expires, oldest first:
    # the first to go when the party is at ``max_rooms``.
    idle: dict[Room, None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._make_limiters()

    def has_room_for(self, name: str) -> bool:
        """Whether a connection to room ``name`` may open it (or it is open already)."""
        limit = self.binding.options.max_rooms
        return not limit or name in self.rooms or len(self.rooms) < limit or bool(self.idle)

    def _make_limiters(self) -> None:
        limits, n = self.binding.options.limits, self.share
        self.connect_limiter = AddressLimiter(
            limits.connect_rate / n, _burst_share(limits.connect_burst, n)
        )
        self.http_limiter = AddressLimiter(
            limits.publish_rate / n, _burst_share(limits.publish_burst, n)
        )

    def set_share(self, daemons: int) -> None:
        if daemons != self.share:
            self.share = daemons
            self._make_limiters()

    def set_binding(self, binding: Binding) -> None:
        changed = binding.options.limits != self.binding.options.limits
        self.binding = binding
        if changed:
            self._make_limiters()


def _burst_share(burst: float, daemons: int) -> float:
    """A burst split over daemons, never below one request (0 keeps the default)."""
    return max(1.0, burst / daemons) if burst > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Membership:
    room: Room
    node: Node


class Registry:
    """Every party and open room of the daemon: joining, leaving, placing, expiring."""

    def __init__(self, config: Config, cluster: ClusterHooks, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        self.cluster = cluster
        self.parties: dict[str, Party] = {}  # by URL name (pub-sub, pubsub)
        self.parties_by_binding: dict[str, Party] = {}  # by binding name (PubSub)
        # Every room's history together stays within server.max_history_bytes.
        self.history_budget = HistoryBudget(config.server.max_history_bytes)
        self._next_limiter_sweep = 0.0
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Run with ``config`` from now on: new bindings become parties, changed ones update."""
        self.history_budget.max_bytes = config.server.max_history_bytes
        for binding in config.bindings:
            party = self.parties_by_binding.get(binding.name)
            if party is None:
                party = self.parties_by_binding[binding.name] = Party(binding)
            party.set_binding(binding)
            for room in party.rooms.values():
                room.history.max_messages = binding.options.history_messages
                room.history.max_age = binding.options.history_seconds
                room.history.max_bytes = binding.options.history_bytes
            for name in binding.party_names:
                self.parties[name] = party

    def _new_room(self, party: Party, name: str) -> Room:
        binding = party.binding
        if (
            binding.options.max_rooms
            and len(party.rooms) >= binding.options.max_rooms
            and party.idle
        ):
            # At the cap: the room left idle longest goes, with its history.
            self._delete(next(iter(party.idle)))
        history = History(
            binding.options.history_messages,
            binding.options.history_seconds,
            max_bytes=binding.options.history_bytes,
            budget=self.history_budget,
        )
        room = party.rooms[name] = Room(party, name, binding.layout, history)
        return room

    def place(self, party: Party, room_name: str, country: str | None) -> str:
        """The node id a client from ``country`` would land on in this room."""
        room = party.rooms.get(room_name)
        if room is None:
            return party.binding.layout.choose(country, self.rng)
        return self._node_id(room, country)

    def _node_id(self, room: Room, country: str | None) -> str:
        binding = room.party.binding
        if not binding.options.autoscale:
            return room.layout.choose(country, self.rng)
        # Autoscaling: the least loaded node of the location while one has
        # room, else a new node there; empty nodes go away as usual.
        location = room.layout.location_for(country, self.rng)
        prefix = location + "-"
        best: Node | None = None
        taken = set()
        for node in room.nodes.values():
            if node.location == location and node.id.startswith(prefix):
                taken.add(node.id)
                if best is None or len(node.index) < len(best.index):
                    best = node
        if best is not None and len(best.index) < binding.options.max_connections_per_node:
            return best.id
        number = 0
        while f"{prefix}{number}" in taken:
            number += 1
        return f"{prefix}{number}"

    def join(
        self,
        party: Party,
        room_name: str,
        subscriber: Subscriber,
        country: str | None,
        patterns: Iterable[str],
        now: float = 0.0,
    ) -> Membership:
        room = party.rooms.get(room_name)
        if room is None:
            room = self._new_room(party, room_name)
        party.idle.pop(room, None)
        node_id = self._node_id(room, country)
        node = room.nodes.get(node_id)
        if node is None:
            if not room.nodes:
                self.cluster.interest(party, room_name, True)
            node = room.nodes[node_id] = Node(node_id, room.layout.location_of(node_id))
            room.node_counts.append((now, len(room.nodes)))
        node.index.set_patterns(subscriber, patterns)
        room.variants[subscriber.variant] += 1
        room.by_id.setdefault(subscriber.id, set()).add(subscriber)
        room.skip_self_count += subscriber.skip_self
        return Membership(room, node)

    def leave(self, subscriber: Subscriber, membership: Membership, now: float = 0.0) -> None:
        room, node = membership.room, membership.node
        if subscriber not in node.index:
            return
        node.index.remove(subscriber)
        room.variants[subscriber.variant] -= 1
        room.skip_self_count -= subscriber.skip_self
        same = room.by_id.get(subscriber.id)
        if same is not None:
            same.discard(subscriber)
            if not same:
                del room.by_id[subscriber.id]
        if not len(node.index) and room.nodes.get(node.id) is node:
            del room.nodes[node.id]
            room.node_counts.append((now, len(room.nodes)))
            if not room.nodes:
                self.cluster.interest(room.party, room.name, False)
                if self.cluster.active:
                    # Not listening any more: the copy of Redis's history goes stale.
                    room.history.forget()
                self._release(room)

    def _release(self, room: Room) -> None:
        """A room without connections goes at once, unless its history must outlive
        them a while."""
        if len(room.history):
            room.party.idle[room] = None
        else:
            self._delete(room)

    def _delete(self, room: Room) -> None:
        party = room.party
        party.idle.pop(room, None)
        room.history.release()
        if party.rooms.get(room.name) is room:
            del party.rooms[room.name]

    def expire(self, now: float) -> None:
        """Age out histories of rooms nobody is in; forget the rooms whose history is empty,
        and client addresses whose rate-limit buckets are full again."""
        if now >= self._next_limiter_sweep:
            self._next_limiter_sweep = now + LIMITER_SWEEP_SECONDS
            for party in self.parties_by_binding.values():
                party.connect_limiter.forget_idle(now)
                party.http_limiter.forget_idle(now)
        for party in self.parties_by_binding.values():
            for room in list(party.idle):
                room.history.expire(now)
                if not len(room.history):
                    self._delete(room)

    def set_cluster_size(self, daemons: int) -> None:
        """How many daemons share the per-address rate limits (the cluster view's size)."""
        for party in self.parties_by_binding.values():
            party.set_share(max(1, daemons))

    def forget_cluster_histories(self) -> None:
        """The link to Redis broke: what arrived may have gaps from now on, so no
        local copy of a room's history may answer a resume until it is whole again."""
        for party in self.parties_by_binding.values():
            for room in party.rooms.values():
                room.history.forget()
