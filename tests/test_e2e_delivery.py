"""Delivery guarantees end to end, with real partysocket clients: resume, MessagePack,
skip-self, rate limits, slow-consumer policies, autoscaling nodes."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from daemons import Daemon, DaemonFactory
from node_clients import Clients
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import RawClient, masked_frame, upgrade_request

BASE = (
    """
[server]
ping_interval = 0
max_message_size = 20000
max_buffered_bytes = 200000

"""
    + DEFAULT_BINDING_TOML
)


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def config(**options: Any) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return BASE + '\n[[pubsub]]\nbinding = "PubSub"\n' + "\n".join(lines) + "\n"


def admin(daemon: Daemon, path: str, method: str = "GET") -> Any:
    assert daemon.admin
    request = urllib.request.Request(daemon.admin + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start(start_daemon: DaemonFactory, **options: Any) -> tuple[Daemon, Clients]:
    daemon = start_daemon(config(**options))
    return daemon, Clients(daemon)


@pytest.fixture
def stop_clients() -> Iterator[list[Clients]]:
    started: list[Clients] = []
    yield started
    for clients in started:
        clients.stop()


# --- resume ------------------------------------------------------------------------


def test_resume_across_forced_disconnects_loses_and_repeats_nothing(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(
        start_daemon, history_messages=20000, history_seconds=300, history_bytes=2**23
    )
    stop_clients.append(clients)
    clients.connect("reader", room="r", resume=True, retries=1000)
    clients.connect("pub", room="r", query={"topics": ""})
    total, batch = 10_000, 500
    received: list[int] = []
    resumes: list[dict[str, Any]] = []

    def drain(until: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(received) < until:
            assert time.monotonic() < deadline, f"stuck at {len(received)} of {until}"
            message = clients.message("reader", timeout=deadline - time.monotonic())
            if "__resume" in message:
                resumes.append(message["__resume"])
            else:
                received.append(message["data"])

    for start_at in range(0, total, batch):
        clients.command("sendMany", id="pub", topic="t", **{"from": start_at, "count": batch})
        if start_at == 3000:
            drain(2000)  # the reader is mid-stream when it is cut
            assert admin(daemon, "/rooms/pubsub/r/connections/reader", "DELETE")["closed"] == 1
        if start_at == 6500:
            drain(5000)
            # A killed TCP connection: no close frame at all.
            assert admin(daemon, "/rooms/pubsub/r/connections/reader?abort=1", "DELETE")["aborted"]
    drain(total)
    assert received == list(range(total)), "every message exactly once, in order"
    assert len(resumes) == 2  # one per cut (the first connect has no cursor yet)
    assert all(r["recovered"] for r in resumes)
    assert sum(r["replayed"] for r in resumes) > 0, "the cuts lost messages that were replayed"
    clients.no_message("reader")


def test_resume_reports_unrecoverable_cursors(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    _, clients = start(start_daemon, history_messages=3)
    stop_clients.append(clients)
    clients.connect("first", room="r", query={"ids": "1"})
    for i in range(6):
        clients.send("first", {"topic": "t", "data": i})
    cursors = [m["id"] for m in clients.messages("first", 6)]
    epoch = cursors[0].split(":")[0]
    assert cursors == [f"{epoch}:{n}" for n in range(1, 7)]

    clients.connect("recent", room="r", query={"ids": "1", "since": cursors[3]})
    assert clients.message("recent") == {"__resume": {"recovered": True, "replayed": 2}}
    assert [m["data"] for m in clients.messages("recent", 2)] == [4, 5]

    clients.connect("old", room="r", query={"ids": "1", "since": cursors[0]})
    assert clients.message("old") == {"__resume": {"recovered": False, "replayed": 0}}
    clients.connect("foreign", room="r", query={"ids": "1", "since": "deadbeef:1"})
    assert clients.message("foreign") == {"__resume": {"recovered": False, "replayed": 0}}
    clients.connect("current", room="r", query={"ids": "1", "since": cursors[-1]})
    assert clients.message("current") == {"__resume": {"recovered": True, "replayed": 0}}


def test_idempotent_publishes_are_delivered_once(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon, history_messages=100)
    stop_clients.append(clients)
    clients.connect("s", room="r")
    for _ in range(3):
        clients.send("s", {"topic": "t", "data": "once", "idem": "key-1"})
    assert clients.message("s")["data"] == "once"
    status, body, headers = daemon.post(
        "/parties/pubsub/r", '{"topic":"t","data":"http"}', headers={"Idempotency-Key": "key-2"}
    )
    assert status == 200 and "Idempotent-Replayed" not in headers
    status, body, headers = daemon.post(
        "/parties/pubsub/r", '{"topic":"t","data":"http"}', headers={"Idempotency-Key": "key-2"}
    )
    assert (status, body, headers.get("Idempotent-Replayed")) == (200, "OK", "true")
    assert clients.message("s")["data"] == "http"
    clients.no_message("s")


# --- MessagePack -----------------------------------------------------------------------


def test_msgpack_and_json_clients_share_a_room(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    _, clients = start(start_daemon)
    stop_clients.append(clients)
    clients.connect("m", room="r", query={"format": "msgpack", "ids": "1"}, format="msgpack")
    clients.connect("j", room="r")
    clients.send("j", {"topic": "t", "data": {"a": [1, 2]}})
    from_json = clients.message("m")
    assert from_json["topic"] == "t" and from_json["data"] == {"a": [1, 2]} and "id" in from_json
    assert clients.message("j") == {"topic": "t", "data": {"a": [1, 2]}}
    raw = base64.b64encode(b"\x00\xffbinary").decode()
    clients.send("m", {"topic": "bin", "data": raw}, bytes=True)
    assert clients.message("j") == {"topic": "bin", "data": {"__bytes": raw}}
    assert clients.message("m")["data"] == {"__bytes": raw}  # bytes, shown by the test client
    clients.send("m", {"__topics": ["only"]})
    # Its own publish comes after the subscription change on the same socket.
    clients.send("m", {"topic": "only", "data": "ready"})
    assert clients.message("m")["data"] == "ready"
    clients.send("j", {"topic": "other", "data": 1})
    clients.send("j", {"topic": "only", "data": 2})
    assert clients.message("m")["data"] == 2


def test_binary_from_a_json_client_and_bad_msgpack(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon)
    stop_clients.append(clients)
    clients.connect("j", room="r")
    clients.send("j", {"topic": "t"}, binary=True)
    assert clients.message("j")["__error"]["code"] == "binary_not_supported"
    raw = RawClient(daemon)
    raw.upgrade("/parties/pubsub/r?format=msgpack")
    raw.send(masked_frame(0x2, b"\xc1"))  # 0xc1 is never valid MessagePack
    proto = FrameProtocol(client=True, extensions=[])
    raw.sock.settimeout(5)
    while True:
        proto.receive_bytes(raw.sock.recv(65536))
        frames = list(proto.received_frames())
        if frames:
            break
    assert frames[0].opcode is Opcode.BINARY
    import msgpack

    error = msgpack.unpackb(frames[0].payload)
    assert error["__error"]["code"] == "bad_msgpack"


# --- skip-self ---------------------------------------------------------------------------


def test_skip_self_across_two_sockets_of_one_client(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon)
    stop_clients.append(clients)
    clients.connect("tab1", pk="user-1", room="r", query={"skip_self": "1"})
    clients.connect("tab2", pk="user-1", room="r", query={"skip_self": "1"})
    clients.connect("other", room="r")
    clients.send("tab1", {"topic": "t", "data": "from tab1"})
    assert clients.message("other") == {"topic": "t", "data": "from tab1"}
    clients.no_message("tab1")
    clients.no_message("tab2")
    # A server publishing for "other" names it: all its connections are skipped.
    status, _, _ = daemon.post("/parties/pubsub/r?_pk=other", '{"topic":"t","data":"server"}')
    assert status == 200
    assert clients.message("tab1")["data"] == "server"
    assert clients.message("tab2")["data"] == "server"
    clients.no_message("other")


def test_skip_self_as_the_binding_default(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    _, clients = start(start_daemon, skip_self=True)
    stop_clients.append(clients)
    clients.connect("quiet", room="r")
    clients.connect("echo", room="r", query={"skip_self": "0"})
    clients.send("quiet", {"topic": "t", "data": 1})
    # Two sockets race each other: send the second after the first arrived.
    assert clients.message("echo")["data"] == 1
    clients.send("echo", {"topic": "t", "data": 2})
    assert clients.message("echo")["data"] == 2
    assert clients.message("quiet")["data"] == 2
    clients.no_message("quiet")


# --- rate limits -------------------------------------------------------------------------------


def test_publish_rate_limit_errors_then_1008(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon, publish_rate=5, publish_burst=5, abuse_strikes=10)
    stop_clients.append(clients)
    clients.connect("fast", room="r", query={"topics": ""})
    clients.connect("sub", room="r")
    clients.command("sendMany", id="fast", topic="t", **{"from": 0, "count": 8})
    errors = [clients.message("fast") for _ in range(3)]
    assert {e["__error"]["code"] for e in errors} == {"rate_limited"}
    assert all(0 < e["__error"]["retry_after"] <= 1 for e in errors)
    assert [m["data"] for m in clients.messages("sub", 5)] == [0, 1, 2, 3, 4]
    # Every frame of fast's was read (its 3 refusals came back): no barrier on it,
    # whose ping would be one more refusal.
    clients.no_message("sub", publishers=())
    clients.command("sendMany", id="fast", topic="t", **{"from": 100, "count": 30})
    closed = clients.expect(lambda e: e["event"] == "close" and e["id"] == "fast")
    assert closed["code"] == 1008
    assert "rate limit exceeded" in closed["reason"]
    metrics = urllib.request.urlopen(f"{daemon.admin}/metrics", timeout=10).read().decode()
    assert 'partysub_rate_limited_total{kind="publish"}' in metrics


def test_http_rate_limit_is_429_with_retry_after(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(config(publish_rate=1, publish_burst=2))
    answers = [daemon.post("/parties/pubsub/r", '{"topic":"t","data":1}') for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][2]["Retry-After"] == "1"
    assert answers[2][1].startswith("Too many requests")


def test_connect_rate_and_room_cap(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(
        start_daemon, connect_rate=1, connect_burst=2, max_connections_per_room=2
    )
    stop_clients.append(clients)
    clients.connect("a", room="r")
    clients.connect("b", room="r")
    full = RawClient(daemon)
    full.send(upgrade_request("/parties/pubsub/r"))
    assert full.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 503 ")
    limited = RawClient(daemon)
    limited.send(upgrade_request("/parties/pubsub/other"))
    head = limited.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 ") and b"Retry-After: " in head


# --- slow consumers -----------------------------------------------------------------------------


def flood(clients: Clients, topics: list[str], count: int) -> None:
    """Publish ``count`` 9 kB messages to a reader that reads nothing (about 8 MB, past
    its kernel buffers and its 200 kB outbox), paced by a "sync" message that a fast
    partysocket reader must see after every ten."""
    payload = "x" * 9000
    for i in range(count):
        clients.send("pub", {"topic": topics[i % len(topics)], "data": f"{i}:{payload}"})
        if i % 10 == 9:
            clients.send("pub", {"topic": "sync", "data": i})
            assert clients.message("fast", timeout=30)["data"] == i


def read_frames(raw: RawClient, until: Any, timeout: float = 20) -> list[Any]:
    """Whole messages from a raw client's socket until ``until(messages)`` holds."""
    proto = FrameProtocol(client=True, extensions=[])
    raw.sock.settimeout(timeout)
    found: list[Any] = []
    partial = ""
    proto.receive_bytes(raw.buffer)
    while True:
        for frame in proto.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION):
                assert isinstance(frame.payload, str)
                partial += frame.payload
                if frame.message_finished:
                    found.append(json.loads(partial))
                    partial = ""
        if until(found):
            return found
        proto.receive_bytes(raw.sock.recv(65536))


