"""Configuration: every mistake named with its file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from partysubd.core.config import DEFAULT_BINDING_TOML, ConfigError, StaticSources, parse_config
from partysubd.runtime.config_file import load_config

BASE = DEFAULT_BINDING_TOML


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.toml")
    return [str(issue) for issue in caught.value.issues if issue.severity == "error"]


def test_builtin_default() -> None:
    config = load_config(None)
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 1999
    assert [b.name for b in config.bindings] == ["PubSub"]
    assert set(config.parties()) == {"pub-sub", "pubsub"}
    assert len(config.bindings[0].layout.node_ids) == 9


def test_example_config_in_the_repository_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config" / "partysub.toml")
    assert config.bindings


def test_pubsub_options() -> None:
    config = parse_config(
        BASE
        + """
[[pubsub]]
binding = "PubSub"
nodes = 100
locations = { wnam = 3, weur = 1 }
allowed_origins = ["https://app.example"]
""",
        "t.toml",
    )
    binding = config.bindings[0]
    assert binding.options.nodes == 100
    assert {loc: len(ids) for loc, ids in binding.layout.nodes_by_location.items()} == {
        "wnam": 75,
        "weur": 25,
    }
    assert binding.options.origin_allowed("https://app.example")
    assert not binding.options.origin_allowed("https://evil.example")
    assert binding.options.origin_allowed(None)


def test_unknown_key_names_key_and_line() -> None:
    [found] = errors("[server]\nhost = '0.0.0.0'\nprot = 80\n" + BASE)
    assert found.startswith("test.toml:3: [server.prot] error: unknown key (known keys here: ")
    assert " port, " in found


def test_wrong_type() -> None:
    found = errors('[server]\nport = "1999"\n' + BASE)
    assert found == ["test.toml:2: [server.port] error: must be an integer, not a string"]


def test_booleans_are_not_numbers() -> None:
    assert errors("[server]\nping_interval = true\n" + BASE) == [
        "test.toml:2: [server.ping_interval] error: must be a number, not a boolean"
    ]


def test_binding_without_migration() -> None:
    text = '[[durable_objects.bindings]]\nname = "PubSub"\nclass_name = "Missing"\n'
    found = errors(text)
    assert len(found) == 1
    assert found[0].startswith("test.toml:3: [durable_objects.bindings[0].class_name] error:")
    assert "no migration" in found[0]


def test_deleted_class_no_longer_counts() -> None:
    text = BASE + '\n[[migrations]]\ntag = "v2"\ndeleted_classes = ["PubSubServer"]\n'
    assert any("has no migration" in e for e in errors(text))


def test_renamed_class_counts_under_its_new_name() -> None:
    text = BASE.replace('class_name = "PubSubServer"', 'class_name = "Renamed"') + (
        '\n[[migrations]]\ntag = "v2"\n'
        'renamed_classes = [{ from = "PubSubServer", to = "Renamed" }]\n'
    )
    assert parse_config(text, "t").bindings[0].class_name == "Renamed"


def test_locations_with_jurisdiction() -> None:
    found = errors(
        BASE + '\n[[pubsub]]\nbinding = "PubSub"\nlocations = { wnam = 1 }\njurisdiction = "eu"\n'
    )
    assert found == [
        "test.toml:12: [pubsub[0].jurisdiction] error: You can't specify both locations "
        "and jurisdiction"
    ]


@pytest.mark.parametrize("weight", ["0", "-1", '"heavy"', "true"])
def test_non_positive_or_non_numeric_weights(weight: str) -> None:
    found = errors(BASE + f'\n[[pubsub]]\nbinding = "PubSub"\nlocations = {{ wnam = {weight} }}\n')
    assert len(found) == 1
    assert (
        "test.toml:11: [pubsub[0].locations.wnam] error: weight must be a number above 0"
        in found[0]
    )


def test_weights_as_a_subtable_get_their_own_lines() -> None:
    found = errors(
        BASE + '\n[[pubsub]]\nbinding = "PubSub"\n[pubsub.locations]\nwnam = 1\nweur = 0\n'
    )
    assert found[0].startswith("test.toml:13: [pubsub[0].locations.weur]")


def test_jurisdiction_only_known_ones() -> None:
    found = errors(BASE + '\n[[pubsub]]\nbinding = "PubSub"\njurisdiction = "mars"\n')
    assert "unknown jurisdiction 'mars'" in found[0]


def test_eu_as_location_is_a_warning_not_an_error() -> None:
    config = parse_config(
        BASE + '\n[[pubsub]]\nbinding = "PubSub"\nnodes = 1\nlocations = { eu = 1, wnam = 3 }\n',
        "t.toml",
    )
    assert [b.layout.node_ids for b in config.bindings] == [["eu-0", "wnam-0"]]
    assert len(config.warnings) == 1
    warning = str(config.warnings[0])
    assert "t.toml:12: [pubsub[0].locations.eu] warning:" in warning
    assert "a jurisdiction, not a location" in warning


def test_custom_location_with_countries_is_fine() -> None:
    config = parse_config(
        BASE
        + '\n[location_countries]\neu = ["FR", "DE"]\n'
        + '\n[[pubsub]]\nbinding = "PubSub"\nlocations = { eu = 1, wnam = 1 }\n',
        "t.toml",
    )
    assert config.warnings == ()
    assert config.location_countries == {"eu": ("FR", "DE")}


def test_options_for_an_unknown_binding() -> None:
    found = errors(BASE + '\n[[pubsub]]\nbinding = "Nope"\n')
    assert found == [
        "test.toml:10: [pubsub[0].binding] error: no [[durable_objects.bindings]] is named 'Nope'"
    ]


def test_two_bindings_with_the_same_party() -> None:
    text = BASE + ('\n[[durable_objects.bindings]]\nname = "pubsub"\nclass_name = "PubSubServer"\n')
    found = errors(text)
    assert any("answers to party 'pubsub'" in e for e in found)


def test_several_bindings_are_several_parties() -> None:
    text = BASE.replace('new_classes = ["PubSubServer"]', 'new_classes = ["PubSubServer", "Chat"]')
    text += '\n[[durable_objects.bindings]]\nname = "Chat"\nclass_name = "Chat"\n'
    config = parse_config(text, "t")
    assert set(config.parties()) == {"pub-sub", "pubsub", "chat"}


def test_a_config_with_only_server_serves_the_default_binding() -> None:
    config = parse_config("[server]\nport = 1\n", "t")
    assert config.server.port == 1
    assert config.bindings == load_config(None).bindings
    with_options = parse_config('[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 5\n', "t")
    assert with_options.bindings[0].options.history_messages == 5


def test_migrations_without_bindings() -> None:
    text = '[server]\nport = 1\n[[migrations]]\ntag = "v1"\nnew_classes = ["PubSubServer"]\n'
    assert errors(text) == [
        "test.toml: error: no [[durable_objects.bindings]]: at least one binding is needed"
    ]


def test_every_error_reported_at_once() -> None:
    found = errors('[server]\nport = -1\nbogus = 1\n[[durable_objects.bindings]]\nname = "X"\n')
    assert len(found) == 3


def test_invalid_toml_names_the_line() -> None:
    found = errors("[server]\nport = = 3\n")
    assert found[0].startswith("test.toml:2: error: not valid TOML")


def test_buffer_cap_below_message_size() -> None:
    found = errors("[server]\nmax_message_size = 1000\nmax_buffered_bytes = 10\n" + BASE)
    assert found[0].startswith("test.toml:3: [server.max_buffered_bytes] error: must be at least")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_wrangler_top_level_keys_are_tolerated() -> None:
    config = parse_config('name = "app"\ncompatibility_date = "2024-01-01"\n' + BASE, "t")
    assert config.bindings


def test_admin_defaults_to_loopback_without_token() -> None:
    admin = load_config(None).admin
    assert (admin.listen, admin.token, admin.loopback) == ("127.0.0.1:2000", None, True)


@pytest.mark.parametrize("listen", ["unix:/run/partysub/admin.sock", "[::1]:2000", "localhost:9"])
def test_admin_loopback_forms(listen: str) -> None:
    config = parse_config(f'[admin]\nlisten = "{listen}"\n' + BASE, "t")
    assert config.admin.loopback


def test_admin_off_a_network_address_needs_a_token() -> None:
    found = errors('[admin]\nlisten = "0.0.0.0:2000"\n' + BASE)
    assert found[0].startswith("test.toml:2: [admin.listen] error: 0.0.0.0:2000 is not a loopback")
    config = parse_config(
        '[admin]\nlisten = "0.0.0.0:2000"\ntoken_file = "/etc/partysub/token"\n' + BASE,
        "t",
        sources=StaticSources({"/etc/partysub/token": "s3cret\n"}),
    )
    assert config.admin.token == "s3cret"


@pytest.mark.parametrize("listen", ["2000", "host:port", "unix:relative"])
def test_admin_listen_forms_are_checked(listen: str) -> None:
    assert "must be" in errors(f'[admin]\nlisten = "{listen}"\n' + BASE)[0]


def test_nodes_auto_in_config() -> None:
    config = parse_config(
        DEFAULT_BINDING_TOML + '[[pubsub]]\nbinding = "PubSub"\nnodes = "auto"\n', "t"
    )
    binding = config.bindings[0]
    assert binding.options.autoscale and len(binding.layout.node_ids) == 9
    bad = DEFAULT_BINDING_TOML + '[[pubsub]]\nbinding = "PubSub"\nnodes = "many"\n'
    with pytest.raises(ConfigError, match='or "auto"'):
        parse_config(bad, "t")


def test_cluster_config_errors_name_their_key() -> None:
    good = '[cluster]\nredis_url = "redis://127.0.0.1:6379"\n' + DEFAULT_BINDING_TOML
    config = parse_config(good, "c.toml")
    assert config.cluster is not None and config.cluster.mode == "single"
    sentinel = '[cluster]\nmode = "sentinel"\nservice = "m"\nsentinels = ["h:26379"]\n'
    config = parse_config(sentinel + DEFAULT_BINDING_TOML, "c.toml")
    assert config.cluster is not None and config.cluster.sentinels == ("h:26379",)
    for text, expected in (
        ('[cluster]\nmode = "single"\n', "c.toml:1: [cluster] error: redis_url is required"),
        (
            '[cluster]\nredis_url = "http://x"\n',
            "c.toml:2: [cluster.redis_url] error: must be a redis",
        ),
        ('[cluster]\nredis_url = "redis://x"\nmode = "ring"\n', "c.toml:3: [cluster.mode] error"),
        (
            '[cluster]\nredis_url = "redis://x"\nheartbeat_seconds = 7\n',
            "[cluster.dead_after_seconds] error: must be longer than heartbeat_seconds",
        ),
        ('[server]\nreuse_port = "yes"\n', "[server.reuse_port] error"),
        ('[cluster]\nmode = "sentinel"\nservice = "m"\n', 'mode = "sentinel" needs sentinels'),
        (
            '[cluster]\nmode = "sentinel"\nservice = "m"\nsentinels = ["nohost"]\n',
            "[cluster.sentinels] error: 'nohost' is not \"host:port\"",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(text + DEFAULT_BINDING_TOML, "c.toml")
        assert any(expected in str(issue) for issue in caught.value.issues), (
            expected,
            [str(i) for i in caught.value.issues],
        )
