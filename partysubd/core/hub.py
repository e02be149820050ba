"""The core's objects for one daemon, wired together once.

Each has one job: the ``Registry`` knows who is in which room, the ``Fanout``
delivers a message to a room, the ``FlushQueue`` lists the connections with
bytes to send (the engine drains it), ``Events`` counts what went wrong, and
``ClusterHooks`` is the other daemons (``NoCluster`` without ``[cluster]``).
The hub holds them and does nothing itself: sessions, the engine, the control
plane and the cluster link each take what they need from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .clustering import ClusterHooks, NoCluster
from .config import Config
from .fanout import Fanout
from .flush import FlushQueue
from .registry import Registry, Subscriber
from .stats import Events


@dataclass(eq=False, slots=True)
class Hub:
    registry: Registry
    fanout: Fanout
    flush: FlushQueue[Subscriber]
    events: Events
    cluster: ClusterHooks
    # Wall-clock time minus the monotonic time sessions are given: the I/O edge
    # keeps it current, and token expiry (a wall-clock time) reads it.
    wall_offset: float = 0.0

    @classmethod
    def build(
        cls,
        config: Config,
        cluster: ClusterHooks | None = None,
        rng: random.Random | None = None,
    ) -> Hub:
        hooks = cluster if cluster is not None else NoCluster()
        events = Events()
        flush: FlushQueue[Subscriber] = FlushQueue()
        registry = Registry(config, hooks, rng)
        return cls(registry, Fanout(flush, events, hooks), flush, events, hooks)
