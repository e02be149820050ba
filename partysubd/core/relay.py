"""What crosses between daemons of a cluster: batches of publishes, per room.

Sans-I/O: the Redis link (cluster.py) moves the bytes; this decides them.

* A room's messages travel on one channel, ``<prefix>:{<binding>:<room>}``
  (the braces are a Redis Cluster hash tag: the room's channel lands on one
  shard, rooms spread over all of them).
* Each message is encoded once, when published; what is sent is a batch per
  channel per tick: ``msgpack([origin, [item, item, ...]])``. A receiver
  skips batches from itself, so each daemon delivers each message once: its
  own publishes locally, everyone else's from Redis.
* ``Outbound`` keeps batches in publish order until the link takes them. While
  Redis is away it keeps at most ``limit`` messages, dropping the oldest and
  counting them, so a long outage costs bounded memory and a number in the
  metrics, never an unbounded queue.
* ``Interest`` is the set of channels this daemon must be subscribed to: the
  rooms it has connections in. It hands out changes, and all of it again
  after a reconnect.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack

from .protocol import MessageLimits, ProtocolError, Publish, parse_relayed


def channel_for(prefix: str, binding_name: str, room_name: str) -> str:
    return f"{prefix}:{{{binding_name}:{room_name}}}"


def names_of(prefix: str, channel: str) -> tuple[str, str] | None:
    """(binding name, room name) of a room channel, or None for anything else."""
    head = prefix + ":{"
    if not channel.startswith(head) or not channel.endswith("}"):
        return None
    binding_name, sep, room_name = channel[len(head) : -1].partition(":")
    if not sep or not binding_name or not room_name:
        return None
    return binding_name, room_name


@dataclass(frozen=True, slots=True)
class Relayed:
    """A publish that arrived from another daemon (or, numbered, through Redis)."""

    origin: str
    message: Publish
    # The publishing connection's id: its skip-self sockets here are left out.
    publisher: str | None
    # An HTTP publish naming ?_pk= skips every socket of that id.
    skip_publisher: bool
    # Published on ``origin`` while Redis was away and delivered there already.
    delivered_at_origin: bool = False
    # Numbered by Redis (rooms with a history): the room's sequence number,
    # and the item as it was sent (its publisher recognises its own echo by it).
    seq: int | None = None
    packed: bytes = b""


def encode_item(
    message: Publish, publisher: str | None, skip_publisher: bool, delivered_here: bool = False
) -> bytes:
    """``[message map, publisher, skip, idem, delivered]``; the map is the MessagePack
    form the door made, carried as bytes, never decoded and encoded again."""
    packed: bytes = msgpack.packb(
        [message.packed, publisher, skip_publisher, message.idem, delivered_here]
    )
    return packed


def encode_batch(origin: str, items: list[bytes]) -> bytes:
    # Items are already msgpack: splice them into an array rather than decode
    # and encode again (msgpack arrays are a header and the items back to back).
    return b"".join([b"\x92", msgpack.packb(origin), _array_header(len(items)), *items])


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


class BadBatch(ValueError):
    """A payload on a room channel (or one item of it) that cannot be read: logged, skipped."""


def decode_item(
    raw: Any, limits: MessageLimits, origin: str = "", seq: int | None = None
) -> Relayed:
    """One item, packed (as Redis keeps it) or already unpacked (inside a plain batch).

    The message goes through the same door as a client's MessagePack publish,
    with this daemon's limits: what another daemon (or Redis) sends is input too.
    Raises BadBatch, and nothing else, for anything unreadable or refused."""
    try:
        packed = raw if isinstance(raw, bytes) else b""
        if packed:
            raw = msgpack.unpackb(packed, raw=False)
        envelope, publisher, skip_publisher, idem, delivered = raw
    except Exception as exc:
        raise BadBatch(f"malformed item: {exc}") from None
    if not isinstance(envelope, bytes):
        raise BadBatch("malformed item: the message is not bytes")
    if publisher is not None and not isinstance(publisher, str):
        raise BadBatch("malformed publisher")
    message = parse_relayed(envelope, idem, limits)
    if isinstance(message, ProtocolError):
        raise BadBatch(f"{message.code.value}: {message.message}")
    return Relayed(origin, message, publisher, bool(skip_publisher), bool(delivered), seq, packed)


def decode_batch(payload: bytes) -> tuple[str, str | None, list[tuple[int | None, Any]]]:
    """(origin, epoch, raw items with their seq), for ``decode_item`` one by one.

    A plain batch is ``[origin, [item, ...]]``; one numbered by Redis (built by
    the Lua script in cluster.py) is ``[origin, epoch, [[seq, packed item], ...]]``."""
    try:
        if payload[:1] == b"\x92":
            origin, plain = msgpack.unpackb(payload, raw=False, strict_map_key=True)
            if not isinstance(origin, str) or not isinstance(plain, list):
                raise BadBatch("malformed origin")
            return origin, None, [(None, raw) for raw in plain]
        # Lua strings are packed as msgpack str, whatever bytes they hold: raw.
        raw_origin, raw_epoch, entries = msgpack.unpackb(payload, raw=True, strict_map_key=True)
        origin, epoch = raw_origin.decode(), raw_epoch.decode()
        return origin, epoch, [(int(seq), packed) for seq, packed in entries]
    except BadBatch:
        raise
    except Exception as exc:
        raise BadBatch(str(exc) or type(exc).__name__) from None


@dataclass(slots=True)
class Pending:
    """One message for the other daemons: encoded once, kept with what it was made from
    (so this daemon can deliver it itself if Redis goes away, without decoding it)."""

    channel: str
    numbered: bool
    message: Publish
    publisher: str | None
    skip_publisher: bool
    delivered_here: bool = False
    item: bytes = b""

    def __post_init__(self) -> None:
        if not self.item:
            self.item = encode_item(
                self.message, self.publisher, self.skip_publisher, self.delivered_here
            )

    @property
    def idem(self) -> str:
        return self.message.idem or ""

    def mark_delivered(self) -> None:
        self.delivered_here = True
        self.item = encode_item(self.message, self.publisher, self.skip_publisher, True)


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages for one channel, to be sent as one publish (or one numbering script)."""

    channel: str
    numbered: bool
    pending: list[Pending]

    @property
    def items(self) -> list[bytes]:
        return [p.item for p in self.pending]

    @property
    def idems(self) -> list[str]:
        """Each item's idempotency key ("" for none), for the numbering script."""
        return [p.idem for p in self.pending]


