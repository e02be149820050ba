"""Pathological values through every way in, against running daemons, with every way
out live in the room: JSON and MessagePack subscribers, with and without cursors, a
history (replayed at the end), and a second daemon reached through a real Redis.

For every example: the daemons live; the sender gets a documented error (an
``__error`` frame, a 4xx) or every subscriber gets one valid frame of the same
message; a witness in another room keeps its round trip. Bounded in CI;
``PARTYSUB_ADVERSARIAL_EXAMPLES=5000 pytest tests/test_e2e_adversarial.py`` runs more.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from daemons import Daemon
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import masked_frame, upgrade_request
from redis_servers import RedisServer

EXAMPLES = int(os.environ.get("PARTYSUB_ADVERSARIAL_EXAMPLES", "60"))
MAX_MESSAGE = 8192
SECRET = "adversarial-secret-0123456789abcdef"

CONFIG = f"""
[server]
ping_interval = 0
max_message_size = {MAX_MESSAGE}
max_depth = 32

[cluster]
redis_url = "REDIS"
heartbeat_seconds = 0.3

[[durable_objects.bindings]]
name = "Secure"
class_name = "Secure"

{DEFAULT_BINDING_TOML.replace('["PubSubServer"]', '["PubSubServer", "Secure"]')}

[[pubsub]]
binding = "PubSub"
history_messages = 100000
history_bytes = 67108864
abuse_strikes = 1000000

[[pubsub]]
binding = "Secure"
auth = "token"
jwt_secret = "{SECRET}"
abuse_strikes = 1000000
"""


class WS:
    """A raw WebSocket client: what it sends is exactly the bytes we choose."""

    def __init__(self, daemon: Daemon, target: str) -> None:
        self.sock = socket.create_connection((daemon.host, daemon.port), timeout=10)
        self.sock.sendall(upgrade_request(target))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        self.status = int(status.split(b" ")[1])
        self.head = status
        self.proto = FrameProtocol(client=True, extensions=[])
        self.proto.receive_bytes(rest)
        self.queue: list[tuple[Opcode, Any]] = []
        self.partial: tuple[Opcode, Any] | None = None

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(masked_frame(opcode, payload))

    def next(self, timeout: float = 10) -> tuple[Opcode, Any]:
        deadline = time.monotonic() + timeout
        while not self.queue:
            for frame in self.proto.received_frames():
                # wsproto hands over a frame's payload as it arrives: join the pieces.
                if self.partial is None:
                    self.partial = (frame.opcode, frame.payload)
                else:
                    self.partial = (self.partial[0], self.partial[1] + frame.payload)
                if frame.frame_finished and frame.message_finished:
                    self.queue.append(self.partial)
                    self.partial = None
            if self.queue:
                break
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            assert data, "the daemon closed the connection"
            self.proto.receive_bytes(data)
        return self.queue.pop(0)

    def message(self, timeout: float = 10) -> Any:
        """The next data frame, decoded (and checked valid for its format)."""
        while True:
            opcode, payload = self.next(timeout)
            if opcode is Opcode.TEXT:
                return strict_json(payload)
            if opcode is Opcode.BINARY:
                return msgpack.unpackb(payload, raw=False, strict_map_key=False)
            assert opcode is not Opcode.CLOSE, f"closed: {payload}"

    def close(self) -> None:
        self.sock.close()


def strict_json(payload: Any) -> Any:
    """A text frame must be UTF-8 (wsproto checked) and JSON with no NaN or Infinity."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} went out in a JSON frame")

    text = payload if isinstance(payload, str) else payload.decode()
    return json.loads(text, parse_constant=refuse)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        for name in ("redis", "a", "b"):
            (tmp / name).mkdir()
        self.redis = RedisServer(tmp / "redis").start()
        config = CONFIG.replace("REDIS", self.redis.url)
        self.a = Daemon(config, tmp / "a", "--cluster-name", "a")
        self.b = Daemon(config, tmp / "b", "--cluster-name", "b")
        self.subscribers = {
            "json": WS(self.a, "/parties/pubsub/adv?topics=adv:*&_pk=s1"),
            "json_ids": WS(self.a, "/parties/pubsub/adv?topics=adv:*&ids=1&_pk=s2"),
            "msgpack": WS(self.a, "/parties/pubsub/adv?topics=adv:*&format=msgpack&_pk=s3"),
            "msgpack_ids": WS(
                self.a, "/parties/pubsub/adv?topics=adv:*&format=msgpack&ids=1&_pk=s4"
            ),
            "other_daemon": WS(self.b, "/parties/pubsub/adv?topics=adv:*&_pk=s5"),
        }
        # Each sender hears its own sentinels back: what came before one is its answer.
        self.json_sender = self.sender(binary=False)
        self.msgpack_sender = self.sender(binary=True)
        token = _token()
        self.secure = WS(self.a, f"/parties/secure/room?token={token}&topics=")
        self.witness = WS(self.a, "/parties/pubsub/witness?topics=echo")
        self.count = 0
        self.first_cursor: str | None = None
        # Every daemon listens to the room (through Redis) before the first example.
        deadline = time.monotonic() + 15
        while self.redis.subscribers("partysub:{PubSub:adv}") < 2:
            assert time.monotonic() < deadline, "the daemons never subscribed to the room"
            time.sleep(0.05)

    def sender(self, binary: bool) -> WS:
        if binary:
            return WS(self.a, "/parties/pubsub/adv?topics=adv:sentinel:m:*&format=msgpack")
        return WS(self.a, "/parties/pubsub/adv?topics=adv:sentinel:j:*")

    def alive(self) -> None:
        assert self.a.alive() and self.b.alive(), "a daemon died"

    def witness_round_trip(self) -> None:
        self.count += 1
        payload = json.dumps({"topic": "echo", "data": self.count}).encode()
        started = time.monotonic()
        self.witness.send(0x1, payload)
        assert self.witness.message() == {"topic": "echo", "data": self.count}
        assert time.monotonic() - started < 2.0

    def stop(self) -> None:
        for daemon in (self.a, self.b):
            if daemon.alive():
                daemon.stop()
        self.redis.stop()


