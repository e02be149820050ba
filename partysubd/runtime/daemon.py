"""The daemon's life: listeners up, systemd told, signals handled, drained on the way out.

One ``trio.run`` holds the public engine (our own sockets, for speed) and the
control plane (hypercorn, for convenience). SIGHUP reloads the config,
SIGTERM/SIGINT drain and stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .. import __version__
from ..cluster.link import ClusterLink
from ..control import views
from ..control.admin import AdminApp, AdminState
from ..core.config import AdminSettings, Config, ConfigError, Overrides
from ..core.hub import Hub
from ..core.reload import plan_reload
from .config_file import load_config
from .engine import Engine, ListenError, open_listener
from .logs import set_level
from .sdnotify import Notifier, watchdog_interval
from .tls import server_context

log = logging.getLogger("partysubd")

STATUS_INTERVAL = 5.0


class StartupError(Exception):
    """The daemon cannot start; the message says why, in one line."""


class Daemon:
    def __init__(self, config: Config, path: Path | None, overrides: Overrides) -> None:
        """``config`` was loaded with ``overrides`` merged in; a reload merges them again."""
        self.path = path
        self.overrides = overrides
        self.config = config
        cluster = self.config.cluster
        self.link: ClusterLink | None = None
        if cluster is not None:
            self.link = ClusterLink(
                cluster, cluster.name or f"{socket.gethostname()}-{os.getpid()}"
            )
        self.hub = Hub.build(self.config, cluster=self.link)
        if self.link is not None:
            self.link.attach(self.hub, self.config.server)
        self.notifier = Notifier.from_environment()
        self.state = AdminState(
            hub=self.hub,
            version=__version__,
            started=0.0,
            clock=lambda: views.Clock(trio.current_time(), time.time()),
            token=self.config.admin.token,
            source=self.config.source,
        )
        self.engine: Engine | None = None

    def status(self) -> str:
        totals = views.totals(self.hub)
        return (
            f"{totals['connections']} connections in {totals['rooms']} rooms; "
            f"{totals['messages_in']} published, {totals['messages_out']} delivered"
        )

    async def run(
        self,
        stop: trio.Event | None = None,
        *,
        task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until SIGINT/SIGTERM (SIGHUP reloads), or until ``stop`` is set when given:
        an embedded daemon (partysub.testing, in a thread) cannot take signals."""
        settings = self.config.server
        set_level(settings.log_level)
        tls_context = None
        if settings.tls_files is not None:
            try:
                tls_context = server_context(*settings.tls_files)
            except (OSError, ssl.SSLError) as exc:
                raise StartupError(f"cannot use the TLS certificate: {exc}") from None
        try:
            listener = open_listener(
                settings.host, settings.port, settings.backlog, settings.reuse_port
            )
            admin_socket = open_admin_socket(self.config.admin)
        except ListenError as exc:
            raise StartupError(str(exc)) from None
        engine = self.engine = Engine(self.hub, settings, listener, tls_context)
        self._admin_settings(self.config.admin)
        if admin_socket is not None and admin_socket.family != socket.AF_UNIX:
            host, self.state.port = admin_socket.getsockname()[:2]
            self.state.listen_host = str(host).lower()
        self.state.wake = engine.wake
        self.state.tasks = lambda: trio.lowlevel.current_statistics().tasks_living
        self.state.started = trio.current_time()
        for issue in self.config.warnings:
            log.warning("%s", issue)
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        receiver = (
            trio.open_signal_receiver(*signals) if stop is None else contextlib.nullcontext(None)
        )
        with receiver as signal_stream:
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.serve)
                host, port = engine.address
                scheme = "https" if tls_context is not None else "http"
                self.state.listeners["public"] = f"{scheme}://{host}:{port}"
                link = self.link
                if link is not None:
                    self.state.cluster = link
                    nursery.start_soon(link.run, self.state.listeners["public"], engine.wake)
                if admin_socket is not None:
                    binds = await nursery.start(serve_admin, AdminApp(self.state), admin_socket)
                    self.state.listeners["admin"] = binds[0]
                log.info(
                    "partysub %s listening on %s:%d from %s; control plane %s; parties: %s",
                    __version__,
                    host,
                    port,
                    self.config.source,
                    self.state.listeners.get("admin", "off"),
                    ", ".join(
                        f"{b.name} (/parties/{'|'.join(b.party_names)}/<room>, "
                        f"{len(b.layout.node_ids)} nodes)"
                        for b in self.config.bindings
                    ),
                )
                if link is not None:
                    log.info(
                        "cluster: this daemon is %s (location %r), Redis in %s mode",
                        link.name,
                        link.settings.location,
                        link.settings.mode,
                    )
                self.notifier.ready(self.status())
                nursery.start_soon(self._report_status)
                task_status.started(dict(self.state.listeners))
                if signal_stream is None:
                    assert stop is not None
                    await stop.wait()
                    why = "stop requested"
                else:
                    why = await self._until_stop_signal(signal_stream)
                log.info(
                    "%s: draining %d connections over %gs, then stopping",
                    why,
                    len(engine.transports),
                    self.config.server.drain_seconds,
                )
                self.state.draining = True
                self.notifier.stopping(f"draining {len(engine.transports)} connections")
                settings = self.config.server
                await engine.shutdown(
                    settings.shutdown_close_code,
                    "server shutting down",
                    settings.drain_seconds,
                    settings.shutdown_timeout,
                )
                if link is not None:
                    await link.leave()
                nursery.cancel_scope.cancel()
        log.info("stopped")

    async def _until_stop_signal(self, signals: AsyncIterator[int]) -> str:
        """Reload on each SIGHUP; the name of the signal that says stop."""
        async for signum in signals:
            if signum == signal.SIGHUP:
                self.reload()
                continue
            return signal.Signals(signum).name
        return "signals closed"

    def reload(self) -> None:
        """Read the config file again and apply what can change live."""
        self.notifier.reloading()
        try:
            new = load_config(self.path, self.overrides)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("reload: %s", issue)
            log.error("reload refused: the configuration has errors; the old one stays")
            self.notifier.reloaded(self.status())
            return
        plan = plan_reload(self.config, new)
        tls_context = None
        if plan.config.server.tls_files is not None:
            # Re-read even unchanged paths: a renewed certificate keeps its file name.
            try:
                tls_context = server_context(*plan.config.server.tls_files)
            except (OSError, ssl.SSLError) as exc:
                log.error("reload refused: cannot load the TLS certificate: %s", exc)
                self.notifier.reloaded(self.status())
                return
        self.config = plan.config
        self.hub.registry.apply(plan.config)
        if self.link is not None:
            self.link.apply_settings(plan.config.server)
        if self.engine is not None:
            self.engine.apply_settings(plan.config.server)
            if tls_context is not None:
                self.engine.tls_context = tls_context
                log.info("reload: TLS certificate loaded for new connections")
        self._admin_settings(plan.config.admin)
        set_level(plan.config.server.log_level)
        for issue in plan.config.warnings:
            log.warning("reload: %s", issue)
        for change in plan.applied:
            log.info("reload: %s", change)
        for kept in plan.kept:
            log.warning("reload: cannot apply %s", kept)
        if not plan.applied and not plan.kept:
            log.info("reload: nothing changed")
        self.notifier.reloaded(self.status())

    def _admin_settings(self, admin: AdminSettings) -> None:
        self.state.token = admin.token
        self.state.allowed_hosts = admin.allowed_hosts
        self.state.allowed_origins = admin.allowed_origins

    async def _report_status(self) -> None:
        """STATUS= for `systemctl status`, and WATCHDOG=1 if systemd asked for it."""
        watchdog = watchdog_interval()
        interval = min(STATUS_INTERVAL, watchdog) if watchdog else STATUS_INTERVAL
        while True:
            await trio.sleep(interval)
            if watchdog:
                self.notifier.watchdog()
            self.notifier.status(self.status())


def open_admin_socket(settings: AdminSettings) -> socket.socket | None:
    """The control plane's listening socket, opened here so that a busy or bad
    address is a one-line ListenError naming it (hypercorn gets the socket)."""
    if not settings.enabled:
        return None
    path = settings.unix_path
    if path is None:
        host, port = settings.host_port()
        return open_listener(host, port, 100, what="control plane")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)  # a stale socket of an earlier run
        sock.bind(path)
        sock.listen(100)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on unix:{path} (control plane): {exc.strerror or exc}"
        ) from None
    return sock


async def serve_admin(
    app: AdminApp,
    sock: socket.socket,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("partysubd.admin")
    config.graceful_timeout = 1.0
    await hypercorn_serve(app, config, task_status=task_status)


def run(config: Config, path: Path | None, overrides: Overrides) -> None:
    trio.run(Daemon(config, path, overrides).run)
