"""Server-to-client WebSocket data frames, built once per message.

wsproto builds frames per connection; a publish to a thousand subscribers
must not build a thousand identical frames. The server never masks, never
fragments and negotiates no extensions, so a data frame is a fixed header and
the payload (RFC 6455, section 5.2).
"""

from __future__ import annotations

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
# The longest server frame header: two bytes and an 8-byte length.
MAX_FRAME_HEADER = 10


def _frame(first_byte: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 65536:
        return bytes((first_byte, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first_byte, 127)) + n.to_bytes(8, "big") + payload


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked text frame; ``payload`` must be UTF-8."""
    return _frame(_FIN_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    return _frame(_FIN_BINARY, payload)


def close_frame(code: int, reason: str) -> bytes:
    """A close frame built from nothing but its code and reason (for internal errors,
    where the connection's own protocol state may be what broke)."""
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return _frame(0x88, payload)


# --- client-to-server frames ----------------------------------------------------

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80
_MASKED = 0x80
_CONTROL = 0x8
_MAX_CONTROL_PAYLOAD = 125


def unmask(payload: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """XOR the payload with the 4-byte masking key, as one big-integer operation."""
    n = len(payload)
    if not n:
        return b""
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(
        n, "little"
    )


class FrameSplitter:
    """Cuts the client's byte stream into whole frames, unmasking the common ones itself.

    Parsing every frame with wsproto costs more than the whole fan-out of a
    small room, so the one frame that matters for speed (a complete, masked
    text or binary frame with no reserved bits, outside a fragmented message)
    is unmasked here and returned as ``(opcode, payload)``. Every other frame
    (control, fragments, anything malformed) comes back whole as ``(0, frame)``
    for wsproto, which keeps the protocol rules; since it only ever receives
    whole frames, its buffer and ours never disagree.

    A data frame whose header announces more than ``max_size`` bytes comes
    back as ``(-1, b"")`` at once, before its payload is buffered.

    Linear in its input however it is cut: bytes are appended to one buffer
    (never the buffer copied to add to it), a frame is sliced out once it is
    complete, and the consumed front is dropped only once it is most of the
    buffer, so a large frame arriving one byte per ``recv`` costs its length,
    not its length squared.
    """

    RAW = 0
    TOO_BIG = -1

    __slots__ = ("_buffer", "_fragmented", "_pos", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._pos = 0
        self._fragmented = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        if self._pos and self._pos * 2 >= len(buffer):
            del buffer[: self._pos]
            self._pos = 0
        buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next whole frame, or None until more bytes arrive."""
        buf = self._buffer
        start = self._pos
        available = len(buf) - start
        if available < 2:
            return None
        first, second = buf[start], buf[start + 1]
        length = second & 0x7F
        header = 2
        if length == 126:
            header = 4
            if available < header:
                return None
            length = int.from_bytes(buf[start + 2 : start + 4], "big")
        elif length == 127:
            header = 10
            if available < header:
                return None
            length = int.from_bytes(buf[start + 2 : start + 10], "big")
        masked = second & _MASKED
        if masked:
            header += 4
        opcode = first & 0x0F
        if opcode & _CONTROL:
            if length > _MAX_CONTROL_PAYLOAD:
                # Malformed: let wsproto reject it from the header alone.
                self._pos = len(buf)
                return self.RAW, bytes(buf[start:])
        elif length > self.max_size:
            self._pos = len(buf)
            return self.TOO_BIG, b""
        end = start + header + length
        if len(buf) < end:
            return None
        self._pos = end
        if masked and not self._fragmented and first in (_FIN | OPCODE_TEXT, _FIN | OPCODE_BINARY):
            return opcode, unmask(
                buf[start + header : end], buf[start + header - 4 : start + header]
            )
        if not opcode & _CONTROL:
            # A data frame without FIN starts a fragmented message; a
            # continuation with FIN ends it. wsproto sees all of it.
            self._fragmented = not first & _FIN
        return self.RAW, bytes(buf[start:end])
