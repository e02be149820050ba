"""The daemon's configuration: TOML that mirrors wrangler, checked before serving.

Every mistake is found in one pass and reported together, each naming the
file, the key and its line, so an operator fixes a config in one edit rather
than one restart per typo. Settings are documented in docs/configuration.md;
keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from jwt import PyJWKSet
from jwt.exceptions import PyJWKSetError

from .auth import AuthSettings
from .frames import MAX_FRAME_HEADER
from .placement import DEFAULT_NODES, JURISDICTIONS, LOCATION_HINTS, NodeLayout
from .protocol import MessageLimits
from .routing import party_names
from .values import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT

# The original README's wrangler setup: one binding, PubSub.
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
DEFAULT_ADMIN_LISTEN = "127.0.0.1:2000"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    source: str
    line: int | None
    key: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.severity}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be served; ``issues`` holds every error and warning found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 1999
    backlog: int = 4096
    country_header: str = "CF-IPCountry"
    # The largest message is one step of the event loop: its decoding and checks
    # cannot yield. 256 KiB keeps the costliest one under ~15 ms (docs/security.md).
    max_message_size: int = 256 * 1024
    max_buffered_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_topics: int = 100  # patterns per connection
    max_topic_length: int = 256  # characters, topics and patterns
    # Levels of arrays and maps inside a message's data (docs/protocol.md, the value model).
    max_depth: int = DEFAULT_MAX_DEPTH
    # Every room's history together, in bytes (each room also has history_bytes).
    max_history_bytes: int = 128 * 1024 * 1024
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    shutdown_timeout: float = 10.0
    shutdown_close_code: int = 1001
    drain_seconds: float = 10.0
    log_level: str = "info"
    # Behind a proxy every peer is the proxy: take the client's address from
    # this header (the last address in it, the one the proxy added).
    client_address_header: str = ""
    # TLS on the public listener: PEM certificate chain and private key.
    tls_cert: str = ""
    tls_key: str = ""
    # SO_REUSEPORT: several daemons on one host share the public port, and the
    # kernel spreads new connections over them (one process per core).
    reuse_port: bool = False

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def message_limits(self) -> MessageLimits:
        """What a message is checked against where it comes in."""
        return MessageLimits(self.max_message_size, self.max_topic_length, self.max_depth)


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The control plane's listener: ``host:port``, ``unix:/path``, or ``off``."""

    listen: str = DEFAULT_ADMIN_LISTEN
    token: str | None = None
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
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

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
    redis_url: str = ""
    # "single" (one Redis server, classic pub/sub), "cluster" (Redis Cluster,
    # sharded pub/sub: SPUBLISH/SSUBSCRIBE, a room per channel) or "sentinel"
    # (the primary of ``service`` as the sentinels name it, followed on failover).
    mode: str = "single"
    sentinels: tuple[str, ...] = ()  # "host:port" of each sentinel
    service: str = ""  # the monitored primary's name, e.g. "mymaster"
    password: str = ""  # with Sentinel: the primary's password (else the URL carries it)
    # Unique per daemon; empty: "<hostname>-<pid>", chosen at start.
    name: str = ""
    location: str = ""
    # Keys and channels start with this, so clusters can share a Redis.
    prefix: str = "partysub"
    heartbeat_seconds: float = 2.0
    # A daemon not heard from for this long is dropped from the cluster view.
    dead_after_seconds: float = 6.0
    # Messages for other daemons kept while Redis is unreachable, in number
    # and in bytes; past either the oldest are dropped and counted.
    max_pending_messages: int = 10_000
    max_pending_bytes: int = 16 * 1024 * 1024


CLUSTER_MODES = ("single", "cluster", "sentinel")


class SlowConsumer(StrEnum):
    """What happens to a connection more than ``max_buffered_bytes`` behind."""

    DISCONNECT = "disconnect"  # close it (1013)
    DROP = "drop"  # drop the oldest queued messages, with a __gap frame
    LATEST = "latest"  # keep the newest message of each topic


