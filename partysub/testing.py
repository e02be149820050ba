"""A partysub daemon inside your test process, for your application's own tests.

    # conftest.py
    pytest_plugins = ["partysub.testing"]

    # test_app.py
    def test_my_app(partysub_daemon):
        url = partysub_daemon.url          # http://127.0.0.1:<free port>
        ...

or, to choose the config:

    from partysub.testing import running_daemon

    with running_daemon('[[pubsub]]\\nbinding = "PubSub"\\nhistory_messages = 100\\n') as daemon:
        ...

The daemon runs in its own thread with its own trio loop, on free loopback
ports, and stops (draining at once) when the block or test ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import trio

from partysubd.core.config import DEFAULT_CONFIG_TOML, Config, Overrides, parse_config
from partysubd.runtime.config_file import LocalSources
from partysubd.runtime.daemon import Daemon

START_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class RunningDaemon:
    url: str  # the public listener, http://127.0.0.1:<port>
    admin: str  # the control plane
    config: Config


@contextmanager
def running_daemon(extra_toml: str = "") -> Iterator[RunningDaemon]:
    """The built-in default config plus ``extra_toml`` (e.g. ``[[pubsub]]`` options)."""
    overrides = Overrides(host="127.0.0.1", port=0, admin_listen="127.0.0.1:0")
    config = parse_config(
        DEFAULT_CONFIG_TOML + "\n" + extra_toml,
        "<partysub.testing>",
        sources=LocalSources(),
        overrides=overrides,
    )
    config = replace(config, server=replace(config.server, drain_seconds=0, shutdown_timeout=1))
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        stop = trio.Event()
        state["stop"] = stop
        state["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            state["listeners"] = await nursery.start(Daemon(config, None, overrides).run, stop)
            ready.set()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test below
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, name="partysub-daemon", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT) or "error" in state:
        raise RuntimeError(f"the partysub daemon did not start: {state.get('error')!r}")
    listeners = state["listeners"]
    assert isinstance(listeners, dict)
    try:
        yield RunningDaemon(listeners["public"], listeners["admin"], config)
    finally:
        stop = state["stop"]
        assert isinstance(stop, trio.Event)
        trio.from_thread.run_sync(stop.set, trio_token=state["token"])  # type: ignore[arg-type]
        thread.join(START_TIMEOUT)


@pytest.fixture
def partysub_daemon() -> Iterator[RunningDaemon]:
    """A daemon on the built-in default config (binding PubSub), on free ports."""
    with running_daemon() as daemon:
        yield daemon
