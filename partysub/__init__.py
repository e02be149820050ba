"""A Python client for partysub (and the Cloudflare original's protocol), on trio.

    async with partysub.connect("http://127.0.0.1:1999", room="lobby", topics=["chat:*"]) as sub:
        await sub.publish("chat:1", {"text": "hi"})
        async for message in sub:
            print(message.topic, message.data)

    await partysub.publish("http://127.0.0.1:1999", "lobby", "chat:1", "hello")

The subscription reconnects with backoff and jitter when the connection
drops and, with ``resume=True`` (the default), asks for what it missed by
cursor, so a reconnect loses nothing the room's history still holds.
"""

from partysub.client import (
    Message,
    PublishError,
    Resume,
    Status,
    Subscription,
    connect,
    publish,
)
from partysub.tokens import mint

__all__ = [
    "Message",
    "PublishError",
    "Resume",
    "Status",
    "Subscription",
    "connect",
    "mint",
    "publish",
]
