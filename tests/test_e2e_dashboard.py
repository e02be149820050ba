"""The dashboard in headless Chromium, and its live tail, against a running daemon.

Screenshots land in artifacts/screenshots/ (dashboard-overview.png,
dashboard-room.png, dashboard-login.png, dashboard-cluster.png).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from browser import Browser
from daemons import Daemon, DaemonFactory
from node_clients import Clients, node_available
from partysubd.core.config import DEFAULT_BINDING_TOML
from redis_servers import RedisServer

WITH_HISTORY = (
    DEFAULT_BINDING_TOML
    + '\n[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 100\nhistory_seconds = 60\n'
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Tests ask for it after the daemon, so it closes first: a page polling a
    daemon that has already stopped would log refused connections."""
    b = Browser()
    yield b
    b.close()
    unexpected = [e for e in b.page_errors if not any(a in e["text"] for a in b.allowed_errors)]
    assert not unexpected, f"errors in the page: {unexpected}"


def admin_url(daemon: Daemon) -> str:
    assert daemon.admin is not None
    return daemon.admin


def test_overview_counts_follow_clients(start_daemon: DaemonFactory, browser: Browser) -> None:
    daemon = start_daemon(WITH_HISTORY)
    browser.open("d", admin_url(daemon) + "/")
    browser.wait_text("d", "#parties", "No live rooms")
    clients = Clients(daemon)
    try:
        for i in range(3):
            clients.connect(f"c{i}", room="lobby", query={"topics": "chat,news:*"})
        browser.wait_text("d", "table.rooms", "lobby")
        browser.wait_text("d", "#card-connections .value", "3")
        for i in range(5):
            daemon.post("/parties/pubsub/lobby", json.dumps({"topic": "chat", "data": i}))
        browser.wait_text("d", "table.rooms td.connections", "3")
        browser.screenshot("d", "dashboard-overview")
        clients.close("c2")
        browser.wait_text("d", "#card-connections .value", "2")
    finally:
        clients.stop()


def test_room_view_and_live_tail_with_a_filter(
    start_daemon: DaemonFactory, browser: Browser
) -> None:
    daemon = start_daemon(WITH_HISTORY)
    clients = Clients(daemon)
    try:
        clients.connect("alice", room="lobby", query={"topics": "chat"})
        clients.connect("bob", room="lobby", query={"topics": "news:*"})
        browser.open("d", admin_url(daemon) + "/#/room/pubsub/lobby")
        browser.wait_text("d", "#tail-state", "live")
        browser.wait_text("d", "#patterns", "news:*")
        browser.wait_text("d", "#connections", "alice")
        daemon.post("/parties/pubsub/lobby", json.dumps({"topic": "chat", "data": "from http"}))
        clients.send("bob", {"topic": "news:eu", "data": {"headline": "from ws"}})
        browser.wait_text("d", "#tail li", "from http")
        browser.wait_text("d", "#tail li", "from ws")
        assert clients.message("alice") == {"topic": "chat", "data": "from http"}
        browser.wait_text("d", "#topics", "news:eu")
        browser.wait_text("d", "#nodes", "0")
        browser.screenshot("d", "dashboard-room")

        browser.call("fill", page="d", selector="#tail-filter", value="news:*")
        browser.call("click", page="d", selector="#tail-form button[type=submit]")
        browser.call("click", page="d", selector="#tail-clear")
        # The filter message and the next publish race over two sockets: publish
        # until a filtered-in line shows, then check nothing filtered-out came after it.
        lobby = "/parties/pubsub/lobby"
        for i in range(50):
            daemon.post(lobby, json.dumps({"topic": "chat", "data": f"hidden{i}"}))
            daemon.post(lobby, json.dumps({"topic": "news:us", "data": i}))
            lines = browser.texts("d", "#tail li")
            if any("news:us" in line for line in lines):
                break
        browser.call("click", page="d", selector="#tail-clear")
        daemon.post("/parties/pubsub/lobby", json.dumps({"topic": "chat", "data": "after"}))
        daemon.post("/parties/pubsub/lobby", json.dumps({"topic": "news:uk", "data": "last"}))
        browser.wait_text("d", "#tail li", "news:uk")
        assert not any("after" in line for line in browser.texts("d", "#tail li"))
    finally:
        clients.stop()


