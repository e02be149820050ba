"""From a request target to a party and a room.

``/parties/<party>/<room>[/anything]?query``. The party is the binding name in
kebab-case (``PubSub`` -> ``pub-sub``, what the original routes) or all in
lower case (``pubsub``, what the original's README tells clients to use). The
room is the percent-decoded path segment (the original kept it encoded, so
``%41`` and ``A`` were different rooms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, unquote

P = TypeVar("P")

PARTIES_PREFIX = "parties"


def kebab_case(name: str) -> str:
    """The original's ``camelCaseToKebabCase``, quirks included."""
    kebab = re.sub("[A-Z]", lambda m: "-" + m.group(0).lower(), name)
    kebab = kebab.removeprefix("-")
    return kebab.removesuffix("-")


def party_names(binding: str) -> tuple[str, ...]:
    """The URL names a binding answers to: kebab-case, and all lower case."""
    return tuple(dict.fromkeys((kebab_case(binding), binding.lower())))


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    party: P
    room: str
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteError:
    status: int
    reason: str


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """Path and query; the first value of a repeated parameter wins (as URLSearchParams.get)."""
    path, _, query_string = target.partition("?")
    query: dict[str, str] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        query.setdefault(key, value)
    return path, query


def route(target: str, parties: Mapping[str, P]) -> Route[P] | RouteError:
    path, query = split_target(target)
    parts = path.split("/")
    if len(parts) < 4 or parts[0] != "" or parts[1] != PARTIES_PREFIX:
        return RouteError(404, "Not found")
    party = parties.get(unquote(parts[2]))
    if party is None:
        return RouteError(404, "Not found")
    if not parts[3]:
        return RouteError(404, "Not found: empty room name")
    try:
        room = unquote(parts[3], errors="strict")
    except UnicodeDecodeError:
        return RouteError(400, "Bad request: room name is not valid UTF-8")
    return Route(party, room, query)


def topics_from_query(query: Mapping[str, str]) -> tuple[str, ...]:
    """The initial subscription: ``*`` when absent, nothing when empty, else split on ``,``."""
    value = query.get("topics")
    if value is None:
        return ("*",)
    if value == "":
        return ()
    return tuple(value.split(","))
