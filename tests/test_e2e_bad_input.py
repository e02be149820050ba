"""Whatever the network sends: a clear error, no crash, no leak, others unharmed."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from daemons import Daemon, DaemonFactory, open_fds
from node_clients import Clients
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import RawClient, masked_frame

CONFIG = (
    """
[server]
max_message_size = 10000
max_buffered_bytes = 200000
max_header_bytes = 4096
handshake_timeout = 1
ping_interval = 1
ping_timeout = 1
close_timeout = 1

"""
    + DEFAULT_BINDING_TOML
)


@pytest.fixture
def strict(start_daemon: DaemonFactory) -> Daemon:
    return start_daemon(CONFIG)


@pytest.fixture
def witness(strict: Daemon) -> Iterator[Clients]:
    """A partysocket subscriber that must keep receiving whatever else happens; and
    afterwards the daemon holds no more file descriptors than before (tasks are
    counted in the connection storm, where thousands would show)."""
    c = Clients(strict)
    c.connect("witness", room="raw")
    c.barrier("witness")  # the daemon has settled the witness's connection
    fds = open_fds(strict.proc.pid)
    yield c
    c.send("witness", {"topic": "alive", "data": 1})
    assert c.message("witness") == {"topic": "alive", "data": 1}
    assert strict.alive()
    for cid in c.connected:
        if cid != "witness":
            c.close(cid)
    # Let the test's own connections finish closing; descriptors first, with no
    # control-plane request (which holds a descriptor itself) in flight.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and open_fds(strict.proc.pid) > fds:
        time.sleep(0.1)
    assert open_fds(strict.proc.pid) <= fds, "no leaked file descriptor"
    c.stop()


def test_malformed_http_gets_400(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    raw.send(b"THIS IS NOT HTTP\r\n\r\n")
    assert raw.read_all().startswith(b"HTTP/1.1 400 ")


def test_oversized_headers_get_431(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    raw.send(b"GET /parties/pubsub/raw HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert raw.read_all().startswith(b"HTTP/1.1 431 ")


def test_post_body_too_large_gets_413(strict: Daemon, witness: Clients) -> None:
    status, body, _ = strict.post("/parties/pubsub/raw", b"x" * 20000)
    assert status == 413
    assert "limit is 10000 bytes" in body


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x81, 5]) + b"hello", 1002),  # unmasked client frame
        (masked_frame(0x1, b"\xff\xfe\xfd"), 1007),  # invalid UTF-8
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (masked_frame(0x1, b"{}", rsv=4), 1002),  # reserved bit without an extension
        (masked_frame(0x9, b"x" * 126), 1002),  # control frame too long
        (masked_frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
        (masked_frame(0x0, b"x"), 1002),  # continuation with nothing to continue
        (masked_frame(0x1, b"x" * 20000), 1009),  # over max_message_size
        (bytes([0x81, 0xFF]) + (2**62).to_bytes(8, "big") + b"\0\0\0\0", 1009),  # huge header
    ],
    ids=[
        "unmasked",
        "invalid-utf8",
        "reserved-opcode",
        "reserved-bit",
        "long-control",
        "fragmented-control",
        "stray-continuation",
        "too-big",
        "huge-length",
    ],
)
def test_bad_frames_close_with_the_right_code(
    strict: Daemon, witness: Clients, frame: bytes, code: int
) -> None:
    raw = RawClient(strict)
    raw.upgrade()
    raw.send(frame)
    got, reason = raw.close_frame()
    assert got == code
    assert reason


def test_truncated_frame_then_disconnect(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    raw.upgrade()
    raw.send(masked_frame(0x1, b'{"topic":"t","data":1}')[:7])
    raw.close()


@pytest.mark.serial
def test_slowloris_handshake_is_cut(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    started = time.monotonic()
    for byte in b"GET /parties/pubsub/raw HTTP/1.1\r\n":
        try:
            raw.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.1)
    assert raw.read_all(timeout=5) == b""
    assert time.monotonic() - started < 4


def test_peer_that_never_answers_pings_is_dropped(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    raw.upgrade()
    started = time.monotonic()
    code, reason = raw.close_frame(timeout=10)  # reading, but never answering pings
    assert code == 1011
    assert "ping" in reason
    assert 1.5 < time.monotonic() - started < 6


def test_slow_reader_is_closed_and_the_others_keep_receiving(start_daemon: DaemonFactory) -> None:
    # No keep-alive here: the reader must be closed for falling behind, not for silence.
    daemon = start_daemon(
        CONFIG.replace("ping_interval = 1", "ping_interval = 0").replace(
            "close_timeout = 1", "close_timeout = 10"
        )
    )
    others = Clients(daemon)
    try:
        others.connect("fast", room="raw")
        others.connect("pub", room="raw", query={"topics": ""})
        slow = RawClient(daemon)
        slow.upgrade()
        payload = "x" * 9000
        # In batches the fast reader keeps up with, until the reader that never
        # reads has filled its kernel buffers and then its 200 kB outbox.
        for _ in range(150):
            for _ in range(10):
                others.send("pub", {"topic": "flood", "data": payload})
            assert len(others.messages("fast", 10)) == 10
            if any("closing slow consumer" in line for line in daemon.lines):
                break
        daemon.wait_for_log(r"closing slow consumer", timeout=10)
        code, reason = slow.close_frame(timeout=10)
        assert code == 1013
        assert "slow consumer" in reason
        others.send("pub", {"topic": "after", "data": 1})
        assert others.message("fast") == {"topic": "after", "data": 1}
    finally:
        others.stop()


def daemon_tasks(daemon: Daemon) -> int:
    assert daemon.admin
    with urllib.request.urlopen(daemon.admin + "/daemon", timeout=5) as response:
        tasks: int = json.loads(response.read())["tasks"]
        return tasks


@pytest.mark.serial
def test_connect_disconnect_storm_leaks_nothing(strict: Daemon, witness: Clients) -> None:
    witness.barrier("witness")
    fds, tasks = open_fds(strict.proc.pid), daemon_tasks(strict)
    started = time.monotonic()
    storm = 3000
    for i in range(storm):
        raw = RawClient(strict)
        if i % 3 == 0:
            raw.upgrade()
        elif i % 3 == 1:
            raw.send(b"POST /parties/pubsub/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 5")
        raw.close()
    rate = storm / (time.monotonic() - started)
    assert rate > 1000, f"only {rate:.0f} connects and disconnects per second"
    deadline = time.monotonic() + 5
    while open_fds(strict.proc.pid) > fds and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(strict.proc.pid) == fds
    # The control plane's own requests each keep a hypercorn task for its
    # keep-alive timeout, so allow those two; a leak here would be thousands.
    assert daemon_tasks(strict) <= tasks + 2


def test_huge_topic_lists_are_refused_and_the_connection_lives(
    strict: Daemon, witness: Clients
) -> None:
    witness.connect("greedy", room="raw")
    witness.send("greedy", {"__topics": [f"t{i}" for i in range(1000)]})
    error = witness.message("greedy")["__error"]
    assert error["code"] == "bad_topics" and "at most 100 patterns" in error["message"]
    witness.send("greedy", {"topic": "x" * 300, "data": 1})
    assert witness.message("greedy")["__error"]["code"] == "bad_topic"
    witness.send("greedy", {"topic": "ok", "data": 1})
    assert witness.message("greedy") == {"topic": "ok", "data": 1}
    assert witness.message("witness") == {"topic": "ok", "data": 1}


def test_the_control_plane_is_not_on_the_public_port(strict: Daemon, witness: Clients) -> None:
    for path in ("/daemon", "/metrics", "/rooms", "/health"):
        assert strict.post(path, method="GET")[:2] == (404, "Not found")


def test_config_error_exits_non_zero_naming_the_line(start_daemon: DaemonFactory) -> None:
    with pytest.raises(AssertionError) as failed:
        start_daemon(CONFIG.replace("ping_interval = 1", 'ping_interval = "often"'))
    log = str(failed.value)
    assert "partysub.toml:7: [server.ping_interval] error: must be a number, not a string" in log
    assert "not starting" in log


def test_expect_100_continue_is_answered_before_the_body(strict: Daemon, witness: Clients) -> None:
    raw = RawClient(strict)
    raw.send(
        b"POST /parties/pubsub/raw HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 22\r\n\r\n"
    )
    assert raw.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    raw.send(b'{"topic":"t","data":1}')
    assert raw.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 200 OK")
    assert witness.message("witness") == {"topic": "t", "data": 1}


def test_transfer_encoding_with_content_length_is_refused_and_closed(
    strict: Daemon, witness: Clients
) -> None:
    raw = RawClient(strict)
    raw.send(
        b"POST /parties/pubsub/raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n1c\r\n" + b'{"topic":"t","data":"smuggled"}' + b"\r\n0\r\n\r\n"
    )
    answer = raw.read_all()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1, "nothing after the refusal is read as a request"
    witness.no_message("witness")


def test_a_chunk_larger_than_the_body_limit_is_refused_at_its_size_line(
    strict: Daemon, witness: Clients
) -> None:
    raw = RawClient(strict)
    raw.send(
        b"POST /parties/pubsub/raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFF\r\n"
    )
    # Answered at once: none of the chunk's four gigabytes was sent.
    assert raw.read_all(timeout=5).startswith(b"HTTP/1.1 413 ")


def test_an_invalid_percent_escape_in_a_room_is_400(strict: Daemon, witness: Clients) -> None:
    status, body, _ = strict.post("/parties/pubsub/bad%zzroom", '{"topic":"t","data":1}')
    assert status == 400 and "invalid percent escape" in body
