"""Server-to-client WebSocket data frames, built once per message.

wsproto builds frames per connection; a publish to a thousand subscribers
must not build a thousand identical frames. The server never masks, never
fragments and negotiates no extensions, so a data frame is a fixed header and
the payload (RFC 6455, section 5.2).
"""

from __future__ import annotations

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82


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
