"""Delivery of one message to a room: every matching subscriber, on every node, once.

A publish on any node reaches every node of the room in the same call, so
every subscriber gets it exactly once and, per publisher, in publish order.
``Fanout.deliver`` is the one way in, for every origin (``Envelope.origin``): a
publish here, a message relayed by another daemon, one Redis numbered, one
held while Redis is away. What differs is decided in ``deliver``; the fan-out
itself (``_fan_out``) is the same for all.
"""

from __future__ import annotations

from . import faults
from .clustering import ClusterHooks
from .config import SlowConsumer
from .envelope import Envelope, Origin
from .flush import FlushQueue
from .protocol import encode_message
from .registry import Party, Room, Subscriber
from .stats import Events


class Fanout:
    def __init__(
        self, flush: FlushQueue[Subscriber], events: Events, cluster: ClusterHooks
    ) -> None:
        self.flush = flush
        self.events = events
        self.cluster = cluster

    def deliver(self, party: Party, room_name: str, envelope: Envelope, now: float) -> int | None:
        """Deliver ``envelope`` to the room's subscribers here; how many were reached.

        None when the message repeats an idempotency key still in the room's
        history: it was delivered already. A publish here to a room nobody is
        in here still goes to the other daemons and the room's tail viewers.
        """
        room = party.rooms.get(room_name)
        origin = envelope.origin
        message = envelope.message
        cluster = self.cluster
        if origin is Origin.HERE:
            # A room kept idle for its history still takes the message: the
            # client coming back resumes from it.
            if (
                message.idem is not None
                and room is not None
                and room.history.is_repeat(message.idem)
            ):
                return None
            # Alone (``active`` False) there is nothing to number or relay: no calls.
            numbered = cluster.active and cluster.numbers(party)
            if room is None:
                if party.tails:
                    party.tails.offer(room_name, message, None, now)
                if numbered:
                    self.cluster.sequence(party, room_name, envelope)
                else:
                    self.cluster.relay(party, room_name, envelope)
                return 0
            if numbered:
                # Clustered with a history: Redis numbers the message and every
                # daemon, this one included, delivers it from there in that order.
                if self.cluster.sequence(party, room_name, envelope):
                    return 0
                # Redis is away: deliver here now, unnumbered; it is sent on later.
                return self._fan_out(room, envelope, None, now)
            seq = room.history.append(message, envelope.publisher, now)
            delivered = self._fan_out(room, envelope, seq, now)
            if cluster.active:
                cluster.relay(party, room_name, envelope)
            return delivered
        if room is None or not room.nodes:  # nobody here for a message from elsewhere
            if origin is Origin.RELAYED and party.tails:
                party.tails.offer(room_name, message, None, now)
            return 0
        if origin is Origin.RELAYED:
            if room.history.is_repeat(message.idem):
                return None
            seq = room.history.append(message, envelope.publisher, now)
            return self._fan_out(room, envelope, seq, now)
        if origin is Origin.NUMBERED:
            assert envelope.seq is not None and envelope.epoch is not None
            kept = room.history.mirror(
                message, envelope.publisher, envelope.seq, envelope.epoch, now
            )
            if not kept or envelope.delivered_here:
                return 0
            return self._fan_out(room, envelope, envelope.seq, now)
        return self._fan_out(room, envelope, None, now)  # HELD

    def _fan_out(self, room: Room, envelope: Envelope, seq: int | None, now: float) -> int:
        """Push the message to every matching subscriber of every node; how many.

        ``seq`` None: a message not numbered (yet), sent without a cursor.
        This is the hot path: each variant in use is framed once, and each
        delivery is an append to an outbox, no awaiting, no copying.
        """
        message, publisher = envelope.message, envelope.publisher
        skip_publisher = envelope.skip_publisher
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
        dirty = self.flush.pending
        delivered = 0
        # One subscriber's fault (its outbox, its policy) ends that subscriber
        # only; the try costs nothing until something raises (Python 3.11+).
        failed: list[Subscriber] = []
        plain = not excluded and room.party.binding.options.slow_consumer is SlowConsumer.DISCONNECT
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
        if delivered:
            self.flush.published(now)
        return delivered
