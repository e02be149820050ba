"""The sans-I/O side of delivery guarantees: history and cursors, queue policies,
rate limits, MessagePack, variants encoded once, skip-self, autoscaling."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes import Conn, message, publish
from partysubd.core import protocol
from partysubd.core.config import DEFAULT_BINDING_TOML, ConfigError, parse_config
from partysubd.core.history import History, parse_cursor
from partysubd.core.hub import Hub
from partysubd.core.outbox import DropOldestOutbox, LatestOutbox, Outbox
from partysubd.core.protocol import (
    ErrorCode,
    MessageLimits,
    ProtocolError,
    Publish,
    Subscribe,
    Variant,
    dumps,
    message_frame,
    parse_msgpack_message,
)
from partysubd.core.ratelimit import AddressLimiter, PublishLimiter, TokenBucket

# --- history and cursors -------------------------------------------------------------


def everything(entry: Any) -> bool:
    return True


@given(
    max_messages=st.integers(1, 20),
    published=st.integers(0, 60),
    since=st.integers(0, 70),
)
def test_since_returns_exactly_what_followed_or_says_it_cannot(
    max_messages: int, published: int, since: int
) -> None:
    history = History(max_messages, max_age=1e9, epoch="e")
    for i in range(published):
        history.append(message("t", i), None, now=float(i))
    resume = history.since(f"e:{since}", everything)
    kept_from = max(1, published - max_messages + 1)
    if since > published:
        assert not resume.recovered, "a cursor from the future is not ours"
    elif since == published or since + 1 >= kept_from:
        assert resume.recovered
        assert [e.seq for e in resume.entries] == list(range(since + 1, published + 1))
        assert [e.message.data for e in resume.entries] == list(range(since, published))
    else:
        assert not resume.recovered
        assert resume.entries == ()


@given(st.text(max_size=12))
def test_foreign_or_malformed_cursors_never_recover(cursor: str) -> None:
    history = History(10, 60.0, epoch="mine")
    history.append(message("t", 1), None, 0.0)
    resume = history.since(cursor, everything)
    if cursor not in ("mine:0", "mine:1"):
        assert not resume.recovered


def test_history_ages_out_and_forgets_idempotency_keys() -> None:
    history = History(100, max_age=10.0, epoch="e")
    history.append(message("t", 1, idem="k"), None, now=0.0)
    assert history.is_repeat("k")
    history.append(message("t", 2), None, now=5.0)
    history.expire(now=10.5)
    assert len(history) == 1 and not history.is_repeat("k")
    assert not history.since("e:0", everything).recovered
    assert history.since("e:1", everything).recovered


def test_without_history_messages_are_numbered_but_not_kept() -> None:
    history = History(0, 300.0)
    assert [history.append(message("t", i), None, 0.0) for i in range(3)] == [1, 2, 3]
    assert len(history) == 0 and not history.enabled
    assert not history.is_repeat(None)


def test_parse_cursor() -> None:
    assert parse_cursor("ab12:7") == ("ab12", 7)
    assert parse_cursor("e:9223372036854775807") == ("e", 2**63 - 1)
    for bad in ("", "7", ":7", "e:", "e:-1", "e:x", "a:b:7", "e:²", "e:٣", "e:+1", "e: 1"):
        assert parse_cursor(bad) is None
    assert parse_cursor("e:9223372036854775808") is None
    assert parse_cursor("e:" + "1" * 5000) is None


# --- queue policies ------------------------------------------------------------------


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


# --- rate limits ----------------------------------------------------------------------


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


# --- MessagePack and variants ---------------------------------------------------------


def test_msgpack_messages() -> None:
    limits = MessageLimits()
    assert parse_msgpack_message(msgpack.packb({"topic": "t", "data": b"\x00"}), limits) == message(
        "t", b"\x00"
    )
    assert parse_msgpack_message(msgpack.packb({"__topics": ["a"]}), limits) == Subscribe(("a",))
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    timestamp96 = b"\xc7\x0c\xff" + (0).to_bytes(4, "big") + (2**62).to_bytes(8, "big")
    for bad, code in [
        (b"\xc1", ErrorCode.BAD_MSGPACK),
        (msgpack.packb([1]), ErrorCode.BAD_MESSAGE),
        (msgpack.packb({"topic": 1}), ErrorCode.BAD_TOPIC),
        (msgpack.packb(msgpack.ExtType(5, b"x")), ErrorCode.BAD_MSGPACK),
        (msgpack.packb({"topic": "t", "data": float("nan")}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": float("-inf")}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": {b"k": 1}}), ErrorCode.BAD_VALUE),
        (msgpack.packb({"topic": "t", "data": deep}), ErrorCode.BAD_VALUE),
        (b"\x82\xa5topic\xa1t\xa4data" + timestamp96, ErrorCode.BAD_VALUE),
        (b"\x82\xa5topic\xa1t\xa4data\xa3\xed\xa0\x80", ErrorCode.BAD_MSGPACK),  # surrogate
        (b"\x91" * 5000 + b"\x01", ErrorCode.BAD_MSGPACK),
    ]:
        result = parse_msgpack_message(bad, limits)
        assert isinstance(result, ProtocolError) and result.code is code, (bad[:20], result)


def test_bytes_reach_json_subscribers_marked_base64() -> None:
    assert dumps({"data": b"\x00\xff"}) == b'{"data":{"__bytes":"AP8="}}'
    frame = message_frame(message("t", {"k": b"hi"}), "e:1", Variant.JSON_IDS)
    assert frame[2:] == b'{"topic":"t","data":{"k":{"__bytes":"aGk="}},"id":"e:1"}'
    packed = message_frame(message("t", b"hi"), "e:1", Variant.MSGPACK)
    assert packed[0] == 0x82
    assert msgpack.unpackb(packed[2:]) == {"topic": "t", "data": b"hi"}


def hub_with(extra: str = "") -> Hub:
    return Hub.build(parse_config(DEFAULT_BINDING_TOML + extra, "t"), rng=random.Random(5))


def test_each_variant_in_use_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import partysubd.core.fanout as rooms

    calls: list[int] = []
    real: Callable[..., bytes] = protocol.encode_message

    def counting(message: Publish, cursor: str | None, variant: int) -> bytes:
        calls.append(variant)
        return real(message, cursor, variant)

    monkeypatch.setattr(rooms, "encode_message", counting)
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    conns = [Conn(f"j{i}") for i in range(5)]
    conns += [Conn(f"m{i}", Variant.MSGPACK_IDS) for i in range(5)]
    room = None
    for conn in conns:
        room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert room is not None
    assert publish(hub, room, message("t", 1), None, 1.0) == 10
    assert sorted(calls) == [Variant.JSON, Variant.MSGPACK_IDS]
    assert len({id(c.out.chunks[0]) for c in conns}) == 2, "one bytes object per variant"


def test_skip_self_leaves_out_every_socket_of_the_publisher() -> None:
    hub = hub_with()
    party = hub.registry.parties["pubsub"]
    tab1, tab2 = Conn("u", skip_self=True), Conn("u", skip_self=True)
    echo, other = Conn("v"), Conn("w")
    room = None
    for conn in (tab1, tab2, echo, other):
        room = hub.registry.join(party, "r", conn, None, ["*"]).room
    assert room is not None
    assert publish(hub, room, message("t", 1), "u", 1.0) == 2
    assert tab1.frames() == [] and tab2.frames() == [] and len(other.frames()) == 1
    assert publish(hub, room, message("t", 2), "v", 1.0) == 4, "v did not ask to skip itself"
    assert publish(hub, room, message("t", 3), "w", 1.0, skip_publisher=True) == 3


def test_autoscaling_grows_and_shrinks_per_location() -> None:
    hub = hub_with(
        '[[pubsub]]\nbinding = "PubSub"\nnodes = "auto"\nmax_connections_per_node = 2\n'
        "locations = { wnam = 1, weur = 1 }\n"
    )
    party = hub.registry.parties["pubsub"]
    members = [
        hub.registry.join(party, "r", Conn(f"c{i}"), "US", ["*"], now=float(i)) for i in range(5)
    ]
    room = members[0].room
    assert sorted(room.nodes) == ["wnam-0", "wnam-1", "wnam-2"]
    assert max(len(n.index) for n in room.nodes.values()) == 2
    eu = hub.registry.join(party, "r", Conn("e"), "DE", ["*"])
    assert eu.node.id == "weur-0"
    for i, membership in enumerate(members[:4]):
        hub.registry.leave(
            next(iter(membership.node.index.subscribers())), membership, now=10.0 + i
        )
    assert len(room.nodes) <= 3
    assert [count for _, count in room.node_counts][:4] == [1, 2, 3, 4]


def test_nodes_auto_in_config() -> None:
    config = parse_config(
        DEFAULT_BINDING_TOML + '[[pubsub]]\nbinding = "PubSub"\nnodes = "auto"\n', "t"
    )
    binding = config.bindings[0]
    assert binding.options.autoscale and len(binding.layout.node_ids) == 9
    bad = DEFAULT_BINDING_TOML + '[[pubsub]]\nbinding = "PubSub"\nnodes = "many"\n'
    with pytest.raises(ConfigError, match='or "auto"'):
        parse_config(bad, "t")


def test_history_keeps_an_empty_room_until_it_expires() -> None:
    hub = hub_with('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 10\nhistory_seconds = 5\n')
    party = hub.registry.parties["pubsub"]
    conn = Conn("a")
    membership = hub.registry.join(party, "r", conn, None, ["*"])
    publish(hub, membership.room, message("t", 1), None, 1.0)
    hub.registry.leave(conn, membership, 2.0)
    assert "r" in party.rooms, "kept for a client that comes back"
    hub.registry.expire(3.0)
    assert "r" in party.rooms
    hub.registry.expire(7.0)
    assert "r" not in party.rooms


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
