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
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from . import faults
from .config import Binding, Config
from .history import History, HistoryBudget, Resume
from .outbox import Outbox
from .placement import NodeLayout
from .protocol import Publish, Variant, encode_message
from .ratelimit import AddressLimiter
from .stats import Events, LatencyHistogram, RecentTopics, Traffic
from .tail import Tails
from .topics import SubscriptionIndex, matches


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
        limit = self.binding.max_rooms
        return not limit or name in self.rooms or len(self.rooms) < limit or bool(self.idle)

    def _make_limiters(self) -> None:
        limits, n = self.binding.limits, self.share
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
        changed = binding.limits != self.binding.limits
        self.binding = binding
        if changed:
            self._make_limiters()


# (party, room name, message, publisher id, skip every socket of the publisher)
Relay = Callable[["Party", str, Publish, str | None, bool], None]
Sequence = Callable[["Party", str, Publish, str | None, bool], bool]
# What Redis kept after a cursor: (seq, message, publisher) in order, with the
# epoch; None when it no longer reaches back that far.
Fetched = tuple[str, list[tuple[int, Publish, str | None]]] | None
FetchHistory = Callable[["Room", str, int, Callable[[Fetched], None]], None]


def _burst_share(burst: float, daemons: int) -> float:
    """A burst split over daemons, never below one request (0 keeps the default)."""
    return max(1.0, burst / daemons) if burst > 0 else 0.0


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
        # Every room's history together stays within server.max_history_bytes.
        self.history_budget = HistoryBudget(config.server.max_history_bytes)
        self.apply(config)
        # Subscribers whose outbox has something to send (or must close);
        # the I/O layer takes this list once per scheduler tick.
        self.dirty: list[Subscriber] = []
        self.events = Events()
        self.flush_latency = LatencyHistogram()
        # When the oldest publish not yet flushed was made (publish-to-flush latency).
        self.unflushed_since: float | None = None
        self._next_limiter_sweep = 0.0
        # Wall-clock time minus the monotonic time sessions are given: the I/O
        # edge keeps it current, and token expiry (wall clock) reads it.
        self.wall_offset = 0.0
        # In a cluster (cluster.py sets these): every local publish is handed
        # to ``relay`` for the other daemons, and ``interest`` hears when a
        # room gains its first connection (True) or loses its last (False).
        self.relay: Relay | None = None
        self.interest: Callable[[Party, str, bool], None] | None = None
        # For rooms with a history, in a cluster: hand the message to Redis to
        # be numbered; False when Redis is away (it is queued all the same).
        self.sequence: Sequence | None = None
        # Fetch a room's history from Redis for a resume this daemon cannot
        # answer: (room, epoch, after seq, callback with (epoch, entries) or None).
        self.fetch_history: FetchHistory | None = None

    def apply(self, config: Config) -> None:
        """Run with ``config`` from now on: new bindings become parties, changed ones update."""
        self.config = config
        self.history_budget.max_bytes = config.server.max_history_bytes
        for binding in config.bindings:
            party = self.parties_by_binding.get(binding.name)
            if party is None:
                party = self.parties_by_binding[binding.name] = Party(binding)
            party.set_binding(binding)
            for room in party.rooms.values():
                room.history.max_messages = binding.history_messages
                room.history.max_age = binding.history_seconds
                room.history.max_bytes = binding.history_bytes
            for name in binding.party_names:
                self.parties[name] = party

    def _new_room(self, party: Party, name: str) -> Room:
        binding = party.binding
        if binding.max_rooms and len(party.rooms) >= binding.max_rooms and party.idle:
            # At the cap: the room left idle longest goes, with its history.
            self._delete(next(iter(party.idle)))
        history = History(
            binding.history_messages,
            binding.history_seconds,
            max_bytes=binding.history_bytes,
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
        if not binding.autoscale:
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
        if best is not None and len(best.index) < binding.max_connections_per_node:
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
            if not room.nodes and self.interest is not None:
                self.interest(party, room_name, True)
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
                if self.interest is not None:
                    self.interest(room.party, room.name, False)
                if self.sequence is not None:
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

    def resume(self, membership: Membership, subscriber: Subscriber, cursor: str) -> Resume:
        """What a connection that says ``since=<cursor>`` missed, by its own patterns."""
        patterns = membership.node.index.patterns(subscriber)
        return membership.room.history.since(
            cursor, lambda entry: any(matches(p, entry.message.topic) for p in patterns)
        )

    def publish(
        self,
        room: Room,
        message: Publish,
        publisher: str | None,
        now: float,
        *,
        skip_publisher: bool = False,
        relayed: bool = False,
    ) -> int | None:
        """Deliver to every subscriber of the topic on every node; how many were reached.

        ``publisher`` is the publishing connection's id: its connections that
        asked for skip-self are left out (``skip_publisher``: all of them, as
        an HTTP publish naming ``?_pk=`` asks). None when the message repeats
        an idempotency key still in the history: it was delivered already.
        ``relayed``: it came from another daemon, which relayed it already.
        This is the fan-out hot path: each variant in use is encoded once, and
        each delivery is an append to an outbox, no awaiting, no copying.
        """
        history = room.history
        if message.idem is not None and history.is_repeat(message.idem):
            return None
        if self.sequence is not None and history.enabled and not relayed:
            # Clustered with a history: Redis numbers the message and every
            # daemon, this one included, delivers it from there in that order.
            if self.sequence(room.party, room.name, message, publisher, skip_publisher):
                return 0
            # Redis is away: deliver here now, unnumbered; it is sent on later.
            return self._fan_out(room, message, publisher, now, skip_publisher, None)
        seq = history.append(message, publisher, now)
        delivered = self._fan_out(room, message, publisher, now, skip_publisher, seq)
        if self.relay is not None and not relayed:
            self.relay(room.party, room.name, message, publisher, skip_publisher)
        return delivered

    def deliver_sequenced(
        self,
        binding: str,
        room_name: str,
        message: Publish,
        publisher: str | None,
        skip_publisher: bool,
        seq: int,
        epoch: str,
        delivered_here: bool,
        now: float,
    ) -> int:
        """A message the cluster numbered: kept in the room's history (the local
        mirror of Redis's), and delivered unless it was delivered here already
        (published here while Redis was away)."""
        room = self._live_room(binding, room_name)
        if room is None:
            return 0
        if not room.history.mirror(message, publisher, seq, epoch, now) or delivered_here:
            return 0
        return self._fan_out(room, message, publisher, now, skip_publisher, seq)

    def _fan_out(
        self,
        room: Room,
        message: Publish,
        publisher: str | None,
        now: float,
        skip_publisher: bool,
        seq: int | None,
    ) -> int:
        """Push the message to every matching subscriber of every node; how many.

        ``seq`` None: a message not numbered (yet), sent without a cursor.
        """
        history = room.history
        # Encode each variant in use once (plain ints: enum arithmetic costs
        # more than the encoding on this path).
        counts = room.variants
        frames = [b"", b"", b"", b""]
        cursor = None
        used = 0
        size = 0
        for variant in range(4):
            if counts[variant]:
                if variant & 1 and cursor is None and seq is not None:
                    cursor = history.cursor(seq)
                frames[variant] = frame = encode_message(message, cursor, variant)
                size = max(size, len(frame))
                used += 1
        excluded: set[Subscriber] | None = None
        if publisher is not None and (skip_publisher or room.skip_self_count):
            same = room.by_id.get(publisher)
            if same:
                excluded = same if skip_publisher else {s for s in same if s.skip_self}
        topic = message.topic
        dirty = self.dirty
        delivered = 0
        # One subscriber's fault (its outbox, its policy) ends that subscriber
        # only; the try costs nothing until something raises (Python 3.11+).
        failed: list[Subscriber] = []
        plain = not excluded and room.party.binding.slow_consumer == "disconnect"
        if plain and used == 1:
            # The common case, kept tight: one encoding, no one to skip, plain outboxes.
            frame = frames[0] or frames[1] or frames[2] or frames[3]
            for node in room.nodes.values():
                targets = node.index.match(topic)
                for subscriber in targets:
                    try:
                        if subscriber.out.push(frame):
                            dirty.append(subscriber)
                    except Exception:
                        failed.append(faults.reported(self.events, "fanout", subscriber))
                delivered += len(targets)
        elif plain:
            # Several encodings (say cursors for some, MessagePack for others).
            for node in room.nodes.values():
                targets = node.index.match(topic)
                for subscriber in targets:
                    try:
                        if subscriber.out.push(frames[subscriber.variant]):
                            dirty.append(subscriber)
                    except Exception:
                        failed.append(faults.reported(self.events, "fanout", subscriber))
                delivered += len(targets)
        else:
            for node in room.nodes.values():
                for subscriber in node.index.match(topic):
                    if excluded and subscriber in excluded:
                        continue
                    try:
                        if subscriber.out.push_message(frames[subscriber.variant], topic, seq or 0):
                            dirty.append(subscriber)
                    except Exception:
                        failed.append(faults.reported(self.events, "fanout", subscriber))
                    delivered += 1
        if failed:
            delivered -= len(failed)
            for subscriber in failed:
                subscriber.fail(now)
        room.traffic.add(size, delivered)
        room.party.traffic.add(size, delivered)
        room.topics.seen(topic, now)
        tails = room.party.tails
        if tails:
            tails.offer(room.name, message, None if seq is None else history.cursor(seq), now)
        if self.unflushed_since is None and delivered:
            self.unflushed_since = now
        return delivered

    def deliver_here(
        self,
        binding: str,
        room_name: str,
        message: Publish,
        publisher: str | None,
        skip_publisher: bool,
        now: float,
    ) -> int:
        """Deliver a message of a numbered room here, without a number: Redis is
        away, and it will be numbered when Redis is back."""
        room = self._live_room(binding, room_name)
        if room is None:
            return 0
        return self._fan_out(room, message, publisher, now, skip_publisher, None)

    def _live_room(self, binding: str, room_name: str) -> Room | None:
        """The room if someone here is in it (a message from Redis has someone to reach)."""
        party = self.parties_by_binding.get(binding)
        room = party.rooms.get(room_name) if party is not None else None
        return room if room is not None and room.nodes else None

    def set_cluster_size(self, daemons: int) -> None:
        """How many daemons share the per-address rate limits (the cluster view's size)."""
        for party in self.parties_by_binding.values():
            party.set_share(max(1, daemons))

    def forget_cluster_histories(self) -> None:
        """The link to Redis broke: what arrived may have gaps from now on, so no
        local copy of a room's history may answer a resume until it is whole again."""
        if self.sequence is None:
            return
        for party in self.parties_by_binding.values():
            for room in party.rooms.values():
                room.history.forget()

    def publish_elsewhere(
        self,
        party: Party,
        room_name: str,
        message: Publish,
        publisher: str | None,
        now: float,
        skip_publisher: bool = False,
    ) -> None:
        """A publish to a room with no connections here: other daemons may have some."""
        if party.tails:
            party.tails.offer(room_name, message, None, now)
        if self.sequence is not None and party.binding.history_messages > 0:
            self.sequence(party, room_name, message, publisher, skip_publisher)
        elif self.relay is not None:
            self.relay(party, room_name, message, publisher, skip_publisher)

    def deliver_relayed(
        self,
        binding: str,
        room_name: str,
        message: Publish,
        publisher: str | None,
        skip_publisher: bool,
        now: float,
    ) -> int:
        """A publish from another daemon, to this daemon's subscribers of the room."""
        room = self._live_room(binding, room_name)
        if room is None:
            party = self.parties_by_binding.get(binding)
            if party is not None and party.tails:
                party.tails.offer(room_name, message, None, now)
            return 0
        delivered = self.publish(
            room, message, publisher, now, skip_publisher=skip_publisher, relayed=True
        )
        return delivered or 0

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
