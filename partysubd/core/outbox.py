"""A connection's outgoing bytes: queued without waiting, capped, sent in batches.

Delivering to a connection never awaits: the same frame bytes are appended to
every subscriber's outbox, and one flush per scheduler tick hands everything
queued since the last one to the kernel in one system call. The cap is what
keeps a reader that stops reading from growing the daemon's memory: past it
the outbox is sealed and the session closes the connection.
"""

from __future__ import annotations

from collections.abc import Callable

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

    def push_message(self, frame: bytes, topic: str, seq: int) -> bool:
        """Queue a published message; the policies below use its topic and number."""
        return self.push(frame)

    def adopt(self, other: Outbox) -> None:
        """Take over what another outbox holds (a connection changing policy)."""
        self.chunks, self.offset, self.size = other.chunks, other.offset, other.size
        self.scheduled, self.sealed, self.overflowed = (
            other.scheduled,
            other.sealed,
            other.overflowed,
        )
        self._adopted(len(self.chunks))

    def _adopted(self, count: int) -> None:
        """Subclasses: ``count`` frames of no message were taken over."""


# Room kept for the gap frame itself when dropping: {"__gap":{"from":C,"to":C}}.
GAP_RESERVE = 128
NOT_A_MESSAGE = -1


class DropOldestOutbox(Outbox):
    """``slow_consumer = "drop"``: past the cap, drop the oldest frames, say which with a gap.

    The frames dropped are replaced by one gap frame naming the first and last
    message numbers lost (merged with a gap not yet sent), so a client can
    refetch exactly that range; the newest messages always get through.
    """

    __slots__ = ("gap_frame", "seqs")

    def __init__(self, cap: int, gap_frame: Callable[[int, int], bytes]) -> None:
        super().__init__(cap)
        self.gap_frame = gap_frame
        self.seqs: list[int | tuple[int, int]] = []  # per chunk: message number, gap range, or -1

    def _adopted(self, count: int) -> None:
        self.seqs = [NOT_A_MESSAGE] * count

    def push(self, data: bytes) -> bool:
        return self._queue(data, NOT_A_MESSAGE)

    def push_message(self, frame: bytes, topic: str, seq: int) -> bool:
        return self._queue(frame, seq)

    def push_last(self, data: bytes) -> bool:
        self.seqs.append(NOT_A_MESSAGE)
        return super().push_last(data)

    def _queue(self, data: bytes, seq: int) -> bool:
        if self.sealed:
            return False
        if self.size + len(data) + GAP_RESERVE > self.cap:
            self._drop_oldest(len(data))
        self.chunks.append(data)
        self.seqs.append(seq)
        self.size += len(data)
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def _drop_oldest(self, incoming: int) -> None:
        start = 1 if self.offset else 0
        end = start
        lost: list[int] = []
        freed = 0
        while end < len(self.chunks) and self.size - freed + incoming + GAP_RESERVE > self.cap:
            freed += len(self.chunks[end])
            mark = self.seqs[end]
            if isinstance(mark, tuple):
                lost.extend(mark)
            elif mark != NOT_A_MESSAGE:
                lost.append(mark)
            end += 1
        if end == start:
            return
        del self.chunks[start:end]
        del self.seqs[start:end]
        self.size -= freed
        if lost:
            span = (min(lost), max(lost))
            gap = self.gap_frame(*span)
            self.chunks.insert(start, gap)
            self.seqs.insert(start, span)
            self.size += len(gap)

    def consumed(self, n: int) -> None:
        before = len(self.chunks)
        super().consumed(n)
        del self.seqs[: before - len(self.chunks)]

    def drop_unsent(self) -> None:
        super().drop_unsent()
        del self.seqs[len(self.chunks) :]


# What one topic in the latest-per-topic index costs beyond its name: the dict
# entry, the position, the parallel list slot (counted against the cap).
INDEX_ENTRY = 100
BLANK = ""  # a replaced frame's slot in ``_topics`` (topics are never empty)


