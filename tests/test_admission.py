"""Admission: the rate limit before parsing, the grant after, the same for WebSocket and POST."""

from __future__ import annotations

from fakes import message
from partysubd.core.admission import Admission
from partysubd.core.auth import Grant
from partysubd.core.protocol import ErrorCode
from partysubd.core.ratelimit import PublishLimiter


def test_without_a_limit_or_a_grant_everything_passes() -> None:
    admission = Admission()
    assert admission.take(10**6, 0.0) == 0.0
    assert admission.allow(message("anything", 1)) is None


def test_the_limit_counts_messages_and_bytes_and_says_how_long_to_wait() -> None:
    limiter = PublishLimiter(2, 2, 100, 100, now=0.0)
    admission = Admission(limit=limiter.take)
    assert admission.take(10, 0.0) == 0.0
    assert admission.take(10, 0.0) == 0.0
    wait = admission.take(10, 0.0)
    assert 0 < wait <= 0.5
    assert admission.take(10, 0.5) == 0.0, "half a second later one more fits"
    # One message bigger than the byte burst goes when the bucket is full, and
    # leaves a debt: the average rate still holds.
    assert admission.take(200, 10.0) == 0.0
    assert admission.take(10, 10.0) > 1.0


def test_the_grant_refuses_topics_it_does_not_name() -> None:
    admission = Admission(Grant(pub=("chat:*",)))
    assert admission.allow(message("chat:1", 1)) is None
    refused = admission.allow(message("admin", 1))
    assert refused is not None and refused.code is ErrorCode.FORBIDDEN
    assert "'admin'" in refused.message
