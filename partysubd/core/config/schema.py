"""The configuration's schema: every table and key, with its type, default and check.

Written once, here, as dataclasses whose fields carry their check
(``setting``). From them check.py derives which keys a table has and what
each must be, show.py prints every setting, and tests/test_config_schema.py
holds docs/configuration.md (where each key's meaning is explained) to
their names, types and defaults. A choice is an enum. A secret's file is a
key like any other; the secret it holds is read by the check.
"""

from __future__ import annotations

import ipaddress
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import cache
from typing import Any

from ..auth import AuthSettings
from ..placement import DEFAULT_NODES, JURISDICTIONS, NodeLayout
from ..protocol import MessageLimits
from ..routing import party_names
from ..values import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT
from .issues import ConfigIssue

Check = Callable[[Any], str | None]


def setting(
    default: Any,
    *,
    check: Check | None = None,
    secret: bool = False,
    kind: str | None = None,
) -> Any:
    """A key of a table: its default and what its value must be.

    ``check``: why a well-typed value is refused, or None; ``secret``: never
    printed (``config show`` shows ``<set>``); ``kind``: a type the
    annotation cannot say (``nodes``, ``weights``, ``table_list``)."""
    return field(default=default, metadata={"check": check, "secret": secret, "kind": kind})


def required(*, check: Check) -> Any:
    """A key every entry of its table must have (check.py says which is missing)."""
    return field(metadata={"check": check, "required": True})


def flattened(cls: type) -> Any:
    """A group of keys that sit in the same table as the section's own."""
    return field(default_factory=cls, metadata={"flatten": True})


# --- checks ---------------------------------------------------------------------


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def close_code(value: Any) -> str | None:
    return None if value in (1001, 1012) else "must be 1001 (going away) or 1012 (restart)"


def not_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def api_key_hashes(value: Any) -> str | None:
    bad = [v for v in value if not re.fullmatch(r"sha256:[0-9a-f]{64}", v)]
    if bad:
        return (
            "API keys are stored hashed: sha256:<64 hex digits> "
            "(`partysub api-key` makes one); not " + ", ".join(repr(b[:12] + "…") for b in bad)
        )
    return None


def redis_url(value: Any) -> str | None:
    scheme = str(value).partition("://")[0]
    if scheme in ("redis", "rediss", "unix"):
        return None
    return "must be a redis://, rediss:// or unix:// URL"


def ascii_port(text: str) -> int | None:
    """A port number written in ASCII digits, or None (``str.isdigit`` takes "²")."""
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    number = int(text)
    return number if number <= 65535 else None


def host_ports(value: Any) -> str | None:
    for item in value:
        host, _, number = str(item).rpartition(":")
        if not host or not ascii_port(number):
            return f'{item!r} is not "host:port"'
    return None


def check_listen(value: Any) -> str | None:
    """Why a listener address is unusable, or None ([admin] listen, --admin-listen)."""
    if value == "off" or (value.startswith("unix:/") and len(value) > 6):
        return None
    host, _, number = value.rpartition(":")
    if host and host != "[]" and ascii_port(number) is not None:
        return None
    return 'must be "host:port" (port 0 to 65535), "[ipv6]:port", "unix:/absolute/path" or "off"'


def depth(value: Any) -> str | None:
    if 1 <= value <= MAX_DEPTH_LIMIT:
        return None
    return f"must be from 1 to {MAX_DEPTH_LIMIT} (what every encoder on the path supports)"


def jurisdiction(value: Any) -> str | None:
    if value in JURISDICTIONS:
        return None
    return f"unknown jurisdiction {value!r} (known: {', '.join(JURISDICTIONS)})"


# --- choices --------------------------------------------------------------------


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class ClusterMode(StrEnum):
    SINGLE = "single"  # one Redis server, classic pub/sub
    CLUSTER = "cluster"  # a Redis Cluster: sharded pub/sub, a room per channel
    SENTINEL = "sentinel"  # the primary the sentinels name, followed on failover


