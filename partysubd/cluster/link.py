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
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from itertools import pairwise
from typing import Any

import coredis
import trio
from coredis.retry import NoRetryPolicy

from ..core import faults
from ..core.clustering import Fetched
from ..core.config import ClusterMode, ClusterSettings, ServerSettings
from ..core.envelope import Envelope, Origin
from ..core.history import new_epoch
from ..core.hub import Hub
from ..core.members import Member, decode_member, local_rooms, room_details
from ..core.registry import Party, Room
from ..core.relay import (
    BadBatch,
    Batch,
    Interest,
    Outbound,
    Pending,
    Relayed,
    channel_for,
    decode_batch,
    decode_item,
    encode_batch,
    names_of,
)

log = logging.getLogger("partysubd.cluster")

# coredis would quietly reconnect a broken pub/sub connection, and a heartbeat
# could then say "subscribed" before it is: every failure comes to run() instead.
NO_RETRY = NoRetryPolicy()
BACKOFF_FIRST = 0.1
BACKOFF_MOST = 2.0
JITTER = 1.5  # a wait is backoff times 0.5 to 1.5


# The Lua scripts Redis runs for rooms with a history, shipped beside this file:
# number.lua numbers a room's batch (sequence, stream, idempotency keys and the
# publish to the other daemons as one step), fetch.lua reads a room's stream
# after a seq for a resume. Each says what its KEYS and ARGV are.
NUMBER_SCRIPT = resources.files(__package__).joinpath("number.lua").read_text()
FETCH_SCRIPT = resources.files(__package__).joinpath("fetch.lua").read_text()


def room_keys(channel: str) -> list[str]:
    return [f"{channel}:stream", f"{channel}:seq", f"{channel}:epoch"]


