"""Request targets to parties and rooms."""

from __future__ import annotations

import pytest

from partysubd.core.routing import (
    Route,
    RouteError,
    kebab_case,
    party_names,
    route,
    topics_from_query,
)

PARTIES = {"pub-sub": "P", "pubsub": "P", "chat": "C"}


@pytest.mark.parametrize(
    ("name", "kebab"),
    [("PubSub", "pub-sub"), ("pubsub", "pubsub"), ("MyPubSub", "my-pub-sub"), ("ABC", "a-b-c")],
)
def test_kebab_case_like_the_original(name: str, kebab: str) -> None:
    assert kebab_case(name) == kebab


def test_party_names_kebab_and_lower() -> None:
    assert party_names("PubSub") == ("pub-sub", "pubsub")
    assert party_names("chat") == ("chat",)


def test_route_ok_with_query() -> None:
    found = route("/parties/pubsub/room1?topics=a,b&_pk=x", PARTIES)
    assert found == Route("P", "room1", {"topics": "a,b", "_pk": "x"})


def test_room_is_percent_decoded() -> None:
    assert isinstance(found := route("/parties/pub-sub/%41%20b", PARTIES), Route)
    assert found.room_name == "A b"
    assert isinstance(found := route("/parties/pub-sub/caf%C3%A9", PARTIES), Route)
    assert found.room_name == "café"


def test_trailing_segments_are_ignored() -> None:
    found = route("/parties/chat/R/x/y", PARTIES)
    assert isinstance(found, Route) and found.room_name == "R"


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("/", 404, "Not found"),
        ("/parties/pubsub", 404, "Not found"),
        ("/parties/other/r", 404, "Not found"),
        ("/party/pubsub/r", 404, "Not found"),
        ("/parties/pubsub/", 404, "Not found: empty room name"),
        (
            "/parties/pubsub/%FF",
            400,
            "Bad request: room name has an invalid percent escape or is not UTF-8",
        ),
        (
            "/parties/pubsub/%4",
            400,
            "Bad request: room name has an invalid percent escape or is not UTF-8",
        ),
    ],
)
def test_route_errors(target: str, status: int, reason: str) -> None:
    assert route(target, PARTIES) == RouteError(status, reason)


def test_topics_from_query() -> None:
    assert topics_from_query({}) == ("*",)
    assert topics_from_query({"topics": ""}) == ()
    assert topics_from_query({"topics": "a,b:*"}) == ("a", "b:*")
    # No trimming, as in the original.
    assert topics_from_query({"topics": "a, b"}) == ("a", " b")


def test_first_query_value_wins() -> None:
    found = route("/parties/chat/r?topics=a&topics=b", PARTIES)
    assert isinstance(found, Route) and found.query["topics"] == "a"
