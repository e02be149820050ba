"""The ``partysub`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from partysubd import __version__
from partysubd.config import Config, ConfigError, load_config

app = typer.Typer(
    name="partysub",
    help="A self-hosted pub/sub daemon for PartySocket clients.",
    no_args_is_help=True,
    add_completion=True,
)
config_app = typer.Typer(help="Check and show configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (TOML). Without it, the built-in default: binding PubSub on "
        "127.0.0.1:1999.",
        dir_okay=False,
    ),
]


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


def _load(config: Path | None) -> Config:
    try:
        return load_config(config)
    except ConfigError as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        errors = sum(1 for i in exc.issues if i.severity == "error")
        typer.echo(f"{errors} error(s) in the configuration; not starting.", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (overrides the config).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (overrides the config); 0 picks a free one.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error.", case_sensitive=False)
    ] = "info",
) -> None:
    """Run the daemon in the foreground until SIGINT or SIGTERM.

    Example: partysub serve -c /etc/partysub/partysub.toml --port 8080
    """
    from dataclasses import replace

    from partysubd.daemon import run, setup_logging

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    loaded = _load(config)
    server = loaded.server
    if host is not None:
        server = replace(server, host=host)
    if port is not None:
        if not 0 <= port <= 65535:
            raise typer.BadParameter("must be from 0 to 65535", param_hint="--port")
        server = replace(server, port=port)
    setup_logging(log_level)
    try:
        run(replace(loaded, server=server))
    except OSError as exc:
        typer.echo(
            f"partysub: cannot listen on {server.host}:{server.port}: {exc.strerror}", err=True
        )
        raise typer.Exit(1) from None


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
    typer.echo(f"{loaded.source}: OK")
