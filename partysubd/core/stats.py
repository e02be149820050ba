"""Counters the daemon keeps about itself, cheap enough for the publish path.

Plain integers and dicts updated once per publish (never once per delivery),
read by the control plane and the Prometheus collector when asked. Nothing
here knows about HTTP or Prometheus: it is the state they report.
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

RECENT_TOPICS = 100
# Seconds; Prometheus-style upper bounds for publish-to-flush latency.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


@dataclass(slots=True)
class Traffic:
    """Messages and bytes published into, and delivered out of, a room or party."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, size: int, delivered: int) -> None:
        self.messages_in += 1
        self.messages_out += delivered
        self.bytes_in += size
        self.bytes_out += size * delivered


@dataclass(slots=True)
class TopicUse:
    count: int
    last_seen: float


class RecentTopics:
    """The topics a room published to most recently, with counts; at most ``limit``.

    A room can see unbounded distinct topics (ids in topic names are common),
    so only the most recently used are kept: an ordered dict moved to the end
    on use, trimmed from the front.
    """

    __slots__ = ("_topics", "limit")

    def __init__(self, limit: int = RECENT_TOPICS) -> None:
        self.limit = limit
        self._topics: OrderedDict[str, TopicUse] = OrderedDict()

    def seen(self, topic: str, now: float) -> None:
        use = self._topics.get(topic)
        if use is None:
            self._topics[topic] = TopicUse(1, now)
            if len(self._topics) > self.limit:
                self._topics.popitem(last=False)
        else:
            use.count += 1
            use.last_seen = now
            self._topics.move_to_end(topic)

    def items(self) -> list[tuple[str, TopicUse]]:
        """Most recent first."""
        return list(reversed(self._topics.items()))


class LatencyHistogram:
    """Cumulative-bucket histogram in the Prometheus sense, in seconds."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, observations at or below it)``, ending with ``+Inf``."""
        total = 0
        result = []
        for bound, n in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            total += n
            result.append((bound, total))
        return result


@dataclass(slots=True)
class Events:
    """Things that went wrong, by kind, for metrics."""

    error_frames: Counter[str] = field(default_factory=Counter)  # by __error code
    closes: Counter[int] = field(default_factory=Counter)  # server-sent close codes
    http_responses: Counter[int] = field(default_factory=Counter)  # by status
    rate_limited: Counter[str] = field(default_factory=Counter)  # publish, connect, http
    slow_consumers: int = 0
    # Exceptions contained (faults.py), by where: session, fanout, flush, ...
    internal_errors: Counter[str] = field(default_factory=Counter)
