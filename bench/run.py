"""Fan-out benchmark: the daemon on CPU 0, the Node `ws` load generator on CPU 1.

    python bench/run.py                 # everything below, median of RUNS=3 runs each
    python bench/run.py burst 100       # delivered/s at S=100
    python bench/run.py paced 10000     # p99 latency at a paced 10,000 deliveries/s
    python bench/run.py idle 10000      # RSS per idle connection, one publish to all
    python bench/run.py guarantees 100  # burst with a 1000-message history and ids=1
    python bench/run.py tls 100         # burst over wss:// (TLS on the public listener)
    python bench/run.py cluster 100     # one daemon alone, then two sharing the port via Redis

Prints figures, never pass/fail: this is not a test. Needs `npm ci --prefix bench`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from partysubd.core.config import DEFAULT_BINDING_TOML

BENCH = Path(__file__).parent
ROOT = BENCH.parent
SECONDS = 5
WINDOW = 5000  # deliveries in flight at most (as in PERFORMANCE.md)

CONFIG = (
    """
[server]
host = "127.0.0.1"
port = 0
backlog = 8192
ping_interval = 0

"""
    + DEFAULT_BINDING_TOML
)


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_daemon(
    config: str = CONFIG, cpu: int = 0, *args: str
) -> tuple[subprocess.Popen[str], int]:
    path = Path(tempfile.mkdtemp()) / "bench.toml"
    path.write_text(config)
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(cpu),
            sys.executable,
            "-m",
            "partysub_cli",
            "serve",
            "-c",
            str(path),
            "--log-level",
            "info",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            # Keep reading its log so a full pipe never stalls the daemon.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(match.group(1))
    raise RuntimeError("daemon did not start")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(match.group(1))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_generator(proc: subprocess.Popen[str], *args: str) -> dict[str, object]:
    """Run the load generator; add the daemon's CPU time per delivery to its figures."""
    before = cpu_seconds(proc.pid)
    out = subprocess.run(generator(*args), capture_output=True, text=True, check=True)
    used = cpu_seconds(proc.pid) - before
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    delivered = int(result.pop("delivered_total"))  # type: ignore[call-overload]
    result["server_cpu_us_per_delivery"] = round(used / max(delivered, 1) * 1e6, 2)
    return result


def generator(*args: str, cpus: str = "1") -> list[str]:
    return ["taskset", "-c", cpus, "node", str(BENCH / "fanout.mjs"), *args]


# Issue 4's guarantees switched on: a 1000-message history and cursors in every frame.
GUARANTEES = CONFIG + '\n[[pubsub]]\nbinding = "PubSub"\nhistory_messages = 1000\n'


def tls_config() -> str:
    """CONFIG with TLS on, using a fresh self-signed certificate (openssl)."""
    directory = Path(tempfile.mkdtemp())
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return CONFIG.replace(
        "[server]",
        f'[server]\ntls_cert = "{directory / "cert.pem"}"\ntls_key = "{directory / "key.pem"}"',
    )


def burst(
    subscribers: int, window: int = WINDOW, guarantees: bool = False, tls: bool = False
) -> dict[str, object]:
    proc, port = start_daemon(GUARANTEES if guarantees else tls_config() if tls else CONFIG)
    if guarantees:
        os.environ["SUBSCRIBER_QUERY"] = "&ids=1"
    try:
        scheme = "wss" if tls else "ws"
        url = f"{scheme}://127.0.0.1:{port}/parties/pubsub/bench"
        result = run_generator(proc, "burst", url, str(subscribers), str(SECONDS), str(window))
        return {**result, "guarantees": guarantees, "tls": tls}
    finally:
        os.environ.pop("SUBSCRIBER_QUERY", None)
        proc.terminate()
        proc.wait()


def paced(rate: int, subscribers: int = 100) -> dict[str, object]:
    proc, port = start_daemon()
    try:
        url = f"ws://127.0.0.1:{port}/parties/pubsub/bench"
        return run_generator(proc, "paced", url, str(subscribers), str(SECONDS), str(rate))
    finally:
        proc.terminate()
        proc.wait()


