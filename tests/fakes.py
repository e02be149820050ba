"""Stand-ins for the core's unit tests: a subscriber (an outbox and the fields the hub
reads), messages through the door, a seeded hub, a publish as a session makes it."""

from __future__ import annotations

import random
from typing import Any

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.envelope import Envelope
from partysubd.core.hub import Hub
from partysubd.core.outbox import Outbox
from partysubd.core.protocol import MessageLimits, Publish, Variant, make_publish
from partysubd.core.registry import Room


def hub_with(extra_toml: str = "", *, seed: int = 5) -> Hub:
    """A hub for the default binding plus ``extra_toml``; placement seeded, so node ids hold."""
    return Hub.build(parse_config(DEFAULT_BINDING_TOML + extra_toml, "t"), rng=random.Random(seed))


def subscriber(id: str, country: str | None = None) -> FakeSubscriber:
    """A connection with an address and an age, as the control plane's views show them."""
    return FakeSubscriber(id, country=country, peer="127.0.0.1:1", created=10.0)


class FakeSubscriber:
    """A connection as the registry and the fan-out see it (core.registry.Subscriber)."""

    def __init__(
        self,
        id: str,
        variant: Variant = Variant.JSON,
        skip_self: bool = False,
        *,
        country: str | None = None,
        peer: str = "p",
        created: float = 0.0,
    ) -> None:
        self.out = Outbox(100_000)
        self.id = id
        self.peer = peer
        self.country = country
        self.created = created
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
