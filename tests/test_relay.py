"""What crosses between daemons, without Redis: batches, the bounded queue, interest, members."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes import message
from partysubd.core.protocol import MessageLimits
from partysubd.core.relay import (
    BadBatch,
    Batch,
    Interest,
    Outbound,
    Pending,
    channel_for,
    decode_batch,
    decode_item,
    encode_batch,
    encode_item,
    names_of,
)
from partysubd.core.values import has_surrogate

text = st.text().filter(lambda t: not has_surrogate(t))
json_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


LIMITS = MessageLimits()


def pending(data: Any, channel: str = "a", numbered: bool = False, **extra: Any) -> Pending:
    return Pending(
        channel,
        numbered,
        message("t", data, idem=extra.pop("idem", None)),
        extra.pop("publisher", None),
        extra.pop("skip", False),
        extra.pop("delivered", False),
    )


def data_of(batch: Batch) -> list[Any]:
    return [decode_item(i, LIMITS).message.data for i in batch.items]


@given(
    st.text(min_size=1),
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20).filter(lambda t: not has_surrogate(t)),
            json_data,
            st.booleans(),
            st.none() | st.text(),
            st.booleans(),
        ),
        max_size=40,
    ),
)
def test_batches_round_trip(
    origin: str, items: list[tuple[str, Any, bool, str | None, bool]]
) -> None:
    encoded = [
        encode_item(message(topic, data if has else None, has), publisher, skip)
        for topic, data, has, publisher, skip in items
    ]
    got_origin, epoch, raws = decode_batch(encode_batch(origin, encoded))
    assert got_origin == origin and epoch is None
    relayed = [decode_item(raw, LIMITS, origin, seq) for seq, raw in raws]
    assert [
        (r.message.topic, r.message.data, r.message.has_data, r.publisher, r.skip_publisher)
        for r in relayed
    ] == [(t, d if h else None, h, p, s) for t, d, h, p, s in items]


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", msgpack.packb([1, []]), msgpack.packb("x"), msgpack.packb(["o", 5])],
)
def test_bad_batches_are_refused(payload: bytes) -> None:
    with pytest.raises(BadBatch):
        decode_batch(payload)


@pytest.mark.parametrize(
    "raw",
    [
        [1, 2, 3, 4, 5],
        [b"\xc1", None, False, None, False],
        [msgpack.packb({"topic": "t", "data": float("nan")}), None, False, None, False],
        [msgpack.packb({"topic": 5}), None, False, None, False],
        [msgpack.packb({"topic": "t", "data": 1}), 7, False, None, False],
        "not an item",
    ],
)
def test_a_bad_item_is_refused_through_the_door(raw: Any) -> None:
    with pytest.raises(BadBatch):
        decode_item(raw, LIMITS)


def test_numbered_batches_as_the_lua_script_packs_them() -> None:
    # cmsgpack packs every Lua string as msgpack str, whatever its bytes.
    item = encode_item(message("t", b"\xff\x00", idem="k1"), "pk", True, delivered_here=True)
    payload = msgpack.packb(["origin", "ep0ch", [[7, item]]], use_bin_type=False)
    origin, epoch, ((seq, raw),) = decode_batch(payload)
    relayed = decode_item(raw, LIMITS, origin, seq)
    assert (origin, epoch, relayed.seq) == ("origin", "ep0ch", 7)
    assert relayed.message == message("t", b"\xff\x00", True, "k1")
    assert relayed.publisher == "pk" and relayed.skip_publisher and relayed.delivered_at_origin


def test_numbered_and_plain_batches_stay_apart_with_their_idempotency_keys() -> None:
    out = Outbound(limit=10)
    out.add(pending(1, numbered=True, idem="x"))
    out.add(pending(2))
    out.add(pending(3, numbered=True))
    numbered, plain = out.take()
    assert (numbered.numbered, numbered.idems, plain.numbered) == (True, ["x", ""], False)


@given(st.text(min_size=1, alphabet=st.characters(blacklist_characters=":{}")), st.text(min_size=1))
def test_room_channels_round_trip(binding: str, room: str) -> None:
    channel = channel_for("partysub", binding, room)
    assert names_of("partysub", channel) == (binding, room)
    assert names_of("other", channel) is None


def test_outbound_keeps_order_batches_per_channel_and_bounds_memory() -> None:
    out = Outbound(limit=5)
    assert out.add(pending(1)) is True
    assert out.add(pending(2, channel="b")) is False
    out.add(pending(3))
    batches = out.take()
    assert [(b.channel, data_of(b)) for b in batches] == [("a", [1, 3]), ("b", [2])]
    for n in range(8):
        out.add(pending(n))
    assert len(out) == 5 and out.dropped == 3
    (batch,) = out.take()
    assert data_of(batch) == [3, 4, 5, 6, 7]


def test_outbound_is_bounded_in_bytes_too() -> None:
    out = Outbound(limit=1000, max_bytes=10_000)
    for n in range(20):
        out.add(pending("x" * 1000 + str(n)))
    assert out.bytes <= 10_000 and out.dropped > 0
    (batch,) = out.take()
    assert data_of(batch)[-1] == "x" * 1000 + "19", "the newest are kept"
    assert out.bytes == 0


def test_unsent_batches_go_back_in_front() -> None:
    out = Outbound(limit=100)
    for n in range(3):
        out.add(pending(n))
    taken = out.take()
    out.add(pending(3))
    out.put_back(taken)
    (batch,) = out.take()
    assert data_of(batch) == [0, 1, 2, 3]


def test_interest_reports_net_changes_and_everything_after_a_reconnect() -> None:
    interest = Interest()
    assert interest.want("a", True) is True
    assert interest.want("a", True) is False
    interest.want("b", True)
    interest.want("b", False)  # undone before the link acted
    assert interest.take_changes() == (["a"], [])
    interest.want("a", False)
    interest.want("c", True)
    assert interest.take_changes() == (["c"], ["a"])
    interest.want("d", True)
    assert interest.restart() == ["c", "d"]
    assert interest.take_changes() == ([], [])


def test_waiting_numbered_messages_are_marked_delivered_once() -> None:
    out = Outbound(limit=10)
    out.add(pending(1, numbered=True))
    out.add(pending(2))
    out.add(pending(3, numbered=True, delivered=True))
    out.add(pending(4, channel="b", numbered=True, idem="k", publisher="pk", skip=True))
    waiting = out.numbered_not_delivered()
    assert [(p.channel, p.message.data, p.publisher) for p in waiting] == [
        ("a", 1, None),
        ("b", 4, "pk"),
    ]
    assert out.numbered_not_delivered() == [], "marked: not delivered twice"
    numbered_a, plain_a, numbered_b = out.take()
    assert [decode_item(i, LIMITS).delivered_at_origin for i in numbered_a.items] == [True, True]
    assert numbered_b.idems == ["k"] and plain_a.items


def test_dropped_numbered_messages_leave_a_hole_per_room() -> None:
    out = Outbound(limit=2)
    for n in range(4):
        out.add(pending(n, numbered=True))
    out.add(pending(9, channel="b"))  # plain: no hole
    assert out.dropped == 3
    assert out.take_holes() == {"a": 3}
    assert out.take_holes() == {}
