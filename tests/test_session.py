"""The sans-I/O session, driven by wsproto and h11 clients: no sockets, no clock."""

from __future__ import annotations

import json
import random
from typing import Any

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.session import Session

CONFIG = (
    DEFAULT_BINDING_TOML
    + """
[server]
max_message_size = 1000
max_buffered_bytes = 4000
ping_interval = 10
ping_timeout = 5
handshake_timeout = 3
close_timeout = 2

[[pubsub]]
binding = "PubSub"
nodes = 4
locations = { wnam = 1, weur = 1 }
allowed_origins = ["https://ok.example"]
"""
)


SETTINGS = parse_config(CONFIG, "test").server


@pytest.fixture
def hub() -> Hub:
    return Hub.build(parse_config(CONFIG, "test"), rng=random.Random(7))


def drain(session: Session) -> bytes:
    """What the I/O layer would send now."""
    data = b"".join(bytes(c) for c in session.out.pending())
    session.out.consumed(len(data))
    session.out.scheduled = False
    return data


class WSPeer:
    """A WebSocket client talking to one session."""

    def __init__(
        self, hub: Hub, target: str = "/parties/pubsub/room", headers: dict[str, str] | None = None
    ) -> None:
        self.session = Session(hub, SETTINGS, "peer", now=0.0)
        self.client = WSConnection(ConnectionType.CLIENT)
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.feed(self.client.send(Request(host="x", target=target, extra_headers=extra)))
        self.handshake = self.events()
        self.accepted = any(isinstance(e, AcceptConnection) for e in self.handshake)

    pending: list[Any]

    def feed(self, data: bytes, now: float = 1.0) -> None:
        self.session.data_received(data, now)
        self.pending = self._receive()

    def _receive(self) -> list[Any]:
        data = drain(self.session)
        if data:
            self.client.receive_data(data)
        return list(self.client.events())

    def events(self) -> list[Any]:
        found = self.pending + self._receive()
        self.pending = []
        return found

    def send(self, message: Any) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.feed(self.client.send(Message(data=text)))

    def messages(self) -> list[Any]:
        return [json.loads(e.data) for e in self.events() if isinstance(e, TextMessage)]

    def closed_with(self) -> CloseConnection:
        closes = [e for e in self.events() if isinstance(e, CloseConnection)]
        assert closes, "no close frame"
        return closes[0]


def test_handshake_and_publish_across_nodes(hub: Hub) -> None:
    peers = [WSPeer(hub) for _ in range(12)]
    assert all(p.accepted for p in peers)
    room = hub.registry.parties["pubsub"].rooms["room"]
    assert len(room.nodes) > 1, "subscribers spread over several nodes"
    peers[0].send({"topic": "t", "data": {"n": 1}})
    for peer in peers:
        assert peer.messages() == [{"topic": "t", "data": {"n": 1}}]


def test_topics_query_and_replacement(hub: Hub) -> None:
    sub = WSPeer(hub, "/parties/pub-sub/room?topics=a,p%3A*")
    pub = WSPeer(hub, "/parties/pub-sub/room?topics=")
    for topic in ("a", "p:1", "pz", "b"):
        pub.send({"topic": topic, "data": 1})
    assert [m["topic"] for m in sub.messages()] == ["a", "p:1"]
    assert pub.messages() == []
    sub.send({"__topics": ["b"]})
    pub.send({"topic": "a", "data": 2})
    pub.send({"topic": "b", "data": 3})
    assert sub.messages() == [{"topic": "b", "data": 3}]


def test_publish_order_per_publisher(hub: Hub) -> None:
    sub = WSPeer(hub)
    pub = WSPeer(hub, "/parties/pubsub/room?topics=")
    for i in range(50):
        pub.send({"topic": f"t{i % 3}", "data": i})
    assert [m["data"] for m in sub.messages()] == list(range(50))


