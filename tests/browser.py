"""Headless Chromium for end-to-end tests: Debian's chromium via playwright-core on Node.

``Browser`` drives tests/js/browser.mjs over a line protocol, one command at
a time. Screenshots go to ``artifacts/screenshots/`` (or ``$PARTYSUB_ARTIFACTS``)
so a CI run keeps them for people to look at.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
JS = TESTS / "js"
ARTIFACTS = Path(os.environ.get("PARTYSUB_ARTIFACTS", TESTS.parent / "artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def require_chromium() -> None:
    """Browser tests fail loudly without a browser: CI installs it, so a skip would hide a gap."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)")


class Browser:
    def __init__(self) -> None:
        require_chromium()
        self.proc = subprocess.Popen(
            ["node", str(JS / "browser.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
            cwd=JS,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.page_errors: list[dict[str, Any]] = []
        # Substrings of page errors a test expects (a refused request it provokes).
        self.allowed_errors: list[str] = []
        self._requests = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event["event"] == "page-error":
                self.page_errors.append(event)
            else:
                self.events.put(event)

    def call(self, cmd: str, timeout: float = 30, **fields: Any) -> Any:
        self._requests += 1
        req = self._requests
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "req": req, **fields}) + "\n")
        self.proc.stdin.flush()
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"browser did not answer {cmd} in {timeout}s") from None
        assert event["req"] == req, event
        if event["event"] == "failed":
            raise AssertionError(f"browser {cmd} {fields}: {event['error']}")
        return event["value"]

    def open(self, page: str, url: str) -> None:
        self.call("open", page=page, url=url)

    def wait_text(self, page: str, selector: str, text: str, timeout: float = 10) -> None:
        self.call("waitText", page=page, selector=selector, text=text, timeout=int(timeout * 1000))

    def texts(self, page: str, selector: str) -> list[str]:
        result: list[str] = self.call("texts", page=page, selector=selector)
        return result

    def screenshot(self, page: str, name: str) -> Path:
        path = ARTIFACTS / "screenshots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", page=page, path=str(path))
        assert path.stat().st_size > 1000, "a screenshot with something in it"
        return path

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
