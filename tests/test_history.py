"""A room's history: what a cursor missed, ages, idempotency keys."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fakes import message
from partysubd.core.history import History, parse_cursor


def everything(entry: Any) -> bool:
    return True


@given(
    max_messages=st.integers(1, 20),
    published=st.integers(0, 60),
    since=st.integers(0, 70),
)
def test_since_returns_exactly_what_followed_or_says_it_cannot(
    max_messages: int, published: int, since: int
) -> None:
    history = History(max_messages, max_age=1e9, epoch="e")
    for i in range(published):
        history.append(message("t", i), None, now=float(i))
    resume = history.since(f"e:{since}", everything)
    kept_from = max(1, published - max_messages + 1)
    if since > published:
        assert not resume.recovered, "a cursor from the future is not ours"
    elif since == published or since + 1 >= kept_from:
        assert resume.recovered
        assert [e.seq for e in resume.entries] == list(range(since + 1, published + 1))
        assert [e.message.data for e in resume.entries] == list(range(since, published))
    else:
        assert not resume.recovered
        assert resume.entries == ()


@given(st.text(max_size=12))
def test_foreign_or_malformed_cursors_never_recover(cursor: str) -> None:
    history = History(10, 60.0, epoch="mine")
    history.append(message("t", 1), None, 0.0)
    resume = history.since(cursor, everything)
    if cursor not in ("mine:0", "mine:1"):
        assert not resume.recovered


def test_history_ages_out_and_forgets_idempotency_keys() -> None:
    history = History(100, max_age=10.0, epoch="e")
    history.append(message("t", 1, idem="k"), None, now=0.0)
    assert history.is_repeat("k")
    history.append(message("t", 2), None, now=5.0)
    history.expire(now=10.5)
    assert len(history) == 1 and not history.is_repeat("k")
    assert not history.since("e:0", everything).recovered
    assert history.since("e:1", everything).recovered


def test_without_history_messages_are_numbered_but_not_kept() -> None:
    history = History(0, 300.0)
    assert [history.append(message("t", i), None, 0.0) for i in range(3)] == [1, 2, 3]
    assert len(history) == 0 and not history.enabled
    assert not history.is_repeat(None)


def test_parse_cursor() -> None:
    assert parse_cursor("ab12:7") == ("ab12", 7)
    assert parse_cursor("e:9223372036854775807") == ("e", 2**63 - 1)
    for bad in ("", "7", ":7", "e:", "e:-1", "e:x", "a:b:7", "e:²", "e:٣", "e:+1", "e: 1"):
        assert parse_cursor(bad) is None
    assert parse_cursor("e:9223372036854775808") is None
    assert parse_cursor("e:" + "1" * 5000) is None
