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


def _unlimited(size: int, now: float) -> float:
    return 0.0


class Admission:
    """``take(size, now)``: 0.0 if one more message of ``size`` bytes may come in,
    else the seconds to wait. It is the limiter itself (or no limit), not a
    method that asks it: one call per message, on the publish path."""

    __slots__ = ("grant", "take")

    def __init__(self, grant: Grant = FULL_ACCESS, limit: Limit | None = None) -> None:
        self.grant = grant
        self.take: Limit = limit if limit is not None else _unlimited

    def allow(self, message: Publish) -> ProtocolError | None:
        if self.grant.may_publish(message.topic):
            return None
        return ProtocolError(
            ErrorCode.FORBIDDEN, f"the token does not allow publishing to {message.topic!r}"
        )
