"""The control plane: a small JSON API and Prometheus metrics, as an ASGI app.

It runs under hypercorn on its own listener (loopback or a unix socket by
default), never on the public port: ASGI's one-send-per-connection model is
too slow for fan-out but exactly right for a handful of operator requests.
Endpoints are documented in docs/admin-api.md.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from . import inspect, metrics
from .rooms import Hub

# Close code for connections an operator closes (private-use range, RFC 6455 7.4.2).
CLOSED_BY_OPERATOR = 4000
# Load balancers and supervisors probe these without credentials.
OPEN_PATHS = frozenset({"/health", "/ready"})


@dataclass
class AdminState:
    """What the control plane reports, kept current by the daemon."""

    hub: Hub
    version: str
    started: float
    clock: Callable[[], inspect.Clock]
    listeners: dict[str, str] = field(default_factory=dict)
    # Live trio tasks (a leak shows here): the daemon passes trio's statistics.
    tasks: Callable[[], int] = lambda: 0
    draining: bool = False
    token: str | None = None
    # Called after the control plane queued something on a connection (a close):
    # wakes the engine's flusher.
    wake: Callable[[], None] = lambda: None


class AdminApp:
    def __init__(self, state: AdminState) -> None:
        self.state = state
        self.registry = metrics.registry_for(lambda: self.state.hub, lambda: self.state.draining)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, body, content_type, extra = self.handle(
            scope["method"], scope["path"], dict(scope["headers"]), scope["query_string"]
        )
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def handle(
        self, method: str, path: str, headers: dict[bytes, bytes], query: bytes = b""
    ) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
        """Status, body, content type and extra headers for one request."""
        if method not in ("GET", "HEAD", "DELETE"):
            return _json(405, {"error": "only GET or DELETE"}, [(b"allow", b"GET, HEAD, DELETE")])
        if path not in OPEN_PATHS and not self._authorized(headers):
            return _json(
                401,
                {"error": "a bearer token is required: Authorization: Bearer <admin.token>"},
                [(b"www-authenticate", b'Bearer realm="partysub"')],
            )
        state = self.state
        hub = state.hub
        if method == "DELETE":
            return self._disconnect(path, query)
        if path == "/health":
            return _json(200, {"status": "ok"})
        if path == "/ready":
            if state.draining:
                return _json(503, {"ready": False, "reason": "draining: shutting down"})
            return _json(200, {"ready": True})
        if path == "/metrics":
            return 200, metrics.render(self.registry), metrics.CONTENT_TYPE, []
        if path == "/daemon":
            view = inspect.daemon_view(
                hub,
                version=state.version,
                started=state.started,
                clock=state.clock(),
                listeners=state.listeners,
                draining=state.draining,
            )
            return _json(200, {**view, "tasks": state.tasks()})
        if path == "/rooms":
            return _json(200, inspect.rooms_view(hub))
        parts = path.split("/")
        if len(parts) in (4, 5) and parts[1] == "rooms" and parts[2] and parts[3]:
            room = inspect.find_room(hub, unquote(parts[2]), unquote(parts[3]))
            if isinstance(room, str):
                return _json(404, {"error": room})
            if len(parts) == 4:
                return _json(200, inspect.room_view(room, state.clock()))
            if parts[4] == "connections":
                return _json(200, inspect.connections_view(room, state.clock()))
        return _json(
            404,
            {
                "error": f"no such endpoint: {path}",
                "endpoints": [
                    "/daemon",
                    "/rooms",
                    "/rooms/<party>/<room>",
                    "/rooms/<party>/<room>/connections",
                    "/metrics",
                    "/health",
                    "/ready",
                ],
            },
        )

    def _disconnect(
        self, path: str, query: bytes
    ) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
        """DELETE /rooms/<party>/<room>/connections/<id>: close (or ?abort=1 drop) them."""
        parts = path.split("/")
        if len(parts) != 6 or parts[1] != "rooms" or parts[4] != "connections":
            return _json(405, {"error": "DELETE only on /rooms/<party>/<room>/connections/<id>"})
        room = inspect.find_room(self.state.hub, unquote(parts[2]), unquote(parts[3]))
        if isinstance(room, str):
            return _json(404, {"error": room})
        conn_id = unquote(parts[5])
        targets = list(room.by_id.get(conn_id, ()))
        if not targets:
            return _json(404, {"error": f"no connection {conn_id!r} in room {room.name!r}"})
        abort = b"abort=1" in query.split(b"&")
        now = self.state.clock().monotonic
        for conn in targets:
            if abort:
                conn.abort()
            else:
                conn.close(CLOSED_BY_OPERATOR, "closed by an operator", now)
        self.state.wake()
        return _json(200, {"closed": len(targets), "aborted": abort})

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        token = self.state.token
        if token is None:
            return True
        given = headers.get(b"authorization", b"")
        return hmac.compare_digest(given, b"Bearer " + token.encode())


def _json(
    status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
    body = json.dumps(payload, indent=2).encode() + b"\n"
    return status, body, "application/json", extra or []


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
