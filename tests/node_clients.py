"""Real partysocket clients on Node (tests/js/client.mjs), driven over a line protocol.

What passes here is what an app built on partysocket sees: the sockets are
genuine PartySocket instances on the ``ws`` implementation.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from daemons import TESTS, Daemon

JS = TESTS / "js"


def node_available() -> bool:
    return shutil.which("node") is not None and (JS / "node_modules" / "partysocket").is_dir()


class Clients:
    """One Node process holding any number of named PartySocket clients."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.proc = subprocess.Popen(
            ["node", str(JS / "client.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            cwd=JS,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []
        self.connected: list[str] = []
        self._requests = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def command(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def connect(
        self,
        id: str,
        room: str = "default",
        party: str = "pubsub",
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> None:
        self.connected.append(id)
        self.command(
            "connect",
            id=id,
            host=self.daemon.address,
            party=party,
            room=room,
            query=query,
            headers=headers,
            **extra,
        )
        if wait:
            self.expect(lambda e: e["event"] == "open" and e["id"] == id)

    def send(self, id: str, data: Any, binary: bool = False, **extra: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        self.command("send", id=id, data=text, binary=binary, **extra)

    def close(self, id: str) -> None:
        self.command("close", id=id)

    def fetch(
        self, room: str, init: dict[str, Any], party: str = "pubsub", **extra: Any
    ) -> dict[str, Any]:
        self._requests += 1
        req = self._requests
        self.command(
            "fetch", req=req, host=self.daemon.address, party=party, room=room, init=init, **extra
        )
        return self.expect(lambda e: e["event"] == "fetch" and e["req"] == req)

    def sync(self) -> None:
        """Wait until the client process has handled every command sent so far."""
        self._requests += 1
        req = self._requests
        self.command("ping", req=req)
        self.expect(lambda e: e["event"] == "pong" and e["req"] == req)

    def expect(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        for i, event in enumerate(self.backlog):
            if match(event):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected event not seen; unmatched: {self.backlog[-20:]}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event["event"] == "failed":
                raise AssertionError(f"client command failed: {event}")
            if match(event):
                return event
            self.backlog.append(event)

    def message(self, id: str, timeout: float = 10) -> Any:
        """The next message client ``id`` received, JSON-decoded."""
        event = self.expect(lambda e: e["event"] == "message" and e["id"] == id, timeout)
        return json.loads(event["data"])

    def closed(self, id: str, timeout: float = 10) -> dict[str, Any]:
        """The close event of client ``id`` (its code and reason)."""
        return self.expect(lambda e: e["event"] == "close" and e["id"] == id, timeout)

    def messages(self, id: str, count: int, timeout: float = 10) -> list[Any]:
        return [self.message(id, timeout) for _ in range(count)]

    def barrier(self, id: str) -> bool:
        """Wait for a ping's pong through the daemon on ``id``'s socket: what the daemon
        had queued for it by then has arrived, and what it sent before has been read.
        False when the socket is not open (nothing can arrive on it)."""
        self._requests += 1
        req = self._requests
        self.command("barrier", id=id, req=req)
        return bool(self.expect(lambda e: e["event"] == "barrier" and e["req"] == req)["open"])

    def no_message(
        self, id: str, *, publishers: Iterable[str] | None = None, settle: float = 0.0
    ) -> None:
        """Assert that ``id`` received nothing from what was published so far.

        Proven by barriers, not by waiting: every open socket of this process
        (a publisher among them) has had what it sent read by the daemon, and
        a delivery would be queued for ``id`` when its publish is handled, so
        it would arrive before ``id``'s own barrier. A publish on a path no
        barrier covers (another daemon, through Redis) needs ``settle``
        seconds first. ``publishers`` narrows the barriers to the sockets that
        published (a socket over its rate limit would not answer a ping)."""
        if settle:
            time.sleep(settle)
        self.sync()
        for other in dict.fromkeys(self.connected if publishers is None else publishers):
            if other != id:
                self.barrier(other)
        self.barrier(id)
        while True:
            try:
                self.backlog.append(self.events.get_nowait())
            except queue.Empty:
                break
        got = [e for e in self.backlog if e["event"] == "message" and e["id"] == id]
        assert not got, f"{id} received unexpected messages: {got}"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
