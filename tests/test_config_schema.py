"""The config schema is the one truth: the checker, ``config show`` and the docs follow it."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from partysubd.core.config import (
    Config,
    ConfigError,
    Overrides,
    StaticSources,
    parse_config,
)
from partysubd.core.config.schema import TABLES, Key, keys_of
from partysubd.core.config.show import SECRET, show
from partysubd.runtime.config_file import LocalSources, load_config

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "configuration.md").read_text()

# Every key of every table set away from its default, but the inline secrets
# (a secret's file stands for them: what show prints, and what round-trips).
EVERY_KEY = """
name = "a-wrangler-app"

[server]
host = "0.0.0.0"
port = 8080
backlog = 100
country_header = "X-Country"
max_message_size = 1000
max_buffered_bytes = 5000
max_header_bytes = 4000
max_topics = 7
max_topic_length = 50
max_depth = 9
max_history_bytes = 100000
ping_interval = 3
ping_timeout = 4.5
handshake_timeout = 6
close_timeout = 2
shutdown_timeout = 1
shutdown_close_code = 1012
drain_seconds = 0
log_level = "debug"
client_address_header = "X-Forwarded-For"
tls_cert = "/etc/partysub/cert.pem"
tls_key = "/etc/partysub/key.pem"
reuse_port = true

[admin]
listen = "0.0.0.0:2001"
token_file = "/etc/partysub/admin-token"
allowed_hosts = ["Ops.Example"]
allowed_origins = ["https://ops.example"]

[cluster]
redis_url = "redis://10.0.0.1:6379/2"
mode = "sentinel"
sentinels = ["10.0.0.2:26379", "10.0.0.3:26379"]
service = "mymaster"
name = "web-1"
location = "weur"
prefix = "ps"
heartbeat_seconds = 1
dead_after_seconds = 4
max_pending_messages = 50
max_pending_bytes = 60000

[location_countries]
moon = ["fr", "DE"]

[[durable_objects.bindings]]
name = "Alpha"
class_name = "Alpha"
script_name = "worker"
environment = "production"

[[durable_objects.bindings]]
name = "Beta"
class_name = "Beta"

[[durable_objects.bindings]]
name = "Gamma"
class_name = "Renamed"

[[durable_objects.bindings]]
name = "Delta"
class_name = "Alpha"

[[migrations]]
tag = "v1"
new_classes = ["Alpha", "Old", "Gone"]
new_sqlite_classes = ["Beta"]

[[migrations]]
tag = "v2"
renamed_classes = [{ from = "Old", to = "Renamed" }]
deleted_classes = ["Gone"]

[[pubsub]]
binding = "Alpha"
nodes = 12
locations = { wnam = 3, moon = 1.5 }
allowed_origins = ["https://app.example"]
history_messages = 100
history_seconds = 60
history_bytes = 90000
max_rooms = 5
skip_self = true
slow_consumer = "latest"
publish_rate = 10
publish_burst = 20
publish_bytes_rate = 1000
publish_bytes_burst = 2000
connect_rate = 3
connect_burst = 6
max_connections_per_room = 40
abuse_strikes = 5
auth = "token"
jwt_secret_file = "/etc/partysub/alpha-secret"
jwt_audience = "app"
jwt_issuer = "https://issuer.example"
jwt_leeway = 5
api_keys = ["sha256:HASH"]

[[pubsub]]
binding = "Beta"
nodes = "auto"
max_connections_per_node = 10
jurisdiction = "eu"
auth = "token"
jwt_public_key_file = "/etc/partysub/beta.pem"

[[pubsub]]
binding = "Gamma"
jwks_file = "/etc/partysub/gamma.jwks"

