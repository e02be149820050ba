"""What one publish costs the sans-I/O core, without sockets or a client: CPU time.

    python bench/publish_cost.py SUBSCRIBERS [MESSAGES]

One session publishes MESSAGES small messages (in frames of 32, as a client
streams them) into a room where SUBSCRIBERS other sessions listen to
everything. Prints microseconds of CPU per publish and deliveries per CPU
second. With 0 subscribers it is the session's and the door's part alone.
The noise is a few percent, where the end-to-end burst varies by ±7%: use it
to A/B a change to the publish path, then confirm with bench/run.py.
"""

from __future__ import annotations

import gc
import random
import sys
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import Message, Request

from partysubd.core.config import DEFAULT_BINDING_TOML, parse_config
from partysubd.core.hub import Hub
from partysubd.core.session import Session

BATCH = 32


def main(subscribers: int, messages: int) -> None:
    config = parse_config(DEFAULT_BINDING_TOML, "bench")
    hub = Hub.build(config, rng=random.Random(1))

    def connect(query: str) -> tuple[Session, WSConnection]:
        session = Session(hub, config.server, "bench", now=0.0)
        client = WSConnection(ConnectionType.CLIENT)
        target = "/parties/pubsub/bench" + query
        session.data_received(client.send(Request(host="x", target=target)), 1.0)
        answer = b"".join(bytes(chunk) for chunk in session.out.pending())
        session.out.consumed(len(answer))
        session.out.scheduled = False
        client.receive_data(answer)
        list(client.events())
        return session, client

    listeners = [connect("")[0] for _ in range(subscribers)]
    publisher, client = connect("?topics=")
    frame = client.send(Message(data='{"topic":"t","data":"' + "x" * 40 + '"}'))
    batch = frame * BATCH
    gc.disable()  # the daemon's collector runs rarely on this path; keep it out of the figure
    started = time.process_time()
    for _ in range(messages // BATCH):
        publisher.data_received(batch, 2.0)
        while publisher.backlog:
            publisher.process(2.0)
        for listener in listeners:  # what the engine's flush would send
            listener.out.consumed(listener.out.size)
            listener.out.scheduled = False
        hub.flush.take()
    spent = time.process_time() - started
    sent = messages // BATCH * BATCH
    print(
        f"{subscribers} subscribers: {spent / sent * 1e6:.2f} µs per publish, "
        f"{sent * subscribers / spent:,.0f} deliveries per CPU second"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
