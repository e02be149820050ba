"""What a config reload (SIGHUP) can change live, and what it cannot.

Limits, timeouts, allowed origins, history sizes, per-address rate limits,
the log level and new bindings take effect at once, for existing connections
and rooms too; a connection keeps the slow-consumer policy, skip-self and
per-connection publish limits it opened with. The listen addresses cannot
move under a running daemon, and a binding cannot be removed while its rooms
may hold connections; those are reported and kept as they were. A changed
node layout applies to rooms created after the reload; a live room keeps the
nodes its connections are on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import Config


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    config: Config  # what to run with from now on
    applied: tuple[str, ...]  # what changes, for the log
    kept: tuple[str, ...]  # what was asked for but cannot change live


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    applied: list[str] = []
    kept: list[str] = []
    server = new.server
    if (new.server.host, new.server.port) != (old.server.host, old.server.port):
        kept.append(
            f"listen address {new.server.host}:{new.server.port}: still "
            f"{old.server.host}:{old.server.port} until a restart"
        )
        server = replace(server, host=old.server.host, port=old.server.port)
    if new.server.tls != old.server.tls:
        kept.append("turning TLS on or off: the listener keeps its protocol until a restart")
        server = replace(server, tls_cert=old.server.tls_cert, tls_key=old.server.tls_key)
    for name in server.__dataclass_fields__:
        before, after = getattr(old.server, name), getattr(server, name)
        if before != after:
            applied.append(f"server.{name}: {before} -> {after}")
    admin = new.admin
    if new.admin.listen != old.admin.listen:
        kept.append(f"admin.listen {new.admin.listen}: still {old.admin.listen} until a restart")
        admin = replace(admin, listen=old.admin.listen)
    if admin.token != old.admin.token:
        applied.append("admin.token changed")

    old_bindings = {b.name: b for b in old.bindings}
    bindings = list(new.bindings)
    for binding in new.bindings:
        before = old_bindings.get(binding.name)
        if before is None:
            applied.append(
                f"binding {binding.name} added: parties {', '.join(binding.party_names)}"
            )
            continue
        if before.layout != binding.layout:
            applied.append(
                f"binding {binding.name}: new node layout for rooms created from now on "
                f"({len(binding.layout.node_ids)} nodes); live rooms keep theirs"
            )
        for name in ("allowed_origins", "history_messages", "history_seconds", "skip_self"):
            if getattr(before.options, name) != getattr(binding.options, name):
                applied.append(f"binding {binding.name}: {name} {getattr(binding.options, name)!r}")
        if before.options.slow_consumer != binding.options.slow_consumer:
            applied.append(
                f"binding {binding.name}: slow_consumer {binding.options.slow_consumer.value!r} "
                "for connections opened from now on"
            )
        if before.options.limits != binding.options.limits:
            applied.append(f"binding {binding.name}: rate limits {binding.options.limits}")
    new_names = {b.name for b in new.bindings}
    for name, binding in old_bindings.items():
        if name not in new_names:
            kept.append(f"binding {name} removed from the config: kept until a restart")
            bindings.append(binding)
    config = replace(new, server=server, admin=admin, bindings=tuple(bindings))
    return ReloadPlan(config, tuple(applied), tuple(kept))
