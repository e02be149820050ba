"""Fan-out benchmark: the daemon on CPU 0, the Node `ws` load generator on CPU 1.

    python bench/run.py                 # everything below, one run each
    python bench/run.py burst 100       # delivered/s at S=100
    python bench/run.py paced 10000     # p99 latency at a paced 10,000 deliveries/s
    python bench/run.py idle 10000      # RSS per idle connection, one publish to all

Prints figures, never pass/fail: this is not a test. Needs `npm ci --prefix bench`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).parent
ROOT = BENCH.parent
SECONDS = 5
WINDOW = 5000  # deliveries in flight at most (as in PERFORMANCE.md)

CONFIG = """
[server]
host = "127.0.0.1"
port = 0
backlog = 8192
ping_interval = 0

[[durable_objects.bindings]]
name = "PubSub"
class_name = "PubSubServer"

[[migrations]]
tag = "v1"
new_classes = ["PubSubServer"]
"""


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_daemon(config: str = CONFIG) -> tuple[subprocess.Popen[str], int]:
    path = Path(tempfile.mkdtemp()) / "bench.toml"
    path.write_text(config)
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "cli",
            "serve",
            "-c",
            str(path),
            "--log-level",
            "info",
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
            return proc, int(match.group(1))
    raise RuntimeError("daemon did not start")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match
    return int(match.group(1))


def generator(*args: str) -> list[str]:
    return ["taskset", "-c", "1", "node", str(BENCH / "fanout.mjs"), *args]


def burst(subscribers: int) -> dict[str, object]:
    proc, port = start_daemon()
    try:
        url = f"ws://127.0.0.1:{port}/parties/pubsub/bench"
        out = subprocess.run(
            generator("burst", url, str(subscribers), str(SECONDS), str(WINDOW)),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.terminate()
        proc.wait()


def paced(rate: int, subscribers: int = 100) -> dict[str, object]:
    proc, port = start_daemon()
    try:
        url = f"ws://127.0.0.1:{port}/parties/pubsub/bench"
        out = subprocess.run(
            generator("paced", url, str(subscribers), str(SECONDS), str(rate)),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
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


def main(argv: list[str]) -> None:
    raise_fd_limit()
    if not argv:
        for s in (10, 100, 1000):
            print(json.dumps(burst(s)), flush=True)
        print(json.dumps(paced(10_000)), flush=True)
        print(json.dumps(idle(10_000)), flush=True)
        return
    kind, number = argv[0], int(argv[1])
    runner = {"burst": burst, "paced": paced, "idle": idle}[kind]
    print(json.dumps(runner(number)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv[1:])
