"""A stand-in subscriber for the hub's unit tests: an outbox and the fields the hub reads."""

from __future__ import annotations

from partysubd.outbox import Outbox
from partysubd.protocol import Variant


class Conn:
    def __init__(self, id: str, variant: Variant = Variant.JSON, skip_self: bool = False) -> None:
        self.out = Outbox(100_000)
        self.id = id
        self.peer = "p"
        self.country: str | None = None
        self.created = 0.0
        self.variant = variant
        self.skip_self = skip_self

    def frames(self) -> list[bytes]:
        chunks, self.out.chunks, self.out.size = self.out.chunks, [], 0
        return chunks
