"""What to do with an HTTP request, decided from its head alone.

Every request on the public port is one of three things: a WebSocket upgrade
to accept, a POST whose body is to be read and published, or something to
answer right away with a status and a reason. Deciding which is pure: the
request line and headers in, a plan out. The session carries the plan out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from wsproto.utilities import generate_accept_token

from .auth import FULL_ACCESS, Grant, check_api_key, verify
from .config import Binding, ServerSettings
from .history import parse_cursor
from .http1 import Head
from .protocol import MAX_IDEM_LENGTH
from .registry import Party
from .routing import Route, RouteError, route

# Longest connection id (``_pk``): it keys rooms' connection tables and log lines.
MAX_ID_LENGTH = 256
Headers = list[tuple[bytes, bytes]]

ALLOW = b"POST, OPTIONS"
PREFLIGHT_HEADERS = b"Content-Type, Authorization, Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer now; ``close`` ends the connection after it."""

    status: int
    text: str
    headers: Headers = field(default_factory=list)
    close: bool = False


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """What a connection asked for in its URL, beyond its topics."""

    ids: bool = False  # ids=1: every frame carries its cursor
    since: str | None = None  # since=<cursor>: replay what was missed first
    msgpack: bool = False  # format=msgpack
    skip_self: bool = False  # skip_self=1|0 (default: the binding's)


@dataclass(frozen=True, slots=True)
class AcceptWebSocket:
    route: Route[Party]
    accept_token: bytes
    country: str | None
    options: SocketOptions = SocketOptions()
    client_address: str | None = None  # from client_address_header
    grant: Grant = FULL_ACCESS


@dataclass(frozen=True, slots=True)
class ReadBody:
    """A publish: read the body (at most ``limit`` bytes), then publish it."""

    route: Route[Party]
    cors: Headers
    limit: int
    country: str | None
    idem: str | None = None  # Idempotency-Key
    skip: str | None = None  # ?_pk=<id>: a connection id not to deliver to
    client_address: str | None = None  # from client_address_header
    grant: Grant = FULL_ACCESS
    content_type: str = ""  # application/msgpack: a MessagePack body


Plan = Reply | AcceptWebSocket | ReadBody


def plan_request(
    head: Head, parties: Mapping[str, Party], settings: ServerSettings, wall: float
) -> Plan:
    """What to do with a request, from its head; ``wall`` is the wall-clock time
    (for token expiry)."""
    headers: dict[bytes, bytes] = {}
    for name, value in head.headers:
        headers.setdefault(name, value)  # the first of a repeated header counts
    has_body = head.has_body
    # The reader allows only visible ASCII in a request target.
    found = route(head.target.decode("ascii"), parties)
    if isinstance(found, RouteError):
        return Reply(found.status, found.reason, close=has_body)
    binding = found.party.binding
    raw_origin = headers.get(b"origin")
    origin = raw_origin.decode("latin-1") if raw_origin is not None else None
    method = head.method
    websocket = method == b"GET" and headers.get(b"upgrade", b"").lower() == b"websocket"
    if method == b"OPTIONS":
        return _preflight(binding, origin, headers, has_body)
    if not websocket and method != b"POST":
        verb = method.decode("ascii", "replace")
        return Reply(
            405,
            f"Method not allowed: publish with POST (got {verb})",
            [(b"Allow", ALLOW)],
            close=has_body,
        )
    if not binding.options.origin_allowed(origin):
        return _forbidden(origin)
    grant = authorize(found, headers, wall, api_key_allowed=not websocket)
    if isinstance(grant, Reply):
        return grant
    if websocket:
        if has_body:
            return Reply(400, "Bad request: a WebSocket upgrade has no body", close=True)
        return _websocket(found, headers, settings, grant)
    pk = found.query.get("_pk") or None
    if pk is not None and len(pk) > MAX_ID_LENGTH:
        return Reply(400, f"Bad request: _pk longer than {MAX_ID_LENGTH} characters", close=True)
    idem = headers.get(b"idempotency-key")
    if idem is not None and (not idem or len(idem) > MAX_IDEM_LENGTH or not idem.isascii()):
        return Reply(
            400,
            f"Bad request: Idempotency-Key must be 1 to {MAX_IDEM_LENGTH} ASCII characters",
            close=True,
        )
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    return ReadBody(
        found,
        cors_headers(binding, origin),
        settings.max_message_size,
        _country(headers, settings),
        idem.decode("ascii") if idem else None,
        pk,
        _client_address(headers, settings),
        grant,
        content_type,
    )


def authorize(
    found: Route[Party], headers: dict[bytes, bytes], wall: float, *, api_key_allowed: bool
) -> Grant | Reply:
    """What the request's credentials allow in this room, or the 401/403 that refuses it."""
    settings = found.party.binding.auth
    if not settings.required:
        return FULL_ACCESS
    bearer = headers.get(b"authorization", b"")
    token = bearer[7:].decode("latin-1").strip() if bearer[:7].lower() == b"bearer " else ""
    token = token or found.query.get("token", "")
    if not token:
        return _unauthorized("a token is required (token query parameter or Authorization: Bearer)")
    if api_key_allowed and check_api_key(token, settings):
        return FULL_ACCESS
    grant = verify(token, settings, wall)
    if isinstance(grant, str):
        return _unauthorized(grant)
    if not grant.may_enter(found.room_name):
        return Reply(
            403, f"Forbidden: the token does not allow room {found.room_name!r}", close=True
        )
    return grant


