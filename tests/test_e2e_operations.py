"""The operator's side, end to end: the CLI, the control plane, reload, systemd, drain."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from daemons import TESTS, Daemon, DaemonFactory
from node_clients import Clients
from partysubd.core.config import DEFAULT_BINDING_TOML

ROOT = TESTS.parent


def cli(
    *args: str, stdin: str | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partysub_cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def admin_get(daemon: Daemon, path: str, token: str | None = None) -> tuple[int, Any]:
    assert daemon.admin
    request = urllib.request.Request(daemon.admin + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        try:
            body = error.read().decode()
        except http.client.IncompleteRead:
            body = ""  # the status is what counts; a stopping server may cut the body
    return status, (json.loads(body) if body.startswith(("{", "[")) else body)


# --- publish and subscribe -------------------------------------------------------


def test_cli_publish_reaches_a_partysocket_subscriber(clients: Clients, daemon: Daemon) -> None:
    clients.connect("sub", room="lobby")
    url = f"http://{daemon.address}"
    done = cli("publish", "lobby", "chat:1", "hello there", "--url", url)
    assert (done.returncode, done.stdout) == (0, "OK\n"), done.stderr
    assert clients.message("sub") == {"topic": "chat:1", "data": "hello there"}
    done = cli("publish", "lobby", "prices", '{"eur": 1.08}', "--json", "--url", url)
    assert done.returncode == 0
    assert clients.message("sub") == {"topic": "prices", "data": {"eur": 1.08}}


def test_cli_publish_lines_from_stdin(clients: Clients, daemon: Daemon) -> None:
    clients.connect("sub", room="lobby")
    done = cli(
        "publish",
        "lobby",
        "t",
        "-",
        "--json",
        "--lines",
        "--url",
        f"http://{daemon.address}",
        stdin='{"n": 1}\n{"n": 2}\n\n{"n": 3}\n',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "OK\nOK\nOK\n"
    assert [m["data"]["n"] for m in clients.messages("sub", 3)] == [1, 2, 3]


def test_cli_publish_failures_are_one_line(daemon: Daemon) -> None:
    refused = cli("publish", "r", "t", "x", "--url", "http://127.0.0.1:9")
    assert refused.returncode == 1
    assert refused.stderr.startswith("partysub: cannot reach the daemon at http://127.0.0.1:9")
    assert "Traceback" not in refused.stderr
    wrong_party = cli(
        "publish", "r", "t", "x", "--url", f"http://{daemon.address}", "--party", "nope"
    )
    assert wrong_party.returncode == 1
    assert wrong_party.stderr.strip() == "partysub: HTTP 404: Not found"
    bad_json = cli("publish", "r", "t", "{oops", "--json", "--url", f"http://{daemon.address}")
    assert bad_json.returncode == 2
    assert "message 1 is not JSON" in bad_json.stderr


def test_cli_subscribe_receives_a_post(daemon: Daemon) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "partysub_cli",
            "subscribe",
            "lobby",
            "--topics",
            "a,b:*",
            "--count",
            "2",
            "--url",
            f"http://{daemon.address}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 10
    while admin_get(daemon, "/rooms")[1]["totals"]["connections"] == 0:
        assert time.monotonic() < deadline and proc.poll() is None, "the subscriber never connected"
        time.sleep(0.05)
    for topic in ("nope", "a", "b:1"):
        daemon.post("/parties/pubsub/lobby", json.dumps({"topic": topic, "data": topic}))
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"topic": "a", "data": "a"},
        {"topic": "b:1", "data": "b:1"},
    ]


def test_cli_subscribe_to_a_wrong_party(daemon: Daemon) -> None:
    done = cli("subscribe", "r", "--party", "nope", "--url", f"http://{daemon.address}")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"partysub: cannot subscribe to 'r' at http://{daemon.address}: HTTP 404: Not found"
    )


# --- the control plane -----------------------------------------------------------


def test_rooms_room_and_topics_show_the_right_counts(clients: Clients, daemon: Daemon) -> None:
    clients.connect(
        "a", room="lobby", query={"topics": ["chat:*", "news"]}, headers={"CF-IPCountry": "US"}
    )
    clients.connect("b", room="lobby", query={"topics": ["chat:*"]})
    clients.connect("c", room="other")
    clients.send("b", {"topic": "chat:1", "data": 1})
    clients.send("b", {"topic": "chat:1", "data": 2})
    clients.send("b", {"topic": "news", "data": 3})
    clients.messages("a", 3)
    admin = ["--admin", daemon.admin or ""]

    done = cli("rooms", "--json", *admin)
    assert done.returncode == 0, done.stderr
    [party] = json.loads(done.stdout)["parties"]
    lobby = next(r for r in party["rooms"] if r["room"] == "lobby")
    assert (lobby["connections"], lobby["messages_in"], lobby["messages_out"]) == (2, 3, 5)
    table = cli("rooms", *admin)
    assert "lobby" in table.stdout and "other" in table.stdout

    done = cli("room", "lobby", "--json", *admin)
    room = json.loads(done.stdout)
    assert sum(n["connections"] for n in room["nodes"]) == 2
    ids = {c["id"]: c for c in room["connections"]}
    assert set(ids) == {"a", "b"}
    assert ids["a"]["country"] == "US" and ids["a"]["node"].startswith("wnam-")
    assert ids["a"]["topics"] == ["chat:*", "news"]
    assert "wnam" in cli("room", "lobby", *admin).stdout

    done = cli("topics", "lobby", "--json", *admin)
    topics = json.loads(done.stdout)
    assert topics["patterns"] == [
        {"pattern": "chat:*", "connections": 2},
        {"pattern": "news", "connections": 1},
    ]
    assert [(t["topic"], t["count"]) for t in topics["recent_topics"]] == [
        ("news", 1),
        ("chat:1", 2),
    ]
    assert "chat:*" in cli("topics", "lobby", *admin).stdout


def test_wrong_room_and_unreachable_control_plane(daemon: Daemon) -> None:
    done = cli("room", "ghost", "--admin", daemon.admin or "")
    assert done.returncode == 1
    assert (
        done.stderr.strip() == "partysub: no room 'ghost' in party 'pubsub': it has no connections"
    )
    done = cli("rooms", "--admin", "http://127.0.0.1:9")
    assert done.returncode == 1
    assert done.stderr.startswith("partysub: cannot reach the daemon at http://127.0.0.1:9")


def test_daemon_view_metrics_health_ready(clients: Clients, daemon: Daemon) -> None:
    clients.connect("m")
    clients.send("m", "not json")
    clients.message("m")
    clients.send("m", {"topic": "t", "data": 1})
    clients.message("m")
    status, info = admin_get(daemon, "/daemon")
    assert status == 200
    assert info["version"] and info["uptime"] >= 0
    assert info["listeners"]["public"] == f"http://{daemon.address}"
    assert info["bindings"][0]["parties"] == ["pub-sub", "pubsub"]
    assert info["totals"]["connections"] == 1
    assert admin_get(daemon, "/health") == (200, {"status": "ok"})
    assert admin_get(daemon, "/ready") == (200, {"ready": True})
    status, text = admin_get(daemon, "/metrics")
    assert status == 200
    assert 'partysub_connections{party="pub-sub"} 1.0' in text
    assert 'partysub_messages_in_total{party="pub-sub"} 1.0' in text
    assert 'partysub_error_frames_total{code="bad_json"} 1.0' in text
    assert "partysub_publish_to_flush_seconds_bucket" in text
    assert admin_get(daemon, "/nope")[0] == 404


def test_control_plane_token(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = start_daemon('[admin]\ntoken = "s3cret"\n' + DEFAULT_BINDING_TOML)
    status, body = admin_get(daemon, "/rooms")
    assert status == 401 and "bearer token" in body["error"]
    assert admin_get(daemon, "/rooms", token="wrong")[0] == 401
    assert admin_get(daemon, "/rooms", token="s3cret")[0] == 200
    assert admin_get(daemon, "/health")[0] == 200, "probes need no token"
    done = cli("rooms", "--admin", daemon.admin or "", "--token", "s3cret", "--json")
    assert done.returncode == 0


def test_control_plane_on_a_unix_socket(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    daemon = start_daemon(None, "--admin-listen", f"unix:{path}")
    done = cli("rooms", "--admin", f"unix:{path}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["connections"] == 0
    assert daemon.alive()


def test_admin_on_the_network_without_token_refuses_to_start(tmp_path: Path) -> None:
    done = cli("serve", "--port", "0", "--admin-listen", "0.0.0.0:0")
    assert done.returncode == 2
    assert "would be open to the network" in done.stderr


# --- config --------------------------------------------------------------------------


def test_config_check_catches_each_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[server]\nport = "x"\n\n[[durable_objects.bindings]]\nname = "PubSub"\n'
        'class_name = "Nope"\n\n[[pubsub]]\nbinding = "PubSub"\nlocations = { wnam = 0 }\n'
        'jurisdiction = "eu"\n'
    )
    done = cli("config", "check", "-c", str(path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"{path}:2: [server.port] error: must be an integer, not a string" in lines
    assert any(
        line.startswith(f"{path}:6: [durable_objects.bindings[0].class_name]") for line in lines
    )
    assert any(line.startswith(f"{path}:10: [pubsub[0].locations.wnam]") for line in lines)


def test_config_check_and_show_the_example() -> None:
    done = cli("config", "check", "-c", "config/partysub.toml")
    assert done.returncode == 0
    assert "PubSub: parties pub-sub, pubsub; 100 nodes per room (eu: 25, wnam: 75)" in done.stdout
    shown = cli("config", "show", "-c", "config/partysub.toml")
    assert shown.returncode == 0
    import tomllib

    document = tomllib.loads(shown.stdout)
    assert document["server"]["ping_timeout"] == 20
    assert document["server"]["drain_seconds"] == 10
    assert document["pubsub"][0]["nodes"] == 100
    comments = [line for line in shown.stdout.splitlines() if line.startswith("#")]
    assert comments[0] == "# PubSub: 100 nodes per room"
    assert len(" ".join(line[1:] for line in comments[1:]).split()) == 100


def test_config_show_piped_into_config_check() -> None:
    for example in ("config/partysub.toml", "config/cluster.toml"):
        shown = cli("config", "show", "-c", example)
        assert shown.returncode == 0, shown.stderr
        done = cli("config", "check", "-c", "-", stdin=shown.stdout)
        assert done.returncode == 0, done.stdout
        assert done.stdout.endswith("<stdin>: OK\n"), done.stdout


def test_version_and_help() -> None:
    assert re.fullmatch(r"partysub \d+\.\d+\.\d+\n", cli("--version").stdout)
    for command in ("serve", "publish", "subscribe", "rooms", "room", "topics"):
        done = cli(command, "--help")
        assert done.returncode == 0 and "Example" in done.stdout, command
    bad = cli("publish", "only-room")
    assert bad.returncode == 2
    assert bad.stderr == "partysub: Missing argument 'topic'. (see 'partysub publish --help')\n"
    flag = cli("rooms", "--bogus")
    assert flag.returncode == 2
    assert flag.stderr == "partysub: No such option: --bogus (see 'partysub rooms --help')\n"


# --- reload, systemd, drain ------------------------------------------------------------


RELOADABLE = (
    """
