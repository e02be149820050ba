"""TLS on the public listener: ssl's memory-BIO objects between our sockets and sessions.

The engine keeps its own non-blocking sockets; a TLS connection just passes
its bytes through an ``ssl.SSLObject`` on the way in and out. Every
connection encrypts its own frames, so the encode-once saving stops at the
plaintext; docs/performance.md says what that costs.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context from PEM files; raises OSError or ssl.SSLError with the reason."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(Path(cert_file), Path(key_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


class TLSLayer:
    """One connection's TLS state: ciphertext in, plaintext out, and back."""

    __slots__ = ("_in", "_obj", "_out", "handshaken", "pending")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self.handshaken = False
        self.pending = b""  # ciphertext not yet taken by the kernel

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """Feed ciphertext; the plaintext it completes, and whether the peer closed.

        Raises ssl.SSLError for a failed handshake or a corrupt record.
        """
        self._in.write(data)
        if not self.handshaken:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                self._collect()
                return b"", False
            self.handshaken = True
        chunks = []
        eof = False
        try:
            while True:
                chunk = self._obj.read(65536)
                if not chunk:
                    eof = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            eof = True
        self._collect()
        return b"".join(chunks), eof

    def send(self, plaintext: bytes) -> None:
        """Encrypt; the ciphertext joins ``pending``."""
        self._obj.write(plaintext)
        self._collect()

    def _collect(self) -> None:
        produced = self._out.read()
        if produced:
            self.pending += produced
