"""A client that floods the daemon with one kind of traffic, as fast as it can.

    python tests/tools/flood.py HOST PORT KIND SECONDS

KIND: publish (valid publishes into a room with a reading subscriber), costly
(valid publishes of the costliest kind the default limit allows: 250 kB of
empty arrays, every one a value to decode and check), invalid (frames that are
not JSON), ping (ping frames), trickle (one large frame, one byte per TCP
segment). Prints "flooding" once the flood is on the wire, and at the end how
many frames (or bytes) it sent. Used by the
fairness tests, run as its own process so it competes for the daemon and not
for the test's interpreter.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def connect(host: str, port: int, path: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:60].decode("latin-1"))
    return sock


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload  # a zero mask: the payload as is


def drain(sock: socket.socket) -> None:
    """Read and discard (so the daemon never closes us as a slow consumer)."""
    try:
        while sock.recv(1 << 20):
            pass
    except OSError:
        pass


def flood(host: str, port: int, kind: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    sent = 0
    announced = False

    def flooding() -> None:
        """Tell the test the flood has begun (once)."""
        nonlocal announced
        if not announced:
            announced = True
            print("flooding", flush=True)

    if kind in ("publish", "costly"):
        reader = connect(host, port, "/parties/pubsub/flood")
        threading.Thread(target=drain, args=(reader,), daemon=True).start()
    costly = b'{"topic":"t","data":[' + b",".join([b"[]"] * 83_000) + b"]}"
    burst = {
        "publish": frame(1, b'{"topic":"t","data":"' + b"x" * 40 + b'"}') * 64,
        "costly": frame(1, costly) * 4,
        "invalid": frame(1, b"{{{ not json") * 64,
        "ping": frame(9, b"p") * 64,
    }
    while time.monotonic() < deadline:
        try:
            sock = connect(host, port, "/parties/pubsub/flood?topics=")
            threading.Thread(target=drain, args=(sock,), daemon=True).start()
            if kind == "trickle":
                big = frame(1, b'{"topic":"t","data":"' + b"y" * 250_000 + b'"}')
                for i in range(len(big)):
                    sock.send(big[i : i + 1])
                    sent += 1
                    if sent == 1000:
                        flooding()
                    if time.monotonic() > deadline:
                        break
            else:
                while time.monotonic() < deadline:
                    sock.sendall(burst[kind])
                    sent += 4 if kind == "costly" else 64
                    flooding()
        except OSError:
            pass  # closed by the daemon (abuse strikes, 1009): come back
    return sent


if __name__ == "__main__":
    host, port, kind, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    print(flood(host, port, kind, seconds), flush=True)
    os._exit(0)
