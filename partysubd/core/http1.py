"""HTTP/1.1 requests in, responses out: a strict, sans-I/O server side.

The public port answers three kinds of request (a WebSocket upgrade, a POST
publish, a refusal), so the daemon parses HTTP itself rather than through a
general library, for two reasons:

* **strictness where it matters for safety**: a request with both
  ``Transfer-Encoding`` and ``Content-Length`` (the request smuggling
  ambiguity) is refused and the connection closed; a chunk whose size alone
  passes the body limit is refused (413) when its size line arrives, before
  its bytes do; ``Expect: 100-continue`` is answered; header bytes, line
  lengths and chunk-size digits are all bounded, and every byte is looked at
  a bounded number of times however the input is cut;
* **speed**: a back end's keep-alive POSTs cost a few bytes scans here.

``RequestReader.next_event`` returns one of ``Head``, ``Body``, ``End`` or
``Refusal`` (after which the reader is finished: answer, then close), or None
when it needs more bytes. It never raises on any input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto
from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, spaces and tabs, and obs-text (bytes >= 0x80).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,18}")
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
COMPACT_AT = 65536  # consumed bytes kept in front of the buffer before it is compacted


@dataclass(frozen=True, slots=True)
class Head:
    """A request line and its headers (names in lower case, in order)."""

    method: bytes
    target: bytes
    headers: Headers
    http10: bool = False
    keep_alive: bool = True
    expect_continue: bool = False
    chunked: bool = False
    content_length: int = 0

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (``name`` in lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The request's body is complete; the next request may follow."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request cannot be read on: answer ``status`` and close the connection."""

    status: int
    reason: str


Event = Head | Body | End | Refusal


class _State(Enum):
    HEAD = auto()
    LENGTH = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_END = auto()
    TRAILERS = auto()
    DONE = auto()  # a refusal was given: nothing more is read


