"""One message on its way to a room's subscribers, and where it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from .protocol import Publish


class Origin(Enum):
    HERE = auto()  # published on this daemon: a WebSocket publish or a POST
    RELAYED = auto()  # from another daemon, for a plain room (numbered here)
    NUMBERED = auto()  # numbered by Redis (a room with a history): kept, then delivered
    HELD = auto()  # a numbered room's message delivered here, unnumbered, while Redis is away


@dataclass(slots=True)
class Envelope:
    """What ``Fanout.deliver`` takes: the message and what decides who gets it.

    One is made per publish, so it is not a frozen dataclass (those cost five
    times as much to make: 0.8 µs, measured); nothing changes one once made."""

    message: Publish
    # The publishing connection's id: its connections that asked for skip-self
    # are left out (``skip_publisher``: all of them, as a POST naming ?_pk= asks).
    publisher: str | None = None
    skip_publisher: bool = False
    origin: Origin = Origin.HERE
    # NUMBERED: the room's sequence number and epoch, from Redis; and whether it
    # was published here while Redis was away (delivered here then, not again).
    seq: int | None = None
    epoch: str | None = None
    delivered_here: bool = False
