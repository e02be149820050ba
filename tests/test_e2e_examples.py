"""The examples in headless Chromium against a running daemon.

examples/react (the seed README's usePartySocket code, built with Vite) and
examples/plain (partysocket through an import map, no bundler): pages
publish over the WebSocket, the CLI publishes over HTTP, and each page shows
exactly the topics it subscribed to. Screenshots: artifacts/screenshots/
react-*.png and plain-*.png.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from browser import Browser
from daemons import Daemon

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_directory(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """A plain static file server, as any host of built assets would be."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def need_packages(example: str) -> None:
    if not (EXAMPLES / example / "node_modules" / "partysocket").is_dir():
        pytest.fail(f"run `npm ci --prefix examples/{example}` first (scripts/test does)")


@pytest.fixture(scope="module")
def react_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The React example built by Vite, as `npm run build` makes it."""
    need_packages("react")
    out = tmp_path_factory.mktemp("react-dist")
    done = subprocess.run(
        ["npx", "vite", "build", "--outDir", str(out), "--emptyOutDir"],
        cwd=EXAMPLES / "react",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "index.html").is_file()
    return out


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()
    assert not b.page_errors, f"errors in the page: {b.page_errors}"


def page_url(base: str, daemon: Daemon, topics: str) -> str:
    query = urlencode({"room": "lobby", "topics": topics, "host": daemon.address})
    return f"{base}?{query}"


def check_pages(browser: Browser, daemon: Daemon, base: str, name: str) -> None:
    """Writer and reader on `chat`, a third page on `sports:*`."""
    browser.open("writer", page_url(base, daemon, "chat"))
    browser.open("reader", page_url(base, daemon, "chat"))
    browser.open("sports", page_url(base, daemon, "sports:*"))
    for page in ("writer", "reader", "sports"):
        browser.wait_text(page, "#status", "open")
    browser.call("fill", page="writer", selector="#message", value="hello from a page")
    browser.call("click", page="writer", selector="#send")
    browser.wait_text("reader", "#messages li", "hello from a page")
    url = f"http://{daemon.address}"
    for topic, message in (("chat", "hello from the CLI"), ("sports:goal", "1-0")):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "partysub_cli",
                "publish",
                "lobby",
                topic,
                message,
                "--url",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    browser.wait_text("reader", "#messages li", "hello from the CLI")
    browser.wait_text("sports", "#messages li", "1-0")
    # The sports page saw the CLI's chat message go by before 1-0 (same
    # publisher, in order), so by now anything wrongly delivered is on screen.
    assert browser.texts("sports", "#messages li") == ["sports:goal 1-0"]
    assert browser.texts("reader", "#messages li") == [
        "chat hello from a page",
        "chat hello from the CLI",
    ]
    browser.wait_text("writer", "#messages li", "hello from the CLI")
    browser.screenshot("reader", f"{name}-reader")
    browser.screenshot("sports", f"{name}-sports")


def test_react_example_built_with_vite(daemon: Daemon, react_build: Path, browser: Browser) -> None:
    server, base = serve_directory(react_build)
    try:
        check_pages(browser, daemon, base + "/", "react")
    finally:
        server.shutdown()


def test_plain_javascript_example(daemon: Daemon, browser: Browser) -> None:
    need_packages("plain")
    server, base = serve_directory(EXAMPLES / "plain")
    try:
        check_pages(browser, daemon, base + "/index.html", "plain")
    finally:
        server.shutdown()
