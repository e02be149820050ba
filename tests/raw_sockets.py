"""Hand-driven TCP and WebSocket bytes: what no well-behaved client library will send."""

from __future__ import annotations

import socket

from daemons import Daemon


def upgrade_request(path: str, headers: str = "") -> bytes:
    """A WebSocket upgrade request for ``path`` (the RFC's example key), as bytes."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{headers}\r\n"
    ).encode()


class RawClient:
    """A hand-driven TCP client for what no well-behaved client library will send."""

    def __init__(self, daemon: Daemon) -> None:
        self.sock = socket.create_connection((daemon.host, daemon.port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def upgrade(self, path: str = "/parties/pubsub/raw") -> bytes:
        """Open a WebSocket by hand; returns the response head."""
        self.send(upgrade_request(path))
        head = self.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return head

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_all(self, timeout: float = 10) -> bytes:
        """Everything until the server closes the connection."""
        self.sock.settimeout(timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.buffer += chunk
        data, self.buffer = self.buffer, b""
        return data

    def close_frame(self, timeout: float = 10) -> tuple[int, str]:
        """Read frames until the server's close frame; its code and reason."""
        from wsproto.frame_protocol import FrameProtocol, Opcode

        proto = FrameProtocol(client=True, extensions=[])
        self.sock.settimeout(timeout)
        data, self.buffer = self.buffer, b""
        while True:
            proto.receive_bytes(data)
            for frame in proto.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    assert isinstance(frame.payload, tuple), frame.payload
                    code, reason = frame.payload
                    return int(code), str(reason)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise AssertionError("the server closed without a close frame")

    def close(self) -> None:
        self.sock.close()


def masked_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame with any bits we like (masking key of zeros)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload
