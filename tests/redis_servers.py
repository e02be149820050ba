"""Real Redis for the cluster tests: a server, a Sentinel, a three-primary Cluster."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from daemons import free_port, port_is_free


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
