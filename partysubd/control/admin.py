"""The control plane: a JSON API, Prometheus metrics and the dashboard, as an ASGI app.

It runs under hypercorn on its own listener (loopback or a unix socket by
default), never on the public port: ASGI's one-send-per-connection model is
too slow for fan-out but exactly right for a handful of operator requests,
and for the dashboard's live tail, whose viewers get what the hub's bounded
``Tail`` kept for them rather than a place on the delivery path.
Endpoints are documented in docs/admin-api.md, the dashboard in docs/dashboard.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import orjson
import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Scope,
    WebsocketAcceptEvent,
    WebsocketResponseBodyEvent,
    WebsocketResponseStartEvent,
    WebsocketScope,
    WebsocketSendEvent,
)

from ..core import faults
from ..core.hub import Hub
from ..core.members import cluster_room_view, cluster_view
from ..core.routing import topics_from_query
from ..core.tail import Tail
from . import metrics, views

if TYPE_CHECKING:
    from ..cluster.link import ClusterLink

# Close code for connections an operator closes (private-use range, RFC 6455 7.4.2).
CLOSED_BY_OPERATOR = 4000
# Load balancers and supervisors probe these without credentials; the
# dashboard's page and assets hold no data (the data comes from the API).
OPEN_PATHS = frozenset({"/health", "/ready"})
# A browser cannot put a bearer token on a WebSocket or on every fetch, so the
# dashboard trades it once (``/?token=``) for this cookie.
TOKEN_COOKIE = "partysub_admin"
# The dashboard's files, shipped in the package: no build step.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page talks only to its own origin, and runs only its own script.
DASHBOARD_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# A viewer is sent at most this many batches a second: a browser cannot show
# more, and the tail's window keeps (and counts drops of) what comes between.
TAIL_INTERVAL = 0.1
# Host names a browser may use for the control plane besides IP addresses and
# [admin] allowed_hosts. Any other name is refused: a page on attacker.example
# whose DNS answers 127.0.0.1 (DNS rebinding) must not reach the API.
LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass
class AdminState:
    """What the control plane reports, kept current by the daemon."""

    hub: Hub
    version: str
    started: float
    clock: Callable[[], views.Clock]
    listeners: dict[str, str] = field(default_factory=dict)
    # Live trio tasks (a leak shows here): the daemon passes trio's statistics.
    tasks: Callable[[], int] = lambda: 0
    draining: bool = False
    token: str | None = None
    # Called after the control plane queued something on a connection (a close):
    # wakes the engine's flusher.
    wake: Callable[[], None] = lambda: None
    # The link to the other daemons, when the config has [cluster].
    cluster: ClusterLink | None = None
    # Where the config came from (a file, or the built-in default).
    source: str = ""
    # [admin] allowed_hosts and allowed_origins (reload keeps them current).
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # The control plane's own port and listen address (its pages' origin),
    # once it listens; None on a unix socket.
    port: int | None = None
    listen_host: str | None = None


class AdminApp:
    def __init__(self, state: AdminState) -> None:
        self.state = state
        self.registry = metrics.registry_for(
            lambda: self.state.hub, lambda: self.state.draining, lambda: self.state.cluster
        )

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._serve_tail(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, content_type, extra = self.handle(
                scope["method"], scope["path"], dict(scope["headers"]), scope["query_string"]
            )
        except Exception:
            # One request fails, with no traceback in its body; the daemon serves on.
            faults.report(self.state.hub.events, "admin", f"{scope['method']} {scope['path']}")
            status, body, content_type, extra = _json(500, {"error": "internal error"})
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
        if not self.host_allowed(headers):
            return _json(
                403,
                {
                    "error": "this Host is not the control plane's: use an IP address, "
                    "localhost, or a name in [admin] allowed_hosts"
                },
            )
        if method not in ("GET", "HEAD", "DELETE"):
            return _json(405, {"error": "only GET or DELETE"}, [(b"allow", b"GET, HEAD, DELETE")])
        if path in ASSETS and method != "DELETE":
            return self._asset(path, query)
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
            if state.cluster is not None and not state.cluster.connected:
                return _json(503, {"ready": False, "reason": state.cluster.reason})
            return _json(200, {"ready": True})
        if path == "/cluster":
            return self._cluster()
        if path == "/metrics":
            return 200, metrics.render(self.registry), metrics.CONTENT_TYPE, []
        if path == "/daemon":
            view = views.daemon_view(
                hub,
                version=state.version,
                started=state.started,
                clock=state.clock(),
                listeners=state.listeners,
                draining=state.draining,
                source=state.source,
            )
            return _json(200, {**view, "tasks": state.tasks()})
        if path == "/rooms":
            view = views.rooms_view(hub)
            if state.cluster is not None:
                whole = cluster_view(state.cluster.members, state.cluster.name, time.time())
                view["cluster"] = {**whole["totals"], "by_room": whole["rooms"]}
            return _json(200, view)
        parts = path.split("/")
        if len(parts) in (4, 5) and parts[1] == "rooms" and parts[2] and parts[3]:
            party_name, room_name = unquote(parts[2]), unquote(parts[3])
            room = views.find_room(hub, party_name, room_name)
            across = self._cluster_room(party_name, room_name)
            if isinstance(room, str):
                if across is not None:
                    # Not here, but on other daemons of the cluster.
                    absent = views.absent_room_view(hub, party_name, room_name, across)
                    if len(parts) == 4:
                        return _json(200, absent)
                    if parts[4] == "connections":
                        return _json(200, {**_name_of(absent), "connections": []})
                return _json(404, {"error": room})
            if len(parts) == 4:
                detail = views.room_view(room, state.clock())
                if across is not None:
                    detail["cluster"] = across
                return _json(200, detail)
            if parts[4] == "connections":
                return _json(200, views.connections_view(room, state.clock()))
        return _json(
            404,
            {
                "error": f"no such endpoint: {path}",
                "endpoints": [
                    "/daemon",
                    "/rooms",
                    "/rooms/<party>/<room>",
                    "/rooms/<party>/<room>/connections",
                    "/cluster",
                    "/metrics",
                    "/health",
                    "/ready",
                    "/ (the dashboard)",
                    "/tail/<party>/<room>?topics=... (WebSocket: live messages)",
                ],
            },
        )

    def _asset(self, path: str, query: bytes) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
        """The dashboard's files; on ``/?token=`` also the cookie that stands for the token."""
        name, content_type = ASSETS[path]
        body = resources.files(__package__).joinpath("dashboard", name).read_bytes()
        extra = [
            (b"content-security-policy", DASHBOARD_CSP),
            (b"x-content-type-options", b"nosniff"),
        ]
        if path != "/" or self.state.token is None:
            return 200, body, content_type, extra
        given = parse_qs(query.decode("latin-1")).get("token")
        if given is None:
            return 200, body, content_type, extra
        if not hmac.compare_digest(given[0].encode(), self.state.token.encode()):
            return _json(401, {"error": "wrong admin token"})
        # Strict: the cookie never rides along with a request another site starts.
        cookie = f"{TOKEN_COOKIE}={quote(given[0])}; Path=/; HttpOnly; SameSite=Strict"
        return 303, b"", content_type, [(b"location", b"/"), (b"set-cookie", cookie.encode())]

    def _cluster_room(self, party_name: str, room_name: str) -> dict[str, Any] | None:
        link = self.state.cluster
        party = self.state.hub.registry.parties.get(party_name)
        if link is None or party is None:
            return None
        return cluster_room_view(link.members, f"{party.binding.party_names[0]}/{room_name}")

    def _cluster(self) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
        link = self.state.cluster
        if link is None:
            return _json(
                404, {"error": "this daemon is not in a cluster: the config has no [cluster]"}
            )
        view = cluster_view(link.members, link.name, time.time())
        view["link"] = {
            "name": link.name,
            "connected": link.connected,
            "reason": link.reason or None,
            "mode": link.settings.mode,
            "pending": len(link.outbound),
            "dropped": link.outbound.dropped,
            "relayed_out_batches": link.relayed_out,
            "relayed_in_messages": link.relayed_in,
            "bad_batches": link.bad_batches,
            "channels": len(link.interested.channels),
        }
        return _json(200, view)

    def _disconnect(
        self, path: str, query: bytes
    ) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
        """DELETE /rooms/<party>/<room>/connections/<id>: close (or ?abort=1 drop) them."""
        parts = path.split("/")
        if len(parts) != 6 or parts[1] != "rooms" or parts[4] != "connections":
            return _json(405, {"error": "DELETE only on /rooms/<party>/<room>/connections/<id>"})
        room = views.find_room(self.state.hub, unquote(parts[2]), unquote(parts[3]))
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
        expected = token.encode()
        given = headers.get(b"authorization", b"")
        if hmac.compare_digest(given, b"Bearer " + expected):
            return True
        try:
            cookies = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        except CookieError:
            return False
        morsel = cookies.get(TOKEN_COOKIE)
        return morsel is not None and hmac.compare_digest(unquote(morsel.value).encode(), expected)

    def host_allowed(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the request's Host names this control plane (DNS rebinding defence).

        A browser always sends Host; tools that send none are not browsers. On a
        unix socket no browser can reach the control plane at all."""
        if self.state.port is None:
            return True
        host = headers.get(b"host")
        if host is None:
            return True
        return self._name_allowed(_host_name(host.decode("latin-1")))

    def _name_allowed(self, name: str) -> bool:
        return name in LOOPBACK_NAMES or _is_ip(name) or name in self.state.allowed_hosts

    def origin_allowed(self, origin: str) -> bool:
        """Whether a page of ``origin`` may open the tail: a configured origin, or one
        of the control plane's own pages: on its own port, at a loopback address,
        ``localhost``, the address it listens on, or a name in allowed_hosts.

        Narrower than the Host rule: any IP address is a fine Host (DNS rebinding
        needs a name), but a page served from any IP address on this port is not
        this control plane's page (it could be the attacker's own server)."""
        if origin in self.state.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or self.state.port is None:
            return False
        default = 443 if parts.scheme == "https" else 80
        host = (parts.hostname or "").lower()
        if (port or default) != self.state.port:
            return False
        if host in LOOPBACK_NAMES or host in self.state.allowed_hosts:
            return True
        if host == self.state.listen_host:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _tail_refusal(self, path: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        if not self.host_allowed(headers):
            return 403, "this Host is not the control plane's"
        if not self._authorized(headers):
            return 401, "a bearer token (or the dashboard's cookie) is required"
        origin = headers.get(b"origin")
        # A page on another site must not read the tail through a viewer's browser.
        if origin is not None and not self.origin_allowed(origin.decode("latin-1")):
            return 403, (
                "the tail is only for the control plane's own pages and [admin] allowed_origins"
            )
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "tail" or not parts[2] or not parts[3]:
            return 404, "tail a room at /tail/<party>/<room>"
        if unquote(parts[2]) not in self.state.hub.registry.parties:
            return 404, f"no party {unquote(parts[2])!r}"
        return None

    async def _serve_tail(
        self, scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """The tail, with its faults contained: the viewer gets 1011, nobody else notices."""
        accepted: list[bool] = []
        try:
            await self._tail(scope, receive, send, accepted)
        except Exception:
            faults.report(self.state.hub.events, "tail", scope["path"])
            if accepted:
                await send({"type": "websocket.close", "code": 1011, "reason": "internal error"})
            else:
                await send(
                    WebsocketResponseStartEvent(
                        type="websocket.http.response.start", status=500, headers=[]
                    )
                )
                await send(
                    WebsocketResponseBodyEvent(
                        type="websocket.http.response.body", body=b"", more_body=False
                    )
                )

    async def _tail(
        self,
        scope: WebsocketScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        accepted: list[bool],
    ) -> None:
        """A room's messages, live, as JSON batches, to one control-plane WebSocket.

        The client may send ``{"topics": "a,b:*"}`` to change its filter.
        """
        if (await receive())["type"] != "websocket.connect":
            return
        path: str = scope["path"]
        refusal = self._tail_refusal(path, dict(scope["headers"]))
        if refusal is not None:
            status, reason = refusal
            body = json.dumps({"error": reason}).encode()
            await send(
                WebsocketResponseStartEvent(
                    type="websocket.http.response.start",
                    status=status,
                    headers=[(b"content-type", b"application/json")],
                )
            )
            await send(
                WebsocketResponseBodyEvent(
                    type="websocket.http.response.body", body=body, more_body=False
                )
            )
            return
        _, _, party_name, room_name = (unquote(part) for part in path.split("/"))
        party = self.state.hub.registry.parties[party_name]
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode(), True).items()}
        woken = trio.Event()

        def wake() -> None:
            woken.set()

        tail = Tail(room_name, topics_from_query(query), wake=wake)
        await send(WebsocketAcceptEvent(type="websocket.accept", subprotocol=None, headers=[]))
        accepted.append(True)
        hello = {"tail": {"party": party_name, "room": room_name, "topics": tail.patterns}}
        await send(_text(json.dumps(hello)))
        party.tails.add(tail)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_tail_requests, receive, tail, nursery.cancel_scope)
                while True:
                    await woken.wait()
                    woken = trio.Event()
                    batch = tail.take()
                    if batch is not None:
                        text = batch.encode(self.state.clock().to_wall).decode()
                        await send(_text(text))
                    await trio.sleep(TAIL_INTERVAL)
        finally:
            party.tails.remove(tail)


def _json(
    status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes, str, list[tuple[bytes, bytes]]]:
    body = json.dumps(payload, indent=2).encode() + b"\n"
    return status, body, "application/json", extra or []


def _host_name(host: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, in lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _name_of(view: dict[str, Any]) -> dict[str, Any]:
    return {"party": view["party"], "room": view["room"]}


def _text(text: str) -> WebsocketSendEvent:
    return WebsocketSendEvent(type="websocket.send", bytes=None, text=text)


async def _read_tail_requests(
    receive: ASGIReceiveCallable, tail: Tail, done: trio.CancelScope
) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            done.cancel()
            return
        if message["type"] != "websocket.receive":
            continue
        try:
            request = orjson.loads(message.get("text") or "")
        except orjson.JSONDecodeError:
            continue
        if isinstance(request, dict) and isinstance(request.get("topics"), str):
            tail.patterns = topics_from_query({"topics": request["topics"]}) or ("*",)


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