SLOW_CONSUMER_POLICIES = tuple(policy.value for policy in SlowConsumer)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-binding limits; a rate of 0 means no limit. Bursts default to one second's worth."""

    publish_rate: float = 0.0  # publishes per second per connection
    publish_burst: float = 0.0
    publish_bytes_rate: float = 0.0  # bytes per second per connection
    publish_bytes_burst: float = 0.0
    connect_rate: float = 0.0  # new connections per second per client address
    connect_burst: float = 0.0
    max_connections_per_room: int = 0  # 0: no cap
    # Refusals in a row after which a connection that keeps publishing is closed (1008).
    abuse_strikes: int = 20


@dataclass(frozen=True, slots=True)
class Binding:
    """One party: a wrangler binding with its pub/sub options."""

    name: str
    class_name: str
    nodes: int = DEFAULT_NODES
    locations: Mapping[str, float] | None = None
    jurisdiction: str | None = None
    allowed_origins: tuple[str, ...] = ("*",)
    layout: NodeLayout = field(default_factory=NodeLayout.build)
    history_messages: int = 0
    history_seconds: float = 300.0
    history_bytes: int = 4 * 1024 * 1024  # per room
    # Rooms open at once (with connections, or kept for their history); 0: no cap.
    max_rooms: int = 10_000
    skip_self: bool = False
    slow_consumer: SlowConsumer = SlowConsumer.DISCONNECT
    limits: RateLimits = field(default_factory=lambda: RateLimits())
    auth: AuthSettings = field(default_factory=AuthSettings)
    # nodes = "auto": one node per location to start, more as they fill up.
    autoscale: bool = False
    max_connections_per_node: int = 100

    @property
    def party_names(self) -> tuple[str, ...]:
        return party_names(self.name)

    def origin_allowed(self, origin: str | None) -> bool:
        """Requests without an Origin header come from servers, not browsers: always allowed."""
        if origin is None or "*" in self.allowed_origins:
            return True
        return origin in self.allowed_origins


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    server: ServerSettings
    bindings: tuple[Binding, ...]
    admin: AdminSettings = field(default_factory=AdminSettings)
    location_countries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[ConfigIssue, ...] = ()
    cluster: ClusterSettings | None = None

    def parties(self) -> dict[str, Binding]:
        """URL party name -> binding."""
        return {party: b for b in self.bindings for party in b.party_names}


def load_config(path: str | Path | None) -> Config:
    """Read and check a config file, or the built-in default when ``path`` is None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG_TOML, BUILTIN_SOURCE)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(source, None, "", "not UTF-8 text")]) from exc
    return parse_config(text, source)


def parse_config(text: str, source: str) -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError([ConfigIssue(source, line, "", f"not valid TOML: {exc}")]) from exc
    checker = _Checker(source, _key_lines(text))
    config = checker.check(document)
    errors = [i for i in checker.issues if i.severity == "error"]
    if errors or config is None:
        raise ConfigError(checker.issues)
    return config


# --- where each key is written -------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_ASSIGN = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""(?:"[^"]*"|'[^']*'|[^.]+)""", dotted)
    return [part.strip().strip("\"'") for part in parts]


