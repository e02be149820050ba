"""``partysub config show``: the effective config as TOML, every setting, from the schema.

What it prints is itself a config: checked, it loads to an equal ``Config``
(a test holds every example to that). A secret is printed as ``<set>``,
never its value; a secret read from a file is shown by its file.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from .schema import Binding, Config, keys_of, value_of

SECRET = "<set>"


def show(config: Config) -> str:
    """The TOML text, with each binding's node layout as comments after it."""
    text = tomli_w.dumps(document(config))
    notes = [_layout_comment(binding) for binding in config.bindings]
    return text + "\n" + "\n".join(notes) + "\n"


def document(config: Config) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "server": section(config.server),
        "admin": section(config.admin),
    }
    if config.cluster is not None:
        cluster = section(config.cluster)
        if "redis_url" in cluster:
            cluster["redis_url"] = without_password(cluster["redis_url"])
        shown["cluster"] = cluster
    if config.location_countries:
        shown["location_countries"] = {k: list(v) for k, v in config.location_countries.items()}
    shown["durable_objects"] = {
        "bindings": [{"name": b.name, "class_name": b.class_name} for b in config.bindings]
    }
    # The classes the migrations left, as one migration: the history of
    # renames and deletions is not part of what runs.
    classes = sorted({b.class_name for b in config.bindings})
    shown["migrations"] = [{"tag": "v1", "new_classes": classes}]
    shown["pubsub"] = [section(b.options) for b in config.bindings]
    return shown


def section(instance: Any) -> dict[str, Any]:
    """Every key of a section's table with its value; unset optional keys left out."""
    section_type: type = type(instance)
    keys = keys_of(section_type)
    table: dict[str, Any] = {}
    for name, key in keys.items():
        value = value_of(instance, key)
        if value is None or (value == "" and key.secret):
            continue
        if key.secret:
            source = keys.get(f"{name}_file")
            if source is not None and value_of(instance, source) is not None:
                continue  # shown by its file
            value = SECRET
        table[name] = _toml_value(value)
    return table


def _toml_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_toml_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _toml_value(v) for k, v in value.items()}
    return value


def without_password(url: str) -> str:
    """A Redis URL fit to print: a password in it is shown as set."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:{SECRET}@{host}{port}").geturl()


def _layout_comment(binding: Binding) -> str:
    """Which nodes a room of the binding has (what the control plane's room view names)."""
    ids = binding.layout.node_ids
    wrapped = textwrap.wrap(" ".join(ids), width=84)
    return "\n".join(
        [f"# {binding.name}: {len(ids)} nodes per room", *(f"#   {w}" for w in wrapped)]
    )