class SlowConsumer(StrEnum):
    """What happens to a connection more than ``max_buffered_bytes`` behind."""

    DISCONNECT = "disconnect"  # close it (1013)
    DROP = "drop"  # drop the oldest queued messages, with a __gap frame
    LATEST = "latest"  # keep the newest message of each topic


class AuthMode(StrEnum):
    NONE = "none"
    TOKEN = "token"


# --- sections -------------------------------------------------------------------

DEFAULT_ADMIN_LISTEN = "127.0.0.1:2000"
# The original README's wrangler setup: one binding, PubSub. A config without
# [[durable_objects.bindings]] and [[migrations]] gets it, as no config does.
DEFAULT_BINDING_TOML = """\
[[durable_objects.bindings]]
name = "PubSub"
class_name = "PubSubServer"

[[migrations]]
tag = "v1"
new_classes = ["PubSubServer"]
"""
DEFAULT_CONFIG_TOML = f"""\
[server]
host = "127.0.0.1"
port = 1999

{DEFAULT_BINDING_TOML}"""
BUILTIN_SOURCE = "<built-in default>"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """``[server]``: the public listener and the limits every connection has."""

    host: str = setting("127.0.0.1", check=not_empty)
    port: int = setting(1999, check=port)
    backlog: int = setting(4096, check=positive)
    country_header: str = setting("CF-IPCountry", check=not_empty)
    # The largest message is one step of the event loop: its decoding and checks
    # cannot yield. 256 KiB keeps the costliest one under ~15 ms (docs/security.md).
    max_message_size: int = setting(256 * 1024, check=positive)
    max_buffered_bytes: int = setting(4 * 1024 * 1024, check=positive)
    max_header_bytes: int = setting(16 * 1024, check=positive)
    max_topics: int = setting(100, check=positive)
    max_topic_length: int = setting(256, check=positive)
    max_depth: int = setting(DEFAULT_MAX_DEPTH, check=depth)
    max_history_bytes: int = setting(128 * 1024 * 1024, check=positive)
    ping_interval: float = setting(25.0, check=non_negative)
    ping_timeout: float = setting(20.0, check=positive)
    handshake_timeout: float = setting(10.0, check=positive)
    close_timeout: float = setting(5.0, check=positive)
    shutdown_timeout: float = setting(10.0, check=non_negative)
    shutdown_close_code: int = setting(1001, check=close_code)
    drain_seconds: float = setting(10.0, check=non_negative)
    log_level: LogLevel = LogLevel.INFO
    # Behind a proxy every peer is the proxy: take the client's address from
    # this header (the last address in it, the one the proxy added).
    client_address_header: str = ""
    # TLS on the public listener: PEM certificate chain and private key.
    tls_cert: str | None = setting(None, check=not_empty)
    tls_key: str | None = setting(None, check=not_empty)
    # SO_REUSEPORT: several daemons on one host share the public port, and the
    # kernel spreads new connections over them (one process per core).
    reuse_port: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def tls_files(self) -> tuple[str, str] | None:
        """The certificate chain and its key, when the public listener speaks TLS."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return self.tls_cert, self.tls_key

    @property
    def message_limits(self) -> MessageLimits:
        """What a message is checked against where it comes in."""
        return MessageLimits(self.max_message_size, self.max_topic_length, self.max_depth)


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``[admin]``: the control plane's listener: ``host:port``, ``unix:/path``, or ``off``."""

    listen: str = setting(DEFAULT_ADMIN_LISTEN, check=check_listen)
    token: str | None = setting(None, check=not_empty, secret=True)
    token_file: str | None = setting(None, check=not_empty)
    # Host header names the control plane answers to, beyond the loopback
    # names and IP addresses (DNS rebinding: a page on another name that
    # resolves here is refused).
    allowed_hosts: tuple[str, ...] = ()
    # Browser origins that may open the live tail, beyond the control
    # plane's own loopback origins.
    allowed_origins: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.listen != "off"

    @property
    def unix_path(self) -> str | None:
        return self.listen.removeprefix("unix:") if self.listen.startswith("unix:") else None

    def host_port(self) -> tuple[str, int]:
        host, _, number = self.listen.rpartition(":")
        return host.strip("[]"), int(number)

    @property
    def loopback(self) -> bool:
        if self.unix_path is not None or not self.enabled:
            return True
        host = self.host_port()[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``[cluster]``: daemons joined through Redis (docs/cluster.md)."""

    # redis://[[user]:password@]host:port[/db], rediss:// for TLS (with
    # ?ssl_ca_certs=/path/ca.pem for a private CA). Unused with Sentinel.
    redis_url: str | None = setting(None, check=redis_url)
    mode: ClusterMode = ClusterMode.SINGLE
    # With mode = "sentinel" (both required then, check.py says so).
    sentinels: tuple[str, ...] = setting((), check=host_ports)
    service: str = ""
    password: str = setting("", secret=True)
    # Unique per daemon; empty: "<hostname>-<pid>", chosen at start.
    name: str = ""
    location: str = ""
    # Keys and channels start with this, so clusters can share a Redis.
    prefix: str = setting("partysub", check=not_empty)
    heartbeat_seconds: float = setting(2.0, check=positive)
    # A daemon not heard from for this long is dropped from the cluster view.
    dead_after_seconds: float = setting(6.0, check=positive)
    # Messages for other daemons kept while Redis is unreachable, in number
    # and in bytes; past either the oldest are dropped and counted.
    max_pending_messages: int = setting(10_000, check=positive)
    max_pending_bytes: int = setting(16 * 1024 * 1024, check=positive)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-binding limits; a rate of 0 means no limit. Bursts default to one second's worth."""

    publish_rate: float = setting(0.0, check=non_negative)
    publish_burst: float = setting(0.0, check=non_negative)
    publish_bytes_rate: float = setting(0.0, check=non_negative)
    publish_bytes_burst: float = setting(0.0, check=non_negative)
    connect_rate: float = setting(0.0, check=non_negative)
    connect_burst: float = setting(0.0, check=non_negative)
    max_connections_per_room: int = setting(0, check=non_negative)
    # Refusals in a row after which a connection that keeps publishing is closed (1008).
    abuse_strikes: int = setting(20, check=positive)


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """The authentication keys of a ``[[pubsub]]`` entry, as written (security.md)."""

    auth: AuthMode = AuthMode.NONE
    jwt_secret: str | None = setting(None, check=not_empty, secret=True)
    jwt_secret_file: str | None = setting(None, check=not_empty)
    jwt_secret_env: str | None = setting(None, check=not_empty)
    jwt_public_key_file: str | None = setting(None, check=not_empty)
    jwks_file: str | None = setting(None, check=not_empty)
    jwt_audience: str | None = setting(None, check=not_empty)
    jwt_issuer: str | None = setting(None, check=not_empty)
    jwt_leeway: float = setting(30.0, check=non_negative)
    api_keys: tuple[str, ...] = setting((), check=api_key_hashes)


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    """A ``[[pubsub]]`` entry: the options of ``createPubSubServer`` for one binding."""

    binding: str = required(check=not_empty)
    nodes: int | str = setting(DEFAULT_NODES, kind="nodes")
    max_connections_per_node: int = setting(100, check=positive)
    locations: Mapping[str, float] | None = setting(None, kind="weights")
    jurisdiction: str | None = setting(None, check=jurisdiction)
    allowed_origins: tuple[str, ...] = ("*",)
    history_messages: int = setting(0, check=non_negative)
    history_seconds: float = setting(300.0, check=positive)
    history_bytes: int = setting(4 * 1024 * 1024, check=positive)
    # Rooms open at once (with connections, or kept for their history); 0: no cap.
    max_rooms: int = setting(10_000, check=non_negative)
    skip_self: bool = False
    slow_consumer: SlowConsumer = SlowConsumer.DISCONNECT
    limits: RateLimits = flattened(RateLimits)
    auth_options: AuthOptions = flattened(AuthOptions)

    @property
    def autoscale(self) -> bool:
        """``nodes = "auto"``: one node per location to start, more as they fill up."""
        return self.nodes == "auto"

    @property
    def start_nodes(self) -> int:
        """Nodes a new room starts with (autoscaling starts from the minimum layout)."""
        return 1 if isinstance(self.nodes, str) else self.nodes

    def origin_allowed(self, origin: str | None) -> bool:
        """Requests without an Origin header come from servers, not browsers: always allowed."""
        if origin is None or "*" in self.allowed_origins:
            return True
        return origin in self.allowed_origins


@dataclass(frozen=True, slots=True)
class BindingEntry:
    """A ``[[durable_objects.bindings]]`` entry, as wrangler writes it."""

    name: str = required(check=not_empty)
    class_name: str = required(check=not_empty)
    script_name: str = ""
    environment: str = ""


@dataclass(frozen=True, slots=True)
class MigrationEntry:
    """A ``[[migrations]]`` entry: which classes exist, as wrangler tracks them."""

    tag: str = required(check=not_empty)
    new_classes: tuple[str, ...] = ()
    new_sqlite_classes: tuple[str, ...] = ()
    deleted_classes: tuple[str, ...] = ()
    renamed_classes: tuple[Mapping[str, str], ...] = setting((), kind="table_list")


@dataclass(frozen=True, slots=True)
class Binding:
    """One party as the daemon runs it: a wrangler binding with its options applied."""

    name: str
    class_name: str
    options: PubSubOptions
    layout: NodeLayout
    auth: AuthSettings  # the keys read, ready to verify

    @property
    def party_names(self) -> tuple[str, ...]:
        return party_names(self.name)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon runs with; two configs are equal when their settings are."""

    source: str = field(compare=False)
    server: ServerSettings
    bindings: tuple[Binding, ...]
    admin: AdminSettings = field(default_factory=AdminSettings)
    location_countries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[ConfigIssue, ...] = field(default=(), compare=False)
    cluster: ClusterSettings | None = None

    def parties(self) -> dict[str, Binding]:
        """URL party name -> binding."""
        return {party: b for b in self.bindings for party in b.party_names}


# The tables whose keys a section says, by their name in the file.
TABLES: dict[str, type] = {
    "server": ServerSettings,
    "admin": AdminSettings,
    "cluster": ClusterSettings,
    "durable_objects.bindings": BindingEntry,
    "migrations": MigrationEntry,
    "pubsub": PubSubOptions,
}


# --- what the schema says -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table: where its value goes (``path`` of field names) and what it is."""

    name: str
    path: tuple[str, ...]
    type: Any  # the annotation, X | None unwrapped
    default: Any  # dataclasses.MISSING when required
    required: bool
    check: Check | None
    secret: bool
    kind: str | None


@cache
def keys_of(section: type) -> dict[str, Key]:
    """Every key a section's table has, flattened groups included, by key name."""
    hints = typing.get_type_hints(section)
    found: dict[str, Key] = {}
    for f in fields(section):
        if f.metadata.get("flatten"):
            for name, key in keys_of(hints[f.name]).items():
                found[name] = replace(key, path=(f.name, *key.path))
            continue
        found[f.name] = Key(
            f.name,
            (f.name,),
            _unwrap_optional(hints[f.name]),
            f.default,
            f.metadata.get("required", False),
            f.metadata.get("check"),
            f.metadata.get("secret", False),
            f.metadata.get("kind"),
        )
    return found


def build(section: type, values: Mapping[str, Any]) -> Any:
    """An instance of ``section`` from well-typed key values (defaults for the rest)."""
    hints = typing.get_type_hints(section)
    kwargs: dict[str, Any] = {}
    for f in fields(section):
        if f.metadata.get("flatten"):
            inner = keys_of(hints[f.name])
            kwargs[f.name] = build(hints[f.name], {k: v for k, v in values.items() if k in inner})
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return section(**kwargs)


def value_of(instance: Any, key: Key) -> Any:
    """The value of ``key`` in a section's instance (inside its flattened group)."""
    for name in key.path:
        instance = getattr(instance, name)
    return instance


def _unwrap_optional(annotation: Any) -> Any:
    """The type inside ``X | None``: a key left out is its default, never written as None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
