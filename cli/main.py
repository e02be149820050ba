"""The ``partysub`` command: run the daemon, publish, subscribe, inspect, check configs."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import trio
import typer
from rich.console import Console

import partysub
from partysubd import __version__
from partysubd.core.config import Config, ConfigError, Overrides
from partysubd.core.config.show import show
from partysubd.runtime.config_file import STDIN, load_config
from partysubd.runtime.logs import FORMATS

from . import remote, views

app = typer.Typer(
    name="partysub",
    help="A self-hosted pub/sub daemon for PartySocket clients.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check and show configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (TOML); - reads it from standard input (config check and show). "
        "Without it, the built-in default: binding PubSub on 127.0.0.1:1999, control plane "
        "on 127.0.0.1:2000.",
        dir_okay=False,
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="The daemon's public URL [default: from -c, else http://127.0.0.1:1999]"
    ),
]
PartyOption = Annotated[
    str | None,
    typer.Option("--party", help="Party name [default: the first binding of -c, else pubsub]"),
]
AdminOption = Annotated[
    str | None,
    typer.Option(
        "--admin",
        help="Control plane: http://host:port or unix:/path [default: from -c, else "
        "http://127.0.0.1:2000]",
        envvar="PARTYSUB_ADMIN",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Control plane bearer token", envvar="PARTYSUB_ADMIN_TOKEN"),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"partysub {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """partysub: topic pub/sub over WebSockets, compatible with the partysocket client."""


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"partysub: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path | None, overrides: Overrides | None = None) -> Config:
    """The checked config, or each issue printed and a non-zero exit.

    A problem only with a flag's value is said as for any bad flag, in one line."""
    try:
        return load_config(config, overrides or Overrides())
    except ConfigError as exc:
        errors = exc.errors
        if errors and all(issue.source.startswith("--") for issue in errors):
            raise typer.BadParameter(errors[0].message, param_hint=errors[0].source) from None
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        _fail(f"{len(errors)} error(s) in the configuration; not starting.", 2)


def _load_optional(config: Path | None) -> Config | None:
    return None if config is None else _load(config)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (overrides the config).")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Listen port (overrides the config); 0 picks a free one.", min=0, max=65535
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error [default: server.log_level, info]"),
    ] = None,
    log_format: Annotated[str, typer.Option(help="text (journald) or json.")] = "text",
    admin_listen: Annotated[
        str | None,
        typer.Option(
            "--admin-listen",
            help="Control plane listener (overrides [admin] listen): host:port, unix:/path, off.",
        ),
    ] = None,
    cluster_name: Annotated[
        str | None,
        typer.Option(
            "--cluster-name",
            help="This daemon's name in the cluster (overrides [cluster] name).",
        ),
    ] = None,
) -> None:
    """Run the daemon in the foreground; SIGHUP reloads the config, SIGTERM drains and stops.

    Examples:

      partysub serve

      partysub serve -c /etc/partysub/partysub.toml --port 8080 --log-format json

      partysub serve -c cluster.toml --cluster-name web-1 --admin-listen unix:/run/partysub/1.sock
    """
    from partysubd.runtime.daemon import StartupError, run
    from partysubd.runtime.logs import setup_logging

    if log_format not in FORMATS:
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    if config is not None and str(config) == STDIN:
        raise typer.BadParameter(
            "serve reads its config again on SIGHUP: name a file", param_hint="-c"
        )
    overrides = Overrides(
        host, port, log_level.lower() if log_level else None, admin_listen, cluster_name
    )
    loaded = _load(config, overrides)
    setup_logging(loaded.server.log_level, log_format)
    try:
        run(loaded, config, overrides)
    except StartupError as exc:
        _fail(str(exc))
    except Exception as exc:  # never expected: faults are contained inside
        # The traceback goes to the log (one line, as every log line), for a report.
        logging.getLogger("partysubd").critical("stopped by an internal error", exc_info=exc)
        _fail(f"stopped by an internal error ({type(exc).__name__}); the log has its traceback")


