"""Daemons joined through a real Redis: delivery, faults, membership, a shared port.

Each test starts redis-server on a free loopback port and daemons as
subprocesses; clients are real partysocket instances on Node.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_e2e_tls import self_signed

from daemons import Daemon, DaemonFactory, free_port
from node_clients import Clients, node_available
from partysubd.core.config import DEFAULT_BINDING_TOML
from redis_servers import RedisCluster, RedisSentinel, RedisServer

CHANNEL = "partysub:{PubSub:lobby}"
# A binding with a history: in a cluster, Redis numbers its messages.
HISTORY = '\n[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 1000\nhistory_seconds = 60\n'


def cluster_toml(redis_url: str, extra: str = "") -> str:
    return (
        f'[cluster]\nredis_url = "{redis_url}"\nheartbeat_seconds = 0.3\n'
        f"dead_after_seconds = 1.2\n{extra}\n" + DEFAULT_BINDING_TOML
    )


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def clients_for() -> Iterator[Callable[[Daemon], Clients]]:
    if not node_available():
        pytest.fail("Node and tests/js/node_modules are needed: run `npm ci --prefix tests/js`")
    started: list[Clients] = []

    def make(daemon: Daemon) -> Clients:
        clients = Clients(daemon)
        started.append(clients)
        return clients

    yield make
    for clients in started:
        clients.stop()


def admin(daemon: Daemon, path: str) -> tuple[int, Any]:
    assert daemon.admin
    try:
        with urllib.request.urlopen(daemon.admin + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_until(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_cluster(
    start_daemon: DaemonFactory, redis: RedisServer, count: int, bindings: str = ""
) -> list[Daemon]:
    daemons = [
        start_daemon(cluster_toml(redis.url) + bindings, "--cluster-name", f"d{i}")
        for i in range(count)
    ]
    wait_until(
        lambda: all(len(admin(d, "/cluster")[1]["daemons"]) == count for d in daemons),
        what=f"{count} daemons to see each other",
    )
    return daemons


def post(daemon: Daemon, topic: str, data: Any, room: str = "lobby") -> None:
    status, body, _ = daemon.post(
        f"/parties/pubsub/{room}", json.dumps({"topic": topic, "data": data})
    )
    assert status == 200, body


def test_three_daemons_deliver_every_message_once_in_publisher_order(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    daemons = start_cluster(start_daemon, redis, 3)
    clients = [clients_for(d) for d in daemons]
    for i, c in enumerate(clients):
        c.connect(f"sub{i}", room="lobby")
        c.connect(f"pub{i}", room="lobby", query={"topics": ""})
    wait_until(lambda: redis.subscribers(CHANNEL) == 3, what="every daemon subscribed")
    per_source = 40
    for k in range(per_source):
        for i, c in enumerate(clients):
            c.send(f"pub{i}", {"topic": "t", "data": {"src": f"ws{i}", "n": k}})
        for i, d in enumerate(daemons):
            post(d, "t", {"src": f"http{i}", "n": k})
    expected = 6 * per_source
    for i, c in enumerate(clients):
        got = [c.message(f"sub{i}")["data"] for _ in range(expected)]
        by_source: dict[str, list[int]] = {}
        for item in got:
            by_source.setdefault(item["src"], []).append(item["n"])
        assert by_source == {
            src: list(range(per_source)) for src in ("ws0", "ws1", "ws2", "http0", "http1", "http2")
        }, f"daemon {i}: every message once, in each publisher's order"
        c.no_message(f"sub{i}", settle=0.2)
    status, view = admin(daemons[0], "/rooms")
    assert status == 200
    assert view["cluster"]["daemons"] == 3 and view["cluster"]["connections"] == 6
    assert view["cluster"]["rooms"] == 1
    assert view["cluster"]["by_room"] == [
        {"party": "pub-sub", "room": "lobby", "connections": 6, "daemons": 3}
    ]
    listing = subprocess.run(
        [sys.executable, "-m", "partysub_cli", "rooms", "--admin", daemons[2].admin or ""],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "cluster: 6 connections in 1 rooms on 3 daemons" in listing.stdout, listing.stdout
    assert daemons[0].admin
    with urllib.request.urlopen(daemons[0].admin + "/metrics", timeout=10) as response:
        text = response.read().decode()

    # The room and topic views across the cluster, from any daemon.
    def topics_view() -> dict[str, Any]:
        status, detail = admin(daemons[0], "/rooms/pubsub/lobby")
        assert status == 200
        result: dict[str, Any] = detail["cluster"]
        return result

    wait_until(
        lambda: topics_view()["connections"] == 6 and bool(topics_view()["recent_topics"]),
        what="heartbeats carrying the room's details",
    )
    across = topics_view()
    assert across["daemons"] == ["d0", "d1", "d2"]
    assert {p["pattern"]: p["connections"] for p in across["patterns"]} == {"*": 3}
    assert across["recent_topics"][0]["count"] == expected
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "partysub_cli",
            "topics",
            "lobby",
            "--admin",
            daemons[1].admin or "",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "across the cluster: 6 connections" in done.stdout
    assert "partysub_cluster_connected 1.0" in text
    assert "partysub_cluster_daemons 3.0" in text
    relayed_in = [
        line
        for line in text.splitlines()
        if line.startswith("partysub_cluster_relayed_in_messages_total")
    ]
    assert relayed_in and float(relayed_in[0].split()[-1]) == 4 * per_source


def test_skip_self_holds_across_daemons(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    a, b = start_cluster(start_daemon, redis, 2)
    ca, cb = clients_for(a), clients_for(b)
    # The same user (one _pk) in two tabs that reached different daemons.
    ca.connect("tab-a", pk="user1", room="lobby", query={"skip_self": "1"})
    cb.connect("tab-b", pk="user1", room="lobby", query={"skip_self": "1"})
    cb.connect("other", room="lobby")
    wait_until(lambda: redis.subscribers(CHANNEL) == 2, what="both daemons subscribed")
    ca.send("tab-a", {"topic": "t", "data": "mine"})
    assert cb.message("other") == {"topic": "t", "data": "mine"}
    cb.no_message("tab-b", settle=0.3)
    ca.no_message("tab-a", settle=0.1)


@pytest.mark.parametrize("history", [False, True], ids=["plain", "numbered-by-redis"])
def test_redis_restarted_mid_stream(
    start_daemon: DaemonFactory,
    redis: RedisServer,
    clients_for: Callable[[Daemon], Clients],
    history: bool,
) -> None:
    a, b = start_cluster(start_daemon, redis, 2, HISTORY if history else "")
    ca, cb = clients_for(a), clients_for(b)
    ca.connect("local", room="lobby")
    cb.connect("remote", room="lobby")
    wait_until(lambda: redis.subscribers(CHANNEL) == 2, what="both daemons subscribed")
    for n in range(20):
        post(a, "t", n)
    # What Redis had taken when it crashed is gone with it (pub/sub keeps
    # nothing): kill it once these are through.
    assert [cb.message("remote")["data"] for _ in range(20)] == list(range(20))
    redis.stop()
    wait_until(lambda: admin(a, "/ready")[0] == 503, what="a to say it is not ready")
    assert "Redis unreachable" in admin(a, "/ready")[1]["reason"]
    for n in range(20, 60):
        post(a, "t", n)  # local delivery goes on
    assert [ca.message("local")["data"] for _ in range(60)] == list(range(60))
    redis.start()
    wait_until(lambda: admin(a, "/ready")[0] == 200, timeout=15, what="a to be ready again")
    wait_until(lambda: redis.subscribers(CHANNEL) == 2, timeout=15, what="subscriptions restored")
    for n in range(60, 80):
        post(a, "t", n)
    got = [cb.message("remote", timeout=15)["data"] for _ in range(60)]
    assert got == list(range(20, 80)), "what waited for Redis arrives, in order, once"
    cb.no_message("remote", settle=0.2)


def test_redis_unreachable_at_start(
    start_daemon: DaemonFactory, tmp_path: Path, clients_for: Callable[[Daemon], Clients]
) -> None:
    redis = RedisServer(tmp_path, free_port())
    daemon = start_daemon(cluster_toml(redis.url))
    try:
        status, ready = admin(daemon, "/ready")
        assert status == 503 and "Redis" in ready["reason"]
        clients = clients_for(daemon)
        clients.connect("sub", room="lobby")
        post(daemon, "t", "local works")
        assert clients.message("sub")["data"] == "local works"
        redis.start()
        wait_until(lambda: admin(daemon, "/ready")[0] == 200, timeout=15, what="ready")
        daemon.wait_for_log("joined through Redis")
    finally:
        redis.stop()


def test_a_killed_daemon_drops_out_and_nothing_else_changes(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    a, b, c = start_cluster(start_daemon, redis, 3)
    ca = clients_for(a)
    ca.connect("sub", room="lobby")
    wait_until(lambda: redis.subscribers(CHANNEL) == 1, what="a subscribed")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    wait_until(
        lambda: [d["name"] for d in admin(a, "/cluster")[1]["daemons"]] == ["d0", "d1"],
        timeout=5,
        what="d2 to drop out of the view",
    )
    post(b, "t", "still here")
    assert ca.message("sub")["data"] == "still here"
    done = subprocess.run(
        [sys.executable, "-m", "partysub_cli", "cluster", "--admin", a.admin or "", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert [d["name"] for d in json.loads(done.stdout)["daemons"]] == ["d0", "d1"]
    table = subprocess.run(
        [sys.executable, "-m", "partysub_cli", "cluster", "--admin", a.admin or ""],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert table.returncode == 0 and "d1" in table.stdout and "d2" not in table.stdout


def test_two_daemons_share_one_port(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    port = free_port()
    toml = cluster_toml(redis.url).replace(
        "[cluster]", f"[server]\nreuse_port = true\nport = {port}\n\n[cluster]"
    )
    a = start_daemon(toml, "--cluster-name", "a", "--port", str(port))
    b = start_daemon(toml, "--cluster-name", "b", "--port", str(port))
    assert a.port == b.port == port
    clients = clients_for(a)  # connects to the shared port; the kernel picks a daemon
    for i in range(12):
        clients.connect(f"c{i}", room="lobby")
    wait_until(
        lambda: admin(a, "/rooms")[1]["cluster"]["connections"] == 12,
        what="both heartbeats to count the connections",
    )
    counts = [admin(d, "/rooms")[1]["totals"]["connections"] for d in (a, b)]
    assert sum(counts) == 12
    channels_ready = sum(1 for n in counts if n)
    wait_until(lambda: redis.subscribers(CHANNEL) == channels_ready, what="subscriptions")
    post(a, "t", "to all")  # also through the shared port
    for i in range(12):
        assert clients.message(f"c{i}")["data"] == "to all"


def test_redis_cluster_spreads_rooms_over_shards(
    start_daemon: DaemonFactory, tmp_path: Path, clients_for: Callable[[Daemon], Clients]
) -> None:
    """mode = "cluster": sharded pub/sub, each room's channel on the shard of its hash slot."""
    redis_cluster = RedisCluster(tmp_path).start()
    try:
        toml = cluster_toml(redis_cluster.url, 'mode = "cluster"')
        a = start_daemon(toml, "--cluster-name", "a")
        b = start_daemon(toml, "--cluster-name", "b")
        wait_until(lambda: len(admin(a, "/cluster")[1]["daemons"]) == 2, what="membership")
        ca, cb = clients_for(a), clients_for(b)
        rooms = [f"room{i}" for i in range(8)]
        for room in rooms:
            cb.connect(f"sub-{room}", room=room)
        wait_until(
            lambda: sum(len(c) for c in redis_cluster.shard_channels()) == len(rooms),
            what="b subscribed to every room's shard channel",
        )
        assert sum(1 for c in redis_cluster.shard_channels() if c) >= 2, "rooms spread over shards"
        ca.connect("pub", room="room0", query={"topics": ""})
        ca.send("pub", {"topic": "t", "data": "over ws"})
        for room in rooms:
            post(a, "t", room, room=room)
        # Two publishers (a socket and HTTP): no order between them.
        first = {cb.message("sub-room0")["data"] for _ in range(2)}
        assert first == {"over ws", "room0"}
        for room in rooms[1:]:
            assert cb.message(f"sub-{room}")["data"] == room
    finally:
        redis_cluster.stop()


