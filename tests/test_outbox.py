"""The per-connection outgoing queue and its cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from partysubd.core.outbox import Outbox


def test_push_schedules_once_until_flushed() -> None:
    out = Outbox(cap=100)
    assert out.push(b"abc") is True
    assert out.push(b"def") is False
    assert out.size == 6
    out.scheduled = False
    assert out.push(b"g") is True


def test_over_the_cap_nothing_is_queued_and_the_outbox_seals() -> None:
    out = Outbox(cap=10)
    out.push(b"12345678")
    out.scheduled = False
    assert out.push(b"abc") is True
    assert out.overflowed and out.sealed
    assert out.size == 8
    assert out.push(b"x") is False
    assert out.size == 8


def test_push_last_goes_past_the_cap() -> None:
    out = Outbox(cap=4)
    out.push(b"1234")
    out.push_last(b"close")
    assert out.chunks == [b"1234", b"close"]
    assert out.sealed
    assert out.push(b"more") is False


def test_partial_sends_keep_the_rest_in_order() -> None:
    out = Outbox(cap=100)
    for chunk in (b"aaaa", b"bbbb", b"cccc"):
        out.push(chunk)
    out.consumed(6)
    assert b"".join(out.pending()) == b"bbcccc"
    out.consumed(1)
    assert b"".join(out.pending()) == b"bcccc"
    out.consumed(5)
    assert out.size == 0 and out.chunks == [] and out.offset == 0


def test_drop_unsent_keeps_a_half_sent_frame() -> None:
    out = Outbox(cap=100)
    out.push(b"frame1")
    out.push(b"frame2")
    out.consumed(2)
    out.drop_unsent()
    assert b"".join(out.pending()) == b"ame1"
    assert out.size == 4
    out.consumed(4)
    out.push(b"x")
    out.drop_unsent()
    assert out.size == 0 and out.pending() == []


@given(st.lists(st.binary(min_size=1, max_size=20), max_size=30), st.lists(st.integers(0, 40)))
def test_consumed_matches_a_byte_stream(chunks: list[bytes], sends: list[int]) -> None:
    out = Outbox(cap=10_000)
    for chunk in chunks:
        out.push(chunk)
    stream = b"".join(chunks)
    sent = 0
    for n in sends:
        n = min(n, out.size)
        assert b"".join(out.pending()) == stream[sent:]
        out.consumed(n)
        sent += n
        assert out.size == len(stream) - sent
    assert b"".join(out.pending()) == stream[sent:]