def idle(connections: int) -> dict[str, object]:
    proc, port = start_daemon()
    try:
        time.sleep(0.5)
        before = rss_kb(proc.pid)
        url = f"ws://127.0.0.1:{port}/parties/pubsub/bench"
        gen = subprocess.Popen(
            generator("idle", url, str(connections)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert gen.stdout is not None and gen.stdin is not None
        connected = json.loads(gen.stdout.readline())
        time.sleep(1.0)
        after = rss_kb(proc.pid)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        result = json.loads(gen.stdout.readline())
        gen.wait()
        return {
            **result,
            "connected": connected["connected"],
            "rss_before_kb": before,
            "rss_after_kb": after,
            "kb_per_connection": round((after - before) / connections, 2),
        }
    finally:
        proc.terminate()
        proc.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cluster(subscribers: int, paced_rate: int = 0) -> dict[str, object]:
    """Two daemons, one per core, sharing one port (SO_REUSEPORT), joined through a
    redis-server; the load generator and Redis float over both cores. The kernel
    spreads the subscribers over the daemons, so about half the deliveries cross Redis."""
    redis_port, public_port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    config = CONFIG.replace("port = 0", f"port = {public_port}\nreuse_port = true") + (
        f'\n[cluster]\nredis_url = "redis://127.0.0.1:{redis_port}"\n'
    )
    daemons = []
    try:
        time.sleep(0.5)
        for cpu in (0, 1):
            name = f"bench{cpu}"
            daemons.append(
                start_daemon(config, cpu, "--cluster-name", name, "--admin-listen", "off")[0]
            )
        time.sleep(1.0)  # both joined
        url = f"ws://127.0.0.1:{public_port}/parties/pubsub/bench"
        if paced_rate:
            args = ("paced", url, str(subscribers), str(SECONDS), str(paced_rate))
        else:
            args = ("burst", url, str(subscribers), str(SECONDS), str(WINDOW))
        before = sum(cpu_seconds(d.pid) for d in daemons)
        out = subprocess.run(
            generator(*args, cpus="0,1"), capture_output=True, text=True, check=True
        )
        used = sum(cpu_seconds(d.pid) for d in daemons) - before
        result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
        delivered = int(result.pop("delivered_total"))  # type: ignore[call-overload]
        result["server_cpu_us_per_delivery"] = round(used / max(delivered, 1) * 1e6, 2)
        return {**result, "daemons": 2}
    finally:
        for proc in daemons:
            proc.terminate()
            proc.wait()
        redis.terminate()
        redis.wait()


def median_of(runs: int, measure: Callable[[], dict[str, object]], key: str) -> None:
    """Print each run, then the run with the median ``key``: this machine is noisy."""
    results = []
    for _ in range(runs):
        result = measure()
        print("  run", json.dumps(result), flush=True)
        results.append(result)
    results.sort(key=lambda r: float(r[key]))  # type: ignore[arg-type]
    print(json.dumps({"median_of": runs, **results[len(results) // 2]}), flush=True)


def main(argv: list[str]) -> None:
    raise_fd_limit()
    runs = int(os.environ.get("RUNS", "3"))
    if not argv:
        for s in (10, 100, 1000):
            median_of(runs, functools.partial(burst, s), "delivered_per_s")
        median_of(runs, lambda: burst(1000, window=20_000), "delivered_per_s")
        median_of(runs, lambda: burst(100, guarantees=True), "delivered_per_s")
        median_of(runs, lambda: paced(10_000), "p99_ms")
        print(json.dumps(idle(10_000)), flush=True)
        return
    kind, number = argv[0], int(argv[1])
    if kind == "guarantees":  # burst with history and ids=1
        median_of(runs, lambda: burst(number, guarantees=True), "delivered_per_s")
        return
    if kind == "tls":  # burst over wss://
        median_of(runs, lambda: burst(number, tls=True), "delivered_per_s")
        return
    if kind == "cluster":  # one daemon, then two through Redis; then paced across daemons
        median_of(runs, lambda: burst(number), "delivered_per_s")
        median_of(runs, lambda: cluster(number), "delivered_per_s")
        median_of(runs, lambda: cluster(number, paced_rate=10_000), "p99_ms")
        return
    runners: dict[str, tuple[Callable[[int], dict[str, object]], str]] = {
        "burst": (burst, "delivered_per_s"),
        "paced": (paced, "p99_ms"),
        "idle": (idle, "kb_per_connection"),
    }
    runner, key = runners[kind]
    median_of(runs, functools.partial(runner, number), key)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv[1:])
