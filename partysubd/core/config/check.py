"""One pass over a config document: every mistake found and reported together.

Each table is checked against its schema section (schema.py): unknown keys,
wrong types and bad values become issues naming the file, the line and the
key, so an operator fixes a config in one edit rather than one restart per
typo. What no single key can say (a pair that goes together, a class with no
migration, a party two bindings answer to) is checked here after the keys,
in the function for its table.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from jwt import PyJWKSet
from jwt.exceptions import PyJWKSetError

from ..auth import AuthSettings
from ..frames import MAX_FRAME_HEADER
from ..placement import JURISDICTIONS, LOCATION_HINTS, NodeLayout
from ..routing import party_names
from .issues import ConfigError, ConfigIssue, KeyPath, Severity, dotted
from .lines import key_lines
from .overrides import NO_OVERRIDES, Overrides
from .schema import (
    AdminSettings,
    AuthMode,
    AuthOptions,
    Binding,
    BindingEntry,
    ClusterMode,
    ClusterSettings,
    Config,
    Key,
    MigrationEntry,
    PubSubOptions,
    ServerSettings,
    build,
    keys_of,
)
from .sources import Sources, StaticSources

# The tables a config has; documented in docs/configuration.md.
TOP_LEVEL = (
    "server",
    "admin",
    "cluster",
    "location_countries",
    "durable_objects",
    "migrations",
    "pubsub",
)
# Top-level wrangler keys that a wrangler.toml carries and the daemon has no use for.
WRANGLER_KEYS = ("name", "main", "compatibility_date", "compatibility_flags", "vars", "account_id")
# The binding a config without bindings or migrations serves, as no config at all does.
DEFAULT_BINDING = ("PubSub", "PubSubServer")

_NO_FILES = StaticSources()


def parse_config(
    text: str,
    source: str,
    *,
    sources: Sources = _NO_FILES,
    overrides: Overrides = NO_OVERRIDES,
) -> Config:
    """Check a config's text (with ``overrides`` merged in) and build what it says.

    Raises ConfigError holding every error and warning. ``sources`` answers
    for the files and variables the config names (secrets); without it none
    can be read."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError([ConfigIssue(source, line, "", f"not valid TOML: {exc}")]) from exc
    checker = Checker(source, key_lines(text), sources, overrides)
    config = checker.check(overrides.merge(document))
    if config is None or any(i.severity is Severity.ERROR for i in checker.issues):
        raise ConfigError(checker.issues)
    return config


# What a key's annotation asks for, and how the value is said in a message.
_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
}