def _key_lines(text: str) -> dict[KeyPath, int]:
    """Line of every table header and key assignment, by path (array entries by index).

    tomllib gives values but no positions; this line scan recovers them for
    the keys people write one per line, which is what error messages need.
    """
    lines: dict[KeyPath, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    in_multiline_string = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.count('"""') % 2 or raw.count("'''") % 2:
            in_multiline_string = not in_multiline_string
            if not in_multiline_string:
                continue
        if in_multiline_string:
            continue
        header = _HEADER.match(raw)
        if header:
            names = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = array_counts.get(names, -1) + 1
                array_counts[names] = index
                table = (*_resolve(names, array_counts), index)
            else:
                table = _resolve(names, array_counts)
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(raw)
        if assign:
            lines.setdefault((*table, *_split_key(assign.group(1))), number)
    return lines


def _resolve(names: tuple[str, ...], array_counts: dict[tuple[str, ...], int]) -> KeyPath:
    """Insert the current index after each array-of-tables name in a header path."""
    path: list[str | int] = []
    for i, name in enumerate(names):
        path.append(name)
        prefix = names[: i + 1]
        if prefix in array_counts and i < len(names) - 1:
            path.append(array_counts[prefix])
    return tuple(path)


# --- checking ------------------------------------------------------------------

Check = Callable[[Any], str | None]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number from 0 to 65535"


def _close_code(value: Any) -> str | None:
    return None if value in (1001, 1012) else "must be 1001 (going away) or 1012 (restart)"


def _not_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def _auth_mode(value: Any) -> str | None:
    return None if value in ("none", "token") else 'must be "none" or "token"'


def _api_key_hashes(value: Any) -> str | None:
    bad = [v for v in value if not re.fullmatch(r"sha256:[0-9a-f]{64}", v)]
    if bad:
        return (
            "API keys are stored hashed: sha256:<64 hex digits> "
            "(`partysub api-key` makes one); not " + ", ".join(repr(b[:12] + "…") for b in bad)
        )
    return None


def _slow_consumer(value: Any) -> str | None:
    if value in SLOW_CONSUMER_POLICIES:
        return None
    return f"must be one of {', '.join(SLOW_CONSUMER_POLICIES)}"


def _redis_url(value: Any) -> str | None:
    scheme = str(value).partition("://")[0]
    if scheme in ("redis", "rediss", "unix"):
        return None
    return "must be a redis://, rediss:// or unix:// URL"


def _host_ports(value: Any) -> str | None:
    for item in value:
        host, _, port = str(item).rpartition(":")
        if not host or not _ascii_port(port):
            return f'{item!r} is not "host:port"'
    return None if value else "must name at least one sentinel"


def _cluster_mode(value: Any) -> str | None:
    return None if value in CLUSTER_MODES else f"must be one of {', '.join(CLUSTER_MODES)}"


def _log_level(value: Any) -> str | None:
    levels = ("debug", "info", "warning", "error")
    return None if value in levels else f"must be one of {', '.join(levels)}"


def _ascii_port(text: str) -> int | None:
    """A port number written in ASCII digits, or None (``str.isdigit`` takes "²")."""
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def check_listen(value: Any) -> str | None:
    """Why a listener address is unusable, or None ([admin] listen, --admin-listen)."""
    if value == "off" or (value.startswith("unix:/") and len(value) > 6):
        return None
    host, _, port = value.rpartition(":")
    if host and host != "[]" and _ascii_port(port) is not None:
        return None
    return 'must be "host:port" (port 0 to 65535), "[ipv6]:port", "unix:/absolute/path" or "off"'


def _depth(value: Any) -> str | None:
    if 1 <= value <= MAX_DEPTH_LIMIT:
        return None
    return f"must be from 1 to {MAX_DEPTH_LIMIT} (what every encoder on the path supports)"


@dataclass(frozen=True)
class _Key:
    kind: str
    check: Check | None = None


_KIND_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "number": (int, float),
    "str": (str,),
    "str_list": (list,),
    "table": (dict,),
    "bool": (bool,),
}
_KIND_NAMES = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "str_list": "a list of strings",
    "table": "a table",
    "bool": "true or false",
}