def _token() -> str:
    from partysub.tokens import mint

    return mint(SECRET, ttl=3600)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("adversarial"))
    yield running
    try:
        # The history replays whatever was accepted, in every form, validly.
        if running.first_cursor is not None:
            for fmt in ("json", "msgpack"):
                resume = WS(
                    running.a,
                    f"/parties/pubsub/adv?ids=1&format={fmt}&since={running.first_cursor}",
                )
                first = resume.message()
                assert first["__resume"]["recovered"] is True, first
                for _ in range(first["__resume"]["replayed"]):
                    frame = resume.message()
                    assert "topic" in frame and "id" in frame
                resume.close()
        running.alive()
        errors = []
        for daemon in (running.a, running.b):
            assert daemon.admin
            with urllib.request.urlopen(daemon.admin + "/metrics", timeout=10) as response:
                text = response.read().decode()
            errors += re.findall(r"^partysub_internal_errors_total.*$", text, re.MULTILINE)
        assert not errors, errors
    finally:
        running.stop()
    trouble = running.a.unexpected_trouble() + running.b.unexpected_trouble()
    assert not trouble, trouble[:3]


# --- what clients send --------------------------------------------------------------

# JSON text snippets, some of them not JSON at all: exactly what a client can type.
json_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "1e999",
            "-1e999",
            "1e308",
            "4.9e-324",
            "1e-400",
            "-0",
            "-0.0",
            "NaN",
            "Infinity",
            "-Infinity",
            "1" * 400,
            "1" * 5000,
            "0." + "0" * 400 + "1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            '"\\ud800"',
            '"\\udfff\\ud800"',
            '"\\u0000"',
            '"a\\u2028b"',
            "true",
            "null",
        ]
    ),
    st.text(max_size=12).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.binary(max_size=6).map(lambda b: json.dumps(b.decode("latin-1"))),
)


def json_array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def json_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


