"""Prometheus metrics, read from the hub at scrape time.

The publish path only adds to plain integers (see stats.py); this collector
turns them into metric families when Prometheus asks, so metrics cost nothing
per message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..core.hub import Hub

if TYPE_CHECKING:
    from ..cluster.link import ClusterLink

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: Callable[[], Hub], draining: Callable[[], bool]) -> None:
        self._hub = hub
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        hub = self._hub()
        gauges = {
            name: GaugeMetricFamily(f"partysub_{name}", doc, labels=["party"])
            for name, doc in GAUGES.items()
        }
        counters = {
            name: CounterMetricFamily(f"partysub_{name}", doc, labels=["party"])
            for name, doc in TRAFFIC.items()
        }
        for party in hub.registry.parties_by_binding.values():
            label = [party.binding.party_names[0]]
            rooms = party.rooms.values()
            gauges["connections"].add_metric(label, sum(r.connections for r in rooms))
            gauges["rooms"].add_metric(label, len(party.rooms))
            gauges["rooms_idle"].add_metric(label, len(party.idle))
            gauges["nodes"].add_metric(label, sum(len(r.nodes) for r in rooms))
            gauges["history_bytes"].add_metric(label, sum(r.history.bytes for r in rooms))
            gauges["outbox_bytes"].add_metric(
                label,
                sum(
                    s.out.size
                    for r in rooms
                    for n in r.nodes.values()
                    for s in n.index.subscribers()
                ),
            )
            for name, family in counters.items():
                family.add_metric(label, getattr(party.traffic, name))
        yield from gauges.values()
        yield from counters.values()

        latency = hub.flush.latency
        yield HistogramMetricFamily(
            "partysub_publish_to_flush_seconds",
            "From a publish to its frames being handed to the kernel, once per flush",
            buckets=latency.cumulative(),
            sum_value=latency.sum,
        )
        events = hub.events
        slow = CounterMetricFamily(
            "partysub_slow_consumers_closed", "Connections closed for falling behind (1013)"
        )
        slow.add_metric([], events.slow_consumers)
        yield slow
        yield _by_label("error_frames", "__error frames sent, by code", "code", events.error_frames)
        yield _by_label("closes", "Close frames the daemon sent, by code", "code", events.closes)
        yield _by_label(
            "http_responses", "Responses on the public port", "status", events.http_responses
        )
        yield _by_label(
            "rate_limited",
            "Refusals by a rate limit: publish (WebSocket), http (POST), connect",
            "kind",
            events.rate_limited,
        )
        yield _by_label(
            "internal_errors",
            "Exceptions contained where they happened (logged with a traceback), by where",
            "where",
            events.internal_errors,
        )
        budget = hub.registry.history_budget
        yield GaugeMetricFamily(
            "partysub_history_budget_bytes",
            "server.max_history_bytes: what every history together may hold",
            value=budget.max_bytes,
        )
        yield CounterMetricFamily(
            "partysub_history_evicted",
            "History entries forgotten early to keep every history within the budget",
            value=budget.evicted,
        )
        draining = GaugeMetricFamily("partysub_draining", "1 while shutting down")
        draining.add_metric([], 1 if self._draining() else 0)
        yield draining


GAUGES = {
    "connections": "Open WebSocket connections",
    "rooms": "Open rooms (with connections, or idle and kept for their history)",
    "rooms_idle": "Rooms without connections kept for their history",
    "nodes": "Live nodes over all rooms",
    "history_bytes": "Bytes the rooms' histories hold (encoded messages and their overhead)",
    "outbox_bytes": "Bytes queued for connections and not yet sent",
}
TRAFFIC = {
    "messages_in": "Messages published",
    "messages_out": "Messages delivered to connections",
    "bytes_in": "Bytes of published frames",
    "bytes_out": "Bytes of frames delivered",
}


class ClusterCollector(Collector):
    """The Redis link, when the daemon is in a cluster (nothing otherwise)."""

    def __init__(self, link: Callable[[], ClusterLink | None]) -> None:
        self._link = link

    def collect(self) -> Iterator[Metric]:
        link = self._link()
        if link is None:
            return
        gauges = {
            "cluster_connected": ("1 while the link to Redis is up", int(link.connected)),
            "cluster_daemons": ("Daemons in the cluster view", len(link.members)),
            "cluster_channels": (
                "Room channels this daemon listens on",
                len(link.interested.channels),
            ),
            "cluster_pending_messages": (
                "Messages for other daemons waiting for Redis",
                len(link.outbound),
            ),
            "cluster_pending_bytes": (
                "Bytes of messages for other daemons waiting for Redis",
                link.outbound.bytes,
            ),
        }
        counters = {
            "cluster_dropped_messages": (
                "Messages for other daemons dropped while Redis was away",
                link.outbound.dropped,
            ),
            "cluster_relayed_out_batches": ("Batches sent to Redis", link.relayed_out),
            "cluster_relayed_in_messages": ("Messages from other daemons", link.relayed_in),
            "cluster_bad_batches": ("Unreadable payloads on room channels", link.bad_batches),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"partysub_{name}", doc, value=value)
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"partysub_{name}", doc, value=value)


def _by_label(name: str, doc: str, label: str, counts: Counter[Any]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"partysub_{name}", doc, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([str(key)], n)
    return family


def registry_for(
    hub: Callable[[], Hub],
    draining: Callable[[], bool],
    link: Callable[[], ClusterLink | None] = lambda: None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, draining))
    registry.register(ClusterCollector(link))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
