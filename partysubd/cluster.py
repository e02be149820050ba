"""The daemon's link to Redis: other daemons' publishes in, ours out, heartbeats.

The I/O edge of clustering, on coredis (anyio, so it runs in our trio loop).
What goes over the link is decided in relay.py and members.py; this file
connects, subscribes, sends and reconnects:

* one task per concern: the subscriber (the room channels in ``Interest``),
  the sender (``Outbound``'s batches, one pipeline per wake-up), the
  heartbeat (our key, and everyone's, read back);
* any failure restarts all three on a new connection, after a backoff with
  jitter, and subscribes to every wanted channel again; meanwhile local
  delivery goes on, messages for the others wait in ``Outbound`` (bounded),
  and ``/ready`` says why the daemon is not ready.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import coredis
import trio

from .config import ClusterSettings
from .members import Member, decode_member, local_rooms
from .protocol import Publish
from .relay import BadBatch, Interest, Outbound, channel_for, decode_batch, encode_item, room_of
from .rooms import Hub, Party

log = logging.getLogger("partysubd.cluster")

BACKOFF_FIRST = 0.1
BACKOFF_MOST = 5.0


class ClusterLink:
    def __init__(
        self,
        settings: ClusterSettings,
        hub: Hub,
        name: str,
        address: str,
        wake: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.name = name
        self.address = address
        self.wake = wake
        self.started = time.time()
        self.outbound = Outbound(settings.max_pending_messages)
        self.interest = Interest()
        self.connected = False
        self.reason = "connecting to Redis"
        self.members: list[Member] = []
        self.relayed_out = 0
        self.relayed_in = 0
        self.bad_batches = 0
        self._send_wanted = trio.Event()
        self._interest_changed = trio.Event()
        self._reported_drops = 0
        prefix = settings.prefix
        self._index_key = f"{prefix}:{{members}}"
        self._member_key = f"{prefix}:{{members}}:{name}"
        hub.relay = self._relay
        hub.interest = self._want

    # --- called by the hub, synchronously, on the delivery path -----------

    def _relay(
        self,
        party: Party,
        room: str,
        message: Publish,
        publisher: str | None,
        skip_publisher: bool,
    ) -> None:
        channel = channel_for(self.settings.prefix, party.binding.name, room)
        if self.outbound.add(channel, encode_item(message, publisher, skip_publisher)):
            self._send_wanted.set()

    def _want(self, party: Party, room: str, wanted: bool) -> None:
        channel = channel_for(self.settings.prefix, party.binding.name, room)
        if self.interest.want(channel, wanted):
            self._interest_changed.set()

    # --- the link ----------------------------------------------------------

    def _client(self) -> Any:
        url = self.settings.redis_url
        if self.settings.mode == "cluster":
            return coredis.RedisCluster.from_url(url)
        return coredis.Redis.from_url(url)

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with backoff and jitter."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                client = self._client()
                async with client:
                    await client.ping()
                    self.connected = True
                    self.reason = ""
                    backoff = BACKOFF_FIRST
                    log.info(
                        "cluster: %s joined through Redis (%s mode)", self.name, self.settings.mode
                    )
                    # Those we knew before a reconnect must be back (subscribed
                    # again) before we send what waited for Redis.
                    others = {m.name for m in self.members if m.name != self.name}
                    since = time.time()
                    try:
                        async with trio.open_nursery() as nursery:
                            # Heartbeats say "subscribed": they start once we are.
                            await nursery.start(self._subscribe, client)
                            nursery.start_soon(self._heartbeat, client)
                            nursery.start_soon(self._send, client, others, since)
                    finally:
                        self.connected = False
            except Exception as exc:  # any failure means: reconnect
                failure = _describe(exc)
                if self.reason != f"Redis unreachable: {failure}":
                    log.warning("cluster: Redis unreachable (%s); retrying", failure)
                self.reason = f"Redis unreachable: {failure}"
            self.connected = False
            await trio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, BACKOFF_MOST)

    async def leave(self) -> None:
        """Take our heartbeat out at once on a clean stop (a killed daemon's expires)."""
        if not self.connected:
            return
        with trio.move_on_after(1.0):
            client = self._client()
            async with client:
                await client.delete([self._member_key])
                await client.srem(self._index_key, [self.name])

    async def _subscribe(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self.settings.mode == "cluster":
            pubsub = client.sharded_pubsub(ignore_subscribe_messages=True)
        else:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
        async with pubsub:
            channels = self.interest.restart()
            if channels:
                await pubsub.subscribe(*channels)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._follow_interest, pubsub)
                # Not ``async for``: coredis ends that iteration whenever no
                # channel is subscribed, and ours come and go with the rooms.
                while True:
                    message = await pubsub.get_message()
                    if message is not None and message["type"] in ("message", "smessage"):
                        self._receive(message["channel"], message["data"])

    async def _follow_interest(self, pubsub: Any) -> None:
        while True:
            await self._interest_changed.wait()
            self._interest_changed = trio.Event()
            subscribe, unsubscribe = self.interest.take_changes()
            if subscribe:
                await pubsub.subscribe(*subscribe)
            if unsubscribe:
                await pubsub.unsubscribe(*unsubscribe)

    def _receive(self, channel: bytes | str, payload: bytes) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        room = room_of(self.settings.prefix, name)
        try:
            if room is None:
                raise BadBatch(f"not a room channel: {name!r}")
            origin, relayed = decode_batch(payload)
        except BadBatch as exc:
            self.bad_batches += 1
            log.warning("cluster: skipped a bad batch on %r: %s", name, exc)
            return
        if origin == self.name:
            return
        binding, room_name = room
        now = trio.current_time()
        for item in relayed:
            self.hub.deliver_relayed(
                binding, room_name, item.message, item.publisher, item.skip_publisher, now
            )
        self.relayed_in += len(relayed)
        self.wake()

    async def _others_back(self, client: Any, others: set[str], since: float) -> None:
        """Wait (at most dead_after_seconds) until every daemon in ``others`` has
        heartbeated since ``since``: it is subscribed again, and will hear what we send.
        A daemon that does not come back in that time is taken for gone."""
        with trio.move_on_after(self.settings.dead_after_seconds):
            while others:
                names = sorted(others)
                raws = await client.mget([f"{self._index_key}:{n}" for n in names])
                for name, raw in zip(names, raws, strict=True):
                    member = decode_member(raw)
                    if member is not None and member.seen >= since:
                        others.discard(name)
                if others:
                    await trio.sleep(0.05)
        if others:
            log.warning("cluster: %s did not come back; sending anyway", ", ".join(sorted(others)))

    async def _send(self, client: Any, others: set[str], since: float) -> None:
        sharded = self.settings.mode == "cluster"
        if len(self.outbound) and others:
            await self._others_back(client, others, since)
        while True:
            if not len(self.outbound):
                await self._send_wanted.wait()
                self._send_wanted = trio.Event()
            self._report_drops()
            batches = self.outbound.take(self.name)
            if not batches:
                continue
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, payload in batches:
                        if sharded:
                            pipe.spublish(channel, payload)
                        else:
                            pipe.publish(channel, payload)
            except BaseException:
                # Not sent (or not known to be): keep them for the next connection.
                self.outbound.put_back(batches, self.name)
                raise
            self.relayed_out += len(batches)

    def _report_drops(self) -> None:
        dropped = self.outbound.dropped
        if dropped > self._reported_drops:
            log.warning(
                "cluster: %d messages for other daemons dropped while Redis was away "
                "(max_pending_messages = %d)",
                dropped - self._reported_drops,
                self.settings.max_pending_messages,
            )
            self._reported_drops = dropped

    async def _heartbeat(self, client: Any) -> None:
        settings = self.settings
        ttl_ms = int(settings.dead_after_seconds * 1000)
        while True:
            connections, rooms = local_rooms(self.hub)
            me = Member(
                name=self.name,
                location=settings.location,
                address=self.address,
                started=self.started,
                seen=time.time(),
                connections=connections,
                rooms=rooms,
                pending=len(self.outbound),
                dropped=self.outbound.dropped,
            )
            await client.set(self._member_key, me.encode(), px=ttl_ms)
            await client.sadd(self._index_key, [self.name])
            names = sorted(n.decode() for n in await client.smembers(self._index_key))
            raws = await client.mget([f"{self._index_key}:{n}" for n in names]) if names else ()
            members, gone = [], []
            for name, raw in zip(names, raws, strict=True):
                member = decode_member(raw)
                if member is None:
                    gone.append(name)
                else:
                    members.append(member)
            if gone:
                await client.srem(self._index_key, gone)
                log.info("cluster: %s left (no heartbeat)", ", ".join(gone))
            self.members = members
            await trio.sleep(settings.heartbeat_seconds)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
