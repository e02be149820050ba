"""Finding a running daemon, and asking its control plane.

Every failure becomes a ``RemoteError`` with one line that says what went
wrong and where; the command prints it and exits non-zero.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from partysubd.core.config import Config


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
            scheme = "https" if config.server.tls else "http"
            url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{config.server.port}"
        if party is None and config is not None:
            party = config.bindings[0].party_names[0]
        return cls((url or "http://127.0.0.1:1999").rstrip("/"), party or "pubsub")


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
