"""What the control plane shows: plain dicts built from the hub's state.

Pure functions over the hub, so the views are tested without a server. Times
inside the daemon are on trio's monotonic clock; ``Clock`` turns them into
wall-clock seconds and ages for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.hub import Hub
from ..core.registry import Party, Room


@dataclass(frozen=True, slots=True)
class Clock:
    """A moment on trio's clock and the same moment on the wall clock."""

    monotonic: float
    wall: float

    def to_wall(self, monotonic: float) -> float:
        return round(self.wall - (self.monotonic - monotonic), 3)

    def age(self, monotonic: float) -> float:
        return round(self.monotonic - monotonic, 3)


def traffic_view(room_or_party: Room | Party) -> dict[str, int]:
    t = room_or_party.traffic
    return {
        "messages_in": t.messages_in,
        "messages_out": t.messages_out,
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
    }


def totals(hub: Hub) -> dict[str, int]:
    parties = list(hub.registry.parties_by_binding.values())
    rooms = [room for party in parties for room in party.rooms.values()]
    result = {
        "connections": sum(room.connections for room in rooms),
        "rooms": len(rooms),
        "nodes": sum(len(room.nodes) for room in rooms),
    }
    for party in parties:
        for key, value in traffic_view(party).items():
            result[key] = result.get(key, 0) + value
    return result


def daemon_view(
    hub: Hub,
    *,
    version: str,
    started: float,
    clock: Clock,
    listeners: Mapping[str, str],
    draining: bool,
    source: str,
) -> dict[str, Any]:
    return {
        "version": version,
        "started": clock.to_wall(started),
        "uptime": clock.age(started),
        "config": source,
        "draining": draining,
        "listeners": dict(listeners),
        "bindings": [
            {
                "name": party.binding.name,
                "parties": list(party.binding.party_names),
                "nodes_per_room": len(party.binding.layout.node_ids),
                "locations": {
                    loc: len(ids) for loc, ids in party.binding.layout.nodes_by_location.items()
                },
                "allowed_origins": list(party.binding.options.allowed_origins),
            }
            for party in hub.registry.parties_by_binding.values()
        ],
        "totals": totals(hub),
    }


def rooms_view(hub: Hub) -> dict[str, Any]:
    return {
        "parties": [
            {
                "binding": party.binding.name,
                "party": party.binding.party_names[0],
                "names": list(party.binding.party_names),
                **traffic_view(party),
                "rooms": [
                    {
                        "room": room.name,
                        "nodes": len(room.nodes),
                        "connections": room.connections,
                        **traffic_view(room),
                    }
                    for room in sorted(party.rooms.values(), key=lambda r: r.name)
                ],
            }
            for party in hub.registry.parties_by_binding.values()
        ],
        "totals": totals(hub),
    }


def find_room(hub: Hub, party_name: str, room_name: str) -> Room | str:
    """The live room, or why there is none (an unknown party, or a room with no one in it)."""
    party = hub.registry.parties.get(party_name)
    if party is None:
        known = ", ".join(sorted(hub.registry.parties))
        return f"no party {party_name!r} (parties: {known})"
    room = party.rooms.get(room_name)
    if room is None:
        return f"no room {room_name!r} in party {party_name!r}: it has no connections"
    return room


def room_view(room: Room, clock: Clock) -> dict[str, Any]:
    patterns: dict[str, int] = {}
    for node in room.nodes.values():
        for pattern, count in node.index.count_by_pattern().items():
            patterns[pattern] = patterns.get(pattern, 0) + count
    return {
        "party": room.party.binding.party_names[0],
        "binding": room.party.binding.name,
        "room": room.name,
        "connections": room.connections,
        **traffic_view(room),
        "nodes": [
            {"id": node.id, "location": node.location, "connections": len(node.index)}
            for node in sorted(room.nodes.values(), key=lambda n: n.id)
        ],
        "patterns": [
            {"pattern": pattern, "connections": count}
            for pattern, count in sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "recent_topics": [
            {"topic": topic, "count": use.count, "last_seen": clock.to_wall(use.last_seen)}
            for topic, use in room.topics.items()
        ],
        "node_counts": [
            {"time": clock.to_wall(when), "nodes": count} for when, count in room.node_counts
        ],
        "history": {
            "epoch": room.history.epoch,
            "last_seq": room.history.last_seq,
            "kept": len(room.history),
        },
    }


def absent_room_view(
    hub: Hub, party_name: str, room_name: str, cluster: dict[str, Any]
) -> dict[str, Any]:
    """A room nobody here is in but other daemons of the cluster have."""
    party = hub.registry.parties[party_name]
    return {
        "party": party.binding.party_names[0],
        "binding": party.binding.name,
        "room": room_name,
        "connections": 0,
        "messages_in": 0,
        "messages_out": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "nodes": [],
        "patterns": [],
        "recent_topics": [],
        "node_counts": [],
        "cluster": cluster,
    }


def connections_view(room: Room, clock: Clock) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for node in room.nodes.values():
        for conn in node.index.subscribers():
            rows.append(
                {
                    "id": conn.id,
                    "peer": conn.peer,
                    "node": node.id,
                    "country": conn.country,
                    "topics": list(node.index.patterns(conn)),
                    "buffered_bytes": conn.out.size,
                    "age": clock.age(conn.created),
                }
            )
    rows.sort(key=lambda row: (-row["age"], row["id"]))
    return {
        "party": room.party.binding.party_names[0],
        "room": room.name,
        "connections": rows,
    }
