"""A stand-in subscriber for the hub's unit tests: an outbox and the fields the hub reads."""

from __future__ import annotations

from typing import Any

from partysubd.core.envelope import Envelope
from partysubd.core.hub import Hub
from partysubd.core.outbox import Outbox
from partysubd.core.protocol import MessageLimits, Publish, Variant, make_publish
from partysubd.core.registry import Room


class Conn:
    def __init__(self, id: str, variant: Variant = Variant.JSON, skip_self: bool = False) -> None:
        self.out = Outbox(100_000)
        self.id = id
        self.peer = "p"
        self.country: str | None = None
        self.created = 0.0
        self.variant = variant
        self.skip_self = skip_self
        self.closed: tuple[int, str] | None = None

    def close(self, code: int, reason: str, now: float) -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.closed = (0, "aborted")

    def fail(self, now: float) -> None:
        self.closed = (1011, "internal error")

    def frames(self) -> list[bytes]:
        chunks, self.out.chunks, self.out.size = self.out.chunks, [], 0
        return chunks


def message(
    topic: str, data: Any = None, has_data: bool = True, idem: str | None = None
) -> Publish:
    """A message through the door, as a client's would be (the default limits)."""
    made = make_publish(topic, data, MessageLimits(), has_data=has_data, idem=idem)
    assert isinstance(made, Publish), made
    return made


def publish(
    hub: Hub,
    room: Room,
    message: Publish,
    publisher: str | None = None,
    now: float = 0.0,
    *,
    skip_publisher: bool = False,
) -> int | None:
    """A publish made here into ``room``, as a session makes it."""
    envelope = Envelope(message, publisher, skip_publisher)
    return hub.fanout.deliver(room.party, room.name, envelope, now)