class LatestOutbox(Outbox):
    """``slow_consumer = "latest"``: once a reader falls behind, it gets the latest
    message of each topic, not every message.

    For state that is overwritten (prices, cursors, presence). While the queue
    fits in the cap every message is kept, in order, as with any policy. When a
    push would pass the cap the reader is behind: the queue is collapsed to the
    newest queued frame of each topic (other frames and a frame half sent are
    kept), and from then on until the queue has drained, a newer message of a
    topic replaces the one queued, in O(1) (its slot emptied: a zero-length
    buffer costs the kernel nothing). If even the latest of each topic pass
    the cap, the connection is closed as with "disconnect".

    While behind, the latest-per-topic index counts against the cap too
    (``index_bytes``); a topic leaves it when its frame is sent, and emptied
    slots are compacted once they are most of the queue, so a reader that never
    catches up cannot grow it past the cap either.
    """

    __slots__ = ("_behind", "_blanks", "_latest", "_removed", "_topics", "index_bytes")

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._behind = False
        self._latest: dict[str, int] = {}  # topic -> absolute position of its queued frame
        self._topics: list[str | None] = []  # per chunk: its topic, None, or BLANK
        self._removed = 0  # frames consumed from the front since the start
        self._blanks = 0
        self.index_bytes = 0

    def _adopted(self, count: int) -> None:
        self._topics = [None] * count

    def push(self, data: bytes) -> bool:
        return self._queue(data, None)

    def push_message(self, frame: bytes, topic: str, seq: int) -> bool:
        return self._queue(frame, topic)

    def push_last(self, data: bytes) -> bool:
        self._topics.append(None)
        return super().push_last(data)

    def _queue(self, data: bytes, topic: str | None) -> bool:
        if self.sealed:
            return False
        if not self._behind and self.size + len(data) > self.cap:
            self._collapse()
        entry = 0  # what a topic new to the index adds to it
        if self._behind and topic is not None:
            position = self._latest.get(topic)
            if position is None:
                entry = INDEX_ENTRY + len(topic)
            else:
                index = position - self._removed
                if index > 0 or (index == 0 and not self.offset):
                    self.size -= len(self.chunks[index])
                    self.chunks[index] = b""
                    self._topics[index] = BLANK
                    self._blanks += 1
        if self.size + self.index_bytes + entry + len(data) > self.cap:
            self.sealed = self.overflowed = True
        else:
            self.chunks.append(data)
            self._topics.append(topic)
            self.size += len(data)
            if self._behind and topic is not None:
                self.index_bytes += entry
                self._latest[topic] = self._removed + len(self.chunks) - 1
            if self._blanks > 64 and self._blanks * 2 > len(self.chunks):
                self._compact()
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def _collapse(self) -> None:
        """The reader fell behind: keep only the newest queued frame of each topic."""
        newest = {topic: i for i, topic in enumerate(self._topics) if topic}
        half_sent = 1 if self.offset else 0
        keep = [
            i
            for i, topic in enumerate(self._topics)
            if i < half_sent or not topic or newest[topic] == i
        ]
        self.size -= sum(len(self.chunks[i]) for i in range(len(self.chunks))) - sum(
            len(self.chunks[i]) for i in keep
        )
        self.chunks = [self.chunks[i] for i in keep]
        self._topics = [self._topics[i] for i in keep]
        self._index()
        self._behind = True

    def _compact(self) -> None:
        """Drop the emptied slots; positions are renumbered from the same origin."""
        keep = [i for i, topic in enumerate(self._topics) if topic is not BLANK]
        self.chunks = [self.chunks[i] for i in keep]
        self._topics = [self._topics[i] for i in keep]
        self._index()

    def _index(self) -> None:
        self._latest = {t: self._removed + i for i, t in enumerate(self._topics) if t}
        self.index_bytes = sum(INDEX_ENTRY + len(t) for t in self._latest)
        self._blanks = 0

    def consumed(self, n: int) -> None:
        before = len(self.chunks)
        super().consumed(n)
        gone = before - len(self.chunks)
        if not gone:
            return
        if not self.chunks:  # caught up: every message again
            self._topics = []
            self._latest = {}
            self.index_bytes = self._blanks = 0
            self._removed += gone
            self._behind = False
            return
        latest = self._latest
        for i in range(gone):
            topic = self._topics[i]
            if topic is BLANK:
                self._blanks -= 1
            elif topic is not None and latest.get(topic) == self._removed + i:
                del latest[topic]
                self.index_bytes -= INDEX_ENTRY + len(topic)
        del self._topics[:gone]
        self._removed += gone

    def drop_unsent(self) -> None:
        super().drop_unsent()
        del self._topics[len(self.chunks) :]
        self._index()
