"""What the core asks of a cluster, as one small protocol, and the answer without one.

The daemon's link to Redis (partysubd/cluster) implements ``ClusterHooks``; a
daemon without ``[cluster]`` gets ``NoCluster``. The core calls these
synchronously on its paths (a publish, the first or last connection of a room,
a resume), never awaiting: the link queues, and answers later through the
fan-out (``Fanout.deliver``) or the callback it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .protocol import Publish

if TYPE_CHECKING:
    from .envelope import Envelope
    from .registry import Party, Room

# What Redis kept after a cursor: (seq, message, publisher) in order, with the
# epoch; None when it no longer reaches back that far.
Fetched = tuple[str, list[tuple[int, Publish, str | None]]] | None


class ClusterHooks(Protocol):
    @property
    def active(self) -> bool:
        """Whether other daemons share the rooms (local history copies can go stale)."""

    def numbers(self, party: Party) -> bool:
        """Whether the cluster numbers this party's rooms (they have a history)."""

    def relay(self, party: Party, room_name: str, envelope: Envelope) -> None:
        """A local publish of a plain room, for the other daemons."""

    def sequence(self, party: Party, room_name: str, envelope: Envelope) -> bool:
        """A publish of a numbered room, for Redis to number and every daemon to deliver
        from there; False when Redis is away (it is queued, and delivered here now)."""

    def interest(self, party: Party, room_name: str, wanted: bool) -> None:
        """The room gained its first connection here (True) or lost its last."""

    @property
    def can_fetch(self) -> bool:
        """Whether a resume this daemon cannot answer may ask Redis."""

    def fetch_history(
        self, room: Room, epoch: str, after: int, done: Callable[[Fetched], None]
    ) -> None:
        """Read the room's numbered history after ``epoch:after``; ``done`` gets it."""


class NoCluster:
    """One daemon alone: nothing to relay, number, follow or fetch."""

    active = False
    can_fetch = False

    def numbers(self, party: Party) -> bool:
        return False

    def relay(self, party: Party, room_name: str, envelope: Envelope) -> None:
        pass

    def sequence(self, party: Party, room_name: str, envelope: Envelope) -> bool:
        raise AssertionError("without a cluster nothing is numbered by Redis")

    def interest(self, party: Party, room_name: str, wanted: bool) -> None:
        pass

    def fetch_history(
        self, room: Room, epoch: str, after: int, done: Callable[[Fetched], None]
    ) -> None:
        done(None)
