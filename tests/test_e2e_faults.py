"""A fault inside the daemon ends what it hit, and nothing else: injected into a
running daemon (partysub.testing, in this process), with real WebSocket clients."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pytest
import trio
import trio_websocket

from partysub.testing import RunningDaemon, running_daemon
from partysubd.core.outbox import Outbox
from partysubd.core.session import Session


@pytest.fixture
def daemon() -> Iterator[RunningDaemon]:
    with running_daemon() as running:
        yield running


def ws_url(daemon: RunningDaemon, query: str) -> str:
    return daemon.url.replace("http://", "ws://") + f"/parties/pubsub/r?{query}"


def metrics(daemon: RunningDaemon) -> str:
    with urllib.request.urlopen(daemon.admin + "/metrics", timeout=10) as response:
        return str(response.read().decode())


async def closed_with(ws: trio_websocket.WebSocketConnection) -> int | None:
    with trio.fail_after(10):
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed as closed:
            return closed.reason.code if closed.reason else None


async def next_data(ws: trio_websocket.WebSocketConnection) -> Any:
    with trio.fail_after(10):
        raw = await ws.get_message()
    frame = msgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw)
    return frame.get("data")


def test_a_fault_in_one_session_ends_that_connection_only(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = Session._on_message

    def faulty(self: Session, payload: bytes, *, binary: bool) -> None:
        if b"boom" in payload:
            raise RuntimeError("injected fault")
        real(self, payload, binary=binary)

    monkeypatch.setattr(Session, "_on_message", faulty)

    async def main() -> None:
        async with (
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=victim")) as victim,
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=witness")) as witness,
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=pub&topics=")) as pub,
        ):
            await victim.send_message('{"topic":"t","data":"boom"}')
            assert await closed_with(victim) == 1011
            for n in range(3):
                await pub.send_message(orjson.dumps({"topic": "t", "data": n}).decode())
                assert await next_data(witness) == n

    with caplog.at_level(logging.ERROR, logger="partysubd.faults"):
        trio.run(main)
    (record,) = [r for r in caplog.records if r.name == "partysubd.faults"]
    assert "internal error in session (victim)" in record.getMessage()
    assert record.exc_info is not None and "injected fault" in str(record.exc_info[1])
    assert 'partysub_internal_errors_total{where="session"} 1.0' in metrics(daemon)


def test_a_fault_delivering_to_one_subscriber_spares_the_others(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = Outbox.push

    def faulty(self: Outbox, data: bytes) -> bool:
        # Only the MessagePack subscriber's frames are binary (0x82).
        if data[:1] == b"\x82" and b"poison" in data:
            raise RuntimeError("injected fault")
        return real(self, data)

    monkeypatch.setattr(Outbox, "push", faulty)

    async def main() -> None:
        async with (
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=v&format=msgpack")) as victim,
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=a")) as a,
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=b")) as b,
            trio_websocket.open_websocket_url(ws_url(daemon, "_pk=pub&topics=")) as pub,
        ):
            await pub.send_message('{"topic":"t","data":"poison"}')
            assert await closed_with(victim) == 1011
            assert await next_data(a) == "poison"
            assert await next_data(b) == "poison"
            for n in range(3):
                await pub.send_message(orjson.dumps({"topic": "t", "data": n}).decode())
                assert [await next_data(a), await next_data(b)] == [n, n]

    with caplog.at_level(logging.ERROR, logger="partysubd.faults"):
        trio.run(main)
    messages = [r.getMessage() for r in caplog.records if r.name == "partysubd.faults"]
    assert messages == ["internal error in fanout (v); only it is ended"]
    assert 'partysub_internal_errors_total{where="fanout"} 1.0' in metrics(daemon)


def test_a_fault_in_a_control_plane_handler_is_a_500_without_a_traceback(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from partysubd.control import views as inspect

    def faulty(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(inspect, "rooms_view", faulty)
    with (
        caplog.at_level(logging.ERROR, logger="partysubd.faults"),
        pytest.raises(urllib.error.HTTPError) as failed,
    ):
        urllib.request.urlopen(daemon.admin + "/rooms", timeout=10)
    assert failed.value.code == 500
    body = failed.value.read().decode()
    assert "internal error" in body and "Traceback" not in body and "injected" not in body
    assert any("internal error in admin" in r.getMessage() for r in caplog.records)
    with urllib.request.urlopen(daemon.admin + "/health", timeout=10) as response:
        assert response.status == 200
