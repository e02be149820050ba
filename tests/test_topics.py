"""Topic patterns and the subscription index."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from partysubd.core.topics import SubscriptionIndex, matches, prefix_of, topic_prefixes


def test_everything_pattern_matches_any_topic() -> None:
    assert matches("*", "a")
    assert matches("*", "chat:room")
    assert matches("*", "")


def test_prefix_pattern_needs_the_colon() -> None:
    assert matches("chat:*", "chat:room")
    assert matches("chat:*", "chat:")
    assert matches("chat:*", "chat:a:b")
    # The original matched these; the colon is part of the prefix here.
    assert not matches("chat:*", "chatroom")
    assert not matches("chat:*", "chat")


def test_other_stars_are_literal() -> None:
    assert matches("a*", "a*")
    assert not matches("a*", "ab")
    assert matches("a:*b", "a:*b")
    assert not matches("a:*b", "a:xb")
    # ":*" is a prefix pattern for the empty prefix followed by a colon.
    assert matches(":*", ":x")
    assert not matches(":*", "x")


def test_exact_pattern() -> None:
    assert matches("topic-abc", "topic-abc")
    assert not matches("topic-abc", "topic-abcd")


def test_prefix_of() -> None:
    assert prefix_of("chat:*") == "chat:"
    assert prefix_of("*") is None
    assert prefix_of("chat") is None


def test_topic_prefixes() -> None:
    assert topic_prefixes("a:b:c") == ["a:", "a:b:"]
    assert topic_prefixes("abc") == []
    assert topic_prefixes(":") == [":"]


def test_index_delivers_once_per_subscriber_with_overlapping_patterns() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.set_patterns("a", ["*", "chat:*", "chat:1"])
    index.set_patterns("b", ["chat:1"])
    assert sorted(index.match("chat:1")) == ["a", "b"]
    assert sorted(index.match("other")) == ["a"]


def test_index_replace_and_remove_leave_no_empty_buckets() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.set_patterns("a", ["x", "p:*"])
    index.set_patterns("a", ["y"])
    assert list(index.match("x")) == []
    assert list(index.match("p:1")) == []
    assert list(index.match("y")) == ["a"]
    index.remove("a")
    assert len(index) == 0
    assert index.count_by_pattern() == {}


def test_empty_subscription_keeps_the_subscriber_but_matches_nothing() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.set_patterns("a", [])
    assert "a" in index
    assert list(index.match("anything")) == []


def test_count_by_pattern() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.set_patterns("a", ["*", "p:*"])
    index.set_patterns("b", ["p:*", "t"])
    assert index.count_by_pattern() == {"*": 1, "p:*": 2, "t": 1}


alphabet = st.sampled_from(["a", "b", ":", "*"])
topics = st.text(alphabet, max_size=6)
patterns = st.one_of(topics, st.builds(lambda t: t + ":*", topics), st.just("*"))


@given(
    subscriptions=st.dictionaries(st.integers(0, 20), st.lists(patterns, max_size=4), max_size=15),
    topic=topics,
)
def test_index_agrees_with_matches(subscriptions: dict[int, list[str]], topic: str) -> None:
    """A topic reaches a subscriber iff one of its patterns matches, and exactly once."""
    index: SubscriptionIndex[int] = SubscriptionIndex()
    for subscriber, pats in subscriptions.items():
        index.set_patterns(subscriber, pats)
    found = list(index.match(topic))
    assert len(found) == len(set(found))
    expected = {s for s, pats in subscriptions.items() if any(matches(p, topic) for p in pats)}
    assert set(found) == expected


@given(
    first=st.lists(patterns, max_size=4),
    second=st.lists(patterns, max_size=4),
    topic=topics,
)
def test_replacing_patterns_forgets_the_old_ones(
    first: list[str], second: list[str], topic: str
) -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.set_patterns("s", first)
    index.set_patterns("s", second)
    assert ("s" in set(index.match(topic))) == any(matches(p, topic) for p in second)
    index.remove("s")
    assert list(index.match(topic)) == []
