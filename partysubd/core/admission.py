"""Whether a publish may go: the checks a WebSocket publish and a POST share.

Two questions, asked at two moments: before the message is parsed, whether
the rate limit lets one more in (cheap, so it comes first); once it is a
``Publish``, whether the connection's grant allows its topic. The value and
size checks are the door's (protocol.make_publish); how each way in reports
a refusal (an ``__error`` frame, a status) is its own.
"""

from __future__ import annotations

from collections.abc import Callable

from .auth import FULL_ACCESS, Grant
from .protocol import ErrorCode, ProtocolError, Publish

# Seconds until one more would pass (0.0: it passes now), for ``size`` bytes at ``now``.
Limit = Callable[[int, float], float]


class Admission:
    """``limit(size, now)``: 0.0 if one more message of ``size`` bytes may come in,
    else the seconds to wait; None when nothing limits the connection (asked as
    ``take``). The grant's topics are looked at only when it names some: both
    run once per message, on the publish path, so neither costs a call it
    need not."""

    __slots__ = ("_grant", "_open", "limit")

    def __init__(self, grant: Grant = FULL_ACCESS, limit: Limit | None = None) -> None:
        self.grant = grant
        self.limit = limit

    @property
    def grant(self) -> Grant:
        return self._grant

    @grant.setter
    def grant(self, grant: Grant) -> None:
        self._grant = grant
        self._open = grant.pub is None  # publishing anywhere: no topic to check

    def take(self, size: int, now: float) -> float:
        return 0.0 if self.limit is None else self.limit(size, now)

    def allow(self, message: Publish) -> ProtocolError | None:
        if self._open or self._grant.may_publish(message.topic):
            return None
        return ProtocolError(
            ErrorCode.FORBIDDEN, f"the token does not allow publishing to {message.topic!r}"
        )