def _unauthorized(reason: str) -> Reply:
    return Reply(
        401,
        f"Unauthorized: {reason}",
        [(b"WWW-Authenticate", b'Bearer realm="partysub"')],
        close=True,
    )


def too_large(limit: int) -> Reply:
    return Reply(413, f"Payload too large: the limit is {limit} bytes", close=True)


def cors_headers(binding: Binding, origin: str | None) -> Headers:
    """What a response to an allowed browser origin carries."""
    if origin is None or not binding.options.origin_allowed(origin):
        return []
    allow = b"*" if "*" in binding.options.allowed_origins else origin.encode("latin-1")
    return [(b"Access-Control-Allow-Origin", allow), (b"Vary", b"Origin")]


def _forbidden(origin: str | None) -> Reply:
    return Reply(403, f"Forbidden: origin {origin} is not allowed", close=True)


def _preflight(
    binding: Binding, origin: str | None, headers: dict[bytes, bytes], has_body: bool
) -> Reply:
    if origin is None or not binding.options.origin_allowed(origin):
        return Reply(403, f"Forbidden: origin {origin} is not allowed", close=has_body)
    requested = headers.get(b"access-control-request-headers", PREFLIGHT_HEADERS)
    return Reply(
        204,
        "",
        [
            *cors_headers(binding, origin),
            (b"Access-Control-Allow-Methods", ALLOW),
            (b"Access-Control-Allow-Headers", requested),
            (b"Access-Control-Max-Age", b"86400"),
        ],
        close=has_body,
    )


def _websocket(
    found: Route[Party], headers: dict[bytes, bytes], settings: ServerSettings, grant: Grant
) -> AcceptWebSocket | Reply:
    connection = {token.strip().lower() for token in headers.get(b"connection", b"").split(b",")}
    if b"upgrade" not in connection:
        return Reply(400, "Bad request: Connection header must include Upgrade", close=True)
    if headers.get(b"sec-websocket-version") != b"13":
        return Reply(
            426,
            "Upgrade required: only WebSocket version 13 is supported",
            [(b"Sec-WebSocket-Version", b"13")],
            close=True,
        )
    key = headers.get(b"sec-websocket-key", b"")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return Reply(400, "Bad request: missing or invalid Sec-WebSocket-Key", close=True)
    options = socket_options(found.query, found.party.binding.options.skip_self)
    if isinstance(options, str):
        return Reply(400, f"Bad request: {options}", close=True)
    party = found.party
    limit = party.binding.options.limits.max_connections_per_room
    room = party.rooms.get(found.room_name)
    if limit and room is not None and room.connections >= limit:
        return Reply(503, f"Room full: at most {limit} connections", [(b"Retry-After", b"5")])
    if not party.has_room_for(found.room_name):
        return Reply(
            503,
            f"Too many rooms: at most {party.binding.options.max_rooms} are open in this party",
            [(b"Retry-After", b"5")],
        )
    return AcceptWebSocket(
        found,
        generate_accept_token(key),
        _country(headers, settings),
        options,
        _client_address(headers, settings),
        grant,
    )


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool | str:
    value = query.get(name)
    if value is None:
        return default
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    return f"{name} must be 1 or 0, not {value[:40]!r}"


def socket_options(query: Mapping[str, str], skip_self_default: bool) -> SocketOptions | str:
    """The connection's options from its query, or why they are wrong."""
    ids = _flag(query, "ids", False)
    skip_self = _flag(query, "skip_self", skip_self_default)
    for flag in (ids, skip_self):
        if isinstance(flag, str):
            return flag
    fmt = query.get("format", "json")
    if fmt not in ("json", "msgpack"):
        return f"format must be json or msgpack, not {fmt[:40]!r}"
    since = query.get("since") or None
    if since is not None and parse_cursor(since) is None:
        return "since must be a cursor (<epoch>:<seq>, a message's id)"
    pk = query.get("_pk") or None
    if pk is not None and len(pk) > MAX_ID_LENGTH:
        return f"_pk longer than {MAX_ID_LENGTH} characters"
    return SocketOptions(bool(ids), since, fmt == "msgpack", bool(skip_self))


def _client_address(headers: dict[bytes, bytes], settings: ServerSettings) -> str | None:
    if not settings.client_address_header:
        return None
    value = headers.get(settings.client_address_header.lower().encode("latin-1"))
    if not value:
        return None
    return value.decode("latin-1").rsplit(",", 1)[-1].strip() or None


def _country(headers: dict[bytes, bytes], settings: ServerSettings) -> str | None:
    value = headers.get(settings.country_header.lower().encode("latin-1"))
    return value.decode("latin-1").strip().upper() if value else None
