"""A command in a real pseudo-terminal, for what a person at a keyboard sees."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

from daemons import TESTS


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
