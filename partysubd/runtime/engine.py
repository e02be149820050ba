"""The public listener: non-blocking sockets on trio, feeding sessions.

This is the I/O edge and nothing more: it accepts, reads bytes into sessions,
writes what their outboxes hold, runs their timers, and closes transports.
Why it looks like this (see docs/architecture.md and PERFORMANCE.md): a
delivery never awaits; one flush per scheduler tick makes one ``send()`` per
connection for everything queued since the last tick; only a connection whose
kernel buffer is full gets a task that waits for it to drain.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time

import trio

from ..core import faults
from ..core.config import ServerSettings
from ..core.hub import Hub
from ..core.registry import Subscriber
from ..core.session import Session
from .tls import TLSLayer

log = logging.getLogger("partysubd.engine")

RECV_SIZE = 65536
# Bytes a reader takes in one turn before it lets every other task run: one
# connection that streams cannot hold the loop (the session bounds the work
# per call the same way, in messages and deliveries).
TURN_BYTES = 4 * RECV_SIZE
DRAIN_STEP = 0.1  # seconds between batches of closes when draining
ACCEPT_ERRORS_TO_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Transport:
    """What carries one connection's session: its socket, and its TLS layer if any.

    The session (core) is the connection's protocol and state; the transport
    is the engine's side of it. ``Engine.transports`` finds one by its session."""

    __slots__ = ("closed", "finished_seen", "session", "sock", "tls", "writing")

    def __init__(self, session: Session, sock: socket.socket, tls: TLSLayer | None) -> None:
        self.session = session
        self.sock = sock
        self.tls = tls
        self.writing = False  # a drain task owns the writes
        self.closed = False
        self.finished_seen: float | None = None

    @property
    def unsent(self) -> bool:
        return bool(self.session.out.size or (self.tls is not None and self.tls.pending))

    @property
    def name(self) -> str:
        """Who it is in a report: the connection id, or the peer before it has one."""
        return self.session.id or self.session.peer


class ListenError(Exception):
    """A listener cannot be opened; the message names the address and why, in one line."""


