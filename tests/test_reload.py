"""A reload's plan: what changes live and what waits for a restart."""

from __future__ import annotations

import random
from dataclasses import replace

from fakes import subscriber
from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.reload import plan_reload


def test_reload_applies_limits_and_bindings_and_keeps_addresses() -> None:
    old = parse_config(
        "[server]\nmax_message_size = 10\nmax_buffered_bytes = 100\n" + DEFAULT_BINDING_TOML, "t"
    )
    new = parse_config(
        '[server]\nhost = "0.0.0.0"\nmax_message_size = 50\nmax_buffered_bytes = 100\n'
        '[admin]\nlisten = "127.0.0.1:3000"\n'
        + DEFAULT_BINDING_TOML.replace(
            'new_classes = ["PubSubServer"]', 'new_classes = ["PubSubServer", "C"]'
        )
        + '[[durable_objects.bindings]]\nname = "Chat"\nclass_name = "C"\n'
        + '[[pubsub]]\nbinding = "PubSub"\nnodes = 18\nallowed_origins = ["https://a.example"]\n',
        "t",
    )
    plan = plan_reload(old, new)
    assert plan.config.server.host == "127.0.0.1"
    assert plan.config.server.max_message_size == 50
    assert plan.config.admin.listen == "127.0.0.1:2000"
    assert "server.max_message_size: 10 -> 50" in plan.applied
    assert any("binding Chat added" in line for line in plan.applied)
    assert any("new node layout" in line for line in plan.applied)
    assert any("allowed_origins" in line for line in plan.applied)
    assert any(line.startswith("listen address 0.0.0.0:1999") for line in plan.kept)
    assert any(line.startswith("admin.listen 127.0.0.1:3000") for line in plan.kept)


def test_reload_keeps_a_removed_binding_and_live_rooms_keep_their_layout() -> None:
    old = parse_config(DEFAULT_BINDING_TOML, "t")
    hub = Hub.build(old, rng=random.Random(1))
    party = hub.registry.parties["pubsub"]
    room = hub.registry.join(party, "live", subscriber("a"), None, ["*"]).room
    new = parse_config(
        DEFAULT_BINDING_TOML
        + '[[pubsub]]\nbinding = "PubSub"\nnodes = 1\nlocations = { weur = 1 }\n',
        "t",
    )
    hub.registry.apply(plan_reload(old, new).config)
    assert room.layout is old.bindings[0].layout
    assert hub.registry.join(party, "fresh", subscriber("b"), None, ["*"]).node.id == "weur-0"
    removed = plan_reload(new, replace(new, bindings=()))
    assert [b.name for b in removed.config.bindings] == ["PubSub"]
    assert removed.kept == ("binding PubSub removed from the config: kept until a restart",)