[[pubsub]]
binding = "Delta"
jwt_secret_env = "DELTA_SECRET"
""".replace("HASH", hashlib.sha256(b"key").hexdigest())
INLINE_SECRETS = {"token", "jwt_secret", "password"}
# Wrangler's binding keys the daemon takes and does not use: not part of what runs.
NOT_RUN = {"script_name", "environment"}
JWKS = (
    '{"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", '
    '"k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMy"}]}'
)
SOURCES = StaticSources(
    files={
        "/etc/partysub/admin-token": "admin-token\n",
        "/etc/partysub/alpha-secret": "alpha-secret-alpha-secret-alpha-secret\n",
        "/etc/partysub/beta.pem": "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
        "/etc/partysub/gamma.jwks": JWKS,
    },
    variables={"DELTA_SECRET": "delta-secret-delta-secret-delta-secret"},
)


def comparable(config: Config) -> Config:
    """The config with each JWKS by its key ids (PyJWKSet has no equality of its own)."""
    bindings = []
    for b in config.bindings:
        if b.auth.jwks is not None:
            ids = tuple(key.key_id for key in b.auth.jwks.keys)
            b = dataclasses.replace(b, auth=dataclasses.replace(b.auth, jwks=ids))
        bindings.append(b)
    return dataclasses.replace(config, bindings=tuple(bindings))


def written_keys(document: dict[str, Any], table: str) -> set[str]:
    found: Any = document
    for part in table.split("."):
        found = found.get(part, {})
    entries = found if isinstance(found, list) else [found]
    return {key for entry in entries for key in entry}


# --- config show round-trips ---------------------------------------------------


def test_every_key_config_sets_every_key_the_schema_has() -> None:
    document = tomllib.loads(EVERY_KEY)
    for table, section in TABLES.items():
        missing = set(keys_of(section)) - INLINE_SECRETS - written_keys(document, table)
        assert not missing, f"add {sorted(missing)} to EVERY_KEY [{table}]"
    first = parse_config(EVERY_KEY, "every.toml", sources=SOURCES)
    assert first.warnings == ()
    # Each value differs from its default, so a key show forgot would come back changed.
    for table, section in TABLES.items():
        for name in written_keys(document, table) & set(keys_of(section)):
            assert keys_of(section)[name].default != _anywhere(document, table, name), name


def _anywhere(document: dict[str, Any], table: str, name: str) -> Any:
    found: Any = document
    for part in table.split("."):
        found = found[part]
    entries = found if isinstance(found, list) else [found]
    return next(entry[name] for entry in entries if name in entry)


def test_show_prints_every_setting_and_loads_back_equal() -> None:
    first = parse_config(EVERY_KEY, "every.toml", sources=SOURCES)
    text = show(first)
    again = parse_config(text, "shown.toml", sources=SOURCES)
    assert comparable(again) == comparable(first)
    shown = tomllib.loads(text)
    for table, section in TABLES.items():
        if table == "migrations":
            continue  # shown as the one migration that leaves the bound classes
        unset = {k for k, key in keys_of(section).items() if key.default is None}
        assert written_keys(shown, table) | unset | INLINE_SECRETS | NOT_RUN >= set(
            keys_of(section)
        )


@pytest.mark.parametrize("example", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_each_example_config_shows_as_a_config_that_loads_equal(example: Path) -> None:
    config = load_config(example)
    again = parse_config(show(config), "shown.toml", sources=LocalSources())
    assert again == config


def test_the_built_in_default_shows_as_itself() -> None:
    config = load_config(None)
    assert parse_config(show(config), "shown.toml") == config


def test_show_never_prints_a_secret() -> None:
    text = (
        '[admin]\ntoken = "admin-hunter2"\n'
        '[cluster]\nredis_url = "redis://app:redis-hunter2@h:6379/0"\npassword = "p-hunter2"\n'
        '[[pubsub]]\nbinding = "PubSub"\nauth = "token"\n'
        'jwt_secret = "jwt-hunter2-jwt-hunter2-jwt-hunter2"\n'
    )
    shown = show(parse_config(text, "t"))
    assert "hunter2" not in shown
    document = tomllib.loads(shown)
    assert document["admin"]["token"] == SECRET
    assert document["cluster"]["password"] == SECRET
    assert document["cluster"]["redis_url"] == f"redis://app:{SECRET}@h:6379/0"
    assert document["pubsub"][0]["jwt_secret"] == SECRET


def test_a_secret_read_from_a_file_is_shown_by_its_file() -> None:
    document = tomllib.loads(show(parse_config(EVERY_KEY, "every.toml", sources=SOURCES)))
    assert document["admin"]["token_file"] == "/etc/partysub/admin-token"
    assert "token" not in document["admin"]


# --- the checker follows the schema ----------------------------------------------


def _wrong_value(key: Key) -> Any:
    """A value of the wrong TOML type for ``key``."""
    if key.kind == "nodes":
        return "many"
    if key.kind in ("weights", "table_list"):
        return 3
    if key.type in (int, float):
        return "3"
    return 3


BASES = {
    "server": "",
    "admin": "",
    "cluster": 'redis_url = "redis://127.0.0.1:6379"\n',
    "pubsub": 'binding = "PubSub"\n',
}


@pytest.mark.parametrize(
    ("table", "name"),
    [(t, k) for t, section in TABLES.items() if t in BASES for k in keys_of(section)],
)
def test_a_wrong_type_is_named_for_every_key(table: str, name: str) -> None:
    """Each key the schema has is type-checked and its error names the key and its line."""
    key = keys_of(TABLES[table])[name]
    header = f"[[{table}]]" if table == "pubsub" else f"[{table}]"
    base = BASES[table] if name not in BASES[table] else ""
    value = _wrong_value(key)
    written = f'"{value}"' if isinstance(value, str) else str(value)
    text = f"{header}\n{base}{name} = {written}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.toml")
    line = 2 + base.count("\n")
    index = "[0]" if table == "pubsub" else ""
    first = str(caught.value.errors[0])
    assert first.startswith(f"t.toml:{line}: [{table}{index}.{name}] error: must be"), first


def test_a_choice_lists_its_values() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[[pubsub]]\nbinding = "PubSub"\nslow_consumer = "later"\n', "t")
    assert [i.message for i in caught.value.errors] == ["must be one of disconnect, drop, latest"]


# --- command-line overrides go through the same check --------------------------


def test_overrides_are_merged_before_the_check() -> None:
    config = parse_config(
        "[server]\nport = 1\n",
        "t",
        overrides=Overrides(host="0.0.0.0", port=0, log_level="debug"),
    )
    assert (config.server.host, config.server.port, config.server.log_level) == (
        "0.0.0.0",
        0,
        "debug",
    )


def test_an_override_is_checked_as_its_key_and_named_by_its_flag() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("", "t", overrides=Overrides(admin_listen="0.0.0.0:2000", log_level="loud"))
    found = sorted(str(i) for i in caught.value.errors)
    assert found == [
        "--admin-listen: [admin.listen] error: 0.0.0.0:2000 is not a loopback address: the "
        "control plane would be open to the network; set token (or token_file)",
        "--log-level: [server.log_level] error: must be one of debug, info, warning, error",
    ]


def test_an_override_meets_the_file_s_cross_checks() -> None:
    text = '[admin]\ntoken = "t0ken"\n'
    config = parse_config(text, "t", overrides=Overrides(admin_listen="0.0.0.0:2000"))
    assert (config.admin.listen, config.admin.token) == ("0.0.0.0:2000", "t0ken")


def test_a_cluster_name_needs_a_cluster() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("", "t", overrides=Overrides(cluster_name="a"))
    assert [str(i) for i in caught.value.errors] == [
        "--cluster-name: error: the config has no [cluster]"
    ]
    cluster = '[cluster]\nredis_url = "redis://h:1"\nname = "file"\n'
    config = parse_config(cluster, "t", overrides=Overrides(cluster_name="flag"))
    assert config.cluster is not None and config.cluster.name == "flag"


def test_a_reload_merges_the_overrides_again(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[server]\nport = 1\nmax_topics = 3\n")
    overrides = Overrides(port=0)
    assert load_config(path, overrides).server.port == 0
    path.write_text("[server]\nport = 2\nmax_topics = 4\n")
    again = load_config(path, overrides)
    assert (again.server.port, again.server.max_topics) == (0, 4)


# --- docs/configuration.md says what the schema says ------------------------------


def doc_tables() -> dict[str, dict[str, dict[str, str]]]:
    """Each reference table of the doc: table name -> key -> column -> cell."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        heading = section.splitlines()[0]
        match = re.fullmatch(r"`\[\[?([a-z_.]+)\]\]?`", heading.strip())
        if match is None:
            continue
        rows = [line for line in section.splitlines() if line.startswith("|")]
        if not rows:
            continue
        columns = [c.strip() for c in rows[0].strip("|").split("|")]
        keys: dict[str, dict[str, str]] = {}
        for row in rows[2:]:
            values = (c.strip() for c in row.strip().strip("|").split("|"))
            cells = dict(zip(columns, values, strict=True))
            for key in re.findall(r"`([a-z_]+)`", cells["key"]):
                keys[key] = cells
        tables[match.group(1)] = keys
    return tables


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return f'"{value.value}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


