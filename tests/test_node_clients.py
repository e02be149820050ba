"""The harness proves silence by barriers: it must see a delivery that did happen."""

from __future__ import annotations

import pytest

from daemons import Daemon
from node_clients import Clients


def test_no_message_catches_an_immediate_delivery(clients: Clients) -> None:
    clients.connect("a", room="one")
    clients.connect("b", room="one")
    clients.send("a", {"topic": "t", "data": 1})
    with pytest.raises(AssertionError, match="unexpected"):
        clients.no_message("b")


def test_no_message_catches_a_post(clients: Clients, daemon: Daemon) -> None:
    clients.connect("b", room="one")
    clients.no_message("b")
    daemon.post("/parties/pubsub/one", '{"topic":"t","data":1}')
    with pytest.raises(AssertionError, match="unexpected"):
        clients.no_message("b")
