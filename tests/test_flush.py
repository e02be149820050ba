"""The flush queue: each connection with bytes to send listed once per tick."""

from __future__ import annotations

import pytest

from fakes import FakeSubscriber
from partysubd.core.flush import FlushQueue


def test_an_outbox_is_listed_once_until_it_is_taken() -> None:
    queue: FlushQueue[FakeSubscriber] = FlushQueue()
    conn = FakeSubscriber("a")
    for frame in (b"1", b"2", b"3"):
        if conn.out.push(frame):
            queue.add(conn)
    assert queue.take() == [conn] and not queue
    assert queue.take() == []


def test_schedule_lists_a_connection_with_nothing_queued_once() -> None:
    queue: FlushQueue[FakeSubscriber] = FlushQueue()
    conn = FakeSubscriber("a")
    queue.schedule(conn)
    queue.schedule(conn)
    assert queue.take() == [conn]


def test_latency_runs_from_the_first_unflushed_publish_to_the_flush() -> None:
    queue: FlushQueue[FakeSubscriber] = FlushQueue()
    queue.flushed(1.0)
    assert queue.latency.count == 0, "nothing was published"
    queue.published(10.0)
    queue.published(10.4)
    queue.flushed(10.5)
    assert queue.latency.count == 1 and queue.latency.sum == pytest.approx(0.5)
    queue.published(11.0)
    queue.flushed(11.25)
    assert queue.latency.count == 2 and queue.latency.sum == pytest.approx(0.75)
