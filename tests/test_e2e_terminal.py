"""Operator mistakes and Ctrl-C, in a real pseudo-terminal as a person types them:
one line that says what happened, never a traceback."""

from __future__ import annotations

import socket
import sys

from daemons import Daemon, free_port
from terminal import Terminal

CLI = (sys.executable, "-m", "partysub_cli")


def assert_one_clean_line(text: str, expected: str) -> None:
    assert "Traceback" not in text and "Error" not in text.replace(expected, ""), text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines == [expected], lines


def test_ctrl_c_in_subscribe_exits_quietly(daemon: Daemon) -> None:
    term = Terminal(*CLI, "subscribe", "lobby", "--url", f"http://{daemon.address}")
    daemon.post("/parties/pubsub/lobby", '{"topic":"t","data":"first"}')
    # It is connected once a publish reaches it.
    for _ in range(50):
        daemon.post("/parties/pubsub/lobby", '{"topic":"t","data":"hello"}')
        try:
            term.read_until('"hello"', timeout=0.2)
            break
        except AssertionError:
            continue
    term.type(b"\x03")
    assert term.wait() == 130
    assert "Traceback" not in term.text and "Group" not in term.text, term.text


def test_subscribe_to_a_daemon_that_is_down_says_so_and_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    term = Terminal(*CLI, "subscribe", "lobby", "--url", url)
    shown = term.read_until(r"retrying in .*\n.*retrying in")  # at least two attempts
    assert f"partysub: cannot subscribe at {url}: Connection refused; retrying in" in shown
    term.type(b"\x03")
    assert term.wait() == 130
    assert "Traceback" not in term.text


def test_subscribe_no_retry_exits_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    term = Terminal(*CLI, "subscribe", "lobby", "--url", url, "--no-retry")
    assert term.wait() == 1
    assert_one_clean_line(
        term.text,
        f"partysub: cannot subscribe to 'lobby' at {url}: cannot connect to {url}: "
        "Connection refused",
    )


def test_a_busy_control_plane_port_is_named() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        term = Terminal(*CLI, "serve", "--port", "0", "--admin-listen", f"127.0.0.1:{port}")
        assert term.wait() == 1
    assert_one_clean_line(
        term.text,
        f"partysub: cannot listen on 127.0.0.1:{port} (control plane): Address already in use",
    )


def test_a_busy_public_port_is_named() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        term = Terminal(*CLI, "serve", "--port", str(port), "--admin-listen", "127.0.0.1:0")
        assert term.wait() == 1
    assert_one_clean_line(
        term.text,
        f"partysub: cannot listen on 127.0.0.1:{port} (public listener): Address already in use",
    )


def test_a_bad_admin_listen_is_one_line() -> None:
    for value in ("127.0.0.1:99999", ":abc", "127.0.0.1:²", "nonsense"):
        term = Terminal(*CLI, "serve", "--port", "0", "--admin-listen", value)
        assert term.wait() == 2, value
        text = term.text
        assert "Traceback" not in text, text
        assert text.startswith("partysub: Invalid value for --admin-listen: must be"), text


def test_the_python_client_example_stops_on_ctrl_c(daemon: Daemon) -> None:
    term = Terminal(sys.executable, "examples/python/subscribe.py", f"http://{daemon.address}")
    term.read_until("chat:2 over HTTP")
    term.type(b"\x03")
    assert term.wait() == 0
    assert "Traceback" not in term.text, term.text
