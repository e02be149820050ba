"""The Redis link's own rules, with a fake client where Redis's timing cannot be forced."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from fakes import FakeSubscriber, message
from partysubd.cluster.link import ClusterLink
from partysubd.core.config import DEFAULT_BINDING_TOML, ClusterSettings, parse_config
from partysubd.core.envelope import Envelope, Origin
from partysubd.core.hub import Hub


class StuckClient:
    """A client whose first command never answers."""

    async def ping(self) -> None:
        await trio.sleep_forever()


@asynccontextmanager
async def closing_fails_when_cancelled() -> AsyncIterator[StuckClient]:
    """As coredis's client: a task group whose reader fails (the connection
    lost) when the stop cancels it, so the stop arrives as a group holding
    both the cancellation and a ConnectionError."""

    async def reader() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise ConnectionError("Connection lost while waiting for push messages") from None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        yield StuckClient()


def test_a_stop_while_coredis_fails_to_close_is_a_clean_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(DEFAULT_BINDING_TOML, "t")
    link = ClusterLink(ClusterSettings(redis_url="redis://127.0.0.1:1"), "d1")
    link.attach(Hub.build(config, link, random.Random(1)), config.server)
    monkeypatch.setattr(link, "_redis", closing_fails_when_cancelled)

    async def main() -> Any:
        with trio.move_on_after(0.05) as scope:
            await link.run("http://127.0.0.1:1", lambda: None)
        return scope.cancelled_caught

    assert trio.run(main) is True


def test_the_link_delivers_only_into_bindings_this_daemon_has() -> None:
    from partysubd.cluster.link import ClusterLink
    from partysubd.core.config import ClusterSettings

    config = parse_config(DEFAULT_BINDING_TOML, "t")
    link = ClusterLink(ClusterSettings(redis_url="redis://127.0.0.1:1"), "d1")
    hub = Hub.build(config, link, random.Random(2))
    link.attach(hub, config.server)
    conn = FakeSubscriber("c")
    hub.registry.join(hub.registry.parties["pubsub"], "r", conn, None, ["*"])
    envelope = Envelope(message("t", 3), origin=Origin.RELAYED)
    link._deliver("NoSuchBinding", "r", envelope, 2.0)
    assert conn.frames() == []
    link._deliver("PubSub", "r", envelope, 2.0)
    assert len(conn.frames()) == 1