def test_bad_frames_get_error_frames_and_the_connection_lives(hub: Hub) -> None:
    peer = WSPeer(hub)
    for bad, code in [
        ("nope", "bad_json"),
        ("null", "bad_message"),
        ('{"data":1}', "bad_topic"),
        ('{"__topics":"abc"}', "bad_topics"),
    ]:
        peer.send(bad)
        assert [m["__error"]["code"] for m in peer.messages()] == [code]
    peer.feed(peer.client.send(Message(data=b"\x00\x01")))
    errors = peer.messages()
    assert errors[0]["__error"]["code"] == "binary_not_supported"
    peer.send({"topic": "still", "data": "alive"})
    assert peer.messages() == [{"topic": "still", "data": "alive"}]


def test_each_error_frame_has_code_and_message(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.send('{"topic": 5}')
    [error] = peer.messages()
    assert error["__error"]["code"] == "bad_topic"
    assert "non-empty string" in error["__error"]["message"]


def test_client_close_is_answered(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.feed(peer.client.send(CloseConnection(code=1000, reason="bye")))
    assert peer.closed_with().code == 1000
    assert peer.session.finished
    peer.session.connection_lost()
    assert "room" not in hub.registry.parties["pubsub"].rooms


def test_ping_is_answered(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.feed(peer.client.send(Ping(b"abc")))
    assert [e.payload for e in peer.events() if isinstance(e, Pong)] == [b"abc"]


def test_keepalive_ping_then_close_when_unanswered(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.session.tick(5.0)
    assert peer.events() == []
    peer.session.tick(11.5)
    assert any(isinstance(e, Ping) for e in peer.events())
    peer.session.tick(14.0)
    assert peer.events() == []
    peer.session.tick(17.0)
    assert peer.closed_with().code == 1011


def test_pong_keeps_the_connection(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.session.tick(11.5)
    [ping] = [e for e in peer.events() if isinstance(e, Ping)]
    peer.feed(peer.client.send(ping.response()), now=12.0)
    peer.session.tick(20.0)
    assert not any(isinstance(e, CloseConnection) for e in peer.events())


def test_message_too_big_closes_1009(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.send(json.dumps({"topic": "t", "data": "x" * 2000}))
    close = peer.closed_with()
    assert close.code == 1009
    assert close.reason is not None and "limit is 1000 bytes" in close.reason


def test_fragmented_message_is_assembled(hub: Hub) -> None:
    peer = WSPeer(hub)
    text = json.dumps({"topic": "t", "data": "y" * 300})
    peer.feed(peer.client.send(Message(data=text[:100], message_finished=False)))
    peer.feed(peer.client.send(Message(data=text[100:], message_finished=True)))
    assert peer.messages() == [{"topic": "t", "data": "y" * 300}]


def test_fragmented_message_too_big(hub: Hub) -> None:
    peer = WSPeer(hub)
    for _ in range(3):
        peer.feed(peer.client.send(Message(data="z" * 400, message_finished=False)))
    assert peer.closed_with().code == 1009


def test_unmasked_frame_is_a_protocol_error(hub: Hub) -> None:
    peer = WSPeer(hub)
    server_side = FrameProtocol(client=False, extensions=[])
    peer.feed(bytes(server_side.send_data('{"topic":"t","data":1}', True)))
    assert peer.closed_with().code == 1002


def test_invalid_utf8_closes_1007(hub: Hub) -> None:
    peer = WSPeer(hub)
    frame = bytes([0x81, 0x82]) + b"\x00\x00\x00\x00" + b"\xff\xfe"
    peer.feed(frame)
    assert peer.closed_with().code == 1007


def test_slow_consumer_is_closed_and_others_keep_receiving(hub: Hub) -> None:
    slow = WSPeer(hub)
    fast = WSPeer(hub)
    pub = WSPeer(hub, "/parties/pubsub/room?topics=")
    for _ in range(100):
        pub.send({"topic": "t", "data": "x" * 50})
        fast.events()  # the fast reader keeps up; the slow one never reads
    assert slow.session.out.overflowed
    assert slow.session.out.size <= slow.session.out.cap
    slow.session.overflowed(2.0)
    assert slow.closed_with().code == 1013
    pub.send({"topic": "t", "data": "after"})
    assert fast.messages() == [{"topic": "t", "data": "after"}]


def test_leaving_releases_nodes_and_the_room(hub: Hub) -> None:
    peers = [WSPeer(hub) for _ in range(6)]
    room = hub.registry.parties["pubsub"].rooms["room"]
    for peer in peers:
        peer.session.connection_lost()
    assert room.nodes == {}
    assert "room" not in hub.registry.parties["pubsub"].rooms


def test_country_header_places_the_connection(hub: Hub) -> None:
    # The default country header is CF-IPCountry.
    us = WSPeer(hub, headers={"CF-IPCountry": "US"})
    de = WSPeer(hub, headers={"cf-ipcountry": "de"})
    assert us.session.membership is not None and de.session.membership is not None
    assert us.session.membership.node.location == "wnam"
    assert de.session.membership.node.location == "weur"


def test_pk_is_the_connection_id(hub: Hub) -> None:
    peer = WSPeer(hub, "/parties/pubsub/room?_pk=abc-123")
    assert peer.session.id == "abc-123"


def test_origin_not_allowed_is_refused(hub: Hub) -> None:
    peer = WSPeer(hub, headers={"Origin": "https://evil.example"})
    [reject, *rest] = peer.handshake
    assert isinstance(reject, RejectConnection) and reject.status_code == 403
    body = b"".join(e.data for e in rest if isinstance(e, RejectData))
    assert b"origin https://evil.example is not allowed" in body
    assert WSPeer(hub, headers={"Origin": "https://ok.example"}).accepted


def test_upgrade_on_unknown_party_is_404(hub: Hub) -> None:
    peer = WSPeer(hub, "/parties/nope/room")
    [reject, *_] = peer.handshake
    assert isinstance(reject, RejectConnection) and reject.status_code == 404


class HTTPPeer:
    def __init__(self, hub: Hub) -> None:
        self.session = Session(hub, SETTINGS, "peer", now=0.0)
        self.client = h11.Connection(h11.CLIENT)

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        all_headers = [("Host", "x"), ("Content-Length", str(len(body))), *(headers or [])]
        data = self.client.send(h11.Request(method=method, target=target, headers=all_headers))
        data += self.client.send(h11.Data(data=body)) if body else b""
        data += self.client.send(h11.EndOfMessage())
        self.session.data_received(data, 1.0)
        self.client.receive_data(drain(self.session))
        response = self.client.next_event()
        assert isinstance(response, h11.Response)
        chunks = []
        while True:
            event = self.client.next_event()
            if isinstance(event, h11.Data):
                chunks.append(event.data)
            else:
                break
        return response.status_code, dict(response.headers), b"".join(chunks)

    def next_cycle(self) -> None:
        self.client.start_next_cycle()


def test_http_publish_reaches_subscribers(hub: Hub) -> None:
    sub = WSPeer(hub)
    status, _, body = HTTPPeer(hub).request(
        "POST", "/parties/pubsub/room", b'{"topic":"t","data":0}'
    )
    assert (status, body) == (200, b"OK")
    assert sub.messages() == [{"topic": "t", "data": 0}]


def test_http_publish_to_an_empty_room_is_ok_and_creates_nothing(hub: Hub) -> None:
    status, _, _ = HTTPPeer(hub).request("POST", "/parties/pubsub/empty", b'{"topic":"t","data":1}')
    assert status == 200
    assert "empty" not in hub.registry.parties["pubsub"].rooms


@pytest.mark.parametrize(
    ("method", "target", "body", "status", "text"),
    [
        ("POST", "/parties/pubsub/r", b"{", 400, b"Invalid request: body is not valid JSON"),
        ("POST", "/parties/pubsub/r", b'{"topic":"t"}', 400, b'Invalid request: "data" is missing'),
        ("POST", "/parties/pubsub/r", b"", 400, b"Invalid request: body is empty"),
        ("GET", "/parties/pubsub/r", b"", 405, b"Method not allowed"),
        ("PUT", "/parties/pubsub/r", b"{}", 405, b"Method not allowed"),
        ("POST", "/parties/nope/r", b"{}", 404, b"Not found"),
        ("POST", "/parties/pubsub/", b"{}", 404, b"Not found: empty room name"),
        ("POST", "/parties/pubsub/r", b"x" * 2000, 413, b"Payload too large"),
    ],
)
def test_http_errors(
    hub: Hub, method: str, target: str, body: bytes, status: int, text: bytes
) -> None:
    got, headers, answer = HTTPPeer(hub).request(method, target, body)
    assert got == status
    assert answer.startswith(text)
    if status == 405:
        assert headers[b"allow"] == b"POST, OPTIONS"


def test_keep_alive_serves_several_requests(hub: Hub) -> None:
    peer = HTTPPeer(hub)
    assert peer.request("POST", "/parties/pubsub/r", b'{"topic":"t","data":1}')[0] == 200
    peer.next_cycle()
    assert peer.request("POST", "/parties/pubsub/r", b"{")[0] == 400
    peer.next_cycle()
    assert peer.request("GET", "/parties/pubsub/r")[0] == 405
    assert not peer.session.finished


def test_cors_preflight_and_headers(hub: Hub) -> None:
    peer = HTTPPeer(hub)
    status, headers, _ = peer.request(
        "OPTIONS",
        "/parties/pubsub/r",
        headers=[("Origin", "https://ok.example"), ("Access-Control-Request-Method", "POST")],
    )
    assert status == 204
    assert headers[b"access-control-allow-origin"] == b"https://ok.example"
    assert b"POST" in headers[b"access-control-allow-methods"]
    peer.next_cycle()
    status, headers, _ = peer.request(
        "POST", "/parties/pubsub/r", b'{"topic":"t","data":1}', [("Origin", "https://ok.example")]
    )
    assert status == 200 and headers[b"access-control-allow-origin"] == b"https://ok.example"


def test_cors_refuses_other_origins(hub: Hub) -> None:
    status, _, _ = HTTPPeer(hub).request(
        "OPTIONS", "/parties/pubsub/r", headers=[("Origin", "https://evil.example")]
    )
    assert status == 403
    status, _, _ = HTTPPeer(hub).request(
        "POST", "/parties/pubsub/r", b'{"topic":"t","data":1}', [("Origin", "https://evil.example")]
    )
    assert status == 403


def test_malformed_http_gets_400_and_close(hub: Hub) -> None:
    session = Session(hub, SETTINGS, "peer", now=0.0)
    session.data_received(b"GARBAGE\r\n\r\n", 0.0)
    assert drain(session).startswith(b"HTTP/1.1 400 ")
    assert session.finished


def test_handshake_timeout_counts_from_the_first_byte(hub: Hub) -> None:
    session = Session(hub, SETTINGS, "peer", now=0.0)
    for t in (1.0, 2.0, 2.9):
        session.data_received(b"G", t)  # a trickle keeps nothing alive
        session.tick(t)
    assert not session.finished
    session.tick(3.1)
    assert session.finished


def test_wrong_websocket_version_is_426(hub: Hub) -> None:
    session = Session(hub, SETTINGS, "peer", now=0.0)
    session.data_received(
        b"GET /parties/pubsub/r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 8\r\n\r\n",
        0.0,
    )
    response = drain(session)
    assert response.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13" in response


def test_binary_messages_from_wsproto_path(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.feed(peer.client.send(BytesMessage(data=b"ab", message_finished=False)))
    peer.feed(peer.client.send(BytesMessage(data=b"cd", message_finished=True)))
    [error] = peer.messages()
    assert error["__error"]["code"] == "binary_not_supported"


def test_shutdown_close(hub: Hub) -> None:
    peer = WSPeer(hub)
    peer.session.close(1001, "server shutting down", 5.0)
    close = peer.closed_with()
    assert (close.code, close.reason) == (1001, "server shutting down")
    # The client answers; the session is then done.
    peer.feed(peer.client.send(close.response()))
    assert peer.session.finished
