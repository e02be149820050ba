"""Token buckets: per connection, per address, shared over a cluster."""

from __future__ import annotations

import random

import pytest

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.ratelimit import AddressLimiter, PublishLimiter, TokenBucket


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    assert bucket.take(1, 0.0) == 0 and bucket.take(1, 0.0) == 0
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.take(1, 0.5) == 0


def test_publish_limiter_counts_messages_and_bytes() -> None:
    limiter = PublishLimiter(rate=1, burst=1, bytes_rate=100, bytes_burst=100, now=0.0)
    assert limiter.take(50, 0.0) == 0
    assert limiter.take(10, 0.0) > 0
    assert limiter.take(10, 0.1) > 0
    assert limiter.take(10, 1.1) == 0
    assert limiter.take(500, 5.0) == 0, "bigger than the byte burst: goes when full"
    assert limiter.take(10, 6.0) > 0, "and leaves a debt"


def test_address_limiter_forgets_idle_addresses() -> None:
    limiter = AddressLimiter(rate=1, burst=1)
    assert limiter.take("a", 0.0) == 0 and limiter.take("a", 0.0) > 0
    assert limiter.take("b", 0.0) == 0
    limiter.forget_idle(5.0)
    assert limiter.buckets == {}
    assert AddressLimiter(0, 0).take("x", 0.0) == 0


def test_per_address_limits_are_shared_out_over_the_cluster() -> None:
    extra = '\n[[pubsub]]\nbinding = "PubSub"\nconnect_rate = 10\nconnect_burst = 10\n'
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML + extra, "t"), rng=random.Random(2))
    party = hub.registry.parties["pubsub"]

    def admitted(now: float) -> int:
        return sum(1 for _ in range(20) if party.connect_limiter.take("1.2.3.4", now) == 0)

    assert admitted(0.0) == 10
    hub.registry.set_cluster_size(2)
    assert admitted(100.0) == 5, "each of two daemons admits half the burst"
    assert party.connect_limiter.rate == 5
    hub.registry.set_cluster_size(0)
    assert party.share == 1
