"""From a request target to a party and a room.

``/parties/<party>/<room>[/anything]?query``. The party is the binding name in
kebab-case (``PubSub`` -> ``pub-sub``, what the original routes) or all in
lower case (``pubsub``, what the original's README tells clients to use). The
room is the percent-decoded path segment (the original kept it encoded, so
``%41`` and ``A`` were different rooms).

Percent escapes are decoded strictly, in the path and the query alike: an
escape that is not ``%`` and two hex digits, or bytes that are not UTF-8 once
decoded, refuse the request with a 400 naming the part, rather than becoming
a replacement character or a literal ``%`` somewhere downstream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

P = TypeVar("P")

PARTIES_PREFIX = "parties"


def kebab_case(name: str) -> str:
    """The original's ``camelCaseToKebabCase``, quirks included."""
    kebab = re.sub("[A-Z]", lambda m: "-" + m.group(0).lower(), name)
    kebab = kebab.removeprefix("-")
    return kebab.removesuffix("-")


def party_names(binding_name: str) -> tuple[str, ...]:
    """The URL names a binding answers to: kebab-case, and all lower case."""
    return tuple(dict.fromkeys((kebab_case(binding_name), binding_name.lower())))


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    party: P
    room_name: str
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteError:
    status: int
    reason: str


# Longest room name, in characters: it names Redis keys and channels, log lines
# and control-plane URLs.
MAX_ROOM_LENGTH = 256
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(text: str, plus_is_space: bool = False) -> str | None:
    """``text`` with its percent escapes decoded as UTF-8, or None if any is invalid."""
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        return None
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None


def split_target(target: str) -> tuple[str, dict[str, str]] | RouteError:
    """Path and query; the first value of a repeated parameter wins (as URLSearchParams.get)."""
    path, _, query_string = target.partition("?")
    query: dict[str, str] = {}
    for pair in query_string.split("&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = percent_decode(raw_key, plus_is_space=True)
        value = percent_decode(raw_value, plus_is_space=True)
        if key is None or value is None:
            name = key if key is not None else raw_key[:40]
            return RouteError(
                400, f"Bad request: query parameter {name!r} has an invalid percent escape"
            )
        query.setdefault(key, value)
    return path, query


def route(target: str, parties: Mapping[str, P]) -> Route[P] | RouteError:
    split = split_target(target)
    if isinstance(split, RouteError):
        return split
    path, query = split
    parts = path.split("/")
    if len(parts) < 4 or parts[0] != "" or parts[1] != PARTIES_PREFIX:
        return RouteError(404, "Not found")
    party_name = percent_decode(parts[2])
    party = parties.get(party_name) if party_name is not None else None
    if party is None:
        return RouteError(404, "Not found")
    if not parts[3]:
        return RouteError(404, "Not found: empty room name")
    room = percent_decode(parts[3])
    if room is None:
        return RouteError(
            400, "Bad request: room name has an invalid percent escape or is not UTF-8"
        )
    if len(room) > MAX_ROOM_LENGTH:
        return RouteError(400, f"Bad request: room name longer than {MAX_ROOM_LENGTH} characters")
    return Route(party, room, query)


def topics_from_query(query: Mapping[str, str]) -> tuple[str, ...]:
    """The initial subscription: ``*`` when absent, nothing when empty, else split on ``,``."""
    value = query.get("topics")
    if value is None:
        return ("*",)
    if value == "":
        return ()
    return tuple(value.split(","))
