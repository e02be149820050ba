"""Topic patterns and the index that finds a topic's subscribers.

A pattern is one of three kinds:

* ``*`` matches every topic;
* ``<prefix>:*`` matches every topic that starts with ``<prefix>:``;
* anything else matches exactly that topic (a ``*`` elsewhere is literal).

The original matched ``chat:*`` against anything starting with ``chat``
(``chatroom`` included) and delivered one copy per matching pattern; both are
fixed here (see docs/protocol.md).

The index is what keeps a publish from scanning every connection: exact
topics are a dict lookup, and prefix patterns are found by looking up each
prefix of the topic that ends in ``:`` (a topic has few of those), so the cost
of a publish depends on the topic, not on the number of subscribers.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from typing import Generic, TypeVar

S = TypeVar("S", bound=Hashable)

EVERYTHING = "*"
PREFIX_SUFFIX = ":*"


def prefix_of(pattern: str) -> str | None:
    """The ``prefix:`` a prefix pattern stands for, or None for other patterns."""
    if len(pattern) >= 2 and pattern.endswith(PREFIX_SUFFIX):
        return pattern[:-1]
    return None


def matches(pattern: str, topic: str) -> bool:
    """Whether one pattern matches one topic (the reference the index must agree with)."""
    if pattern == EVERYTHING:
        return True
    prefix = prefix_of(pattern)
    if prefix is not None:
        return topic.startswith(prefix)
    return pattern == topic


def topic_prefixes(topic: str) -> list[str]:
    """Every prefix of ``topic`` that ends in ``:``, shortest first."""
    found = []
    i = topic.find(":")
    while i >= 0:
        found.append(topic[: i + 1])
        i = topic.find(":", i + 1)
    return found


class SubscriptionIndex(Generic[S]):
    """Subscribers by pattern, answering "who gets topic T" without a scan.

    ``match`` returns a collection the caller must only read: it is often one
    of the index's own sets, handed out without a copy because a publish to a
    thousand subscribers should not first copy a thousand references.
    """

    __slots__ = ("_everything", "_exact", "_patterns", "_prefixes")

    def __init__(self) -> None:
        self._everything: set[S] = set()
        self._exact: dict[str, set[S]] = {}
        self._prefixes: dict[str, set[S]] = {}
        self._patterns: dict[S, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._patterns)

    def __contains__(self, subscriber: object) -> bool:
        return subscriber in self._patterns

    def patterns(self, subscriber: S) -> tuple[str, ...]:
        return self._patterns.get(subscriber, ())

    def subscribers(self) -> Iterable[S]:
        return self._patterns.keys()

    def set_patterns(self, subscriber: S, patterns: Iterable[str]) -> None:
        """Replace the subscriber's patterns (an empty list keeps it, subscribed to nothing)."""
        self._unindex(subscriber)
        unique = tuple(dict.fromkeys(patterns))
        self._patterns[subscriber] = unique
        for pattern in unique:
            self._add(subscriber, pattern)

    def remove(self, subscriber: S) -> None:
        self._unindex(subscriber)
        self._patterns.pop(subscriber, None)

    def match(self, topic: str) -> Collection[S]:
        """The subscribers with at least one pattern matching ``topic``, each once."""
        buckets: list[set[S]] = []
        if self._everything:
            buckets.append(self._everything)
        exact = self._exact.get(topic)
        if exact:
            buckets.append(exact)
        if self._prefixes and ":" in topic:
            prefixes = self._prefixes
            for prefix in topic_prefixes(topic):
                bucket = prefixes.get(prefix)
                if bucket:
                    buckets.append(bucket)
        if not buckets:
            return ()
        if len(buckets) == 1:
            return buckets[0]
        return set().union(*buckets)

    def count_by_pattern(self) -> dict[str, int]:
        """How many subscribers hold each pattern (for inspection, not the hot path)."""
        counts: dict[str, int] = {}
        if self._everything:
            counts[EVERYTHING] = len(self._everything)
        for topic, bucket in self._exact.items():
            counts[topic] = len(bucket)
        for prefix, bucket in self._prefixes.items():
            counts[prefix + "*"] = len(bucket)
        return counts

    def _table(self, pattern: str) -> tuple[dict[str, set[S]] | None, str]:
        """Where a pattern's bucket lives: None for ``*``, else the table and its key."""
        if pattern == EVERYTHING:
            return None, pattern
        prefix = prefix_of(pattern)
        if prefix is None:
            return self._exact, pattern
        return self._prefixes, prefix

    def _add(self, subscriber: S, pattern: str) -> None:
        table, key = self._table(pattern)
        if table is None:
            self._everything.add(subscriber)
        else:
            table.setdefault(key, set()).add(subscriber)

    def _unindex(self, subscriber: S) -> None:
        for pattern in self._patterns.get(subscriber, ()):
            table, key = self._table(pattern)
            if table is None:
                self._everything.discard(subscriber)
                continue
            bucket = table.get(key)
            if bucket is not None:
                bucket.discard(subscriber)
                if not bucket:
                    del table[key]