@dataclass(slots=True)
class RequestReader:
    """Cuts one connection's bytes into requests. ``max_head`` bounds the request
    line and headers together (431 past it), ``max_body`` a body (413)."""

    max_head: int
    max_body: int
    _buffer: bytearray = field(default_factory=bytearray)
    _pos: int = 0  # where unread bytes start
    _scan: int = 0  # where the search for the end of the head resumes
    _state: _State = _State.HEAD
    _left: int = 0  # bytes left in the body or the current chunk
    _body: int = 0  # body bytes announced so far (chunked)
    _trailer: int = 0  # trailer bytes read so far

    def feed(self, data: bytes) -> None:
        if self._pos >= COMPACT_AT and self._pos * 2 >= len(self._buffer):
            del self._buffer[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._buffer += data

    @property
    def finished(self) -> bool:
        return self._state is _State.DONE

    def rest(self) -> bytes:
        """Every byte not read yet (after an upgrade: the first WebSocket frames)."""
        rest = bytes(self._buffer[self._pos :])
        self._buffer = bytearray()
        self._pos = self._scan = 0
        return rest

    def next_event(self) -> Event | None:
        state = self._state
        if state is _State.HEAD:
            return self._head()
        if state is _State.LENGTH:
            return self._length_body()
        if state is _State.DONE:
            return None
        return self._chunked()

    def _refuse(self, status: int, reason: str) -> Refusal:
        self._state = _State.DONE
        return Refusal(status, reason)

    # --- the head ---------------------------------------------------------------

    def _head(self) -> Event | None:
        buffer = self._buffer
        # RFC 9112 2.2: empty lines before a request line are ignored.
        while buffer.startswith(b"\r\n", self._pos):
            self._pos += 2
        self._scan = max(self._scan, self._pos)
        end = buffer.find(b"\r\n\r\n", max(self._pos, self._scan - 3))
        if end < 0:
            self._scan = len(buffer)
            if len(buffer) - self._pos > self.max_head:
                return self._refuse(431, "Request header fields too large")
            return None
        if end + 4 - self._pos > self.max_head:
            return self._refuse(431, "Request header fields too large")
        raw = bytes(buffer[self._pos : end])
        self._pos = self._scan = end + 4
        return self._parse_head(raw)

    def _parse_head(self, raw: bytes) -> Event:
        lines = raw.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            return self._refuse(400, "Bad request: malformed request line")
        method, target, version = parts
        if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            return self._refuse(400, "Bad request: malformed request line")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if not version.startswith(b"HTTP/"):
                return self._refuse(400, "Bad request: malformed request line")
            return self._refuse(505, "HTTP version not supported: use HTTP/1.1")
        headers: Headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                # Covers obs-fold (a line starting with a space) and stray CRs.
                return self._refuse(400, "Bad request: malformed header line")
            value = value.strip(b" \t")
            if _BAD_VALUE.search(value):
                return self._refuse(400, "Bad request: control character in a header value")
            headers.append((name.lower(), value))
        return self._framing(method, target, headers, version == b"HTTP/1.0")

    def _framing(self, method: bytes, target: bytes, headers: Headers, http10: bool) -> Event:
        hosts = lengths = 0
        length = b""
        codings: list[bytes] = []
        connection: set[bytes] = set()
        expect = None
        for name, value in headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                lengths += 1
                length = value
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif name == b"connection":
                connection.update(c.strip().lower() for c in value.split(b","))
            elif name == b"expect":
                expect = value.lower()
        if (not http10 and hosts != 1) or hosts > 1:
            return self._refuse(400, "Bad request: a request needs exactly one Host header")
        if codings and lengths:
            return self._refuse(400, "Bad request: Transfer-Encoding and Content-Length together")
        if lengths > 1:
            return self._refuse(400, "Bad request: more than one Content-Length")
        if expect is not None and expect != b"100-continue":
            return self._refuse(417, "Expectation failed: only 100-continue is understood")
        content_length = 0
        chunked = False
        if codings:
            if http10 or codings[-1] != b"chunked":
                return self._refuse(400, "Bad request: the body's length cannot be determined")
            if len(codings) > 1:
                return self._refuse(501, "Not implemented: transfer codings other than chunked")
            chunked = True
        elif lengths:
            if not _DIGITS.fullmatch(length):
                return self._refuse(400, "Bad request: invalid Content-Length")
            content_length = int(length)
            if content_length > self.max_body:
                return self._refuse(413, f"Payload too large: the limit is {self.max_body} bytes")
        keep_alive = b"keep-alive" in connection if http10 else b"close" not in connection
        head = Head(
            method,
            target,
            headers,
            http10,
            keep_alive,
            expect == b"100-continue",
            chunked,
            content_length,
        )
        if chunked:
            self._state = _State.CHUNK_SIZE
            self._body = 0
        elif content_length:
            self._state = _State.LENGTH
            self._left = content_length
        else:
            self._state = _State.LENGTH
            self._left = 0
        return head

    # --- bodies -----------------------------------------------------------------

    def _take(self) -> bytes:
        """Up to ``_left`` buffered bytes."""
        start = self._pos
        end = min(len(self._buffer), start + self._left)
        self._pos = end
        self._left -= end - start
        return bytes(self._buffer[start:end])

    def _length_body(self) -> Event | None:
        if not self._left:
            self._state = _State.HEAD
            return End()
        if self._pos >= len(self._buffer):
            return None
        return Body(self._take())

    def _line(self, limit: int) -> bytes | Refusal | None:
        """The next CRLF-terminated line (without it), bounded by ``limit`` bytes."""
        buffer = self._buffer
        end = buffer.find(b"\r\n", self._pos, self._pos + limit + 2)
        if end < 0:
            if len(buffer) - self._pos > limit:
                return self._refuse(400, "Bad request: malformed chunked body")
            return None
        line = bytes(buffer[self._pos : end])
        self._pos = end + 2
        return line

    def _chunked(self) -> Event | None:
        while True:
            state = self._state
            if state is _State.CHUNK_DATA:
                if not self._left:
                    self._state = _State.CHUNK_END
                    continue
                if self._pos >= len(self._buffer):
                    return None
                return Body(self._take())
            if state is _State.CHUNK_END:
                if len(self._buffer) - self._pos < 2:
                    return None
                if self._buffer[self._pos : self._pos + 2] != b"\r\n":
                    return self._refuse(400, "Bad request: malformed chunked body")
                self._pos += 2
                self._state = _State.CHUNK_SIZE
                continue
            if state is _State.CHUNK_SIZE:
                line = self._line(MAX_CHUNK_LINE)
                if line is None or isinstance(line, Refusal):
                    return line
                size = line.partition(b";")[0]
                if not _HEX.fullmatch(size):
                    return self._refuse(400, "Bad request: malformed chunk size")
                chunk = int(size, 16)
                if not chunk:
                    self._state = _State.TRAILERS
                    self._trailer = 0
                    continue
                self._body += chunk
                if self._body > self.max_body:
                    return self._refuse(
                        413, f"Payload too large: the limit is {self.max_body} bytes"
                    )
                self._left = chunk
                self._state = _State.CHUNK_DATA
                continue
            # Trailers: read and ignored, within the header limit.
            line = self._line(self.max_head)
            if line is None or isinstance(line, Refusal):
                return line
            self._trailer += len(line) + 2
            if self._trailer > self.max_head:
                return self._refuse(431, "Request header fields too large (trailers)")
            if not line:
                self._state = _State.HEAD
                return End()


def response(status: int, headers: Headers, body: bytes = b"", *, head_only: bool = False) -> bytes:
    """A complete response: status line, headers (``Content-Length`` is added), body."""
    lines = [b"HTTP/1.1 %d %s" % (status, _phrase(status))]
    lines += [name + b": " + value for name, value in headers]
    if status >= 200 and status not in (204, 304):
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"")
    lines.append(b"" if head_only else body)
    return b"\r\n".join(lines)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"