_SERVER_KEYS: dict[str, _Key] = {
    "host": _Key("str", _not_empty),
    "port": _Key("int", _port),
    "backlog": _Key("int", _positive),
    "country_header": _Key("str", _not_empty),
    "max_message_size": _Key("int", _positive),
    "max_buffered_bytes": _Key("int", _positive),
    "max_header_bytes": _Key("int", _positive),
    "max_topics": _Key("int", _positive),
    "max_topic_length": _Key("int", _positive),
    "max_depth": _Key("int", _depth),
    "max_history_bytes": _Key("int", _positive),
    "ping_interval": _Key("number", _non_negative),
    "ping_timeout": _Key("number", _positive),
    "handshake_timeout": _Key("number", _positive),
    "close_timeout": _Key("number", _positive),
    "shutdown_timeout": _Key("number", _non_negative),
    "shutdown_close_code": _Key("int", _close_code),
    "drain_seconds": _Key("number", _non_negative),
    "log_level": _Key("str", _log_level),
    "client_address_header": _Key("str"),
    "tls_cert": _Key("str", _not_empty),
    "tls_key": _Key("str", _not_empty),
    "reuse_port": _Key("bool"),
}
_CLUSTER_KEYS: dict[str, _Key] = {
    "redis_url": _Key("str", _redis_url),
    "mode": _Key("str", _cluster_mode),
    "sentinels": _Key("str_list", _host_ports),
    "service": _Key("str", _not_empty),
    "password": _Key("str"),
    "name": _Key("str"),
    "location": _Key("str"),
    "prefix": _Key("str", _not_empty),
    "heartbeat_seconds": _Key("number", _positive),
    "dead_after_seconds": _Key("number", _positive),
    "max_pending_messages": _Key("int", _positive),
    "max_pending_bytes": _Key("int", _positive),
}
_ADMIN_KEYS: dict[str, _Key] = {
    "listen": _Key("str", check_listen),
    "token": _Key("str", _not_empty),
    "token_file": _Key("str", _not_empty),
    "allowed_hosts": _Key("str_list"),
    "allowed_origins": _Key("str_list"),
}
_BINDING_KEYS: dict[str, _Key] = {
    "name": _Key("str", _not_empty),
    "class_name": _Key("str", _not_empty),
    "script_name": _Key("str"),
    "environment": _Key("str"),
}
_MIGRATION_KEYS: dict[str, _Key] = {
    "tag": _Key("str", _not_empty),
    "new_classes": _Key("str_list"),
    "new_sqlite_classes": _Key("str_list"),
    "deleted_classes": _Key("str_list"),
    "renamed_classes": _Key("table_list"),
}
_PUBSUB_KEYS: dict[str, _Key] = {
    "binding": _Key("str", _not_empty),
    "nodes": _Key("nodes"),
    "max_connections_per_node": _Key("int", _positive),
    "locations": _Key("table"),
    "jurisdiction": _Key("str"),
    "allowed_origins": _Key("str_list"),
    "history_messages": _Key("int", _non_negative),
    "history_seconds": _Key("number", _positive),
    "history_bytes": _Key("int", _positive),
    "max_rooms": _Key("int", _non_negative),
    "skip_self": _Key("bool"),
    "slow_consumer": _Key("str", _slow_consumer),
    "publish_rate": _Key("number", _non_negative),
    "publish_burst": _Key("number", _non_negative),
    "publish_bytes_rate": _Key("number", _non_negative),
    "publish_bytes_burst": _Key("number", _non_negative),
    "connect_rate": _Key("number", _non_negative),
    "connect_burst": _Key("number", _non_negative),
    "max_connections_per_room": _Key("int", _non_negative),
    "abuse_strikes": _Key("int", _positive),
    "auth": _Key("str", _auth_mode),
    "jwt_secret": _Key("str", _not_empty),
    "jwt_secret_file": _Key("str", _not_empty),
    "jwt_secret_env": _Key("str", _not_empty),
    "jwt_public_key_file": _Key("str", _not_empty),
    "jwks_file": _Key("str", _not_empty),
    "jwt_audience": _Key("str", _not_empty),
    "jwt_issuer": _Key("str", _not_empty),
    "jwt_leeway": _Key("number", _non_negative),
    "api_keys": _Key("str_list", _api_key_hashes),
}
_RATE_KEYS = tuple(f.name for f in dataclass_fields(RateLimits))
_TOP_KEYS = {
    "server",
    "admin",
    "cluster",
    "durable_objects",
    "migrations",
    "pubsub",
    "location_countries",
}
# Top-level wrangler keys that a wrangler.toml carries and the daemon has no use for.
_WRANGLER_KEYS = {"name", "main", "compatibility_date", "compatibility_flags", "vars", "account_id"}


