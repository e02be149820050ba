"""Watching a room's messages from the control plane, without slowing it.

A ``Tail`` is one viewer's window onto one room (the dashboard's live tail).
The hub offers it each message published in the room after delivery; the
offer is a pattern test and a deque append, and a full window drops its
oldest message and counts it. So a viewer whose browser or network is slow
loses tail lines, never holds up a subscriber. Encoding for the viewer
happens later, at the edge, in the viewer's own task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .protocol import Publish, dumps
from .topics import matches

# Enough for a screenful and a burst; a browser renders at most a few
# hundred lines a second anyway.
DEFAULT_WINDOW = 500
# And at most this many bytes of messages, however large they are.
WINDOW_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as the viewer sees it: what was published, when, and its cursor."""

    message: Publish
    # None for a message published to a room nobody is in: it is not numbered.
    cursor: str | None
    time: float


@dataclass(frozen=True, slots=True)
class Batch:
    """What a viewer is sent at once: the messages kept, and how many were dropped before."""

    messages: list[Seen]
    dropped: int

    def encode(self, to_wall: Callable[[float], float]) -> bytes:
        """One JSON document for the viewer (bytes data as ``{"__bytes": base64}``),
        spliced from each message's JSON form: nothing is encoded again."""
        lines = []
        for seen in self.messages:
            message = seen.message
            head = message.json[:-1] if message.has_data else message.json[:-1] + b',"data":null'
            extra = b',"id":%s,"time":%s}' % (dumps(seen.cursor), dumps(to_wall(seen.time)))
            lines.append(head + extra)
        return b'{"messages":[%s],"dropped":%d}' % (b",".join(lines), self.dropped)


class Tail:
    """A bounded, filtered window onto one room's messages for one viewer."""

    def __init__(
        self,
        room_name: str,
        patterns: Iterable[str] = ("*",),
        window: int = DEFAULT_WINDOW,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.room_name = room_name
        self.patterns = tuple(patterns) or ("*",)
        self._kept: deque[Seen] = deque()
        self._window = window
        self._bytes = 0  # what the kept messages hold
        self._dropped = 0
        # Called when the window goes from empty to not empty: the edge's
        # viewer task sleeps until then.
        self._wake = wake

    def wants(self, topic: str) -> bool:
        return any(matches(pattern, topic) for pattern in self.patterns)

    def offer(self, message: Publish, cursor: str | None, now: float) -> None:
        if not self.wants(message.topic):
            return
        kept = self._kept
        was_empty = not kept
        kept.append(Seen(message, cursor, now))
        self._bytes += message.size
        while len(kept) > self._window or (self._bytes > WINDOW_BYTES and len(kept) > 1):
            self._bytes -= kept.popleft().message.size
            self._dropped += 1
        if was_empty:
            self._wake()

    def take(self) -> Batch | None:
        """Everything waiting, or None when there is nothing to send."""
        if not self._kept and not self._dropped:
            return None
        batch = Batch(list(self._kept), self._dropped)
        self._kept.clear()
        self._bytes = 0
        self._dropped = 0
        return batch


class Tails:
    """The tails open on a party's rooms, by room name.

    Held by the party rather than the room: a viewer may watch a room before
    anyone connects to it, and keep watching while it empties and fills.
    """

    def __init__(self) -> None:
        self._by_room: dict[str, set[Tail]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_room)

    def __len__(self) -> int:
        return sum(len(tails) for tails in self._by_room.values())

    def add(self, tail: Tail) -> None:
        self._by_room.setdefault(tail.room_name, set()).add(tail)

    def remove(self, tail: Tail) -> None:
        tails = self._by_room.get(tail.room_name)
        if tails is None:
            return
        tails.discard(tail)
        if not tails:
            del self._by_room[tail.room_name]

    def offer(self, room_name: str, message: Publish, cursor: str | None, now: float) -> None:
        for tail in self._by_room.get(room_name, ()):
            tail.offer(message, cursor, now)
