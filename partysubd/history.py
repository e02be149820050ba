"""A room's sequence of messages: cursors, a bounded history, idempotency keys.

Every message published to a room gets the next number of the room's one
sequence; its cursor is ``<epoch>:<seq>``. The epoch is random per room
lifetime, so a cursor from before a restart (or from a room that emptied and
forgot its history) is recognised as foreign rather than misread.

With a history (``history_messages`` > 0 for the binding), the last messages
are kept, bounded by count and by age, so a reconnecting client that says
``since=<cursor>`` gets exactly what it missed; and a publish carrying an
idempotency key that is still in the history is recognised as a repeat.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import Publish


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    message: Publish
    publisher: str | None
    time: float


@dataclass(frozen=True, slots=True)
class Resume:
    """The answer to ``since=<cursor>``."""

    recovered: bool
    entries: tuple[Entry, ...]


def new_epoch() -> str:
    return secrets.token_hex(4)


def parse_cursor(cursor: str) -> tuple[str, int] | None:
    epoch, sep, seq = cursor.rpartition(":")
    if not sep or not epoch or not seq.isdigit():
        return None
    return epoch, int(seq)


class History:
    __slots__ = ("_entries", "_idem", "epoch", "last_seq", "max_age", "max_messages")

    def __init__(self, max_messages: int, max_age: float, epoch: str | None = None) -> None:
        self.max_messages = max_messages
        self.max_age = max_age
        self.epoch = epoch or new_epoch()
        self.last_seq = 0
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
        if self.max_messages > 0:
            self._entries.append(Entry(seq, message, publisher, now))
            if message.idem is not None:
                self._idem[message.idem] = seq
            if len(self._entries) > self.max_messages:
                self._forget(self._entries.popleft())
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
            self._entries.clear()
            self._idem.clear()
        elif seq <= self.last_seq:
            return False
        if seq != self.last_seq + 1:
            self._entries.clear()
        self.last_seq = seq
        self._keep(seq, message, publisher, now)
        return True

    def forget(self) -> None:
        """Drop the local copy of a cluster room's history (it went stale): a new
        epoch, so no cursor matches it and resumes ask Redis instead."""
        self.epoch = new_epoch()
        self.last_seq = 0
        self._entries.clear()
        self._idem.clear()

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
            self._forget(entries.popleft())

    def _forget(self, entry: Entry) -> None:
        idem = entry.message.idem
        if idem is not None and self._idem.get(idem) == entry.seq:
            del self._idem[idem]

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