json_keys = st.one_of(
    st.text(max_size=5).map(json.dumps), st.sampled_from(['"\\ud800"', '"__bytes"', '""'])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4).map(json_array)
        | st.lists(st.tuples(json_keys, inner), max_size=4).map(json_object)
    ),
    max_leaves=16,
)
deep_json = st.sampled_from([31, 32, 33, 254, 1025, 10_000]).map(lambda n: "[" * n + "]" * n)
json_data = st.one_of(json_values, deep_json, st.just('"' + "\\u0000" * 1500 + '"'))


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# MessagePack values, with what only MessagePack has: bytes, non-string keys,
# extension types, timestamps, NaN.
msgpack_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=16),
    st.none(),
    st.booleans(),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.builds(
        msgpack.Timestamp,
        st.integers(-(2**40), 2**40),
        st.integers(0, 999_999_999),
    ),
    st.sampled_from(["\x00" * 1500, "\ud800", "a\udfffb"]),
)
msgpack_keys = st.one_of(st.text(max_size=5), st.integers(-3, 3), st.binary(max_size=3))
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(msgpack_keys, inner, max_size=4),
    max_leaves=16,
)
msgpack_data = st.one_of(
    msgpack_values, st.sampled_from([31, 32, 33, 600]).map(nested), st.binary(min_size=6000)
)


def pack(value: Any) -> bytes:
    """MessagePack bytes, lone surrogates written as the (invalid) UTF-8 they would be."""
    packed: bytes = msgpack.packb(value, unicode_errors="surrogatepass")
    return packed


topics = st.one_of(
    st.just(None),  # the example's own topic
    st.sampled_from(['""', "5", "null", '"\\ud800"', json.dumps("adv:" + "t" * 300)]),
)


def refused_over_http(status: int) -> bool:
    return 400 <= status < 500


# --- one example ---------------------------------------------------------------------


def is_sentinel(frame: Any, n: int) -> bool:
    topic = frame.get("topic")
    return isinstance(topic, str) and topic.startswith("adv:sentinel:") and topic.endswith(f":{n}")


def sentinel(sender: WS, n: int, binary: bool) -> list[Any]:
    """Publish the example's sentinel and return what the sender got before it back."""
    message = {"topic": f"adv:sentinel:{'m' if binary else 'j'}:{n}", "data": n}
    if binary:
        sender.send(0x2, msgpack.packb(message))
    else:
        sender.send(0x1, json.dumps(message).encode())
    before: list[Any] = []
    while True:
        got = sender.message()
        if is_sentinel(got, n):
            return before
        before.append(got)


def delivered(cluster: Cluster, n: int) -> dict[str, list[Any]]:
    """What each subscriber got for example ``n`` (everything before its sentinel)."""
    got: dict[str, list[Any]] = {}
    for name, sub in cluster.subscribers.items():
        frames = []
        while True:
            frame = sub.message()
            if is_sentinel(frame, n):
                break
            frames.append(frame)
        got[name] = frames
    return got


