"""Talking to a running daemon: publish over HTTP, tail over WebSocket, ask the control plane.

Every failure becomes a ``RemoteError`` with one line that says what went
wrong and where; the command prints it and exits non-zero.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import trio
import trio_websocket

from partysubd.config import Config


class RemoteError(Exception):
    """One line for the user."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the daemon's public listener is, and which party to use."""

    base_url: str
    party: str

    @classmethod
    def resolve(cls, url: str | None, party: str | None, config: Config | None) -> Endpoint:
        if url is None and config is not None:
            host = config.server.host
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            url = f"http://{'[' + host + ']' if ':' in host else host}:{config.server.port}"
        if party is None and config is not None:
            party = config.bindings[0].party_names[0]
        return cls((url or "http://127.0.0.1:1999").rstrip("/"), party or "pubsub")

    def room_path(self, room: str) -> str:
        return f"/parties/{quote(self.party, safe='')}/{quote(room, safe='')}"


@dataclass(frozen=True, slots=True)
class AdminEndpoint:
    """The control plane: ``http://host:port`` or ``unix:/path``, and its token."""

    address: str
    token: str | None

    @classmethod
    def resolve(
        cls, address: str | None, token: str | None, config: Config | None
    ) -> AdminEndpoint:
        if address is None and config is not None:
            listen = config.admin.listen
            if listen == "off":
                raise RemoteError(f"{config.source} turns the control plane off ([admin] listen)")
            address = listen if listen.startswith("unix:") else f"http://{listen}"
        if token is None and config is not None:
            token = config.admin.token
        address = address or "http://127.0.0.1:2000"
        if "://" not in address and not address.startswith("unix:"):
            address = "http://" + address
        return cls(address.rstrip("/"), token)

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        status, body = _request(self.address, "GET", path, None, headers)
        try:
            payload = json.loads(body)
        except ValueError:
            raise RemoteError(f"{self.address}{path}: not a partysub control plane") from None
        if status != 200:
            raise RemoteError(payload.get("error", f"HTTP {status}"))
        return payload


def publish(endpoint: Endpoint, room: str, topic: str, data: Any) -> str:
    """POST one message; the server's answer, or RemoteError with its reason."""
    body = json.dumps({"topic": topic, "data": data}).encode()
    headers = {"Content-Type": "application/json"}
    status, answer = _request(endpoint.base_url, "POST", endpoint.room_path(room), body, headers)
    if status != 200:
        raise RemoteError(f"HTTP {status}: {answer}")
    return answer


async def subscribe(
    endpoint: Endpoint,
    room: str,
    topics: str | None,
    count: int | None,
    emit: Callable[[str], None],
) -> int:
    """Print each message as one line until ``count`` messages or until interrupted."""
    base = urlsplit(endpoint.base_url)
    scheme = "wss" if base.scheme == "https" else "ws"
    query = "" if topics is None else f"?topics={quote(topics, safe=',:*')}"
    url = f"{scheme}://{base.netloc}{endpoint.room_path(room)}{query}"
    received = 0
    try:
        async with trio_websocket.open_websocket_url(url, connect_timeout=10) as ws:
            while count is None or received < count:
                message = await ws.get_message()
                emit(message if isinstance(message, str) else message.decode("utf-8", "replace"))
                received += 1
    except trio_websocket.HandshakeError as exc:
        raise RemoteError(f"cannot subscribe at {url}: {_handshake_reason(exc)}") from None
    except trio_websocket.ConnectionClosed as exc:
        reason = exc.reason
        detail = f"{reason.code} {reason.reason or ''}".rstrip() if reason else "no reason"
        raise RemoteError(f"the daemon closed the connection: {detail}") from None
    except (OSError, trio.TooSlowError) as exc:
        raise RemoteError(f"cannot reach the daemon at {url}: {_describe(exc)}") from None
    return received


def _handshake_reason(exc: trio_websocket.HandshakeError) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        body = (exc.body or b"").decode("utf-8", "replace").strip()
        return f"HTTP {exc.status_code}" + (f": {body}" if body else "")
    if isinstance(exc, trio_websocket.ConnectionTimeout):
        return "timed out"
    return str(exc) or type(exc).__name__


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def _request(
    base: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, str]:
    conn: http.client.HTTPConnection
    if base.startswith("unix:"):
        conn = _UnixConnection(base.removeprefix("unix:"))
    else:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"not an http(s) URL: {base}")
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=10, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise RemoteError(f"cannot reach the daemon at {base}: {_describe(exc)}") from None
    finally:
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
