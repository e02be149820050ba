"""Counters, recent topics and latency histograms: what the control plane shows."""

from __future__ import annotations

import pytest

from fakes import hub_with, message, publish, subscriber
from partysubd.core.stats import LatencyHistogram, RecentTopics


def test_publish_counts_traffic_topics_and_latency() -> None:
    hub = hub_with(seed=3)
    party = hub.registry.parties["pubsub"]
    a, b = subscriber("a", "US"), subscriber("b")
    room = hub.registry.join(party, "lobby", a, "US", ["*"]).room
    hub.registry.join(party, "lobby", b, None, ["chat:*"])
    assert publish(hub, room, message("chat:1", 1), None, now=20.0) == 2
    assert publish(hub, room, message("news", 22), None, now=21.0) == 1
    assert (room.traffic.messages_in, room.traffic.messages_out) == (2, 3)
    # {"topic":"chat:1","data":1} and {"topic":"news","data":22}, each with a 2-byte header
    assert (room.traffic.bytes_in, room.traffic.bytes_out) == (29 + 28, 2 * 29 + 28)
    assert party.traffic == room.traffic
    assert [(t, u.count) for t, u in room.topics.items()] == [("news", 1), ("chat:1", 1)]
    hub.flush.flushed(20.5)
    assert hub.flush.latency.count == 1 and hub.flush.latency.sum == pytest.approx(0.5)


def test_recent_topics_are_bounded_and_most_recent_first() -> None:
    recent = RecentTopics(limit=3)
    for i, topic in enumerate(["a", "b", "c", "a", "d"]):
        recent.seen(topic, float(i))
    assert [t for t, _ in recent.items()] == ["d", "a", "c"]


def test_histogram_is_cumulative() -> None:
    histogram = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.005, 0.005, 3.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.001", 1), ("0.01", 3), ("+Inf", 4)]