def test_token_login_then_tail(start_daemon: DaemonFactory, browser: Browser) -> None:
    daemon = start_daemon('[admin]\ntoken = "s3cret"\n' + WITH_HISTORY)
    # Chromium logs the refused API calls before the login as console errors.
    browser.allowed_errors.append("status of 401")
    browser.open("d", admin_url(daemon) + "/#/room/pubsub/quiet")
    browser.wait_text("d", "#status", "token required")
    browser.screenshot("d", "dashboard-login")
    browser.call("fill", page="d", selector="#login input[name=token]", value="s3cret")
    browser.call("click", page="d", selector="#login button")
    # The cookie replaces the token; the form submission lands on the overview.
    browser.wait_text("d", "#parties", "pub-sub")
    browser.call("goto", page="d", url=admin_url(daemon) + "/#/room/pubsub/quiet")
    browser.wait_text("d", "#tail-state", "live")
    # Nobody is in the room: the publish is delivered to no one but still shows.
    daemon.post("/parties/pubsub/quiet", json.dumps({"topic": "t", "data": "to an empty room"}))
    browser.wait_text("d", "#tail li", "to an empty room")
    browser.wait_text("d", "#room-missing", "No one is connected")


def test_a_tail_that_does_not_read_never_holds_up_delivery(start_daemon: DaemonFactory) -> None:
    """A viewer that stops reading loses tail lines (counted), and subscribers lose nothing."""
    if not node_available():
        pytest.fail("Node and tests/js/node_modules are needed")
    daemon = start_daemon(DEFAULT_BINDING_TOML)
    clients = Clients(daemon)
    total = 3000
    ws_url = admin_url(daemon).replace("http://", "ws://") + "/tail/pubsub/busy"

    async def main() -> None:
        # A one-message queue: once it is full the viewer's TCP window closes.
        async with open_websocket_url(ws_url, message_queue_size=0) as viewer:
            hello = json.loads(await viewer.get_message())
            assert hello["tail"]["room"] == "busy"
            await trio.to_thread.run_sync(deliver)
            seen, dropped, last = 0, 0, None
            with trio.fail_after(20):
                while seen + dropped < total:
                    batch = json.loads(await viewer.get_message())
                    seen += len(batch["messages"])
                    dropped += batch["dropped"]
                    if batch["messages"]:
                        last = batch["messages"][-1]["data"]
            assert seen + dropped == total
            assert last == total - 1, "the newest are kept"

    def deliver() -> None:
        clients.connect("sub", room="busy")
        clients.connect("pub", room="busy", query={"topics": ""})
        for i in range(total):
            clients.send("pub", {"topic": "t", "data": i})
        got = [clients.message("sub")["data"] for _ in range(total)]
        assert got == list(range(total))

    try:
        trio.run(main)
    finally:
        clients.stop()


def test_the_cluster_in_the_overview(
    start_daemon: DaemonFactory, browser: Browser, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        toml = (
            f'[cluster]\nredis_url = "{redis.url}"\nlocation = "weur"\n'
            "heartbeat_seconds = 0.3\ndead_after_seconds = 1.2\n" + DEFAULT_BINDING_TOML
        )
        a = start_daemon(toml, "--cluster-name", "web-0")
        start_daemon(toml, "--cluster-name", "web-1")
        browser.open("d", admin_url(a) + "/")
        browser.wait_text("d", "#daemons", "web-1")
        browser.wait_text("d", "#daemons", "web-0 (this one)")
        browser.wait_text("d", "#cluster h2", "2 daemons")
        browser.wait_text("d", "#cluster h2", "Redis link up")
        browser.screenshot("d", "dashboard-cluster")
    finally:
        redis.stop()
