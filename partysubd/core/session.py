"""One client connection, sans-I/O: bytes in, bytes queued out, and decisions.

A session starts as HTTP/1.1 (``http1``). A WebSocket upgrade on a party's
URL turns it into a subscriber (wsproto for the incoming frames); a POST
publishes and answers; anything else gets its status and reason. The session never
touches a socket or a clock: the I/O layer feeds it bytes and the time, sends
what its outbox holds, and closes the transport once ``finished`` is set and
the outbox is drained.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import replace
from enum import Enum, auto

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from . import faults
from .auth import FULL_ACCESS, Grant, verify
from .clustering import Fetched
from .config import ServerSettings
from .envelope import Envelope
from .frames import OPCODE_BINARY, OPCODE_TEXT, FrameSplitter, close_frame
from .history import History, parse_cursor
from .http1 import CONTINUE, Body, End, Head, Refusal, RequestReader, response
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
from .routing import topics_from_query
from .topics import matches

log = logging.getLogger("partysubd.session")

SERVER_HEADER = b"partysub"
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


class Phase(Enum):
    HTTP = auto()
    WEBSOCKET = auto()


class Session:
    """A client connection from accept to close."""

    __slots__ = (
        "_body",
        "_collecting",
        "_deliveries",
        "_frames",
        "_held_patterns",
        "_limiter",
        "_messages",
        "_partial",
        "_partial_binary",
        "_partial_size",
        "_pending_post",
        "_reader",
        "_request",
        "_responded",
        "_strikes",
        "_ws",
        "backlog",
        "client_address",
        "close_deadline",
        "country",
        "created",
        "finished",
        "grant",
        "hub",
        "id",
        "last_seen",
        "limits",
        "membership",
        "out",
        "peer",
        "phase",
        "ping_sent",
        "request_started",
        "settings",
        "skip_self",
        "token_deadline",
        "variant",
    )

    def __init__(self, hub: Hub, settings: ServerSettings, peer: str, now: float) -> None:
        self.hub = hub
        self.settings = settings
        self.limits = self.settings.message_limits
        self.peer = peer
        self.created = self.last_seen = self.request_started = now
        self.out = Outbox(self.settings.max_buffered_bytes)
        self.phase = Phase.HTTP
        self._reader: RequestReader | None = RequestReader(
            self.settings.max_header_bytes, self.settings.max_message_size
        )
        self._request: Head | None = None  # the request being answered
        self._responded = False  # its response was queued
        self._ws: WSConnection | None = None
        self._frames: FrameSplitter | None = None
        self.membership: Membership | None = None
        # While a resume waits for Redis: the patterns to listen on once it answers.
        self._held_patterns: tuple[str, ...] | None = None
        self.id = ""
        self.country: str | None = None
        self.finished = False  # close the transport once the outbox is drained
        self.close_deadline: float | None = None
        self.ping_sent: float | None = None
        self._pending_post: ReadBody | None = None
        self._body: list[bytes] = []
        self._collecting = False
        self._partial: list[bytes] = []
        self._partial_binary = False
        self._partial_size = 0
        # The peer's IP, until a proxy header names the real client.
        self.client_address = peer.rsplit(":", 1)[0]
        self.variant = Variant.JSON
        self.skip_self = False
        self._limiter: PublishLimiter | None = None
        # Messages refused in a row (rate limits, invalid, forbidden); at the
        # binding's abuse_strikes the connection is closed.
        self._strikes = 0
        self.grant = FULL_ACCESS
        self.token_deadline: float | None = None  # when the connection's token expires
        self.backlog = False  # input is buffered that the last call left for the next
        self._messages = self._deliveries = 0  # what the current call may still do

    # --- what the I/O layer calls -------------------------------------------

    def data_received(self, data: bytes, now: float) -> None:
        """Bytes from the peer: buffered, then handled as far as one turn allows."""
        if self.finished:
            return
        if self.phase is Phase.WEBSOCKET:
            assert self._frames is not None
            self._frames.feed(data)
        else:
            assert self._reader is not None
            self._reader.feed(data)
        self.process(now)

    def process(self, now: float) -> None:
        """Handle what is buffered, a bounded amount per call: one connection that
        streams cannot hold the loop. ``backlog`` says whether to call again."""
        self.last_seen = now
        self.ping_sent = None
        self.backlog = False
        self._messages = TURN_MESSAGES
        self._deliveries = TURN_DELIVERIES
        if self.phase is Phase.HTTP:
            self._http_events()
        if self.phase is Phase.WEBSOCKET and not self.backlog:
            self._ws_frames()

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
        self.finished = True
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
        if self._frames is not None:
            self._frames.max_size = settings.max_message_size
        if self._reader is not None:
            self._reader.max_head = settings.max_header_bytes
            self._reader.max_body = settings.max_message_size

    def tick(self, now: float) -> None:
        """Timers: handshake deadline, keep-alive pings, dead peers, close handshakes."""
        s = self.settings
        if self.finished:
            return
        if self.close_deadline is not None:
            if now >= self.close_deadline:
                self._finish()
            return
        if self.phase is Phase.HTTP:
            # From the start of the request, not the last byte: a client that
            # trickles its headers (slowloris) still runs out of time.
            if now - self.request_started >= s.handshake_timeout:
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
            assert self._ws is not None
            self.ping_sent = now
            self._send(self._ws.send(Ping(b"partysub")))

    def close(self, code: int, reason: str, now: float) -> None:
        """Start a clean close: a close frame for a WebSocket, the end for idle HTTP."""
        if self.finished or self.close_deadline is not None:
            return
        ws = self._ws
        if ws is None or ws.state is not ConnectionState.OPEN:
            self._finish()
            return
        self._send_last(ws.send(CloseConnection(code, reason)))
        self.hub.events.closes[code] += 1
        self.close_deadline = now + self.settings.close_timeout

    def fail(self, now: float) -> None:
        """An internal error hit this connection: tell the client (1011 on a WebSocket,
        500 to a request not yet answered) and end it; nothing more it sends is read.

        Built without the connection's own state, which may be what broke."""
        if self.finished:
            return
        self.out.drop_unsent()
        if self.phase is Phase.WEBSOCKET:
            if self.close_deadline is None:
                self._send_last(close_frame(CLOSE_INTERNAL_ERROR, "internal error"))
                self.hub.events.closes[CLOSE_INTERNAL_ERROR] += 1
        elif self._request is not None and not self._responded:
            self._send_last(response(500, [(b"Connection", b"close")], b"Internal server error\n"))
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
        if not self.finished and self.close_deadline is None:
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
        self.finished = True
        self.out.sealed = True
        self.hub.flush.schedule(self)

    # --- HTTP ----------------------------------------------------------------

    def _http_events(self) -> None:
        reader = self._reader
        while reader is not None and not self.finished and self.phase is Phase.HTTP:
            if self._spent():
                return
            event = reader.next_event()
            if event is None:
                return
            if isinstance(event, Head):
                self._on_request(event)
            elif isinstance(event, Body):
                if self._pending_post is not None:
                    self._body.append(event.data)
            elif isinstance(event, End):
                self._on_body_end()
            elif isinstance(event, Refusal):
                self._respond(Reply(event.status, event.reason, close=True))

    def _on_request(self, head: Head) -> None:
        self._request = head
        self._responded = False
        plan = plan_request(head, self.hub.registry.parties, self.settings, self._wall())
        if isinstance(plan, Reply):
            self._respond(plan)
        elif isinstance(plan, ReadBody):
            address = plan.client_address or self.client_address
            # A cheap refusal before the body is read and parsed.
            wait = plan.route.party.http_limiter.take(address, self.last_seen)
            if wait:
                self.hub.events.rate_limited["http"] += 1
                self._respond(_too_many(wait, "publishes from this address", plan.cors, True))
                return
            self._pending_post = plan
            self._body = []
            if head.expect_continue:
                self._send(CONTINUE)
        else:
            self._upgrade(plan)

    def _on_body_end(self) -> None:
        post = self._pending_post
        if post is None:
            return
        self._pending_post = None
        body = b"".join(self._body)
        self._body = []
        message = parse_http_publish(body, post.content_type, self.limits)
        if isinstance(message, ProtocolError):
            status = 413 if message.code is ErrorCode.TOO_LARGE else 400
            self.hub.events.error_frames[message.code.value] += 1
            self._respond(Reply(status, f"Invalid request: {message.message}", post.cors))
            return
        found = post.route
        if not post.grant.may_publish(message.topic):
            reason = f"Forbidden: the token does not allow publishing to {message.topic!r}"
            self._respond(Reply(403, reason, post.cors))
            return
        if post.idem is not None:
            message = replace(message, idem=post.idem)
        # Like the original, a POST lands on one node (placed by country),
        # which passes it to the others; in one process that is this call.
        node_id = self.hub.registry.place(found.party, found.room, post.country)
        envelope = Envelope(message, post.skip, skip_publisher=True)
        delivered = self.hub.fanout.deliver(found.party, found.room, envelope, self.last_seen)
        self._deliveries -= delivered or 0
        log.debug(
            "POST %s/%s topic %s via node %s from %s: %s deliveries",
            found.party.binding.name,
            found.room,
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
        request = self._request
        if self._responded:
            self._finish()
            return
        close = reply.close or request is None or not request.keep_alive
        headers = [
            (b"Server", SERVER_HEADER),
            (b"Content-Type", b"text/plain; charset=utf-8"),
            *reply.headers,
        ]
        if close:
            headers.append((b"Connection", b"close"))
        body = reply.text.encode() if reply.status != 204 else b""
        head_only = request is not None and request.method == b"HEAD"
        self._send(response(reply.status, headers, body, head_only=head_only))
        self._responded = True
        self.hub.events.http_responses[reply.status] += 1
        self.request_started = self.last_seen
        if close:
            self._finish()

    def _wall(self) -> float:
        """Wall-clock time now (token expiry), from the hub's offset to ``last_seen``."""
        return self.last_seen + self.hub.wall_offset

    # --- WebSocket -------------------------------------------------------------

    def _upgrade(self, plan: AcceptWebSocket) -> None:
        reader = self._reader
        assert reader is not None
        party = plan.route.party
        if plan.client_address:
            self.client_address = plan.client_address
        wait = party.connect_limiter.take(self.client_address, self.last_seen)
        if wait:
            self.hub.events.rate_limited["connect"] += 1
            self._respond(_too_many(wait, "new connections from this address"))
            return
        accept = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", plan.accept_token),
            (b"Server", SERVER_HEADER),
        ]
        self._send(response(101, accept))
        self._responded = True
        self.hub.events.http_responses[101] += 1
        reader.next_event()  # the End of a request without a body
        trailing = reader.rest()
        self._reader = None
        self.phase = Phase.WEBSOCKET
        self._ws = WSConnection(ConnectionType.SERVER)
        self._frames = FrameSplitter(self.settings.max_message_size)
        found = plan.route
        options = plan.options
        binding = party.binding
        self.id = found.query.get("_pk") or str(uuid.uuid4())
        self.country = plan.country
        self.variant = Variant.of(options.msgpack, options.ids)
        self.skip_self = options.skip_self
        limits = binding.limits
        if limits.publish_rate or limits.publish_bytes_rate:
            self._limiter = PublishLimiter(
                limits.publish_rate,
                limits.publish_burst,
                limits.publish_bytes_rate,
                limits.publish_bytes_burst,
                self.last_seen,
            )
        if binding.auth.required:
            self._set_grant(plan.grant)
        patterns = self._allowed(topics_from_query(found.query))
        membership = self.hub.registry.join(
            party, found.room, self, self.country, patterns, self.last_seen
        )
        self.membership = membership
        self._use_policy(binding.slow_consumer, membership.room.history)
        if options.since is not None:
            self._resume(membership, options.since, patterns)
        log.debug(
            "connect %s from %s to %s/%s node %s (country %s) topics %s",
            self.id,
            self.peer,
            found.party.binding.name,
            found.room,
            self.membership.node.id,
            self.country or "unknown",
            ",".join(patterns) or "-",
        )
        if trailing:
            self._frames.feed(trailing)

    def _ws_frames(self) -> None:
        frames = self._frames
        assert frames is not None
        while not self.finished:
            if self._spent():
                return
            frame = frames.next()
            if frame is None:
                self._messages += 1  # nothing was handled
                return
            kind, payload = frame
            if kind == FrameSplitter.RAW:
                self._wsproto_frame(payload)
            elif self.close_deadline is not None:
                continue  # closing: only the client's close frame matters now
            elif kind == OPCODE_TEXT:
                self._on_message(payload, binary=False)
            elif kind == OPCODE_BINARY:
                self._on_message(payload, binary=True)
            else:
                self._too_big()

    def _wsproto_frame(self, frame: bytes) -> None:
        """Control frames, fragments and malformed frames: wsproto applies the rules."""
        ws = self._ws
        assert ws is not None
        try:
            ws.receive_data(frame)
        except LocalProtocolError:
            return  # already closed: late bytes after the close handshake
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._collect(event.data, event.message_finished)
            elif isinstance(event, Ping):
                # A ping costs like a message, and once a close is under way
                # there is nothing more to answer.
                if self._admit(len(frame), tell=False) and ws.state is ConnectionState.OPEN:
                    self._send(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._on_close(ws, event)
                return

    def _on_close(self, ws: WSConnection, event: CloseConnection) -> None:
        if ws.state is ConnectionState.REMOTE_CLOSING:
            # The client closes: answer its close frame, then end the connection.
            self._send_last(ws.send(event.response()))
        elif ws.state is ConnectionState.OPEN:
            # wsproto reports a protocol violation as a close event in OPEN.
            self._send_last(ws.send(CloseConnection(event.code, event.reason)))
            self.hub.events.closes[int(event.code)] += 1
        self._finish()

    def _too_big(self) -> None:
        self._partial = []
        self._collecting = False
        limit = self.settings.max_message_size
        self.close(
            CloseReason.MESSAGE_TOO_BIG,
            f"message too big: the limit is {limit} bytes",
            self.last_seen,
        )

    def _send_error(self, error: ProtocolError) -> None:
        self.hub.events.error_frames[error.code.value] += 1
        self._send(error_frame(error, self.variant.msgpack))

    def _collect(self, data: str | bytes | bytearray, finished: bool) -> None:
        """Gather a fragmented message, refusing it as soon as it is too big."""
        if not self._collecting:
            self._collecting = True
            self._partial_binary = not isinstance(data, str)
            self._partial_size = 0
        if isinstance(data, str):
            encoded = data.encode()
            self._partial_size += len(encoded)
            self._partial.append(encoded)
        else:
            self._partial_size += len(data)
            if self.variant.msgpack:
                self._partial.append(bytes(data))
        if self._partial_size > self.settings.max_message_size:
            self._too_big()
            return
        if not finished:
            return
        self._collecting = False
        payload = b"".join(self._partial)
        self._partial = []
        self._on_message(payload, binary=self._partial_binary)

    def _on_message(self, payload: bytes, *, binary: bool) -> None:
        """One whole client message: JSON text, or MessagePack on a msgpack connection.

        Cheap refusals come first: the rate limit before any parsing, then the
        format; every refusal is a strike (``_refused``)."""
        membership = self.membership
        if self.close_deadline is not None or membership is None:
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
            if not self.grant.may_publish(message.topic):
                self._refused(
                    ProtocolError(
                        ErrorCode.FORBIDDEN,
                        f"the token does not allow publishing to {message.topic!r}",
                    )
                )
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
        if self._held_patterns is not None:
            # Waiting for Redis to answer a resume: the new patterns apply then.
            self._held_patterns = self._allowed(message.patterns)
        else:
            membership.node.index.set_patterns(self, self._allowed(message.patterns))

    def _admit(self, size: int, *, tell: bool = True) -> bool:
        """Whether the rate limits let one more message of ``size`` bytes in."""
        limiter = self._limiter
        if limiter is None:
            return True
        wait = limiter.take(size, self.last_seen)
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
        limits = self.membership.room.party.binding.limits if self.membership else None
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
        if self._held_patterns is not None:
            return self._held_patterns
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
        if self._held_patterns is not None:
            self._held_patterns = kept
        else:
            membership.node.index.set_patterns(self, kept)

    def _set_grant(self, grant: Grant) -> None:
        self.grant = grant
        self.token_deadline = (
            self.last_seen + grant.expires_in if grant.expires_in is not None else None
        )

    def _use_policy(self, policy: str, history: History) -> None:
        """Swap in the outbox of the binding's slow-consumer policy (HTTP bytes carried over)."""
        if policy == "disconnect":
            return
        msgpack_format = self.variant.msgpack
        if policy == "drop":

            def gap(first: int, last: int) -> bytes:
                span = {"from": history.cursor(first), "to": history.cursor(last)}
                return control_frame("__gap", span, msgpack_format)

            outbox: Outbox = DropOldestOutbox(self.out.cap, gap)
        else:
            outbox = LatestOutbox(self.out.cap)
        outbox.adopt(self.out)
        self.out = outbox

    def _resume(self, membership: Membership, since: str, patterns: tuple[str, ...]) -> None:
        """Replay what the client missed since its cursor, then live messages follow.

        In a cluster a daemon may not hold the room's history that far back
        (the client was on another daemon): then Redis is asked, and until it
        answers the connection listens to nothing, so that the replay, what
        arrived meanwhile and what comes after join without gap or repeat.
        """
        history = membership.room.history
        resume = history.since(
            since, lambda entry: any(matches(p, entry.message.topic) for p in patterns)
        )
        parsed = parse_cursor(since)
        cluster = self.hub.cluster
        if not resume.recovered and cluster.can_fetch and history.enabled and parsed:
            self._held_patterns = patterns
            membership.node.index.set_patterns(self, ())
            epoch, after = parsed
            cluster.fetch_history(
                membership.room, epoch, after, lambda got: self._fetched_safely(got, epoch, after)
            )
            return
        entries = [(e.seq, e.message, e.publisher) for e in resume.entries]
        self._replay(resume.recovered, history.epoch, entries)

    def _fetched_safely(self, fetched: Fetched, epoch: str, after: int) -> None:
        """The replay runs in the cluster link's task: a fault in it is this
        connection's alone, never the link's."""
        try:
            self._fetched(fetched, epoch, after)
        except Exception:
            faults.report(self.hub.events, "replay", self.id)
            self.fail(self.last_seen)

    def _fetched(self, fetched: Fetched, epoch: str, after: int) -> None:
        """Redis answered a resume: replay its entries and what this daemon got since."""
        membership, patterns = self.membership, self._held_patterns
        self._held_patterns = None
        if membership is None or patterns is None or self.finished:
            return
        entries: list[tuple[int, Publish, str | None]] = []
        if fetched is not None:
            by_seq = {seq: (seq, message, publisher) for seq, message, publisher in fetched[1]}
            for entry in membership.room.history.entries_after(epoch, after):
                by_seq.setdefault(entry.seq, (entry.seq, entry.message, entry.publisher))
            entries = [
                by_seq[seq]
                for seq in sorted(by_seq)
                if any(matches(p, by_seq[seq][1].topic) for p in patterns)
            ]
        self._replay(fetched is not None, epoch, entries)
        membership.node.index.set_patterns(self, patterns)

    def _replay(
        self, recovered: bool, epoch: str, entries: list[tuple[int, Publish, str | None]]
    ) -> None:
        """``__resume``, then the missed messages; the history's byte bounds bound the
        work, and it stops as soon as the outbox overflows (the connection is
        closing as a slow consumer then: more would be thrown away)."""
        kept = [e for e in entries if not (self.skip_self and e[2] == self.id)]
        body = {"recovered": recovered, "replayed": len(kept)}
        self._send(control_frame("__resume", body, self.variant.msgpack))
        out = self.out
        for seq, message, _ in kept:
            if out.overflowed:
                break
            frame = message_frame(message, f"{epoch}:{seq}", self.variant)
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
