"""What crosses between daemons, without Redis: batches, the bounded queue, interest, members."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes import Conn, message, publish
from partysubd.core.clustering import NoCluster
from partysubd.core.config import DEFAULT_BINDING_TOML, ConfigError, parse_config
from partysubd.core.envelope import Envelope, Origin
from partysubd.core.hub import Hub
from partysubd.core.members import (
    Member,
    cluster_room_view,
    cluster_view,
    decode_member,
    local_rooms,
)
from partysubd.core.protocol import MessageLimits
from partysubd.core.registry import Party
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
    room_of,
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
    assert room_of("partysub", channel) == (binding, room)
    assert room_of("other", channel) is None


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


class RecordingCluster(NoCluster):
    """The cluster hooks, writing down what the core asked of them."""

    active = True

    def __init__(self) -> None:
        self.relayed: list[tuple[str, str, Any, str | None, bool]] = []
        self.wanted: list[tuple[str, bool]] = []

    def relay(self, party: Party, room: str, envelope: Envelope) -> None:
        m = envelope.message
        self.relayed.append(
            (party.binding.name, room, m.data, envelope.publisher, envelope.skip_publisher)
        )

    def interest(self, party: Party, room: str, wanted: bool) -> None:
        self.wanted.append((room, wanted))


def test_hub_relays_local_publishes_only_and_reports_interest() -> None:
    cluster = RecordingCluster()
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML, "t"), cluster, random.Random(2))
    party = hub.registry.parties["pubsub"]
    a, b = Conn("a"), Conn("b", skip_self=True)
    membership = hub.registry.join(party, "r", a, None, ["*"])
    membership_b = hub.registry.join(party, "r", b, None, ["*"])
    assert cluster.wanted == [("r", True)], "once, for the room's first connection"
    publish(hub, membership.room, message("t", 1), "a", 1.0)
    relayed = Envelope(message("t", 2), "b", origin=Origin.RELAYED)
    assert hub.fanout.deliver(party, "r", relayed, 2.0) == 1
    elsewhere = Envelope(message("t", 3), origin=Origin.RELAYED)
    assert hub.fanout.deliver(party, "nobody-here", elsewhere, 2.0) == 0
    empty = Envelope(message("t", 4), "x", skip_publisher=True)
    assert hub.fanout.deliver(party, "empty", empty, 3.0) == 0
    assert cluster.relayed == [("PubSub", "r", 1, "a", False), ("PubSub", "empty", 4, "x", True)]
    hub.registry.leave(a, membership)
    assert cluster.wanted == [("r", True)]
    hub.registry.leave(b, membership_b)
    assert cluster.wanted == [("r", True), ("r", False)], "once, for its last"


def test_the_link_delivers_only_into_bindings_this_daemon_has() -> None:
    from partysubd.cluster.link import ClusterLink
    from partysubd.core.config import ClusterSettings

    config = parse_config(DEFAULT_BINDING_TOML, "t")
    link = ClusterLink(ClusterSettings(redis_url="redis://127.0.0.1:1"), "d1")
    hub = Hub.build(config, link, random.Random(2))
    link.attach(hub, config.server)
    conn = Conn("c")
    hub.registry.join(hub.registry.parties["pubsub"], "r", conn, None, ["*"])
    envelope = Envelope(message("t", 3), origin=Origin.RELAYED)
    link._deliver("NoSuchBinding", "r", envelope, 2.0)
    assert conn.frames() == []
    link._deliver("PubSub", "r", envelope, 2.0)
    assert len(conn.frames()) == 1


def test_members_encode_decode_and_the_cluster_view() -> None:
    me = Member("a", "eu", "http://h:1", 100.0, 110.0, 3, {"pubsub/lobby": 2, "pubsub/x": 1})
    other = Member("b", "us", "http://h:2", 105.0, 109.5, 2, {"pubsub/lobby": 2})
    assert decode_member(me.encode()) == me
    assert decode_member(None) is None
    assert decode_member(b"{not json") is None
    assert decode_member(b'{"no": "name"}') is None
    view = cluster_view([other, me], "a", 111.0)
    assert [d["name"] for d in view["daemons"]] == ["a", "b"]
    assert view["daemons"][0]["self"] and view["daemons"][1]["last_seen"] == 1.5
    assert view["totals"] == {"daemons": 2, "connections": 5, "rooms": 2}
    assert view["rooms"][0] == {"party": "pubsub", "room": "lobby", "connections": 4, "daemons": 2}


def test_local_rooms_counts_live_connections() -> None:
    hub = Hub.build(parse_config(DEFAULT_BINDING_TOML, "t"), rng=random.Random(2))
    party = hub.registry.parties["pubsub"]
    for i in range(3):
        hub.registry.join(party, "r", Conn(f"c{i}"), None, ["*"])
    assert local_rooms(hub.registry) == (3, {"pub-sub/r": 3})


def test_cluster_config_errors_name_their_key() -> None:
    good = '[cluster]\nredis_url = "redis://127.0.0.1:6379"\n' + DEFAULT_BINDING_TOML
    config = parse_config(good, "c.toml")
    assert config.cluster is not None and config.cluster.mode == "single"
    sentinel = '[cluster]\nmode = "sentinel"\nservice = "m"\nsentinels = ["h:26379"]\n'
    config = parse_config(sentinel + DEFAULT_BINDING_TOML, "c.toml")
    assert config.cluster is not None and config.cluster.sentinels == ("h:26379",)
    for text, expected in (
        ('[cluster]\nmode = "single"\n', "c.toml:1: [cluster] error: redis_url is required"),
        (
            '[cluster]\nredis_url = "http://x"\n',
            "c.toml:2: [cluster.redis_url] error: must be a redis",
        ),
        ('[cluster]\nredis_url = "redis://x"\nmode = "ring"\n', "c.toml:3: [cluster.mode] error"),
        (
            '[cluster]\nredis_url = "redis://x"\nheartbeat_seconds = 7\n',
            "[cluster.dead_after_seconds] error: must be longer than heartbeat_seconds",
        ),
        ('[server]\nreuse_port = "yes"\n', "[server.reuse_port] error"),
        ('[cluster]\nmode = "sentinel"\nservice = "m"\n', 'mode = "sentinel" needs sentinels'),
        (
            '[cluster]\nmode = "sentinel"\nservice = "m"\nsentinels = ["nohost"]\n',
            "[cluster.sentinels] error: 'nohost' is not \"host:port\"",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(text + DEFAULT_BINDING_TOML, "c.toml")
        assert any(expected in str(issue) for issue in caught.value.issues), (
            expected,
            [str(i) for i in caught.value.issues],
        )


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


def test_cluster_room_view_sums_connections_and_patterns_not_topic_counts() -> None:
    a = Member(
        "a",
        "",
        "",
        0.0,
        0.0,
        2,
        {"p/r": 2},
        details={"p/r": {"patterns": {"*": 1, "x": 1}, "topics": {"t": [5, 10.0]}}},
    )
    b = Member(
        "b",
        "",
        "",
        0.0,
        0.0,
        1,
        {"p/r": 1, "p/other": 4},
        details={"p/r": {"patterns": {"*": 1}, "topics": {"t": [5, 12.0], "u": [1, 11.0]}}},
    )
    view = cluster_room_view([a, b], "p/r")
    assert view == {
        "daemons": ["a", "b"],
        "connections": 3,
        "patterns": [{"pattern": "*", "connections": 2}, {"pattern": "x", "connections": 1}],
        "recent_topics": [
            {"topic": "t", "count": 5, "last_seen": 12.0},
            {"topic": "u", "count": 1, "last_seen": 11.0},
        ],
    }
    assert cluster_room_view([a, b], "p/nowhere") is None


def test_dropped_numbered_messages_leave_a_hole_per_room() -> None:
    out = Outbound(limit=2)
    for n in range(4):
        out.add(pending(n, numbered=True))
    out.add(pending(9, channel="b"))  # plain: no hole
    assert out.dropped == 3
    assert out.take_holes() == {"a": 3}
    assert out.take_holes() == {}
