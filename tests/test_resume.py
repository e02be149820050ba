"""Resuming from a cursor: from the history here, or Redis's stream first, never a gap or
a repeat where the two meet."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fakes import message
from partysubd.core.clustering import Fetched
from partysubd.core.history import History
from partysubd.core.resume import FetchFirst, Replay, join_fetched, plan_resume


def history_of(count: int, keep: int = 100, topics: tuple[str, ...] = ("t",)) -> History:
    history = History(keep, 300.0, epoch="e")
    for n in range(1, count + 1):
        history.append(message(topics[n % len(topics)], n), None, float(n))
    return history


def test_a_cursor_the_history_reaches_is_replayed_here() -> None:
    plan = plan_resume(history_of(5), "e:2", ["*"], can_fetch=True)
    assert isinstance(plan, Replay) and plan.recovered and plan.epoch == "e"
    assert [seq for seq, _, _ in plan.entries] == [3, 4, 5]


def test_only_what_the_patterns_match_is_replayed() -> None:
    plan = plan_resume(history_of(6, topics=("a", "b")), "e:0", ["a"], can_fetch=False)
    assert isinstance(plan, Replay)
    assert [m.topic for _, m, _ in plan.entries] == ["a", "a", "a"]


def test_a_cursor_past_the_kept_run_asks_redis_first_in_a_cluster() -> None:
    history = history_of(10, keep=3)
    assert plan_resume(history, "e:2", ["*"], can_fetch=True) == FetchFirst("e", 2)
    alone = plan_resume(history, "e:2", ["*"], can_fetch=False)
    assert isinstance(alone, Replay) and not alone.recovered and alone.entries == []


def test_a_foreign_or_bad_cursor_is_not_fetched() -> None:
    history = history_of(3)
    for cursor in ("junk", "", "other:1x"):
        plan = plan_resume(history, cursor, ["*"], can_fetch=True)
        assert isinstance(plan, Replay) and not plan.recovered, cursor


def test_nothing_to_fetch_when_the_room_keeps_no_history() -> None:
    history = History(0, 300.0, epoch="e")
    plan = plan_resume(history, "e:7", ["*"], can_fetch=True)
    assert isinstance(plan, Replay) and not plan.recovered


def test_redis_unreachable_means_not_recovered() -> None:
    assert join_fetched(None, history_of(3), "e", 1, ["*"]) == Replay(False, "e", [])


@given(
    fetched_to=st.integers(0, 20),
    here_from=st.integers(1, 25),
    here_to=st.integers(0, 25),
    after=st.integers(0, 20),
)
def test_fetched_and_kept_here_join_once_each_in_order(
    fetched_to: int, here_from: int, here_to: int, after: int
) -> None:
    """Redis holds after..fetched_to; this daemon kept here_from..here_to since: the
    replay is their union after the cursor, each message once, in order."""
    fetched: Fetched = (
        "e",
        [(n, message("t", n), None) for n in range(after + 1, fetched_to + 1)],
    )
    history = History(100, 300.0, epoch="e")
    for n in range(here_from, here_to + 1):
        history.mirror(message("t", n), None, n, "e", float(n))
    replay = join_fetched(fetched, history, "e", after, ["*"])
    seqs = [seq for seq, _, _ in replay.entries]
    expected = sorted(
        set(range(after + 1, fetched_to + 1))
        | {n for n in range(here_from, here_to + 1) if n > after}
    )
    assert replay.recovered and seqs == expected
    assert all(m.data == seq for seq, m, _ in replay.entries)
