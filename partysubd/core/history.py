"""A room's sequence of messages: cursors, a bounded history, idempotency keys.

Every message published to a room gets the next number of the room's one
sequence; its cursor is ``<epoch>:<seq>``. The epoch is random per room
lifetime, so a cursor from before a restart (or from a room that emptied and
forgot its history) is recognised as foreign rather than misread.

With a history (``history_messages`` > 0 for the binding), the last messages
are kept, bounded by count, by age and by bytes, so a reconnecting client that
says ``since=<cursor>`` gets exactly what it missed; and a publish carrying an
idempotency key that is still in the history is recognised as a repeat.

Bytes are what a client can make the daemon hold, so they are bounded twice:
each room's history by ``history_bytes``, and every history together by one
``HistoryBudget`` (``server.max_history_bytes``), which forgets the oldest
entries of the whole daemon first. An entry counts its encoded size (both
forms of the message) plus ``ENTRY_OVERHEAD`` for the objects that hold it.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .protocol import Publish

# Bytes an entry costs beyond its message's encodings: the entry and its mark,
# the message object, the bytes objects' headers, the topic string, the deque
# slot and the budget's order (measured: 20 rooms of 15,000 one-topic messages
# under a 32 MiB budget grew the daemon's RSS by 33 MiB with this figure).
ENTRY_OVERHEAD = 448


class Mark:
    """What the budget remembers of a kept entry: its size and whether it is still
    kept. Not the entry itself: a forgotten message must not stay alive in the
    budget's order until that is compacted."""

    __slots__ = ("kept", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.kept = True


@dataclass(eq=False, slots=True)
class Entry:
    seq: int
    message: Publish
    publisher: str | None
    time: float
    mark: Mark = field(default_factory=lambda: Mark(0))

    @property
    def size(self) -> int:
        return self.mark.size


class HistoryBudget:
    """The bytes every history of the daemon holds together, and who goes first.

    Entries are remembered in the order they were kept, across rooms; over the
    budget the oldest are forgotten. Each room's own entries are in order too,
    so the daemon's oldest kept entry is always the front of its room's history.
    Entries a room forgot itself stay in the order (as a ``Mark``, without their
    message) until passed, and the order is compacted once they are the
    majority, so its length stays linear in what is kept.
    """

    __slots__ = ("_forgotten", "_order", "bytes", "evicted", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0  # entries forgotten to stay within the budget
        self._order: deque[tuple[History, Mark]] = deque()
        self._forgotten = 0

    def kept(self, history: History, mark: Mark) -> None:
        self.bytes += mark.size
        self._order.append((history, mark))
        while self.bytes > self.max_bytes and self._order:
            owner, oldest = self._order.popleft()
            if oldest.kept:
                owner._drop_front(by_budget=True)
                self.bytes -= oldest.size
                self.evicted += 1
            else:
                self._forgotten -= 1

    def forgotten(self, mark: Mark) -> None:
        self.bytes -= mark.size
        self._forgotten += 1
        if self._forgotten > 1024 and self._forgotten * 2 > len(self._order):
            self._order = deque(pair for pair in self._order if pair[1].kept)
            self._forgotten = 0


@dataclass(frozen=True, slots=True)
class Resume:
    """The answer to ``since=<cursor>``."""

    recovered: bool
    entries: tuple[Entry, ...]


def new_epoch() -> str:
    return secrets.token_hex(4)


# ``<epoch>:<seq>``: ASCII only (``str.isdigit`` takes "²" and "٣"), a sequence
# number that fits the 63 bits Redis counts in.
_CURSOR = re.compile(r"([0-9A-Za-z_-]{1,64}):([0-9]{1,19})", re.ASCII)
MAX_SEQ = 2**63 - 1


def parse_cursor(cursor: str) -> tuple[str, int] | None:
    """(epoch, seq) of a cursor, or None for anything that is not one."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        return None
    seq = int(match.group(2))
    return (match.group(1), seq) if seq <= MAX_SEQ else None


class History:
    __slots__ = (
        "_entries",
        "_idem",
        "budget",
        "bytes",
        "epoch",
        "last_seq",
        "max_age",
        "max_bytes",
        "max_messages",
    )

    def __init__(
        self,
        max_messages: int,
        max_age: float,
        epoch: str | None = None,
        *,
        max_bytes: int = 1 << 62,
        budget: HistoryBudget | None = None,
    ) -> None:
        self.max_messages = max_messages
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.budget = budget
        self.epoch = epoch or new_epoch()
        self.last_seq = 0
        self.bytes = 0
        self._entries: deque[Entry] = deque()
        self._idem: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.max_messages > 0

    def __len__(self) -> int:
        return len(self._entries)

    def cursor(self, seq: int) -> str:
        return f"{self.epoch}:{seq}"

    def is_repeat(self, idem: str | None) -> bool:
        return idem is not None and idem in self._idem

    def append(self, message: Publish, publisher: str | None, now: float) -> int:
        """Number the message; keep it if the room has a history. Its sequence number."""
        self.last_seq += 1
        self._keep(self.last_seq, message, publisher, now)
        return self.last_seq

    def _keep(self, seq: int, message: Publish, publisher: str | None, now: float) -> None:
        if self.max_messages <= 0:
            return
        size = message.size + len(publisher or "") + ENTRY_OVERHEAD
        entry = Entry(seq, message, publisher, now, Mark(size))
        entries = self._entries
        entries.append(entry)
        self.bytes += size
        if message.idem is not None:
            self._idem[message.idem] = seq
        if self.budget is not None:
            # First, so the budget's order and this room's agree entry by entry.
            self.budget.kept(self, entry.mark)
        while len(entries) > self.max_messages or (self.bytes > self.max_bytes and entries):
            self._drop_front()
        self.expire(now)

    def mirror(
        self, message: Publish, publisher: str | None, seq: int, epoch: str, now: float
    ) -> bool:
        """Keep a message the cluster numbered (in Redis); whether it is new here.

        The room's numbering is the cluster's: a new epoch replaces the local
        one, and a seq that does not follow the last one starts the kept run
        afresh, so ``since`` never answers across messages this daemon missed.
        """
        if epoch != self.epoch:
            self.epoch = epoch
            self._clear()
        elif seq <= self.last_seq:
            return False
        if seq != self.last_seq + 1:
            self._clear()
        self.last_seq = seq
        self._keep(seq, message, publisher, now)
        return True

    def forget(self) -> None:
        """Drop the local copy of a cluster room's history (it went stale): a new
        epoch, so no cursor matches it and resumes ask Redis instead."""
        self.epoch = new_epoch()
        self.last_seq = 0
        self._clear()

    def release(self) -> None:
        """The room is gone: give its bytes back to the budget."""
        self._clear()

    def _clear(self) -> None:
        while self._entries:
            self._drop_front()

    def entries_after(self, epoch: str, seq: int) -> list[Entry]:
        """What is kept after ``epoch:seq`` (nothing for another epoch)."""
        if epoch != self.epoch:
            return []
        return [e for e in self._entries if e.seq > seq]

    def expire(self, now: float) -> None:
        """Forget what is older than max_age."""
        entries = self._entries
        horizon = now - self.max_age
        while entries and entries[0].time < horizon:
            self._drop_front()

    def _drop_front(self, *, by_budget: bool = False) -> None:
        entry = self._entries.popleft()
        entry.mark.kept = False
        self.bytes -= entry.size
        idem = entry.message.idem
        if idem is not None and self._idem.get(idem) == entry.seq:
            del self._idem[idem]
        if self.budget is not None and not by_budget:
            self.budget.forgotten(entry.mark)

    def since(self, cursor: str, wanted: Callable[[Entry], bool]) -> Resume:
        """The messages after ``cursor`` that ``wanted`` accepts, if the history reaches back.

        Recovered means nothing after the cursor is missing: the cursor is of
        this room's epoch, not in the future, and either the next message is
        still kept or nothing has been published since.
        """
        parsed = parse_cursor(cursor)
        if parsed is None or parsed[0] != self.epoch or parsed[1] > self.last_seq:
            return Resume(False, ())
        after = parsed[1]
        if after == self.last_seq:
            return Resume(True, ())
        if not self._entries or self._entries[0].seq > after + 1:
            return Resume(False, ())
        return Resume(True, tuple(e for e in self._entries if e.seq > after and wanted(e)))