# Defaults the doc says in words, not as the TOML value.
SAID_IN_WORDS = {
    ("cluster", "redis_url"): "required",
    ("cluster", "name"): '`"<hostname>-<pid>"`',
    ("pubsub", "locations"): "the nine hints",
    ("cluster", "sentinels"): "",
    ("cluster", "service"): "",
}


def test_the_doc_has_a_row_for_every_key_and_no_other() -> None:
    documented = doc_tables()
    for table, section in TABLES.items():
        assert set(documented[table]) == set(keys_of(section)), table


def test_the_doc_gives_each_key_s_schema_default() -> None:
    for table, keys in doc_tables().items():
        for name, cells in keys.items():
            if "default" not in cells:
                continue
            said = cells["default"]
            key = keys_of(TABLES[table])[name]
            if key.required:
                assert "required" in cells["type"] and said == "", (table, name)
                continue
            if (table, name) in SAID_IN_WORDS:
                assert said.startswith(SAID_IN_WORDS[table, name]), (table, name, said)
                continue
            if key.default is None:  # left out, and nothing stands in for it
                assert said in ("none", ""), (table, name, said)
            else:
                assert said.startswith(f"`{_toml(key.default)}`"), (table, name, said)


def test_the_doc_gives_each_key_s_type() -> None:
    words = {int: "integer", float: "number", str: "string", bool: "boolean"}
    for table, keys in doc_tables().items():
        for name, cells in keys.items():
            key = keys_of(TABLES[table])[name]
            said = cells["type"]
            if isinstance(key.type, type) and issubclass(key.type, StrEnum):
                assert all(f'"{choice.value}"' in said for choice in key.type), (name, said)
            elif key.kind == "nodes":
                assert "integer" in said and '"auto"' in said, (name, said)
            elif key.kind == "weights":
                assert said.startswith("table"), (name, said)
            elif key.kind == "table_list" or key.type not in words:
                assert said.startswith("list"), (name, said)
            elif said.startswith(("`", "1")):  # the values it may take, each a good one
                literals = re.findall(r"`([^`]+)`|(\d+)", said)
                for quoted, number in literals:
                    value = tomllib.loads(f"v = {quoted or number}")["v"]
                    assert key.check is not None and key.check(value) is None, (name, value)
            else:
                assert said.startswith(words[key.type]), (name, said)


