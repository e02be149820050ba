"""Prometheus metrics, read from the hub at scrape time.

The publish path only adds to plain integers (see stats.py); this collector
turns them into metric families when Prometheus asks, so metrics cost nothing
per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .rooms import Hub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: Callable[[], Hub], draining: Callable[[], bool]) -> None:
        self._hub = hub
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        hub = self._hub()
        parties = list(hub.parties_by_binding.values())

        gauges = {
            "connections": GaugeMetricFamily(
                "partysub_connections", "Open WebSocket connections", labels=["party"]
            ),
            "rooms": GaugeMetricFamily(
                "partysub_rooms", "Rooms with connections", labels=["party"]
            ),
            "nodes": GaugeMetricFamily(
                "partysub_nodes", "Live nodes over all rooms", labels=["party"]
            ),
        }
        counters = {
            "messages_in": CounterMetricFamily(
                "partysub_messages_in", "Messages published", labels=["party"]
            ),
            "messages_out": CounterMetricFamily(
                "partysub_messages_out", "Messages delivered to connections", labels=["party"]
            ),
            "bytes_in": CounterMetricFamily(
                "partysub_bytes_in", "Bytes of published frames", labels=["party"]
            ),
            "bytes_out": CounterMetricFamily(
                "partysub_bytes_out", "Bytes of frames delivered", labels=["party"]
            ),
        }
        for party in parties:
            label = [party.binding.party_names[0]]
            rooms = party.rooms.values()
            gauges["connections"].add_metric(label, sum(r.connections for r in rooms))
            gauges["rooms"].add_metric(label, len(party.rooms))
            gauges["nodes"].add_metric(label, sum(len(r.nodes) for r in rooms))
            t = party.traffic
            counters["messages_in"].add_metric(label, t.messages_in)
            counters["messages_out"].add_metric(label, t.messages_out)
            counters["bytes_in"].add_metric(label, t.bytes_in)
            counters["bytes_out"].add_metric(label, t.bytes_out)
        yield from gauges.values()
        yield from counters.values()

        latency = hub.flush_latency
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
        errors = CounterMetricFamily(
            "partysub_error_frames", "__error frames sent, by code", labels=["code"]
        )
        for code, n in sorted(events.error_frames.items()):
            errors.add_metric([code], n)
        yield errors
        closes = CounterMetricFamily(
            "partysub_closes", "Close frames the daemon sent, by close code", labels=["code"]
        )
        for close_code, n in sorted(events.closes.items()):
            closes.add_metric([str(close_code)], n)
        yield closes
        responses = CounterMetricFamily(
            "partysub_http_responses",
            "HTTP responses on the public port, by status",
            labels=["status"],
        )
        for status, n in sorted(events.http_responses.items()):
            responses.add_metric([str(status)], n)
        yield responses
        limited = CounterMetricFamily(
            "partysub_rate_limited",
            "Refusals by a rate limit: publish (WebSocket), http (POST), connect",
            labels=["kind"],
        )
        for kind, n in sorted(events.rate_limited.items()):
            limited.add_metric([kind], n)
        yield limited
        draining = GaugeMetricFamily("partysub_draining", "1 while shutting down")
        draining.add_metric([], 1 if self._draining() else 0)
        yield draining


def registry_for(hub: Callable[[], Hub], draining: Callable[[], bool]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub, draining))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
