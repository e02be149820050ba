"""Human tables (rich) for what the control plane returns."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table


def _ago(wall: float) -> str:
    seconds = max(0.0, time.time() - wall)
    return _duration(seconds) + " ago"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def rooms(console: Console, payload: dict[str, Any]) -> None:
    table = Table(title="rooms")
    for column in ("party", "room", "nodes", "connections", "msgs in", "msgs out", "bytes out"):
        table.add_column(column, justify="left" if column in ("party", "room") else "right")
    for party in payload["parties"]:
        for room in party["rooms"]:
            table.add_row(
                party["party"],
                room["room"],
                str(room["nodes"]),
                str(room["connections"]),
                str(room["messages_in"]),
                str(room["messages_out"]),
                str(room["bytes_out"]),
            )
    console.print(table)
    t = payload["totals"]
    console.print(
        f"{t['connections']} connections in {t['rooms']} rooms on {t['nodes']} nodes; "
        f"{t['messages_in']} published, {t['messages_out']} delivered since start"
    )
    whole = payload.get("cluster")
    if whole is not None:
        console.print(
            f"cluster: {whole['connections']} connections in {whole['rooms']} rooms "
            f"on {whole['daemons']} daemons"
        )
        table = Table(title="rooms across the cluster")
        for column in ("party", "room", "connections", "daemons"):
            table.add_column(column, justify="left" if column in ("party", "room") else "right")
        for entry in whole["by_room"]:
            table.add_row(
                entry["party"], entry["room"], str(entry["connections"]), str(entry["daemons"])
            )
        console.print(table)


def cluster(console: Console, payload: dict[str, Any]) -> None:
    table = Table(title="daemons")
    columns = ("name", "location", "address", "connections", "rooms", "pending", "last seen")
    for column in columns:
        left = column in ("name", "location", "address")
        table.add_column(column, justify="left" if left else "right")
    for d in payload["daemons"]:
        table.add_row(
            d["name"] + (" (this)" if d["self"] else ""),
            d["location"],
            d["address"],
            str(d["connections"]),
            str(d["rooms"]),
            str(d["pending"]),
            _duration(d["last_seen"]) + " ago",
        )
    console.print(table)
    link = payload["link"]
    t = payload["totals"]
    state = "connected" if link["connected"] else f"not connected: {link['reason']}"
    console.print(
        f"{t['daemons']} daemons, {t['connections']} connections in {t['rooms']} rooms; "
        f"this daemon's Redis link: {state}"
    )


def room(console: Console, detail: dict[str, Any], connections: dict[str, Any]) -> None:
    console.print(
        f"[bold]{detail['party']}/{detail['room']}[/bold]: {detail['connections']} connections "
        f"on {len(detail['nodes'])} nodes; {detail['messages_in']} published, "
        f"{detail['messages_out']} delivered"
    )
    whole = detail.get("cluster")
    if whole is not None:
        console.print(
            f"across the cluster: {whole['connections']} connections on "
            f"{', '.join(whole['daemons'])}"
        )
    nodes = Table(title="nodes")
    for column in ("node", "location", "connections"):
        nodes.add_column(column, justify="right" if column == "connections" else "left")
    for node in detail["nodes"]:
        nodes.add_row(node["id"], node["location"], str(node["connections"]))
    console.print(nodes)
    conns = Table(title="connections")
    for column in ("id", "node", "country", "topics", "buffered", "age"):
        conns.add_column(column, justify="right" if column in ("buffered", "age") else "left")
    for conn in connections["connections"]:
        conns.add_row(
            conn["id"],
            conn["node"],
            conn["country"] or "-",
            ",".join(conn["topics"]) or "(none)",
            str(conn["buffered_bytes"]),
            _duration(conn["age"]),
        )
    console.print(conns)


def topics(console: Console, detail: dict[str, Any]) -> None:
    _topic_tables(console, detail, f"in {detail['party']}/{detail['room']}")
    whole = detail.get("cluster")
    if whole is None:
        return
    console.print(
        f"across the cluster: {whole['connections']} connections on "
        f"{len(whole['daemons'])} daemons ({', '.join(whole['daemons'])})"
    )
    _topic_tables(console, whole, "across the cluster")


def _topic_tables(console: Console, view: dict[str, Any], where: str) -> None:
    patterns = Table(title=f"subscriptions {where}")
    patterns.add_column("pattern")
    patterns.add_column("connections", justify="right")
    for row in view["patterns"]:
        patterns.add_row(row["pattern"], str(row["connections"]))
    console.print(patterns)
    recent = Table(title=f"recently published topics {where}")
    recent.add_column("topic")
    recent.add_column("messages", justify="right")
    recent.add_column("last", justify="right")
    for row in view["recent_topics"]:
        recent.add_row(row["topic"], str(row["count"]), _ago(row["last_seen"]))
    console.print(recent)
