"""Who may connect, subscribe and publish, end to end with partysocket."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemons import TESTS, Daemon, DaemonFactory
from node_clients import Clients
from partysub.tokens import mint
from partysubd.core.auth import hash_api_key
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import RawClient, upgrade_request

SECRET = "0123456789abcdef0123456789abcdef"
API_KEY = "server-side-publisher-key-0001"
CONFIG = (
    "[server]\nping_interval = 0\n\n"
    + DEFAULT_BINDING_TOML
    + f"""
[[pubsub]]
binding = "PubSub"
auth = "token"
jwt_secret = "{SECRET}"
jwt_leeway = 0
api_keys = ["{hash_api_key(API_KEY)}"]
"""
)


@pytest.fixture
def secured(start_daemon: DaemonFactory) -> Daemon:
    return start_daemon(CONFIG)


@pytest.fixture
def users(secured: Daemon) -> Iterator[Clients]:
    clients = Clients(secured)
    yield clients
    clients.stop()


def upgrade_status(daemon: Daemon, target: str, headers: str = "") -> bytes:
    raw = RawClient(daemon)
    raw.send(upgrade_request(target, headers))
    raw.sock.settimeout(5)
    head = raw.read_until(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(raw.buffer) < length:
        raw.buffer += raw.sock.recv(65536)
    raw.close()
    return head + raw.buffer[:length]


def test_no_token_bad_token_expired_token_other_room(secured: Daemon) -> None:
    answer = upgrade_status(secured, "/parties/pubsub/lobby")
    assert answer.startswith(b"HTTP/1.1 401 ") and b"a token is required" in answer
    assert b"WWW-Authenticate: Bearer" in answer
    bad = upgrade_status(secured, "/parties/pubsub/lobby?token=nonsense")
    assert bad.startswith(b"HTTP/1.1 401 ") and b"malformed token" in bad
    expired = mint(SECRET, ttl=-5)
    assert b"token expired" in upgrade_status(secured, f"/parties/pubsub/lobby?token={expired}")
    other = mint(SECRET, rooms=["kitchen"])
    refused = upgrade_status(secured, f"/parties/pubsub/lobby?token={other}")
    assert refused.startswith(b"HTTP/1.1 403 ") and b"does not allow room 'lobby'" in refused
    header = upgrade_status(
        secured, "/parties/pubsub/lobby", f"Authorization: Bearer {mint(SECRET)}\r\n"
    )
    assert header.startswith(b"HTTP/1.1 101 ")


def test_claims_limit_subscriptions_and_publishes(users: Clients) -> None:
    token = mint(SECRET, rooms=["lobby"], sub=["chat:*"], pub=["chat:1"])
    users.connect("u", room="lobby", query={"token": token, "topics": ["chat:*", "admin"]})
    error = users.message("u")["__error"]
    assert error["code"] == "forbidden" and "'admin'" in error["message"]
    users.send("u", {"topic": "chat:1", "data": "allowed"})
    assert users.message("u") == {"topic": "chat:1", "data": "allowed"}
    users.send("u", {"topic": "chat:2", "data": "not allowed"})
    assert users.message("u")["__error"]["code"] == "forbidden"
    users.send("u", {"__topics": ["*"]})
    assert users.message("u")["__error"]["code"] == "forbidden"
    users.send("u", {"topic": "chat:1", "data": "after"})
    users.no_message("u")  # "*" was refused, so it is subscribed to nothing now


def test_http_publishing_with_tokens_and_api_keys(users: Clients, secured: Daemon) -> None:
    users.connect("u", room="lobby", query={"token": mint(SECRET)})
    body = '{"topic":"news","data":1}'
    assert secured.post("/parties/pubsub/lobby", body)[0] == 401
    wrong_key = {"Authorization": "Bearer not-the-key"}
    assert secured.post("/parties/pubsub/lobby", body, headers=wrong_key)[0] == 401
    key = {"Authorization": f"Bearer {API_KEY}"}
    assert secured.post("/parties/pubsub/lobby", body, headers=key)[:2] == (200, "OK")
    assert users.message("u") == {"topic": "news", "data": 1}
    limited = {"Authorization": f"Bearer {mint(SECRET, pub=['chat:*'])}"}
    status, text, _ = secured.post("/parties/pubsub/lobby", body, headers=limited)
    assert status == 403 and "does not allow publishing to 'news'" in text


def test_expiry_closes_unless_refreshed(users: Clients) -> None:
    expires = time.time() + 2
    users.connect("stale", room="lobby", query={"token": mint(SECRET, ttl=2)})
    users.connect("fresh", room="lobby", query={"token": mint(SECRET, ttl=2)})
    users.send("fresh", {"__token": mint(SECRET, ttl=60)})
    users.send("fresh", {"__token": "garbage"})
    assert users.message("fresh")["__error"]["code"] == "unauthorized"
    closed = users.expect(lambda e: e["event"] == "close" and e["id"] == "stale", timeout=5)
    assert closed["code"] == 4001 and "token expired" in closed["reason"]
    # The condition is the clock: past the first tokens' expiry (whole seconds in a JWT).
    while time.time() < int(expires) + 1.2:
        time.sleep(0.05)
    users.send("fresh", {"topic": "t", "data": "still here"})
    assert users.message("fresh") == {"topic": "t", "data": "still here"}


def test_a_refreshed_token_is_the_connection_s_whole_authority(users: Clients) -> None:
    wide = mint(SECRET, rooms=["lobby"], sub=["chat:*", "news:*"])
    users.connect("u", room="lobby", query={"token": wide, "topics": ["chat:*", "news:*"]})
    users.connect("pub", room="lobby", query={"token": mint(SECRET), "topics": ""})
    users.send("u", {"__token": mint(SECRET, rooms=["lobby"], sub=["chat:*"])})
    error = users.message("u")["__error"]
    assert error["code"] == "forbidden" and "'news:*'" in error["message"]
    assert "unsubscribed" in error["message"]
    users.send("pub", {"topic": "news:1", "data": "no longer"})
    users.send("pub", {"topic": "chat:1", "data": "still"})
    assert users.message("u") == {"topic": "chat:1", "data": "still"}
    # A valid token for other rooms only: the connection is closed (4003).
    users.send("u", {"__token": mint(SECRET, rooms=["kitchen"])})
    closed = users.expect(lambda e: e["event"] == "close" and e["id"] == "u")
    assert closed["code"] == 4003 and "does not allow this room" in closed["reason"]


def test_partysocket_refreshes_its_token_on_reconnect(users: Clients, secured: Daemon) -> None:
    """The recipe: a `query` function fetches a token for every (re)connect."""
    users.connect("r", room="lobby", query={"token": mint(SECRET, ttl=60)}, retries=5)
    assert secured.admin
    import urllib.request

    request = urllib.request.Request(
        secured.admin + "/rooms/pubsub/lobby/connections/r", method="DELETE"
    )
    urllib.request.urlopen(request, timeout=5).read()
    users.expect(lambda e: e["event"] == "close" and e["id"] == "r")
    users.expect(lambda e: e["event"] == "open" and e["id"] == "r")


def test_partysub_token_command_mints_from_the_config(secured: Daemon, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "partysub_cli",
            "token",
            "-c",
            str(tmp_path / "partysub.toml"),
            "--room",
            "lobby",
            "--pub",
            "x",
            "--ttl",
            "60",
        ],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert upgrade_status(secured, f"/parties/pubsub/lobby?token={token}").startswith(
        b"HTTP/1.1 101 "
    )
    assert upgrade_status(secured, f"/parties/pubsub/elsewhere?token={token}").startswith(
        b"HTTP/1.1 403 "
    )
