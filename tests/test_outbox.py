"""The per-connection outgoing queue and its cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from partysubd.core.outbox import DropOldestOutbox, LatestOutbox, Outbox


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


def gap(first: int, last: int) -> bytes:
    return f"gap {first}-{last}".encode()


def test_drop_oldest_keeps_the_newest_and_reports_the_gap() -> None:
    out = DropOldestOutbox(cap=GAP_CAP, gap_frame=gap)
    for seq in range(1, 11):
        out.push_message(b"x" * 40, "t", seq)
    assert out.size <= GAP_CAP
    assert out.chunks[0].startswith(b"gap 1-")
    last_dropped = int(out.chunks[0].decode().split("-")[1])
    assert out.seqs[1:] == list(range(last_dropped + 1, 11))
    assert not out.overflowed


def test_drop_oldest_merges_gaps_and_never_drops_a_half_sent_frame() -> None:
    out = DropOldestOutbox(cap=GAP_CAP, gap_frame=gap)
    for seq in range(1, 5):
        out.push_message(b"y" * 40, "t", seq)
    out.consumed(10)  # the first frame is half sent
    for seq in range(5, 20):
        out.push_message(b"y" * 40, "t", seq)
    assert out.chunks[0] == b"y" * 40 and out.offset == 10
    gaps = [m for m in out.seqs if isinstance(m, tuple)]
    assert len(gaps) == 1 and gaps[0][0] == 2


GAP_CAP = 128 + 200


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 60)), max_size=80))
def test_latest_keeps_every_message_until_behind_then_the_newest_per_topic(
    pushes: list[tuple[str, int]],
) -> None:
    out = LatestOutbox(cap=1000)
    frames = [f"{topic}{i}:".encode() + b"." * size for i, (topic, size) in enumerate(pushes)]
    for i, ((topic, _), frame) in enumerate(zip(pushes, frames, strict=True)):
        out.push_message(frame, topic, i)
    pending = [c for c in out.chunks if c]
    assert out.size == sum(len(c) for c in pending) <= out.cap
    if sum(map(len, frames)) <= out.cap:
        assert pending == frames, "a reader within the cap gets every message, in order"
        return
    # Behind: the newest message of every topic is there, in publish order.
    for topic in {t for t, _ in pushes}:
        newest = max(i for i, (t, _) in enumerate(pushes) if t == topic)
        assert frames[newest] in pending
    assert pending == sorted(pending, key=frames.index)


def test_a_reader_that_keeps_up_gets_every_message_of_a_topic() -> None:
    out = LatestOutbox(cap=10_000)
    for n in range(100):  # one tick's worth, far under the cap
        out.push_message(b"t%d" % n, "t", n)
    assert out.chunks == [b"t%d" % n for n in range(100)]


def test_latest_never_replaces_a_half_sent_frame() -> None:
    out = LatestOutbox(cap=10_000)
    out.push_message(b"a-old-frame", "a", 1)
    out.consumed(3)
    out.push_message(b"a-new-frame", "a", 2)
    assert b"".join(out.pending()) == b"ld-frame" + b"a-new-frame"


def test_adopt_carries_queued_bytes() -> None:
    plain = Outbox(100)
    plain.push(b"HTTP/1.1 101")
    plain.consumed(5)
    dropping = DropOldestOutbox(100, gap)
    dropping.adopt(plain)
    assert b"".join(dropping.pending()) == b"1.1 101" and dropping.seqs == [-1]


def test_latest_index_is_bounded_by_the_cap_and_forgets_what_was_sent() -> None:
    out = LatestOutbox(cap=10_000)
    # One topic updated a million times while nothing is sent: slots are compacted.
    for i in range(100_000):
        out.push_message(b"x%d" % i, "price", i)
    assert not out.overflowed and len(out.chunks) < 200
    assert [c for c in out.chunks if c] == [b"x99999"]
    # A new topic per message: the index counts against the cap, then closes the reader.
    for i in range(100_000):
        out.push_message(b"y", f"id:{i}", i)
        if out.overflowed:
            break
    assert out.overflowed and i < 200
    assert out.size + out.index_bytes <= out.cap


def test_latest_topics_leave_the_index_once_sent() -> None:
    out = LatestOutbox(cap=1000)
    for i in range(30):  # past the cap: behind, the index in use
        out.push_message(b"f" * 50, f"t{i % 3}", i)
    assert out._behind and not out.overflowed and set(out._latest) == {"t0", "t1", "t2"}
    out.consumed(50)  # the oldest frame sent: its topic leaves the index
    assert len(out._latest) == 2 and out.index_bytes == 2 * (100 + 2)
    out.consumed(out.size)  # caught up: every message again, no index
    assert not out._behind and out._latest == {} and out.index_bytes == 0
    for n in range(3):
        out.push_message(b"x", "t0", n)
    assert out.chunks == [b"x", b"x", b"x"]