def test_resume_on_another_daemon_replays_from_redis(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    daemons = [
        start_daemon(cluster_toml(redis.url) + HISTORY, "--cluster-name", name)
        for name in ("a", "b")
    ]
    a, b = daemons
    wait_until(lambda: len(admin(a, "/cluster")[1]["daemons"]) == 2, what="membership")
    ca, cb = clients_for(a), clients_for(b)
    ca.connect("first", room="lobby", query={"ids": "1"})
    cb.connect("pub", room="lobby", query={"topics": ""})
    wait_until(lambda: redis.subscribers(CHANNEL) == 2, what="both subscribed")
    for n in range(30):
        cb.send("pub", {"topic": "t", "data": n})
    got = [ca.message("first") for _ in range(30)]
    assert [m["data"] for m in got] == list(range(30))
    epoch = got[0]["id"].rpartition(":")[0]
    assert [m["id"] for m in got] == [f"{epoch}:{n + 1}" for n in range(30)], "Redis numbers them"
    ca.close("first")
    # The client comes back on the other daemon with its last cursor but one third.
    cursor = got[9]["id"]
    cb.connect("moved", room="lobby", query={"ids": "1", "since": cursor})
    assert cb.message("moved") == {"__resume": {"recovered": True, "replayed": 20}}
    replay = [cb.message("moved") for _ in range(20)]
    assert [m["data"] for m in replay] == list(range(10, 30))
    assert [m["id"] for m in replay] == [m["id"] for m in got[10:]]
    for n in range(30, 35):
        cb.send("pub", {"topic": "t", "data": n})
    assert [cb.message("moved")["data"] for _ in range(5)] == list(range(30, 35))
    cb.no_message("moved", settle=0.2)
    # The daemon the client left answers from its own copy of the history.
    ca.connect("back", room="lobby", query={"ids": "1", "since": cursor, "topics": "t"})
    assert ca.message("back") == {"__resume": {"recovered": True, "replayed": 25}}
    # A cursor from no epoch the cluster knows cannot be recovered.
    cb.connect("stranger", room="lobby", query={"ids": "1", "since": "nope:3"})
    assert cb.message("stranger") == {"__resume": {"recovered": False, "replayed": 0}}


def test_idempotency_keys_hold_across_daemons(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    a = start_daemon(cluster_toml(redis.url) + HISTORY, "--cluster-name", "a")
    b = start_daemon(cluster_toml(redis.url) + HISTORY, "--cluster-name", "b")
    wait_until(lambda: len(admin(a, "/cluster")[1]["daemons"]) == 2, what="membership")
    cb = clients_for(b)
    cb.connect("sub", room="lobby")
    wait_until(lambda: redis.subscribers(CHANNEL) == 1, what="b subscribed")
    body = json.dumps({"topic": "t", "data": "once"})
    for daemon in (a, b, a):
        status, _, _ = daemon.post("/parties/pubsub/lobby", body, headers={"Idempotency-Key": "k1"})
        assert status == 200
    post(a, "t", "after")
    assert cb.message("sub")["data"] == "once"
    assert cb.message("sub")["data"] == "after"


def test_per_address_rate_limits_hold_across_daemons(
    start_daemon: DaemonFactory, redis: RedisServer
) -> None:
    limits = '\n[[pubsub]]\nbinding = "PubSub"\npublish_rate = 0.01\npublish_burst = 4\n'
    # Once both are in each other's view, each enforces half.
    a, b = start_cluster(start_daemon, redis, 2, limits)
    body = json.dumps({"topic": "t", "data": 1})
    statuses = [d.post("/parties/pubsub/lobby", body)[0] for d in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429, 429], "4 from one address, cluster-wide"


def test_messages_lost_while_redis_was_away_are_a_hole_resumes_see(
    start_daemon: DaemonFactory, redis: RedisServer, clients_for: Callable[[Daemon], Clients]
) -> None:
    daemons = [
        start_daemon(
            cluster_toml(redis.url, "max_pending_messages = 5") + HISTORY, "--cluster-name", n
        )
        for n in ("a", "b")
    ]
    a, b = daemons
    wait_until(lambda: len(admin(a, "/cluster")[1]["daemons"]) == 2, what="membership")
    ca, cb = clients_for(a), clients_for(b)
    ca.connect("local", room="lobby")
    cb.connect("remote", room="lobby", query={"ids": "1"})
    wait_until(lambda: redis.subscribers(CHANNEL) == 2, what="both subscribed")
    post(a, "t", "before")
    cursor = cb.message("remote")["id"]
    redis.stop()
    wait_until(lambda: admin(a, "/ready")[0] == 503, what="a to notice")
    for n in range(20):  # max_pending_messages = 5: 15 of these are lost for b
        post(a, "t", n)
    assert [ca.message("local")["data"] for _ in range(21)] == ["before", *range(20)]
    redis.start()
    got = [cb.message("remote", timeout=15) for _ in range(5)]
    assert [m["data"] for m in got] == list(range(15, 20))
    # Redis came back empty: a new epoch, and in it the lost messages' numbers skipped.
    epoch = cursor.rpartition(":")[0]
    new_epoch, _, first = got[0]["id"].rpartition(":")
    assert new_epoch != epoch and first == "16"
    cb.connect("resumer", room="lobby", query={"ids": "1", "since": cursor})
    assert cb.message("resumer") == {"__resume": {"recovered": False, "replayed": 0}}
    after_hole = got[0]["id"]
    cb.connect("later", room="lobby", query={"ids": "1", "since": after_hole})
    assert cb.message("later") == {"__resume": {"recovered": True, "replayed": 4}}


def cross_delivery_works(daemons: list[Daemon], clients_for: Callable[[Daemon], Clients]) -> None:
    a, b = daemons
    wait_until(lambda: len(admin(a, "/cluster")[1]["daemons"]) == 2, what="membership")
    cb = clients_for(b)
    cb.connect("sub", room="lobby")
    wait_until(lambda: admin(b, "/cluster")[1]["link"]["channels"] == 1, what="b listening")
    deadline = time.monotonic() + 10
    while True:  # b's subscription is confirmed by Redis a moment after it is asked for
        post(a, "t", "across")
        try:
            assert cb.message("sub", timeout=0.3)["data"] == "across"
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.parametrize("security", ["password", "tls"])
def test_redis_with_a_password_or_tls(
    start_daemon: DaemonFactory,
    tmp_path: Path,
    clients_for: Callable[[Daemon], Clients],
    security: str,
) -> None:
    redis = RedisServer(tmp_path)
    if security == "password":
        redis.password = "s3cret"
    else:
        redis.tls = self_signed(tmp_path, "redis")
    redis.start()
    try:
        daemons = [
            start_daemon(cluster_toml(redis.url), "--cluster-name", name) for name in ("a", "b")
        ]
        cross_delivery_works(daemons, clients_for)
        wrong = redis.url.replace("s3cret", "nope") if redis.password else redis.url.split("?")[0]
        refused = start_daemon(cluster_toml(wrong), "--cluster-name", "c")
        wait_until(
            lambda: admin(refused, "/ready")[1]["reason"].startswith("Redis unreachable"),
            what="c to say why it is not ready",
        )
        assert "s3cret" not in "\n".join(refused.lines), "the password is never logged"
    finally:
        redis.stop()


def test_redis_through_sentinel(
    start_daemon: DaemonFactory, tmp_path: Path, clients_for: Callable[[Daemon], Clients]
) -> None:
    primary = RedisServer(tmp_path / "primary")
    primary.dir.mkdir()
    primary.password = "pw"
    primary.start()
    sentinel = RedisSentinel(tmp_path, primary).start()
    try:
        toml = (
            f'[cluster]\nmode = "sentinel"\nsentinels = ["127.0.0.1:{sentinel.port}"]\n'
            'service = "mymaster"\npassword = "pw"\nheartbeat_seconds = 0.3\n'
            "dead_after_seconds = 1.2\n" + DEFAULT_BINDING_TOML
        )
        daemons = [start_daemon(toml, "--cluster-name", name) for name in ("a", "b")]
        cross_delivery_works(daemons, clients_for)
        assert primary.subscribers(CHANNEL) == 1, "the primary the sentinel names carries it"
    finally:
        sentinel.stop()
        primary.stop()