[server]
max_message_size = 1000
ping_interval = 0

"""
    + DEFAULT_BINDING_TOML
)


def test_reload_keeps_connections_and_applies_a_new_limit(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    daemon = start_daemon(RELOADABLE)
    clients = Clients(daemon)
    try:
        for cid in ("a", "b", "c"):
            clients.connect(cid)
        clients.send("a", {"topic": "t", "data": "x" * 1500})
        assert clients.expect(lambda e: e["event"] == "close" and e["id"] == "a")["code"] == 1009
        config = tmp_path / "partysub.toml"
        config.write_text(
            RELOADABLE.replace("max_message_size = 1000", "max_message_size = 5000")
            + '\n[[durable_objects.bindings]]\nname = "Chat"\nclass_name = "PubSubServer"\n'
        )
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_log(r"reload: server.max_message_size: 1000 -> 5000")
        daemon.wait_for_log(r"reload: binding Chat added")
        clients.send("b", {"topic": "t", "data": "y" * 1500})
        assert clients.message("c")["data"] == "y" * 1500, (
            "an existing connection got the new limit"
        )
        assert clients.message("b")["data"] == "y" * 1500
        clients.connect("chat", party="chat")
        config.write_text("[server]\nport = ")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_log(r"reload refused")
        clients.send("c", {"topic": "still", "data": 1})
        assert clients.message("b") == {"topic": "still", "data": 1}
        assert not [e for e in clients.backlog if e["event"] == "close" and e["id"] != "a"]
    finally:
        clients.stop()


def test_reload_reports_what_cannot_change(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    daemon = start_daemon(RELOADABLE)
    # The port is --port 0 on the command line, which wins; the host comes from the file.
    (tmp_path / "partysub.toml").write_text(
        RELOADABLE.replace("[server]", '[server]\nhost = "127.0.0.2"')
    )
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log(r"reload: cannot apply listen address 127.0.0.2:0: still 127.0.0.1:0")
    assert daemon.post("/parties/pubsub/r", '{"topic":"t","data":1}')[0] == 200


class FakeSystemd:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)
        self.messages: list[dict[str, str]] = []

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines())
        self.messages.append(fields)
        return fields

    def until(self, key: str) -> dict[str, str]:
        while True:
            fields = self.next()
            if key in fields:
                return fields


def test_sd_notify_ready_reload_watchdog_stopping(tmp_path: Path) -> None:
    systemd = FakeSystemd(tmp_path / "notify")
    config = tmp_path / "partysub.toml"
    config.write_text(RELOADABLE)
    env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "partysub_cli",
            "serve",
            "-c",
            str(config),
            "--port",
            "0",
            "--admin-listen",
            "off",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = systemd.next()
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert "connections" in ready["STATUS"]
        assert systemd.until("WATCHDOG")["WATCHDOG"] == "1"
        proc.send_signal(signal.SIGHUP)
        reloading = systemd.until("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert systemd.until("READY")["READY"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert systemd.until("STOPPING")["STOPPING"] == "1"
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        systemd.sock.close()
    order = [
        next(k for k in ("READY", "RELOADING", "STOPPING") if k in m)
        for m in systemd.messages
        if any(k in m for k in ("READY", "RELOADING", "STOPPING"))
    ]
    assert order == ["READY", "RELOADING", "READY", "STOPPING"]


@pytest.mark.serial
def test_sigterm_drains_in_batches_and_exits_0(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(
        RELOADABLE.replace("ping_interval = 0", "ping_interval = 0\ndrain_seconds = 1")
    )
    clients = Clients(daemon)
    try:
        ids = [f"c{i}" for i in range(20)]
        for cid in ids:
            clients.connect(cid)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        closed_at = []
        for cid in ids:
            event = clients.closed(cid)
            assert event["code"] == 1001
            closed_at.append(time.monotonic() - started)
        assert daemon.proc.wait(10) == 0
        assert max(closed_at) - min(closed_at) > 0.4, "closes are spread over the drain window"
        assert max(closed_at) < 5
        daemon.wait_for_log(r"draining 20 connections over 1s")
    finally:
        clients.stop()


@pytest.mark.serial
def test_ready_turns_false_while_draining(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(
        RELOADABLE.replace("ping_interval = 0", "ping_interval = 0\ndrain_seconds = 3")
    )
    clients = Clients(daemon)
    try:
        # Enough connections that the paced drain lasts about a second: with
        # one, the daemon may be gone before the first probe.
        for i in range(10):
            clients.connect(f"held{i}")
        daemon.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        status: int | None = None
        while time.monotonic() < deadline:
            try:
                status, _ = admin_get(daemon, "/ready")
            except OSError:
                break
            if status == 503:
                break
            time.sleep(0.05)
        assert status == 503
        assert daemon.proc.wait(10) == 0
    finally:
        clients.stop()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize(
    ("source", "name"),
    [("partysub.service", "partysub.service"), ("partysub@.service", "partysub@0.service")],
)
def test_systemd_unit_verifies(tmp_path: Path, source: str, name: str) -> None:
    unit = (ROOT / "config" / source).read_text()
    executable = shutil.which("partysub")
    assert executable, "the partysub command is installed"
    unit = unit.replace("/usr/local/bin/partysub", executable)
    # A template is verified as one of its instances.
    path = tmp_path / name
    path.write_text(unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert str(path) not in output, output


def test_json_log_format(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(None, "--log-format", "json")
    entry = json.loads(daemon.wait_for_log(r'"message": "partysub .* listening on'))
    assert entry["level"] == "info" and entry["logger"] == "partysubd"
    assert entry["time"].endswith("Z")


def test_config_check_and_show_the_cluster_example_without_secrets(tmp_path: Path) -> None:
    done = cli("config", "check", "-c", "config/cluster.toml")
    assert done.returncode == 0 and "cluster: Redis in single mode" in done.stdout
    secret = (ROOT / "config" / "cluster.toml").read_text()
    secret = secret.replace("redis://127.0.0.1:6379", "redis://app:hunter2@127.0.0.1:6379/0")
    secret = secret.replace('mode = "single"', 'mode = "single"\npassword = "hunter3"')
    path = tmp_path / "secret.toml"
    path.write_text(secret)
    shown = cli("config", "show", "-c", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout and "hunter3" not in shown.stdout
    import tomllib

    cluster = tomllib.loads(shown.stdout)["cluster"]
    assert cluster["redis_url"] == "redis://app:<set>@127.0.0.1:6379/0"
    assert cluster["password"] == "<set>" and cluster["heartbeat_seconds"] == 2