def test_drop_policy_sends_a_gap_and_the_newest_messages(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon, slow_consumer="drop")
    stop_clients.append(clients)
    clients.connect("fast", room="r", query={"topics": ["sync"]})
    clients.connect("pub", room="r", query={"topics": ""})
    slow = RawClient(daemon)
    slow.upgrade("/parties/pubsub/r?ids=1&topics=t")
    flood(clients, ["t"], 900)
    conns = admin(daemon, "/rooms/pubsub/r/connections")["connections"]
    assert all(c["buffered_bytes"] <= 200000 for c in conns), "memory stays under the cap"
    frames = read_frames(slow, lambda f: f and f[-1].get("data", "").startswith("899:"))
    gaps = [f["__gap"] for f in frames if "__gap" in f]
    assert gaps, "the reader is told what it missed"
    seqs = [int(f["id"].split(":")[1]) for f in frames if "id" in f]
    assert seqs == sorted(seqs)
    first, last = (int(gaps[0][k].split(":")[1]) for k in ("from", "to"))
    assert first <= last and all(not first <= s <= last for s in seqs)
    assert len(seqs) < 900


def test_latest_policy_keeps_the_newest_per_topic(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(start_daemon, slow_consumer="latest")
    stop_clients.append(clients)
    clients.connect("fast", room="r", query={"topics": ["sync"]})
    clients.connect("pub", room="r", query={"topics": ""})
    slow = RawClient(daemon)
    slow.upgrade("/parties/pubsub/r?topics=price:*")
    topics = ["price:a", "price:b", "price:c"]
    flood(clients, topics, 900)
    conns = admin(daemon, "/rooms/pubsub/r/connections")["connections"]
    assert all(c["buffered_bytes"] <= 200000 for c in conns)
    newest = {t: max(i for i in range(900) if topics[i % 3] == t) for t in topics}

    def complete(found: list[Any]) -> bool:
        seen = {f["topic"]: int(f["data"].split(":")[0]) for f in found if "topic" in f}
        return all(seen.get(t) == n for t, n in newest.items())

    frames = read_frames(slow, complete)
    assert len(frames) < 900, "older values of a topic were replaced, not all delivered"


# --- autoscaling ---------------------------------------------------------------------------------


def test_autoscaling_adds_and_returns_nodes(
    start_daemon: DaemonFactory, stop_clients: list[Clients]
) -> None:
    daemon, clients = start(
        start_daemon, nodes="auto", max_connections_per_node=3, locations={"wnam": 1, "weur": 1}
    )
    stop_clients.append(clients)
    ids = [f"c{i}" for i in range(8)]
    for cid in ids:
        clients.connect(cid, room="big", headers={"CF-IPCountry": "US"})
    room = admin(daemon, "/rooms/pubsub/big")
    assert sorted(n["id"] for n in room["nodes"]) == ["wnam-0", "wnam-1", "wnam-2"]
    assert max(n["connections"] for n in room["nodes"]) <= 3
    clients.send("c0", {"topic": "t", "data": "all"})
    for cid in ids:
        assert clients.message(cid)["data"] == "all"
    for cid in ids[:6]:
        clients.close(cid)
        clients.closed(cid)
    deadline = time.monotonic() + 5
    while len(admin(daemon, "/rooms/pubsub/big")["nodes"]) > 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    room = admin(daemon, "/rooms/pubsub/big")
    assert sum(n["connections"] for n in room["nodes"]) == 2
    counts = [c["nodes"] for c in room["node_counts"]]
    assert max(counts) == 3 and counts[-1] == len(room["nodes"])
