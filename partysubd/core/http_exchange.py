"""One connection's HTTP/1.1 exchange: requests in order, one answer each.

The mechanics only: the request reader, which request is being answered, a
POST's body gathered, ``100 Continue``, keep-alive and close, the handshake
clock. What a request means (a publish, an upgrade, a refusal) is decided by
``http_plan`` and carried out by the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from .http1 import CONTINUE, Body, End, Head, Refusal, RequestReader, response
from .http_plan import Reply

SERVER_HEADER = b"partysub"


@dataclass(frozen=True, slots=True)
class PostBody:
    """The whole body of the request being read (``read_body`` asked for it)."""

    body: bytes


Event = Head | PostBody | Refusal


class HttpExchange:
    __slots__ = ("_body", "_reading", "reader", "request", "responded", "started")

    def __init__(self, max_head: int, max_body: int, now: float) -> None:
        self.reader = RequestReader(max_head, max_body)
        self.request: Head | None = None  # the request being answered
        self.responded = False  # its answer was queued
        # When the current request began: the handshake timeout counts from
        # its first byte, so a client that trickles its headers still runs out.
        self.started = now
        self._reading = False
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.reader.feed(data)

    def next(self) -> Event | None:
        """The next request, a body asked for, or a refusal; None until more bytes."""
        while (event := self.reader.next_event()) is not None:
            if isinstance(event, Head):
                self.request = event
                self.responded = False
                return event
            if isinstance(event, Body):
                if self._reading:
                    self._body.append(event.data)
            elif isinstance(event, End):
                if self._reading:
                    self._reading = False
                    body, self._body = b"".join(self._body), []
                    return PostBody(body)
            else:
                return event
        return None

    def read_body(self) -> bytes:
        """Gather the current request's body; what to send first (``100 Continue``)."""
        self._reading = True
        self._body = []
        request = self.request
        return CONTINUE if request is not None and request.expect_continue else b""

    def answer(self, reply: Reply, now: float) -> tuple[bytes, bool]:
        """The response's bytes, and whether the connection closes after it."""
        request = self.request
        if self.responded:
            return b"", True  # one answer per request: a second means something broke
        close = reply.close or request is None or not request.keep_alive
        headers = [
            (b"Server", SERVER_HEADER),
            (b"Content-Type", b"text/plain; charset=utf-8"),
            *reply.headers,
        ]
        if close:
            headers.append((b"Connection", b"close"))
        body = reply.text.encode() if reply.status != 204 else b""
        head_only = request is not None and request.method == b"HEAD"
        self.responded = True
        self.started = now
        return response(reply.status, headers, body, head_only=head_only), close

    def upgrade(self, accept_token: bytes) -> tuple[bytes, bytes]:
        """The ``101`` for a WebSocket, and the bytes that already followed the request."""
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept_token),
            (b"Server", SERVER_HEADER),
        ]
        self.responded = True
        self.reader.next_event()  # the End of a request without a body
        return response(101, headers), self.reader.rest()

    def internal_error(self) -> bytes | None:
        """A ``500`` for a request not yet answered (an internal error hit it)."""
        if self.request is None or self.responded:
            return None
        self.responded = True
        return response(500, [(b"Connection", b"close")], b"Internal server error\n")