class Outbound:
    """Messages for the other daemons, by channel, in publish order, bounded in number
    (``limit``) and in bytes (``max_bytes``)."""

    def __init__(self, limit: int, max_bytes: int = 1 << 62) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        # One queue in publish order: batching per channel happens when taken,
        # so order across channels is kept too.
        self._queue: deque[Pending] = deque()
        self.bytes = 0
        self.dropped = 0
        # Numbered rooms' messages dropped, by channel: their numbers are
        # skipped when Redis is back, so resumes see the hole.
        self._holes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, pending: Pending) -> bool:
        """Queue one message; whether the queue was empty (the sender must wake)."""
        queue = self._queue
        was_empty = not queue
        queue.append(pending)
        self.bytes += _cost(pending)
        self._trim()
        return was_empty

    def _trim(self) -> None:
        while self._queue and (len(self._queue) > self.limit or self.bytes > self.max_bytes):
            dropped = self._queue.popleft()
            self.bytes -= _cost(dropped)
            self.dropped += 1
            if dropped.numbered:
                self._holes[dropped.channel] = self._holes.get(dropped.channel, 0) + 1

    def take_holes(self) -> dict[str, int]:
        """Numbered messages dropped since last asked, by channel."""
        holes, self._holes = self._holes, {}
        return holes

    def take(self, most: int = 10_000) -> list[Batch]:
        """Up to ``most`` messages as one batch per channel, channels in order of first use."""
        queue = self._queue
        by_channel: dict[tuple[str, bool], Batch] = {}
        for _ in range(min(most, len(queue))):
            pending = queue.popleft()
            self.bytes -= _cost(pending)
            key = (pending.channel, pending.numbered)
            batch = by_channel.get(key)
            if batch is None:
                batch = by_channel[key] = Batch(pending.channel, pending.numbered, [])
            batch.pending.append(pending)
        return list(by_channel.values())

    def numbered_not_delivered(self) -> list[Pending]:
        """Queued numbered messages their own daemon has not delivered, in order;
        they are marked delivered (the caller delivers them now)."""
        found = [p for p in self._queue if p.numbered and not p.delivered_here]
        for pending in found:
            self.bytes -= _cost(pending)
            pending.mark_delivered()
            self.bytes += _cost(pending)
        return found

    def put_back(self, batches: list[Batch]) -> None:
        """Batches the link could not send go back in front, in order (a lost connection)."""
        restored = [pending for batch in batches for pending in batch.pending]
        for pending in reversed(restored):
            self._queue.appendleft(pending)
            self.bytes += _cost(pending)
        self._trim()


def _cost(pending: Pending) -> int:
    """What a queued message holds: its item and the message it was made from."""
    return len(pending.item) + pending.message.size


class Interest:
    """The channels this daemon must listen on, and what changed since last asked."""

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self._changes: dict[str, bool] = {}  # channel -> subscribe (True) / unsubscribe

    def want(self, channel: str, wanted: bool) -> bool:
        """Record a change; whether the link has something new to do."""
        if wanted == (channel in self.channels):
            return False
        if wanted:
            self.channels.add(channel)
        else:
            self.channels.discard(channel)
        if self._changes.get(channel) is (not wanted):
            # Undone before the link acted on it.
            del self._changes[channel]
        else:
            self._changes[channel] = wanted
        return True

    def take_changes(self) -> tuple[list[str], list[str]]:
        """(subscribe, unsubscribe) since the last call."""
        changes, self._changes = self._changes, {}
        subscribe = [c for c, wanted in changes.items() if wanted]
        unsubscribe = [c for c, wanted in changes.items() if not wanted]
        return subscribe, unsubscribe

    def restart(self) -> list[str]:
        """Everything to subscribe on a new connection; pending changes are included."""
        self._changes = {}
        return sorted(self.channels)