class _Checker:
    def __init__(self, source: str, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def line_of(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path: KeyPath, message: str, severity: str = "error") -> None:
        key = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        self.issues.append(ConfigIssue(self.source, self.line_of(path), key, message, severity))

    def warn(self, path: KeyPath, message: str) -> None:
        self.error(path, message, "warning")

    def table(self, value: Any, path: KeyPath, keys: Mapping[str, _Key]) -> dict[str, Any]:
        """The well-typed keys of a table; unknown and mistyped keys become errors."""
        if not isinstance(value, dict):
            self.error(path, "must be a table")
            return {}
        good: dict[str, Any] = {}
        for key, item in value.items():
            spec = keys.get(key)
            if spec is None:
                known = ", ".join(sorted(keys))
                self.error((*path, key), f"unknown key (known keys here: {known})")
                continue
            if self.typed(item, (*path, key), spec):
                good[key] = item
        return good

    def typed(self, value: Any, path: KeyPath, spec: _Key) -> bool:
        if spec.kind == "nodes":
            ok = value == "auto" or (
                isinstance(value, int) and not isinstance(value, bool) and value > 0
            )
            if not ok:
                self.error(path, f'must be a number of nodes above 0, or "auto"; not {value!r}')
            return ok
        if spec.kind == "table_list":
            ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
            if not ok:
                self.error(path, "must be a list of tables")
            return ok
        types = _KIND_TYPES[spec.kind]
        if (isinstance(value, bool) and spec.kind != "bool") or not isinstance(value, types):
            self.error(path, f"must be {_KIND_NAMES[spec.kind]}, not {_toml_type(value)}")
            return False
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            self.error(path, "must be a list of strings")
            return False
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                self.error(path, problem)
                return False
        return True

    def check(self, doc: dict[str, Any]) -> Config | None:
        for key in doc:
            if key not in _TOP_KEYS and key not in _WRANGLER_KEYS:
                self.error((key,), f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
        server = self.table(doc.get("server", {}), ("server",), _SERVER_KEYS)
        settings = ServerSettings(**server)
        if bool(settings.tls_cert) != bool(settings.tls_key):
            missing = "tls_key" if settings.tls_cert else "tls_cert"
            self.error(("server", missing), "tls_cert and tls_key go together")
        if settings.max_buffered_bytes < settings.max_message_size + MAX_FRAME_HEADER:
            self.error(
                ("server", "max_buffered_bytes"),
                f"must be at least max_message_size + {MAX_FRAME_HEADER} "
                f"({settings.max_message_size + MAX_FRAME_HEADER}): one message and its frame "
                "header must fit in a connection's outgoing buffer",
            )
        admin = self.admin(doc.get("admin", {}))
        cluster = self.cluster(doc["cluster"]) if "cluster" in doc else None
        countries = self.location_countries(doc.get("location_countries", {}))
        classes = self.migrations(doc.get("migrations"))
        bindings = self.bindings(doc.get("durable_objects"), classes)
        options = self.pubsub_options(doc.get("pubsub", []), bindings)
        built = []
        for name, class_name in bindings:
            opts, path = options.get(name, ({}, ("pubsub",)))
            built.append(self.binding(name, class_name, opts, path, countries))
        if any(i.severity == "error" for i in self.issues):
            return None
        return Config(
            source=self.source,
            server=settings,
            admin=admin,
            bindings=tuple(b for b in built if b is not None),
            location_countries=countries,
            warnings=tuple(self.issues),
            cluster=cluster,
        )

    def cluster(self, value: Any) -> ClusterSettings | None:
        path: KeyPath = ("cluster",)
        keys = self.table(value, path, _CLUSTER_KEYS)
        given = value if isinstance(value, dict) else {}
        if keys.get("mode") == "sentinel":
            for needed in ("sentinels", "service"):
                if needed not in given:
                    self.error(path, f'mode = "sentinel" needs {needed}')
            if "sentinels" not in keys or "service" not in keys:
                return None
        elif "redis_url" not in keys:
            if "redis_url" not in given:
                self.error(path, 'redis_url is required, e.g. redis_url = "redis://127.0.0.1:6379"')
            return None
        if "sentinels" in keys:
            keys["sentinels"] = tuple(keys["sentinels"])
        settings = ClusterSettings(**keys)
        if settings.dead_after_seconds <= settings.heartbeat_seconds:
            self.error(
                (*path, "dead_after_seconds"),
                f"must be longer than heartbeat_seconds ({settings.heartbeat_seconds:g}): "
                "a live daemon would keep dropping out of the view",
            )
        return settings

    def admin(self, value: Any) -> AdminSettings:
        path: KeyPath = ("admin",)
        keys = self.table(value, path, _ADMIN_KEYS)
        token = keys.get("token")
        if "token_file" in keys:
            if token is not None:
                self.error((*path, "token_file"), "give token or token_file, not both")
            try:
                token = Path(keys["token_file"]).read_text().strip() or None
            except OSError as exc:
                self.error((*path, "token_file"), f"cannot read: {exc.strerror}")
        settings = AdminSettings(
            listen=keys.get("listen", DEFAULT_ADMIN_LISTEN),
            token=token,
            allowed_hosts=tuple(host.lower() for host in keys.get("allowed_hosts", ())),
            allowed_origins=tuple(keys.get("allowed_origins", ())),
        )
        if not settings.loopback and settings.token is None:
            self.error(
                (*path, "listen"),
                f"{settings.listen} is not a loopback address: set token (or token_file) "
                "so the control plane is not open to the network",
            )
        return settings

    def location_countries(self, value: Any) -> dict[str, tuple[str, ...]]:
        path: KeyPath = ("location_countries",)
        if not isinstance(value, dict):
            self.error(path, "must be a table of location = [country codes]")
            return {}
        result = {}
        for location, countries in value.items():
            if self.typed(countries, (*path, location), _Key("str_list")):
                bad = [c for c in countries if not re.fullmatch(r"[A-Za-z]{2}", c)]
                if bad:
                    self.error((*path, location), f"not ISO 3166 alpha-2 country codes: {bad}")
                    continue
                result[location] = tuple(c.upper() for c in countries)
        return result

    def migrations(self, value: Any) -> set[str]:
        """The classes that exist after applying every migration in order."""
        classes: set[str] = set()
        if value is None:
            return classes
        if not isinstance(value, list):
            self.error(("migrations",), "must be an array of tables ([[migrations]])")
            return classes
        tags: set[str] = set()
        for i, entry in enumerate(value):
            path: KeyPath = ("migrations", i)
            m = self.table(entry, path, _MIGRATION_KEYS)
            if "tag" not in m and isinstance(entry, dict) and "tag" not in entry:
                self.error(path, "a migration needs a tag")
            tag = m.get("tag")
            if tag in tags:
                self.error((*path, "tag"), f"duplicate migration tag {tag!r}")
            if isinstance(tag, str):
                tags.add(tag)
            for name in m.get("new_classes", []) + m.get("new_sqlite_classes", []):
                if name in classes:
                    self.error(path, f"class {name!r} is created twice")
                classes.add(name)
            for j, rename in enumerate(m.get("renamed_classes", [])):
                old, new = rename.get("from"), rename.get("to")
                if not isinstance(old, str) or not isinstance(new, str):
                    self.error((*path, "renamed_classes", j), 'needs "from" and "to" strings')
                elif old not in classes:
                    self.error((*path, "renamed_classes"), f"renames unknown class {old!r}")
                else:
                    classes.discard(old)
                    classes.add(new)
            for name in m.get("deleted_classes", []):
                if name not in classes:
                    self.error((*path, "deleted_classes"), f"deletes unknown class {name!r}")
                classes.discard(name)
        return classes

    def bindings(self, value: Any, classes: set[str]) -> list[tuple[str, str]]:
        if value is None:
            self.error((), "no [[durable_objects.bindings]]: at least one binding is needed")
            return []
        if not isinstance(value, dict):
            self.error(("durable_objects",), "must be a table")
            return []
        for key in value:
            if key != "bindings":
                self.error(("durable_objects", key), "unknown key (known keys here: bindings)")
        entries = value.get("bindings")
        if not isinstance(entries, list) or not entries:
            self.error(("durable_objects",), "needs at least one [[durable_objects.bindings]]")
            return []
        found: list[tuple[str, str]] = []
        parties: dict[str, str] = {}
        for i, entry in enumerate(entries):
            path: KeyPath = ("durable_objects", "bindings", i)
            b = self.table(entry, path, _BINDING_KEYS)
            for key in ("name", "class_name"):
                if isinstance(entry, dict) and key not in entry:
                    self.error(path, f"a binding needs {key!r}")
            if "name" not in b or "class_name" not in b:
                continue
            name, class_name = b["name"], b["class_name"]
            if class_name not in classes:
                self.error(
                    (*path, "class_name"),
                    f"class {class_name!r} has no migration: add a [[migrations]] entry "
                    f'with new_classes = ["{class_name}"]',
                )
            for party in party_names(name):
                if party in parties:
                    self.error(
                        (*path, "name"),
                        f"binding {name!r} answers to party {party!r}, "
                        f"as binding {parties[party]!r} does",
                    )
                parties[party] = name
            found.append((name, class_name))
        return found

    def pubsub_options(
        self, value: Any, bindings: list[tuple[str, str]]
    ) -> dict[str, tuple[dict[str, Any], KeyPath]]:
        if not isinstance(value, list):
            self.error(("pubsub",), "must be an array of tables ([[pubsub]])")
            return {}
        known = {name for name, _ in bindings}
        result: dict[str, tuple[dict[str, Any], KeyPath]] = {}
        for i, entry in enumerate(value):
            path: KeyPath = ("pubsub", i)
            opts = self.table(entry, path, _PUBSUB_KEYS)
            name = opts.get("binding")
            if name is None:
                if isinstance(entry, dict) and "binding" not in entry:
                    self.error(path, 'needs binding = "<name of a [[durable_objects.bindings]]>"')
                continue
            if name not in known:
                self.error((*path, "binding"), f"no [[durable_objects.bindings]] is named {name!r}")
            elif name in result:
                self.error((*path, "binding"), f"binding {name!r} has options twice")
            result[name] = (opts, path)
        return result

    def binding(
        self,
        name: str,
        class_name: str,
        opts: dict[str, Any],
        path: KeyPath,
        countries: dict[str, tuple[str, ...]],
    ) -> Binding | None:
        autoscale = opts.get("nodes") == "auto"
        # Autoscaling starts from one node per location (the minimum layout).
        nodes = 1 if autoscale else opts.get("nodes", DEFAULT_NODES)
        locations = self.weights(opts.get("locations"), (*path, "locations"), countries)
        jurisdiction = opts.get("jurisdiction")
        if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
            self.error(
                (*path, "jurisdiction"),
                f"unknown jurisdiction {jurisdiction!r} (known: {', '.join(JURISDICTIONS)})",
            )
            return None
        if locations and jurisdiction:
            self.error((*path, "jurisdiction"), "You can't specify both locations and jurisdiction")
            return None
        if "locations" in opts and locations is None:
            return None
        layout = NodeLayout.build(nodes, locations, jurisdiction, countries)
        auth = self.auth(opts, path)
        if auth is None:
            return None
        return Binding(
            name=name,
            class_name=class_name,
            nodes=nodes,
            locations=locations,
            jurisdiction=jurisdiction,
            allowed_origins=tuple(opts.get("allowed_origins", ("*",))),
            layout=layout,
            history_messages=opts.get("history_messages", 0),
            history_seconds=opts.get("history_seconds", 300.0),
            history_bytes=opts.get("history_bytes", 4 * 1024 * 1024),
            max_rooms=opts.get("max_rooms", 10_000),
            skip_self=opts.get("skip_self", False),
            slow_consumer=SlowConsumer(opts.get("slow_consumer", "disconnect")),
            limits=RateLimits(**{k: opts[k] for k in _RATE_KEYS if k in opts}),
            autoscale=autoscale,
            max_connections_per_node=opts.get("max_connections_per_node", 100),
            auth=auth,
        )

    def auth(self, opts: dict[str, Any], path: KeyPath) -> AuthSettings | None:
        """Read the keys a binding's auth needs; every problem names its key."""
        key_options = (
            "jwt_secret",
            "jwt_secret_file",
            "jwt_secret_env",
            "jwt_public_key_file",
            "jwks_file",
        )
        sources: list[str] = [k for k in key_options if k in opts]
        if len(sources) > 1:
            self.error((*path, sources[1]), f"give one verification key, not {', '.join(sources)}")
            return None
        secret: str | None = opts.get("jwt_secret")
        if "jwt_secret_file" in opts:
            secret = self._read((*path, "jwt_secret_file"), opts["jwt_secret_file"])
        if "jwt_secret_env" in opts:
            secret = os.environ.get(opts["jwt_secret_env"])
            if not secret:
                self.error((*path, "jwt_secret_env"), f"${opts['jwt_secret_env']} is not set")
        public_key = jwks = None
        if "jwt_public_key_file" in opts:
            public_key = self._read((*path, "jwt_public_key_file"), opts["jwt_public_key_file"])
        if "jwks_file" in opts:
            text = self._read((*path, "jwks_file"), opts["jwks_file"])
            if text is not None:
                try:
                    jwks = PyJWKSet.from_json(text)
                except (PyJWKSetError, ValueError) as exc:
                    self.error((*path, "jwks_file"), f"not a usable JWKS: {exc}")
        required = opts.get("auth", "none") == "token"
        api_keys = tuple(opts.get("api_keys", ()))
        if required and secret is None and public_key is None and jwks is None and not api_keys:
            self.error(
                (*path, "auth"),
                'auth = "token" needs jwt_secret(_file/_env), jwt_public_key_file or jwks_file',
            )
            return None
        if secret is not None and len(secret.encode()) < 32:
            self.warn((*path, sources[0]), "an HS256 secret should be at least 32 bytes")
        return AuthSettings(
            required=required,
            secret=secret,
            public_key=public_key,
            jwks=jwks,
            audience=opts.get("jwt_audience"),
            issuer=opts.get("jwt_issuer"),
            leeway=opts.get("jwt_leeway", 30.0),
            api_key_hashes=api_keys,
        )

    def _read(self, path: KeyPath, filename: str) -> str | None:
        try:
            return Path(filename).read_text().strip() or None
        except OSError as exc:
            self.error(path, f"cannot read {filename}: {exc.strerror}")
            return None

    def weights(
        self, value: Any, path: KeyPath, countries: dict[str, tuple[str, ...]]
    ) -> dict[str, float] | None:
        if value is None:
            return None
        ok = True
        for location, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                self.error((*path, location), f"weight must be a number above 0, not {weight!r}")
                ok = False
            elif location not in LOCATION_HINTS and location not in countries:
                hint = " (a jurisdiction, not a location)" if location in JURISDICTIONS else ""
                self.warn(
                    (*path, location),
                    f"{location!r}{hint} is not a location hint ({', '.join(LOCATION_HINTS)}) "
                    "and has no [location_countries] entry: its nodes only get clients "
                    "whose country is unknown or unconfigured",
                )
        if not value:
            self.error(path, "must name at least one location")
            ok = False
        return dict(value) if ok else None


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
