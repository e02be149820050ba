"""End to end: `partysub serve` as a subprocess, real partysocket clients on Node.

Each test follows a row of UPSTREAM.md ("Keep" or "Fix") as a partysocket
app would see it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from daemons import Daemon, DaemonFactory
from node_clients import Clients

MULTI_NODE = """
[server]
ping_interval = 0.5
ping_timeout = 2

[[durable_objects.bindings]]
name = "PubSub"
class_name = "PubSubServer"

[[durable_objects.bindings]]
name = "ChatRooms"
class_name = "Chat"

[[migrations]]
tag = "v1"
new_classes = ["PubSubServer", "Chat"]

[[pubsub]]
binding = "PubSub"
nodes = 20
locations = { wnam = 1, weur = 1 }

[[pubsub]]
binding = "ChatRooms"
nodes = 2
"""


@pytest.fixture
def multi(start_daemon: DaemonFactory) -> Daemon:
    return start_daemon(MULTI_NODE, "--log-level", "debug")


@pytest.fixture
def mclients(multi: Daemon) -> Iterator[Clients]:
    c = Clients(multi)
    yield c
    c.stop()


# --- routing -------------------------------------------------------------------


def test_kebab_and_lowercase_party_reach_the_same_room(clients: Clients) -> None:
    clients.connect("kebab", party="pub-sub")
    clients.connect("lower", party="pubsub")
    clients.send("kebab", {"topic": "t", "data": 1})
    assert clients.message("lower") == {"topic": "t", "data": 1}
    assert clients.message("kebab") == {"topic": "t", "data": 1}


def test_room_names_are_percent_decoded(clients: Clients) -> None:
    clients.connect("encoded", room="%41")
    clients.connect("plain", room="A")
    clients.send("plain", {"topic": "t", "data": "same room"})
    assert clients.message("encoded") == {"topic": "t", "data": "same room"}


def test_unknown_paths_and_empty_room(daemon: Daemon) -> None:
    assert daemon.post("/parties/other/r", "{}")[:2] == (404, "Not found")
    assert daemon.post("/nothing", "{}")[:2] == (404, "Not found")
    assert daemon.post("/parties/pubsub", "{}")[:2] == (404, "Not found")
    assert daemon.post("/parties/pubsub/", "{}")[:2] == (404, "Not found: empty room name")


def test_segments_after_the_room_are_ignored(clients: Clients, daemon: Daemon) -> None:
    clients.connect("s", room="R")
    status, _, _ = daemon.post("/parties/pubsub/R/extra/path", '{"topic":"t","data":1}')
    assert status == 200
    assert clients.message("s") == {"topic": "t", "data": 1}


def test_rooms_are_separate(clients: Clients) -> None:
    clients.connect("a", room="one")
    clients.connect("b", room="two")
    clients.send("a", {"topic": "t", "data": 1})
    assert clients.message("a") == {"topic": "t", "data": 1}
    clients.no_message("b")


def test_parties_are_separate(mclients: Clients) -> None:
    mclients.connect("pub", party="pubsub", room="r")
    mclients.connect("chat", party="chat-rooms", room="r")
    mclients.send("pub", {"topic": "t", "data": 1})
    assert mclients.message("pub") == {"topic": "t", "data": 1}
    mclients.no_message("chat")


# --- nodes and placement ---------------------------------------------------------


def node_of(daemon: Daemon, pk: str) -> str:
    line = daemon.wait_for_log(rf"connect {re.escape(pk)} ")
    match = re.search(r" node (\S+) ", line)
    assert match
    return match.group(1)


def test_room_spread_over_nodes_reaches_everyone_once_in_order(
    mclients: Clients, multi: Daemon
) -> None:
    ids = [f"s{i}" for i in range(24)]
    for cid in ids:
        mclients.connect(cid, room="big")
    nodes = {node_of(multi, cid) for cid in ids}
    assert len(nodes) >= 5, nodes
    mclients.connect("pub", room="big", query={"topics": ""})
    for i in range(30):
        mclients.send("pub", {"topic": "t", "data": i})
    for cid in ids:
        assert [m["data"] for m in mclients.messages(cid, 30)] == list(range(30))
    mclients.no_message(ids[0])


def test_country_header_picks_the_location(mclients: Clients, multi: Daemon) -> None:
    for i in range(6):
        mclients.connect(f"us{i}", room="geo", headers={"CF-IPCountry": "US"})
        mclients.connect(f"de{i}", room="geo", headers={"CF-IPCountry": "DE"})
    for i in range(6):
        assert node_of(multi, f"us{i}").startswith("wnam-")
        assert node_of(multi, f"de{i}").startswith("weur-")


def test_unknown_country_lands_anywhere_configured(mclients: Clients, multi: Daemon) -> None:
    for i in range(12):
        mclients.connect(f"x{i}", room="geo", headers={"CF-IPCountry": "T1"})
    locations = {node_of(multi, f"x{i}").split("-")[0] for i in range(12)}
    assert locations <= {"wnam", "weur"}


def test_country_header_is_configurable(start_daemon: DaemonFactory) -> None:
    config = MULTI_NODE.replace("[server]", '[server]\ncountry_header = "X-Country-Code"')
    daemon = start_daemon(config, "--log-level", "debug")
    c = Clients(daemon)
    try:
        for i in range(4):
            c.connect(f"c{i}", headers={"X-Country-Code": "GB"})
            assert node_of(daemon, f"c{i}").startswith("weur-")
    finally:
        c.stop()


def test_jurisdiction_keeps_nodes_in_the_eu(start_daemon: DaemonFactory) -> None:
    config = MULTI_NODE.replace("locations = { wnam = 1, weur = 1 }", 'jurisdiction = "eu"')
    daemon = start_daemon(config, "--log-level", "debug")
    c = Clients(daemon)
    try:
        for i in range(8):
            c.connect(f"j{i}", headers={"CF-IPCountry": "US"})
            assert node_of(daemon, f"j{i}").split("-")[0] in ("weur", "eeur")
    finally:
        c.stop()


# --- WebSocket -------------------------------------------------------------------------


def test_nothing_is_sent_on_open_and_pk_is_the_id(mclients: Clients, multi: Daemon) -> None:
    mclients.connect("quiet", room="q")
    multi.wait_for_log(r"connect quiet from ")
    mclients.no_message("quiet")


def test_topics_absent_means_everything(clients: Clients) -> None:
    clients.connect("all")
    clients.connect("pub", query={"topics": ""})
    for topic in ("a", "b:c", "*"):
        clients.send("pub", {"topic": topic, "data": topic})
    assert [m["topic"] for m in clients.messages("all", 3)] == ["a", "b:c", "*"]


def test_empty_topics_subscribes_to_nothing(clients: Clients) -> None:
    clients.connect("none", query={"topics": ""})
    clients.send("none", {"topic": "x", "data": 1})
    clients.no_message("none")


def test_prefix_patterns_need_the_colon(clients: Clients) -> None:
    clients.connect("chat", query={"topics": ["chat:*"]})
    clients.connect("pub", query={"topics": ""})
    for topic in ("chatroom", "chat", "chat:1", "chat:a:b"):
        clients.send("pub", {"topic": topic, "data": 0})
    assert [m["topic"] for m in clients.messages("chat", 2)] == ["chat:1", "chat:a:b"]
    clients.no_message("chat")


def test_one_copy_per_connection_with_overlapping_patterns(clients: Clients) -> None:
    clients.connect("overlap", query={"topics": ["*", "t", "t:*"]})
    clients.send("overlap", {"topic": "t", "data": 1})
    assert clients.message("overlap") == {"topic": "t", "data": 1}
    clients.no_message("overlap")


def test_topics_replacement_and_bad_replacement(clients: Clients) -> None:
    clients.connect("s", query={"topics": ["a"]})
    clients.send("s", {"__topics": ["b"]})
    clients.send("s", {"topic": "a", "data": 1})
    clients.send("s", {"topic": "b", "data": 2})
    assert clients.message("s") == {"topic": "b", "data": 2}
    clients.send("s", {"__topics": "abc"})
    error = clients.message("s")
    assert error["__error"]["code"] == "bad_topics"
    clients.send("s", {"topic": "b", "data": 3})
    assert clients.message("s") == {"topic": "b", "data": 3}


def test_frame_shape(clients: Clients) -> None:
    clients.connect("s")
    clients.send("s", '{"data": [1, {"x": null}], "extra": 1, "topic": "t"}')
    clients.send("s", '{"topic": "no-data"}')
    events = [clients.expect(lambda e: e["event"] == "message")["data"] for _ in range(2)]
    assert events == ['{"topic":"t","data":[1,{"x":null}]}', '{"topic":"no-data"}']


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("null", "bad_message"),
        ("[1]", "bad_message"),
        ('{"data": 1}', "bad_topic"),
        ('{"topic": 7, "data": 1}', "bad_topic"),
    ],
)
def test_bad_frames_get_an_error_and_publish_nothing(clients: Clients, raw: str, code: str) -> None:
    clients.connect("bad")
    clients.connect("other")
    clients.send("bad", raw)
    error = clients.message("bad")
    assert error["__error"]["code"] == code
    assert error["__error"]["message"]
    clients.no_message("other")
    clients.send("bad", {"topic": "ok", "data": 1})
    assert clients.message("other") == {"topic": "ok", "data": 1}


def test_binary_frames_get_an_error(clients: Clients) -> None:
    clients.connect("bin")
    clients.send("bin", {"topic": "t", "data": 1}, binary=True)
    assert clients.message("bin")["__error"]["code"] == "binary_not_supported"
    clients.send("bin", {"topic": "t", "data": 2})
    assert clients.message("bin") == {"topic": "t", "data": 2}


def test_order_per_publisher(clients: Clients) -> None:
    clients.connect("sub")
    clients.connect("pub", query={"topics": ""})
    for i in range(300):
        clients.send("pub", {"topic": f"t{i % 7}", "data": i})
    assert [m["data"] for m in clients.messages("sub", 300)] == list(range(300))


def test_message_over_the_limit_closes_1009(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(MULTI_NODE.replace("[server]", "[server]\nmax_message_size = 1000"))
    c = Clients(daemon)
    try:
        c.connect("big")
        c.connect("other")
        c.send("big", {"topic": "t", "data": "x" * 2000})
        closed = c.expect(lambda e: e["event"] == "close" and e["id"] == "big")
        assert closed["code"] == 1009
        assert "limit is 1000 bytes" in closed["reason"]
        c.send("other", {"topic": "t", "data": "x" * 900})
        assert c.message("other")["data"] == "x" * 900
    finally:
        c.stop()


def test_client_close_is_answered_at_once(clients: Clients) -> None:
    clients.connect("leaver")
    started = time.monotonic()
    clients.close("leaver")
    closed = clients.expect(lambda e: e["event"] == "close" and e["id"] == "leaver", timeout=5)
    assert time.monotonic() - started < 2
    assert closed["code"] == 1000


def test_keepalive_pings_keep_a_live_client(mclients: Clients, multi: Daemon) -> None:
    mclients.connect("live")
    started = time.monotonic()
    # Pinged and answering, for longer than ping_timeout (2 s) with its 0.5 s interval.
    for _ in range(5):
        mclients.expect(lambda e: e["event"] == "ping" and e["id"] == "live", timeout=5)
    assert time.monotonic() - started > 2
    mclients.send("live", {"topic": "t", "data": "still here"})
    assert mclients.message("live") == {"topic": "t", "data": "still here"}


def test_shutdown_closes_with_1001_and_exits_0(mclients: Clients, multi: Daemon) -> None:
    mclients.connect("a")
    mclients.connect("b", party="chat-rooms")
    started = time.monotonic()
    assert multi.stop() == 0
    assert time.monotonic() - started < 5
    for cid in ("a", "b"):
        closed = mclients.closed(cid)
        assert closed["code"] == 1001


# --- HTTP publish (PartySocket.fetch) ----------------------------------------------


def test_post_publishes(clients: Clients) -> None:
    clients.connect("s")
    answer = clients.fetch("default", {"method": "POST", "body": '{"topic":"t","data":"hi"}'})
    assert (answer["status"], answer["body"]) == (200, "OK")
    assert clients.message("s") == {"topic": "t", "data": "hi"}


@pytest.mark.parametrize("data", ["", 0, False, None])
def test_post_accepts_falsy_data(clients: Clients, data: object) -> None:
    clients.connect("s")
    body = json.dumps({"topic": "t", "data": data})
    answer = clients.fetch("default", {"method": "POST", "body": body})
    assert answer["status"] == 200
    assert clients.message("s") == {"topic": "t", "data": data}


@pytest.mark.parametrize(
    ("init", "status", "body"),
    [
        ({"method": "POST", "body": "{"}, 400, "Invalid request: body is not valid JSON"),
        ({"method": "POST", "body": ""}, 400, "Invalid request: body is empty"),
        ({"method": "POST", "body": '{"topic":""}'}, 400, 'Invalid request: "topic" must be'),
        ({"method": "POST", "body": '{"topic":"t"}'}, 400, 'Invalid request: "data" is missing'),
        ({"method": "GET"}, 405, "Method not allowed"),
        ({"method": "HEAD"}, 405, ""),
        ({"method": "DELETE"}, 405, "Method not allowed"),
    ],
)
def test_post_refusals(clients: Clients, init: dict[str, str], status: int, body: str) -> None:
    answer = clients.fetch("default", init)
    assert answer["status"] == status
    assert answer["body"].startswith(body)
    assert "at " not in answer["body"], "never a stack trace"
    if status == 405:
        assert answer["headers"]["allow"] == "POST, OPTIONS"


def test_cors_preflight(daemon: Daemon) -> None:
    status, _, headers = daemon.post(
        "/parties/pubsub/r",
        method="OPTIONS",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Headers"] == "content-type"


def test_post_answers_after_delivery(clients: Clients) -> None:
    """The 200 comes once every node has the message: a subscriber already has it queued."""
    clients.connect("s")
    answer = clients.fetch("default", {"method": "POST", "body": '{"topic":"t","data":1}'})
    assert answer["status"] == 200
    assert clients.message("s", timeout=1) == {"topic": "t", "data": 1}
