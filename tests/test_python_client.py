"""The Python client (``import partysub``) against a real daemon."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import trio

import partysub
from daemons import Daemon, DaemonFactory
from partysub.testing import RunningDaemon, running_daemon
from partysubd.core.config import DEFAULT_BINDING_TOML

HISTORY = (
    "[server]\nping_interval = 0\n\n"
    + DEFAULT_BINDING_TOML
    + '\n[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 1000\n'
)


def url(daemon: Daemon) -> str:
    return f"http://{daemon.address}"


def test_subscribe_publish_and_set_topics(daemon: Daemon) -> None:
    async def main() -> list[Any]:
        got = []
        async with partysub.connect(url(daemon), room="r", topics=["a", "b:*"]) as sub:
            await sub.publish("a", {"n": 1})
            await partysub.publish(url(daemon), "r", "b:1", "over http")
            await partysub.publish(url(daemon), "r", "c", "not subscribed")
            async for message in sub:
                got.append(message)
                if len(got) == 2:
                    break
            await sub.set_topics(["c"])
            await sub.publish("c", "now")
            async for message in sub:
                got.append(message)
                break
        return got

    got = trio.run(main)
    assert [(m.topic, m.data) for m in got] == [("a", {"n": 1}), ("b:1", "over http"), ("c", "now")]
    assert all(m.id for m in got), "cursors come with resume=True"


def test_reconnects_and_resumes_without_loss(start_daemon: DaemonFactory) -> None:
    daemon = start_daemon(HISTORY)
    assert daemon.admin

    def cut(abort: bool) -> None:
        query = "?abort=1" if abort else ""
        request = urllib.request.Request(
            f"{daemon.admin}/rooms/pubsub/r/connections/py{query}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=5).read()

    async def main() -> tuple[list[int], partysub.Subscription]:
        received: list[int] = []
        async with partysub.connect(url(daemon), room="r", pk="py") as sub:
            for n in range(300):
                await partysub.publish(url(daemon), "r", "t", n)
                if n in (100, 200):
                    # Cut the connection of the moment: the first, then the one it made.
                    while sub.connections < (1 if n == 100 else 2) or sub._ws is None:
                        await trio.sleep(0.01)
                    await trio.to_thread.run_sync(cut, n == 200)
            async for message in sub:
                received.append(message.data)
                if len(received) == 300:
                    break
        return received, sub

    received, sub = trio.run(main)
    assert received == list(range(300))
    assert sub.connections == 3
    assert sub.last_resume is not None and sub.last_resume.recovered


def test_msgpack_carries_bytes(daemon: Daemon) -> None:
    async def main() -> partysub.Message:
        async with partysub.connect(url(daemon), room="r", use_msgpack=True) as sub:
            await sub.publish("blob", b"\x00\x01\xff")
            async for message in sub:
                return message
        raise AssertionError("no message")

    message = trio.run(main)
    assert message.data == b"\x00\x01\xff"


def test_refusals_are_errors_with_the_reason(daemon: Daemon) -> None:
    async def subscribe_wrong_party() -> None:
        async with partysub.connect(url(daemon), room="r", party="nope"):
            pass

    with pytest.raises(partysub.PublishError, match="HTTP 404: Not found"):
        trio.run(subscribe_wrong_party)
    with pytest.raises(partysub.PublishError, match="HTTP 400: Invalid request"):
        trio.run(lambda: partysub.publish(url(daemon), "r", "", 1))
    with pytest.raises(partysub.PublishError, match="cannot reach"):
        trio.run(lambda: partysub.publish("http://127.0.0.1:9", "r", "t", 1))


def test_error_frames_are_kept(daemon: Daemon) -> None:
    async def main() -> list[dict[str, Any]]:
        async with partysub.connect(url(daemon), room="r", topics=["x"]) as sub:
            await sub.publish("y" * 300, 1)
            await sub.publish("x", "after")
            async for _ in sub:
                return sub.errors
        raise AssertionError("no message")

    errors = trio.run(main)
    assert errors and errors[0]["code"] == "bad_topic"
    json.dumps(errors)


def test_the_testing_fixture_runs_a_daemon_in_process(partysub_daemon: RunningDaemon) -> None:
    async def main() -> partysub.Message:
        async with partysub.connect(partysub_daemon.url, room="r") as sub:
            await partysub.publish(partysub_daemon.url, "r", "t", "in process")
            async for message in sub:
                return message
        raise AssertionError("no message")

    assert trio.run(main).data == "in process"


def test_running_daemon_with_options_and_a_clean_stop() -> None:
    with running_daemon('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 10\n') as running:
        assert running.config.bindings[0].options.history_messages == 10
        with urllib.request.urlopen(running.admin + "/health", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    with pytest.raises(OSError):
        urllib.request.urlopen(running.url, timeout=2)
