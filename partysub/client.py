"""Subscribe and publish from Python: a reconnecting, resuming subscription on trio."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import msgpack
import trio
import trio_websocket

# Messages received but not yet read by the application; past it the client
# stops reading its socket, and the server's slow-consumer policy applies.
BUFFER = 1024


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: Any
    id: str | None = None  # the message's cursor


@dataclass(frozen=True, slots=True)
class Resume:
    """What the server said when the subscription reconnected with a cursor."""

    recovered: bool  # False: the history did not reach back; refetch your state
    replayed: int


class PublishError(Exception):
    """The daemon refused a publish (or a subscription); the message is its reason."""


@dataclass(frozen=True, slots=True)
class Status:
    """What a subscription's connection is doing, for ``on_status``."""

    connected: bool
    error: str | None = None  # why the last attempt failed (or the connection ended)
    retry_in: float | None = None  # seconds until the next attempt


def _room_url(base: str, party: str, room: str, scheme: str | None = None) -> tuple[str, str]:
    parts = urlsplit(base if "://" in base else f"http://{base}")
    secure = parts.scheme in ("https", "wss")
    if scheme is None:
        scheme = "https" if secure else "http"
    elif scheme == "ws" and secure:
        scheme = "wss"
    path = f"/parties/{quote(party, safe='')}/{quote(room, safe='')}"
    return f"{scheme}://{parts.netloc}{path}", parts.netloc