def _messages(msg: str, lines: bool) -> Iterator[str]:
    if msg != "-":
        yield msg
    elif lines:
        for line in sys.stdin:
            if line.strip():
                yield line.rstrip("\n")
    else:
        yield sys.stdin.read()


@app.command()
def publish(
    room: Annotated[str, typer.Argument(help="Room name.")],
    topic: Annotated[str, typer.Argument(help="Topic.")],
    msg: Annotated[str, typer.Argument(help="The message; - reads it from standard input.")],
    config: ConfigOption = None,
    url: UrlOption = None,
    party: PartyOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="MSG is JSON: send it as the data, not as a string.")
    ] = False,
    lines: Annotated[
        bool, typer.Option("--lines", help="With -: one message per line of standard input.")
    ] = False,
) -> None:
    """Publish a message to a room over HTTP (what PartySocket.fetch does).

    Examples:

      partysub publish lobby chat:1 "hello"

      partysub publish lobby prices '{"eur": 1.08}' --json

      tail -f events.jsonl | partysub publish lobby events - --json --lines
    """
    endpoint = remote.Endpoint.resolve(url, party, _load_optional(config))
    messages: list[Any] = []
    for number, text in enumerate(_messages(msg, lines), start=1):
        if not as_json:
            messages.append(text)
            continue
        try:
            messages.append(json.loads(text))
        except ValueError as exc:
            _fail(f"message {number} is not JSON ({exc}); without --json it is a string", 2)

    async def send_all() -> None:
        for data in messages:
            typer.echo(
                await partysub.publish(endpoint.base_url, room, topic, data, party=endpoint.party)
            )

    try:
        trio.run(send_all)
    except partysub.PublishError as exc:
        _fail(str(exc))


@app.command()
def subscribe(
    room: Annotated[str, typer.Argument(help="Room name.")],
    topics: Annotated[
        str | None, typer.Option(help="Patterns, comma-separated (a,b:*) [default: everything]")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after N messages.", min=1)] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    party: PartyOption = None,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry/--no-retry",
            help="Keep trying while the daemon cannot be reached (each attempt said on "
            "stderr), or exit at once.",
        ),
    ] = True,
) -> None:
    """Print a room's messages, one JSON line each, until interrupted (or --count).

    It reconnects (and resumes, where the room keeps a history) when the
    connection drops, so it outlives a daemon restart; each failed attempt is
    said on stderr.

    Examples:

      partysub subscribe lobby

      partysub subscribe lobby --topics 'chat:*' --count 10
    """
    endpoint = remote.Endpoint.resolve(url, party, _load_optional(config))
    patterns = None if topics is None else topics.split(",")

    def status(state: partysub.Status) -> None:
        if state.connected:
            typer.echo(f"partysub: connected to {endpoint.base_url}", err=True)
        else:
            typer.echo(
                f"partysub: cannot subscribe at {endpoint.base_url}: {state.error}; "
                f"retrying in {state.retry_in or 0:.1f}s (Ctrl-C to stop)",
                err=True,
            )

    async def tail() -> None:
        received = 0
        async with partysub.connect(
            endpoint.base_url,
            room=room,
            party=endpoint.party,
            topics=patterns,
            retry=retry,
            on_status=status,
        ) as sub:
            async for message in sub:
                line = json.dumps({"topic": message.topic, "data": message.data})
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                received += 1
                if count is not None and received >= count:
                    return

    try:
        trio.run(tail)
    except partysub.PublishError as exc:
        _fail(f"cannot subscribe to {room!r} at {endpoint.base_url}: {exc}")


def _admin(admin: str | None, token: str | None, config: Path | None) -> remote.AdminEndpoint:
    try:
        return remote.AdminEndpoint.resolve(admin, token, _load_optional(config))
    except remote.RemoteError as exc:
        _fail(str(exc))


