"""The daemon as an operator runs it: ``partysub serve`` in a subprocess, its log collected.

Nothing here fakes the daemon: ``Daemon`` runs the installed command on free
ports and reads its log, which the harness (conftest's ``start_daemon``)
checks for tracebacks the test did not expect.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

TESTS = Path(__file__).parent
# What a daemon's log holds only when something went wrong inside it: a
# traceback, a fault the daemon contained, an exception Python could not raise.
TROUBLE = re.compile(r"Traceback \(most recent call last\)|internal error in |Exception ignored in")


class DaemonFactory(Protocol):
    """conftest's ``start_daemon``: a daemon with this config text (None: the built-in
    default) and these extra ``serve`` arguments, stopped and checked after the test."""

    def __call__(self, config_text: str | None = None, *args: str) -> Daemon: ...


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