class ClusterLink:
    """The other daemons, through Redis: the core's ``ClusterHooks`` for a cluster.

    Made before the hub (the hub is built with it), attached to the hub once
    the hub exists, and run with the public address it announces and the
    engine's wake-up for what it delivers."""

    active = True  # other daemons share the rooms
    can_fetch = True  # a resume this daemon cannot answer may ask the stream

    def __init__(self, settings: ClusterSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.address = ""  # the public listener, in heartbeats (given to run)
        self.wake: Callable[[], None] = lambda: None  # the engine's flusher (given to run)
        self.started = time.time()
        self.outbound = Outbound(settings.max_pending_messages, settings.max_pending_bytes)
        self.interested = Interest()
        self.connected = False
        self.reason = "connecting to Redis"
        self.members: list[Member] = []
        self.relayed_out = 0
        self.relayed_in = 0
        self.bad_batches = 0
        self._send_wanted = trio.Event()
        self._interest_changed = trio.Event()
        # Channels Redis has confirmed we listen on; a resume that needs Redis
        # waits for its room's channel, so nothing falls between fetch and live.
        self.subscribed: set[str] = set()
        self._subscriptions_changed = trio.Event()
        self._connection: tuple[Any, trio.Nursery] | None = None
        # The Lua scripts, registered on the current connection.
        self._number: Any = None
        self._fetch_script: Any = None
        # Numbered items sent to Redis whose echo has not come back, by channel:
        # if the link breaks first, this daemon's subscribers get them at once.
        self._unechoed: dict[str, deque[Pending]] = {}
        self._reported_drops = 0
        prefix = settings.prefix
        self._index_key = f"{prefix}:{{members}}"
        self._member_key = f"{prefix}:{{members}}:{name}"

    def attach(self, hub: Hub, server: ServerSettings) -> None:
        """The hub to deliver into, and the limits a message from Redis is checked by."""
        self.hub = hub
        self.limits = server.message_limits

    def apply_settings(self, server: ServerSettings) -> None:
        """After a reload: new message limits for what arrives from Redis."""
        self.limits = server.message_limits

    def _channel(self, party: Party, room_name: str) -> str:
        return channel_for(self.settings.prefix, party.binding.name, room_name)

    # --- ClusterHooks: called by the core, synchronously, on the delivery path ---

    def numbers(self, party: Party) -> bool:
        return party.binding.options.history_messages > 0

    def relay(self, party: Party, room_name: str, envelope: Envelope) -> None:
        channel = self._channel(party, room_name)
        pending = Pending(
            channel, False, envelope.message, envelope.publisher, envelope.skip_publisher
        )
        if self.outbound.add(pending):
            self._send_wanted.set()

    def sequence(self, party: Party, room_name: str, envelope: Envelope) -> bool:
        channel = self._channel(party, room_name)
        connected = self.connected
        # Unconnected, the hub delivers it here at once: say so, for later.
        pending = Pending(
            channel,
            True,
            envelope.message,
            envelope.publisher,
            envelope.skip_publisher,
            not connected,
        )
        if self.outbound.add(pending):
            self._send_wanted.set()
        return connected

    def interest(self, party: Party, room_name: str, wanted: bool) -> None:
        channel = self._channel(party, room_name)
        if self.interested.want(channel, wanted):
            self._interest_changed.set()

    def fetch_history(
        self, room: Room, epoch: str, after: int, done: Callable[[Fetched], None]
    ) -> None:
        connection = self._connection
        if connection is None:
            done(None)
            return
        client, nursery = connection
        channel = self._channel(room.party, room.name)
        nursery.start_soon(self._fetch, client, channel, epoch, after, done)

    def _deliver(self, binding_name: str, room_name: str, envelope: Envelope, now: float) -> None:
        """Into this daemon's fan-out: a room of a binding this daemon has."""
        party = self.hub.registry.parties_by_binding.get(binding_name)
        if party is not None:
            self.hub.fanout.deliver(party, room_name, envelope, now)

    def _echoed(self, channel: str, relayed: list[Relayed]) -> None:
        """Our own numbered items came back: no longer in doubt. Redis numbers in
        order, so older ones not matched were repeats it dropped (idempotency)."""
        unechoed = self._unechoed.get(channel)
        for item in relayed:
            while unechoed and unechoed.popleft().item != item.packed:
                pass
        if unechoed is not None and not unechoed:
            del self._unechoed[channel]

    def _deliver_unechoed_here(self) -> None:
        """The link broke after Redis took numbered items of ours but before their
        echo came back: Redis may have delivered them to the others (or lost them
        with its memory, which changes the room's epoch: resumes then say so).
        Either way this daemon's subscribers get them now, in order."""
        now = trio.current_time()
        unechoed, self._unechoed = self._unechoed, {}
        for items in unechoed.values():
            self._deliver_here([p for p in items if not p.delivered_here], now)

    def _deliver_here(self, pending: list[Pending], now: float) -> None:
        """Deliver our own messages to this daemon's subscribers, each contained."""
        for item in pending:
            names = names_of(self.settings.prefix, item.channel)
            if names is None:
                continue
            try:
                envelope = Envelope(
                    item.message, item.publisher, item.skip_publisher, origin=Origin.HELD
                )
                self._deliver(names[0], names[1], envelope, now)
            except Exception:
                faults.report(self.hub.events, "cluster", item.channel)

    def _deliver_waiting_here(self) -> None:
        """Redis went away with numbered messages of ours still queued: their
        subscribers here get them now, in order, ahead of what is published
        during the outage (the others get them when Redis is back)."""
        self._deliver_unechoed_here()
        waiting = self.outbound.numbered_not_delivered()
        self._deliver_here(waiting, trio.current_time())
        if waiting:
            self.wake()

    async def _fetch(
        self, client: Any, channel: str, epoch: str, after: int, done: Callable[[Fetched], None]
    ) -> None:
        result: Fetched = None
        try:
            with trio.fail_after(self.settings.dead_after_seconds):
                while channel not in self.subscribed:
                    await self._subscriptions_changed.wait()
            current, last, raw = await self._fetch_script(keys=room_keys(channel), args=[after])
            if current and current.decode() == epoch and int(last) >= after:
                limits = self.limits
                entries = []
                for _, flat in reversed(raw):
                    fields = dict(zip(flat[::2], flat[1::2], strict=True))
                    seq = int(fields[b"s"])
                    # An item this daemon refuses makes the fetch not whole.
                    item = decode_item(fields[b"m"], limits, seq=seq)
                    entries.append((seq, item.message, item.publisher))
                seqs = [after] + [entry[0] for entry in entries]
                names = names_of(self.settings.prefix, channel)
                party = self.hub.registry.parties_by_binding.get(names[0]) if names else None
                budget = party.binding.options.history_bytes if party else 0
                # Whole only if nothing is missing (numbers skipped for lost
                # messages, or trimmed from the stream, make it not whole), and
                # only within the room's history bytes, as a local resume is.
                if all(b == a + 1 for a, b in pairwise(seqs)) and (
                    sum(entry[1].size for entry in entries) <= budget
                ):
                    result = (epoch, entries)
        except Exception as exc:  # a failed fetch is a resume that cannot recover
            log.warning("cluster: cannot fetch %s's history: %s", channel, _describe(exc))
        finally:
            done(result)
            self.wake()

    # --- the link ----------------------------------------------------------

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[Any]:
        """A connected coredis client for the configured mode, closed on exit."""
        settings = self.settings
        if settings.mode is ClusterMode.SENTINEL:
            hosts = [address.rpartition(":") for address in settings.sentinels]
            sentinel = coredis.Sentinel(
                [(host, int(port)) for host, _, port in hosts], password=settings.password or None
            )
            async with sentinel, sentinel.primary_for(settings.service) as primary:
                yield primary
            return
        url = settings.redis_url
        assert url is not None, "the config check requires redis_url without Sentinel"
        if settings.mode is ClusterMode.CLUSTER:
            # Its own retries follow the cluster's redirections and failovers.
            client: Any = coredis.RedisCluster.from_url(url)
        else:
            client = coredis.Redis.from_url(url, retry_policy=NO_RETRY)
        async with client:
            yield client

    async def run(self, address: str, wake: Callable[[], None]) -> None:
        """Stay connected until cancelled, reconnecting with backoff and jitter;
        ``address`` is announced in heartbeats, ``wake`` has what arrived flushed."""
        self.address, self.wake = address, wake
        backoff = BACKOFF_FIRST
        while True:
            try:
                async with self._redis() as client:
                    await client.ping()
                    # Registered once per connection, and loaded up front: the
                    # first use would otherwise miss and retry.
                    self._number = client.register_script(NUMBER_SCRIPT)
                    self._fetch_script = client.register_script(FETCH_SCRIPT)
                    for script in (NUMBER_SCRIPT, FETCH_SCRIPT):
                        await client.script_load(script)
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
                            self._connection = (client, nursery)
                            # Heartbeats say "subscribed": they start once we are.
                            await nursery.start(self._subscribe, client)
                            nursery.start_soon(self._heartbeat, client)
                            nursery.start_soon(self._send, client, others, since)
                    finally:
                        self.connected = False
                        self._connection = None
                        self.subscribed = set()
                        self.hub.registry.forget_cluster_histories()
                        self._deliver_waiting_here()
            except BaseExceptionGroup as group:
                # Stopping cancels the connection's tasks, and coredis's own
                # task groups may then fail closing it (the connection lost
                # under them): that is the stop, not a failure to report.
                cancelled, failures = group.split(trio.Cancelled)
                if cancelled is not None:
                    if failures is not None:
                        log.debug("cluster: closing Redis while stopping: %s", _describe(failures))
                    raise cancelled from None
                if not isinstance(group, ExceptionGroup):
                    raise  # KeyboardInterrupt and the like are not Redis's
                self._unreachable(group)
            except Exception as exc:  # any failure means: reconnect
                self._unreachable(exc)
            self.connected = False
            await trio.sleep(backoff * random.uniform(2 - JITTER, JITTER))
            backoff = min(backoff * 2, BACKOFF_MOST)

    def _unreachable(self, exc: BaseException) -> None:
        """Say why Redis cannot be used (once while the reason stays the same)."""
        failure = _describe(exc)
        if self.reason != f"Redis unreachable: {failure}":
            log.warning("cluster: Redis unreachable (%s); retrying", failure)
        self.reason = f"Redis unreachable: {failure}"

    async def leave(self) -> None:
        """Take our heartbeat out at once on a clean stop (a killed daemon's expires)."""
        if not self.connected:
            return
        try:
            with trio.move_on_after(1.0):
                async with self._redis() as client:
                    await client.delete([self._member_key])
                    await client.srem(self._index_key, [self.name])
        except Exception as exc:  # best effort: the heartbeat expires anyway
            log.warning("cluster: could not leave at once (%s); it expires", _describe(exc))

    async def _subscribe(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self.settings.mode is ClusterMode.CLUSTER:
            pubsub = client.sharded_pubsub(ignore_subscribe_messages=True, retry_policy=NO_RETRY)
        else:
            pubsub = client.pubsub(ignore_subscribe_messages=True, retry_policy=NO_RETRY)
        async with pubsub:
            channels = self.interested.restart()
            if channels:
                await pubsub.subscribe(*channels)
            self._confirm(channels, [])
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
            subscribe, unsubscribe = self.interested.take_changes()
            if subscribe:
                await pubsub.subscribe(*subscribe)
            if unsubscribe:
                await pubsub.unsubscribe(*unsubscribe)
            self._confirm(subscribe, unsubscribe)

    async def _listening(self, channel: str) -> None:
        """Until Redis confirmed our subscription to ``channel``, if we want it."""
        with trio.move_on_after(self.settings.dead_after_seconds):
            while channel in self.interested.channels and channel not in self.subscribed:
                await self._subscriptions_changed.wait()

    def _confirm(self, subscribed: list[str], unsubscribed: list[str]) -> None:
        self.subscribed.update(subscribed)
        self.subscribed.difference_update(unsubscribed)
        self._subscriptions_changed.set()
        self._subscriptions_changed = trio.Event()

    def _receive(self, channel: bytes | str, payload: bytes) -> None:
        """A batch from Redis: each item decoded (through the door) and delivered on
        its own, so one bad item, or one that raises, costs that item alone."""
        name = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
        names = names_of(self.settings.prefix, name)
        try:
            if names is None:
                raise BadBatch(f"not a room channel: {name[:200]!r}")
            origin, epoch, raws = decode_batch(payload)
        except BadBatch as exc:
            self._bad(name, exc)
            return
        binding_name, room_name = names
        now = trio.current_time()
        hub = self.hub
        limits = self.limits
        mine = origin == self.name
        if epoch is None and mine:
            return  # delivered here when published
        relayed: list[Relayed] = []
        for seq, raw in raws:
            try:
                item = decode_item(raw, limits, origin, seq)
            except BadBatch as exc:
                self._bad(name, exc)
                continue
            relayed.append(item)
        if epoch is not None and mine:
            self._echoed(name, relayed)
        for item in relayed:
            envelope = Envelope(
                item.message,
                item.publisher,
                item.skip_publisher,
                origin=Origin.RELAYED if epoch is None else Origin.NUMBERED,
                seq=item.seq,
                epoch=epoch,
                delivered_here=mine and item.delivered_at_origin,
            )
            try:
                self._deliver(binding_name, room_name, envelope, now)
            except Exception:
                faults.report(hub.events, "cluster", name)
        self.relayed_in += len(relayed)
        self.wake()

    def _bad(self, channel: str, exc: BadBatch) -> None:
        self.bad_batches += 1
        log.warning("cluster: skipped a bad batch or item on %r: %s", channel[:200], exc)

    async def _others_back(self, client: Any, others: set[str], since: float) -> None:
        """Wait until every daemon in ``others`` has heartbeated since ``since``: it
        is subscribed again, and will hear what we send. One that has not after its
        longest retry wait plus ``dead_after_seconds`` is taken for gone."""
        with trio.move_on_after(BACKOFF_MOST * JITTER + self.settings.dead_after_seconds):
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
        if len(self.outbound) and others:
            await self._others_back(client, others, since)
        while True:
            if not len(self.outbound):
                await self._send_wanted.wait()
                self._send_wanted = trio.Event()
            self._report_drops()
            batches = self.outbound.take()
            if not batches:
                continue
            sent: list[Batch] = []
            try:
                await self._publish(client, batches, sent)
            except BaseException:
                # Not sent (or not known to be): keep them for the next connection.
                self.outbound.put_back([b for b in batches if not any(b is s for s in sent)])
                raise
            self.relayed_out += len(batches)

    async def _publish(self, client: Any, batches: list[Batch], sent: list[Batch]) -> None:
        """Send the batches, adding each to ``sent`` once Redis has taken it."""
        command = "SPUBLISH" if self.settings.mode is ClusterMode.CLUSTER else "PUBLISH"
        plain = [b for b in batches if not b.numbered]
        if plain:
            async with client.pipeline(transaction=False) as pipe:
                for batch in plain:
                    payload = encode_batch(self.name, batch.items)
                    if command == "SPUBLISH":
                        pipe.spublish(batch.channel, payload)
                    else:
                        pipe.publish(batch.channel, payload)
            sent.extend(plain)
        numbered = [b for b in batches if b.numbered]
        holes = self.outbound.take_holes()
        # A room whose every waiting message was lost still gets its hole.
        numbered += [Batch(c, True, []) for c in holes if c not in {b.channel for b in numbered}]
        if not numbered:
            return
        for batch in numbered:
            # Our own subscribers get these from Redis too: a room that just
            # got its first connection here must be listened to before.
            await self._listening(batch.channel)
            names = names_of(self.settings.prefix, batch.channel)
            party = self.hub.registry.parties_by_binding.get(names[0]) if names else None
            if party is None:
                sent.append(batch)  # a binding removed since: nobody to number it for
                continue
            binding = party.binding
            args: list[str | bytes | int] = [
                batch.channel,
                self.name,
                binding.options.history_messages,
                int(binding.options.history_seconds * 1000),
                new_epoch(),
                f"{batch.channel}:idem:",
                command,
                holes.get(batch.channel, 0),
            ]
            for idem, item in zip(batch.idems, batch.items, strict=True):
                args += [idem, item]
            # Noted before sending: the echo may come back before the reply.
            unechoed = self._unechoed.setdefault(batch.channel, deque())
            unechoed.extend(batch.pending)
            try:
                await self._number(keys=room_keys(batch.channel), args=args)
            except BaseException:
                for _ in batch.pending:  # put back to be sent again instead
                    unechoed.pop()
                raise
            sent.append(batch)

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
            connections, rooms = local_rooms(self.hub.registry)
            offset = time.time() - trio.current_time()
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
                details=room_details(self.hub.registry, rooms, offset),
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
            self.hub.registry.set_cluster_size(len(members))
            await trio.sleep(settings.heartbeat_seconds)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
