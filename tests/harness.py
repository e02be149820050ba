"""Real parts for end-to-end tests: the daemon as a subprocess, partysocket on Node.

Nothing here fakes the daemon or the client: ``Daemon`` runs ``partysub
serve`` exactly as an operator would, and ``Clients`` drives genuine
PartySocket instances (tests/js/client.mjs) over a line protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TESTS = Path(__file__).parent
JS = TESTS / "js"
# What a daemon's log holds only when something went wrong inside it: a
# traceback, a fault the daemon contained, an exception Python could not raise.
TROUBLE = re.compile(r"Traceback \(most recent call last\)|internal error in |Exception ignored in")


class Daemon:
    """``partysub serve`` on a free port, with its log collected."""

    def __init__(self, config_text: str | None, tmp: Path, *args: str) -> None:
        command = [
            sys.executable,
            "-m",
            "partysub_cli",
            "serve",
            "--port",
            "0",
            "--admin-listen",
            "127.0.0.1:0",
            *args,
        ]
        if config_text is not None:
            path = tmp / "partysub.toml"
            path.write_text(config_text)
            command += ["-c", str(path)]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=TESTS.parent,
        )
        self.lines: list[str] = []
        # Log lines matching TROUBLE that the test expects (patterns); any other
        # fails the test when the daemon is stopped (conftest's start_daemon).
        self.expected_trouble: list[str] = []
        self._eof = False
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for_log(r"listening on ([\d.]+):(\d+)", timeout=15)
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        assert match
        self.host = match.group(1)
        self.port = int(match.group(2))
        admin = re.search(r"control plane (\S+);", line)
        self.admin = admin.group(1) if admin else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self._eof = True
            self._seen.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"no log line matching {pattern!r}; log:\n" + "\n".join(self.lines)
                    )
                self._seen.wait(min(left, 0.2))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def expect_trouble(self, pattern: str) -> None:
        """This test provokes log lines with tracebacks matching ``pattern``."""
        self.expected_trouble.append(pattern)

    def unexpected_trouble(self) -> list[str]:
        """Log lines with a traceback or a contained fault that the test did not expect."""
        with self._seen:
            lines = list(self.lines)
        return [
            line
            for line in lines
            if TROUBLE.search(line) and not any(re.search(p, line) for p in self.expected_trouble)
        ]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        with self._seen:  # the log's last lines, read to its end
            self._seen.wait_for(lambda: self._eof, timeout=5)
        return code

    def post(
        self,
        path: str,
        body: bytes | str | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(
            f"http://{self.address}{path}", data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)


def node_available() -> bool:
    return shutil.which("node") is not None and (JS / "node_modules" / "partysocket").is_dir()


class Clients:
    """One Node process holding any number of named PartySocket clients."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.proc = subprocess.Popen(
            ["node", str(JS / "client.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            cwd=JS,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []
        self.connected: list[str] = []
        self._requests = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def command(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def connect(
        self,
        id: str,
        room: str = "default",
        party: str = "pubsub",
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> None:
        self.connected.append(id)
        self.command(
            "connect",
            id=id,
            host=self.daemon.address,
            party=party,
            room=room,
            query=query,
            headers=headers,
            **extra,
        )
        if wait:
            self.expect(lambda e: e["event"] == "open" and e["id"] == id)

    def send(self, id: str, data: Any, binary: bool = False, **extra: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        self.command("send", id=id, data=text, binary=binary, **extra)

    def close(self, id: str) -> None:
        self.command("close", id=id)

    def fetch(
        self, room: str, init: dict[str, Any], party: str = "pubsub", **extra: Any
    ) -> dict[str, Any]:
        self._requests += 1
        req = self._requests
        self.command(
            "fetch", req=req, host=self.daemon.address, party=party, room=room, init=init, **extra
        )
        return self.expect(lambda e: e["event"] == "fetch" and e["req"] == req)

    def sync(self) -> None:
        """Wait until the client process has handled every command sent so far."""
        self._requests += 1
        req = self._requests
        self.command("ping", req=req)
        self.expect(lambda e: e["event"] == "pong" and e["req"] == req)

    def expect(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        for i, event in enumerate(self.backlog):
            if match(event):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected event not seen; unmatched: {self.backlog[-20:]}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event["event"] == "failed":
                raise AssertionError(f"client command failed: {event}")
            if match(event):
                return event
            self.backlog.append(event)

    def message(self, id: str, timeout: float = 10) -> Any:
        """The next message client ``id`` received, JSON-decoded."""
        event = self.expect(lambda e: e["event"] == "message" and e["id"] == id, timeout)
        return json.loads(event["data"])

    def messages(self, id: str, count: int, timeout: float = 10) -> list[Any]:
        return [self.message(id, timeout) for _ in range(count)]

    def no_message(self, id: str, wait: float = 0.3) -> None:
        """Assert that ``id`` receives nothing within ``wait`` seconds."""
        time.sleep(wait)
        self.sync()
        while True:
            try:
                self.backlog.append(self.events.get_nowait())
            except queue.Empty:
                break
        got = [e for e in self.backlog if e["event"] == "message" and e["id"] == id]
        assert not got, f"{id} received unexpected messages: {got}"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def upgrade_request(path: str, headers: str = "") -> bytes:
    """A WebSocket upgrade request for ``path`` (the RFC's example key), as bytes."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{headers}\r\n"
    ).encode()


class RawClient:
    """A hand-driven TCP client for what no well-behaved client library will send."""

    def __init__(self, daemon: Daemon) -> None:
        self.sock = socket.create_connection((daemon.host, daemon.port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def upgrade(self, path: str = "/parties/pubsub/raw") -> bytes:
        """Open a WebSocket by hand; returns the response head."""
        self.send(upgrade_request(path))
        head = self.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        return head

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_all(self, timeout: float = 10) -> bytes:
        """Everything until the server closes the connection."""
        self.sock.settimeout(timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.buffer += chunk
        data, self.buffer = self.buffer, b""
        return data

    def close_frame(self, timeout: float = 10) -> tuple[int, str]:
        """Read frames until the server's close frame; its code and reason."""
        from wsproto.frame_protocol import FrameProtocol, Opcode

        proto = FrameProtocol(client=True, extensions=[])
        self.sock.settimeout(timeout)
        data, self.buffer = self.buffer, b""
        while True:
            proto.receive_bytes(data)
            for frame in proto.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload  # type: ignore[misc]
                    return int(code), str(reason)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise AssertionError("the server closed without a close frame")

    def close(self) -> None:
        self.sock.close()


def masked_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame with any bits we like (masking key of zeros)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


class RedisServer:
    """A real redis-server on a free loopback port, with no persistence.

    ``stop`` and ``start`` again keep the port, so a test can take Redis away
    from running daemons and give it back (empty, as after a crash).
    """

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError(
                "these tests need redis-server (Debian: apt-get install redis-server)"
            )
        self.port = port or free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []
        self.password: str | None = None
        # (certificate, key): TLS only, the certificate its own CA.
        self.tls: tuple[Path, Path] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}127.0.0.1:{self.port}"

    def _security(self) -> list[str]:
        args = ["--requirepass", self.password] if self.password else []
        if self.tls is not None:
            cert, key = (str(path) for path in self.tls)
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert]
            args += ["--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]
        return args

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                *self._security(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *args: str) -> str:
        options = ["-p", str(self.port)]
        if self.password:
            options += ["-a", self.password, "--no-auth-warning"]
        if self.tls is not None:
            options += ["--tls", "--cacert", str(self.tls[0])]
        done = subprocess.run(
            ["redis-cli", *options, *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` (PUBSUB NUMSUB)."""
        lines = self.cli("PUBSUB", "NUMSUB", channel).splitlines()
        return int(lines[1]) if len(lines) == 2 else 0


class RedisSentinel:
    """A real Redis Sentinel (redis-server --sentinel) watching ``primary`` as "mymaster"."""

    def __init__(self, tmp: Path, primary: RedisServer) -> None:
        self.primary = primary
        self.port = free_port()
        self.conf = tmp / "sentinel.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisSentinel:
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.primary.port} 1\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            done = subprocess.run(
                [
                    "redis-cli",
                    "-p",
                    str(self.port),
                    "SENTINEL",
                    "get-master-addr-by-name",
                    "mymaster",
                ],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if str(self.primary.port) in done.stdout:
                return self
            if time.monotonic() > deadline:
                raise AssertionError("redis sentinel did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is a port too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535 and port_is_free(port + 10000):
            return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisCluster:
    """A real three-primary Redis Cluster on free loopback ports (no replicas)."""

    def __init__(self, tmp: Path) -> None:
        self.nodes = [RedisServer(tmp / f"node{i}", _cluster_port()) for i in range(3)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 20
        while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > deadline:
                raise AssertionError("the Redis Cluster did not come up")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def shard_channels(self) -> list[list[str]]:
        """The sharded pub/sub channels subscribed on each primary."""
        return [n.cli("PUBSUB", "SHARDCHANNELS").split() for n in self.nodes]


class Terminal:
    """A command in a real pseudo-terminal, as a person runs it: Ctrl-C is a byte typed
    at the keyboard (the terminal turns it into SIGINT), and what the person sees is
    stdout and stderr together, as the terminal shows them."""

    def __init__(self, *argv: str, env: dict[str, str] | None = None) -> None:
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # the child: the terminal is its controlling terminal
            os.chdir(TESTS.parent)
            os.execvpe(argv[0], list(argv), {**os.environ, **(env or {})})
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None

    def read_until(self, pattern: str, timeout: float = 15) -> str:
        """Everything shown so far, once ``pattern`` is in it."""
        import select

        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} never shown; the terminal shows:\n{self.text}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.output += chunk
        if not re.search(pattern, self.text):
            raise AssertionError(f"{pattern!r} never shown; the terminal shows:\n{self.text}")
        return self.text

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float = 15) -> int:
        """The exit status (128 + signal when killed), reading what is left to show."""
        import select

        deadline = time.monotonic() + timeout
        while self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
                if self.status < 0:
                    self.status = 128 - self.status
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"still running after {timeout}s:\n{self.text}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 65536)
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        os.close(self.fd)
        return self.status