def as_json(value: Any) -> Any:
    """What a JSON subscriber sees of a MessagePack value (bytes as base64)."""
    if isinstance(value, bytes):
        return {"__bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def check_delivery(cluster: Cluster, n: int, refused: bool) -> None:
    got = delivered(cluster, n)
    if refused:
        assert all(not frames for frames in got.values()), got
        return
    assert all(len(frames) == 1 for frames in got.values()), got
    plain = got["json"][0]
    assert plain["topic"].startswith("adv:")
    assert got["other_daemon"][0] == plain, "the other daemon delivers the same message"
    cursor = got["json_ids"][0].pop("id")
    assert re.fullmatch(r"[0-9a-f]+:[0-9]+", cursor), cursor
    assert got["msgpack_ids"][0].pop("id") == cursor
    if cluster.first_cursor is None:
        cluster.first_cursor = cursor
    assert got["json_ids"][0] == plain
    packed = got["msgpack"][0]
    assert packed == got["msgpack_ids"][0]
    assert as_json(packed) == plain, (packed, plain)


def post(daemon: Daemon, path: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(
        f"http://{daemon.address}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        assert "Traceback" not in error.read().decode("utf-8", "replace")
        return int(error.code)


ingresses = st.sampled_from(["ws_json", "ws_msgpack", "http_json", "http_msgpack"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ingress=ingresses, data=st.data(), topic=topics)
def test_every_way_in_with_every_way_out_live(
    cluster: Cluster, ingress: str, data: st.DataObject, topic: str | None
) -> None:
    cluster.count += 1
    n = cluster.count
    own_topic = json.dumps(f"adv:{n}")
    binary = ingress.endswith("msgpack")
    if binary:
        value = data.draw(msgpack_data)
        the_topic: Any = json.loads(topic) if topic else f"adv:{n}"
        body = pack({"topic": the_topic, "data": value})
    else:
        value_text = data.draw(json_data)
        body = f'{{"topic":{topic or own_topic},"data":{value_text}}}'.encode()
    if ingress.startswith("ws") and len(body) > MAX_MESSAGE:
        # Over max_message_size: closed with 1009 (documented), before it is read.
        sender = WS(cluster.a, "/parties/pubsub/adv?topics=&format=msgpack")
        sender.send(0x2 if binary else 0x1, body)
        opcode, payload = sender.next()
        assert opcode is Opcode.CLOSE and payload[0] == 1009, payload
        sender.close()
        refused = True
        assert sentinel(cluster.json_sender, n, False) == []  # where this example ends
    elif ingress.startswith("ws"):
        sender = cluster.msgpack_sender if binary else cluster.json_sender
        sender.send(0x2 if binary else 0x1, body)
        answers = sentinel(sender, n, binary)
        errors = [a for a in answers if "__error" in a]
        assert len(answers) == len(errors) <= 1, answers
        for error in errors:
            assert set(error["__error"]) >= {"code", "message"}, error
        refused = bool(errors)
    else:
        content_type = "application/msgpack" if binary else "application/json"
        status = post(cluster.a, "/parties/pubsub/adv", body, content_type)
        assert status == 200 or refused_over_http(status), status
        refused = status != 200
        assert sentinel(cluster.json_sender, n, False) == []  # where this example ends
    # The odd topics are all refused (empty, not a string, a surrogate, too long).
    assert refused or topic is None
    check_delivery(cluster, n, refused)
    cluster.alive()
    cluster.witness_round_trip()


# --- the other doors: __topics, __token and the query --------------------------------

control_values = st.one_of(
    json_values,
    st.sampled_from(['"a,b"', '["\\ud800"]', "[" + ",".join(['"t"'] * 500) + "]"]),
)
token_texts = st.one_of(
    st.text(max_size=40).map(json.dumps),
    st.sampled_from(
        [
            '"a.b.c"',
            '"eyJhbGciOiJSUzI1NiJ9.e30.x"',  # {"alg":"RS256"}: the other key family
            '"eyJhbGciOiJub25lIn0.e30."',  # {"alg":"none"}
            '"eyJhbGciOiJIUzI1NiIsImtpZCI6WzFdfQ.e30.x"',  # a kid that is a list
            json.dumps(_token()),
        ]
    ),
    json_values,
)


# Within max_message_size: a frame over it is closed with 1009, as the publish test shows.
def small(text: str) -> bool:
    return len(text.encode()) < MAX_MESSAGE // 2


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(value=control_values.filter(small), token=token_texts.filter(small))
def test_subscriptions_and_token_refreshes(cluster: Cluster, value: str, token: str) -> None:
    cluster.secure.send(0x1, f'{{"__topics":{value}}}'.encode())
    cluster.secure.send(0x1, f'{{"__token":{token}}}'.encode())
    # Whatever those did, the connection still answers: a publish comes back as
    # an error (forbidden: not subscribed... ) or nothing; a ping gets its pong.
    cluster.secure.send(0x9, b"still there?")
    while True:
        opcode, payload = cluster.secure.next()
        assert opcode is not Opcode.CLOSE, payload
        if opcode is Opcode.PONG:
            break
        frame = strict_json(payload)
        assert "__error" in frame and {"code", "message"} <= set(frame["__error"]), frame
    cluster.alive()
    cluster.witness_round_trip()


query_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "e:²",
            "e:٣",
            "e:" + "9" * 25,
            "abc:99999999999999999999",
            "%FF",
            "%zz",
            "%",
            "%ED%A0%80",  # a surrogate, as UTF-8
            "x" * 400,
            "a,,b,,",
            "*,x:*,:*",
        ]
    ),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["since", "topics", "_pk", "ids", "format"]), value=query_values)
def test_query_parameters(cluster: Cluster, name: str, value: str) -> None:
    from urllib.parse import quote

    raw = value if value.startswith("%") else quote(value, safe=",*:")
    target = f"/parties/pubsub/adv?{name}={raw}&ids=1"
    ws = WS(cluster.a, target)
    assert ws.status in (101, 400), ws.head
    if ws.status == 101:
        ws.send(0x9, b"ping")
        while True:
            opcode, _ = ws.next()
            if opcode is Opcode.PONG:
                break
            assert opcode is not Opcode.CLOSE
    ws.close()
    cluster.alive()
    cluster.witness_round_trip()
