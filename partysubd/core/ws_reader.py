"""A WebSocket connection's incoming side: bytes in, whole client messages out.

``FrameSplitter`` cuts the stream into frames and unmasks the common one (a
complete text or binary frame) itself; everything else (control frames,
fragments, malformed frames) goes through wsproto, which keeps the protocol's
rules. Fragments are assembled here and refused as soon as they pass the
limit. What comes out is one event at a time, for the session to act on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from .frames import OPCODE_BINARY, FrameSplitter

# The events are made per message: plain slotted dataclasses, not frozen ones
# (a frozen dataclass sets each field through object.__setattr__, five times
# the cost, measured on the publish path). Nothing changes one once made.


@dataclass(slots=True)
class Message:
    """One whole client message: a text frame's bytes (JSON), or a binary one's."""

    payload: bytes
    binary: bool


@dataclass(slots=True)
class Pinged:
    """A client ping: ``size`` is what it costs against the rate limit."""

    payload: bytes
    size: int


@dataclass(slots=True)
class Closed:
    """The client closed (``code`` None: ``reply`` answers its close frame), or broke
    the protocol (``code``: the close we send, ``reply`` its frame). After it
    nothing more is read."""

    reply: bytes | None
    code: int | None = None


@dataclass(slots=True)
class TooBig:
    """A message over ``max_size``, refused before (or as soon as) it is too big."""


Event = Message | Pinged | Closed | TooBig

_RAW, _TOO_BIG = FrameSplitter.RAW, FrameSplitter.TOO_BIG  # plain globals: read per frame


class WebSocketReader:
    """``keep_binary``: a MessagePack connection, whose binary fragments are assembled
    (a JSON connection's are only counted, then refused as one message)."""

    __slots__ = (
        "_binary",
        "_ended",
        "_frames",
        "_keep_binary",
        "_parts",
        "_parts_size",
        "_pending",
        "_ws",
    )

    def __init__(self, max_size: int, keep_binary: bool) -> None:
        self._frames = FrameSplitter(max_size)
        self._ws = Connection(ConnectionType.SERVER)
        self._pending: deque[Event] = deque()
        self._keep_binary = keep_binary
        # A fragmented message being assembled: its parts, size, and kind.
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._binary = False
        self._ended = False  # a Closed was produced: nothing after it is read

    @property
    def max_size(self) -> int:
        return self._frames.max_size

    @max_size.setter
    def max_size(self, size: int) -> None:
        self._frames.max_size = size

    @property
    def open(self) -> bool:
        return self._ws.state is ConnectionState.OPEN

    def feed(self, data: bytes) -> None:
        self._frames.feed(data)

    def next(self) -> Event | None:
        """The next event, or None until more bytes arrive (and for good after a Closed)."""
        while not self._pending:
            if self._ended:
                return None
            frame = self._frames.next()
            if frame is None:
                return None
            kind, payload = frame
            if kind == _RAW:
                self._wsproto_frame(payload)
            elif kind == _TOO_BIG:
                self._parts = None
                return TooBig()
            else:
                return Message(payload, kind == OPCODE_BINARY)
        return self._pending.popleft()

    def pong(self, payload: bytes) -> bytes | None:
        """The answer to a ping, while the connection is open."""
        if not self.open:
            return None
        return self._ws.send(Ping(payload).response())

    def ping(self, payload: bytes) -> bytes:
        return self._ws.send(Ping(payload))

    def close(self, code: int, reason: str) -> bytes | None:
        """Our close frame, or None when a close is no longer ours to start."""
        if not self.open:
            return None
        return self._ws.send(CloseConnection(code, reason))

    def _wsproto_frame(self, frame: bytes) -> None:
        """Control frames, fragments and malformed frames: wsproto applies the rules."""
        ws = self._ws
        try:
            ws.receive_data(frame)
        except LocalProtocolError:
            return  # already closed: late bytes after the close handshake
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._collect(event.data, event.message_finished)
            elif isinstance(event, Ping):
                self._pending.append(Pinged(event.payload, len(frame)))
            elif isinstance(event, CloseConnection):
                self._pending.append(self._closed(event))
                self._ended = True
                return

    def _closed(self, event: CloseConnection) -> Closed:
        ws = self._ws
        if ws.state is ConnectionState.REMOTE_CLOSING:
            # The client closes: answer its close frame, then end the connection.
            return Closed(ws.send(event.response()))
        if ws.state is ConnectionState.OPEN:
            # wsproto reports a protocol violation as a close event in OPEN.
            return Closed(ws.send(CloseConnection(event.code, event.reason)), int(event.code))
        return Closed(None)

    def _collect(self, data: str | bytes | bytearray, finished: bool) -> None:
        """Gather a fragmented message, refusing it as soon as it is too big."""
        if self._parts is None:
            self._parts = []
            self._parts_size = 0
            self._binary = not isinstance(data, str)
        if isinstance(data, str):
            encoded = data.encode()
            self._parts_size += len(encoded)
            self._parts.append(encoded)
        else:
            self._parts_size += len(data)
            if self._keep_binary:
                self._parts.append(bytes(data))
        if self._parts_size > self._frames.max_size:
            self._parts = None
            self._pending.append(TooBig())
            return
        if not finished:
            return
        payload = b"".join(self._parts)
        self._parts = None
        self._pending.append(Message(payload, self._binary))
