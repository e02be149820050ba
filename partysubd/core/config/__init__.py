"""The daemon's configuration: TOML that mirrors wrangler, checked before serving.

schema.py says every key once (type, default, check, meaning); check.py
checks a document against it and builds a ``Config``; show.py prints a
``Config`` back; lines.py places keys on their lines for the messages;
overrides.py merges command-line flags in before the check; sources.py is
how secrets in files and variables reach the check without it doing I/O.
docs/configuration.md is held to the schema by tests/test_config_schema.py.
"""

from .check import parse_config
from .issues import ConfigError, ConfigIssue, Severity
from .overrides import NO_OVERRIDES, Overrides
from .schema import (
    BUILTIN_SOURCE,
    DEFAULT_ADMIN_LISTEN,
    DEFAULT_BINDING_TOML,
    DEFAULT_CONFIG_TOML,
    AdminSettings,
    AuthMode,
    AuthOptions,
    Binding,
    ClusterMode,
    ClusterSettings,
    Config,
    LogLevel,
    PubSubOptions,
    RateLimits,
    ServerSettings,
    SlowConsumer,
    check_listen,
)
from .sources import Sources, StaticSources

__all__ = [
    "BUILTIN_SOURCE",
    "DEFAULT_ADMIN_LISTEN",
    "DEFAULT_BINDING_TOML",
    "DEFAULT_CONFIG_TOML",
    "NO_OVERRIDES",
    "AdminSettings",
    "AuthMode",
    "AuthOptions",
    "Binding",
    "ClusterMode",
    "ClusterSettings",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "LogLevel",
    "Overrides",
    "PubSubOptions",
    "RateLimits",
    "ServerSettings",
    "Severity",
    "SlowConsumer",
    "Sources",
    "StaticSources",
    "check_listen",
    "parse_config",
]
