"""One connection cannot hold the loop: a witness keeps a short round trip while
another client floods the daemon with each kind of traffic (a separate process),
with the default limits."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from daemons import TESTS, Daemon, DaemonFactory
from partysubd.core.config import DEFAULT_BINDING_TOML
from raw_sockets import RawClient, masked_frame

CONFIG = "[server]\nping_interval = 0\n\n" + DEFAULT_BINDING_TOML
FLOOD_SECONDS = 4.0


def round_trips(daemon: Daemon, count: int) -> list[float]:
    """A witness publishing to itself: seconds per round trip."""
    witness = RawClient(daemon)
    witness.upgrade("/parties/pubsub/witness?topics=echo")
    times = []
    for n in range(count):
        payload = b'{"topic":"echo","data":%d}' % n
        started = time.monotonic()
        witness.send(masked_frame(0x1, payload))
        witness.read_until(payload)
        times.append(time.monotonic() - started)
        time.sleep(0.005)
    witness.close()
    return times


@pytest.mark.serial
@pytest.mark.parametrize("kind", ["publish", "costly", "invalid", "ping", "trickle"])
def test_a_witness_keeps_its_round_trip_under_a_flood(
    start_daemon: DaemonFactory, kind: str
) -> None:
    daemon = start_daemon(CONFIG)
    script = str(TESTS / "tools" / "flood.py")
    flooder = subprocess.Popen(
        [sys.executable, script, daemon.host, str(daemon.port), kind, str(FLOOD_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flooder.stdout is not None
        assert flooder.stdout.readline() == "flooding\n"
        times = sorted(round_trips(daemon, 300))
    finally:
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 10)
    sent = int(out.strip())
    assert sent > (100 if kind == "costly" else 10_000), f"the flood was not one: {sent} sent"
    p99 = times[int(len(times) * 0.99) - 1]
    assert p99 < 0.050, f"p99 round trip {p99 * 1000:.1f} ms under a {kind} flood"
