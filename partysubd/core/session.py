"""One client connection, sans-I/O: bytes in, bytes queued out, and decisions.

A session starts as an HTTP/1.1 exchange (``HttpExchange``). A WebSocket
upgrade on a party's URL makes it a subscriber, reading frames through a
``WebSocketReader``; a POST publishes and answers; anything else gets its
status and reason. Both ways of publishing pass the same ``Admission`` and go
to the same ``Fanout``. The session never touches a socket or a clock: the
I/O layer feeds it bytes and the time, sends what its outbox holds, and
closes the transport once its state is ``FINISHED`` and the outbox drained.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from enum import Enum, auto

from wsproto.frame_protocol import CloseReason

from . import faults
from .admission import Admission
from .auth import FULL_ACCESS, Grant, verify
from .clustering import Fetched
from .config import ServerSettings, SlowConsumer
from .envelope import Envelope
from .frames import close_frame
from .history import History
from .http1 import Head, Refusal
from .http_exchange import HttpExchange, PostBody
from .http_plan import AcceptWebSocket, ReadBody, Reply, plan_request
from .hub import Hub
from .outbox import DropOldestOutbox, LatestOutbox, Outbox
from .protocol import (
    ErrorCode,
    ProtocolError,
    Publish,
    RefreshToken,
    Subscribe,
    Variant,
    control_frame,
    error_frame,
    message_frame,
    parse_client_message,
    parse_http_publish,
    parse_msgpack_message,
)
from .ratelimit import PublishLimiter
from .registry import Membership
from .resume import FetchFirst, Replay, join_fetched, plan_resume
from .routing import topics_from_query
from .ws_reader import Closed, Message, Pinged, TooBig, WebSocketReader

log = logging.getLogger("partysubd.session")

CLOSE_SLOW_CONSUMER = 1013  # "try again later": the client fell too far behind
CLOSE_PING_TIMEOUT = 1011
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_FORBIDDEN = 4003
# Work one call may do before it returns and lets other connections run (the
# engine calls ``process`` again while ``backlog`` is set): messages and HTTP
# events handled, and deliveries their publishes made.
TURN_MESSAGES = 64
TURN_DELIVERIES = 32768


class State(Enum):
    HTTP = auto()  # requests and answers
    OPEN = auto()  # a WebSocket, subscribed
    RESUMING = auto()  # a WebSocket waiting for Redis to answer its resume: subscribed to nothing
    CLOSING = auto()  # our close frame is queued; the client's answer, or close_deadline, ends it
    FINISHED = auto()  # nothing more to read or answer: close once the outbox is sent


class Session:
    """A client connection from accept to close."""

    __slots__ = (
        "_deliveries",
        "_held",
        "_messages",
        "_post",
        "_strikes",
        "admission",
        "backlog",
        "client_address",
        "close_deadline",
        "country",
        "created",
        "http",
        "hub",
        "id",
        "last_seen",
        "limits",
        "membership",
        "out",
        "peer",
        "ping_sent",
        "settings",
        "skip_self",
        "state",
        "token_deadline",
        "variant",
        "ws",
    )

    def __init__(self, hub: Hub, settings: ServerSettings, peer: str, now: float) -> None:
        self.hub = hub
        self.settings = settings
        self.limits = settings.message_limits
        self.peer = peer
        self.created = self.last_seen = now
        self.out = Outbox(settings.max_buffered_bytes)
        self.state = State.HTTP
        self.http: HttpExchange | None = HttpExchange(
            settings.max_header_bytes, settings.max_message_size, now
        )
        self.ws: WebSocketReader | None = None
        self.membership: Membership | None = None
        self.id = ""
        self.country: str | None = None
        self.close_deadline: float | None = None
        self.ping_sent: float | None = None
        # The peer's IP, until a proxy header names the real client.
        self.client_address = peer.rsplit(":", 1)[0]
        self.variant = Variant.JSON
        self.skip_self = False
        self.admission = Admission()
        # Messages refused in a row (rate limits, invalid, forbidden); at the
        # binding's abuse_strikes the connection is closed.
        self._strikes = 0
        self.token_deadline: float | None = None  # when the connection's token expires
        # RESUMING: the patterns to listen on once Redis has answered.
        self._held: tuple[str, ...] = ()
        self._post: ReadBody | None = None  # the POST whose body is being read
        self.backlog = False  # input is buffered that the last call left for the next
        self._messages = self._deliveries = 0  # what the current call may still do

    @property
    def finished(self) -> bool:
        return self.state is State.FINISHED

    @property
    def grant(self) -> Grant:
        return self.admission.grant

    # --- what the I/O layer calls -------------------------------------------

    def data_received(self, data: bytes, now: float) -> None:
        """Bytes from the peer: buffered, then handled as far as one turn allows."""
        if self.state is State.FINISHED:
            return
        if self.ws is not None:
            self.ws.feed(data)
        elif self.http is not None:
            self.http.feed(data)
        self.process(now)

    def process(self, now: float) -> None:
        """Handle what is buffered, a bounded amount per call: one connection that
        streams cannot hold the loop. ``backlog`` says whether to call again."""
        self.last_seen = now
        self.ping_sent = None
        self.backlog = False
        self._messages = TURN_MESSAGES
        self._deliveries = TURN_DELIVERIES
        if self.state is State.HTTP:
            self._http_events()
        if self.ws is not None and not self.backlog:
            self._ws_events()

    def _spent(self) -> bool:
        """Whether this call's work is done (then the rest waits for the next one)."""
        if self._messages <= 0 or self._deliveries <= 0:
            self.backlog = True
            return True
        self._messages -= 1
        return False

    def eof_received(self) -> None:
        """The peer shut its side: nothing more will come, so nothing more to answer."""
        self._finish()

    def connection_lost(self) -> None:
        """The transport is gone; leave the room so no more frames are queued for it."""
        self.state = State.FINISHED
        self.out.sealed = True
        if self.membership is not None:
            membership, self.membership = self.membership, None
            log.debug("disconnect %s from %s", self.id, self.room_label())
            self.hub.registry.leave(self, membership, self.last_seen)

    def apply_settings(self, settings: ServerSettings) -> None:
        """A reload changed the limits: they hold for this connection from now on."""
        self.settings = settings
        self.limits = settings.message_limits
        self.out.cap = settings.max_buffered_bytes
        if self.ws is not None:
            self.ws.max_size = settings.max_message_size
        if self.http is not None:
            self.http.reader.max_head = settings.max_header_bytes
            self.http.reader.max_body = settings.max_message_size

    def tick(self, now: float) -> None:
        """Timers: handshake deadline, keep-alive pings, dead peers, close handshakes."""
        s = self.settings
        state = self.state
        if state is State.FINISHED:
            return
        if state is State.CLOSING:
            if self.close_deadline is not None and now >= self.close_deadline:
                self._finish()
            return
        if state is State.HTTP:
            # From the start of the request, not the last byte: a client that
            # trickles its headers (slowloris) still runs out of time.
            assert self.http is not None
            if now - self.http.started >= s.handshake_timeout:
                self._finish()
            return
        if self.token_deadline is not None and now >= self.token_deadline:
            self.close(CLOSE_TOKEN_EXPIRED, "token expired: send a fresh one with __token", now)
            return
        if s.ping_interval <= 0:
            return
        if self.ping_sent is not None:
            if now - self.ping_sent >= s.ping_timeout:
                self.close(CLOSE_PING_TIMEOUT, "keep-alive ping timeout", now)
        elif now - self.last_seen >= s.ping_interval:
            assert self.ws is not None
            self.ping_sent = now
            self._send(self.ws.ping(b"partysub"))

    def close(self, code: int, reason: str, now: float) -> None:
        """Start a clean close: a close frame for a WebSocket, the end for idle HTTP."""
        if self.state in (State.FINISHED, State.CLOSING):
            return
        frame = self.ws.close(code, reason) if self.ws is not None else None
        if frame is None:
            self._finish()
            return
        self._send_last(frame)
        self.hub.events.closes[code] += 1
        self.state = State.CLOSING
        self.close_deadline = now + self.settings.close_timeout

    def fail(self, now: float) -> None:
        """An internal error hit this connection: tell the client (1011 on a WebSocket,
        500 to a request not yet answered) and end it; nothing more it sends is read.

        Built without the connection's own protocol state, which may be what broke."""
        if self.state is State.FINISHED:
            return
        self.out.drop_unsent()
        if self.ws is not None:
            if self.state is not State.CLOSING:
                self._send_last(close_frame(CLOSE_INTERNAL_ERROR, "internal error"))
                self.hub.events.closes[CLOSE_INTERNAL_ERROR] += 1
        elif self.http is not None and (answer := self.http.internal_error()) is not None:
            self._send_last(answer)
            self.hub.events.http_responses[500] += 1
        self._finish()

    def abort(self) -> None:
        """Drop the connection now: nothing more is sent, not even a close frame."""
        self.out.chunks = []
        self.out.offset = 0
        self.out.size = 0
        self._finish()

    def overflowed(self, now: float) -> None:
        """The outbox passed its cap: drop what was not begun, and close."""
        self.out.drop_unsent()
        self.hub.events.slow_consumers += 1
        log.info(
            "closing slow consumer %s in %s: over %d buffered bytes",
            self.id,
            self.room_label(),
            self.out.cap,
        )
        self.close(
            CLOSE_SLOW_CONSUMER,
            f"slow consumer: more than {self.out.cap} bytes waiting to be sent",
            now,
        )
        if self.state is not State.FINISHED and self.close_deadline is None:
            self._finish()

    def room_label(self) -> str:
        if self.membership is None:
            return "-"
        room = self.membership.room
        return f"{room.party.binding.name}/{room.name}"

    # --- queueing ------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.out.push(data):
            self.hub.flush.add(self)

    def _send_last(self, data: bytes) -> None:
        if self.out.push_last(data):
            self.hub.flush.add(self)

    def _finish(self) -> None:
        self.state = State.FINISHED
        self.out.sealed = True
        self.hub.flush.schedule(self)

    # --- HTTP ----------------------------------------------------------------

    def _http_events(self) -> None:
        http = self.http
        while http is not None and self.state is State.HTTP:
            if self._spent():
                return
            event = http.next()
            if event is None:
                self._messages += 1  # nothing was handled
                return
            if isinstance(event, Head):
                self._on_request(event)
            elif isinstance(event, PostBody):
                self._on_post(event.body)
            elif isinstance(event, Refusal):
                self._respond(Reply(event.status, event.reason, close=True))
            http = self.http

    def _on_request(self, head: Head) -> None:
        assert self.http is not None
        plan = plan_request(head, self.hub.registry.parties, self.settings, self._wall())
        if isinstance(plan, Reply):
            self._respond(plan)
        elif isinstance(plan, ReadBody):
            address = plan.client_address or self.client_address
            party = plan.route.party
            # The same admission as a WebSocket publish, with this address's allowance:
            # the rate limit, a cheap refusal, before the body is read and parsed.
            admission = Admission(plan.grant, lambda _, now: party.http_limiter.take(address, now))
            wait = admission.take(0, self.last_seen)
            if wait:
                self.hub.events.rate_limited["http"] += 1
                self._respond(_too_many(wait, "publishes from this address", plan.cors, True))
                return
            self.admission = admission
            self._post = plan
            first = self.http.read_body()
            if first:
                self._send(first)
        else:
            self._upgrade(plan)

    def _on_post(self, body: bytes) -> None:
        post, self._post = self._post, None
        assert post is not None
        message = parse_http_publish(body, post.content_type, self.limits)
        if isinstance(message, ProtocolError):
            status = 413 if message.code is ErrorCode.TOO_LARGE else 400
            self.hub.events.error_frames[message.code.value] += 1
            self._respond(Reply(status, f"Invalid request: {message.message}", post.cors))
            return
        refused = self.admission.allow(message)
        if refused is not None:
            self._respond(Reply(403, f"Forbidden: {refused.message}", post.cors))
            return
        if post.idem is not None:
            message = replace(message, idem=post.idem)
        found = post.route
        # Like the original, a POST lands on one node (placed by country),
        # which passes it to the others; in one process that is this call.
        node_id = self.hub.registry.place(found.party, found.room_name, post.country)
        envelope = Envelope(message, post.skip, skip_publisher=True)
        delivered = self.hub.fanout.deliver(found.party, found.room_name, envelope, self.last_seen)
        self._deliveries -= delivered or 0
        log.debug(
            "POST %s/%s topic %s via node %s from %s: %s deliveries",
            found.party.binding.name,
            found.room_name,
            message.topic,
            node_id,
            self.peer,
            "repeat, no" if delivered is None else delivered,
        )
        headers = list(post.cors)
        if delivered is None:
            headers.append((b"Idempotent-Replayed", b"true"))
        self._respond(Reply(200, "OK", headers))

    def _respond(self, reply: Reply) -> None:
        """Queue the answer to the current request (closing after it when it says so)."""
        assert self.http is not None
        data, close = self.http.answer(reply, self.last_seen)
        if data:
            self._send(data)
            self.hub.events.http_responses[reply.status] += 1
        if close:
            self._finish()

    def _wall(self) -> float:
        """Wall-clock time now (token expiry), from the hub's offset to ``last_seen``."""
        return self.last_seen + self.hub.wall_offset

    # --- WebSocket -------------------------------------------------------------

    def _upgrade(self, plan: AcceptWebSocket) -> None:
        http = self.http
        assert http is not None
        party = plan.route.party
        if plan.client_address:
            self.client_address = plan.client_address
        wait = party.connect_limiter.take(self.client_address, self.last_seen)
        if wait:
            self.hub.events.rate_limited["connect"] += 1
            self._respond(_too_many(wait, "new connections from this address"))
            return
        accepted, trailing = http.upgrade(plan.accept_token)
        self._send(accepted)
        self.hub.events.http_responses[101] += 1
        self.http = None
        found = plan.route
        options = plan.options
        binding = party.binding
        self.ws = WebSocketReader(self.settings.max_message_size, keep_binary=options.msgpack)
        self.state = State.OPEN
        self.id = found.query.get("_pk") or str(uuid.uuid4())
        self.country = plan.country
        self.variant = Variant.of(options.msgpack, options.ids)
        self.skip_self = options.skip_self
        limits = binding.options.limits
        limiter = None
        if limits.publish_rate or limits.publish_bytes_rate:
            limiter = PublishLimiter(
                limits.publish_rate,
                limits.publish_burst,
                limits.publish_bytes_rate,
                limits.publish_bytes_burst,
                self.last_seen,
            )
        self.admission = Admission(FULL_ACCESS, limiter.take if limiter is not None else None)
        if binding.auth.required:
            self._set_grant(plan.grant)
        patterns = self._allowed(topics_from_query(found.query))
        membership = self.hub.registry.join(
            party, found.room_name, self, self.country, patterns, self.last_seen
        )
        self.membership = membership
        self._use_policy(binding.options.slow_consumer, membership.room.history)
        if options.since is not None:
            self._resume(membership, options.since, patterns)
        log.debug(
            "connect %s from %s to %s/%s node %s (country %s) topics %s",
            self.id,
            self.peer,
            found.party.binding.name,
            found.room_name,
            membership.node.id,
            self.country or "unknown",
            ",".join(patterns) or "-",
        )
        if trailing:
            self.ws.feed(trailing)

    def _ws_events(self) -> None:
        ws = self.ws
        assert ws is not None
        finished, closing = State.FINISHED, State.CLOSING  # looked up once: the hot loop
        while self.state is not finished:
            if self._spent():
                return
            event = ws.next()
            if event is None:
                self._messages += 1  # nothing was handled
                return
            if isinstance(event, Message):
                if self.state is not closing:  # closing: only its close frame matters
                    self._on_message(event.payload, binary=event.binary)
            elif isinstance(event, Pinged):
                # A ping costs like a message, and once a close is under way
                # there is nothing more to answer.
                if self._admit(event.size, tell=False) and (pong := ws.pong(event.payload)):
                    self._send(pong)
            elif isinstance(event, Closed):
                if event.reply is not None:
                    self._send_last(event.reply)
                if event.code is not None:
                    self.hub.events.closes[event.code] += 1
                self._finish()
            elif isinstance(event, TooBig) and self.state is not State.CLOSING:
                limit = self.settings.max_message_size
                self.close(
                    CloseReason.MESSAGE_TOO_BIG,
                    f"message too big: the limit is {limit} bytes",
                    self.last_seen,
                )

    def _send_error(self, error: ProtocolError) -> None:
        self.hub.events.error_frames[error.code.value] += 1
        self._send(error_frame(error, self.variant.msgpack))

    def _on_message(self, payload: bytes, *, binary: bool) -> None:
        """One whole client message: JSON text, or MessagePack on a msgpack connection.

        Cheap refusals come first: the rate limit before any parsing, then the
        format; every refusal is a strike (``_refused``)."""
        membership = self.membership
        if membership is None:
            return
        if not self._admit(len(payload)):
            return
        if binary and not self.variant.msgpack:
            self._refused(
                ProtocolError(
                    ErrorCode.BINARY_NOT_SUPPORTED,
                    "binary frames are not supported on this connection; send JSON text frames",
                )
            )
            return
        message = (
            parse_msgpack_message(payload, self.limits)
            if binary
            else parse_client_message(payload, self.limits)
        )
        if isinstance(message, Publish):
            refused = self.admission.allow(message)
            if refused is not None:
                self._refused(refused)
                return
            self._strikes = 0
            room = membership.room
            delivered = self.hub.fanout.deliver(
                room.party, room.name, Envelope(message, self.id), self.last_seen
            )
            self._deliveries -= delivered or 0
        elif isinstance(message, ProtocolError):
            if message.code is ErrorCode.BAD_JSON and not _is_utf8(payload):
                self.close(
                    CloseReason.INVALID_FRAME_PAYLOAD_DATA,
                    "text frame is not UTF-8",
                    self.last_seen,
                )
                return
            self._refused(message)
        elif isinstance(message, RefreshToken):
            self._refresh(message.token, membership)
        else:
            self._subscribe(message, membership)

    def _subscribe(self, message: Subscribe, membership: Membership) -> None:
        self._strikes = 0
        self._install(self._allowed(message.patterns), membership)

    def _install(self, patterns: tuple[str, ...], membership: Membership) -> None:
        """The connection's patterns from now on (held while a resume waits for Redis)."""
        if self.state is State.RESUMING:
            self._held = patterns
        else:
            membership.node.index.set_patterns(self, patterns)

    def _admit(self, size: int, *, tell: bool = True) -> bool:
        """Whether the rate limits let one more message of ``size`` bytes in."""
        limit = self.admission.limit
        if limit is None:
            return True
        wait = limit(size, self.last_seen)
        if not wait:
            return True
        self.hub.events.rate_limited["publish"] += 1
        error = ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"sending too fast: not handled; retry in {wait:.3f}s",
            retry_after=wait,
        )
        self._refused(error, tell=tell)
        return False

    def _refused(self, error: ProtocolError, *, tell: bool = True) -> None:
        """A message not acted on: the sender is told, and a strike counts; at the
        binding's ``abuse_strikes`` in a row the connection is closed (1008)."""
        self._strikes += 1
        limits = self.membership.room.party.binding.options.limits if self.membership else None
        if limits is not None and self._strikes >= limits.abuse_strikes:
            why = (
                f"rate limit exceeded {self._strikes} times in a row"
                if error.code is ErrorCode.RATE_LIMITED
                else f"{self._strikes} messages in a row refused (last: {error.code.value})"
            )
            self.close(CloseReason.POLICY_VIOLATION, why, self.last_seen)
            return
        if tell:
            self._send_error(error)

    def _allowed(self, patterns: tuple[str, ...]) -> tuple[str, ...]:
        """The patterns the limits and the token allow; an error frame names the others."""
        s = self.settings
        if len(patterns) > s.max_topics or any(len(p) > s.max_topic_length for p in patterns):
            self._send_error(
                ProtocolError(
                    ErrorCode.BAD_TOPICS,
                    f"at most {s.max_topics} patterns of at most {s.max_topic_length} "
                    "characters; the subscription is unchanged",
                )
            )
            return self._current_patterns()
        refused = [p for p in patterns if not self.grant.may_subscribe(p)]
        if refused:
            self._send_error(
                ProtocolError(
                    ErrorCode.FORBIDDEN,
                    f"the token does not allow subscribing to {', '.join(map(repr, refused))}",
                )
            )
            return tuple(p for p in patterns if p not in refused)
        return patterns

    def _current_patterns(self) -> tuple[str, ...]:
        if self.state is State.RESUMING:
            return self._held
        if self.membership is None:
            return ()
        return self.membership.node.index.patterns(self)

    def _refresh(self, token: str, membership: Membership) -> None:
        """A fresh token replaces the current one (and its expiry) if it is valid here.

        The new grant is the connection's whole authority from now on: a token
        that does not allow the room ends the connection (4003), and installed
        patterns it does not allow are removed, with an error frame naming them."""
        auth = membership.room.party.binding.auth
        if not auth.required:
            return
        grant = verify(token, auth, self._wall())
        if isinstance(grant, str):
            self._refused(ProtocolError(ErrorCode.UNAUTHORIZED, grant))
            return
        if not grant.may_enter(membership.room.name):
            self.close(CLOSE_FORBIDDEN, "the new token does not allow this room", self.last_seen)
            return
        self._strikes = 0
        self._set_grant(grant)
        current = self._current_patterns()
        kept = tuple(p for p in current if grant.may_subscribe(p))
        if kept == current:
            return
        removed = [p for p in current if p not in kept]
        self._send_error(
            ProtocolError(
                ErrorCode.FORBIDDEN,
                "the new token does not allow "
                f"{', '.join(map(repr, removed))}: unsubscribed from them",
            )
        )
        self._install(kept, membership)

    def _set_grant(self, grant: Grant) -> None:
        self.admission.grant = grant
        self.token_deadline = (
            self.last_seen + grant.expires_in if grant.expires_in is not None else None
        )

    def _use_policy(self, policy: SlowConsumer, history: History) -> None:
        """Swap in the outbox of the binding's slow-consumer policy (HTTP bytes carried over)."""
        if policy is SlowConsumer.DISCONNECT:
            return
        msgpack_format = self.variant.msgpack
        if policy is SlowConsumer.DROP:

            def gap(first: int, last: int) -> bytes:
                span = {"from": history.cursor(first), "to": history.cursor(last)}
                return control_frame("__gap", span, msgpack_format)

            outbox: Outbox = DropOldestOutbox(self.out.cap, gap)
        else:
            outbox = LatestOutbox(self.out.cap)
        outbox.adopt(self.out)
        self.out = outbox

    # --- resume --------------------------------------------------------------

    def _resume(self, membership: Membership, since: str, patterns: tuple[str, ...]) -> None:
        """Replay what the client missed since its cursor, then live messages follow
        (resume.py decides what; here it is queued)."""
        cluster = self.hub.cluster
        plan = plan_resume(membership.room.history, since, patterns, cluster.can_fetch)
        if isinstance(plan, Replay):
            self._replay(plan)
            return
        # Listen to nothing until Redis answers: the replay, what arrived
        # meanwhile and what comes after then join without gap or repeat.
        self.state = State.RESUMING
        self._held = patterns
        membership.node.index.set_patterns(self, ())
        cluster.fetch_history(membership.room, plan.epoch, plan.after, self._fetch_done(plan))

    def _fetch_done(self, plan: FetchFirst) -> Callable[[Fetched], None]:
        return lambda fetched: self._fetched_safely(fetched, plan)

    def _fetched_safely(self, fetched: Fetched, plan: FetchFirst) -> None:
        """The replay runs in the cluster link's task: a fault in it is this
        connection's alone, never the link's."""
        try:
            self._fetched(fetched, plan)
        except Exception:
            faults.report(self.hub.events, "replay", self.id)
            self.fail(self.last_seen)

    def _fetched(self, fetched: Fetched, plan: FetchFirst) -> None:
        """Redis answered a resume: replay its entries and what this daemon got since."""
        membership, patterns = self.membership, self._held
        if membership is None or self.state is not State.RESUMING:
            return
        self.state = State.OPEN
        self._held = ()
        history = membership.room.history
        self._replay(join_fetched(fetched, history, plan.epoch, plan.after, patterns))
        membership.node.index.set_patterns(self, patterns)

    def _replay(self, replay: Replay) -> None:
        """``__resume``, then the missed messages; the history's byte bounds bound the
        work, and it stops as soon as the outbox overflows (the connection is
        closing as a slow consumer then: more would be thrown away)."""
        kept = [e for e in replay.entries if not (self.skip_self and e[2] == self.id)]
        body = {"recovered": replay.recovered, "replayed": len(kept)}
        self._send(control_frame("__resume", body, self.variant.msgpack))
        out = self.out
        for seq, message, _ in kept:
            if out.overflowed:
                break
            frame = message_frame(message, f"{replay.epoch}:{seq}", self.variant)
            if out.push_message(frame, message.topic, seq):
                self.hub.flush.add(self)


def _too_many(
    wait: float, what: str, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False
) -> Reply:
    seconds = max(1, math.ceil(wait))
    return Reply(
        429,
        f"Too many requests: too many {what}; retry in {seconds}s",
        [*(headers or []), (b"Retry-After", str(seconds).encode())],
        close=close,
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