def _get(endpoint: remote.AdminEndpoint, path: str) -> Any:
    try:
        return endpoint.get(path)
    except remote.RemoteError as exc:
        _fail(str(exc))


def _room_path(party: str | None, room: str, config: Path | None) -> str:
    name = party or remote.Endpoint.resolve(None, None, _load_optional(config)).party
    return f"/rooms/{quote(name, safe='')}/{quote(room, safe='')}"


def _show(
    payload: dict[str, Any], as_json: bool, draw: Callable[[Console, dict[str, Any]], None]
) -> None:
    """A control-plane answer: as JSON for scripts, or drawn as tables for people."""
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        draw(Console(), payload)


@app.command()
def rooms(
    config: ConfigOption = None,
    admin: AdminOption = None,
    token: TokenOption = None,
    as_json: JsonOutput = False,
) -> None:
    """List live rooms with their nodes, connections and traffic (control plane).

    Example: partysub rooms -c /etc/partysub/partysub.toml
    """
    _show(_get(_admin(admin, token, config), "/rooms"), as_json, views.rooms)


@app.command()
def cluster(
    config: ConfigOption = None,
    admin: AdminOption = None,
    token: TokenOption = None,
    as_json: JsonOutput = False,
) -> None:
    """List the daemons of the cluster: name, location, address, connections, last seen.

    Example: partysub cluster -c /etc/partysub/partysub.toml
    """
    _show(_get(_admin(admin, token, config), "/cluster"), as_json, views.cluster)


@app.command()
def room(
    name: Annotated[str, typer.Argument(metavar="ROOM", help="Room name.")],
    party: PartyOption = None,
    config: ConfigOption = None,
    admin: AdminOption = None,
    token: TokenOption = None,
    as_json: JsonOutput = False,
) -> None:
    """One room: its nodes and locations, and its connections.

    Example: partysub room lobby --party pubsub
    """
    endpoint = _admin(admin, token, config)
    path = _room_path(party, name, config)
    detail = _get(endpoint, path)
    connections = _get(endpoint, path + "/connections")
    if as_json:
        typer.echo(json.dumps({**detail, "connections": connections["connections"]}, indent=2))
    else:
        views.room(Console(), detail, connections)


@app.command()
def topics(
    name: Annotated[str, typer.Argument(metavar="ROOM", help="Room name.")],
    party: PartyOption = None,
    config: ConfigOption = None,
    admin: AdminOption = None,
    token: TokenOption = None,
    as_json: JsonOutput = False,
) -> None:
    """A room's subscription patterns with subscriber counts, and its recent topics.

    Example: partysub topics lobby
    """
    detail = _get(_admin(admin, token, config), _room_path(party, name, config))
    if as_json:
        typer.echo(
            json.dumps(
                {"patterns": detail["patterns"], "recent_topics": detail["recent_topics"]},
                indent=2,
            )
        )
    else:
        views.topics(Console(), detail)


