"""Deciding what a request is from its head alone."""

from __future__ import annotations

import pytest

from partysubd.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.http_plan import AcceptWebSocket, ReadBody, Reply, plan_request
from partysubd.rooms import Hub

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
    return Hub(parse_config(CONFIG, "t"))


def plan(hub: Hub, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> object:
    return plan_request(method, target, headers, hub.parties, hub.config.server)


def test_upgrade_is_accepted_with_the_rfc_token(hub: Hub) -> None:
    result = plan(hub, b"GET", b"/parties/pubsub/r?topics=a", [*UPGRADE, (b"cf-ipcountry", b"de")])
    assert isinstance(result, AcceptWebSocket)
    # The example key and accept value from RFC 6455, section 1.3.
    assert result.accept_token == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert result.country == "DE"
    assert result.route.room == "r"


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


def test_declared_body_over_the_limit(hub: Hub) -> None:
    result = plan(hub, b"POST", b"/parties/pubsub/r", [(b"content-length", b"101")])
    assert isinstance(result, Reply) and result.status == 413


def test_headers_over_the_limit(hub: Hub) -> None:
    result = plan(hub, b"GET", b"/parties/pubsub/r", [(b"x-big", b"a" * 400)])
    assert isinstance(result, Reply) and result.status == 431


def test_unknown_route_with_a_body_closes(hub: Hub) -> None:
    result = plan(hub, b"POST", b"/elsewhere", [(b"content-length", b"5")])
    assert result == Reply(404, "Not found", close=True)
    assert plan(hub, b"GET", b"/elsewhere", []) == Reply(404, "Not found", close=False)
