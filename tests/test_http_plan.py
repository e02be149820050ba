"""Deciding what a request is from its head alone."""

from __future__ import annotations

import pytest

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.http1 import Head
from partysubd.core.http_plan import AcceptWebSocket, ReadBody, Reply, plan_request
from partysubd.core.hub import Hub

CONFIG = (
    "[server]\nmax_header_bytes = 300\nmax_message_size = 100\n\n"
    + DEFAULT_BINDING_TOML
    + """
[[pubsub]]
binding = "PubSub"
allowed_origins = ["https://ok.example"]
"""
)

UPGRADE = [
    (b"host", b"x"),
    (b"upgrade", b"websocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]


@pytest.fixture
def hub() -> Hub:
    return Hub.build(parse_config(CONFIG, "t"))


def plan(
    hub: Hub, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: int = 0
) -> object:
    head = Head(method, target, headers, content_length=body)
    return plan_request(head, hub.registry.parties, parse_config(CONFIG, "t").server, wall=0.0)


def test_upgrade_is_accepted_with_the_rfc_token(hub: Hub) -> None:
    result = plan(hub, b"GET", b"/parties/pubsub/r?topics=a", [*UPGRADE, (b"cf-ipcountry", b"de")])
    assert isinstance(result, AcceptWebSocket)
    # The example key and accept value from RFC 6455, section 1.3.
    assert result.accept_token == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert result.country == "DE"
    assert result.route.room_name == "r"


@pytest.mark.parametrize(
    ("drop", "replace", "status"),
    [
        (b"connection", (b"connection", b"keep-alive"), 400),
        (b"sec-websocket-version", (b"sec-websocket-version", b"8"), 426),
        (b"sec-websocket-key", (b"sec-websocket-key", b"short"), 400),
    ],
)
def test_bad_upgrades(hub: Hub, drop: bytes, replace: tuple[bytes, bytes], status: int) -> None:
    headers = [h for h in UPGRADE if h[0] != drop] + [replace]
    result = plan(hub, b"GET", b"/parties/pubsub/r", headers)
    assert isinstance(result, Reply) and result.status == status and result.close


def test_post_reads_the_body_with_cors_for_an_allowed_origin(hub: Hub) -> None:
    result = plan(hub, b"POST", b"/parties/pub-sub/r", [(b"origin", b"https://ok.example")])
    assert isinstance(result, ReadBody)
    assert (b"Access-Control-Allow-Origin", b"https://ok.example") in result.cors
    assert result.limit == 100


def test_post_from_another_origin_is_forbidden(hub: Hub) -> None:
    result = plan(hub, b"POST", b"/parties/pubsub/r", [(b"origin", b"https://evil.example")])
    assert result == Reply(403, "Forbidden: origin https://evil.example is not allowed", close=True)


def test_unknown_route_with_a_body_closes(hub: Hub) -> None:
    result = plan(hub, b"POST", b"/elsewhere", [], body=5)
    assert result == Reply(404, "Not found", close=True)
    assert plan(hub, b"GET", b"/elsewhere", []) == Reply(404, "Not found", close=False)


def test_an_upgrade_with_a_body_is_refused(hub: Hub) -> None:
    result = plan(hub, b"GET", b"/parties/pubsub/r", UPGRADE, body=3)
    assert isinstance(result, Reply) and result.status == 400 and result.close


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (b"/parties/pubsub/r?since=%C2%B2:1", "since must be a cursor"),  # "²"
        (b"/parties/pubsub/r?since=e:%D9%A3", "since must be a cursor"),  # Arabic-Indic 3
        (b"/parties/pubsub/r?since=e:" + b"9" * 30, "since must be a cursor"),
        (b"/parties/pubsub/r?since=e:99999999999999999999", "since must be a cursor"),
        (b"/parties/pubsub/r?_pk=" + b"x" * 300, "_pk longer than"),
        (b"/parties/pubsub/r?topics=%ZZ", "invalid percent escape"),
        (b"/parties/pubsub/r?topics=%FF", "invalid percent escape"),
        (b"/parties/pubsub/%zz", "invalid percent escape"),
        (b"/parties/pubsub/" + b"r" * 300, "room name longer"),
        (b"/parties/pubsub/r?format=%00", "format must be"),
    ],
)
def test_query_values_are_checked_at_the_door(hub: Hub, target: bytes, reason: str) -> None:
    result = plan(hub, b"GET", target, UPGRADE)
    assert isinstance(result, Reply) and result.status == 400, result
    assert reason in result.text


def test_a_good_cursor_is_taken(hub: Hub) -> None:
    result = plan(hub, b"GET", b"/parties/pubsub/r?since=0a1b2c3d:12", UPGRADE)
    assert isinstance(result, AcceptWebSocket) and result.options.since == "0a1b2c3d:12"
