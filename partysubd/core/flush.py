"""The connections with bytes to send: filled by the core, drained by the engine.

Delivering to a connection appends to its outbox; an outbox that goes from
empty to not (``Outbox.push`` says so) puts its owner here, once. The engine
takes the whole list once per scheduler tick and makes one system call per
connection, for everything queued since the last tick.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from .outbox import Outbox
from .stats import LatencyHistogram


class HasOutbox(Protocol):
    out: Outbox


S = TypeVar("S", bound=HasOutbox)


class FlushQueue(Generic[S]):
    __slots__ = ("latency", "pending", "unflushed_since")

    def __init__(self) -> None:
        self.pending: list[S] = []
        # When the oldest publish not yet flushed was made, and how long that took.
        self.unflushed_since: float | None = None
        self.latency = LatencyHistogram()

    def __bool__(self) -> bool:
        return bool(self.pending)

    def add(self, owner: S) -> None:
        """``owner``'s outbox asked to be flushed (its push or schedule said True)."""
        self.pending.append(owner)

    def schedule(self, owner: S) -> None:
        """Flush ``owner`` even with nothing new queued (to close it once drained)."""
        if owner.out.schedule():
            self.pending.append(owner)

    def published(self, now: float) -> None:
        if self.unflushed_since is None:
            self.unflushed_since = now

    def take(self) -> list[S]:
        pending, self.pending = self.pending, []
        return pending

    def flushed(self, now: float) -> None:
        """Everything published so far is with the kernel: record how long that took."""
        if self.unflushed_since is not None:
            self.latency.observe(now - self.unflushed_since)
            self.unflushed_since = None