def open_listener(
    host: str, port: int, backlog: int, reuse_port: bool = False, what: str = "public listener"
) -> socket.socket:
    """A bound, listening, non-blocking socket, or ListenError naming the address."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as exc:
        raise ListenError(f"cannot listen on {where} ({what}): {_reason(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except (OSError, OverflowError) as exc:
        sock.close()
        raise ListenError(f"cannot listen on {where} ({what}): {_reason(exc)}") from None
    return sock


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Engine:
    def __init__(
        self,
        hub: Hub,
        settings: ServerSettings,
        listener: socket.socket,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.listener = listener
        # New connections speak TLS with this context; a reload may replace it.
        self.tls_context = tls_context
        # By session: the flush queue lists sessions, the engine writes to sockets.
        self.transports: dict[Subscriber, Transport] = {}
        self.accepting = True
        self._flush_wanted = trio.Event()
        self._all_closed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._accept_scope = trio.CancelScope()
        self.sweep_interval = _sweep_interval(settings)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.hub.wall_offset = time.time() - trio.current_time()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._flush_loop)
            nursery.start_soon(self._sweep_loop)
            nursery.start_soon(self._accept_loop, nursery)
            task_status.started()

    def apply_settings(self, settings: ServerSettings) -> None:
        """After a reload: new limits and timers for every open connection."""
        self.settings = settings
        for conn in self.transports.values():
            conn.session.apply_settings(settings)
        self.sweep_interval = _sweep_interval(settings)

    def stop_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            self._accept_scope.cancel()
            trio.lowlevel.notify_closing(self.listener)
            self.listener.close()

    async def shutdown(self, code: int, reason: str, window: float, timeout: float) -> None:
        """Drain: stop accepting, close connections in paced batches over ``window``
        seconds (so reconnecting clients do not all come back at once), give
        them ``timeout`` more to answer, then drop whatever is left."""
        self.stop_accepting()
        steps = max(1, int(window / DRAIN_STEP))
        sessions = sorted((c.session for c in self.transports.values()), key=lambda s: s.created)
        per_step = max(1, -(-len(sessions) // steps))  # ceiling
        for start in range(0, len(sessions), per_step):
            now = trio.current_time()
            for session in sessions[start : start + per_step]:
                session.close(code, reason, now)
            self._flush()
            if start + per_step < len(sessions):
                await trio.sleep(DRAIN_STEP)
        with trio.move_on_after(timeout):
            if self.transports:
                await self._all_closed.wait()
        for conn in list(self.transports.values()):
            self._close(conn)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # --- accepting and reading ---------------------------------------------

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        listener = self.listener
        with self._accept_scope:
            while True:
                await trio.lowlevel.wait_readable(listener)
                while True:
                    try:
                        sock, address = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EBADF, errno.EINVAL):
                            return  # the listener was closed (shutting down)
                        if exc.errno not in ACCEPT_ERRORS_TO_RETRY:
                            continue  # that connection is gone (ECONNABORTED, EPROTO...)
                        log.warning("cannot accept a connection: %s; retrying shortly", exc)
                        await trio.sleep(0.1)
                        break
                    sock.setblocking(False)
                    if sock.family != socket.AF_UNIX:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    tls = TLSLayer(self.tls_context) if self.tls_context is not None else None
                    session = Session(self.hub, self.settings, _peer(address), trio.current_time())
                    conn = self.transports[session] = Transport(session, sock, tls)
                    nursery.start_soon(self._read_loop, conn)

    async def _read_loop(self, conn: Transport) -> None:
        """Read and feed one connection, yielding after a bounded amount of work.

        Whatever the session raises ends this connection alone (1011, or a 500
        to an unanswered request): reported, counted, and never the engine's."""
        sock = conn.sock
        session = conn.session
        flush = self.hub.flush
        budget = TURN_BYTES
        try:
            while not conn.closed and not session.finished:
                if session.backlog:
                    # The session stopped at its own bound: let everyone run first.
                    await trio.lowlevel.checkpoint()
                    budget = TURN_BYTES
                    self._feed(conn, None)
                    continue
                if budget <= 0:
                    await trio.lowlevel.checkpoint()
                    budget = TURN_BYTES
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    budget = TURN_BYTES
                    continue
                if not data:
                    session.eof_received()
                    self.wake()
                    return
                budget -= len(data)
                if conn.tls is not None:
                    data, eof = conn.tls.receive(data)
                    if conn.tls.pending and not conn.writing:
                        self._write(conn)  # handshake records, alerts
                    if eof:
                        session.eof_received()
                        self.wake()
                        return
                    if not data:
                        continue
                self._feed(conn, data)
                if flush:
                    self.wake()
        except (OSError, ssl.SSLError, trio.ClosedResourceError):
            self._close(conn)
        except Exception:
            faults.report(self.hub.events, "read", conn.name)
            self._close(conn)

    def _feed(self, conn: Transport, data: bytes | None) -> None:
        """Give the session bytes (or let it go on with what it holds), containing its faults."""
        session = conn.session
        now = trio.current_time()
        try:
            if data is None:
                session.process(now)
            else:
                session.data_received(data, now)
        except Exception:
            faults.report(self.hub.events, "session", conn.name)
            session.backlog = False
            try:
                session.fail(now)
            except Exception:
                faults.report(self.hub.events, "session", conn.name)
                session.abort()
        if self.hub.flush:
            self.wake()

    # --- writing -----------------------------------------------------------------

    def wake(self) -> None:
        """Have the flusher run on the next tick."""
        self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._flush_wanted = trio.Event()
            self._flush()

    def _flush(self) -> None:
        """Hand every dirty outbox to the kernel: one system call per connection.

        The common case (everything fits in the kernel's buffer) is inlined;
        this loop runs once per connection per tick under load.
        """
        now: float | None = None
        transports = self.transports
        for subscriber in self.hub.flush.take():
            conn = transports.get(subscriber)
            if conn is None:
                continue  # closed since it was queued
            session = conn.session
            try:
                out = session.out
                if out.overflowed and not session.finished and session.close_deadline is None:
                    if now is None:
                        now = trio.current_time()
                    session.overflowed(now)
                out.scheduled = False
                if conn.closed or conn.writing:
                    continue
                if conn.tls is not None:
                    if self._write(conn) and session.finished and not conn.unsent:
                        self._close(conn)
                    continue
                if out.size:
                    chunks = out.chunks
                    try:
                        if len(chunks) == 1 and not out.offset:
                            sent = conn.sock.send(chunks[0])
                        else:
                            sent = conn.sock.sendmsg(out.pending())
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        self._close(conn)
                        continue
                    out.consumed(sent)
                    if out.size:
                        self._start_drain(conn)
                        continue
                if session.finished:
                    self._close(conn)
            except Exception:
                # Its outbox cannot be trusted: the connection is dropped.
                faults.report(self.hub.events, "flush", conn.name)
                self._close(conn)
        self.hub.flush.flushed(trio.current_time() if now is None else now)

    def _start_drain(self, conn: Transport) -> None:
        if self._nursery is not None:
            conn.writing = True
            self._nursery.start_soon(self._drain, conn)

    def _write(self, conn: Transport) -> bool:
        """Send what the kernel takes now (the TLS path); False when the connection is gone."""
        try:
            _send_some(conn)
        except (OSError, ssl.SSLError):
            self._close(conn)
            return False
        if conn.unsent:
            self._start_drain(conn)
        return True

    async def _drain(self, conn: Transport) -> None:
        """Wait for a full kernel buffer to empty, then keep writing until the outbox is."""
        try:
            while conn.unsent and not conn.closed:
                await trio.lowlevel.wait_writable(conn.sock)
                _send_some(conn)
        except (OSError, ssl.SSLError, trio.ClosedResourceError):
            self._close(conn)
            return
        except Exception:
            faults.report(self.hub.events, "flush", conn.name)
            self._close(conn)
            return
        finally:
            conn.writing = False
        if conn.session.finished and not conn.closed:
            self._close(conn)

    # --- timers and closing ------------------------------------------------------

    async def _sweep_loop(self) -> None:
        hub = self.hub
        while True:
            await trio.sleep(self.sweep_interval)
            now = trio.current_time()
            hub.wall_offset = time.time() - now
            try:
                hub.registry.expire(now)
            except Exception:
                faults.report(hub.events, "timers", "expiry")
            close_timeout = self.settings.close_timeout
            for conn in list(self.transports.values()):
                session = conn.session
                try:
                    session.tick(now)
                except Exception:
                    faults.report(hub.events, "timers", conn.name)
                    session.abort()
                if session.finished:
                    if conn.finished_seen is None:
                        conn.finished_seen = now
                    elif now - conn.finished_seen >= close_timeout:
                        self._close(conn)
            if hub.flush:
                self._flush()

    def _close(self, conn: Transport) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            conn.session.connection_lost()
        except Exception:
            faults.report(self.hub.events, "close", conn.name)
        self.transports.pop(conn.session, None)
        trio.lowlevel.notify_closing(conn.sock)
        conn.sock.close()
        if not self.transports and not self.accepting:
            self._all_closed.set()


def _sweep_interval(settings: ServerSettings) -> float:
    """Often enough for the shortest timer to fire on time, at most twice a second."""
    timers = [settings.handshake_timeout, settings.ping_timeout, settings.close_timeout]
    if settings.ping_interval > 0:
        timers.append(settings.ping_interval)
    return max(0.05, min(1.0, *timers) / 2)


def _send_some(conn: Transport) -> None:
    """One non-blocking send of the outbox's head; raises OSError when the peer is gone."""
    out = conn.session.out
    tls = conn.tls
    if tls is not None:
        # Encrypt more only once the last ciphertext is out: the outbox (and
        # its cap) keeps holding what the peer has not taken.
        if not tls.pending and out.size:
            plaintext = b"".join(out.pending())
            tls.send(plaintext)
            out.consumed(len(plaintext))
        if tls.pending:
            try:
                sent = conn.sock.send(tls.pending)
            except BlockingIOError:
                return
            tls.pending = tls.pending[sent:]
        return
    try:
        if out.offset == 0 and len(out.chunks) == 1:
            sent = conn.sock.send(out.chunks[0])
        else:
            sent = conn.sock.sendmsg(out.pending())
    except BlockingIOError:
        return
    out.consumed(sent)


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) or "unix"
