"""Reload planning, inspection views, counters and the control plane's routing: no sockets."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from fakes import message, publish
from partysubd.control.admin import AdminApp, AdminState
from partysubd.control.views import Clock, connections_view, find_room, room_view, rooms_view
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.outbox import Outbox
from partysubd.core.protocol import Variant
from partysubd.core.reload import plan_reload
from partysubd.core.stats import LatencyHistogram, RecentTopics


class FakeConn:
    def __init__(self, id: str, country: str | None = None) -> None:
        self.out = Outbox(1000)
        self.id = id
        self.peer = "127.0.0.1:1"
        self.country = country
        self.created = 10.0
        self.variant = Variant.JSON
        self.skip_self = False


def make_hub(extra: str = "") -> Hub:
    return Hub.build(parse_config(DEFAULT_BINDING_TOML + extra, "t.toml"), rng=random.Random(3))


def test_publish_counts_traffic_topics_and_latency() -> None:
    hub = make_hub()
    party = hub.registry.parties["pubsub"]
    a, b = FakeConn("a", "US"), FakeConn("b")
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


def test_views() -> None:
    hub = make_hub()
    party = hub.registry.parties["pubsub"]
    a = FakeConn("a", "US")
    room = hub.registry.join(party, "lobby", a, "US", ["chat:*", "x"]).room
    publish(hub, room, message("x", 1), None, now=11.0)
    clock = Clock(monotonic=12.0, wall=1000.0)
    listing = rooms_view(hub)
    assert listing["totals"] == {
        "connections": 1,
        "rooms": 1,
        "nodes": 1,
        "messages_in": 1,
        "messages_out": 1,
        "bytes_in": 24,
        "bytes_out": 24,
    }
    detail = room_view(room, clock)
    assert detail["nodes"] == [{"id": "wnam-0", "location": "wnam", "connections": 1}]
    assert detail["patterns"] == [
        {"pattern": "chat:*", "connections": 1},
        {"pattern": "x", "connections": 1},
    ]
    assert detail["recent_topics"] == [{"topic": "x", "count": 1, "last_seen": 999.0}]
    [conn] = connections_view(room, clock)["connections"]
    assert conn == {
        "id": "a",
        "peer": "127.0.0.1:1",
        "node": "wnam-0",
        "country": "US",
        "topics": ["chat:*", "x"],
        "buffered_bytes": 24,
        "age": 2.0,
    }
    assert find_room(hub, "nope", "lobby") == "no party 'nope' (parties: pub-sub, pubsub)"
    assert "has no connections" in str(find_room(hub, "pubsub", "empty"))


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


def test_reload_applies_limits_and_bindings_and_keeps_addresses() -> None:
    old = parse_config(
        "[server]\nmax_message_size = 10\nmax_buffered_bytes = 100\n" + DEFAULT_BINDING_TOML, "t"
    )
    new = parse_config(
        '[server]\nhost = "0.0.0.0"\nmax_message_size = 50\nmax_buffered_bytes = 100\n'
        '[admin]\nlisten = "127.0.0.1:3000"\n'
        + DEFAULT_BINDING_TOML.replace(
            'new_classes = ["PubSubServer"]', 'new_classes = ["PubSubServer", "C"]'
        )
        + '[[durable_objects.bindings]]\nname = "Chat"\nclass_name = "C"\n'
        + '[[pubsub]]\nbinding = "PubSub"\nnodes = 18\nallowed_origins = ["https://a.example"]\n',
        "t",
    )
    plan = plan_reload(old, new)
    assert plan.config.server.host == "127.0.0.1"
    assert plan.config.server.max_message_size == 50
    assert plan.config.admin.listen == "127.0.0.1:2000"
    assert "server.max_message_size: 10 -> 50" in plan.applied
    assert any("binding Chat added" in line for line in plan.applied)
    assert any("new node layout" in line for line in plan.applied)
    assert any("allowed_origins" in line for line in plan.applied)
    assert any(line.startswith("listen address 0.0.0.0:1999") for line in plan.kept)
    assert any(line.startswith("admin.listen 127.0.0.1:3000") for line in plan.kept)


def test_reload_keeps_a_removed_binding_and_live_rooms_keep_their_layout() -> None:
    old = parse_config(DEFAULT_BINDING_TOML, "t")
    hub = Hub.build(old, rng=random.Random(1))
    party = hub.registry.parties["pubsub"]
    room = hub.registry.join(party, "live", FakeConn("a"), None, ["*"]).room
    new = parse_config(
        DEFAULT_BINDING_TOML
        + '[[pubsub]]\nbinding = "PubSub"\nnodes = 1\nlocations = { weur = 1 }\n',
        "t",
    )
    hub.registry.apply(plan_reload(old, new).config)
    assert room.layout is old.bindings[0].layout
    assert hub.registry.join(party, "fresh", FakeConn("b"), None, ["*"]).node.id == "weur-0"
    removed = plan_reload(new, replace(new, bindings=()))
    assert [b.name for b in removed.config.bindings] == ["PubSub"]
    assert removed.kept == ("binding PubSub removed from the config: kept until a restart",)


def test_admin_routes_and_auth() -> None:
    hub = make_hub()
    state = AdminState(
        hub=hub, version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    app = AdminApp(state)
    assert app.handle("GET", "/health", {})[0] == 200
    assert app.handle("GET", "/rooms", {})[0] == 401
    assert app.handle("GET", "/rooms", {b"authorization": b"Bearer t0k"})[0] == 200
    assert app.handle("POST", "/rooms", {b"authorization": b"Bearer t0k"})[0] == 405
    auth = {b"authorization": b"Bearer t0k"}
    assert app.handle("GET", "/rooms/pubsub/none", auth)[0] == 404
    status, body, content_type, _ = app.handle("GET", "/metrics", auth)
    assert status == 200 and content_type.startswith("text/plain") and b"partysub_rooms" in body
    state.draining = True
    assert app.handle("GET", "/ready", {})[0] == 503


def test_dashboard_files_and_the_token_cookie() -> None:
    state = AdminState(
        hub=make_hub(), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    app = AdminApp(state)
    status, body, content_type, extra = app.handle("GET", "/", {})
    assert status == 200 and content_type.startswith("text/html") and b"/dashboard/app.js" in body
    assert dict(extra)[b"content-security-policy"].startswith(b"default-src 'none'")
    for path, kind in (
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ):
        status, body, content_type, _ = app.handle("GET", path, {})
        assert status == 200 and content_type.startswith(kind) and body
    assert app.handle("GET", "/?token=wrong", {}, b"token=wrong")[0] == 401
    status, _, _, extra = app.handle("GET", "/", {}, b"token=t0k")
    headers = dict(extra)
    assert status == 303 and headers[b"location"] == b"/"
    cookie = headers[b"set-cookie"].decode()
    assert cookie.startswith("partysub_admin=t0k;") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert app.handle("GET", "/rooms", {b"cookie": b"partysub_admin=t0k"})[0] == 200
    assert app.handle("GET", "/rooms", {b"cookie": b"partysub_admin=nope"})[0] == 401
    assert app.handle("GET", "/rooms", {b"cookie": b"\x00garbage;;="})[0] == 401
    assert app.handle("DELETE", "/", {})[0] == 401, "DELETE never reaches the page"


def refused(app: AdminApp, path: str, headers: dict[bytes, bytes]) -> int:
    refusal = app._tail_refusal(path, headers)
    assert refusal is not None, "refused"
    return refusal[0]


def test_tail_refusals() -> None:
    state = AdminState(
        hub=make_hub(), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0), token="t0k"
    )
    state.port = 2000
    app = AdminApp(state)
    auth = {b"authorization": b"Bearer t0k", b"host": b"127.0.0.1:2000"}
    assert app._tail_refusal("/tail/pubsub/r", auth) is None
    assert refused(app, "/tail/pubsub/r", {b"host": b"127.0.0.1:2000"}) == 401
    evil = {**auth, b"origin": b"https://evil.example"}
    assert refused(app, "/tail/pubsub/r", evil) == 403
    # DNS rebinding: Origin and Host both name the attacker's host, which resolves here.
    rebound = {**auth, b"host": b"evil.example:2000", b"origin": b"http://evil.example:2000"}
    assert refused(app, "/tail/pubsub/r", rebound) == 403
    other_port = {**auth, b"origin": b"http://127.0.0.1:9999"}
    assert refused(app, "/tail/pubsub/r", other_port) == 403
    # A page on someone else's server at an IP address, on this port: not ours.
    for foreign in (b"http://203.0.113.7:2000", b"http://[2001:db8::1]:2000"):
        assert refused(app, "/tail/pubsub/r", {**auth, b"origin": foreign}) == 403, foreign
    state.listen_host = "10.0.0.5"
    assert app._tail_refusal("/tail/pubsub/r", {**auth, b"origin": b"http://10.0.0.5:2000"}) is None
    for own in (b"http://127.0.0.1:2000", b"http://localhost:2000", b"http://[::1]:2000"):
        assert app._tail_refusal("/tail/pubsub/r", {**auth, b"origin": own}) is None, own
    state.allowed_origins = ("https://ops.example",)
    configured = {**auth, b"origin": b"https://ops.example"}
    assert app._tail_refusal("/tail/pubsub/r", configured) is None
    assert refused(app, "/tail/nope/r", auth) == 404
    assert refused(app, "/tail/pubsub", auth) == 404


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"127.0.0.1:2000", True),
        (b"localhost:2000", True),
        (b"[::1]:2000", True),
        (b"10.1.2.3:2000", True),
        (b"LOCALHOST", True),
        (b"evil.example:2000", False),
        (b"localhost.evil.example", False),
        (b"ops.example:2000", True),
    ],
)
def test_the_control_plane_answers_only_to_its_own_host_names(host: bytes, allowed: bool) -> None:
    state = AdminState(hub=make_hub(), version="1", started=0.0, clock=lambda: Clock(5.0, 100.0))
    state.port = 2000
    state.allowed_hosts = ("ops.example",)
    status = AdminApp(state).handle("GET", "/health", {b"host": host})[0]
    assert status == (200 if allowed else 403)


def test_log_lines_cannot_be_forged_by_what_clients_control() -> None:
    import logging

    from partysubd.runtime.logs import JournalFormatter

    record = logging.LogRecord(
        "partysubd.session",
        logging.INFO,
        __file__,
        1,
        "connect %s to %s",
        ("x\n<3>error partysubd: forged", "room\x1b[2J\u202e"),
        None,
    )
    line = JournalFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert line == (
        "<6>info partysubd.session: connect x\\x0a<3>error partysubd: forged to room\\x1b[2J\\u202e"
    )
