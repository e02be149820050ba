"""Subscribe to a room and print what arrives; Ctrl-C stops it.

    python examples/python/subscribe.py [URL] [ROOM]

The example docs/python-client.md shows, as a script you can run.
"""

from __future__ import annotations

import contextlib
import sys

import trio

import partysub


async def main(url: str, room: str) -> None:
    async with partysub.connect(url, room=room, topics=["chat:*"]) as sub:
        await sub.publish("chat:1", {"text": "hi"})  # over the WebSocket
        await partysub.publish(url, room, "chat:2", "over HTTP")
        async for message in sub:  # partysub.Message(topic, data, id)
            print(message.topic, message.data, flush=True)


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:1999"
    room = sys.argv[2] if len(sys.argv) > 2 else "lobby"
    # Ctrl-C: partysub.connect raises KeyboardInterrupt as itself, never in a group.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, url, room)
