"""Who is in the cluster: each daemon's heartbeat, and the view built from them.

Sans-I/O. Each daemon writes its heartbeat to Redis every
``heartbeat_seconds`` under a key that expires after ``dead_after_seconds``;
a daemon that stops (SIGKILL, a lost host) stops renewing it and drops out
of every view once it expires, with no one having to notice it died.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .registry import Registry

# A heartbeat carries the daemon's busiest rooms, not all of them: enough for
# the cluster-wide room view, bounded however many rooms a daemon has; and for
# the busiest of those, their patterns and recent topics (the topic view).
MAX_ROOMS_PER_HEARTBEAT = 1000
MAX_DETAILED_ROOMS = 100
MAX_DETAIL_ENTRIES = 50


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    location: str
    address: str
    started: float
    seen: float  # wall clock of the heartbeat
    connections: int
    # "<party>/<room>" -> connections on this daemon
    rooms: dict[str, int] = field(default_factory=dict)
    pending: int = 0  # messages waiting for Redis
    dropped: int = 0  # messages dropped while Redis was away
    # "<party>/<room>" -> {"patterns": {pattern: n}, "topics": {topic: [count, wall time]}}
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "location": self.location,
                "address": self.address,
                "started": self.started,
                "seen": self.seen,
                "connections": self.connections,
                "rooms": self.rooms,
                "pending": self.pending,
                "dropped": self.dropped,
                "details": self.details,
            },
            separators=(",", ":"),
        ).encode()


def decode_member(raw: bytes | str | None) -> Member | None:
    """A heartbeat read back, or None for a missing (expired) or unreadable one."""
    if raw is None:
        return None
    try:
        doc: Any = json.loads(raw)
        rooms = doc.get("rooms", {})
        return Member(
            name=str(doc["name"]),
            location=str(doc.get("location", "")),
            address=str(doc.get("address", "")),
            started=float(doc.get("started", 0.0)),
            seen=float(doc.get("seen", 0.0)),
            connections=int(doc.get("connections", 0)),
            rooms={str(k): int(v) for k, v in rooms.items()},
            pending=int(doc.get("pending", 0)),
            dropped=int(doc.get("dropped", 0)),
            details=dict(doc.get("details", {})),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def local_rooms(registry: Registry) -> tuple[int, dict[str, int]]:
    """This daemon's connections, and its busiest rooms with their counts."""
    counts: dict[str, int] = {}
    for party in registry.parties_by_binding.values():
        name = party.binding.party_names[0]
        for room in party.rooms.values():
            live = room.connections
            if live:
                counts[f"{name}/{room.name}"] = live
    total = sum(counts.values())
    if len(counts) > MAX_ROOMS_PER_HEARTBEAT:
        busiest = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_ROOMS_PER_HEARTBEAT]
        counts = dict(busiest)
    return total, counts


def room_details(
    registry: Registry, rooms: dict[str, int], wall_offset: float
) -> dict[str, dict[str, Any]]:
    """Patterns and recent topics of the busiest rooms, for the cluster's topic view
    (``wall_offset`` turns the daemon's monotonic times into wall-clock times)."""
    details: dict[str, dict[str, Any]] = {}
    busiest = sorted(rooms.items(), key=lambda kv: -kv[1])[:MAX_DETAILED_ROOMS]
    for key, _ in busiest:
        party_name, _, room_name = key.partition("/")
        party = registry.parties.get(party_name)
        room = party.rooms.get(room_name) if party is not None else None
        if room is None:
            continue
        patterns: dict[str, int] = {}
        for node in room.nodes.values():
            for pattern, count in node.index.count_by_pattern().items():
                patterns[pattern] = patterns.get(pattern, 0) + count
        top = sorted(patterns.items(), key=lambda kv: -kv[1])[:MAX_DETAIL_ENTRIES]
        topics = {
            topic: [use.count, round(use.last_seen + wall_offset, 3)]
            for topic, use in room.topics.items()[:MAX_DETAIL_ENTRIES]
        }
        details[key] = {"patterns": dict(top), "topics": topics}
    return details


def cluster_room_view(members: Iterable[Member], key: str) -> dict[str, Any] | None:
    """One room across the cluster: connections and patterns summed over daemons;
    recent topics from whichever daemon saw each most recently (every daemon in
    a room sees all its messages, so counts are not summed)."""
    daemons, connections = [], 0
    patterns: dict[str, int] = {}
    topics: dict[str, tuple[int, float]] = {}
    for member in members:
        if key not in member.rooms:
            continue
        daemons.append(member.name)
        connections += member.rooms[key]
        detail = member.details.get(key, {})
        for pattern, count in detail.get("patterns", {}).items():
            patterns[pattern] = patterns.get(pattern, 0) + int(count)
        for topic, (count, last) in detail.get("topics", {}).items():
            seen = topics.get(topic)
            if seen is None or last > seen[1]:
                topics[topic] = (max(int(count), seen[0] if seen else 0), float(last))
    if not daemons:
        return None
    return {
        "daemons": sorted(daemons),
        "connections": connections,
        "patterns": [
            {"pattern": p, "connections": n}
            for p, n in sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "recent_topics": [
            {"topic": t, "count": n, "last_seen": last}
            for t, (n, last) in sorted(topics.items(), key=lambda kv: -kv[1][1])
        ],
    }


def cluster_view(members: Iterable[Member], me: str, now: float) -> dict[str, Any]:
    """The control plane's /cluster: every live daemon, and rooms summed over them."""
    listed = sorted(members, key=lambda m: m.name)
    rooms: dict[str, dict[str, int]] = {}
    for member in listed:
        for key, count in member.rooms.items():
            entry = rooms.setdefault(key, {"connections": 0, "daemons": 0})
            entry["connections"] += count
            entry["daemons"] += 1
    return {
        "daemons": [
            {
                "name": m.name,
                "self": m.name == me,
                "location": m.location,
                "address": m.address,
                "connections": m.connections,
                "rooms": len(m.rooms),
                "pending": m.pending,
                "dropped": m.dropped,
                "last_seen": round(max(0.0, now - m.seen), 3),
                "uptime": round(max(0.0, now - m.started), 3),
            }
            for m in listed
        ],
        "totals": {
            "daemons": len(listed),
            "connections": sum(m.connections for m in listed),
            "rooms": len(rooms),
        },
        "rooms": [
            {
                "party": key.partition("/")[0],
                "room": key.partition("/")[2],
                **entry,
            }
            for key, entry in sorted(rooms.items(), key=lambda kv: (-kv[1]["connections"], kv[0]))
        ],
    }
