from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from daemons import Daemon, DaemonFactory
from node_clients import Clients, node_available

# The fixture partysub offers applications (partysub_daemon), tested here too.
pytest_plugins = ["partysub.testing"]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    started: list[Daemon] = []

    def start(config_text: str | None = None, *args: str) -> Daemon:
        daemon = Daemon(config_text, tmp_path, *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.alive():
            daemon.stop()
    # A harness-level check: a daemon's traceback fails whichever test it happened in.
    trouble = [line for daemon in started for line in daemon.unexpected_trouble()]
    assert not trouble, "the daemon logged trouble the test did not expect:\n" + "\n".join(
        trouble[:5]
    )


@pytest.fixture
def daemon(start_daemon: DaemonFactory) -> Daemon:
    return start_daemon()


@pytest.fixture
def clients(daemon: Daemon) -> Iterator[Clients]:
    if not node_available():
        pytest.fail("Node and tests/js/node_modules are needed: run `npm ci --prefix tests/js`")
    c = Clients(daemon)
    yield c
    c.stop()


# Hypothesis: no per-example deadline (CI machines stall); enough examples to mean something.
settings.register_profile("default", deadline=None, max_examples=200)
settings.load_profile("default")