def test_every_default_passes_its_own_check() -> None:
    for table, section in TABLES.items():
        for name, key in keys_of(section).items():
            if key.check is not None and not key.required and key.default is not None:
                assert key.check(key.default) is None, (table, name)


# --- no document makes the checker raise anything but ConfigError ------------------

toml_scalars = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.text(max_size=12)
    | st.sampled_from(["auto", "token", "sentinel", "latest", "eu", "0.0.0.0:1", "redis://h:1"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def plausible(key: Key) -> st.SearchStrategy[Any]:
    """Values of the key's own type (often good ones), so deep checks are reached too."""
    if key.kind == "nodes":
        return st.integers(-1, 300) | st.just("auto")
    if key.kind == "weights":
        names = st.sampled_from(["wnam", "weur", "eu", "moon", ""])
        return st.dictionaries(names, st.integers(-1, 5) | st.floats(-1, 5), max_size=3)
    if key.kind == "table_list":
        rename = st.fixed_dictionaries({"from": st.text(max_size=3), "to": st.text(max_size=3)})
        return st.lists(rename, max_size=2)
    if isinstance(key.type, type) and issubclass(key.type, StrEnum):
        return st.sampled_from([choice.value for choice in key.type])
    if typing.get_origin(key.type) is tuple:
        return st.lists(st.sampled_from(["*", "h:1", "https://a.example", "x"]), max_size=3)
    if key.type is bool:
        return st.booleans()
    if key.type is int:
        return st.integers(-2, 2**20) | st.sampled_from([0, 1, 1001, 1012, 65535])
    if key.type is float:
        return st.floats(-1, 100)
    return st.text(max_size=8) | st.sampled_from(["0.0.0.0:1", "redis://h:1", "eu", "127.0.0.1"])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the schema's own tables and keys, with values of their type or any other."""
    document: dict[str, Any] = {}
    for table, section in TABLES.items():
        # Wrangler's tables less often: without them the default binding is checked deep.
        wrangler = table in ("durable_objects.bindings", "migrations")
        if draw(st.integers(0, 3 if wrangler else 1)) != 0:
            continue
        keys = keys_of(section)
        entry: dict[str, Any] = {}
        for name in draw(st.lists(st.sampled_from([*keys, "bogus"]), max_size=8)):
            key = keys.get(name)
            strategy = toml_values if key is None else plausible(key) | toml_values
            entry[name] = draw(strategy)
        if table == "pubsub" and draw(st.integers(0, 3)):
            entry["binding"] = "PubSub"
        top, _, sub = table.partition(".")
        if sub:
            document[top] = {sub: [entry]}
        elif table in ("migrations", "pubsub"):
            document[table] = draw(st.sampled_from([[entry], entry, [entry, entry]]))
        else:
            document[table] = draw(st.sampled_from([entry, entry, [entry], 3]))
    if draw(st.booleans()):
        document["location_countries"] = draw(
            st.dictionaries(st.sampled_from(["moon", "eu", ""]), st.lists(st.text(max_size=2)))
            | toml_values
        )
    return document


@st.composite
def perturbed(draw: st.DrawFn) -> dict[str, Any]:
    """EVERY_KEY with a few keys changed, added or taken out: the deep checks run."""
    document = tomllib.loads(EVERY_KEY)
    entries: list[tuple[str, dict[str, Any]]] = []
    for table in TABLES:
        found: Any = document
        for part in table.split("."):
            found = found[part]
        entries += [(table, entry) for entry in (found if isinstance(found, list) else [found])]
    for _ in range(draw(st.integers(1, 3))):
        table, entry = draw(st.sampled_from(entries))
        keys = keys_of(TABLES[table])
        name = draw(st.sampled_from(sorted(keys)))
        if draw(st.integers(0, 4)) == 0:
            entry.pop(name, None)
        else:
            entry[name] = draw(plausible(keys[name]) | toml_values)
    return document


@settings(max_examples=500)
@given(documents() | perturbed(), st.booleans())
def test_any_document_is_a_config_or_issues_never_an_exception(
    document: dict[str, Any], flags: bool
) -> None:
    try:
        text = tomli_w.dumps(document)
    except (TypeError, ValueError):
        return  # not writable as TOML
    overrides = (
        Overrides(port=0, admin_listen="127.0.0.1:0", cluster_name="x") if flags else Overrides()
    )
    try:
        config = parse_config(text, "any.toml", sources=SOURCES, overrides=overrides)
    except ConfigError as exc:
        assert exc.issues and all(str(issue) for issue in exc.issues)
        return
    again = parse_config(show(config), "shown.toml", sources=SOURCES)
    assert comparable(again) == comparable(config)
