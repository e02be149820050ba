"""Running the daemon: listener, engine and signals in one trio.run."""

from __future__ import annotations

import logging
import signal
import sys

import trio

from . import __version__
from .config import Config
from .engine import Engine, open_listener
from .rooms import Hub

log = logging.getLogger("partysubd")

_LEVEL_PREFIX = {
    logging.DEBUG: "<7>",
    logging.INFO: "<6>",
    logging.WARNING: "<4>",
    logging.ERROR: "<3>",
    logging.CRITICAL: "<2>",
}


class _JournalFormatter(logging.Formatter):
    """One line per event with a syslog level prefix, which journald reads as the priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = _LEVEL_PREFIX.get(record.levelno, "<6>")
        return f"{prefix}{record.levelname.lower()} {record.name}: {super().format(record)}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


async def serve(config: Config) -> None:
    settings = config.server
    listener = open_listener(settings.host, settings.port, settings.backlog)
    hub = Hub(config)
    engine = Engine(hub, listener)
    for issue in config.warnings:
        log.warning("%s", issue)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.serve)
            host, port = engine.address
            parties = ", ".join(
                f"{b.name} (/parties/{'|'.join(b.party_names)}/<room>, "
                f"{len(b.layout.node_ids)} nodes)"
                for b in config.bindings
            )
            log.info(
                "partysub %s listening on %s:%d from %s; parties: %s",
                __version__,
                host,
                port,
                config.source,
                parties,
            )
            async for signum in signals:
                log.info(
                    "%s: closing %d connections and stopping",
                    signal.Signals(signum).name,
                    len(engine.conns),
                )
                break
            await engine.shutdown(
                settings.shutdown_close_code, "server shutting down", settings.shutdown_timeout
            )
            nursery.cancel_scope.cancel()
    log.info("stopped")


def run(config: Config) -> None:
    trio.run(serve, config)
