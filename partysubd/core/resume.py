"""A connection resuming from a cursor: what it missed, with no gap and no repeat.

``plan_resume`` answers from the room's history when it reaches back to the
cursor; in a cluster a daemon may not hold it that far back (the client was on
another daemon), and then the plan is to fetch the stream from Redis first,
listening to nothing meanwhile. ``join_fetched`` merges what Redis kept with
what this daemon received since, so the replay and the live messages that
follow it meet exactly. The session queues the replay and installs the patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .clustering import Fetched
from .history import Entry, History, parse_cursor
from .protocol import Publish
from .topics import matches

# (seq, message, publisher): one message to replay, with its number.
Missed = tuple[int, Publish, str | None]


@dataclass(frozen=True, slots=True)
class Replay:
    """``recovered`` False: the history no longer reaches back (refetch your state)."""

    recovered: bool
    epoch: str
    entries: list[Missed]


@dataclass(frozen=True, slots=True)
class FetchFirst:
    """Ask Redis for the room's stream after ``epoch:after`` before going live."""

    epoch: str
    after: int


def _wanted(patterns: Sequence[str]) -> Callable[[Entry], bool]:
    return lambda entry: any(matches(p, entry.message.topic) for p in patterns)


def plan_resume(
    history: History, cursor: str, patterns: Sequence[str], can_fetch: bool
) -> Replay | FetchFirst:
    resume = history.since(cursor, _wanted(patterns))
    parsed = parse_cursor(cursor)
    if not resume.recovered and can_fetch and history.enabled and parsed is not None:
        return FetchFirst(*parsed)
    entries = [(e.seq, e.message, e.publisher) for e in resume.entries]
    return Replay(resume.recovered, history.epoch, entries)


def join_fetched(
    fetched: Fetched, history: History, epoch: str, after: int, patterns: Sequence[str]
) -> Replay:
    """Redis answered: its entries and what this daemon kept since, once each, in order."""
    if fetched is None:
        return Replay(False, epoch, [])
    by_seq = {seq: (seq, message, publisher) for seq, message, publisher in fetched[1]}
    for entry in history.entries_after(epoch, after):
        by_seq.setdefault(entry.seq, (entry.seq, entry.message, entry.publisher))
    entries = [
        by_seq[seq]
        for seq in sorted(by_seq)
        if any(matches(p, by_seq[seq][1].topic) for p in patterns)
    ]
    return Replay(True, epoch, entries)