class Subscription:
    """One logical subscription over as many WebSocket connections as it takes."""

    def __init__(
        self,
        url: str,
        *,
        party: str,
        room: str,
        topics: Sequence[str] | None,
        resume: bool,
        use_msgpack: bool,
        token: str | None,
        pk: str | None,
        max_backoff: float,
        retry: bool = True,
        on_status: Callable[[Status], None] | None = None,
    ) -> None:
        self._base, _ = _room_url(url, party, room, "ws")
        self.server = url
        self.retry = retry
        self.on_status = on_status
        self.pk = pk or str(uuid.uuid4())
        self.topics = list(topics) if topics is not None else None
        self.resume = resume
        self.msgpack = use_msgpack
        self.token = token
        self.max_backoff = max_backoff
        self.last_id: str | None = None
        self.last_resume: Resume | None = None
        self.errors: list[dict[str, Any]] = []  # __error frames, newest last
        self.gaps: list[dict[str, str]] = []  # __gap frames (slow_consumer = "drop")
        self.connections = 0  # how many times it has connected
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._connected = trio.Event()
        self._send, self._receive = trio.open_memory_channel[Message](BUFFER)

    def url(self) -> str:
        """The URL for the next connection: topics, cursor, format, token."""
        query: dict[str, str] = {"_pk": self.pk}
        if self.topics is not None:
            query["topics"] = ",".join(self.topics)
        if self.resume:
            query["ids"] = "1"
            if self.last_id is not None:
                query["since"] = self.last_id
        if self.msgpack:
            query["format"] = "msgpack"
        if self.token is not None:
            query["token"] = self.token
        return f"{self._base}?{urlencode(query)}"

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._receive.__aiter__()

    async def publish(self, topic: str, data: Any, *, idem: str | None = None) -> None:
        """Publish over the subscription's WebSocket (waiting for it if it is reconnecting)."""
        payload: dict[str, Any] = {"topic": topic, "data": data}
        if idem is not None:
            payload["idem"] = idem
        await self._send_frame(payload)

    async def set_topics(self, topics: Sequence[str]) -> None:
        """Replace the subscription's patterns, now and for every reconnect."""
        self.topics = list(topics)
        await self._send_frame({"__topics": self.topics})

    async def _send_frame(self, payload: dict[str, Any]) -> None:
        while True:
            await self._connected.wait()
            ws = self._ws
            if ws is None:
                continue
            try:
                if self.msgpack:
                    await ws.send_message(msgpack.packb(payload))
                else:
                    await ws.send_message(json.dumps(payload))
                return
            except trio_websocket.ConnectionClosed:
                await trio.sleep(0)  # the run loop is reconnecting

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, read, and reconnect with exponential backoff and jitter.

        Each failed attempt is reported to ``on_status`` (with the reason and the
        wait before the next); with ``retry=False`` a first connection that fails
        raises PublishError instead."""
        attempt = 0
        started = False
        failing = False
        while True:
            error: str
            try:
                async with trio_websocket.open_websocket_url(
                    self.url(), connect_timeout=10, max_message_size=64 * 1024 * 1024
                ) as ws:
                    self._ws = ws
                    self.connections += 1
                    attempt = 0
                    self._connected.set()
                    if failing and self.on_status is not None:
                        self.on_status(Status(True))
                    failing = False
                    if not started:
                        started = True
                        task_status.started()
                    while True:
                        message = self._received(await ws.get_message())
                        if message is not None:
                            await self._send.send(message)
            except trio_websocket.ConnectionRejected as exc:
                body = (exc.body or b"").decode("utf-8", "replace").strip()
                error = f"HTTP {exc.status_code}: {body}"
                if not started and exc.status_code is not None and exc.status_code < 500:
                    raise PublishError(error) from None
            except trio_websocket.ConnectionClosed as exc:
                reason = exc.reason
                said = f" {reason.reason}" if reason and reason.reason else ""
                code = f" ({reason.code}{said})" if reason else ""
                error = f"connection closed{code}"
            except (trio_websocket.HandshakeError, OSError) as exc:
                error = _reason(exc)
            self._ws = None
            self._connected = trio.Event()
            if not started and not self.retry:
                raise PublishError(f"cannot connect to {self.server}: {error}")
            delay = min(self.max_backoff, 0.05 * 2**attempt) * random.uniform(0.5, 1.5)
            attempt += 1
            failing = True
            if self.on_status is not None:
                self.on_status(Status(False, error, delay))
            await trio.sleep(delay)

    def _received(self, raw: str | bytes) -> Message | None:
        """A message for the application, or None for control frames (kept as state)."""
        frame = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
        if not isinstance(frame, dict):
            return None
        if "__resume" in frame:
            resume = frame["__resume"]
            self.last_resume = Resume(bool(resume["recovered"]), int(resume["replayed"]))
        elif "__error" in frame:
            self.errors.append(frame["__error"])
        elif "__gap" in frame:
            self.gaps.append(frame["__gap"])
        elif "topic" in frame:
            message = Message(frame["topic"], frame.get("data"), frame.get("id"))
            if message.id is not None:
                self.last_id = message.id
            return message
        return None


@asynccontextmanager
async def connect(
    url: str,
    *,
    room: str,
    party: str = "pubsub",
    topics: Sequence[str] | None = None,
    resume: bool = True,
    use_msgpack: bool = False,
    token: str | None = None,
    pk: str | None = None,
    max_backoff: float = 5.0,
    retry: bool = True,
    on_status: Callable[[Status], None] | None = None,
) -> AsyncIterator[Subscription]:
    """A subscription to ``room``, connected when the block starts, closed when it ends.

    ``topics`` None subscribes to everything, ``[]`` to nothing. Raises
    PublishError if the first connection is refused (a 4xx: wrong party,
    bad token), or with ``retry=False`` if it cannot be made at all;
    ``on_status`` hears of every failed attempt and of the reconnection.
    An exception from the block (KeyboardInterrupt included) comes out as
    itself, not wrapped in an exception group.
    """
    subscription = Subscription(
        url,
        party=party,
        room=room,
        topics=topics,
        resume=resume,
        use_msgpack=use_msgpack,
        token=token,
        pk=pk,
        max_backoff=max_backoff,
        retry=retry,
        on_status=on_status,
    )
    refused: PublishError | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(subscription.run)
            except PublishError as exc:
                refused = exc  # raised below, outside the nursery, as itself
            else:
                try:
                    yield subscription
                finally:
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _single(group) from None
    if refused is not None:
        raise refused


def _reason(exc: BaseException) -> str:
    """Why a connection could not be made, in a person's words: the OS error under
    trio-websocket's handshake error (and trio's group of connect attempts)."""
    found = _os_error(exc)
    if found is not None:
        return found
    text = str(exc)
    return f"handshake failed: {text}" if text else "handshake failed"


def _os_error(exc: BaseException | None) -> str | None:
    """The first OS error message under ``exc`` (its causes, and group members)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno:
            return os.strerror(exc.errno)
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                found = _os_error(inner)
                if found is not None:
                    return found
        exc = exc.__cause__ or exc.__context__
    return None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group of one stands for (nested groups unwrapped)."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group


async def publish(
    url: str,
    room: str,
    topic: str,
    data: Any,
    *,
    party: str = "pubsub",
    token: str | None = None,
    idem: str | None = None,
) -> str:
    """Publish over HTTP (what PartySocket.fetch does): the server's answer ("OK").

    Raises PublishError with the status and the server's reason."""
    import http.client

    target, netloc = _room_url(url, party, room)
    parts = urlsplit(target)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if idem is not None:
        headers["Idempotency-Key"] = idem
    body = json.dumps({"topic": topic, "data": data}).encode()

    def post() -> tuple[int, str]:
        conn_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_class(netloc, timeout=10)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    try:
        status, answer = await trio.to_thread.run_sync(post)
    except OSError as exc:
        raise PublishError(f"cannot reach the daemon at {url}: {exc.strerror or exc}") from None
    if status != 200:
        raise PublishError(f"HTTP {status}: {answer}")
    return answer


__all__ = ["Message", "PublishError", "Resume", "Status", "Subscription", "connect", "publish"]