def toml_type(value: Any) -> str:
    """How TOML calls the type of a value that was written."""
    if isinstance(value, bool):
        return "a boolean"
    for python, name in ((int, "an integer"), (float, "a float"), (str, "a string")):
        if isinstance(value, python):
            return name
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class Checker:
    """Issues found so far, and the document's lines to place them."""

    def __init__(
        self, source: str, lines: dict[KeyPath, int], sources: Sources, overrides: Overrides
    ) -> None:
        self.source = source
        self.lines = lines
        self.sources = sources
        self.flags: dict[KeyPath, str] = {
            path: flag for path, (flag, _) in overrides.given().items()
        }
        self.issues: list[ConfigIssue] = []

    # --- reporting ---------------------------------------------------------------

    def error(self, path: KeyPath, message: str, severity: Severity = Severity.ERROR) -> None:
        """An issue at ``path``: at its line in the file, or named by the flag that gave it."""
        flag = self.flags.get(path)
        if flag is not None:
            where, line = flag, None
        else:
            where, line = self.source, self.line_of(path)
        self.issues.append(ConfigIssue(where, line, dotted(path), message, severity))

    def warn(self, path: KeyPath, message: str) -> None:
        self.error(path, message, Severity.WARNING)

    def line_of(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    # --- keys, from the schema ---------------------------------------------------

    def table(self, value: Any, path: KeyPath, section: type) -> dict[str, Any]:
        """The well-typed keys of a table, as the section's fields take them;
        unknown and mistyped keys become issues."""
        if not isinstance(value, dict):
            self.error(path, "must be a table")
            return {}
        keys = keys_of(section)
        good: dict[str, Any] = {}
        for name, item in value.items():
            key = keys.get(name)
            if key is None:
                known = ", ".join(sorted(keys))
                self.error((*path, name), f"unknown key (known keys here: {known})")
                continue
            problem, taken = self.value(item, key)
            if problem is None and key.check is not None:
                problem = key.check(taken)
            if problem is not None:
                self.error((*path, name), problem)
            else:
                good[name] = taken
        return good

    def value(self, value: Any, key: Key) -> tuple[str | None, Any]:
        """Why ``value`` is not what ``key`` holds, or None and the value as its field takes it."""
        if key.kind == "nodes":
            if value == "auto" or (
                isinstance(value, int) and not isinstance(value, bool) and value > 0
            ):
                return None, value
            return f'must be a number of nodes above 0, or "auto"; not {value!r}', None
        if key.kind == "weights":
            if isinstance(value, dict):
                return None, value
            return f"must be a table, not {toml_type(value)}", None
        if key.kind == "table_list":
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                return None, tuple(value)
            return "must be a list of tables", None
        annotation = key.type
        if typing.get_origin(annotation) is tuple:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return None, tuple(value)
            return "must be a list of strings", None
        if isinstance(annotation, type) and issubclass(annotation, StrEnum):
            choices = [choice.value for choice in annotation]
            if isinstance(value, str) and value in choices:
                return None, annotation(value)
            if not isinstance(value, str):
                return f"must be a string, not {toml_type(value)}", None
            return f"must be one of {', '.join(choices)}", None
        types, said = _SCALARS[annotation]
        if (isinstance(value, bool) and annotation is not bool) or not isinstance(value, types):
            return f"must be {said}, not {toml_type(value)}", None
        if annotation is float:
            return None, float(typing.cast(float, value))
        return None, value

    # --- the document ------------------------------------------------------------

    def check(self, document: dict[str, Any]) -> Config | None:
        for key in document:
            if key not in TOP_LEVEL and key not in WRANGLER_KEYS:
                self.error((key,), f"unknown key (known: {', '.join(sorted(TOP_LEVEL))})")
        for path, flag in self.flags.items():
            if path[0] not in document:
                message = f"the config has no [{path[0]}]"
                self.issues.append(ConfigIssue(flag, None, "", message))
        server = self.server(document.get("server", {}))
        admin = self.admin(document.get("admin", {}))
        cluster = self.cluster(document["cluster"]) if "cluster" in document else None
        countries = self.location_countries(document.get("location_countries", {}))
        if "durable_objects" not in document and "migrations" not in document:
            classes, entries = {DEFAULT_BINDING[1]}, [DEFAULT_BINDING]
        else:
            classes = self.migrations(document.get("migrations"))
            entries = self.bindings(document.get("durable_objects"), classes)
        options = self.pubsub_options(document.get("pubsub", []), entries)
        built = []
        for name, class_name in entries:
            values, path = options.get(name, ({"binding": name}, ("pubsub",)))
            built.append(self.binding(name, class_name, values, path, countries))
        if any(i.severity is Severity.ERROR for i in self.issues):
            return None
        return Config(
            source=self.source,
            server=server,
            admin=admin,
            bindings=tuple(b for b in built if b is not None),
            location_countries=countries,
            warnings=tuple(self.issues),
            cluster=cluster,
        )

    def server(self, value: Any) -> ServerSettings:
        settings: ServerSettings = build(
            ServerSettings, self.table(value, ("server",), ServerSettings)
        )
        if (settings.tls_cert is None) != (settings.tls_key is None):
            missing = "tls_key" if settings.tls_key is None else "tls_cert"
            self.error(("server", missing), "tls_cert and tls_key go together")
        if settings.max_buffered_bytes < settings.max_message_size + MAX_FRAME_HEADER:
            self.error(
                ("server", "max_buffered_bytes"),
                f"must be at least max_message_size + {MAX_FRAME_HEADER} "
                f"({settings.max_message_size + MAX_FRAME_HEADER}): one message and its frame "
                "header must fit in a connection's outgoing buffer",
            )
        return settings

    def admin(self, value: Any) -> AdminSettings:
        path: KeyPath = ("admin",)
        keys = self.table(value, path, AdminSettings)
        if "token_file" in keys:
            if "token" in keys:
                self.error((*path, "token_file"), "give token or token_file, not both")
            keys["token"] = self.read((*path, "token_file"), keys["token_file"])
        keys["allowed_hosts"] = tuple(host.lower() for host in keys.get("allowed_hosts", ()))
        settings: AdminSettings = build(AdminSettings, keys)
        if not settings.loopback and settings.token is None:
            self.error(
                (*path, "listen"),
                f"{settings.listen} is not a loopback address: the control plane would be "
                "open to the network; set token (or token_file)",
            )
        return settings

    def cluster(self, value: Any) -> ClusterSettings | None:
        path: KeyPath = ("cluster",)
        keys = self.table(value, path, ClusterSettings)
        given = value if isinstance(value, dict) else {}
        if keys.get("mode") is ClusterMode.SENTINEL:
            missing = [
                needed
                for needed in ("sentinels", "service")
                if needed not in given or (needed in keys and not keys[needed])
            ]
            for needed in missing:
                self.error(path, f'mode = "sentinel" needs {needed}')
            if missing or "sentinels" not in keys or "service" not in keys:
                return None
        elif "redis_url" not in keys:
            if "redis_url" not in given:
                self.error(path, 'redis_url is required, e.g. redis_url = "redis://127.0.0.1:6379"')
            return None
        settings: ClusterSettings = build(ClusterSettings, keys)
        if settings.dead_after_seconds <= settings.heartbeat_seconds:
            self.error(
                (*path, "dead_after_seconds"),
                f"must be longer than heartbeat_seconds ({settings.heartbeat_seconds:g}): "
                "a live daemon would keep dropping out of the view",
            )
        return settings

    def location_countries(self, value: Any) -> dict[str, tuple[str, ...]]:
        path: KeyPath = ("location_countries",)
        if not isinstance(value, dict):
            self.error(path, "must be a table of location = [country codes]")
            return {}
        result = {}
        for location, countries in value.items():
            if not isinstance(countries, list) or not all(isinstance(c, str) for c in countries):
                self.error((*path, location), "must be a list of strings")
                continue
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
            m = self.table(entry, path, MigrationEntry)
            if "tag" not in m and isinstance(entry, dict) and "tag" not in entry:
                self.error(path, "a migration needs a tag")
            tag = m.get("tag")
            if tag in tags:
                self.error((*path, "tag"), f"duplicate migration tag {tag!r}")
            if isinstance(tag, str):
                tags.add(tag)
            for name in m.get("new_classes", ()) + m.get("new_sqlite_classes", ()):
                if name in classes:
                    self.error(path, f"class {name!r} is created twice")
                classes.add(name)
            for j, rename in enumerate(m.get("renamed_classes", ())):
                old, new = rename.get("from"), rename.get("to")
                if not isinstance(old, str) or not isinstance(new, str):
                    self.error((*path, "renamed_classes", j), 'needs "from" and "to" strings')
                elif old not in classes:
                    self.error((*path, "renamed_classes"), f"renames unknown class {old!r}")
                else:
                    classes.discard(old)
                    classes.add(new)
            for name in m.get("deleted_classes", ()):
                if name not in classes:
                    self.error((*path, "deleted_classes"), f"deletes unknown class {name!r}")
                classes.discard(name)
        return classes

    def bindings(self, value: Any, classes: set[str]) -> list[tuple[str, str]]:
        """The (name, class) of each binding; a config with migrations must bind a class."""
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
            b = self.table(entry, path, BindingEntry)
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
        """Each binding's [[pubsub]] keys, checked, with the entry's path."""
        if not isinstance(value, list):
            self.error(("pubsub",), "must be an array of tables ([[pubsub]])")
            return {}
        known = {name for name, _ in bindings}
        result: dict[str, tuple[dict[str, Any], KeyPath]] = {}
        for i, entry in enumerate(value):
            path: KeyPath = ("pubsub", i)
            keys = self.table(entry, path, PubSubOptions)
            name = keys.get("binding")
            if name is None:
                if isinstance(entry, dict) and "binding" not in entry:
                    self.error(path, 'needs binding = "<name of a [[durable_objects.bindings]]>"')
                continue
            if name not in known:
                self.error((*path, "binding"), f"no [[durable_objects.bindings]] is named {name!r}")
            elif name in result:
                self.error((*path, "binding"), f"binding {name!r} has options twice")
            result[name] = (keys, path)
        return result

    def binding(
        self,
        name: str,
        class_name: str,
        keys: dict[str, Any],
        path: KeyPath,
        countries: dict[str, tuple[str, ...]],
    ) -> Binding | None:
        if "locations" in keys:
            locations = self.weights(keys["locations"], (*path, "locations"), countries)
            if locations is None:
                return None
            keys["locations"] = locations
        options: PubSubOptions = build(PubSubOptions, keys)
        if options.locations and options.jurisdiction:
            self.error((*path, "jurisdiction"), "You can't specify both locations and jurisdiction")
            return None
        auth = self.auth(options.auth_options, path)
        if auth is None:
            return None
        layout = NodeLayout.build(
            options.start_nodes, options.locations, options.jurisdiction, countries
        )
        return Binding(name, class_name, options, layout, auth)

    def auth(self, opts: AuthOptions, path: KeyPath) -> AuthSettings | None:
        """Read the keys a binding's auth needs; every problem names its key."""
        named = ("jwt_secret", "jwt_secret_file", "jwt_secret_env", "jwt_public_key_file")
        given = [k for k in (*named, "jwks_file") if getattr(opts, k) is not None]
        if len(given) > 1:
            self.error((*path, given[1]), f"give one verification key, not {', '.join(given)}")
            return None
        secret = opts.jwt_secret
        if opts.jwt_secret_file is not None:
            secret = self.read((*path, "jwt_secret_file"), opts.jwt_secret_file)
        if opts.jwt_secret_env is not None:
            secret = self.sources.environ(opts.jwt_secret_env) or None
            if secret is None:
                self.error((*path, "jwt_secret_env"), f"${opts.jwt_secret_env} is not set")
        public_key = jwks = None
        if opts.jwt_public_key_file is not None:
            public_key = self.read((*path, "jwt_public_key_file"), opts.jwt_public_key_file)
        if opts.jwks_file is not None:
            text = self.read((*path, "jwks_file"), opts.jwks_file)
            if text is not None:
                try:
                    jwks = PyJWKSet.from_json(text)
                except (PyJWKSetError, ValueError) as exc:
                    self.error((*path, "jwks_file"), f"not a usable JWKS: {exc}")
        required = opts.auth is AuthMode.TOKEN
        if (
            required
            and secret is None
            and public_key is None
            and jwks is None
            and not opts.api_keys
        ):
            self.error(
                (*path, "auth"),
                'auth = "token" needs jwt_secret(_file/_env), jwt_public_key_file or jwks_file',
            )
            return None
        if secret is not None and len(secret.encode()) < 32:
            self.warn((*path, given[0]), "an HS256 secret should be at least 32 bytes")
        return AuthSettings(
            required=required,
            secret=secret,
            public_key=public_key,
            jwks=jwks,
            audience=opts.jwt_audience,
            issuer=opts.jwt_issuer,
            leeway=opts.jwt_leeway,
            api_key_hashes=opts.api_keys,
        )

    def read(self, path: KeyPath, filename: str) -> str | None:
        """A secret's file, stripped; an issue at ``path`` when it cannot be read."""
        try:
            return self.sources.read_text(filename).strip() or None
        except OSError as exc:
            self.error(path, f"cannot read {filename}: {exc.strerror}")
            return None
        except UnicodeDecodeError:
            self.error(path, f"cannot read {filename}: not UTF-8 text")
            return None

    def weights(
        self, value: Mapping[str, Any], path: KeyPath, countries: dict[str, tuple[str, ...]]
    ) -> dict[str, float] | None:
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
