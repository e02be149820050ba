"""A connection's outgoing bytes: queued without waiting, capped, sent in batches.

Delivering to a connection never awaits: the same frame bytes are appended to
every subscriber's outbox, and one flush per scheduler tick hands everything
queued since the last one to the kernel in one system call. The cap is what
keeps a reader that stops reading from growing the daemon's memory: past it
the outbox is sealed and the session closes the connection.
"""

from __future__ import annotations

# Most buffers one sendmsg() takes (Linux's IOV_MAX).
MAX_BUFFERS = 1024


class Outbox:
    __slots__ = ("cap", "chunks", "offset", "overflowed", "scheduled", "sealed", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.offset = 0  # bytes of chunks[0] already sent
        self.size = 0  # bytes queued and not yet sent
        self.scheduled = False  # already in the flush list
        self.sealed = False  # takes no more data (closing)
        self.overflowed = False

    def push(self, data: bytes) -> bool:
        """Queue ``data``; True when the owner must be added to the flush list.

        Over the cap nothing is queued: the outbox is sealed and marked
        overflowed, and the owner is still scheduled so the flush sees it.
        """
        if self.sealed:
            return False
        size = self.size + len(data)
        if size > self.cap:
            self.sealed = self.overflowed = True
        else:
            self.chunks.append(data)
            self.size = size
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def push_last(self, data: bytes) -> bool:
        """Queue a final frame (a close) past the cap, then take nothing more."""
        self.chunks.append(data)
        self.size += len(data)
        self.sealed = True
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def schedule(self) -> bool:
        """Ask for a flush with nothing new queued (to close once drained)."""
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def drop_unsent(self) -> None:
        """Forget every frame not yet begun; a frame half sent must be finished first."""
        if self.offset:
            head = self.chunks[0]
            self.chunks = [head]
            self.size = len(head) - self.offset
        else:
            self.chunks = []
            self.size = 0

    def pending(self) -> list[bytes | memoryview]:
        """The next buffers to send, oldest first, at most MAX_BUFFERS of them."""
        buffers: list[bytes | memoryview] = list(self.chunks[:MAX_BUFFERS])
        if self.offset and buffers:
            buffers[0] = memoryview(self.chunks[0])[self.offset :]
        return buffers

    def consumed(self, n: int) -> None:
        """Account for ``n`` bytes the kernel took from the front."""
        self.size -= n
        if self.size == 0:
            self.chunks.clear()
            self.offset = 0
            return
        n += self.offset
        chunks = self.chunks
        i = 0
        while n >= len(chunks[i]):
            n -= len(chunks[i])
            i += 1
        del chunks[:i]
        self.offset = n