@app.command()
def token(
    room: Annotated[
        list[str] | None, typer.Option("--room", help="Room pattern it may enter (repeatable).")
    ] = None,
    sub: Annotated[
        list[str] | None, typer.Option("--sub", help="Topic pattern it may subscribe to.")
    ] = None,
    pub: Annotated[
        list[str] | None, typer.Option("--pub", help="Topic pattern it may publish to.")
    ] = None,
    ttl: Annotated[int, typer.Option(help="Seconds until it expires.", min=1)] = 3600,
    secret: Annotated[
        str | None,
        typer.Option(help="HS256 secret [default: the binding's jwt_secret in -c]", envvar=None),
    ] = None,
    binding: Annotated[
        str | None, typer.Option(help="Binding whose secret to use [default: the first]")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="JWT subject (when --sub is not given).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Mint an HS256 token for auth = "token" bindings (for testing, or back ends with no JWT
    library). A claim left out does not restrict.

    Example: partysub token -c partysub.toml --room lobby --sub 'chat:*' --pub chat:1 --ttl 600
    """
    from partysub.tokens import mint

    audience = issuer = None
    if secret is None:
        loaded = _load(config) if config is not None else None
        chosen = None
        if loaded is not None:
            chosen = next((b for b in loaded.bindings if binding in (None, b.name)), None)
        if chosen is None or chosen.auth.secret is None:
            _fail("no HS256 secret: give --secret, or -c with a binding that has jwt_secret", 2)
        secret = chosen.auth.secret
        audience, issuer = chosen.auth.audience, chosen.auth.issuer
    typer.echo(
        mint(
            secret,
            rooms=room,
            sub=sub,
            pub=pub,
            ttl=ttl,
            subject=subject,
            audience=audience,
            issuer=issuer,
        )
    )


@app.command("api-key")
def api_key() -> None:
    """Make a random API key for HTTP publishers, and the line that goes in the config.

    Example: partysub api-key
    """
    import secrets

    from partysubd.core.auth import hash_api_key

    key = secrets.token_urlsafe(32)
    typer.echo(f"key (give it to the publisher): {key}")
    typer.echo(f'config ([[pubsub]] api_keys):  "{hash_api_key(key)}"')


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate a config file: every error and warning with its file, key and line.

    Exits 1 when there is an error. Example: partysub config check -c partysub.toml
    """
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        for issue in exc.issues:
            typer.echo(str(issue))
        raise typer.Exit(1) from None
    for issue in loaded.warnings:
        typer.echo(str(issue))
    for binding in loaded.bindings:
        layout = binding.layout
        spread = ", ".join(f"{loc}: {len(ids)}" for loc, ids in layout.nodes_by_location.items())
        typer.echo(
            f"{binding.name}: parties {', '.join(binding.party_names)}; "
            f"{len(layout.node_ids)} nodes per room ({spread})"
        )
    if loaded.cluster is not None:
        c = loaded.cluster
        typer.echo(
            f"cluster: Redis in {c.mode} mode, name {c.name or '<host>-<pid>'}, "
            f"location {c.location or '-'}; heartbeat every {c.heartbeat_seconds:g}s, "
            f"gone after {c.dead_after_seconds:g}s"
        )
    typer.echo(f"{loaded.source}: OK")


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration as TOML, every setting with its value.

    The output is itself a config: secrets show as <set>, a secret from a
    file by its file. Example: partysub config show -c partysub.toml
    """
    typer.echo(show(_load(config)), nl=False)


def run() -> None:
    """The console script, the one door every outcome leaves by: usage mistakes as one
    line (not click's boxed report), Ctrl-C as a quiet exit 130 however deep in
    trio's task groups it lands, and a bug as one line too (the traceback only
    with PARTYSUB_DEBUG=1): a person never sees a traceback."""
    try:
        result = app(standalone_mode=False, prog_name="partysub")
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:  # click's UsageError, BadParameter, ...
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        typer.echo(f"partysub: {message}{hint}", err=True)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except BaseException as exc:
        raise SystemExit(_exit_for(exc)) from None
    raise SystemExit(result if isinstance(result, int) else 0)


def _exit_for(exc: BaseException) -> int:
    """The exit status for an exception that reached the top, said in one line."""
    leaves = _leaves(exc)
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return 130
    exits = [leaf for leaf in leaves if isinstance(leaf, SystemExit)]
    if exits and len(exits) == len(leaves):
        code = exits[0].code
        return code if isinstance(code, int) else 1
    if os.environ.get("PARTYSUB_DEBUG"):
        traceback.print_exception(exc)
    first = next((leaf for leaf in leaves if not isinstance(leaf, KeyboardInterrupt)), exc)
    typer.echo(
        f"partysub: internal error: {type(first).__name__}: {first} "
        "(PARTYSUB_DEBUG=1 shows the traceback)",
        err=True,
    )
    return 1


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
